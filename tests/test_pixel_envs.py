"""Any Gymnasium pixel env, end to end: ``rad collect --env gym:ENV_ID`` -> ``rad train`` (the
action count from the data) -> ``gymnasium.make("rad_env:RAD-v0", checkpoint=RUN)`` with every
feature of the learned env. The env is ``RadTestGrid-v0`` (tests/pixel_grid_env.py): vector
observations, frames from ``render_mode="rgb_array"``, ``Discrete(5)``."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from model_utils import STEPS

from world_model.cli import main as rad
from world_model.data.format import action_indices, read_episode
from world_model.errors import DataError, UserError
from world_model.sim.gym_collect import collect_pixels
from world_model.sim.pixel_env import make_pixel_env

GRID = "gym:pixel_grid_env:RadTestGrid-v0"


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory):
    """4 episodes of at most 20 steps of the grid env, random policy, 64x64 frames."""
    out = tmp_path_factory.mktemp("grid") / "data"
    collect_pixels(out, 4, env=GRID, steps=20, seed=0)
    return out


@pytest.fixture(scope="module")
def grid_world(grid_data, tmp_path_factory):
    """A tiny world trained 4 steps on :func:`grid_data` (``rad train --config tiny``)."""
    run = tmp_path_factory.mktemp("grid") / "run"
    assert rad(["train", "--data", str(grid_data), "--config", "tiny", "--out", str(run),
                "--steps", "4", "--device", "cpu", "--wandb", "disabled", "--no-progress",
                "--set", "train.val_fraction=0"]) == 0
    return run


def learned(world, data, **kwargs):
    return gymnasium.make("rad_env:RAD-v0", checkpoint=str(world), context="data",
                          data_dir=str(data), context_len=kwargs.pop("context_len", 6),
                          steps=STEPS, **kwargs)


# -- collection -----------------------------------------------------------------------------------
def test_collected_files_record_resized_frames_the_env_id_and_the_action_count(grid_data):
    ep = read_episode(grid_data / "ep_000000.npz")
    T1 = len(ep["image"])
    assert 2 <= T1 <= 21 and ep["image"].shape == (T1, 64, 64, 3) and ep["image"].dtype == np.uint8
    assert ep["action"].shape == (T1, 5) and not ep["action"][0].any()
    assert (ep["action"][1:].sum(1) == 1).all() and ep["reward"].shape == (T1,)
    assert str(ep["env_id"]) == GRID and int(ep["num_actions"]) == 5
    assert ep["agent_pos"].shape == (T1, 2)  # the env's info["agent_pos"]
    env = make_pixel_env("pixel_grid_env:RadTestGrid-v0", 64)
    frame, _ = env.reset(seed=int(ep["seed"]))
    np.testing.assert_array_equal(frame, ep["image"][0])  # the render, resized
    assert np.median(frame[..., 2]) == 120 and frame.max() == 255  # background, agent


def test_collection_is_seeded_and_resumes_without_rewriting(grid_data, tmp_path):
    again = tmp_path / "again"
    collect_pixels(again, 2, env=GRID, steps=20, seed=0)
    for name in ("ep_000000.npz", "ep_000001.npz"):
        a, b = read_episode(grid_data / name), read_episode(again / name)
        for key in ("image", "action", "reward"):
            np.testing.assert_array_equal(a[key], b[key])
    stamp = (again / "ep_000000.npz").stat().st_mtime_ns
    collect_pixels(again, 3, env=GRID, steps=20, seed=0)
    assert (again / "ep_000000.npz").stat().st_mtime_ns == stamp
    assert (again / "ep_000002.npz").is_file()
    with pytest.raises(UserError, match="other settings"):
        collect_pixels(again, 3, env=GRID, steps=10, seed=0)


def test_a_user_policy_drives_the_collection(tmp_path, capsys):
    out = tmp_path / "right"
    assert rad(["collect", "--env", GRID, "--episodes", "1", "--steps", "6", "--out", str(out),
                "--policy", "pixel_grid_env:always_right"]) == 0
    assert "1 episodes of at most 6 steps" in capsys.readouterr().out
    actions = action_indices(read_episode(out / "ep_000000.npz")["action"])
    assert (actions[1:] == 4).all()


@pytest.mark.parametrize("env,message", [
    ("gym:Pendulum-v1", "discrete actions"),
    ("gym:pixel_grid_env:RadTestVector-v0", "cannot render rgb_array"),
    ("gym:NoSuchEnv-v9", "gym:NoSuchEnv-v9"),
    ("atari", "unknown environment 'atari'"),
])
def test_envs_without_discrete_actions_or_frames_are_refused_by_name(tmp_path, env, message):
    with pytest.raises(UserError, match=message):
        collect_pixels(tmp_path / "x", 1, env=env, steps=5)


def test_bad_policies_are_named(tmp_path):
    for policy, message in (("nope", "expected 'random'"), ("no_module_xyz:f", "cannot import"),
                            ("pixel_grid_env:missing", "no callable 'missing'")):
        with pytest.raises(UserError, match=message):
            collect_pixels(tmp_path / "x", 1, env=GRID, steps=5, policy=policy)


# -- training takes the action count from the data ------------------------------------------------
def test_train_sizes_the_world_to_the_data(grid_world):
    from world_model.config import RunConfig

    config = RunConfig.load(grid_world / "config.json")
    assert config.model.num_actions == 5  # the tiny preset says 6: the data decides
    assert config.train.env_id == GRID


def test_data_with_mixed_action_counts_or_too_few_actions_is_refused(grid_data, tmp_path):
    from world_model.configs import resolve_config
    from world_model.data.format import write_episode
    from world_model.data.spec import read_data_spec
    from world_model.training.run import fit_to_data

    with pytest.raises(UserError, match="model.num_actions=3"):
        fit_to_data(resolve_config("tiny", ["model.num_actions=3"]), grid_data,
                    actions_from_data=False)
    mixed = tmp_path / "mixed"
    ep = read_episode(grid_data / "ep_000000.npz")
    write_episode(mixed / "a.npz", ep)
    write_episode(mixed / "b.npz", {**ep, "action": np.zeros((len(ep["image"]), 7), np.float32),
                                    "num_actions": np.int64(7)})
    with pytest.raises(DataError, match="disagree on their action counts"):
        read_data_spec(mixed)


# -- the generic learned env ----------------------------------------------------------------------
def test_rad_v0_exposes_the_checkpoints_spaces_and_passes_check_env(grid_world, grid_data):
    from gymnasium.utils.env_checker import check_env

    env = learned(grid_world, grid_data, render_mode="rgb_array")
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(5)
    assert env.unwrapped.env_id == GRID
    assert env.unwrapped.worlds.max_steps == 50  # the real env's registered time limit
    assert env.unwrapped.worlds.reward_mode == "raw"
    check_env(env.unwrapped)


def test_rad_v0_snapshots_observe_vectors_and_real_resets(grid_world, grid_data):
    env = learned(grid_world, grid_data).unwrapped
    obs, info = env.reset(seed=3)
    assert info["context_source"] == "data"
    snapshot = env.get_state()
    first = [env.step(a)[0] for a in (1, 4, 2)]
    env.set_state(snapshot)
    np.testing.assert_array_equal(first, [env.step(a)[0] for a in (1, 4, 2)])
    real = np.full((64, 64, 3), 7, np.uint8)
    obs, *_, info = env.observe(real, 4)
    np.testing.assert_array_equal(obs, real)
    assert not info["imagined"]
    obs, info = env.reset(seed=0, options={"context": "real"})  # the real grid env, random actions
    assert info["context_source"] == "real" and np.median(obs[..., 2]) == 120
    with pytest.raises(UserError, match="outside Discrete"):
        env.step(5)
    vec = gymnasium.make_vec("rad_env:RAD-v0", num_envs=2, checkpoint=str(grid_world),
                             context="data", data_dir=str(grid_data), context_len=6, steps=STEPS)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3)
    obs, reward, terminated, truncated, _ = vec.step(np.array([1, 4]))
    assert obs.shape == (2, 64, 64, 3) and reward.shape == terminated.shape == truncated.shape


def test_rad_memory_maze_refuses_a_world_of_another_env(grid_world, grid_data):
    with pytest.raises(UserError, match="not of memory-maze.*RAD-v0"):
        gymnasium.make("rad_env:RAD-MemoryMaze-v0", checkpoint=str(grid_world), context="data",
                       data_dir=str(grid_data))


def test_rad_v0_rollouts_are_reproducible_from_a_seed(grid_world, grid_data):
    env = learned(grid_world, grid_data).unwrapped
    runs = []
    for _ in range(2):
        env.reset(seed=11)
        runs.append(np.stack([env.step(a)[0] for a in (3, 3, 0)]))
    np.testing.assert_array_equal(*runs)
