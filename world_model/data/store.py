"""Whole episodes held in memory, for the trainers that draw single frames or pairs of frames.

Reading one frame from a compressed episode file decompresses everything before it (tens of
milliseconds), so the frame-level trainers (``rad train-vae``, ``rad train-idm``) read a bounded
number of whole episodes once and draw from memory: a 1001-frame 64x64 episode is 12 MB.
Every draw is a pure function of the generator it is given, so a trainer that seeds it from
``(seed, step)`` resumes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.data.checks import index_episodes
from world_model.data.format import action_indices, read_episode


@dataclass
class EpisodeStore:
    """``frames[e] (T_e, S, S, 3) uint8`` and ``actions[e] (T_e,) int64`` of episodes ``e``
    (``actions[e][t]`` led to ``frames[e][t]``)."""

    frames: list[np.ndarray]
    actions: list[np.ndarray]

    @classmethod
    def load(cls, paths: Sequence[Path], frame_size: int | None = None,
             what: str = "episode files") -> EpisodeStore:
        """Read ``paths`` whole (each checked first: a bad file is skipped with a warning naming
        it; none usable is a :class:`~world_model.errors.DataError` naming ``what``)."""
        files = index_episodes(list(paths), 2, frame_size=frame_size, refuse_empty=what)
        frames, actions = [], []
        for f in files:
            ep = read_episode(f.path, ("image", "action"))
            frames.append(ep["image"])
            actions.append(action_indices(ep["action"]))
        return cls(frames, actions)

    @property
    def frame_size(self) -> int:
        return int(self.frames[0].shape[1])

    @property
    def num_actions(self) -> int:
        """One more than the largest action index present."""
        return int(max(a.max() for a in self.actions)) + 1

    def _draw(self, rng: np.random.Generator, n: int, span: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (episode, start) pairs, uniform over every run of ``span`` consecutive frames."""
        counts = np.array([len(f) - span + 1 for f in self.frames])
        ends = np.cumsum(counts)
        flat = rng.integers(ends[-1], size=n)
        ep = np.searchsorted(ends, flat, side="right")
        return ep, flat - np.concatenate([[0], ends[:-1]])[ep]

    def draw_frames(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` frames ``(n, S, S, 3) uint8``, uniform over all frames."""
        ep, t = self._draw(rng, n, 1)
        return np.stack([self.frames[e][i] for e, i in zip(ep, t)])

    def draw_transitions(self, rng: np.random.Generator, n: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` transitions, uniform over all: ``(frames, next_frames, actions)`` with
        ``actions[k]`` the action that led from ``frames[k]`` to ``next_frames[k]``."""
        ep, t = self._draw(rng, n, 2)
        a = np.stack([self.frames[e][i] for e, i in zip(ep, t)])
        b = np.stack([self.frames[e][i + 1] for e, i in zip(ep, t)])
        act = np.array([self.actions[e][i + 1] for e, i in zip(ep, t)], dtype=np.int64)
        return a, b, act
