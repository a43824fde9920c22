"""RADEnv: the learned world behind the Gymnasium API, started from real frames.

A tiny random world (pixel latents, reward head) is saved with real Memory Maze clips as its
context bank (the ``tiny_world`` fixture); every test drives it through the public API only.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from model_utils import CONTEXT, STEPS

from rad_env.bank import BANK_FILE, ContextBank
from rad_env.env import RADEnv
from rad_env.worlds import SHIPPED_WORLD
from world_model.checkpoint import WEIGHTS_FILE
from world_model.data.format import action_indices, read_episode
from world_model.errors import CheckpointError, DataError, UserError
from world_model.sim.maze_env import maze_observation_space


def make(world: Path, **kwargs) -> RADEnv:
    return RADEnv(world, steps=kwargs.pop("steps", STEPS), **kwargs)


def run(env: RADEnv, actions) -> list[np.ndarray]:
    return [env.step(int(a))[0] for a in actions]


# -- the Gymnasium contract -----------------------------------------------------------------------
def test_gymnasium_check_env_passes(tiny_world):
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("rad_env:RAD-MemoryMaze-v0", checkpoint=str(tiny_world), steps=STEPS,
                         render_mode="rgb_array")
    check_env(env.unwrapped)


def test_stable_baselines3_check_env_passes(tiny_world):
    from stable_baselines3.common.env_checker import check_env

    check_env(make(tiny_world), warn=True)


def test_spaces_and_episode_length_are_those_of_the_real_memory_maze(tiny_world):
    env = make(tiny_world)
    assert env.observation_space == maze_observation_space("9x9", extra_obs=False)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(6)
    real, learned = (gymnasium.spec(i) for i in ("MemoryMaze-9x9-v0", "RAD-MemoryMaze-v0"))
    # the learned env truncates itself, at the real env's length; no TimeLimit decides it twice
    assert learned.max_episode_steps is None and real.max_episode_steps == 1000
    assert env.worlds.max_steps == 1000


MAKE_SCRIPTS = {
    "module-qualified id": """
        import sys, gymnasium
        env = gymnasium.make("rad_env:RAD-MemoryMaze-v0", checkpoint=WORLD, steps=2)
    """,
    "bare id after import": """
        import sys, gymnasium, rad_env
        assert "torch" not in sys.modules, "import rad_env must not import torch"
        env = gymnasium.make("RAD-MemoryMaze-v0", checkpoint=WORLD, steps=2)
    """,
}


@pytest.mark.parametrize("form", list(MAKE_SCRIPTS))
def test_both_make_forms_work_in_a_fresh_process(tiny_world, form):
    script = f"WORLD = {str(tiny_world)!r}\n" + textwrap.dedent(MAKE_SCRIPTS[form]) + textwrap.dedent("""
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(1)
        assert obs.shape == (64, 64, 3) and obs.dtype.name == "uint8", obs.shape
        assert env.unwrapped.worlds.max_steps == 1000 and "TimeLimit" not in str(env)
        print("ok", info["frame_index"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", str(CONTEXT)]


# -- determinism and branching --------------------------------------------------------------------
def test_seeded_reset_and_steps_reproduce_and_seeds_matter(tiny_world):
    actions = [1, 1, 2, 5, 0, 3]
    runs = []
    for seed in (7, 7, 8):
        env = make(tiny_world)
        obs, info = env.reset(seed=seed)
        runs.append((obs, info["clip"], run(env, actions)))
    (o1, c1, f1), (o2, c2, f2), (_, _, f3) = runs
    assert c1 == c2 and np.array_equal(o1, o2)
    assert all(np.array_equal(a, b) for a, b in zip(f1, f2))
    assert not all(np.array_equal(a, b) for a, b in zip(f1, f3))


def test_a_restored_snapshot_continues_identically_every_time(tiny_world):
    env = make(tiny_world)
    env.reset(seed=3)
    run(env, [1, 2])
    snapshot = env.get_state()
    first = run(env, [1, 1, 4, 2])
    first_reset, _ = env.reset()  # draws from the env's RNG: restored with the snapshot
    env.set_state(snapshot)
    second = run(env, [1, 1, 4, 2])
    env.set_state(snapshot)
    third = run(env, [1, 1, 4, 2])
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(first, second, third))
    env.set_state(snapshot)
    assert env.step(1)[4]["frame_index"] == CONTEXT + 2
    env.set_state(snapshot)
    run(env, [1, 1, 4, 2])
    assert np.array_equal(env.reset()[0], first_reset)
    env.set_state(snapshot)  # another branch from the same moment goes elsewhere
    assert not all(np.array_equal(a, b) for a, b in zip(first, run(env, [3, 3, 3, 3])))


def test_observing_a_real_frame_equals_starting_from_it(real_episodes_dir, tiny_world):
    episode = read_episode(min(real_episodes_dir.glob("*.npz")))
    frames, actions = episode["image"], action_indices(episode["action"])
    env = make(tiny_world)
    env.reset(seed=11, options={"frames": frames[:6], "actions": actions[:6]})
    obs, *_, info = env.observe(frames[6], actions[6])
    assert np.array_equal(obs, frames[6]) and info["imagined"] is False
    assert info["frame_index"] == 6 and info["step"] == 1
    grounded = run(env, [1, 2, 1])
    env.reset(seed=11, options={"frames": frames[:7], "actions": actions[:7]})
    assert all(np.array_equal(a, b) for a, b in zip(grounded, run(env, [1, 2, 1])))


# -- where episodes start -------------------------------------------------------------------------
def test_resets_start_from_real_frames_of_every_source(real_episodes_dir, tiny_world):
    bank = ContextBank.load(tiny_world / BANK_FILE)
    env = make(tiny_world, data_dir=real_episodes_dir)
    obs, info = env.reset(seed=0)
    assert info["context_source"] == "bank" and np.array_equal(obs, bank.frames[info["clip"], -1])
    assert info["frame_index"] == CONTEXT - 1 and info["step"] == 0
    obs, info = env.reset(options={"clip": 4})
    assert info["clip"] == 4 and np.array_equal(obs, bank.frames[4, -1])
    obs, info = env.reset(options={"context": "data"})
    real = np.concatenate([read_episode(p)["image"] for p in sorted(real_episodes_dir.glob("*.npz"))])
    assert info["context_source"] == "data" and (real == obs).all(axis=(1, 2, 3)).any()
    given = bank.frames[1, :3]
    obs, info = env.reset(options={"frames": given, "actions": [0, 1, 2]})
    assert info["context_source"] == "given" and info["frame_index"] == 2
    assert np.array_equal(obs, given[-1])


def test_real_context_runs_the_real_maze_and_hands_over(tiny_world):
    env = make(tiny_world, context="real", context_len=3)
    obs, info = env.reset(seed=5)
    assert info["context_source"] == "real" and info["frame_index"] == 2
    again, _ = env.reset(seed=5)  # the real maze and its driving actions follow the seed
    assert np.array_equal(obs, again) and obs.std() > 0
    assert env.step(1)[4]["imagined"] is True
    env.close()


def test_context_bank_holds_real_clips_and_their_real_continuation(real_episodes_dir, tiny_world):
    bank = ContextBank.load(tiny_world / BANK_FILE)
    assert bank.frames.shape == (6, CONTEXT, 64, 64, 3) and bank.actions.shape == (6, CONTEXT)
    assert bank.follow_frames.shape == (2, 16, 64, 64, 3) and bank.follow_actions.shape == (2, 16)
    for k in range(2):
        episode = read_episode(real_episodes_dir / bank.episode[k])
        s = int(bank.start[k])
        assert np.array_equal(bank.frames[k], episode["image"][s:s + CONTEXT])
        assert np.array_equal(bank.follow_frames[k], episode["image"][s + CONTEXT:s + CONTEXT + 16])
        assert np.array_equal(bank.follow_actions[k],
                              action_indices(episode["action"])[s + CONTEXT:s + CONTEXT + 16])


# -- rewards, termination, truncation, rendering, dtype -------------------------------------------
def test_reward_and_termination_come_from_the_heads(tmp_path, make_tiny_world, tiny_world):
    rounded, raw = make(tiny_world), make(tiny_world, reward_mode="raw")
    for env in (rounded, raw):
        env.reset(seed=2)
    for action in (1, 2, 1, 3):
        _, r_round, term, _, info_round = rounded.step(action)
        _, r_raw, _, _, info_raw = raw.step(action)
        assert r_raw == pytest.approx(info_raw["reward_raw"]) == pytest.approx(info_round["reward_raw"])
        assert r_round == float(info_round["reward_raw"] >= 0.5) and not term
    ending = make(make_tiny_world(tmp_path / "ending", termination_bias=20.0))
    ending.reset(seed=0)
    _, _, terminated, truncated, info = ending.step(1)
    assert terminated and not truncated and info["termination_prob"] > 0.5
    with pytest.raises(ResetNeeded):
        ending.step(1)


def test_episodes_are_truncated_at_max_steps(tiny_world):
    env = make(tiny_world, max_steps=3)
    env.reset(seed=0)
    flags = [env.step(1)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(1)
    env.reset()
    assert env.step(1)[3] is False


def test_render_returns_the_last_frame(tiny_world):
    env = make(tiny_world, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs)
    obs = env.step(1)[0]
    assert np.array_equal(env.render(), obs)
    assert make(tiny_world).render() is None


def test_bfloat16_compute_dtype_steps(tiny_world):
    env = make(tiny_world, dtype="bfloat16")
    env.reset(seed=0)
    obs = env.step(1)[0]
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8


def test_rad_demo_writes_the_real_clip_beside_the_imagined_run(tiny_world, tmp_path, capsys):
    from world_model.cli import main as rad

    out = tmp_path / "demo.gif"
    assert rad(["demo", "--checkpoint", str(tiny_world), "--clip", "0", "--frames", "20",
                "--steps", "1", "--out", str(out), "--no-progress"]) == 0
    import imageio.v3 as iio

    video = iio.imread(out, index=None)
    assert video.shape[0] == CONTEXT + 20 and video.shape[2] == 2 * video.shape[1]
    printed = capsys.readouterr().out
    assert "20 frames imagined from real clip 0" in printed and "first 16 frames" in printed


# -- clear errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("action,message", [
    (6, r"action 6 is outside Discrete\(6\)"),
    (-1, r"action -1 is outside Discrete\(6\)"),
    (1.5, "not an integer"),
    (np.array([1, 2]), r"actions must be integer \(1,\)"),
    (np.array([2.0]), "not an integer"),
])
def test_a_bad_action_is_named(tiny_world, action, message):
    env = make(tiny_world)
    env.reset(seed=0)
    with pytest.raises(UserError, match=message):
        env.step(action)


