"""Where an episode of the learned world starts: real frames, never imagined ones.

A *context* is a clip of ``C`` consecutive real frames and the actions that led to them; the world
observes it (filling the KV cache and warming the memory) and imagines from its last frame on.
Four sources:

* :class:`ContextBank` - clips shipped with the weights (``contexts.npz``), built from episode
  files by :func:`make_context_bank`; the default.
* :class:`DataContexts` - random windows of the episode files under a directory.
* :class:`RealContexts` - the real Memory Maze, run for ``C`` frames under uniformly random
  actions, then handed over to the learned world (grounding).
* frames and actions the caller passes, checked by :func:`check_context`.

Every draw takes a ``numpy.random.Generator``, so a seeded env reset picks the same context.

``contexts.npz`` layout (version 1; every array plain, loaded with ``allow_pickle=False``)::

    frames          (K, C, H, W, 3) uint8   the context frames of each clip
    actions         (K, C) int64            the action that led to each frame (0 at an episode
                                            start, where no action led to the frame)
    follow_actions  (M, F) int64            the real actions after the context, for clips 0..M-1
    follow_frames   (M, F, H, W, 3) uint8   the real frames those actions led to (a replay)
    episode         (K,) str                source episode file, relative to the data directory
    start           (K,) int64              index of the clip's first frame in that file
    version         () int64
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from world_model.data.dataset import index_episodes, read_window
from world_model.data.format import action_indices, list_episodes
from world_model.errors import CheckpointError, DataError, UserError

logger = logging.getLogger(__name__)

#: Version of the contexts.npz layout.
BANK_VERSION = 1
#: File name of the context bank inside a run directory.
BANK_FILE = "contexts.npz"
_BANK_KEYS = ("frames", "actions", "follow_actions", "follow_frames", "episode", "start", "version")


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
    """Validate caller-given context frames and actions.

    Args:
        frames: ``(C, H, W, 3)`` uint8 with ``H = W = frame_size``, ``C >= 1``.
        actions: ``(C,)`` integers in ``[0, num_actions)``; ``actions[i]`` led to ``frames[i]``.
    Returns:
        ``frames (C, H, W, 3) uint8`` and ``actions (C,) int64`` as numpy arrays.
    Raises:
        UserError: naming the array, its shape or dtype and what was expected.
    """
    frames = np.asarray(frames)
    shape = (frame_size, frame_size, 3)
    if frames.ndim != 4 or frames.shape[1:] != shape or frames.dtype != np.uint8 or not len(frames):
        raise UserError(f"{what} frames must be (C, {frame_size}, {frame_size}, 3) uint8 with "
                        f"C >= 1, got {frames.shape} {frames.dtype}")
    actions = np.asarray(actions)
    if actions.shape != (len(frames),) or not np.issubdtype(actions.dtype, np.integer):
        raise UserError(f"{what} actions must be ({len(frames)},) integers (one per frame, the "
                        f"action that led to it), got {actions.shape} {actions.dtype}")
    bad = actions[(actions < 0) | (actions >= num_actions)]
    if len(bad):
        raise UserError(f"{what} actions must be in [0, {num_actions}), got {sorted(set(bad.tolist()))}")
    return frames, actions.astype(np.int64)


# -- the shipped bank -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextBank:
    """Real starting clips (and, for some, the real continuation): see the module docstring."""

    frames: np.ndarray
    actions: np.ndarray
    follow_actions: np.ndarray
    follow_frames: np.ndarray
    episode: np.ndarray
    start: np.ndarray

    @property
    def clips(self) -> int:
        return int(self.frames.shape[0])

    @property
    def context_len(self) -> int:
        return int(self.frames.shape[1])

    @property
    def follow_len(self) -> int:
        return int(self.follow_actions.shape[1])

    @property
    def frame_size(self) -> int:
        return int(self.frames.shape[2])

    def clip(self, index: int, context_len: int | None = None) -> Context:
        """Clip ``index``: its last ``context_len`` frames (all by default)."""
        if not 0 <= index < self.clips:
            raise UserError(f"clip {index} does not exist: the context bank has {self.clips} clips")
        n = self.context_len if context_len is None else int(context_len)
        if not 1 <= n <= self.context_len:
            raise UserError(f"context_len={n}: the context bank's clips have {self.context_len} "
                            f"frames (use a data directory or the real env for longer contexts)")
        return Context(self.frames[index, -n:], self.actions[index, -n:], "bank", index)

    def sample(self, rng: np.random.Generator, context_len: int) -> Context:
        """A uniformly drawn clip."""
        return self.clip(int(rng.integers(self.clips)), context_len)

    def save(self, path: str | Path) -> Path:
        """Write the bank atomically (compressed npz)."""
        from world_model.io import atomic_write

        arrays = {"frames": self.frames, "actions": self.actions,
                  "follow_actions": self.follow_actions, "follow_frames": self.follow_frames,
                  "episode": self.episode, "start": self.start,
                  "version": np.int64(BANK_VERSION)}

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez adds no suffix
                np.savez_compressed(f, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> ContextBank:
        """Read and check a ``contexts.npz``. Raises :class:`DataError` naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such context bank file")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in _BANK_KEYS if k not in data.files]
                if missing:
                    raise DataError(f"{path}: not a context bank: missing {missing} "
                                    f"(has {sorted(data.files)})")
                arrays = {k: data[k] for k in _BANK_KEYS}
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: unreadable or corrupt context bank ({exc})") from exc
        version = int(arrays.pop("version"))
        if version != BANK_VERSION:
            raise DataError(f"{path}: context bank version {version} is not supported "
                            f"(this rad-env reads version {BANK_VERSION})")
        bank = cls(**arrays)
        bank._check(str(path))
        return bank

    def _check(self, name: str) -> None:
        f, a, fa, ff = self.frames, self.actions, self.follow_actions, self.follow_frames
        if f.ndim != 5 or f.shape[-1] != 3 or f.dtype != np.uint8 or f.shape[0] < 1 or f.shape[1] < 1:
            raise DataError(f"{name}: 'frames' must be (K, C, H, W, 3) uint8 with K, C >= 1, "
                            f"got {f.shape} {f.dtype}")
        K, C = f.shape[:2]
        if a.shape != (K, C) or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{name}: 'actions' must be ({K}, {C}) integers, got {a.shape} {a.dtype}")
        if fa.ndim != 2 or fa.shape[0] > K or not np.issubdtype(fa.dtype, np.integer):
            raise DataError(f"{name}: 'follow_actions' must be (M, F) integers with M <= {K}, "
                            f"got {fa.shape} {fa.dtype}")
        if ff.shape != (*fa.shape, *f.shape[2:]) or ff.dtype != np.uint8:
            raise DataError(f"{name}: 'follow_frames' must be {(*fa.shape, *f.shape[2:])} uint8, "
                            f"got {ff.shape} {ff.dtype}")
        if self.episode.shape != (K,) or self.start.shape != (K,):
            raise DataError(f"{name}: 'episode' and 'start' must be ({K},)")


