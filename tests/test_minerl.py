"""MineRL without MineRL: the Gymnasium face and the data converter against MineRL 0.4.4's
documented interface, using a small fake env and a synthetic data directory.

Documented (MineRL 0.4.4, ``MineRLNavigate-v0``): the old gym API (``seed``, ``reset() -> obs``,
``step(action) -> (obs, reward, done, info)``); observation dict with ``pov (64, 64, 3) uint8``
(and ``compass``, ``inventory``); dict action with ``forward, back, left, right, jump, sneak,
sprint, attack`` 0/1, ``camera (2,)`` float (pitch, yaw) degrees in [-180, 180], ``place``;
``action_space.noop()``. Data set: ``<task>/<trajectory>/recording.mp4`` + ``rendered.npz``
(``action$forward``, ..., ``action$camera (N, 2)``, ``reward (N,)``) + ``metadata.json``.
"""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict

import gymnasium
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

from world_model.cli import main as rad
from world_model.data.format import action_indices, read_episode
from world_model.errors import BackendError
from world_model.sim import minerl_actions as A
from world_model.sim.minerl_env import MineRLEnv

BUTTONS = ("forward", "back", "left", "right", "jump", "sneak", "sprint", "attack")


class FakeActionSpace:
    def noop(self):
        return OrderedDict(attack=0, back=0, camera=np.zeros(2, np.float32), forward=0, jump=0,
                           left=0, place="none", right=0, sneak=0, sprint=0)


class FakeMineRL:
    """MineRL's documented interface; the POV's colours encode yaw, pitch and distance walked,
    so what an action did is visible in the frame. Refuses any action dict MineRL would."""

    def __init__(self, env_id="MineRLNavigate-v0", pov=32, goal=1000):
        self.env_id, self.pov_size, self.goal = env_id, pov, goal
        self.action_space = FakeActionSpace()
        self.seeds, self.actions, self._seed = [], [], None

    def seed(self, seed):
        self._seed = seed
        self.seeds.append(seed)

    def reset(self):
        rng = np.random.default_rng(self._seed)
        self.yaw, self.pitch, self.walked = float(rng.uniform(0, 360)), 0.0, 0
        return self._obs()

    def step(self, action):
        assert set(action) == set(FakeActionSpace().noop()), sorted(action)
        assert all(action[k] in (0, 1) for k in BUTTONS) and action["place"] in ("none", "dirt")
        camera = np.asarray(action["camera"])
        assert camera.shape == (2,) and np.all(np.abs(camera) <= 180)
        self.actions.append(dict(action))
        self.pitch = float(np.clip(self.pitch + camera[0], -90, 90))
        self.yaw = (self.yaw + float(camera[1])) % 360
        self.walked += action["forward"]
        done = self.walked >= self.goal
        return self._obs(), 100.0 * done, done, {}

    def _obs(self):
        pov = np.zeros((self.pov_size, self.pov_size, 3), np.uint8)
        pov[..., 0] = int(self.yaw / 360 * 255)
        pov[..., 1] = int((self.pitch + 90) / 180 * 255)
        pov[..., 2] = min(self.walked * 20, 255)
        return {"pov": pov, "compass": {"angle": 0.0}, "inventory": {"dirt": 0}}

    def close(self):
        pass


def make(**kwargs) -> tuple[MineRLEnv, list[FakeMineRL]]:
    made: list[FakeMineRL] = []
    fake_kwargs = {k: kwargs.pop(k) for k in ("goal",) if k in kwargs}

    def factory(env_id):
        made.append(FakeMineRL(env_id, **fake_kwargs))
        return made[-1]

    return MineRLEnv(make_env=factory, **kwargs), made


# -- the Gymnasium face ---------------------------------------------------------------------------
def test_the_minerl_face_passes_check_env():
    from gymnasium.utils.env_checker import check_env

    env, _ = make()
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(8)
    check_env(env)


