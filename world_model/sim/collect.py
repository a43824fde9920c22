"""Collect Memory Maze trajectories with the scripted exploration policy, in parallel, resumably.

Episode ``i`` of a run is fully determined by ``episode_seed(seed, i)``: it seeds the simulator
(a fresh ``dm_env`` task per episode, first maze of that task) and the policy's generator, and is
stored in the file as the scalar ``seed``. Files are ``OUT/ep_{i:06d}.npz``, written atomically,
so re-running the same command keeps finished episodes and collects only the missing ones.

:func:`collect` is the API (``rad collect`` is its CLI); :func:`run_simulator_jobs` runs jobs of
the real simulator on the process pool (:mod:`world_model.sim.pool`), here and in
:mod:`world_model.sim.evalset`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.data.format import write_episode
from world_model.errors import UserError
from world_model.sim import fast_maze
from world_model.sim.memory_maze import SIZES, make_dm_env, parse_size, quiet_simulator_logs
from world_model.sim.output_dir import OutputDir, episode_path
from world_model.sim.policies import ExplorationConfig, ExplorationPolicy
from world_model.sim.pool import JobResult, Progress, run_jobs
from world_model.sim.recorder import record_episode

log = logging.getLogger(__name__)

_COLLECT_TAG = 0x636F6C6C  # "coll": keeps collection seeds apart from evaluation-set seeds


def episode_seed(seed: int, index: int) -> int:
    """Simulator and policy seed of episode ``index`` of a run with base ``seed``: an int in
    ``[0, 2**32)``, the range ``numpy.random.RandomState`` accepts."""
    return int(np.random.SeedSequence([seed, index, _COLLECT_TAG]).generate_state(1)[0])


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
class CollectJob:
    """Collect and write one episode (picklable: sent to worker processes)."""

    index: int
    path: str
    size: str
    seed: int
    steps: int
    noise: float

    def __call__(self) -> JobResult:
        start = time.perf_counter()
        ep = collect_episode(self.size, self.seed, self.steps, self.noise)
        write_episode(self.path, ep)
        return JobResult(self.index, self.path, len(ep["image"]), float(ep["reward"].sum()),
                         time.perf_counter() - start)


def run_simulator_jobs(jobs: Sequence[Callable[[], JobResult]], workers: int, fast: bool,
                       on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """:func:`~world_model.sim.pool.run_jobs` for jobs that run the real simulator: ``fast``
    selects the vectorised target-contact check (:mod:`world_model.sim.fast_maze`) where they run
    (here, the previous choice is restored afterwards); workers start with quiet simulator logs."""
    return run_jobs(jobs, workers=workers, setup=functools.partial(fast_maze.fast_target_contacts, fast),
                    worker_init=quiet_simulator_logs, on_result=on_result)


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
    paths = [episode_path(out, i) for i in range(episodes)]
    with OutputDir(out, "rad-collect.json", settings) as out_dir:
        todo = [CollectJob(i, str(p), size, episode_seed(seed, i), steps, noise)
                for i, p in enumerate(paths) if not out_dir.has_episode(p, steps + 1)]
        done = episodes - len(todo)
        log.info("%s: %d of %d episodes present; collecting %d with %d worker(s)",
                 out, done, episodes, len(todo), workers)
        if progress is not None:
            progress(Progress(done, episodes))

        def on_result(result: JobResult) -> None:
            nonlocal done
            done += 1
            log.debug("episode %d: %d frames, reward %.0f, %.1f s", result.index, result.frames,
                      result.reward, result.seconds)
            if progress is not None:
                progress(Progress(done, episodes, result))

        run_simulator_jobs(todo, workers, fast, on_result)
    return paths
