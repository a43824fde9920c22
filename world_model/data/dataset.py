"""Training batches of random windows from a directory of episode files, read lazily.

Reads the official Memory Maze offline data sets unchanged and the project's own collections (one
``.npz`` per episode, see :mod:`world_model.data.format` and docs/data-format.md). Nothing is held
in memory but an index of file lengths: each sample opens its file and decompresses only the window
it needs (and the bytes before it in the compressed stream).

A batch is a dict of torch tensors::

    frames   (B, T, H, W, 3) uint8    image[s : s+T]
    actions  (B, T) int64             index of the action that led to each frame (0 for image[0])
    rewards  (B, T) float32           reward received on the step into each frame
    terminals (B, T) bool             the episode terminated on the step into the frame (the
                                      optional ``terminal`` array; all False without it)
    episode  (B,) int64               index of the file in ``dataset.files``
    start    (B,) int64               window start s in that file
    chunk    (B,) int64               with ``chunks > 1`` only: which window of each row's stretch
    <key>    (B, T, ...)              each extra key asked for (float64 stored -> float32)

Determinism and resume. Batch ``step`` is a pure function of ``(seed, rank, step)`` and the file
index: its generator is ``np.random.default_rng([seed, rank, step])``. So the stream does not depend
on ``num_workers`` (worker ``w`` of ``n`` makes steps ``w, w+n, ...`` and the DataLoader returns them
in order), a run resumed at step ``k`` (``start_step=k``) continues exactly where it stopped, and
DDP ranks draw independent streams (rank 0's is the single-process stream). A window is uniform over
all windows of all files (a file is drawn in proportion to its number of windows). A file that
fails to read is named in a warning and excluded; a draw that lands on an excluded file is drawn
again from the same generator, so the stream is as if the file had been excluded from the start
(exactly so for files found bad when the index is built; one whose corruption lies deep inside is
found only when a window reaches it).

Train/validation split: by file name, independent of the seed and of ``seq_len`` (see
:func:`split_episodes`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from world_model.data.checks import (  # EpisodeFile, EpisodeWarning: importable from here too
    DEFAULT_FRAME_SIZE,
    READ_ERRORS,
    EpisodeFile,
    EpisodeWarning,  # noqa: F401
    index_episodes,
    warn_episode,
)
from world_model.data.format import (
    REQUIRED_KEYS,
    action_indices,
    episode_name,
    list_episodes,
    read_npy_header,
)
from world_model.errors import DataError, UserError

logger = logging.getLogger(__name__)

_READ_ERRORS = (*READ_ERRORS, DataError)
_MAX_NAMED = 10  # file names listed in one error


# -- split ----------------------------------------------------------------------------------------

def _name_score(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def split_episodes(paths: Sequence[Path], val_fraction: float, root: str | os.PathLike | None = None,
                   ) -> tuple[list[Path], list[Path]]:
    """Split files into (train, val) by a hash of each file's path relative to ``root``.

    The ``round(val_fraction * n)`` files with the smallest hashes are validation (at least one when
    ``val_fraction > 0`` and there are two or more files; never all of them). The split depends only
    on the file names: not on the listing order, the seed or ``seq_len``; adding files moves at most
    the files at the boundary. Both lists come back sorted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    paths = sorted(map(Path, paths))
    n = len(paths)
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    elif n < 2:
        n_val = 0

    def name(p: Path) -> str:
        return episode_name(p, root)

    ranked = sorted(paths, key=lambda p: (_name_score(name(p)), name(p)))
    val = set(ranked[:n_val])
    return [p for p in paths if p not in val], [p for p in paths if p in val]


# -- uniform windows ------------------------------------------------------------------------------

class WindowIndex:
    """Every window of ``seq_len`` consecutive frames of a list of files, drawn uniformly.

    A file of ``L`` frames has ``max(L - seq_len + 1, 0)`` windows; window ``w`` of all of them is
    in file ``searchsorted(ends, w, 'right')``. The one place windows are drawn: training batches
    (:class:`EpisodeWindows`) and the learned world's data contexts (``rad_env``) alike.
    """

    def __init__(self, lengths: Sequence[int], seq_len: int) -> None:
        windows = np.clip(np.asarray(lengths, dtype=np.int64) - seq_len + 1, 0, None)
        self.ends = np.cumsum(windows)

    @property
    def num_windows(self) -> int:
        """Distinct windows over all files."""
        return int(self.ends[-1]) if len(self.ends) else 0

    def locate(self, window: int) -> tuple[int, int]:
        """``(file index, first frame)`` of window ``window`` in ``[0, num_windows)``."""
        index = int(np.searchsorted(self.ends, window, side="right"))
        return index, window - (int(self.ends[index - 1]) if index else 0)

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """A uniformly drawn window (one ``rng.integers`` draw): ``(file index, first frame)``."""
        return self.locate(int(rng.integers(self.num_windows)))


