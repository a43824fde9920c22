"""The paper's "outbound and return" evaluation trajectories (RAD, Sec. 5.1).

From its spawn point the agent turns in place towards a shortest path through the maze, follows
it cell by cell to a distant goal cell, turns around in place there, and follows the same cells
back to the start. A trajectory has ``min_frames``..``max_frames`` frames (100..300 in the paper)
and is stored in the official layout plus the scalars ``seed`` (reproduces it),
``outbound_frames`` (frames up to and including the arrival at the goal) and ``context_frames``
(``round(0.6 * frames)``, the frames given to a model as context).

Why this shape: the return re-traces the outbound cells in reverse, and turning around in place
at the goal makes the first return frames continue the last outbound ones, so what the model must
predict in the last 40% is space it has already been shown (from the other direction).

The controller is deterministic (no action noise) and works only from ``maze_layout``,
``agent_pos`` and ``agent_dir``. A trajectory that fails (stuck, wrong length, return not within
half a cell of the start, return cells not mirroring the outbound cells) is never saved: it is
replaced by a new attempt with the next seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.errors import UserError
from world_model.seeding import attempt_seed
from world_model.sim import navigation as nav
from world_model.sim.collect import simulator_workers
from world_model.sim.jobs import EpisodeJob, run_missing
from world_model.sim.memory_maze import make_dm_env, parse_size
from world_model.sim.output_dir import episode_path
from world_model.sim.pool import Progress
from world_model.sim.recorder import EpisodeRecorder

log = logging.getLogger(__name__)

CONTEXT_FRACTION = 0.6
#: Rough cost model of the controller, used only to pick goals; every attempt is checked.
STEPS_PER_CELL = 4.0
STEPS_PER_CORNER = 3.5
STEPS_TURN_AROUND = 10.0


class Rejected(Exception):
    """An attempt that does not meet the protocol; the message says why."""


def estimate_frames(path: list[nav.Cell], start_dir: np.ndarray) -> float:
    """Expected frame count of the round trip along ``path`` (cost model, for goal choice)."""
    corners = len(nav.corner_indices(path)) - 1
    first = nav.cell_center(path[min(1, len(path) - 1)]) - nav.cell_center(path[0])
    initial_turn = abs(np.degrees(nav.signed_angle(start_dir, first))) / 18.4 if len(path) > 1 else 0
    one_way = STEPS_PER_CELL * (len(path) - 1) + STEPS_PER_CORNER * corners
    return 1 + initial_turn + 2 * one_way + STEPS_TURN_AROUND


def choose_path(layout: np.ndarray, pos: np.ndarray, heading: np.ndarray,
                rng: np.random.Generator, min_frames: int, max_frames: int) -> list[nav.Cell]:
    """A shortest path from the agent's cell to a goal whose round trip is expected to take
    ``min_frames``..``max_frames`` frames; among those goals, a uniformly random one."""
    start = nav.cell_of(pos)
    dist = nav.bfs_distances(layout, start)
    candidates = []
    for goal in zip(*np.nonzero(dist > 0)):
        path = nav.shortest_path(layout, start, (int(goal[0]), int(goal[1])))
        if min_frames <= estimate_frames(path, heading) <= max_frames:
            candidates.append(path)
    if not candidates:
        raise Rejected(f"no goal in this maze gives {min_frames}..{max_frames} frames "
                       f"(farthest cell is {dist.max()} cells away)")
    return candidates[int(rng.integers(len(candidates)))]


def visited_cells(positions: np.ndarray) -> list[nav.Cell]:
    """Cells along ``positions`` ``(T, 2)``, consecutive repeats merged."""
    cells: list[nav.Cell] = []
    for pos in positions:
        cell = nav.cell_of(pos)
        if not cells or cells[-1] != cell:
            cells.append(cell)
    return cells


def round_trip(env, path: list[nav.Cell], first_obs: dict, max_frames: int,
               reach_radius: float = 0.3) -> tuple[EpisodeRecorder, int]:
    """Drive ``env`` along ``path`` and back; returns the recording and ``outbound_frames``.

    Raises :class:`Rejected` if the agent needs more than ``max_frames`` frames.
    """
    rec = EpisodeRecorder(first_obs)
    obs = first_obs
    outbound_frames = 0
    follower = nav.PathFollower(path, reach_radius)
    while True:
        action = follower.act(obs["agent_pos"], obs["agent_dir"])
        if follower.done:
            if outbound_frames:
                return rec, outbound_frames
            outbound_frames = len(rec)  # this frame is the arrival at the goal
            follower = nav.PathFollower(path[::-1], reach_radius)
            continue
        if len(rec) >= max_frames:
            leg = "return" if outbound_frames else "outbound"
            raise Rejected(f"not back after {max_frames} frames (stuck on the {leg} leg at "
                           f"{np.round(obs['agent_pos'], 2).tolist()})")
        ts = env.step(action)
        obs = ts.observation
        rec.add(action, ts.reward, obs)


def check_round_trip(positions: np.ndarray, path: list[nav.Cell], outbound_frames: int,
                     min_frames: int, max_frames: int) -> None:
    """Raise :class:`Rejected` unless ``positions`` ``(T+1, 2)`` is a valid round trip."""
    n = len(positions)
    if not min_frames <= n <= max_frames:
        raise Rejected(f"{n} frames, outside {min_frames}..{max_frames}")
    miss = float(np.linalg.norm(positions[-1] - positions[0]))
    if miss >= 0.5:
        raise Rejected(f"ended {miss:.2f} cells from the start (must be < 0.5)")
    outbound = visited_cells(positions[:outbound_frames])
    back = visited_cells(positions[outbound_frames - 1:])
    if outbound != path or back != path[::-1]:
        raise Rejected(f"cells visited {outbound} out and {back} back, planned {path}")


def make_trajectory(size: str, seed: int, min_frames: int, max_frames: int) -> dict[str, np.ndarray]:
    """One evaluation trajectory from simulator seed ``seed`` (the goal is drawn with
    ``np.random.default_rng(seed)``). Raises :class:`Rejected` if it fails the protocol."""
    env = make_dm_env(size, seed=seed, global_observables=True, image_only_obs=False)
    try:
        obs = env.reset().observation
        rng = np.random.default_rng(seed)
        path = choose_path(obs["maze_layout"], obs["agent_pos"], obs["agent_dir"], rng,
                           min_frames, max_frames)
        rec, outbound_frames = round_trip(env, path, obs, max_frames)
    finally:
        env.close()
    check_round_trip(rec.column("agent_pos"), path, outbound_frames, min_frames, max_frames)
    n = len(rec)
    return rec.episode(seed=seed, outbound_frames=outbound_frames,
                       context_frames=int(np.floor(CONTEXT_FRACTION * n + 0.5)))


@dataclass(frozen=True)
class EvalJob(EpisodeJob):
    """Make and write one evaluation trajectory, retrying with new seeds
    (``attempt_seed(seed, index, attempt)``, :mod:`world_model.seeding`)."""

    size: str
    seed: int
    min_frames: int
    max_frames: int
    max_attempts: int

    def make(self, notes: list[str]) -> dict[str, np.ndarray]:
        for attempt in range(self.max_attempts):
            seed = attempt_seed(self.seed, self.index, attempt)
            try:
                return make_trajectory(self.size, seed, self.min_frames, self.max_frames)
            except Rejected as why:
                notes.append(f"trajectory {self.index}, seed {seed} rejected: {why}")
        raise UserError(f"trajectory {self.index}: {self.max_attempts} attempts failed (last: "
                        f"{notes[-1]}); is --min-frames/--max-frames feasible for this maze size?")


def make_evalset(out: str | os.PathLike, trajectories: int, *, env: str = "memory-maze-9x9",
                 seed: int = 0, min_frames: int = 100, max_frames: int = 300, workers: int = 1,
                 fast: bool = True, max_attempts: int = 20,
                 progress: Callable[[Progress], None] | None = None) -> list[Path]:
    """Write ``trajectories`` outbound-and-return trajectories to ``out/ep_{i:06d}.npz``.

    Resumable like :func:`~world_model.sim.collect.collect`: existing files are kept, settings
    are checked against ``out/rad-evalset.json``. Rejected attempts are logged as warnings.

    Returns:
        The paths of all ``trajectories`` files, in index order.
    """
    size = parse_size(env)
    if trajectories < 1:
        raise UserError(f"--trajectories must be >= 1, got {trajectories}")
    if not 2 <= min_frames <= max_frames:
        raise UserError(f"need 2 <= --min-frames <= --max-frames, got {min_frames}, {max_frames}")
    if workers < 1 or max_attempts < 1:
        raise UserError("--workers and max_attempts must be >= 1")
    settings = {"env": f"memory-maze-{size}", "seed": seed, "min_frames": min_frames,
                "max_frames": max_frames, "protocol": "outbound-and-return"}
    return run_missing(
        out, "rad-evalset.json", settings, [episode_path(out, i) for i in range(trajectories)],
        lambda i, p: EvalJob(i, str(p), size, seed, min_frames, max_frames, max_attempts),
        workers=simulator_workers(workers, fast), progress=progress, what="trajectories",
        logger=log)
