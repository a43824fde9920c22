"""The real Memory Maze behind Gymnasium 1.x: API conformance, seeding, registration, time limit.

Building a task takes ~2-5 s and each reset ~1-2 s, so the tests share module-scoped envs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import gymnasium
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

if importlib.util.find_spec("memory_maze") is None:  # its __init__ needs legacy gym: find, not import
    pytest.skip("the Memory Maze simulator is not installed (pip install 'rad-env[maze]')",
                allow_module_level=True)

import rad_env  # registers the ids
from world_model.data.format import GLOBAL_KEYS
from world_model.errors import UserError
from world_model.sim.maze_env import MemoryMazeEnv, maze_observation_space
from world_model.sim.memory_maze import SIZES, _looks_like_gl_error, make_dm_env

ACTIONS = [1, 1, 3, 1, 4, 2, 1, 5]


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nothing imported yet)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **env}, check=False)


def _rollout(env: MemoryMazeEnv, seed: int | None) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    for a in ACTIONS:
        frames.append(env.step(a)[0])
    return np.stack(frames)


@pytest.fixture(scope="module")
def env9():
    env = MemoryMazeEnv("9x9", render_mode="rgb_array")
    yield env
    env.close()


@pytest.mark.parametrize("env_id", ["MemoryMaze-9x9-v0", "MemoryMaze-9x9-ExtraObs-v0"])
def test_check_env_passes_on_the_real_maze(env_id):
    env = gymnasium.make(env_id)
    try:
        check_env(env.unwrapped)  # the raw env, as gymnasium recommends; it has the spec
    finally:
        env.close()


def test_seeded_reset_reproduces_the_official_env_and_other_seeds_differ(env9):
    ours = _rollout(env9, seed=5)
    official = make_dm_env("9x9", seed=5, global_observables=False, image_only_obs=True)
    try:
        frames = [official.reset().observation]
        frames += [official.step(a).observation for a in ACTIONS]
    finally:
        official.close()
    assert ours.shape == (len(ACTIONS) + 1, 64, 64, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, np.stack(frames))
    np.testing.assert_array_equal(_rollout(env9, seed=5), ours)
    assert not np.array_equal(_rollout(env9, seed=6), ours)


def test_image_mode_puts_global_observables_in_info_and_render_returns_last_image(env9):
    obs, info = env9.reset(seed=1)
    obs, reward, terminated, truncated, info = env9.step(1)
    assert obs in env9.observation_space
    assert isinstance(reward, float) and not terminated and not truncated
    extra_space = maze_observation_space("9x9", extra_obs=True)
    assert set(info) == set(GLOBAL_KEYS)
    for key in GLOBAL_KEYS:
        assert info[key] in extra_space[key], key
    np.testing.assert_array_equal(env9.render(), obs)
    # border = target colour * 255 * 0.7, as the official MemoryMaze-9x9-v0 draws it
    np.testing.assert_array_equal(obs[0, 32], (info["target_color"] * 255 * 0.7).astype(np.uint8))


def test_task_time_limit_equals_the_registered_max_episode_steps(env9):
    env9.reset(seed=2)
    assert env9.episode_steps == SIZES["9x9"] == 1000
    assert gymnasium.spec("MemoryMaze-9x9-v0").max_episode_steps == 1000


def test_episode_is_truncated_not_terminated_at_exactly_max_steps():
    env = MemoryMazeEnv("9x9", max_steps=5)
    try:
        env.reset(seed=0)
        assert env.episode_steps == 5
        flags = [env.step(0)[2:4] for _ in range(5)]
        assert flags == [(False, False)] * 4 + [(False, True)]
        with pytest.raises(ResetNeeded):
            env.step(0)
        env.reset()  # the next episode has the same limit
        assert [env.step(0)[3] for _ in range(5)] == [False] * 4 + [True]
    finally:
        env.close()


@pytest.mark.expensive
def test_full_length_episode_truncates_at_exactly_1000_steps_through_gymnasium_make():
    env = gymnasium.make("rad_env:MemoryMaze-9x9-v0")
    try:
        env.reset(seed=0)
        for t in range(1, 1001):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert not terminated
            assert truncated == (t == 1000), t
        assert env.unwrapped._episode_over  # the task itself ended the episode on step 1000
    finally:
        env.close()


def test_all_sizes_and_variants_are_registered_with_string_entry_points():
    for size, steps in SIZES.items():
        for suffix, extra in (("", False), ("-ExtraObs", True)):
            spec = gymnasium.spec(f"MemoryMaze-{size}{suffix}-v0")
            assert spec.entry_point == "world_model.sim.maze_env:MemoryMazeEnv"
            assert spec.kwargs == {"size": size, "extra_obs": extra}
            assert spec.max_episode_steps == steps
    assert rad_env.register_envs() == []  # idempotent


def test_extra_obs_spaces_match_the_real_11x11_task():
    env = gymnasium.make("MemoryMaze-11x11-ExtraObs-v0")
    try:
        obs, info = env.reset(seed=0)
        assert set(obs) == {"image", *GLOBAL_KEYS} and info == {}
        assert obs in env.observation_space
        assert obs["maze_layout"].shape == (11, 11) and obs["targets_pos"].shape == (4, 2)
        assert env.action_space == gymnasium.spaces.Discrete(6)
        obs, *_ = env.step(1)
        assert obs in env.observation_space
    finally:
        env.close()


def test_gymnasium_make_works_in_a_fresh_process_with_and_without_import():
    prefixed = _run_python("""
        import gymnasium
        try:
            gymnasium.make("MemoryMaze-9x9-v0")
        except gymnasium.error.NameNotFound:
            pass
        else:
            raise SystemExit("bare id found before rad_env was imported")
        env = gymnasium.make("rad_env:MemoryMaze-9x9-v0")
        obs, _ = env.reset(seed=0)
        print(type(env.unwrapped).__name__, obs.shape, env.spec.max_episode_steps)
    """)
    assert prefixed.returncode == 0, prefixed.stderr
    assert "MemoryMazeEnv (64, 64, 3) 1000" in prefixed.stdout
    bare = _run_python("""
        import gymnasium, rad_env
        env = gymnasium.make("MemoryMaze-9x9-ExtraObs-v0")
        print(type(env.unwrapped).__name__, sorted(env.observation_space.spaces)[0])
    """)
    assert bare.returncode == 0, bare.stderr
    assert "MemoryMazeEnv agent_dir" in bare.stdout


def test_import_rad_env_loads_no_torch_and_no_simulator():
    result = _run_python("""
        import sys, rad_env
        print(sorted(m for m in ("torch", "mujoco", "dm_control", "memory_maze", "labmaze")
                     if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_unknown_mujoco_gl_gives_one_clear_backend_error():
    result = _run_python("""
        import gymnasium
        from world_model.errors import BackendError
        try:
            gymnasium.make("rad_env:MemoryMaze-9x9-v0")
        except BackendError as exc:
            print("BackendError:", exc)
    """, MUJOCO_GL="bogus")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("BackendError: MUJOCO_GL='bogus' is not a rendering backend"), out
    assert "MUJOCO_GL=egl" in out and "MUJOCO_GL=osmesa" in out and "libosmesa6" in out


def test_gl_errors_are_recognised_by_origin_not_by_the_letters_gl():
    assert not _looks_like_gl_error(ValueError("bad value for global_observables"))
    assert _looks_like_gl_error(RuntimeError("Failed to initialize EGL display"))
    # PyOpenGL without libOSMesa fails with a bare AttributeError; its origin identifies it
    code = compile("raise AttributeError(\"'NoneType' object has no attribute 'glGetError'\")",
                   "/venv/site-packages/OpenGL/raw/GL/_errors.py", "exec")
    with pytest.raises(AttributeError) as info:
        exec(code)  # noqa: S102
    assert _looks_like_gl_error(info.value)
    assert not _looks_like_gl_error(AttributeError("'NoneType' object has no attribute 'foo'"))


def test_bad_arguments_are_user_errors_naming_the_fix():
    with pytest.raises(UserError, match="reset\\(seed=...\\)"):
        MemoryMazeEnv("9x9", seed=3)
    with pytest.raises(UserError, match="extra_obs"):
        MemoryMazeEnv("9x9", global_observables=True)
    with pytest.raises(UserError, match="unknown Memory Maze size"):
        MemoryMazeEnv("10x10")
    with pytest.raises(UserError, match="render_mode"):
        MemoryMazeEnv("9x9", render_mode="human")


def test_too_many_real_envs_for_the_memory_available_are_warned_about(caplog):
    from world_model.sim.maze_env import TASK_RSS_MIB, available_memory_mib, warn_if_short_of_memory

    with caplog.at_level("WARNING", logger="world_model.sim.maze_env"):
        assert not warn_if_short_of_memory(2, available_mib=3 * TASK_RSS_MIB)
        assert not caplog.records
        assert warn_if_short_of_memory(16, available_mib=8 * 1024)
    (record,) = caplog.records
    assert "16 real Memory Maze envs" in record.getMessage() and "--num-envs" in record.getMessage()
    free = available_memory_mib()  # this machine's /proc/meminfo, where there is one
    if free is not None:
        assert free > 0 and warn_if_short_of_memory(1_000_000)  # a million tasks never fit