def chunk_of_step(step: int, chunks: int) -> tuple[int, int]:
    """``(draw, k)``: training step ``step`` reads chunk ``k`` of the stretches drawn by draw
    number ``draw`` (``TrainConfig.carry_chunks``: every row follows one stretch of ``chunks``
    consecutive windows, one window a step; ``chunks = 1``: a new draw every step)."""
    return step // chunks, step % chunks


# -- reading one window ---------------------------------------------------------------------------

def read_window(zf: zipfile.ZipFile, key: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of array ``key`` in an open npz, decompressing no further than ``stop``.

    Scalars (no time axis) come back whole. Raises :class:`DataError` if the array is too short.
    """
    with zf.open(f"{key}.npy") as f:
        shape, fortran_order, dtype = read_npy_header(f)
        if dtype.hasobject:
            raise DataError(f"{key!r} holds Python objects; episode arrays must be numeric")
        if len(shape) == 0 or fortran_order:  # rare: read the whole array
            whole = np.frombuffer(f.read(), dtype=dtype)
            whole = whole.reshape(shape, order="F" if fortran_order else "C")
            return np.ascontiguousarray(whole[start:stop] if len(shape) else whole)
        if shape[0] < stop:
            raise DataError(f"{key!r} has {shape[0]} rows, window needs {stop}")
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.seek(f.tell() + start * row)
        data = f.read((stop - start) * row)
    if len(data) != (stop - start) * row:
        raise DataError(f"{key!r} is truncated: {len(data)} bytes, expected {(stop - start) * row}")
    out = np.frombuffer(data, dtype=dtype).reshape((stop - start, *shape[1:]))
    return out.astype(dtype.newbyteorder("="), copy=True)


def read_clip(path: str | os.PathLike, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``image[start:stop]`` ``(T, H, W, 3) uint8`` and the actions that led to them
    ``(T,) int64`` (0 for ``image[0]``) of one episode file, reading no further than ``stop``."""
    with zipfile.ZipFile(path) as zf:
        frames = read_window(zf, "image", start, stop)
        actions = action_indices(read_window(zf, "action", start, stop))
    return frames, actions


# -- the data set ---------------------------------------------------------------------------------

class EpisodeWindows(IterableDataset):
    """An endless (or ``num_batches``-long) stream of batches of random windows.

    Use with ``DataLoader(dataset, batch_size=None, num_workers=...)``: the data set batches itself
    so the stream is the same for any number of workers.

    Args:
        files: the episode files (see :func:`index_episodes`), or a directory / file to index
            (each file checked once, see :mod:`world_model.data.checks`: a bad one is skipped
            with an :class:`EpisodeWarning` naming it).
        seq_len: T, frames per window.
        batch_size: B, windows per batch.
        seed: non-negative; with ``rank`` and the step, fixes every batch.
        keys: extra arrays to return besides frames/actions/rewards (e.g. ``"maze_layout"``).
        start_step: the first batch iteration yields (resume at training step ``k``: ``k``).
        num_batches: stop before this step (``None``: endless).
        rank, world_size: for DDP; ranks draw independent streams.
        frame_size, num_actions: what indexing a directory expects of every file (S of the
            ``(S, S, 3)`` frames; None: the first usable file's; the action count, None: any).
        chunks: ``TrainConfig.carry_chunks``: each row follows a stretch of ``chunks * seq_len``
            frames, ``seq_len`` a batch (batch ``step`` reads chunk ``step % chunks`` of the
            stretches of draw ``step // chunks``), and batches carry ``chunk (B,) int64``.
            1: every batch a new draw (no ``chunk`` key).
    """

    def __init__(self, files: Sequence[EpisodeFile] | str | os.PathLike, seq_len: int,
                 batch_size: int, seed: int = 0, keys: Sequence[str] = (), start_step: int = 0,
                 num_batches: int | None = None, rank: int = 0, world_size: int = 1, *,
                 frame_size: int | None = DEFAULT_FRAME_SIZE,
                 num_actions: int | None = None, chunks: int = 1) -> None:
        super().__init__()
        if seq_len < 1 or batch_size < 1 or chunks < 1:
            raise UserError(f"seq_len, batch_size and chunks must be >= 1, got {seq_len}, "
                            f"{batch_size}, {chunks}")
        span = seq_len * chunks
        if seed < 0 or start_step < 0:
            raise UserError(f"seed and start_step must be >= 0, got {seed}, {start_step}")
        if not 0 <= rank < world_size:
            raise UserError(f"rank must be in [0, world_size={world_size}), got {rank}")
        reserved = {"frames", "actions", "rewards", "terminals", "episode", "start",
                    *REQUIRED_KEYS} & set(keys)
        if reserved:
            raise UserError(f"keys={list(keys)}: {sorted(reserved)} are always returned or reserved")
        self.keys = tuple(keys)
        if isinstance(files, (str, os.PathLike)):
            self.root: Path | None = Path(files)
            files = index_episodes(list_episodes(files), span, self.keys, frame_size=frame_size,
                                   num_actions=num_actions, refuse_empty=str(self.root))
        else:
            self.root = None
            files = list(files)
        need = f"seq_len={seq_len}" + (f" x chunks={chunks}" if chunks > 1 else "")
        short = [str(f.path) for f in files if f.length < span]
        if short:
            raise UserError(f"episode files shorter than {need}: {short[:_MAX_NAMED]}")
        if not files:
            raise DataError(f"no usable episode files with at least {need} frames")
        sizes = sorted({f.frame_size for f in files})
        if len(sizes) > 1:
            raise UserError(f"episode files of different frame sizes {sizes} cannot share batches")
        self.files: tuple[EpisodeFile, ...] = tuple(files)
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.num_batches = num_batches
        self.rank, self.world_size = int(rank), int(world_size)
        self.chunks = int(chunks)
        self.windows = WindowIndex([f.length for f in self.files], span)  # whole stretches
        self._bad: set[int] = set()  # files found unreadable (per process)

    @property
    def num_windows(self) -> int:
        """Distinct stretches of ``chunks * seq_len`` frames (windows of ``seq_len`` when
        ``chunks`` is 1) over all files."""
        return self.windows.num_windows

    def set_start_step(self, step: int) -> None:
        """Make the next iteration start at batch ``step`` (call before creating the iterator)."""
        if step < 0:
            raise UserError(f"start_step must be >= 0, got {step}")
        self.start_step = int(step)

    def generator(self, step: int) -> np.random.Generator:
        """The generator batch ``step``'s stretches are drawn from (that of draw
        ``step // chunks``)."""
        draw, _ = chunk_of_step(int(step), self.chunks)
        return np.random.default_rng([self.seed, self.rank, draw])

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Batch ``step`` as numpy arrays (shapes in the module docstring)."""
        rng = self.generator(step)
        _, k = chunk_of_step(int(step), self.chunks)
        samples = [self._sample(rng, k * self.seq_len) for _ in range(self.batch_size)]
        out = {key: np.stack([s[key] for s in samples]) for key in samples[0]}
        if self.chunks > 1:
            out["chunk"] = np.full(self.batch_size, k, dtype=np.int64)
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start_step + worker
        while self.num_batches is None or step < self.num_batches:
            yield {k: torch.from_numpy(v) for k, v in self.batch(step).items()}
            step += workers

    # -- internals ------------------------------------------------------------------------------

    def _sample(self, rng: np.random.Generator, offset: int = 0) -> dict[str, np.ndarray]:
        """One window, ``offset`` frames into a stretch drawn uniformly over all stretches;
        redraw while the file is unreadable."""
        while True:
            if len(self._bad) == len(self.files):
                names = [str(self.files[i].path) for i in sorted(self._bad)[:_MAX_NAMED]]
                raise DataError(
                    f"all {len(self.files)} episode files are unreadable"
                    f"{f' under {self.root}' if self.root else ''} (see the warnings above): "
                    f"{', '.join(names)}{' ...' if len(self._bad) > _MAX_NAMED else ''}")
            index, start = self.windows.draw(rng)
            if index in self._bad:
                continue
            try:
                return self._read(index, start + offset)
            except _READ_ERRORS as exc:
                self._bad.add(index)
                warn_episode(f"skipping episode file {self.files[index].path} from now on "
                      f"({len(self._bad)}/{len(self.files)} excluded): {type(exc).__name__}: {exc}")

    def _read(self, index: int, start: int) -> dict[str, np.ndarray]:
        stop = start + self.seq_len
        path = self.files[index].path
        with zipfile.ZipFile(path) as zf:
            frames = read_window(zf, "image", start, stop)
            actions = action_indices(read_window(zf, "action", start, stop))
            rewards = read_window(zf, "reward", start, stop).astype(np.float32).reshape(-1)
            terminals = (read_window(zf, "terminal", start, stop).reshape(-1) > 0
                         if "terminal.npy" in zf.namelist() else np.zeros(self.seq_len, bool))
            extra = {k: read_window(zf, k, start, stop) for k in self.keys}
        if (actions.shape, rewards.shape, terminals.shape) != ((self.seq_len,),) * 3:
            raise DataError(f"{path}: action/reward window has shape {actions.shape}/"
                            f"{rewards.shape}, expected ({self.seq_len},)")
        out = {"frames": frames, "actions": actions, "rewards": rewards, "terminals": terminals,
               "episode": np.int64(index), "start": np.int64(start)}
        for key, value in extra.items():
            out[key] = value.astype(np.float32) if value.dtype == np.float64 else value
        return out


def make_dataloaders(root: str | os.PathLike, seq_len: int, batch_size: int,
                     val_fraction: float = 0.05, num_workers: int = 0, seed: int = 0, *,
                     keys: Sequence[str] = (), start_step: int = 0, rank: int = 0,
                     world_size: int = 1, val_batches: int | None = None,
                     pin_memory: bool = False, frame_size: int | None = DEFAULT_FRAME_SIZE,
                     num_actions: int | None = None, chunks: int = 1, **loader_kwargs: Any,
                     ) -> tuple[DataLoader, DataLoader | None]:
    """Train and validation loaders over the episode files under ``root`` (``chunks``: see
    :class:`EpisodeWindows`; files shorter than ``chunks * seq_len`` frames are skipped).

    The train loader is endless and starts at batch ``start_step``. The validation loader restarts
    at batch 0 on every iteration (the same batches each time; ``val_batches`` of them, or endless
    if ``None``); it is ``None`` when the split leaves no usable validation file. Batches are dicts
    of tensors (see the module docstring).

    Every file is checked once against the layout, ``frame_size`` (S of its ``(S, S, 3)`` frames,
    the world's ``latent.frame_size``; None: the first usable training file's) and ``num_actions``
    (None: any): a bad file is skipped with an :class:`EpisodeWarning` naming it.

    Raises:
        DataError: no usable training file (all missing, bad or shorter than ``seq_len``); it
            names every file and why.
    """
    train_paths, val_paths = split_episodes(list_episodes(root), val_fraction, root)
    logger.info("%s: %d training and %d validation episode files", root, len(train_paths),
                len(val_paths))
    check = {"keys": keys, "frame_size": frame_size, "num_actions": num_actions}
    train_files = index_episodes(train_paths, seq_len * chunks, **check,
                                 refuse_empty=f"{root} (training episode files)")
    check["frame_size"] = train_files[0].frame_size  # validation: the training files' size
    common: dict[str, Any] = {"seq_len": seq_len, "batch_size": batch_size, "seed": seed,
                              "keys": keys, "rank": rank, "world_size": world_size,
                              "chunks": chunks}
    loader_args: dict[str, Any] = {"batch_size": None, "num_workers": num_workers,
                                   "pin_memory": pin_memory, **loader_kwargs}
    train = DataLoader(EpisodeWindows(train_files, start_step=start_step, **common), **loader_args)
    val_files = index_episodes(val_paths, seq_len * chunks, **check) if val_paths else []
    if not val_files:
        logger.warning("%s: no validation episodes (val_fraction=%s, %d files)", root,
                       val_fraction, len(train_paths) + len(val_paths))
        return train, None
    val = DataLoader(EpisodeWindows(val_files, num_batches=val_batches, **common), **loader_args)
    return train, val
