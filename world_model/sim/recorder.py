"""Recording the real Memory Maze into the episode file format, and running it for a clip.

:class:`EpisodeRecorder` accumulates ``dm_env`` observations into the official layout;
:func:`record_episode` drives a task with a policy or a fixed list of actions;
:func:`real_clip` is the one way to "run the real maze for a clip": a fresh task from a seed,
driven by given actions (the learned world's real contexts, examples, test fixtures).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from world_model.data.format import GLOBAL_KEYS, one_hot_actions
from world_model.sim.memory_maze import NUM_ACTIONS, make_dm_env

#: Chooses the next action from the current observation (a dict of the global observables).
Policy = Callable[[Mapping[str, np.ndarray]], int]


class EpisodeRecorder:
    """Accumulates dm_env observations into the official episode layout (data-format.md).

    :meth:`episode` gives ``image`` ``(T+1, 64, 64, 3)`` uint8, ``action`` ``(T+1, 6)`` float32
    one-hot with an all-zero first row, ``reward`` ``(T+1,)`` float32 with ``reward[0] = 0``, and
    every global observable with a leading ``T+1`` axis in the simulator's dtype (float64;
    ``maze_layout`` uint8).
    """

    KEYS = ("image", *GLOBAL_KEYS)

    def __init__(self, first_obs: Mapping[str, np.ndarray]) -> None:
        missing = [k for k in self.KEYS if k not in first_obs]
        if missing:
            raise ValueError(f"observation lacks {missing}: build the env with "
                             "global_observables=True, image_only_obs=False")
        self._frames: dict[str, list[np.ndarray]] = {k: [] for k in self.KEYS}
        self._actions: list[int] = []
        self._rewards: list[float] = [0.0]
        self._add_obs(first_obs)

    def __len__(self) -> int:
        """Frames recorded so far (T+1)."""
        return len(self._rewards)

    def add(self, action: int, reward: float | None, obs: Mapping[str, np.ndarray]) -> None:
        """Record one step: the action taken, the reward it earned, the observation it led to."""
        self._actions.append(int(action))
        self._rewards.append(float(reward or 0.0))
        self._add_obs(obs)

    def _add_obs(self, obs: Mapping[str, np.ndarray]) -> None:
        for key, frames in self._frames.items():
            frames.append(np.array(obs[key], copy=True))  # the simulator may reuse its buffers

    def column(self, key: str) -> np.ndarray:
        """One observation key stacked over time, ``(T+1, ...)``."""
        return np.stack(self._frames[key])

    def episode(self, **scalars: int) -> dict[str, np.ndarray]:
        """The episode for :func:`~world_model.data.format.write_episode`; ``scalars`` (``seed``,
        ``context_frames``, ``outbound_frames``) are stored as int64 scalars."""
        ep = {k: np.stack(v) for k, v in self._frames.items()}
        ep["action"] = one_hot_actions(np.array(self._actions, dtype=np.int64), NUM_ACTIONS)
        ep["reward"] = np.array(self._rewards, dtype=np.float32)
        ep.update({k: np.int64(v) for k, v in scalars.items()})
        return ep


def record_episode(env: Any, policy: Policy | Sequence[int], steps: int | None = None
                   ) -> EpisodeRecorder:
    """Reset the ``dm_env`` task ``env`` (its next maze) and record it under ``policy``.

    Args:
        env: a task from :func:`~world_model.sim.memory_maze.make_dm_env` with global
            observables (``global_observables=True, image_only_obs=False``).
        policy: ``policy(obs) -> action`` called before every step, or the actions to take.
        steps: steps to take (default: ``len(policy)`` for a list of actions). Fewer are taken
            if the episode ends first (``len(recorder) - 1`` says how many).
    """
    if steps is None:
        if callable(policy):
            raise ValueError("record_episode: a policy needs steps=")
        steps = len(policy)
    obs = env.reset().observation
    rec = EpisodeRecorder(obs)
    for i in range(steps):
        action = int(policy(obs)) if callable(policy) else int(policy[i])
        ts = env.step(action)
        obs = ts.observation
        rec.add(action, ts.reward, obs)
        if ts.last():
            break
    return rec


def real_clip(size: str, seed: int, actions: Sequence[int], **task_kwargs: Any
              ) -> dict[str, np.ndarray]:
    """The real Memory Maze ``size`` with task seed ``seed`` (its first maze), driven by
    ``actions``: an episode of ``len(actions) + 1`` frames in the official layout (``image
    (T+1, 64, 64, 3) uint8``, one-hot ``action``, ``reward``, the global observables). The same
    arguments give the same arrays; ``task_kwargs`` go to the task (e.g. ``camera_resolution``).
    """
    env = make_dm_env(size, seed=seed, global_observables=True, image_only_obs=False,
                      **task_kwargs)
    try:
        return record_episode(env, actions).episode()
    finally:
        env.close()
