"""Shared pytest fixtures. Keep this file small: one fixture per concern."""

from __future__ import annotations

import importlib.util
import os

# Tiny test models are fastest (and steadiest on a loaded 2-core machine) on one thread; set before
# torch is imported so subprocesses (CLI tests, torchrun) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def real_episodes_dir(tmp_path_factory):
    """A directory of 3 real Memory Maze 9x9 episodes, 41 frames (40 random actions) each.

    Written with ``world_model.data.format.write_episode`` in the official offline data set layout:
    ``image (41, 64, 64, 3) uint8``, one-hot ``action (41, 6)`` with an all-zero first row,
    ``reward (41,)`` with ``reward[0] = 0``, and every global observable. Seeded: same files on
    every run. Takes ~10 s (building the simulator).
    """
    if importlib.util.find_spec("memory_maze") is None:
        pytest.skip("the Memory Maze simulator is not installed (pip install 'rad-env[maze]')")
    from world_model.data.format import write_episode
    from world_model.sim.memory_maze import NUM_ACTIONS, make_dm_env
    from world_model.sim.recorder import record_episode

    root = tmp_path_factory.mktemp("real_episodes")
    env = make_dm_env("9x9", seed=0, global_observables=True, image_only_obs=False)
    rng = np.random.default_rng(0)
    try:
        for episode in range(3):  # three mazes of one task
            rec = record_episode(env, rng.integers(NUM_ACTIONS, size=40))
            write_episode(root / f"episode-{episode:03d}.npz", rec.episode())
    finally:
        env.close()
    return root


@pytest.fixture(scope="session")
def make_tiny_world(real_episodes_dir):
    """``make_tiny_world(run_dir, termination_bias=-20.0) -> run_dir``: the tiny world
    (``model_utils.save_tiny_world``) with real clips of :func:`real_episodes_dir`."""
    from model_utils import save_tiny_world

    return lambda run_dir, **kwargs: save_tiny_world(run_dir, real_episodes_dir, **kwargs)


@pytest.fixture(scope="session")
def tiny_world(make_tiny_world, tmp_path_factory):
    """The tiny world's run directory (``.../tiny-lstm``: config.json, model.safetensors,
    contexts.npz), shared by every test that needs a saved world."""
    return make_tiny_world(tmp_path_factory.mktemp("worlds") / "tiny-lstm")
