"""Recording an episode of a pixel environment (any of :mod:`world_model.sim.real_envs`) into the
episode file format.

:func:`record_pixel_episode` resets the env with a seed and steps it under a policy, and returns
the arrays of one episode file (docs/data-format.md): ``image (T+1, S, S, 3) uint8``, one-hot
``action (T+1, n)`` float32 with an all-zero first row, ``reward (T+1,)`` float32 with
``reward[0] = 0``, ``terminal (T+1,)`` uint8 (1 on the frame a termination -- not a truncation --
led to), ``agent_pos (T+1, 2)`` float64 when the env reports ``info["agent_pos"]`` at
every reset and step (Crafter does), and the scalars ``seed``, ``num_actions`` and ``env_id``.
An episode the env ends early (``terminated`` or ``truncated``) is shorter than ``steps + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from world_model.data.format import one_hot_actions
from world_model.errors import UserError
from world_model.sim.frames import rgb_frame
from world_model.sim.gym_policies import Policy


def record_pixel_episode(env: Any, policy: Policy | Sequence[int], steps: int, seed: int,
                         env_id: str) -> dict[str, np.ndarray]:
    """``env.reset(seed=seed)``, then at most ``steps`` steps of ``policy(frame) -> action`` (or
    the given actions). Returns the episode's arrays (module docstring)."""
    n = int(env.action_space.n)
    frame, info = env.reset(seed=int(seed))
    frames, actions, rewards = [rgb_frame(frame, f"{env_id} observation").copy()], [], [0.0]
    terminal = [0]
    positions = [info.get("agent_pos")]
    for i in range(int(steps)):
        action = int(policy(frames[-1])) if callable(policy) else int(policy[i])
        if not 0 <= action < n:
            raise UserError(f"the policy chose action {action}, outside Discrete({n}) of {env_id}")
        frame, reward, terminated, truncated, info = env.step(action)
        frames.append(rgb_frame(frame, f"{env_id} observation").copy())
        actions.append(action)
        rewards.append(float(reward))
        terminal.append(int(bool(terminated)))
        positions.append(info.get("agent_pos"))
        if terminated or truncated:
            break
    episode = {"image": np.stack(frames), "action": one_hot_actions(np.array(actions), n),
               "reward": np.array(rewards, dtype=np.float32),
               "terminal": np.array(terminal, dtype=np.uint8)}
    if all(p is not None for p in positions):
        episode["agent_pos"] = np.stack([np.asarray(p, dtype=np.float64) for p in positions])
    episode.update(seed=np.int64(seed), num_actions=np.int64(n), env_id=np.array(env_id))
    return episode
