"""Maze geometry and a low-level waypoint controller for Memory Maze (pure numpy).

Coordinates (measured on memory-maze 1.0.3 with ``global_observables=True``):

* ``maze_layout``: ``(n, n)`` uint8, 1 = free cell, 0 = wall, outer walls removed, flipped so that
  row 0 is the *bottom* row. A cell is addressed ``(row, col)`` = ``layout[row, col]``.
* ``agent_pos``: ``(2,)`` float ``(x, y)`` in cell units with ``x`` along columns and ``y`` along
  rows, so the agent is in cell ``(int(y), int(x))``; cell centres are at ``(col + 0.5, row + 0.5)``.
* ``agent_dir``: ``(2,)`` unit heading in the same ``(x, y)`` frame. Angles increase
  counter-clockwise: ``left`` turns by about +18.4 degrees per step, ``right`` by about -18.4.
* ``forward`` moves about 0.24 cells per step at full speed (0.11 on the first step); motion and
  turning carry some momentum into the next step (about 0.14 cells, 3 degrees).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

Cell = tuple[int, int]  # (row, col) index into maze_layout

NOOP, FORWARD, LEFT, RIGHT, FORWARD_LEFT, FORWARD_RIGHT = range(6)
_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def cell_of(pos: np.ndarray) -> Cell:
    """Grid cell ``(row, col)`` containing ``pos`` ``(2,)`` ``(x, y)`` in cell units."""
    return int(np.floor(pos[1])), int(np.floor(pos[0]))


def cell_center(cell: Cell) -> np.ndarray:
    """Centre ``(2,)`` float64 ``(x, y)`` of ``cell`` ``(row, col)``."""
    return np.array([cell[1] + 0.5, cell[0] + 0.5])


def is_free(layout: np.ndarray, cell: Cell) -> bool:
    """Whether ``cell`` lies inside ``layout`` ``(n, m)`` and is not a wall."""
    r, c = cell
    return 0 <= r < layout.shape[0] and 0 <= c < layout.shape[1] and bool(layout[r, c])


def bfs_distances(layout: np.ndarray, start: Cell) -> np.ndarray:
    """Shortest-path length (4-connected moves) from ``start`` to every cell.

    Returns an ``(n, m)`` int64 array; walls and unreachable cells hold -1.
    """
    if not is_free(layout, start):
        raise ValueError(f"start cell {start} is a wall or outside the {layout.shape} maze")
    dist = np.full(layout.shape, -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in _NEIGHBOURS:
            nxt = (r + dr, c + dc)
            if is_free(layout, nxt) and dist[nxt] < 0:
                dist[nxt] = dist[r, c] + 1
                queue.append(nxt)
    return dist


def shortest_path(layout: np.ndarray, start: Cell, goal: Cell) -> list[Cell]:
    """Cells of a shortest 4-connected path from ``start`` to ``goal``, both included.

    Deterministic: among equally short paths it is the one found by walking back from ``goal``
    along decreasing BFS distance, trying neighbours in a fixed order.
    """
    dist = bfs_distances(layout, start)
    if not is_free(layout, goal) or dist[goal] < 0:
        raise ValueError(f"goal cell {goal} is a wall or unreachable from {start}")
    path = [goal]
    while path[-1] != start:
        r, c = path[-1]
        for dr, dc in _NEIGHBOURS:
            prev = (r + dr, c + dc)
            if is_free(layout, prev) and dist[prev] == dist[r, c] - 1:
                path.append(prev)
                break
    return path[::-1]


def corner_indices(cells: Sequence[Cell]) -> list[int]:
    """Indices into ``cells`` where the path changes direction, plus the last index.

    Travelling straight between consecutive corners never leaves the path's row or column.
    """
    keep = []
    for i in range(1, len(cells) - 1):
        before = np.subtract(cells[i], cells[i - 1])
        after = np.subtract(cells[i + 1], cells[i])
        if not np.array_equal(before, after):
            keep.append(i)
    keep.append(len(cells) - 1)
    return keep


def signed_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Counter-clockwise angle in radians, in ``(-pi, pi]``, that turns vector ``a`` onto ``b``."""
    return float(np.arctan2(a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1]))


def steer(pos: np.ndarray, heading: np.ndarray, target: np.ndarray,
          turn_in_place_deg: float = 35.0, straight_deg: float = 10.0) -> int:
    """One discrete action that moves from ``pos`` with ``heading`` towards ``target`` (all ``(2,)``).

    Turns in place while the target is more than ``turn_in_place_deg`` off the heading, curves
    (forward_left / forward_right) between that and ``straight_deg``, and goes forward otherwise.
    """
    error = np.degrees(signed_angle(heading, np.asarray(target) - np.asarray(pos)))
    if abs(error) > turn_in_place_deg:
        return LEFT if error > 0 else RIGHT
    if abs(error) > straight_deg:
        return FORWARD_LEFT if error > 0 else FORWARD_RIGHT
    return FORWARD


class PathFollower:
    """Follows a path of cells by steering to the centre of each corner in turn.

    Args:
        cells: the path, consecutive cells 4-adjacent; ``cells[0]`` is where the agent starts.
        reach_radius: a corner counts as reached within this distance (cell units) of its centre.
    """

    def __init__(self, cells: Sequence[Cell], reach_radius: float = 0.3) -> None:
        if not cells:
            raise ValueError("PathFollower needs at least one cell")
        self.cells = [tuple(map(int, c)) for c in cells]
        self.reach_radius = reach_radius
        self._corners = corner_indices(self.cells)
        self._next = 0  # index into self._corners

    @property
    def goal(self) -> Cell:
        return self.cells[-1]

    @property
    def done(self) -> bool:
        """Whether the last cell's centre has been reached."""
        return self._next >= len(self._corners)

    def on_track(self, pos: np.ndarray) -> bool:
        """Whether ``pos`` lies on the straight segment being followed (from the last corner
        reached to the next one), so that heading straight for the next corner hits no wall."""
        if self.done:
            return cell_of(pos) == self.goal
        first = self._corners[self._next - 1] if self._next > 0 else 0
        return cell_of(pos) in self.cells[first:self._corners[self._next] + 1]

    def act(self, pos: np.ndarray, heading: np.ndarray) -> int:
        """Action ``int`` in ``[0, 6)`` for the agent at ``pos`` with ``heading``; NOOP once done."""
        while not self.done and np.linalg.norm(self._target() - pos) < self.reach_radius:
            self._next += 1
        if self.done:
            return NOOP
        return steer(pos, heading, self._target())

    def _target(self) -> np.ndarray:
        return cell_center(self.cells[self._corners[self._next]])
