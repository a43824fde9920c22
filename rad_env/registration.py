"""The table of environment ids this project registers with Gymnasium, and ``register_envs()``.

Adding an environment is one :class:`EnvEntry` in :data:`ENVS`. Entry points are strings
(``"module:attr"``), so registering imports nothing heavy: torch, MuJoCo and the model load only
when ``gymnasium.make`` calls the entry point. This module imports only gymnasium, the standard
library and constants of ``world_model.sim`` (memory_maze, crafter_env, minerl_env: they import
no simulator at module level).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from world_model.sim.crafter_env import EPISODE_STEPS as CRAFTER_STEPS
from world_model.sim.memory_maze import SIZES as MAZE_SIZES
from world_model.sim.minerl_env import EPISODE_STEPS as MINERL_STEPS

logger = logging.getLogger(__name__)

_REAL_MAZE = "world_model.sim.maze_env:MemoryMazeEnv"


@dataclass(frozen=True)
class EnvEntry:
    """One Gymnasium id: what ``gymnasium.register`` receives."""

    id: str
    entry_point: str  #: ``"package.module:Class"``; imported only by ``gymnasium.make``
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None  #: gymnasium's TimeLimit; equal to the env's own limit
    vector_entry_point: str | None = None  #: for ``gymnasium.make_vec`` over one batched engine
    nondeterministic: bool = False


def _memory_maze_entries() -> tuple[EnvEntry, ...]:
    entries = []
    for size, steps in MAZE_SIZES.items():
        for suffix, extra_obs in (("", False), ("-ExtraObs", True)):
            entries.append(EnvEntry(
                id=f"MemoryMaze-{size}{suffix}-v0",
                entry_point=_REAL_MAZE,
                kwargs={"size": size, "extra_obs": extra_obs},
                max_episode_steps=steps,
            ))
    return tuple(entries)


#: The other real environments (docs/envs.md): Crafter (PyPI ``crafter``) and MineRL 0.4.4's
#: Navigate task with the discrete action set of :mod:`world_model.sim.minerl_actions`.
_REAL_OTHERS = (
    EnvEntry(id="Crafter-v0", entry_point="world_model.sim.crafter_env:CrafterEnv",
             max_episode_steps=CRAFTER_STEPS),
    EnvEntry(id="MineRL-Navigate-v0", entry_point="world_model.sim.minerl_env:MineRLEnv",
             kwargs={"env_id": "MineRLNavigate-v0"},
             max_episode_steps=MINERL_STEPS["MineRLNavigate-v0"]),
)

#: The learned worlds: the spaces recorded in the checkpoint, the episode length of the real env
#: they learned. They register no ``max_episode_steps``: the env itself truncates (its
#: ``max_steps``, by default the real env's length), the one place that decides it, for
#: ``gymnasium.make`` and ``make_vec`` alike.
_LEARNED = (
    EnvEntry(
        id="RAD-v0",
        entry_point="rad_env.env:RADEnv",
        vector_entry_point="rad_env.vector:RADVectorEnv",
    ),
    EnvEntry(
        id="RAD-MemoryMaze-v0",
        entry_point="rad_env.env:RADEnv",
        vector_entry_point="rad_env.vector:RADVectorEnv",
        kwargs={"family": "memory-maze"},
    ),
)

#: Every id the project registers. The real Memory Maze mazes: ``MemoryMaze-<size>-v0`` (image
#: observation, like the official env) and ``MemoryMaze-<size>-ExtraObs-v0`` (Dict observation);
#: ``Crafter-v0`` and ``MineRL-Navigate-v0``. The learned worlds: ``RAD-v0`` (a world of any
#: environment, ``checkpoint=RUN_DIR``) and its Memory Maze specialisation ``RAD-MemoryMaze-v0``
#: (the shipped RAD world of Memory Maze 9x9 by default), both also batched by
#: ``gymnasium.make_vec``.
ENVS: tuple[EnvEntry, ...] = _memory_maze_entries() + _REAL_OTHERS + _LEARNED


def register_envs(entries: tuple[EnvEntry, ...] = ENVS) -> list[str]:
    """Register ``entries`` with Gymnasium; idempotent. Returns the ids newly registered.

    An id already registered with the same entry point is left alone; one registered by someone
    else with a different entry point is replaced, with a warning.
    """
    added = []
    for entry in entries:
        existing = gymnasium.registry.get(entry.id)
        if existing is not None:
            if existing.entry_point == entry.entry_point:
                continue
            logger.warning("replacing the Gymnasium registration of %s (entry point %s) by %s",
                           entry.id, existing.entry_point, entry.entry_point)
            del gymnasium.registry[entry.id]
        gymnasium.register(
            id=entry.id,
            entry_point=entry.entry_point,
            vector_entry_point=entry.vector_entry_point,
            kwargs=dict(entry.kwargs),
            max_episode_steps=entry.max_episode_steps,
            nondeterministic=entry.nondeterministic,
        )
        added.append(entry.id)
    return added
