"""The context bank: real starting clips shipped with the weights (``contexts.npz``).

:class:`ContextBank` reads, checks and writes the file; :func:`make_context_bank` cuts it out of
episode files. It is the default source of a reset's context (:mod:`rad_env.contexts` has the
others, :mod:`rad_env.reset_options` chooses among them).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rad_env.contexts import Context
from world_model.data.checks import DEFAULT_FRAME_SIZE, index_episodes
from world_model.data.dataset import read_clip
from world_model.data.format import episode_name, list_episodes
from world_model.errors import DataError, UserError
from world_model.io import atomic_write_npz

logger = logging.getLogger(__name__)

#: Version of the contexts.npz layout.
BANK_VERSION = 1
#: File name of the context bank inside a run directory.
BANK_FILE = "contexts.npz"
_BANK_KEYS = ("frames", "actions", "follow_actions", "follow_frames", "episode", "start", "version")


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
        return atomic_write_npz(path, {
            "frames": self.frames, "actions": self.actions,
            "follow_actions": self.follow_actions, "follow_frames": self.follow_frames,
            "episode": self.episode, "start": self.start, "version": np.int64(BANK_VERSION)})

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


def make_context_bank(data_dir: str | Path, out_file: str | Path, clips: int = 64,
                      context_len: int = 40, follow_len: int = 0, follow_clips: int = 4,
                      seed: int = 0, frame_size: int | None = DEFAULT_FRAME_SIZE,
                      num_actions: int | None = None) -> ContextBank:
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
        frame_size, num_actions: what every file must hold (S of the world's ``(S, S, 3)``
            frames, None: the first usable file's; its action count, None: any). Each file is
            checked once (:mod:`world_model.data.checks`); a bad one is skipped with an
            ``EpisodeWarning`` naming it.
    Returns:
        The bank written to ``out_file``.
    """
    if clips < 1 or context_len < 1 or follow_len < 0 or follow_clips < 0:
        raise UserError(f"need clips >= 1, context_len >= 1, follow_len >= 0, follow_clips >= 0; "
                        f"got {clips}, {context_len}, {follow_len}, {follow_clips}")
    root = Path(data_dir)
    files = index_episodes(list_episodes(root), context_len, frame_size=frame_size,
                           num_actions=num_actions, refuse_empty=f"{root} (context bank)")
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
        image, action = read_clip(entry.path, start, start + need)
        frames.append(image[:context_len])
        actions.append(action[:context_len])
        if follow:
            follow_f.append(image[context_len:])
            follow_a.append(action[context_len:])
        names.append(episode_name(entry.path, root))
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