@pytest.mark.parametrize("index,keys,camera", [
    (A.NOOP, {}, (0, 0)),
    (A.FORWARD, {"forward": 1}, (0, 0)),
    (A.TURN_LEFT, {}, (0, -15)),
    (A.TURN_RIGHT, {}, (0, 15)),
    (A.LOOK_UP, {}, (-15, 0)),
    (A.LOOK_DOWN, {}, (15, 0)),
    (A.JUMP_FORWARD, {"forward": 1, "jump": 1}, (0, 0)),
    (A.ATTACK, {"attack": 1}, (0, 0)),
])
def test_each_discrete_action_sends_the_documented_dict(index, keys, camera):
    env, (fake,) = make()
    env.reset(seed=0)
    env.step(index)
    sent = fake.actions[-1]
    assert {k: sent[k] for k in BUTTONS} == {k: keys.get(k, 0) for k in BUTTONS}
    np.testing.assert_allclose(sent["camera"], camera)
    assert sent["place"] == "none"  # keys the set does not use keep MineRL's no-op value


def test_the_pov_is_resized_and_follows_the_actions():
    env, (fake,) = make()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and fake.pov_size == 32
    yaw = obs[0, 0, 0]
    obs, *_ = env.step(A.TURN_RIGHT)
    assert obs[0, 0, 0] != yaw and (obs == obs[0, 0]).all()  # a uniform frame stays uniform
    obs, *_ = env.step(A.FORWARD)
    assert obs[0, 0, 2] == 20


def test_seeded_resets_are_reproducible():
    env, (fake,) = make()
    first, _ = env.reset(seed=5)
    env.reset()
    again, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first, again)
    assert fake.seeds[0] == fake.seeds[2] != fake.seeds[1]
    env.reset(seed=6)
    assert fake.seeds[3] != fake.seeds[0]


def test_episodes_truncate_at_the_episode_length_and_terminate_at_the_goal():
    env, _ = make(max_steps=3)
    env.reset(seed=0)
    assert [env.step(A.NOOP)[3] for _ in range(3)] == [False, False, True]
    with pytest.raises(ResetNeeded):
        env.step(A.NOOP)
    env, _ = make(goal=2)
    env.reset(seed=0)
    assert env.step(A.FORWARD)[2:4] == (False, False)
    _, reward, terminated, truncated, _ = env.step(A.FORWARD)
    assert (reward, terminated, truncated) == (100.0, True, False)
    assert make()[0].max_steps == 6000  # MineRL's own limit for Navigate


def test_without_minerl_making_it_says_what_to_install(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "minerl" else real(name, *a))
    with pytest.raises(BackendError, match=r"minerl 0\.4\.4.*Java 8"):
        gymnasium.make("rad_env:MineRL-Navigate-v0")
    assert rad(["collect", "--env", "minerl-navigate", "--episodes", "1", "--steps", "5",
                "--out", str(tmp_path / "m")]) == 2
    assert "minerl==0.4.4" in capsys.readouterr().err


# -- the discrete action set ----------------------------------------------------------------------
def test_dict_actions_are_discretised_by_the_documented_rules():
    rows = [  # (forward, jump, attack, pitch, yaw) -> expected
        ((0, 0, 0, 0.0, 0.0), A.NOOP),
        ((1, 0, 0, 0.0, 3.0), A.FORWARD),          # a camera move under angle/2 does not count
        ((1, 1, 0, 0.0, 0.0), A.JUMP_FORWARD),
        ((1, 1, 1, 0.0, 0.0), A.ATTACK),           # attack before moving
        ((1, 1, 1, 2.0, -10.0), A.TURN_LEFT),      # a camera move before anything
        ((0, 0, 0, 9.0, 8.0), A.LOOK_DOWN),        # the axis that moved more
        ((0, 0, 0, -30.0, 5.0), A.LOOK_UP),
        ((0, 0, 0, 0.0, 40.0), A.TURN_RIGHT),
    ]
    arrays = {k: np.array([r[0][i] for r in rows]) for i, k in enumerate(("forward", "jump",
                                                                           "attack"))}
    arrays["camera"] = np.array([r[0][3:] for r in rows])
    np.testing.assert_array_equal(A.discretize(arrays), [r[1] for r in rows])
    for index in range(A.NUM_ACTIONS):  # the env's dicts map back to their index
        assert A.discretize(A.to_minerl(index))[0] == index


