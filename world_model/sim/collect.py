"""Collect Memory Maze trajectories with the scripted exploration policy, in parallel, resumably.

Episode ``i`` of a run is fully determined by ``episode_seed(seed, i)``
(:mod:`world_model.seeding`): it seeds the simulator (a fresh ``dm_env`` task per episode, first
maze of that task) and the policy's generator, and is stored in the file as the scalar ``seed``.
Files are ``OUT/ep_{i:06d}.npz``, written atomically, so re-running the same command keeps
finished episodes and collects only the missing ones (:mod:`world_model.sim.jobs`).

:func:`collect` is the API (``rad collect`` is its CLI); :func:`simulator_workers` says how
worker processes of the real simulator are set up, here and in :mod:`world_model.sim.evalset`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.errors import UserError
from world_model.seeding import episode_seed
from world_model.sim import fast_maze
from world_model.sim.jobs import EpisodeJob, Workers, run_missing
from world_model.sim.memory_maze import SIZES, make_dm_env, parse_size, quiet_simulator_logs
from world_model.sim.output_dir import episode_path
from world_model.sim.policies import ExplorationConfig, ExplorationPolicy
from world_model.sim.pool import Progress
from world_model.sim.recorder import record_episode

log = logging.getLogger(__name__)


def collect_episode(size: str, seed: int, steps: int, noise: float) -> dict[str, np.ndarray]:
    """One exploration episode in memory: ``make_dm_env(size, seed)``, its first maze, ``steps``
    steps of :class:`ExplorationPolicy` driven by ``np.random.default_rng(seed)``. The same
    arguments give the same arrays."""
    env = make_dm_env(size, seed=seed, global_observables=True, image_only_obs=False)
    try:
        policy = ExplorationPolicy(np.random.default_rng(seed), ExplorationConfig(noise=noise))
        rec = record_episode(env, policy.act, steps)
    finally:
        env.close()
    if len(rec) != steps + 1:
        raise RuntimeError(f"episode with seed {seed} ended after {len(rec) - 1} of {steps} steps")
    return rec.episode(seed=seed)


@dataclass(frozen=True)
class CollectJob(EpisodeJob):
    """Collect and write one episode."""

    size: str
    seed: int
    steps: int
    noise: float

    def make(self, notes: list[str]) -> dict[str, np.ndarray]:
        return collect_episode(self.size, self.seed, self.steps, self.noise)


def simulator_workers(count: int, fast: bool) -> Workers:
    """``count`` processes running the real simulator: ``fast`` selects the vectorised
    target-contact check (:mod:`world_model.sim.fast_maze`) where they run (here, the previous
    choice is restored afterwards); workers start with quiet simulator logs."""
    return Workers(count, functools.partial(fast_maze.fast_target_contacts, fast),
                   quiet_simulator_logs)


def collect(out: str | os.PathLike, episodes: int, *, env: str = "memory-maze-9x9",
            steps: int = 1000, workers: int = 1, seed: int = 0, noise: float = 0.25,
            fast: bool = True, progress: Callable[[Progress], None] | None = None) -> list[Path]:
    """Collect ``episodes`` exploration episodes of ``steps`` steps each into ``out``.

    Episodes already in ``out`` (from an earlier, possibly interrupted run with the same
    settings) are kept; only missing indices are collected. An interrupt (KeyboardInterrupt,
    SIGTERM) loses at most the episodes in flight and leaves no temporary file.

    Args:
        out: output directory, created if missing; holds ``ep_{i:06d}.npz`` and
            ``rad-collect.json`` (the run's settings, checked on resume).
        episodes: total number of episodes wanted in ``out``.
        env: ``"memory-maze-9x9"`` (or 11x11, 13x13, 15x15).
        steps: actions per episode (files hold ``steps + 1`` frames); at most the size's episode
            length (1000 for 9x9).
        workers: processes collecting in parallel; 1 runs in this process.
        seed: base seed; episode ``i`` uses ``episode_seed(seed, i)``.
        noise: probability of a uniformly random action at each step.
        fast: vectorised target-contact check (:mod:`world_model.sim.fast_maze`), same frames.
        progress: called here once before collecting and after each finished episode.

    Returns:
        The paths of all ``episodes`` files, in index order.
    """
    size = parse_size(env)
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    if not 1 <= steps <= SIZES[size]:
        raise UserError(f"--steps must be in [1, {SIZES[size]}] for memory-maze-{size}, got {steps}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if not 0.0 <= noise <= 1.0:
        raise UserError(f"--noise must be a probability in [0, 1], got {noise}")

    settings = {"env": f"memory-maze-{size}", "steps": steps, "seed": seed, "noise": noise,
                "policy": "navigate-to-random-cells"}
    return run_missing(
        out, "rad-collect.json", settings, [episode_path(out, i) for i in range(episodes)],
        lambda i, p: CollectJob(i, str(p), size, episode_seed(seed, i), steps, noise),
        workers=simulator_workers(workers, fast), frames=steps + 1, progress=progress,
        logger=log)
