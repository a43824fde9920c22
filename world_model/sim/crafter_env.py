"""Crafter (Hafner 2021, PyPI ``crafter``) as a Gymnasium 1.x environment: ``Crafter-v0``.

Crafter is a 2D open-world survival game in the spirit of Minecraft: the agent sees a 9x9-tile
top-down view around itself (the bottom two rows show its inventory) as a ``(64, 64, 3) uint8``
image and has 17 discrete actions (:data:`ACTION_NAMES`). The world (64x64 tiles) persists
beyond the view, so what the agent saw and left is still there when it comes back: a world model
must remember it. Crafter itself speaks the old 4-tuple gym API; this class puts the Gymnasium one
on top (``reset(seed=...)``, ``(obs, reward, terminated, truncated, info)``).

* ``reset(seed=s)`` rebuilds the game with seed ``s``: the same world, the same episode.
  ``reset()`` without a seed starts the game's next episode (a new world drawn from its seed),
  so a seeded reset followed by unseeded ones is reproducible.
* ``terminated`` is True when the player dies; ``truncated`` when ``max_steps`` steps are done
  (Crafter's own episode length, default 10000).
* Reward (Crafter's): +1 for each achievement unlocked for the first time in the episode, and the
  change in health / 10 at every step.
* ``info`` holds ``agent_pos`` (``(2,) float64``, the player's tile in the 64x64 world; also after
  ``reset``) and, after a step, Crafter's ``inventory``, ``achievements``, ``discount``,
  ``semantic`` and ``player_pos``.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any, ClassVar, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from world_model.errors import BackendError, UserError

ACTION_NAMES = (
    "noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone",
    "place_table", "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe",
    "make_iron_pickaxe", "make_wood_sword", "make_stone_sword", "make_iron_sword",
)
NUM_ACTIONS = len(ACTION_NAMES)
#: Crafter's own episode length (steps).
EPISODE_STEPS = 10000
_SEED_LIMIT = 2**31 - 1  # crafter draws its own seeds below this


def _crafter():
    if importlib.util.find_spec("crafter") is None:
        raise BackendError("Crafter is not installed: pip install 'rad-env[envs]' (or pip install "
                           "crafter==1.8.3); it is pure Python and runs headless")
    import crafter

    return crafter


class CrafterEnv(gymnasium.Env):
    """The real Crafter game behind the Gymnasium API.

    Args:
        size: side of the square observation in pixels (Crafter renders at that size; 64).
        max_steps: episode length in steps, then ``truncated=True`` (Crafter's ``length``).
        area: side of the world in tiles (Crafter's 64; generating it takes most of a reset,
            seconds on this project's machines, so smaller worlds reset faster).
        render_mode: ``"rgb_array"`` (``render()`` returns the last observation) or None.

    Raises:
        BackendError: ``crafter`` is not installed.
        UserError: a bad argument.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    action_names = ACTION_NAMES

    def __init__(self, size: int = 64, max_steps: int = EPISODE_STEPS,
                 render_mode: str | None = None, area: int = 64) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise UserError(f"render_mode={render_mode!r}: expected one of "
                            f"{self.metadata['render_modes']} or None")
        if int(size) < 9 or int(max_steps) < 1 or int(area) < 16:
            raise UserError(f"CrafterEnv needs size >= 9, max_steps >= 1 and area >= 16, got "
                            f"{size}, {max_steps}, {area}")
        self.area = int(area)
        self._crafter = _crafter()
        self.size, self.max_steps, self.render_mode = int(size), int(max_steps), render_mode
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._game: Any = None  # built on the first reset
        self._obs: np.ndarray | None = None
        self._over = True
        self.episode_step = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new episode (a new world); ``seed`` rebuilds the game with that seed."""
        super().reset(seed=seed)
        if seed is not None or self._game is None:
            game_seed = (int(seed) % _SEED_LIMIT if seed is not None
                         else int(self.np_random.integers(_SEED_LIMIT)))
            self._game = self._crafter.Env(area=(self.area, self.area), size=(self.size, self.size),
                                           length=self.max_steps, seed=game_seed)
        self._obs = np.asarray(self._game.reset(), dtype=np.uint8)
        self._over, self.episode_step = False, 0
        return self._obs.copy(), {"agent_pos": self._position()}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._over:
            raise ResetNeeded("CrafterEnv.step() called before reset() or after the episode "
                              "ended; call reset() first")
        index = int(np.asarray(action).reshape(()))
        if not 0 <= index < NUM_ACTIONS:
            raise UserError(f"action {action!r} is outside Discrete({NUM_ACTIONS})")
        obs, reward, done, info = self._game.step(index)
        self.episode_step += 1
        self._obs = np.asarray(obs, dtype=np.uint8)
        terminated = bool(info.get("discount", 1.0) == 0.0)  # the player died
        truncated = bool(done and not terminated)
        self._over = bool(done)
        info = dict(copy.deepcopy(info), agent_pos=self._position())  # Crafter reuses its arrays
        return self._obs.copy(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._obs is None:
            raise ResetNeeded("CrafterEnv.render() called before reset()")
        return self._obs.copy()

    def close(self) -> None:
        self._game, self._over = None, True

    def _position(self) -> np.ndarray:
        return np.asarray(self._game._player.pos, dtype=np.float64).copy()
