"""The vectorised target-contact check changes speed only: same frames, rewards, observations."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

if importlib.util.find_spec("memory_maze") is None or importlib.util.find_spec("dm_control") is None:
    pytest.skip("the Memory Maze simulator is not installed (pip install 'rad-env[maze]')",
                allow_module_level=True)

from world_model.sim import fast_maze
from world_model.sim import navigation as nav
from world_model.sim.memory_maze import make_dm_env

SEED, STEPS = 0, 100


def _run(actions: list[int] | None) -> tuple[dict[str, np.ndarray], list[float], list[int]]:
    """Run STEPS steps of seed SEED: the given actions, or (None) go to the current target."""
    env = make_dm_env("9x9", seed=SEED)
    obs = env.reset().observation
    frames = {k: [np.array(v)] for k, v in obs.items()}
    rewards, taken = [], []
    follower = None
    for t in range(STEPS):
        if actions is not None:
            action = actions[t]
        else:
            if follower is None or follower.done:
                path = nav.shortest_path(obs["maze_layout"], nav.cell_of(obs["agent_pos"]),
                                         nav.cell_of(obs["target_pos"]))
                follower = nav.PathFollower(path)
            action = follower.act(obs["agent_pos"], obs["agent_dir"])
            if follower.done:  # at the target's cell centre: push on into the sphere
                action, follower = nav.FORWARD, None
        ts = env.step(action)
        obs = ts.observation
        for k, v in obs.items():
            frames[k].append(np.array(v))
        rewards.append(float(ts.reward))
        taken.append(action)
    env.close()
    return {k: np.stack(v) for k, v in frames.items()}, rewards, taken


@pytest.fixture(scope="module")
def original_and_patched():
    fast_maze.unpatch_target_contacts()
    original = _run(None)
    assert fast_maze.patch_target_contacts()
    try:
        patched = _run(original[2])
    finally:
        fast_maze.unpatch_target_contacts()
    return original, patched


def test_reference_run_collects_a_reward(original_and_patched):
    (_, rewards, _), _ = original_and_patched
    assert sum(rewards) >= 1, "the comparison must cover a target activation"


def test_patched_simulator_gives_identical_frames_rewards_and_observations(original_and_patched):
    (frames0, rewards0, _), (frames1, rewards1, _) = original_and_patched
    assert rewards1 == rewards0
    assert np.array_equal(frames1["image"], frames0["image"])
    for key in frames0:
        assert np.array_equal(frames1[key], frames0[key]), key


def test_patch_is_explicit_idempotent_and_reversible():
    from dm_control.locomotion.props.target_sphere import TargetSphere

    original = TargetSphere._update_activation
    assert not fast_maze.is_patched()
    assert fast_maze.patch_target_contacts() is True
    try:
        assert fast_maze.is_patched()
        assert fast_maze.patch_target_contacts() is False
        assert TargetSphere._update_activation is fast_maze._fast_update_activation
    finally:
        assert fast_maze.unpatch_target_contacts() is True
    assert TargetSphere._update_activation is original
    assert fast_maze.unpatch_target_contacts() is False
    with fast_maze.fast_target_contacts(True):
        assert fast_maze.is_patched()
        with fast_maze.fast_target_contacts(False):
            assert TargetSphere._update_activation is original
        assert fast_maze.is_patched()
    assert not fast_maze.is_patched()


class _FakePhysics:
    """Just enough of dm_control's Physics for ``_update_activation``: contacts and bind()."""

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        geom = np.array(pairs, dtype=np.int32).reshape(-1, 2)
        contacts = [SimpleNamespace(geom1=a, geom2=b) for a, b in pairs]
        self.data = SimpleNamespace(contact=contacts, ptr=SimpleNamespace(
            contact=SimpleNamespace(geom=geom)))
        self.rgba = np.ones(4)

    def bind(self, material):
        return SimpleNamespace(rgba=self.rgba)


@pytest.mark.parametrize("specific", [None, [4], [4, 9]])
def test_fast_check_matches_the_original_on_arbitrary_contacts(specific):
    from dm_control.locomotion.props.target_sphere import TargetSphere

    original = getattr(TargetSphere, fast_maze._ORIGINAL, TargetSphere._update_activation)
    rng = np.random.default_rng(0)
    for _ in range(200):
        pairs = [tuple(int(g) for g in rng.integers(0, 10, 2)) for _ in range(rng.integers(0, 5))]
        outcomes = []
        for update in (original, fast_maze._fast_update_activation):
            target = SimpleNamespace(_activated=False, _geom_id=3, _material=None,
                                     _specific_collision_geom_ids=specific)
            physics = _FakePhysics(pairs)
            update(target, physics)
            outcomes.append((target._activated, physics.rgba[-1]))
        assert outcomes[0] == outcomes[1], pairs
