"""Per-item seeds (world_model.seeding) stay bit-identical to the ones the data sets were made with.

The expected numbers were computed with the helpers as they were before they moved into
``world_model.seeding`` (``sim.collect.episode_seed``, ``sim.evalset.attempt_seed``,
``evaluation.protocol.trajectory_seed``, ``sim.maze_env.task_seed``): changing any of them would
make ``rad collect``/``rad make-evalset`` resume a data set with different episodes.
"""

from __future__ import annotations

import pytest

from world_model import seeding

#: (seed, index) -> episode seed; --seed 1 is the training set, --seed 777 the held-out set.
EPISODE_SEEDS = {(1, 0): 2482218350, (1, 1): 1314168637, (1, 999): 4287478104,
                 (777, 0): 203917906, (777, 5): 1522089622, (0, 0): 483450114}
#: (seed, index, attempt) -> attempt seed; --seed 1000 is the evaluation set.
ATTEMPT_SEEDS = {(1000, 0, 0): 2638741497, (1000, 0, 1): 1306413187, (1000, 7, 0): 1339123853,
                 (1000, 49, 2): 3955990633, (0, 0, 0): 3313622877}
#: (seed, index) -> sampling seed of rad eval's trajectory index.
TRAJECTORY_SEEDS = {(0, 0): 7896617691693857887, (0, 1): 2918264622725855778,
                    (1000, 3): 8771877438590485100, (123, 9): 3233630436505559495}
#: seed -> Memory Maze task seed of reset(seed=seed).
TASK_SEEDS = {0: 0, 5: 5, 2**32 - 1: 2**32 - 1, 2**32: 3964924996, 2**40 + 7: 238885397}


def test_collect_episode_seeds_are_those_of_the_existing_data_sets():
    for (seed, index), expected in EPISODE_SEEDS.items():
        assert seeding.episode_seed(seed, index) == expected


def test_evalset_attempt_seeds_are_those_of_the_existing_evaluation_set():
    for (seed, index, attempt), expected in ATTEMPT_SEEDS.items():
        assert seeding.attempt_seed(seed, index, attempt) == expected


def test_eval_sampling_seeds_are_unchanged():
    for (seed, index), expected in TRAJECTORY_SEEDS.items():
        assert seeding.trajectory_seed(seed, index) == expected


def test_maze_task_seed_passes_small_seeds_and_hashes_large_ones_as_before():
    from world_model.sim.maze_env import task_seed

    for seed, expected in TASK_SEEDS.items():
        assert seeding.fit_seed32(seed) == task_seed(seed) == expected


def test_the_old_entry_points_are_the_seeding_schemes():
    from world_model.evaluation import protocol
    from world_model.sim import collect, evalset

    assert collect.episode_seed is seeding.episode_seed
    assert evalset.attempt_seed is seeding.attempt_seed
    assert protocol.trajectory_seed is seeding.trajectory_seed


def test_derived_seeds_fit_their_width_and_differ_by_key():
    seeds32 = {seeding.derive(3, i) for i in range(500)}
    seeds63 = {seeding.derive(3, i, bits=63) for i in range(500)}
    assert len(seeds32) == len(seeds63) == 500
    assert all(0 <= s < 2**32 for s in seeds32) and all(0 <= s < 2**63 for s in seeds63)
    assert seeding.episode_seed(5, 2) != seeding.attempt_seed(5, 2, 0)  # tags keep uses apart


def test_negative_seeds_and_unknown_widths_are_refused():
    with pytest.raises(ValueError):
        seeding.derive(-1, 0)
    with pytest.raises(ValueError, match="bits"):
        seeding.derive(1, 0, bits=64)  # type: ignore[arg-type]
