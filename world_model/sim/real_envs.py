"""The real environments a RAD world can learn, by the id episode files and worlds record.

====================  ===================================================  ================
id                    the real environment                                 runs where
====================  ===================================================  ================
``memory-maze-9x9``   Memory Maze (also 11x11, 13x13, 15x15)               ``[maze]`` extra
``crafter``           Crafter (:mod:`world_model.sim.crafter_env`)         ``[envs]`` extra
``minerl-navigate``   MineRL ``MineRLNavigate-v0``                         MineRL 0.4.4 + Java 8
``gym:ENV_ID``        any registered Gymnasium env with discrete actions   wherever it runs
                      and RGB frames (:mod:`world_model.sim.pixel_env`)
====================  ===================================================  ================

:func:`real_env_spec` says what a learned world of it should default to (episode length, how
rewards are read); :func:`make_real_env` builds the real env as a Gymnasium env whose
observations are ``(size, size, 3) uint8`` frames and whose actions are ``Discrete(n)``: what
``rad collect`` records and what a learned world's ``context="real"`` resets start from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium

from world_model.errors import UserError
from world_model.sim.memory_maze import SIZES as MAZE_SIZES
from world_model.sim.memory_maze import parse_size

#: MineRL ids of this project -> MineRL's own task ids.
MINERL_TASKS = {"minerl-navigate": "MineRLNavigate-v0",
                "minerl-navigate-dense": "MineRLNavigateDense-v0"}
GYM_PREFIX = "gym:"


@dataclass(frozen=True)
class RealEnvSpec:
    """What is known of a real environment before building it."""

    id: str
    """The project's id (``memory-maze-9x9``, ``crafter``, ``minerl-navigate``, ``gym:ENV_ID``)."""
    family: str
    """``memory-maze``, ``crafter``, ``minerl`` or ``gym``."""
    episode_steps: int | None
    """Steps per episode (its time limit), None when the env has none."""
    reward_mode: str
    """How a learned world reads its reward head: ``"round"`` (0/1 rewards) or ``"raw"``."""
    render_fps: float = 30.0


def real_env_spec(env_id: str) -> RealEnvSpec:
    """The :class:`RealEnvSpec` of ``env_id``. A ``gym:`` id is looked up in Gymnasium's registry
    (importing ``module`` of ``gym:module:Env-v0``).

    Raises:
        UserError: an id this project does not know, naming the ones it does.
    """
    if env_id.startswith("memory-maze"):
        size = parse_size(env_id)
        return RealEnvSpec(f"memory-maze-{size}", "memory-maze", MAZE_SIZES[size], "round", 4.0)
    if env_id == "crafter":
        from world_model.sim.crafter_env import EPISODE_STEPS

        return RealEnvSpec("crafter", "crafter", EPISODE_STEPS, "raw", 10.0)
    if env_id in MINERL_TASKS:
        from world_model.sim.minerl_env import EPISODE_STEPS

        return RealEnvSpec(env_id, "minerl", EPISODE_STEPS[MINERL_TASKS[env_id]], "raw", 20.0)
    if env_id.startswith(GYM_PREFIX) and len(env_id) > len(GYM_PREFIX):
        gym_id = env_id[len(GYM_PREFIX):]
        return RealEnvSpec(env_id, "gym", _gym_spec(gym_id).max_episode_steps, "raw")
    raise UserError(f"unknown environment {env_id!r}; known: memory-maze-9x9 (-11x11, -13x13, "
                    f"-15x15), crafter, {', '.join(MINERL_TASKS)}, gym:ENV_ID (any registered "
                    f"Gymnasium env with discrete actions and RGB frames)")


def _gym_spec(gym_id: str) -> Any:
    module, _, name = gym_id.rpartition(":")
    try:
        if module:
            import importlib

            importlib.import_module(module)
        return gymnasium.spec(name)
    except (gymnasium.error.Error, ModuleNotFoundError) as exc:
        raise UserError(f"gym:{gym_id}: not a registered Gymnasium env ({exc})") from exc


def make_real_env(env_id: str, size: int = 64, max_steps: int | None = None,
                  **kwargs: Any) -> gymnasium.Env:
    """The real environment ``env_id`` with ``(size, size, 3) uint8`` frames and ``Discrete``
    actions (see the module table). ``max_steps`` shortens episodes where the env supports it
    (collection stops at its ``--steps`` in any case); ``kwargs`` go to the env.

    Raises:
        UserError: an unknown id, or an env without discrete actions or RGB frames.
        BackendError: the simulator is not installed (naming what to install).
    """
    spec = real_env_spec(env_id)
    if spec.family == "memory-maze":
        from world_model.sim.maze_env import MemoryMazeEnv

        return MemoryMazeEnv(spec.id, max_steps=max_steps, camera_resolution=size, **kwargs)
    if spec.family == "crafter":
        from world_model.sim.crafter_env import CrafterEnv

        return CrafterEnv(size, max_steps or spec.episode_steps, **kwargs)
    if spec.family == "minerl":
        from world_model.sim.minerl_env import MineRLEnv

        return MineRLEnv(MINERL_TASKS[env_id], size, max_steps=max_steps, **kwargs)
    from world_model.sim.pixel_env import make_pixel_env

    return make_pixel_env(env_id[len(GYM_PREFIX):], size, **kwargs)
