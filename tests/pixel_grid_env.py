"""A tiny registered Gymnasium env with pixel renders, for the tests of the generic pixel path.

``RadTestGrid-v0``: an agent on a 5x5 grid; the observation is its position ``(2,) float32``
(NOT an image), so frames come from ``render_mode="rgb_array"``: a 40x40 RGB picture (a fixed
coloured background, the agent a white 8x8 square), which the collector resizes to 64x64.
``Discrete(5)``: noop, up, down, left, right. Reward 1 in the far corner, where the episode
terminates; 50 steps at most (the registered time limit). Seeded resets start at a seeded cell.
``RadTestVector-v0`` has vector observations and no renders at all (not a pixel env).
Importing this module registers both; ``gym:pixel_grid_env:RadTestGrid-v0`` does it.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


class GridEnv(gymnasium.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 4.0, (2,), np.float32)
        self.action_space = spaces.Discrete(5)
        self.pos = np.zeros(2, np.int64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.integers(0, 3, size=2)
        return self.pos.astype(np.float32), {"agent_pos": self.pos.astype(np.float64)}

    def step(self, action):
        self.pos = np.clip(self.pos + MOVES[int(action)], 0, 4)
        done = bool((self.pos == 4).all())
        return (self.pos.astype(np.float32), float(done), done, False,
                {"agent_pos": self.pos.astype(np.float64)})

    def render(self):
        image = np.zeros((40, 40, 3), np.uint8)
        image[..., 0] = np.linspace(0, 255, 40, dtype=np.uint8)[None, :]
        image[..., 2] = 120
        r, c = (self.pos * 8).tolist()
        image[r:r + 8, c:c + 8] = 255
        return image


class VectorEnv(GridEnv):
    metadata: ClassVar[dict] = {"render_modes": []}


def always_right(action_space, rng):
    """A user policy factory: always action 4 (right)."""
    return lambda frame: 4


gymnasium.register("RadTestGrid-v0", entry_point=GridEnv, max_episode_steps=50)
gymnasium.register("RadTestVector-v0", entry_point=VectorEnv, max_episode_steps=50)
