"""Gymnasium environments of the RAD project. Importing this package only registers env ids.

``gymnasium.make("rad_env:MemoryMaze-9x9-v0")`` works with no prior import; after
``import rad_env`` the bare id works too. No torch and no MuJoCo are imported here: the entry
points load them when ``gymnasium.make`` is called. See :mod:`rad_env.registration`.
"""

from __future__ import annotations

from rad_env.registration import ENVS, EnvEntry, register_envs

__all__ = ["ENVS", "EnvEntry", "register_envs"]

register_envs()