# -- the data set ---------------------------------------------------------------------------------
def write_trajectory(directory, steps, pre_frames=2, video_frames=None, seed=0):
    """A trajectory in the documented layout; experiment frame t is a solid colour of t."""
    import imageio.v3 as iio

    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    colours = [(10, 10, 10)] * pre_frames + [(20 + 10 * t, 200 - 6 * t, 128)
                                             for t in range(steps + 1)]
    colours = colours[:video_frames] if video_frames is not None else colours
    frames = np.stack([np.full((64, 64, 3), c, np.uint8) for c in colours])
    iio.imwrite(directory / "recording.mp4", frames, plugin="FFMPEG", fps=20)
    arrays = {f"action${k}": rng.integers(0, 2, steps) for k in BUTTONS}
    arrays["action$camera"] = rng.choice([0.0, 2.0, -12.0, 30.0], size=(steps, 2))
    arrays["action$place"] = np.array(["none"] * steps)
    arrays["reward"] = rng.integers(0, 2, steps).astype(np.float64)
    arrays["observation$compass$angle"] = rng.uniform(-180, 180, steps + 1)
    np.savez_compressed(directory / "rendered.npz", **arrays)
    (directory / "metadata.json").write_text(json.dumps({
        "true_video_frame_count": len(frames), "stream_name": directory.name}))
    return arrays, colours[pre_frames:]


def test_converted_trajectories_are_episode_files_with_the_same_action_set(tmp_path):
    from world_model.sim.minerl_data import convert_minerl

    src = tmp_path / "MineRLNavigate-v0"
    arrays, colours = write_trajectory(src / "traj-a", steps=12)
    write_trajectory(src / "traj-b", steps=5, seed=1)
    (src / "not-a-trajectory").mkdir()
    reports = []
    paths = convert_minerl(src, tmp_path / "out", progress=reports.append)
    assert [p.name for p in paths] == ["traj-a.npz", "traj-b.npz"]
    ep = read_episode(paths[0])
    assert ep["image"].shape == (13, 64, 64, 3) and ep["image"].dtype == np.uint8
    means = ep["image"].reshape(13, -1, 3).mean(1)
    np.testing.assert_allclose(means, colours, atol=4)  # the pre-experiment frames were dropped
    assert ep["action"].shape == (13, 8) and not ep["action"][0].any()
    expected = A.discretize({k[len("action$"):]: v for k, v in arrays.items()
                             if k.startswith("action$") and k != "action$place"})
    np.testing.assert_array_equal(action_indices(ep["action"])[1:], expected)
    np.testing.assert_array_equal(ep["reward"], [0.0, *arrays["reward"]])
    assert str(ep["env_id"]) == "minerl-navigate" and int(ep["num_actions"]) == 8
    assert (reports[0].done, reports[-1].done, reports[-1].total) == (0, 2, 2)


def test_conversion_resumes_and_a_short_video_keeps_the_steps_it_has(tmp_path, capsys):
    src = tmp_path / "src"
    write_trajectory(src / "short", steps=10, pre_frames=0, video_frames=7)
    out = tmp_path / "out"
    assert rad(["convert-minerl", str(src), "--out", str(out)]) == 0
    assert "1 MineRL trajectories" in capsys.readouterr().out
    ep = read_episode(out / "short.npz")
    assert len(ep["image"]) == len(ep["action"]) == len(ep["reward"]) == 7
    stamp = (out / "short.npz").stat().st_mtime_ns
    write_trajectory(src / "later", steps=4)
    assert rad(["convert-minerl", str(src), "--out", str(out)]) == 0
    assert (out / "short.npz").stat().st_mtime_ns == stamp and (out / "later.npz").is_file()
    assert rad(["convert-minerl", str(src), "--out", str(out), "--angle", "30"]) == 2


def test_converted_data_sizes_a_world_to_the_minerl_action_set(tmp_path):
    from world_model.configs import resolve_config
    from world_model.sim.minerl_data import convert_minerl
    from world_model.training.run import fit_to_data

    write_trajectory(tmp_path / "src" / "t", steps=9)
    convert_minerl(tmp_path / "src", tmp_path / "out")
    config = fit_to_data(resolve_config("tiny"), tmp_path / "out")
    assert (config.model.num_actions, config.train.env_id) == (8, "minerl-navigate")