def test_stepping_before_reset_asks_for_a_reset(tiny_world):
    with pytest.raises(ResetNeeded, match="reset"):
        make(tiny_world).step(1)


FRAMES = np.zeros((3, 64, 64, 3), np.uint8)


@pytest.mark.parametrize("options,message", [
    ({"frames": FRAMES.astype(np.float32), "actions": [0, 1, 2]},
     r"\(C, H, W, 3\) uint8 with H = W = 64.*float32"),
    ({"frames": FRAMES[:, :32, :32], "actions": [0, 1, 2]}, r"\(3, 32, 32, 3\)"),
    ({"frames": FRAMES, "actions": [0, 1]}, r"actions must be integer \(3,\)"),
    ({"frames": FRAMES, "actions": [0, 1.5, 2]}, "integer"),
    ({"frames": FRAMES, "actions": [0, 1, 9]}, r"action 9 at index 2 is outside Discrete\(6\)"),
    ({"frames": FRAMES}, "'frames' and 'actions' go together"),
    ({"frames": FRAMES, "actions": [0, 1, 2], "clip": 1}, "drop 'context' and 'clip'"),
    ({"context": "dream"}, "'dream'"),
    ({"clip": 6}, "clip 6 does not exist: the context bank has 6 clips"),
    ({"context": "real", "clip": 1}, "clip"),
    ({"speed": 2}, r"unknown reset option\(s\) \['speed'\]"),
    ({"context": "data"}, "data_dir"),
])
def test_a_malformed_context_or_unknown_option_is_named(tiny_world, options, message):
    env = make(tiny_world)
    with pytest.raises(UserError, match=message):
        env.reset(seed=0, options=options)


