"""Every per-item seed of the project, derived in one place from a base seed and integer keys.

A run is given one base seed; item ``i`` of it (an episode, an attempt, a sampled trajectory) gets
``derive(seed, i, ...)``: numpy's ``SeedSequence([seed, *keys])`` hashed to one int, so nearby
base seeds and indices give unrelated items, and an item never depends on how many others a run
makes or in which order (workers, resumes). Two widths, by where the seed goes:

* ``bits=32`` - ``generate_state(1)``, an int in ``[0, 2**32)``: the range
  ``numpy.random.RandomState`` and ``dm_env`` tasks accept;
* ``bits=63`` - ``generate_state(1, uint64) >> 1``, an int in ``[0, 2**63)``: for
  ``torch.Generator.manual_seed``.

The named schemes below are the formulas the documented data sets were made with (``rad collect
--seed 1``, the held-out set ``--seed 777``, ``rad make-evalset --seed 1000``) and the sampling
seeds of ``rad eval``; they are pinned by ``tests/test_seeding.py`` and must never change, or a
resumed run would mix two data sets. A new use takes a new tag rather than reusing a scheme.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

#: Tags in the entropy keep the seeds of different uses apart for the same (seed, index).
COLLECT_TAG = 0x636F6C6C  # "coll"
EVAL_TAG = 0x6576616C  # "eval"


def derive(seed: int, *keys: int, bits: Literal[32, 63] = 32) -> int:
    """The seed of the item ``keys`` of a run with base ``seed`` (module docstring).

    ``seed`` and ``keys`` must be non-negative ints (``ValueError`` otherwise).
    """
    seq = np.random.SeedSequence([int(seed), *(int(k) for k in keys)])
    if bits == 32:
        return int(seq.generate_state(1)[0])
    if bits == 63:
        return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
    raise ValueError(f"bits must be 32 or 63, got {bits!r}")


def episode_seed(seed: int, index: int) -> int:
    """Simulator and policy seed of episode ``index`` of ``rad collect --seed seed`` (every env),
    in ``[0, 2**32)``."""
    return derive(seed, index, COLLECT_TAG)


def attempt_seed(seed: int, index: int, attempt: int) -> int:
    """Simulator seed of attempt ``attempt`` at trajectory ``index`` of ``rad make-evalset --seed
    seed``, in ``[0, 2**32)``."""
    return derive(seed, index, attempt, EVAL_TAG)


def trajectory_seed(seed: int, index: int) -> int:
    """Sampling seed of the world model for evaluation trajectory ``index`` (its position in the
    sorted file list) under the evaluation seed ``seed``, in ``[0, 2**63)``."""
    return derive(seed, index, bits=63)


def fit_seed32(seed: int) -> int:
    """``seed`` itself when it is in ``[0, 2**32)``, else ``derive(seed)`` (a non-negative
    ``seed`` of any size hashed into that range)."""
    if 0 <= seed < 2**32:
        return int(seed)
    return derive(seed)
