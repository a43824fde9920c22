"""The real Memory Maze simulator (PyPI ``memory-maze``, MuJoCo via dm_control), headless.

``memory_maze/__init__.py`` imports the legacy ``gym`` package and fails without it (and ``gym``
0.26 breaks on NumPy 2). This module is the one place that gets past it: it loads
``memory_maze.tasks`` without running the package ``__init__``, and builds the ``dm_env`` tasks
directly. The project's Gymnasium wrapper and the data collector both start here.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
import types
from typing import Any

from world_model.errors import BackendError, UserError

#: Maze sizes and their episode lengths in steps (4 Hz control).
SIZES = {"9x9": 1000, "11x11": 2000, "13x13": 3000, "15x15": 4000}
ACTION_NAMES = ("noop", "forward", "left", "right", "forward_left", "forward_right")
NUM_ACTIONS = len(ACTION_NAMES)

#: What each rendering backend needs, for the error message.
_GL_NEEDS = {
    "egl": "the EGL/Mesa libraries (`apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`), "
           "or the NVIDIA driver's EGL on a GPU machine",
    "osmesa": "OSMesa (`apt-get install libosmesa6`)",
    "glfw": "a display (X11/Wayland) and GLFW (`apt-get install libglfw3`); headless, use egl or osmesa",
}
#: MUJOCO_GL values dm_control accepts; the second group turns rendering off.
_GL_VALUES = ("", "egl", "osmesa", "glfw", "1", "true", "on", "enable", "enabled")
_GL_OFF = ("0", "false", "off", "disable", "disabled")
_GL_ERROR_WORDS = re.compile(
    r"opengl|\begl|osmesa|glfw|libgl|mjr_makecontext|gl context|\bdisplay\b", re.IGNORECASE
)
_GL_ERROR_FRAMES = ("dm_control/_render", "/OpenGL/", "mujoco/egl", "mujoco/osmesa", "mujoco/glfw")


def backend_error(exc: BaseException | None = None) -> BackendError:
    """A :class:`BackendError` naming the ``MUJOCO_GL`` value in use and how to make it work."""
    gl = os.environ.get("MUJOCO_GL", "")
    cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    if gl.lower() not in _GL_VALUES + _GL_OFF:
        head = (f"MUJOCO_GL={gl!r} is not a rendering backend MuJoCo knows "
                f"(dm_control accepts egl, osmesa, glfw)")
    elif gl.lower() in _GL_OFF:
        head = (f"MUJOCO_GL={gl!r} turns MuJoCo rendering off, but Memory Maze observations are "
                f"camera images")
    else:
        needs = _GL_NEEDS.get(gl.lower())
        head = f"MuJoCo could not render headless with MUJOCO_GL={gl!r}{cause}"
        if needs:
            head += f"\nMUJOCO_GL={gl} needs {needs}."
    return BackendError(
        f"{head}\nFix: on a machine without a display set MUJOCO_GL=egl (Mesa EGL: "
        f"`apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`; on a GPU machine the NVIDIA "
        f"driver provides it) or MUJOCO_GL=osmesa (`apt-get install libosmesa6`), before "
        f"mujoco/dm_control is first imported in the process."
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
        package.__spec__ = spec  # metadata only: importlib.util.find_spec must keep working
        sys.modules["memory_maze"] = package
    if "dm_control._render" not in sys.modules:
        # dm_control reads MUJOCO_GL once, at import; an unknown value is a plain RuntimeError there.
        gl = os.environ.get("MUJOCO_GL", "").lower()
        if gl not in _GL_VALUES:
            raise backend_error()
    try:
        return importlib.import_module("memory_maze.tasks")
    except Exception as exc:  # a missing GL library surfaces as an ImportError, AttributeError, ...
        if _looks_like_gl_error(exc):
            raise backend_error(exc) from exc
        raise BackendError(f"memory_maze could not be imported: {type(exc).__name__}: {exc}") from exc


def parse_size(name: str) -> str:
    """``"memory-maze-9x9"``, ``"MemoryMaze-9x9-v0"`` or ``"9x9"`` -> ``"9x9"``."""
    for size in SIZES:
        if size in name:
            return size
    raise UserError(f"unknown Memory Maze size in {name!r}; expected one of {sorted(SIZES)}")


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
            raise backend_error(exc) from exc
        raise


def _looks_like_gl_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) came from the OpenGL/EGL/OSMesa layer."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _GL_ERROR_WORDS.search(str(exc)):
            return True
        tb = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
            if any(part in filename for part in _GL_ERROR_FRAMES):
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


def quiet_simulator_logs() -> None:
    """Hide dm_control/absl/PyOpenGL start-up chatter below ERROR (e.g. "Cannot set velocity on
    Entity with no free joint", printed at every reset)."""
    for name in ("absl", "OpenGL"):
        logging.getLogger(name).setLevel(logging.ERROR)
