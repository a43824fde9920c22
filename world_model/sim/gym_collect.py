"""``rad collect`` for every real environment but Memory Maze: Crafter, MineRL, any Gymnasium
pixel env (:mod:`world_model.sim.real_envs`), under a random or user-given policy, resumably.

Episode ``i`` of a run is fixed by ``episode_seed(seed, i)`` (:mod:`world_model.seeding`, as for
Memory Maze): it is the seed
of the env's ``reset`` and of the policy's generator, and is stored in the file as ``seed``. Files
are ``OUT/ep_{i:06d}.npz`` (written atomically; see :mod:`world_model.sim.pixel_recorder` for the
arrays, which record ``env_id`` and ``num_actions``), the run's settings ``OUT/rad-collect.json``.
Re-running the same command keeps finished episodes and collects only the missing ones.
Episodes last ``steps`` steps, or less where the env ends them (a Crafter player dies).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.errors import UserError
from world_model.seeding import episode_seed
from world_model.sim.gym_policies import load_policy
from world_model.sim.jobs import EpisodeJob, Workers, run_missing
from world_model.sim.output_dir import episode_path
from world_model.sim.pixel_recorder import record_pixel_episode
from world_model.sim.pool import Progress
from world_model.sim.real_envs import make_real_env, real_env_spec

log = logging.getLogger(__name__)

_ENVS: dict[tuple[str, int], object] = {}  # one env per process, reused: every reset is seeded


def _env(env_id: str, size: int):
    key = (env_id, size)
    if key not in _ENVS:
        _ENVS[key] = make_real_env(env_id, size)
    return _ENVS[key]


def collect_pixel_episode(env_id: str, seed: int, steps: int, policy: str = "random",
                          size: int = 64) -> dict[str, np.ndarray]:
    """One episode in memory: the env's ``reset(seed=seed)``, then ``steps`` steps (fewer if it
    ends) of the policy ``policy`` driven by ``np.random.default_rng(seed)``. The same arguments
    give the same arrays (for an env whose seeded resets are reproducible)."""
    env = _env(env_id, size)
    act = load_policy(policy)(env.action_space, np.random.default_rng(seed))
    return record_pixel_episode(env, act, steps, seed, env_id)


@dataclass(frozen=True)
class PixelCollectJob(EpisodeJob):
    """Collect and write one episode."""

    env_id: str
    seed: int
    steps: int
    policy: str
    size: int

    def make(self, notes: list[str]) -> dict[str, np.ndarray]:
        return collect_pixel_episode(self.env_id, self.seed, self.steps, self.policy, self.size)


def collect_pixels(out: str | os.PathLike, episodes: int, *, env: str, steps: int = 1000,
                   workers: int = 1, seed: int = 0, policy: str = "random", size: int = 64,
                   progress: Callable[[Progress], None] | None = None) -> list[Path]:
    """Collect ``episodes`` episodes of the real env ``env`` into ``out``.

    Args:
        out: output directory (``ep_{i:06d}.npz`` + ``rad-collect.json``), created if missing.
        episodes: total number of episodes wanted in ``out``.
        env: ``crafter``, ``minerl-navigate``, ``gym:ENV_ID`` (see
            :mod:`world_model.sim.real_envs`).
        steps: at most this many actions per episode; at most the env's episode length.
        workers: processes collecting in parallel; 1 runs here.
        seed: base seed; episode ``i`` uses ``episode_seed(seed, i)``.
        policy: ``random`` or a factory (:mod:`world_model.sim.gym_policies`).
        size: side of the square frames.
        progress: called once before collecting and after each finished episode.

    Returns:
        The paths of all ``episodes`` files, in index order.
    """
    spec = real_env_spec(env)
    if episodes < 1 or workers < 1 or size < 8:
        raise UserError(f"need --episodes >= 1, --workers >= 1, --size >= 8; got {episodes}, "
                        f"{workers}, {size}")
    if steps < 1 or (spec.episode_steps is not None and steps > spec.episode_steps):
        raise UserError(f"--steps must be in [1, {spec.episode_steps or 'inf'}] for {env}, "
                        f"got {steps}")
    load_policy(policy)  # a bad --policy fails here, before any worker starts
    _env(spec.id, size)  # and so does a missing simulator or an unfit env (kept for the jobs)
    settings = {"env": spec.id, "steps": steps, "seed": seed, "policy": policy, "size": size}
    return run_missing(
        out, "rad-collect.json", settings, [episode_path(out, i) for i in range(episodes)],
        lambda i, p: PixelCollectJob(i, str(p), spec.id, episode_seed(seed, i), steps, policy, size),
        workers=Workers(workers), progress=progress, what=f"{spec.id} episodes", logger=log)
