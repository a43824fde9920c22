"""Crafter end to end, as CI runs it: the real game through Gymnasium (``Crafter-v0``),
``rad collect --env crafter``, ``rad train`` (17 actions from the data), the learned
``RAD-v0`` (check_env, real Crafter resets), ``rad rollout`` and ``rad eval --protocol predict``
on held-out episodes; and the revisit rule of that protocol."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest
from model_utils import STEPS

from world_model.cli import main as rad
from world_model.errors import UserError
from world_model.evaluation.clips import prediction_trajectories, revisit_mask

pytest.importorskip("crafter", reason="Crafter is the [envs] extra")


@pytest.fixture(scope="module")
def crafter_data(tmp_path_factory):
    """3 training and 2 held-out Crafter episodes of 40 random steps."""
    root = tmp_path_factory.mktemp("crafter")
    for name, seed, n in (("train", 0, 3), ("eval", 100, 2)):
        assert rad(["collect", "--env", "crafter", "--episodes", str(n), "--steps", "40",
                    "--seed", str(seed), "--out", str(root / name)]) == 0
    return root


@pytest.fixture(scope="module")
def crafter_world(crafter_data):
    run = crafter_data / "run"
    assert rad(["train", "--data", str(crafter_data / "train"), "--config", "tiny", "--out",
                str(run), "--steps", "4", "--device", "cpu", "--wandb", "disabled",
                "--no-progress", "--set", "train.val_fraction=0"]) == 0
    return run


# -- the real game --------------------------------------------------------------------------------
def test_crafter_through_gymnasium_passes_check_env():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("rad_env:Crafter-v0", area=24)  # a small world resets faster
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(17)
    assert gymnasium.spec("Crafter-v0").max_episode_steps == 10000
    check_env(env.unwrapped)


def test_seeded_resets_reproduce_the_world_and_episodes_truncate():
    from world_model.sim.crafter_env import CrafterEnv

    env = CrafterEnv(max_steps=5, area=24)
    runs = []
    for _ in range(2):
        obs, info = env.reset(seed=7)
        frames = [obs] + [env.step(a)[0] for a in (1, 3, 2, 4)]
        runs.append((np.stack(frames), info["agent_pos"]))
        env.reset()  # an unseeded reset in between does not matter
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], [12, 12])  # the centre of the 24x24 world
    env.reset(seed=7)
    for _ in range(4):
        assert env.step(0)[3] is False
    *_, terminated, truncated, info = env.step(0)
    assert (terminated, truncated) == (False, True) and info["agent_pos"].shape == (2,)
    other, _ = env.reset(seed=8)
    assert not np.array_equal(other, runs[0][0][0])
    with pytest.raises(UserError, match="outside Discrete"):
        env.step(17)


# -- collect, train, the learned env --------------------------------------------------------------
def test_a_world_trained_on_crafter_is_a_gymnasium_env_with_crafters_spaces(crafter_world,
                                                                           crafter_data):
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("rad_env:RAD-v0", checkpoint=str(crafter_world), context="data",
                         data_dir=str(crafter_data / "train"), context_len=6, steps=STEPS)
    assert env.action_space == gymnasium.spaces.Discrete(17)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    worlds = env.unwrapped.worlds
    assert (worlds.env_id, worlds.max_steps, worlds.reward_mode) == ("crafter", 10000, "raw")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0, options={"context": "real"})  # the real game, random actions
    assert info["context_source"] == "real" and obs.shape == (64, 64, 3)
    obs, reward, _, _, info = env.step(3)
    assert info["imagined"] and obs.dtype == np.uint8 and np.isfinite(reward)


def test_rad_rollout_imagines_a_crafter_trajectory(crafter_world, crafter_data, tmp_path):
    out = tmp_path / "imagined.gif"
    assert rad(["rollout", "--checkpoint", str(crafter_world), "--context",
                str(crafter_data / "eval" / "ep_000000.npz"), "--context-frames", "8",
                "--frames", "6", "--steps", "2", "--device", "cpu", "--out", str(out),
                "--no-progress"]) == 0
    assert out.stat().st_size > 0


def test_rad_eval_predict_scores_held_out_crafter_clips(crafter_world, crafter_data, tmp_path,
                                                       capsys):
    out = tmp_path / "report"
    assert rad(["eval", "--checkpoint", str(crafter_world), "--data",
                str(crafter_data / "eval"), "--out", str(out), "--protocol", "predict",
                "--context-frames", "12", "--predict-frames", "8", "--steps", "2",
                "--device", "cpu", "--videos", "1", "--no-progress"]) == 0
    assert "PSNR revisit" in capsys.readouterr().out
    table = json.loads((out / "table.json").read_text())
    assert table["trajectories"] == 2 and table["generated_frames"] == 16
    assert [r["name"] for r in table["rows"]] == ["repeat last context frame", "run"]
    assert table["settings"]["protocol"] == "predict"


# -- the revisit rule -----------------------------------------------------------------------------
def test_revisits_are_context_places_not_seen_within_the_horizon():
    #            context: 0..3                 generated: 4..9
    pos = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [3, 0], [2, 0], [9, 9], [0, 0],
                    [0, 0]], float)
    # horizon 3: frame i sees frames i-2, i-1 through attention
    np.testing.assert_array_equal(revisit_mask(pos, 4, 3),
                                  [False, False, True, False, True, False])
    # [4,0] never in the context; [3,0] at 5 was seen at 3 (2 back); [2,0] at 6 last seen at 2;
    # [0,0] at 8 last seen at 0; at 9 it was seen at 8 (1 back)
    np.testing.assert_array_equal(revisit_mask(pos, 4, 1), [False, True, True, False, True, True])
    assert not revisit_mask(pos, 4, 11).any()  # nothing is beyond an 11-frame horizon


def test_the_predict_protocol_cuts_the_clip_with_the_most_revisits(tmp_path):
    from world_model.data.format import write_episode

    T = 30
    pos = np.zeros((T, 2))
    pos[:10, 0] = np.arange(10)                       # walk away ...
    pos[10:20, 0] = np.arange(9, -1, -1)              # ... and back
    pos[20:, 0] = 50 + np.arange(10)                  # then somewhere new
    ep = {"image": np.zeros((T, 64, 64, 3), np.uint8), "action": np.eye(17)[np.zeros(T, int)],
          "reward": np.zeros(T, np.float32), "agent_pos": pos}
    write_episode(tmp_path / "e.npz", ep)
    (traj,) = prediction_trajectories(tmp_path, 10, 10, horizon=3)
    assert traj.name == "e@0" and revisit_mask(traj.positions, 10, 3).sum() == 9
    (late,) = prediction_trajectories(tmp_path, 5, 5, horizon=3)
    assert revisit_mask(late.positions, 5, 3).sum() >= 1
    (start,) = prediction_trajectories(tmp_path, 5, 5, horizon=3, clip="start")
    assert start.name == "e@0" and not revisit_mask(start.positions, 5, 3).any()
    with pytest.raises(UserError, match="--clip"):
        prediction_trajectories(tmp_path, 5, 5, horizon=3, clip="best")
