"""The real Memory Maze as a Gymnasium 1.x environment (5-tuple step API, seeded ``reset``).

``MemoryMazeEnv(size="9x9")`` is the official ``MemoryMaze-9x9-v0``: the observation is the
first-person image ``(64, 64, 3) uint8`` with the current target's colour drawn as its border, and
``Discrete(6)`` actions (noop, forward, left, right, forward_left, forward_right).
``extra_obs=True`` is ``MemoryMaze-9x9-ExtraObs-v0``: a ``Dict`` of the image and every global
observable (agent_pos, agent_dir, targets_pos, targets_vec, target_pos, target_vec, target_color,
maze_layout). In image mode those observables are returned in ``info`` instead.

Seeding. The ``dm_env`` task fixes its RNG when it is built, and its maze generator (labmaze) keeps a
private RNG, so ``reset(seed=s)`` rebuilds the task with task seed ``s`` (about 2 s); the episode then
equals the first episode of ``make_dm_env(size, seed=s)``. ``reset()`` without a seed draws the next
maze from the same RNG, so a seeded reset followed by unseeded resets is reproducible. The task is
built lazily on the first ``reset``, so construction is cheap.

Episodes end by time limit only (1000/2000/3000/4000 steps for 9x9/11x11/13x13/15x15): the last
step returns ``terminated=False, truncated=True``. The task itself enforces the limit;
``max_steps`` shortens it (the task still ends the episode).
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from world_model.data.format import GLOBAL_KEYS
from world_model.errors import UserError
from world_model.seeding import fit_seed32
from world_model.sim.memory_maze import NUM_ACTIONS, SIZES, _tasks_module, make_dm_env, parse_size

logger = logging.getLogger(__name__)

#: Resident memory of one built 9x9 task, measured (2026-12-07, Linux, headless software rendering):
#: about 1.2 GiB after its first reset, most of it the MuJoCo model's 266 MiB of textures and the
#: renderer's copies of them; construction alone costs ~140 MiB because the task is built lazily.
TASK_RSS_MIB = 1300


def available_memory_mib() -> float | None:
    """``MemAvailable`` of ``/proc/meminfo`` in MiB; None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def warn_if_short_of_memory(n_envs: int, available_mib: float | None = None) -> bool:
    """Log a warning (and return True) when ``n_envs`` real tasks would need more memory than the
    machine has available (``TASK_RSS_MIB`` each): better said before the first reset than
    learned from the out-of-memory killer an hour into a run."""
    available = available_memory_mib() if available_mib is None else available_mib
    need = n_envs * TASK_RSS_MIB
    if available is None or need <= available:
        return False
    logger.warning("%d real Memory Maze envs need about %.1f GiB (%.1f GiB each, mostly textures) "
                   "but %.1f GiB is available: use fewer envs (--num-envs) or expect the "
                   "out-of-memory killer", n_envs, need / 1024, TASK_RSS_MIB / 1024,
                   available / 1024)
    return True


#: Objects (targets) per maze, fixed by ``memory_maze.tasks`` for each size.
N_TARGETS = {"9x9": 3, "11x11": 4, "13x13": 5, "15x15": 6}
#: Task arguments this wrapper controls itself, and what to use instead.
_RESERVED_KWARGS = {
    "seed": "reset(seed=...)",
    "global_observables": "extra_obs=True",
    "image_only_obs": "extra_obs=False",
    "discrete_actions": "nothing: the action space is always Discrete(6)",
}
_SEED_LIMIT = 2**32  # np.random.RandomState accepts seeds in [0, 2**32)


