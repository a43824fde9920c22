"""The learned world as a Gymnasium environment: ``RADEnv``, one row of the batched core.

``gymnasium.make("rad_env:RAD-v0", checkpoint=RUN)`` builds :class:`RADEnv` over a world of any
environment: its observation space ``Box(0, 255, (S, S, 3), uint8)`` and action space
``Discrete(n)`` are those recorded in the checkpoint (``latent.frame_size``, ``model.num_actions``),
its episode length and reward reading those of the real env it learned (``train.env_id``:
Crafter 10000 steps and raw rewards, ...). ``gymnasium.make("rad_env:RAD-MemoryMaze-v0")`` is
its Memory Maze specialisation (``family="memory-maze"``): the same spaces as the real
``MemoryMaze-9x9-v0`` (``Box(0, 255, (64, 64, 3), uint8)``, ``Discrete(6)``) and the same episode
length (1000 steps, then truncation), the shipped world by default, and a world of another
environment refused; an agent moves between the learned and the real env unchanged.

* ``reset(seed=..., options=...)`` starts from REAL frames (see :mod:`rad_env.reset_options`): a
  clip shipped with the weights by default; ``options={"context": "data"}`` a window of the
  episode files under ``data_dir``; ``{"context": "real"}`` the real env (Memory Maze, Crafter,
  ...) run for the context length; ``{"clip": k}`` clip ``k`` of the bank; ``{"frames": (C, 64, 64, 3) uint8,
  "actions": (C,) int}`` the caller's own. The observation is the last real frame.
* ``step(action)`` imagines one frame: ``steps`` DDIM passes plus one clean pass against the
  cached window and the recurrent memory (constant cost per frame). The reward and termination
  come from heads trained with the world model on the real rewards.
* ``observe(frame, action)`` feeds a real frame instead of an imagined one (grounding);
  ``get_state()``/``set_state()`` branch futures from one moment.

Everything happens in :class:`~rad_env.worlds.BatchedWorlds` (N = 1), and the engine under it
checks the action and the observed frame (once); this class adds the single-env Gymnasium
conventions and nothing else.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, SupportsFloat

import gymnasium
import numpy as np
from gymnasium.error import ResetNeeded

from rad_env.config import EnvConfig
from rad_env.worlds import BatchedWorlds, StepResult, WorldSnapshot
from world_model.errors import UserError


class RADEnv(gymnasium.Env):
    """One learned world (a :class:`BatchedWorlds` of one row).

    Args:
        checkpoint: run directory; None (default) is the world shipped in
            ``rad_env/weights/memory-maze-9x9`` (a clear CheckpointError if it is not installed).
        render_mode: ``"rgb_array"`` (``render()`` returns the last frame) or None.
        config: the env's options (:class:`~rad_env.config.EnvConfig`).
        **options: fields of :class:`~rad_env.config.EnvConfig` (``steps``, ``device``,
            ``contexts``, ``context``, ``max_steps``, ...), replacing those of ``config``.

    ``info`` holds ``frame_index`` (of the returned frame in the world, context included),
    ``step`` (since the reset), ``sampling_steps``, ``imagined``, ``reward_raw`` and
    ``termination_prob``; after a reset ``context_source`` and ``clip`` instead of the last two.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, checkpoint: str | os.PathLike | None = None, *,
                 render_mode: str | None = None, config: EnvConfig | None = None,
                 **options: Any) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise UserError(f"render_mode={render_mode!r}: expected one of "
                            f"{self.metadata['render_modes']} or None")
        self.worlds = BatchedWorlds(1, checkpoint, config=config, **options)
        self.render_mode = render_mode
        self.observation_space = self.worlds.observation_space
        self.action_space = self.worlds.action_space
        self.metadata = dict(self.metadata, render_fps=self.worlds.real_env.render_fps)
        self.env_id = self.worlds.env_id
        """The real environment this world learned (``memory-maze-9x9``, ``crafter``, ...)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode from a real context (see the module docstring for ``options``)."""
        super().reset(seed=seed)
        self.worlds.seed_row(0, self.np_random)  # contexts and noise seeds follow the env's seed
        self.worlds.reset_rows([0], options)
        return self.worlds.obs[0].copy(), self.worlds.reset_info(0)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Imagine the frame that ``action`` leads to (checked here, once)."""
        self._check_running("step")
        return self._unbatch(self.worlds.step(self._one(action)))

    def observe(self, frame: Any, action: Any
                ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Feed the REAL ``frame (S, S, 3) uint8`` that ``action`` led to, in place of an
        imagined one. Counts as a step; returns what :meth:`step` returns (``obs`` is ``frame``,
        the reward and termination are the heads' reading of it, ``info["imagined"]`` False)."""
        self._check_running("observe")
        return self._unbatch(self.worlds.observe(self._one(frame, ndim=3), self._one(action)))

    def get_state(self) -> WorldSnapshot:
        """A snapshot (memory, KV cache, sampling generators, counters, the env's RNG) that
        :meth:`set_state` restores, as often as wanted: each restore continues identically."""
        return self.worlds.snapshot()

    def set_state(self, snapshot: WorldSnapshot) -> None:
        self.worlds.restore(snapshot)

    def render(self) -> np.ndarray | None:
        """The last frame ``(S, S, 3) uint8`` in ``"rgb_array"`` mode; None without a mode."""
        if self.render_mode is None:
            return None
        if not self.worlds.started[0]:
            raise ResetNeeded("render() called before reset()")
        return self.worlds.obs[0].copy()

    def close(self) -> None:
        self.worlds.close()

    def _check_running(self, what: str) -> None:
        if self.worlds.ended[0]:
            raise ResetNeeded(f"RADEnv.{what}() called before reset() or after the episode ended "
                              f"(terminated/truncated); call reset() first")

    @staticmethod
    def _one(value: Any, ndim: int = 0) -> Any:
        """One row's value (an action, ``ndim = 0``, where a size-1 array counts as one; or a
        frame, ``ndim = 3``) as the batch of one row the core takes; anything else is passed on
        as it is, for the engine's check to name."""
        if ndim == 0 and np.ndim(value) > 0 and np.size(value) == 1:
            return np.reshape(value, 1)
        return np.asarray(value)[None] if np.ndim(value) == ndim else value

    @staticmethod
    def _unbatch(r: StepResult) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return (r.obs[0].copy(), float(r.reward[0]), bool(r.terminated[0]), bool(r.truncated[0]),
                r.info(0))