def test_a_missing_or_corrupt_checkpoint_is_named(tmp_path, tiny_world):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        RADEnv(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", WEIGHTS_FILE, BANK_FILE):
        (broken / name).write_bytes((tiny_world / name).read_bytes())
    (broken / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE}: corrupt"):
        RADEnv(broken)
    (broken / WEIGHTS_FILE).write_bytes((tiny_world / WEIGHTS_FILE).read_bytes())
    (broken / BANK_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=f"{BANK_FILE}: unreadable or corrupt"):
        RADEnv(broken)
    (broken / BANK_FILE).unlink()
    with pytest.raises(CheckpointError, match="no context bank"):
        RADEnv(broken)
    with pytest.raises(DataError, match="no such context bank"):
        RADEnv(broken, contexts=tmp_path / "missing.npz")
    (broken / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config file"):
        RADEnv(broken, context="real")


@pytest.mark.parametrize("kwargs,message", [
    ({"steps": 0}, "steps must be >= 1"),
    ({"dtype": "int8"}, "dtype='int8'"),
    ({"reward_mode": "sum"}, "reward_mode='sum'"),
    ({"context": "dream"}, "context='dream'"),
    ({"context_len": CONTEXT + 1}, "the context bank's clips have 8 frames"),
    ({"device": "warp-drive"}, "not a torch device"),
    ({"max_steps": 0}, "max_steps must be >= 1"),
    ({"max_episode_steps": 5}, (r"unknown option\(s\) of the learned env: 'max_episode_steps' "
                                r"\(did you mean 'max_steps'\?\)")),
    ({"context": "data"}, "context='data' needs data_dir"),
])
def test_bad_keyword_arguments_are_named(tiny_world, kwargs, message):
    with pytest.raises(UserError, match=message):
        RADEnv(tiny_world, **kwargs)


def test_auto_precision_follows_the_cpu(tiny_world, monkeypatch):
    import torch

    from world_model import devices

    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "fma"})  # Zen 3: emulated bf16
    assert make(tiny_world).worlds.engine.compute_dtype == torch.float32
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # Zen 4
    assert make(tiny_world).worlds.engine.compute_dtype == torch.bfloat16
    assert make(tiny_world, dtype="float32").worlds.engine.compute_dtype == torch.float32