def maze_observation_space(size: str, extra_obs: bool, camera_resolution: int = 64) -> spaces.Space:
    """The observation space of :class:`MemoryMazeEnv`, without building the task.

    Image ``(R, R, 3) uint8`` in [0, 255]. Global observables (float64 unless noted), in maze grid
    units where the maze is ``n x n`` cells: ``agent_pos (2,)`` and ``target_pos (2,)`` in [0, n];
    ``targets_pos (k, 2)`` in [0, n]; ``agent_dir (2,)`` unit vector in [-1, 1];
    ``targets_vec (k, 2)`` and ``target_vec (2,)`` agent-centric offsets in [-2n, 2n];
    ``target_color (3,)`` RGB in [0, 1]; ``maze_layout (n, n) uint8`` 1 = free, 0 = wall.
    """
    size = parse_size(size)
    n = int(size.split("x")[0])
    k = N_TARGETS[size]
    image = spaces.Box(0, 255, (camera_resolution, camera_resolution, 3), np.uint8)
    if not extra_obs:
        return image

    def box(low: float, high: float, shape: tuple[int, ...]) -> spaces.Box:
        return spaces.Box(low, high, shape, np.float64)

    return spaces.Dict({
        "image": image,
        "agent_pos": box(0.0, n, (2,)),
        "agent_dir": box(-1.0, 1.0, (2,)),
        "targets_pos": box(0.0, n, (k, 2)),
        "targets_vec": box(-2.0 * n, 2.0 * n, (k, 2)),
        "target_pos": box(0.0, n, (2,)),
        "target_vec": box(-2.0 * n, 2.0 * n, (2,)),
        "target_color": box(0.0, 1.0, (3,)),
        "maze_layout": spaces.Box(0, 1, (n, n), np.uint8),
    })


def task_seed(seed: int) -> int:
    """The ``dm_env`` task seed for ``reset(seed=seed)``: ``seed`` itself when it fits (so the episode
    equals ``make_dm_env(size, seed=seed)``'s first), else a hash of it into [0, 2**32)."""
    return fit_seed32(seed)


