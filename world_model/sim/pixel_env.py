"""Any registered Gymnasium environment with discrete actions, seen as pixels: ``gym:ENV_ID``.

:class:`PixelEnv` wraps an environment so that its observation is an RGB frame ``(size, size, 3)
uint8``: the environment's own observation when it is an RGB image, otherwise what it renders
with ``render_mode="rgb_array"`` after each reset and step (:mod:`world_model.sim.frames`
resizes either). Its action space must be ``Discrete(n)`` (a non-zero ``start`` is shifted to
0). Rewards, ``terminated``, ``truncated`` and ``info`` are the environment's own.
:func:`make_pixel_env` builds one from an id (``"CartPole-v1"``, or ``"module:Env-v0"``, which
imports ``module`` first, as ``gymnasium.make`` does).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces

from world_model.errors import UserError
from world_model.sim.frames import is_rgb_image, resize_frame


class PixelEnv(gymnasium.Wrapper):
    """``env`` with RGB frames of ``size`` pixels as observations (see the module docstring).

    Args:
        env: a Gymnasium env with ``Discrete`` actions; made with ``render_mode="rgb_array"``
            when its observations are not RGB images.
        size: side of the square frames.
        env_id: the id it was made from (for messages and episode files).
    """

    def __init__(self, env: gymnasium.Env, size: int = 64, env_id: str | None = None) -> None:
        super().__init__(env)
        self.env_id = env_id or (env.spec.id if env.spec is not None else type(env).__name__)
        space = env.action_space
        if not isinstance(space, spaces.Discrete):
            raise UserError(f"{self.env_id}: the action space is {space}; a RAD world needs "
                            f"discrete actions (Discrete(n))")
        self._start = int(space.start)
        obs_space = env.observation_space
        self.uses_render = not (isinstance(obs_space, spaces.Box)
                                and is_rgb_image(obs_space.shape, obs_space.dtype))
        if self.uses_render and env.render_mode != "rgb_array":
            raise UserError(f"{self.env_id}: observations are {obs_space}, not RGB images, and "
                            f"the env was not made with render_mode='rgb_array'")
        self.size = int(size)
        self.action_space = spaces.Discrete(int(space.n))
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.frame: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._frame(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(int(action) + self._start)
        return self._frame(obs), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        return None if self.frame is None else self.frame.copy()

    def _frame(self, obs: Any) -> np.ndarray:
        try:
            image = self.env.render() if self.uses_render else obs
        except gymnasium.error.DependencyNotInstalled as exc:
            raise UserError(f"{self.env_id}: rendering needs a package that is missing: {exc}") \
                from exc
        if image is None:
            raise UserError(f"{self.env_id}: render() returned None; make it with "
                            f"render_mode='rgb_array'")
        self.frame = resize_frame(image, self.size)
        return self.frame.copy()


def make_pixel_env(env_id: str, size: int = 64, **kwargs: Any) -> PixelEnv:
    """``gymnasium.make(env_id, **kwargs)`` seen as ``size x size`` RGB frames.

    An env whose observations are not RGB images is made again with ``render_mode="rgb_array"``.

    Raises:
        UserError: an unknown id, actions that are not ``Discrete``, or no RGB frames to be had.
    """
    try:
        env = gymnasium.make(env_id, **kwargs)
    except gymnasium.error.Error as exc:
        raise UserError(f"gym:{env_id}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise UserError(f"gym:{env_id}: {exc}") from exc
    obs_space = env.observation_space
    if not (isinstance(obs_space, spaces.Box) and is_rgb_image(obs_space.shape, obs_space.dtype)):
        modes = (env.metadata or {}).get("render_modes", [])
        env.close()
        if "rgb_array" not in modes or "render_mode" in kwargs:
            raise UserError(f"gym:{env_id}: observations are {obs_space}, not RGB images, and it "
                            f"cannot render rgb_array frames (render_modes {modes})")
        env = gymnasium.make(env_id, render_mode="rgb_array", **kwargs)
    return PixelEnv(env, size, env_id)