# -- the world's own sampler (sampler.json) ---------------------------------------------------------
def test_the_worlds_sampler_file_sets_the_default_steps(tiny_world, tmp_path):
    import shutil

    from world_model.checkpoint import SAMPLER_FILE, load_sampler, save_sampler
    from world_model.config import SamplerConfig

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    assert load_sampler(world) is None
    assert RADEnv(world).worlds.sampling_steps == 10  # no sampler.json: DEFAULT_STEPS
    save_sampler(world, SamplerConfig(3, 0.0), {"note": "measured"})
    assert load_sampler(world) == SamplerConfig(3, 0.0)
    assert RADEnv(world).worlds.sampling_steps == 3
    assert RADEnv(world, steps=2).worlds.sampling_steps == 2  # an explicit argument wins
    save_sampler(world, SamplerConfig(3, 0.0, context_level=25), {"note": "measured"})
    assert RADEnv(world).worlds.engine.context_level == 25  # the world's context level
    assert RADEnv(world, context_level=0).worlds.engine.context_level == 0  # or the caller's
    save_sampler(world, SamplerConfig(3, 0.0, reencode=True), {"note": "measured"})
    assert RADEnv(world).worlds.engine.reencode  # the world's re-encoding
    assert not RADEnv(world, reencode=False).worlds.engine.reencode  # or the caller's
    (world / SAMPLER_FILE).write_text('{"sampler": {"steps": 3, "warp": 9}}')
    with pytest.raises(CheckpointError, match="warp"):
        RADEnv(world)
    (world / SAMPLER_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid sampler file"):
        RADEnv(world)


# -- the shipped world ----------------------------------------------------------------------------
@pytest.mark.skipif(not (SHIPPED_WORLD / "config.json").is_file(),
                    reason=f"no shipped world weights in {SHIPPED_WORLD} (they are added before "
                           f"release; until then RADEnv() raises CheckpointError)")
def test_the_shipped_world_loads_and_steps():
    env = gymnasium.make("rad_env:RAD-MemoryMaze-v0", steps=1)
    obs, info = env.reset(seed=0)
    assert info["context_source"] == "bank"
    for action in (1, 1, 2):
        obs, *_, info = env.step(action)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and info["imagined"]


#: Per-frame brightness (mean) and contrast (std) extremes of real Memory Maze 9x9 frames, over the
#: first 60 episodes (60,060 frames) of `rad collect --env memory-maze-9x9 --episodes 300 --steps
#: 1000 --seed 1` (the shipped world's training data; measured 2026-12-03). Real frames facing a
#: wall close up are darker than any frame of the bank's 32 short clips.
REAL_RANGES = {"mean": np.array([44.02, 154.57]), "std": np.array([19.26, 71.05])}


@pytest.mark.skipif(not (SHIPPED_WORLD / "config.json").is_file(), reason="no shipped world")
def test_the_shipped_world_imagines_300_frames_without_collapse():
    env = gymnasium.make("rad_env:RAD-MemoryMaze-v0")  # the world's own default sampler
    env.reset(seed=0)
    real = env.unwrapped.worlds.contexts.bank.frames.reshape(-1, 64, 64, 3).astype(np.float64)
    # the real frames' range: the bank's clips (384 frames) and REAL_RANGES (60,060 frames)
    real_mean = np.concatenate([real.mean(axis=(1, 2, 3)), REAL_RANGES["mean"]])
    real_std = np.concatenate([real.std(axis=(1, 2, 3)), REAL_RANGES["std"]])
    rng = np.random.default_rng(0)
    frames = np.stack([env.step(int(rng.integers(6)))[0] for _ in range(300)]).astype(np.float64)
    env.close()
    assert np.isfinite(frames).all()
    mean, std = frames.mean(axis=(1, 2, 3)), frames.std(axis=(1, 2, 3))
    # every imagined frame's brightness and contrast lie within those of the real frames (a
    # collapse to black, white or saturated noise leaves them). Under these uniformly random
    # actions the views are textures by frame 50 (docs/training.md); the darkest of them, 38.1
    # with the world's context level 25 (44.8 with a clean context), is 13% below the darkest real
    # frame (44.02), hence 15% here
    assert real_mean.min() * 0.85 <= mean.min() and mean.max() <= real_mean.max() * 1.1
    assert real_std.min() * 0.5 <= std.min() and std.max() <= real_std.max() * 1.1


def test_without_shipped_weights_the_default_env_says_so(monkeypatch, tmp_path):
    import world_model.loading

    monkeypatch.setattr(world_model.loading, "SHIPPED_WORLD", tmp_path / "memory-maze-9x9")
    with pytest.raises(CheckpointError, match="ships no world weights"):
        RADEnv()
