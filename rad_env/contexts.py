"""Where an episode of the learned world starts: real frames, never imagined ones.

A *context* is a clip of ``C`` consecutive real frames and the actions that led to them; the world
observes it (filling the KV cache and warming the memory) and imagines from its last frame on.
Four sources:

* :class:`~rad_env.bank.ContextBank` - clips shipped with the weights (``contexts.npz``), built
  from episode files by :func:`~rad_env.bank.make_context_bank`; the default.
* :class:`DataContexts` - random windows of the episode files under a directory.
* :class:`RealContexts` - the real environment the world learned (Memory Maze, Crafter, ...), run
  for ``C`` frames under uniformly random actions, then handed over to the learned world
  (grounding).
* frames and actions the caller passes, checked by :func:`check_context`.

Every draw takes a ``numpy.random.Generator``, so a seeded env reset picks the same context.
Which source a reset uses is decided by :class:`rad_env.reset_options.ContextChooser`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from world_model.data.checks import DEFAULT_FRAME_SIZE, index_episodes
from world_model.data.dataset import WindowIndex, read_clip
from world_model.data.format import list_episodes
from world_model.engine.checks import check_actions, check_frames
from world_model.errors import UserError


@dataclass(frozen=True)
class Context:
    """One real starting clip."""

    frames: np.ndarray
    """``(C, H, W, 3)`` uint8."""
    actions: np.ndarray
    """``(C,)`` int64: ``actions[i]`` led to ``frames[i]``."""
    source: str
    """``"bank"``, ``"data"``, ``"real"`` or ``"given"``."""
    clip: int = -1
    """Index of the clip in the bank (``-1`` for other sources)."""


class ContextSource(Protocol):
    """Anything that draws real starting clips."""

    def sample(self, rng: np.random.Generator, context_len: int) -> Context: ...


def check_context(frames: Any, actions: Any, frame_size: int, num_actions: int,
                  what: str = "context") -> tuple[np.ndarray, np.ndarray]:
    """Validate context frames and actions (the caller's, or a source's) with the world's checks
    (:mod:`world_model.engine.checks`).

    Args:
        frames: ``(C, H, W, 3)`` uint8 with ``H = W = frame_size``, ``C >= 1``.
        actions: ``(C,)`` integers in ``[0, num_actions)``; ``actions[i]`` led to ``frames[i]``.
    Returns:
        ``frames (C, H, W, 3) uint8`` and ``actions (C,) int64`` as numpy arrays.
    Raises:
        UserError: naming the array, its shape or dtype and what was expected.
    """
    check_frames(frames, "(C, H, W, 3)", frame_size, name=f"{what} frames")
    if not len(frames):
        raise UserError(f"{what} frames must hold C >= 1 frames, got none")
    check_actions(actions, (len(frames),), num_actions, name=f"{what} actions")
    return np.asarray(frames), np.asarray(actions).astype(np.int64)


class DataContexts:
    """Random windows of the episode files under ``data_dir``, uniform over all windows.

    Every file is checked once against the world (``frame_size`` S of its ``(S, S, 3)`` frames,
    ``num_actions``; :mod:`world_model.data.checks`): a bad one is skipped with an
    ``EpisodeWarning`` naming it, and none left is a ``DataError`` naming every file.
    """

    def __init__(self, data_dir: str | Path, min_len: int = 1,
                 frame_size: int | None = DEFAULT_FRAME_SIZE,
                 num_actions: int | None = None) -> None:
        self.root = Path(data_dir)
        self.files = index_episodes(list_episodes(self.root), min_len, frame_size=frame_size,
                                    num_actions=num_actions,
                                    refuse_empty=f"{self.root} (context='data')")

    def sample(self, rng: np.random.Generator, context_len: int) -> Context:
        windows = WindowIndex([f.length for f in self.files], context_len)
        if windows.num_windows == 0:
            raise UserError(f"context_len={context_len}: no episode file under {self.root} is "
                            f"that long (longest: {max(f.length for f in self.files)} frames)")
        index, start = windows.draw(rng)
        frames, actions = read_clip(self.files[index].path, start, start + context_len)
        return Context(frames, actions, "data")


class RealContexts:
    """The real environment the world learned, run for ``C - 1`` uniformly random actions from a
    reset seeded by ``rng`` (actions drawn from ``rng`` too): its ``C`` frames are the context.

    Memory Maze: a fresh maze of the task seed (:func:`world_model.sim.recorder.real_clip`; about
    2 s to build, then 15-45 steps/s). Any other env of :mod:`world_model.sim.real_envs`
    (Crafter, MineRL, ``gym:ENV_ID``): the env, built once, ``reset(seed=...)`` and stepped
    (:func:`world_model.sim.pixel_recorder.record_pixel_episode`); an episode the env ends early
    gives a shorter context.

    Args:
        env_id: the real env (``"memory-maze-9x9"``, or ``"9x9"``; ``"crafter"``, ...).
        num_actions: of the world (and the env).
        frame_size: side of the frames (the env's frames are resized to it).
        **env_kwargs: passed to the env (Memory Maze: the task, e.g. ``camera_resolution``).
    """

    def __init__(self, env_id: str = "memory-maze-9x9", num_actions: int = 6,
                 frame_size: int = DEFAULT_FRAME_SIZE, **env_kwargs: Any) -> None:
        self.env_id = f"memory-maze-{env_id}" if "x" in env_id and env_id[0].isdigit() else env_id
        self.num_actions, self.frame_size, self.env_kwargs = num_actions, frame_size, env_kwargs
        self._env: Any = None

    def sample(self, rng: np.random.Generator, context_len: int) -> Context:
        from world_model.sim.maze_env import task_seed

        seed = task_seed(int(rng.integers(2**31)))
        actions = rng.integers(self.num_actions, size=context_len - 1)
        if self.env_id.startswith("memory-maze"):
            from world_model.sim.memory_maze import parse_size
            from world_model.sim.recorder import real_clip

            frames = real_clip(parse_size(self.env_id), seed, actions, **self.env_kwargs)["image"]
        else:
            from world_model.sim.pixel_recorder import record_pixel_episode
            from world_model.sim.real_envs import make_real_env

            if self._env is None:
                self._env = make_real_env(self.env_id, self.frame_size, **self.env_kwargs)
            frames = record_pixel_episode(self._env, actions, len(actions), seed,
                                          self.env_id)["image"]
        return Context(frames, np.array([0, *actions[:len(frames) - 1]], dtype=np.int64), "real")

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def stack_contexts(contexts: Sequence[Context]) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length contexts -> ``frames (n, C, H, W, 3) uint8``, ``actions (n, C) int64``."""
    return (np.stack([c.frames for c in contexts]), np.stack([c.actions for c in contexts]))
