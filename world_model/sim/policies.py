"""Scripted exploration policy for data collection: navigate to random points under action noise.

This is how the official Memory Maze offline data set was made ("a scripted policy, which
navigates to randomly chosen points in the maze under action noise"; its code was never
released). The policy reads the global observables ``maze_layout``, ``agent_pos`` and
``agent_dir`` (see :mod:`world_model.sim.navigation` for their conventions), plans a shortest
path to a random free cell, follows it with :class:`~world_model.sim.navigation.PathFollower`,
and replaces the planned action by a uniformly random one with probability ``noise``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from world_model.sim import navigation as nav


@dataclass(frozen=True)
class ExplorationConfig:
    """Settings of :class:`ExplorationPolicy`."""

    noise: float = 0.25
    """Probability that a step's action is replaced by a uniformly random one."""
    num_actions: int = 6
    """Size of the discrete action set the random actions are drawn from."""
    stuck_steps: int = 40
    """Window (steps) over which the agent must move at least ``stuck_distance``..."""
    stuck_distance: float = 0.5
    """...cells, or the current goal is given up and a new one drawn."""
    reach_radius: float = 0.3
    """A waypoint counts as reached within this many cells of its centre."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must be a probability in [0, 1], got {self.noise}")
        if self.stuck_steps < 1 or self.stuck_distance <= 0:
            raise ValueError("stuck_steps must be >= 1 and stuck_distance > 0")


class ExplorationPolicy:
    """Goes to uniformly random free cells, one after another, with random actions mixed in.

    A new goal is drawn when the current one is reached or the agent is stuck (moved less than
    ``stuck_distance`` cells in ``stuck_steps`` steps); the path is re-planned from the current
    cell whenever noise pushes the agent off the segment it was following.

    Args:
        rng: the only source of randomness; the same generator state and observations give the
            same actions.
        config: see :class:`ExplorationConfig`.
    """

    def __init__(self, rng: np.random.Generator, config: ExplorationConfig | None = None) -> None:
        self.rng = rng
        self.config = config or ExplorationConfig()
        self._follower: nav.PathFollower | None = None
        self._history: deque[np.ndarray] = deque(maxlen=self.config.stuck_steps + 1)
        self.goals_reached = 0

    def reset(self) -> None:
        """Forget the goal and position history (call at the start of each episode)."""
        self._follower = None
        self._history.clear()
        self.goals_reached = 0

    def act(self, obs: Mapping[str, np.ndarray]) -> int:
        """Action index in ``[0, num_actions)`` for an observation holding ``maze_layout``
        ``(n, n)`` uint8, ``agent_pos`` ``(2,)`` and ``agent_dir`` ``(2,)``."""
        layout = np.asarray(obs["maze_layout"])
        pos = np.asarray(obs["agent_pos"], dtype=np.float64)
        heading = np.asarray(obs["agent_dir"], dtype=np.float64)
        self._history.append(pos)

        follower = self._follower
        action = follower.act(pos, heading) if follower is not None else nav.NOOP
        if follower is None or follower.done or self._stuck():
            if follower is not None and follower.done:
                self.goals_reached += 1
            follower = self._new_goal(layout, pos)
            action = follower.act(pos, heading)
        elif not follower.on_track(pos):  # noise pushed us off: re-plan to the same goal
            follower = self._plan(layout, pos, follower.goal)
            action = follower.act(pos, heading)

        if self.rng.random() < self.config.noise:
            action = int(self.rng.integers(self.config.num_actions))
        return int(action)

    def _stuck(self) -> bool:
        if len(self._history) <= self.config.stuck_steps:
            return False
        moved = np.linalg.norm(self._history[-1] - self._history[0])
        return bool(moved < self.config.stuck_distance)

    def _new_goal(self, layout: np.ndarray, pos: np.ndarray) -> nav.PathFollower:
        here = nav.cell_of(pos)
        rows, cols = np.nonzero(nav.bfs_distances(layout, here) > 0)
        candidates = list(zip(rows.tolist(), cols.tolist()))
        if not candidates:
            raise ValueError(f"maze {layout.shape}: no free cell reachable from {here}")
        goal = candidates[int(self.rng.integers(len(candidates)))]
        self._history.clear()
        self._history.append(pos)
        return self._plan(layout, pos, goal)

    def _plan(self, layout: np.ndarray, pos: np.ndarray, goal: nav.Cell) -> nav.PathFollower:
        path = nav.shortest_path(layout, nav.cell_of(pos), goal)
        self._follower = nav.PathFollower(path, reach_radius=self.config.reach_radius)
        return self._follower
