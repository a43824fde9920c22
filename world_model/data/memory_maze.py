"""The real Memory Maze simulator (PyPI ``memory-maze``, MuJoCo via dm_control), headless.

``memory_maze/__init__.py`` imports the legacy ``gym`` package and fails without it (and ``gym``
0.26 breaks on NumPy 2). This module is the one place that gets past it: it loads
``memory_maze.tasks`` without running the package ``__init__``, and builds the ``dm_env`` tasks
directly. The project's Gymnasium wrapper and the data collector both start here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any

from world_model.errors import BackendError

#: Maze sizes and their episode lengths in steps (4 Hz control).
SIZES = {"9x9": 1000, "11x11": 2000, "13x13": 3000, "15x15": 4000}
ACTION_NAMES = ("noop", "forward", "left", "right", "forward_left", "forward_right")
NUM_ACTIONS = len(ACTION_NAMES)

_BACKEND_HELP = (
    "MuJoCo could not render headless with MUJOCO_GL={gl!r}: {err}\n"
    "Fix: on a machine without a display use MUJOCO_GL=egl (needs the EGL/Mesa libraries: "
    "`apt-get install libegl1 libgl1`) or MUJOCO_GL=osmesa (`apt-get install libosmesa6`); "
    "with a GPU and NVIDIA driver, MUJOCO_GL=egl."
)


def _tasks_module():
    """Import ``memory_maze.tasks`` without executing ``memory_maze/__init__.py``."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if "memory_maze.tasks" in sys.modules:
        return sys.modules["memory_maze.tasks"]
    spec = importlib.util.find_spec("memory_maze")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the Memory Maze simulator is not installed: pip install 'rad-env[maze]' "
            "(memory-maze==1.0.3, dm-control==1.0.50, mujoco==3.17.0)"
        )
    if "memory_maze" not in sys.modules:
        package = types.ModuleType("memory_maze")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        sys.modules["memory_maze"] = package
    try:
        return importlib.import_module("memory_maze.tasks")
    except ImportError as exc:
        raise BackendError(f"memory_maze could not be imported: {exc}") from exc


def parse_size(name: str) -> str:
    """``"memory-maze-9x9"``, ``"MemoryMaze-9x9-v0"`` or ``"9x9"`` -> ``"9x9"``."""
    for size in SIZES:
        if size in name:
            return size
    raise ValueError(f"unknown Memory Maze size in {name!r}; expected one of {sorted(SIZES)}")


def make_dm_env(size: str = "9x9", seed: int | None = None, *, global_observables: bool = True,
                image_only_obs: bool = False, **kwargs: Any):
    """Build the real ``dm_env`` Memory Maze task.

    Args:
        size: ``"9x9"``, ``"11x11"``, ``"13x13"`` or ``"15x15"`` (or a name containing one).
        seed: fixes the task's RNG; each ``reset()`` then draws a new maze from it.
        global_observables: expose agent_pos, agent_dir, targets_*, target_*, maze_layout.
        image_only_obs: observation is the image alone (the target colour drawn as its border).

    Returns:
        A ``dm_env.Environment`` with 6 discrete actions and 64x64x3 uint8 images.

    Raises:
        BackendError: the simulator is not installed or cannot render headless.
    """
    size = parse_size(size)
    tasks = _tasks_module()
    factory = getattr(tasks, f"memory_maze_{size}")
    try:
        return factory(seed=seed, global_observables=global_observables,
                       image_only_obs=image_only_obs, **kwargs)
    except Exception as exc:  # MuJoCo raises plain errors when GL is missing
        if _looks_like_gl_error(exc):
            raise BackendError(_BACKEND_HELP.format(gl=os.environ.get("MUJOCO_GL"), err=exc)) from exc
        raise


def _looks_like_gl_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("gl", "egl", "osmesa", "display", "render", "libgl"))


def check_rendering(env) -> None:
    """Render one frame, converting a GL failure into a :class:`BackendError` naming the fix."""
    try:
        env.reset()
    except Exception as exc:
        if _looks_like_gl_error(exc):
            raise BackendError(_BACKEND_HELP.format(gl=os.environ.get("MUJOCO_GL"), err=exc)) from exc
        raise
