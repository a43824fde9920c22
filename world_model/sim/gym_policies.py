"""Policies that drive a pixel environment during ``rad collect --env gym:ENV_ID`` (or crafter,
minerl-navigate): the built-in uniform random policy, or one the user names.

A *policy factory* is called once per episode as ``factory(action_space, rng)`` with the env's
``Discrete(n)`` action space and the episode's ``numpy.random.Generator`` (seeded from the
episode's seed, so the episode is reproducible), and returns ``policy(frame) -> int``: the action
to take after seeing ``frame (S, S, 3) uint8``. ``--policy`` names one as ``random``,
``package.module:factory`` (an importable module) or ``path/to/file.py:factory``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gymnasium import spaces

from world_model.errors import UserError

Policy = Callable[[np.ndarray], int]
PolicyFactory = Callable[[spaces.Discrete, np.random.Generator], Policy]


def random_policy(action_space: spaces.Discrete, rng: np.random.Generator) -> Policy:
    """Uniformly random actions of ``Discrete(n)``, drawn from ``rng``."""
    n = int(action_space.n)
    return lambda frame: int(rng.integers(n))


def load_policy(spec: str) -> PolicyFactory:
    """The policy factory ``spec`` names (``random``, ``module:attr`` or ``file.py:attr``).

    Raises:
        UserError: naming the module, file or attribute that cannot be found.
    """
    if spec == "random":
        return random_policy
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise UserError(f"--policy {spec!r}: expected 'random', 'module:factory' or "
                        f"'path/to/file.py:factory'")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UserError(f"--policy {spec!r}: no such file {path}")
        name = f"rad_policy_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UserError(f"--policy {spec!r}: cannot import {where!r} ({exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"--policy {spec!r}: {where} has no callable {attr!r}")
    return factory