class MemoryMazeEnv(gymnasium.Env):
    """The real Memory Maze simulator behind the Gymnasium API.

    Args:
        size: ``"9x9"``, ``"11x11"``, ``"13x13"`` or ``"15x15"``.
        extra_obs: ``False``: observation is the image ``(64, 64, 3) uint8`` (target colour as its
            border). ``True``: a ``Dict`` of the image and the global observables (see
            :func:`maze_observation_space`).
        render_mode: ``"rgb_array"`` (``render()`` returns the last image) or ``None``.
        max_steps: end episodes after this many steps (truncation) instead of the task's own
            limit (``SIZES[size]``). The task itself ends the episode.
        **task_kwargs: passed to ``memory_maze.tasks.memory_maze_<size>``, e.g.
            ``good_visibility``, ``camera_resolution``, ``control_freq``, ``randomize_colors``.

    Raises:
        UserError: an unknown size, a bad ``render_mode`` or a reserved task argument.
        BackendError: the simulator is not installed or cannot render headless.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: str = "9x9", extra_obs: bool = False, render_mode: str | None = None,
                 max_steps: int | None = None, **task_kwargs: Any) -> None:
        self.size = parse_size(size)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise UserError(f"render_mode={render_mode!r}: expected one of "
                            f"{self.metadata['render_modes']} or None")
        for key, instead in _RESERVED_KWARGS.items():
            if key in task_kwargs:
                raise UserError(f"MemoryMazeEnv: do not pass {key!r}; use {instead}")
        if max_steps is not None and int(max_steps) < 1:
            raise UserError(f"max_steps must be >= 1, got {max_steps}")
        self.extra_obs = bool(extra_obs)
        self.render_mode = render_mode
        self.max_steps = None if max_steps is None else int(max_steps)
        self.task_kwargs = dict(task_kwargs)
        self.metadata = dict(self.metadata, render_fps=float(task_kwargs.get("control_freq", 4)))
        self.observation_space = maze_observation_space(
            self.size, self.extra_obs, int(task_kwargs.get("camera_resolution", 64)))
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        _tasks_module()  # fail now, with one clear BackendError, if the simulator cannot load
        self._dm: Any = None  # the dm_env task, built on the first reset
        self._episode_over = True
        self._last_image: np.ndarray | None = None
        self.episode_step = 0  # steps taken in the current episode (episode_steps: its length)

    # -- Gymnasium API -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Start a new episode (a new maze). ``seed`` rebuilds the task with that seed."""
        super().reset(seed=seed)
        if seed is not None:
            self._build(task_seed(seed))
        elif self._dm is None:
            self._build(int(self.np_random.integers(_SEED_LIMIT)))
        timestep = self._dm.reset()
        self.episode_step = 0
        self._episode_over = False
        return self._observe(timestep.observation)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """One control step (0.25 s). Returns ``(obs, reward, terminated, truncated, info)``."""
        if self._episode_over:
            raise ResetNeeded("MemoryMazeEnv.step() called before reset() or after the episode "
                              "ended (truncated/terminated); call reset() first")
        index = int(np.asarray(action).reshape(()))
        if not 0 <= index < NUM_ACTIONS:
            raise UserError(f"action {action!r} is outside Discrete({NUM_ACTIONS})")
        timestep = self._dm.step(index)
        self.episode_step += 1
        terminated = truncated = False
        if timestep.last():
            self._episode_over = True
            if timestep.discount == 0.0:  # dm_control: physics diverged
                logger.warning("Memory Maze physics diverged at step %d; episode terminated",
                               self.episode_step)
                terminated = True
            else:  # Memory Maze episodes end by time limit only
                truncated = True
        obs, info = self._observe(timestep.observation)
        return obs, float(timestep.reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The last image ``(R, R, 3) uint8`` in ``"rgb_array"`` mode; ``None`` without a mode."""
        if self.render_mode is None:
            return None
        if self._last_image is None:
            raise ResetNeeded("MemoryMazeEnv.render() called before reset()")
        return self._last_image.copy()

    def close(self) -> None:
        """Free the simulator (safe to call twice)."""
        if self._dm is not None:
            dm, self._dm = self._dm, None
            try:
                dm.close()
            except Exception as exc:  # noqa: BLE001 - a failed free must not mask the caller's error
                logger.debug("closing the Memory Maze task failed: %s", exc)
        self._episode_over = True

    # -- internals -----------------------------------------------------------------------------

    @property
    def episode_steps(self) -> int:
        """Steps in an episode: the task's own time limit over its control timestep (built task)."""
        if self._dm is None:
            return self.max_steps or SIZES[self.size]
        base = _composer_env(self._dm)
        return math.ceil(base._time_limit / base.control_timestep())

    def _build(self, seed: int) -> None:
        """(Re)build the dm_env task with ``seed``; checks its observations match our spaces."""
        if self._dm is not None:
            self.close()
        logger.debug("building Memory Maze %s with task seed %d", self.size, seed)
        dm = make_dm_env(self.size, seed=seed, global_observables=True, image_only_obs=False,
                         **self.task_kwargs)
        spec = dm.observation_spec()
        expected = (self.observation_space.spaces if self.extra_obs
                    else {"image": self.observation_space})
        for key, space in expected.items():
            got = spec.get(key)
            if got is None or tuple(got.shape) != space.shape or np.dtype(got.dtype) != space.dtype:
                dm.close()
                raise UserError(
                    f"Memory Maze task arguments {self.task_kwargs} give observation {key!r} as "
                    f"{None if got is None else (tuple(got.shape), np.dtype(got.dtype))}, not "
                    f"{(space.shape, space.dtype)}; this wrapper does not support them")
        if self.max_steps is not None:
            base = _composer_env(dm)
            # Same epsilon as memory_maze.tasks: the limit is reached on exactly step `max_steps`.
            base._time_limit = self.max_steps * base.control_timestep() - 1e-3
        self._dm = dm

    def _observe(self, raw: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any]]:
        """dm_env observation -> (Gymnasium observation, info); every array is a fresh copy."""
        image = np.array(raw["image"], dtype=np.uint8, copy=True)
        self._last_image = image
        extras = {}
        for key in GLOBAL_KEYS:
            value = np.array(raw[key], copy=True)
            if key == "agent_dir":  # a unit vector; clip rounding past +-1 so it stays in the Box
                value = np.clip(value, -1.0, 1.0)
            extras[key] = value.astype(np.uint8 if key == "maze_layout" else np.float64, copy=False)
        if self.extra_obs:
            return {"image": image.copy(), **extras}, {}
        return image.copy(), extras


def _composer_env(env: Any) -> Any:
    """The ``dm_control.composer.Environment`` under memory_maze's wrappers (each has ``.env``)."""
    from dm_control import composer

    while not isinstance(env, composer.Environment):
        inner = getattr(env, "env", None)
        if inner is None:
            raise TypeError(f"no dm_control composer.Environment under {type(env).__name__}")
        env = inner
    return env
