"""Outbound-and-return evaluation trajectories, and the maze geometry and controller they use."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from world_model.sim import navigation as nav

HAVE_MAZE = (importlib.util.find_spec("memory_maze") is not None
             and importlib.util.find_spec("dm_control") is not None)
needs_maze = pytest.mark.skipif(not HAVE_MAZE, reason="Memory Maze simulator not installed")

# Row 0 is the bottom row, as in the simulator's maze_layout; 1 = free.
LAYOUT = np.array([
    [1, 1, 1, 0],
    [0, 0, 1, 0],
    [1, 1, 1, 1],
], dtype=np.uint8)

MIN_FRAMES, MAX_FRAMES, SEED = 20, 80, 3


# --- geometry and controller (pure numpy) ----------------------------------------------------

def test_cells_are_row_col_with_x_along_columns_and_centres_at_half_cells():
    assert nav.cell_of(np.array([2.3, 0.9])) == (0, 2)
    assert np.allclose(nav.cell_center((0, 2)), [2.5, 0.5])
    assert nav.cell_of(nav.cell_center((2, 3))) == (2, 3)


def test_shortest_path_walks_free_cells_and_reports_unreachable_goals():
    path = nav.shortest_path(LAYOUT, (0, 0), (2, 0))
    assert path == [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0)]
    assert nav.bfs_distances(LAYOUT, (0, 0))[2, 3] == 5
    assert nav.bfs_distances(LAYOUT, (0, 0))[1, 0] == -1
    with pytest.raises(ValueError, match="wall"):
        nav.shortest_path(LAYOUT, (0, 0), (1, 0))
    assert nav.corner_indices(path) == [2, 4, 6]


def test_steer_turns_towards_the_target_and_goes_straight_when_aligned():
    pos, east = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    assert nav.steer(pos, east, np.array([3.5, 0.5])) == nav.FORWARD
    assert nav.steer(pos, east, np.array([0.5, 3.5])) == nav.LEFT  # north: counter-clockwise
    assert nav.steer(pos, east, np.array([0.5, -2.5])) == nav.RIGHT
    assert nav.steer(pos, east, np.array([3.5, 1.2])) == nav.FORWARD_LEFT


def test_path_follower_aims_at_corners_and_stops_at_the_goal():
    follower = nav.PathFollower([(0, 0), (0, 1), (0, 2), (1, 2)])
    east = np.array([1.0, 0.0])
    assert follower.act(np.array([0.5, 0.5]), east) == nav.FORWARD  # towards corner (0, 2)
    assert follower.on_track(np.array([1.5, 0.5])) and not follower.on_track(np.array([1.5, 1.5]))
    assert follower.act(np.array([2.45, 0.5]), east) == nav.LEFT  # corner reached: turn north
    assert follower.act(np.array([2.5, 1.45]), np.array([0.0, 1.0])) == nav.NOOP
    assert follower.done


# --- trajectories from the real simulator ----------------------------------------------------

@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    from world_model.sim.evalset import make_evalset

    out = tmp_path_factory.mktemp("evalset")
    return make_evalset(out, 2, seed=SEED, min_frames=MIN_FRAMES, max_frames=MAX_FRAMES)


@pytest.fixture(scope="module")
def episodes(evalset):
    from world_model.data.format import read_episode

    return [read_episode(p) for p in evalset]


@needs_maze
def test_files_have_the_official_layout_plus_protocol_scalars(episodes):
    from world_model.data.format import GLOBAL_KEYS

    for ep in episodes:
        n = len(ep["image"])
        assert MIN_FRAMES <= n <= MAX_FRAMES
        assert set(ep) == {"image", "action", "reward", *GLOBAL_KEYS, "seed", "context_frames",
                           "outbound_frames"}
        assert ep["image"].shape == (n, 64, 64, 3) and ep["image"].dtype == np.uint8
        assert ep["action"].shape == (n, 6) and np.all(ep["action"][0] == 0)
        assert np.all(ep["action"][1:].sum(axis=1) == 1)
        assert ep["reward"].shape == (n,) and ep["reward"][0] == 0
        for key in ("seed", "context_frames", "outbound_frames"):
            assert ep[key].shape == () and ep[key].dtype == np.int64
        assert int(ep["context_frames"]) == int(np.floor(0.6 * n + 0.5))
        assert 2 <= int(ep["outbound_frames"]) < n


@needs_maze
def test_trajectory_returns_within_half_a_cell_of_the_start(episodes):
    for ep in episodes:
        pos = ep["agent_pos"]
        assert np.linalg.norm(pos[-1] - pos[0]) < 0.5
        goal = nav.cell_of(pos[int(ep["outbound_frames"]) - 1])
        assert goal != nav.cell_of(pos[0]), "it went somewhere"


@needs_maze
def test_return_cells_mirror_outbound_cells_and_follow_a_shortest_path(episodes):
    from world_model.sim.evalset import visited_cells

    for ep in episodes:
        pos, k = ep["agent_pos"], int(ep["outbound_frames"])
        outbound, back = visited_cells(pos[:k]), visited_cells(pos[k - 1:])
        assert back == outbound[::-1]
        assert outbound == nav.shortest_path(ep["maze_layout"][0], outbound[0], outbound[-1])


@needs_maze
def test_agent_turns_around_in_place_at_the_goal(episodes):
    for ep in episodes:
        pos, heading, k = ep["agent_pos"], ep["agent_dir"], int(ep["outbound_frames"])
        goal = nav.cell_of(pos[k - 1])
        leave = next(t for t in range(k, len(pos)) if nav.cell_of(pos[t]) != goal)
        assert np.linalg.norm(pos[k - 1:leave] - pos[k - 1], axis=1).max() < 0.45
        assert heading[leave] @ heading[k - 1] < -0.5, "leaves the goal facing back"


@needs_maze
def test_recorded_seed_reproduces_the_trajectory(episodes):
    from world_model.sim.evalset import make_trajectory

    ep = episodes[0]
    again = make_trajectory("9x9", int(ep["seed"]), MIN_FRAMES, MAX_FRAMES)
    for key in ("image", "action", "agent_pos", "outbound_frames", "context_frames"):
        assert np.array_equal(again[key], ep[key]), key


@needs_maze
def test_failed_attempt_is_logged_and_replaced_by_another_seed(tmp_path, monkeypatch, caplog):
    from world_model.data.format import read_episode
    from world_model.sim import evalset

    real, calls = evalset.make_trajectory, []

    def first_fails(size, seed, min_frames, max_frames):
        calls.append(seed)
        if len(calls) == 1:
            raise evalset.Rejected("stuck (simulated)")
        return real(size, seed, min_frames, max_frames)

    monkeypatch.setattr(evalset, "make_trajectory", first_fails)
    with caplog.at_level(logging.WARNING, logger="world_model.sim.evalset"):
        [path] = evalset.make_evalset(tmp_path, 1, seed=SEED, min_frames=MIN_FRAMES,
                                      max_frames=MAX_FRAMES)
    assert calls == [evalset.attempt_seed(SEED, 0, 0), evalset.attempt_seed(SEED, 0, 1)]
    assert int(read_episode(path)["seed"]) == calls[1]
    assert any("stuck (simulated)" in r.getMessage() and str(calls[0]) in r.getMessage()
               for r in caplog.records)


@needs_maze
def test_trajectory_that_never_succeeds_is_not_saved(tmp_path, monkeypatch):
    from world_model.sim import evalset

    def always_fails(*args):
        raise evalset.Rejected("too short (simulated)")

    monkeypatch.setattr(evalset, "make_trajectory", always_fails)
    from world_model.errors import UserError

    with pytest.raises(UserError, match="3 attempts failed.*too short"):
        evalset.make_evalset(tmp_path, 1, max_attempts=3)
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".*.tmp"))


@needs_maze
def test_too_short_range_is_rejected_not_saved():
    from world_model.sim import evalset

    with pytest.raises(evalset.Rejected, match="no goal"):
        evalset.make_trajectory("9x9", evalset.attempt_seed(SEED, 0, 0), 2, 5)