def _episode_name(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def make_context_bank(data_dir: str | Path, out_file: str | Path, clips: int = 64,
                      context_len: int = 40, follow_len: int = 0, follow_clips: int = 4,
                      seed: int = 0) -> ContextBank:
    """Cut ``clips`` real starting clips out of the episode files under ``data_dir``.

    Files are visited in a seeded random order, round robin, so the clips come from as many
    episodes as possible; each clip starts at a uniformly drawn frame. The first ``follow_clips``
    clips also keep the ``follow_len`` real frames and actions that come after their context (for
    ``rad demo``'s real-vs-imagined video); they are cut from files long enough for both.

    Args:
        data_dir: a directory of episode ``.npz`` files (see docs/data-format.md), or one file.
        out_file: where to write the bank (``contexts.npz`` beside the weights).
        clips: K, number of clips.
        context_len: C, frames per clip.
        follow_len: F, real frames kept after the context of the first ``follow_clips`` clips.
        seed: fixes the clips.
    Returns:
        The bank written to ``out_file``.
    """
    if clips < 1 or context_len < 1 or follow_len < 0 or follow_clips < 0:
        raise UserError(f"need clips >= 1, context_len >= 1, follow_len >= 0, follow_clips >= 0; "
                        f"got {clips}, {context_len}, {follow_len}, {follow_clips}")
    root = Path(data_dir)
    files = index_episodes(list_episodes(root), context_len)
    if not files:
        raise DataError(f"{root}: no readable episode file with at least {context_len} frames")
    n_follow = min(follow_clips, clips) if follow_len else 0
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    long_enough = [f for f in order if f.length >= context_len + follow_len]
    if n_follow and not long_enough:
        raise DataError(f"{root}: no episode file has context_len + follow_len = "
                        f"{context_len + follow_len} frames (longest: {max(f.length for f in files)})")
    frames, actions, follow_a, follow_f, names, starts = [], [], [], [], [], []
    for k in range(clips):
        follow = k < n_follow
        pool = long_enough if follow else order
        entry = pool[k % len(pool)]
        need = context_len + (follow_len if follow else 0)
        start = int(rng.integers(entry.length - need + 1))
        with zipfile.ZipFile(entry.path) as zf:
            image = read_window(zf, "image", start, start + need)
            action = action_indices(read_window(zf, "action", start, start + need))
        frames.append(image[:context_len])
        actions.append(action[:context_len])
        if follow:
            follow_f.append(image[context_len:])
            follow_a.append(action[context_len:])
        names.append(_episode_name(entry.path, root))
        starts.append(start)
    size = frames[0].shape[1:]
    bank = ContextBank(
        frames=np.stack(frames), actions=np.stack(actions).astype(np.int64),
        follow_actions=(np.stack(follow_a).astype(np.int64) if follow_a
                        else np.zeros((0, 0), np.int64)),
        follow_frames=(np.stack(follow_f) if follow_f else np.zeros((0, 0, *size), np.uint8)),
        episode=np.array(names, dtype=str), start=np.array(starts, dtype=np.int64))
    bank._check(str(out_file))
    bank.save(out_file)
    logger.info("wrote %d clips of %d frames (%d with %d follow-up frames) from %d files to %s",
                clips, context_len, n_follow, follow_len, len(files), out_file)
    return bank


# -- a data directory -----------------------------------------------------------------------------

class DataContexts:
    """Random windows of the episode files under ``data_dir``, uniform over all windows."""

    def __init__(self, data_dir: str | Path, min_len: int = 1) -> None:
        self.root = Path(data_dir)
        self.files = index_episodes(list_episodes(self.root), min_len)
        if not self.files:
            raise DataError(f"{self.root}: no readable episode file with at least {min_len} frames")

    def sample(self, rng: np.random.Generator, context_len: int) -> Context:
        lengths = np.array([f.length for f in self.files])
        windows = np.clip(lengths - context_len + 1, 0, None)
        if windows.sum() == 0:
            raise UserError(f"context_len={context_len}: no episode file under {self.root} is "
                            f"that long (longest: {lengths.max()} frames)")
        w = int(rng.integers(windows.sum()))
        index = int(np.searchsorted(np.cumsum(windows), w, side="right"))
        start = w - int(windows[:index].sum())
        entry = self.files[index]
        with zipfile.ZipFile(entry.path) as zf:
            frames = read_window(zf, "image", start, start + context_len)
            actions = action_indices(read_window(zf, "action", start, start + context_len))
        return Context(frames, actions, "data")


# -- the live real env ----------------------------------------------------------------------------

class RealContexts:
    """The real Memory Maze, reset with a seed drawn from ``rng`` and driven for ``C - 1`` steps
    by uniformly random actions: its ``C`` frames are the context (about 2 s to build a maze, then
    15-45 steps/s). The simulator is built on the first draw and kept.

    Args:
        size: the maze (``"9x9"`` is what the shipped world learned).
        **env_kwargs: passed to :class:`world_model.data.maze_env.MemoryMazeEnv`.
    """

    def __init__(self, size: str = "9x9", num_actions: int = 6, **env_kwargs: Any) -> None:
        self.size, self.num_actions, self.env_kwargs = size, num_actions, env_kwargs
        self.env: Any = None

    def sample(self, rng: np.random.Generator, context_len: int) -> Context:
        if self.env is None:
            from world_model.data.maze_env import MemoryMazeEnv

            self.env = MemoryMazeEnv(self.size, **self.env_kwargs)
        obs, _ = self.env.reset(seed=int(rng.integers(2**31)))
        frames, actions = [obs], [0]
        for action in rng.integers(self.num_actions, size=context_len - 1):
            obs, *_ = self.env.step(int(action))
            frames.append(obs)
            actions.append(int(action))
        return Context(np.stack(frames), np.array(actions, dtype=np.int64), "real")

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def stack_contexts(contexts: Sequence[Context]) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length contexts -> ``frames (n, C, H, W, 3) uint8``, ``actions (n, C) int64``."""
    return (np.stack([c.frames for c in contexts]), np.stack([c.actions for c in contexts]))


# -- choosing a reset's context -------------------------------------------------------------------

#: Where resets can start, and the keys ``reset(options=...)`` accepts.
CONTEXT_SOURCES = ("bank", "data", "real")
RESET_OPTIONS = ("context", "clip", "frames", "actions", "data_dir")


class ContextChooser:
    """Picks the context of every reset: the default source, or what reset options ask for.

    Args:
        run_dir: the checkpoint directory (its ``contexts.npz`` is the default bank).
        frame_size, num_actions, window: of the world (window sets the default length).
        contexts: a bank file instead of the checkpoint's.
        context: the default source, one of :data:`CONTEXT_SOURCES`.
        data_dir: episode files for ``"data"``.
        context_len: frames per context (default: the bank's clip length, else ``2 * window``).
        real_env_kwargs: for :class:`RealContexts`.
    """

    def __init__(self, run_dir: Path, frame_size: int, num_actions: int, window: int, *,
                 contexts: str | Path | None = None, context: str = "bank",
                 data_dir: str | Path | None = None, context_len: int | None = None,
                 real_env_kwargs: dict[str, Any] | None = None) -> None:
        if context not in CONTEXT_SOURCES:
            raise UserError(f"context={context!r}: expected one of {CONTEXT_SOURCES}")
        if context == "data" and data_dir is None:
            raise UserError("context='data' needs data_dir=DIR (a directory of episode files)")
        self.run_dir, self.default = Path(run_dir), context
        self.frame_size, self.num_actions = frame_size, num_actions
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.real_env_kwargs = dict(real_env_kwargs or {})
        self.bank = self._load_bank(contexts)
        default_len = self.bank.context_len if self.bank is not None else 2 * window
        self.context_len = int(context_len) if context_len is not None else default_len
        if self.context_len < 1:
            raise UserError(f"context_len must be >= 1, got {context_len}")
        if context == "bank":
            self._bank().clip(0, self.context_len)  # a too long context_len fails now
        self._data: dict[Path, DataContexts] = {}
        self._real: RealContexts | None = None

    def _load_bank(self, contexts: str | Path | None) -> ContextBank | None:
        path = Path(contexts) if contexts is not None else self.run_dir / BANK_FILE
        if contexts is None and not path.is_file():
            return None
        try:
            bank = ContextBank.load(path)
        except DataError as exc:
            if contexts is None:  # the checkpoint's own bank is broken
                raise CheckpointError(str(exc)) from exc
            raise
        if bank.frame_size != self.frame_size:
            raise DataError(f"{path}: frames are {bank.frame_size}x{bank.frame_size}, the world "
                            f"makes {self.frame_size}x{self.frame_size}")
        return bank

    def _bank(self) -> ContextBank:
        if self.bank is None:
            raise CheckpointError(
                f"no context bank: {self.run_dir / BANK_FILE} does not exist. Pass contexts=FILE "
                f"(see make_context_bank), context='data' with data_dir=DIR, context='real', or "
                f"reset(options={{'frames': ..., 'actions': ...}})")
        return self.bank

    def _source(self, name: str, data_dir: Any) -> ContextSource:
        if name == "bank":
            return self._bank()
        if name == "data":
            root = Path(data_dir) if data_dir is not None else self.data_dir
            if root is None:
                raise UserError("context 'data' needs a directory: data_dir= when making the env "
                                "or options={'context': 'data', 'data_dir': DIR}")
            if root not in self._data:
                self._data[root] = DataContexts(root, self.context_len)
            return self._data[root]
        if self._real is None:
            self._real = RealContexts("9x9", self.num_actions, **self.real_env_kwargs)
        return self._real

    def draw(self, rngs: Sequence[np.random.Generator], options: dict[str, Any] | None
             ) -> list[Context]:
        """One context per generator (each row's own), following reset ``options``."""
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(RESET_OPTIONS))
        if unknown:
            raise UserError(f"unknown reset option(s) {unknown}; known: {list(RESET_OPTIONS)}")
        if "frames" in opts or "actions" in opts:
            return self._given(len(rngs), opts)
        source = opts.get("context", self.default)
        if source not in CONTEXT_SOURCES:
            raise UserError(f"options['context']={source!r}: expected one of {CONTEXT_SOURCES}, "
                            f"or pass options 'frames' and 'actions'")
        if "clip" in opts and source != "bank":
            raise UserError(f"options['clip'] picks a clip of the context bank, not of {source!r}")
        if "data_dir" in opts and source != "data":
            raise UserError(f"options['data_dir'] is for context 'data', not {source!r}")
        clips = opts.get("clip")
        if clips is not None:
            clips = [clips] * len(rngs) if np.ndim(clips) == 0 else list(clips)
            if len(clips) != len(rngs) or not all(isinstance(c, (int, np.integer)) for c in clips):
                raise UserError(f"options['clip'] must be an int or {len(rngs)} ints, got {clips}")
            return [self._bank().clip(int(c), self.context_len) for c in clips]
        src = self._source(source, opts.get("data_dir"))
        return [src.sample(rng, self.context_len) for rng in rngs]

    def _given(self, n: int, opts: dict[str, Any]) -> list[Context]:
        if "frames" not in opts or "actions" not in opts:
            raise UserError("reset options 'frames' and 'actions' go together (the real context "
                            "frames and the action that led to each)")
        if opts.get("context", "given") != "given" or "clip" in opts:
            raise UserError("reset options 'frames'/'actions' give the context: drop 'context' "
                            "and 'clip'")
        frames, actions = np.asarray(opts["frames"]), np.asarray(opts["actions"])
        per_row = frames.ndim == 5
        if per_row and (len(frames) != n or actions.ndim != 2 or len(actions) != n):
            raise UserError(f"per-row context frames must be ({n}, C, H, W, 3) with actions "
                            f"({n}, C), got {frames.shape} and {actions.shape}")
        out = []
        for k in range(n):
            f, a = check_context(frames[k] if per_row else frames,
                                 actions[k] if per_row else actions, self.frame_size,
                                 self.num_actions, "reset options 'frames'/'actions':")
            out.append(Context(f, a, "given"))
        return out

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
            self._real = None
