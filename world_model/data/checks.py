"""The one check of an episode file against the layout, and the index of the usable files.

Every reader of episode files opens them through :func:`inspect_episode` first: training batches
(:mod:`world_model.data.dataset`), ``rad eval`` (:mod:`world_model.evaluation.protocol`),
``rad rollout``, the learned world's data contexts and its context bank (``rad_env``). It reads
the ``.npy`` headers (and the two small arrays whose values matter: ``reward``, and ``action``
when it holds indices) and checks every array the reader will read against docs/data-format.md
(``image``, ``action``, ``reward``, the keys it asks for, and the optional ones it reads when
present, e.g. ``agent_pos`` for ``rad eval``; a writer checks every global observable)::

    image          (N, S, S, 3) uint8, S = the frame size the caller expects (64 by default)
    action         (N, A) one-hot (bool, int or float), A = the caller's action count if given,
                   or (N,) integer indices in [0, A)
    reward         (N,) bool, int or float, every value finite (a NaN reward is refused)
    maze_layout    (N, n, n)          agent_pos, agent_dir, target_pos, target_vec  (N, 2)
    targets_pos, targets_vec (N, k, 2)                   target_color            (N, 3)
                   numeric
    another key    a leading axis of N, numeric; the scalars of ``format.META_KEYS``
                   (``context_frames``, ``outbound_frames``, ...): integers (``env_id``: a string)

and that each of those members holds exactly the bytes its header declares. Other keys are
ignored (an array nobody reads does not cost a file, nor its header read the time). A file that
fails is a :class:`~world_model.errors.DataError` naming it and the array; :func:`index_episodes`
turns that into one :class:`EpisodeWarning` per file and skips the file, so a bad file never
reaches a batch or a model (or, when none is left, refuses the whole set with every reason).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.errors import DataError

REQUIRED_KEYS = ("image", "action", "reward")
GLOBAL_KEYS = (
    "maze_layout",
    "agent_pos",
    "agent_dir",
    "targets_pos",
    "targets_vec",
    "target_pos",
    "target_vec",
    "target_color",
)
#: Extra keys the project adds (scalars, no time axis). Readers ignore keys they do not know.
#: ``env_id`` (a string: ``crafter``, ``gym:ENV_ID``, ...) and ``num_actions`` are written by the
#: collectors of environments other than Memory Maze (:mod:`world_model.data.spec` reads them).
META_KEYS = ("seed", "context_frames", "outbound_frames", "num_actions", "env_id")


def read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read the header of a ``.npy`` stream positioned at its start: ``(shape, fortran_order, dtype)``.

    Leaves ``f`` positioned at the first data byte. Uses only NumPy's public header readers.
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    # Version 3.0 differs from 2.0 only in the header text encoding (utf-8 vs latin-1), which does
    # not matter for the plain numeric arrays of an episode file.
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")

logger = logging.getLogger(__name__)

#: The frame size of the official Memory Maze data sets (and of every preset).
DEFAULT_FRAME_SIZE = 64
#: What reading a damaged zip or ``.npy`` stream raises (besides DataError).
READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error,
               RuntimeError, NotImplementedError, struct.error, OverflowError)
#: Per-step shape of each global observable (None: any size, the maze's n or its k objects).
GLOBAL_SHAPES: dict[str, tuple[int | None, ...]] = {
    "maze_layout": (None, None), "agent_pos": (2,), "agent_dir": (2,),
    "targets_pos": (None, 2), "targets_vec": (None, 2),
    "target_pos": (2,), "target_vec": (2,), "target_color": (3,),
}
_NUMERIC = "biuf"  # numpy dtype kinds: bool, int, uint, float
_MAX_NAMED = 10  # files named in one refusal

Header = tuple[tuple[int, ...], np.dtype]
"""``(shape, dtype)`` of one array, as its ``.npy`` header (or the array itself) gives them."""


class EpisodeWarning(UserWarning):
    """An episode file was skipped (corrupt, truncated, wrong layout or too short)."""


def warn_episode(message: str) -> None:
    """Log ``message`` and issue it as an :class:`EpisodeWarning` (the one way files are skipped)."""
    logger.warning(message)
    warnings.warn(message, EpisodeWarning, stacklevel=3)


@dataclass(frozen=True)
class EpisodeFile:
    """One checked episode file: its number of frames (N = T+1) and frame size S."""

    path: Path
    length: int
    frame_size: int


# -- the layout -----------------------------------------------------------------------------------

def _problem(key: str, shape: tuple[int, ...], dtype: np.dtype, n: int,
             num_actions: int | None) -> str | None:
    """What is wrong with array ``key`` of an ``n``-frame episode (None: nothing)."""
    numeric = dtype.kind in _NUMERIC
    if key == "action":
        a = "A" if num_actions is None else num_actions
        one_hot = (numeric and len(shape) == 2 and shape[0] == n and shape[1] >= 1
                   and (num_actions is None or shape[1] == num_actions))
        if one_hot or (dtype.kind in "iu" and shape == (n,)):
            return None
        return f"'action' must be ({n}, {a}) one-hot or ({n},) integer indices"
    if key == "reward":
        return None if numeric and shape == (n,) else f"'reward' must be ({n},) numbers"
    if key in META_KEYS:  # scalars: integers, and the env id a string
        kinds, what = ("US", "a string") if key == "env_id" else ("iu", "an integer")
        return None if dtype.kind in kinds and shape == () else f"{key!r} must be {what} scalar"
    if key in GLOBAL_SHAPES:
        step = GLOBAL_SHAPES[key]
        fits = (len(shape) == 1 + len(step) and shape[0] == n
                and all(want is None or got == want for got, want in zip(shape[1:], step)))
        if key == "maze_layout":
            fits = fits and shape[1] == shape[2]
        if numeric and fits:
            return None
        per_step = ", ".join("n" if s is None else str(s) for s in step)
        return f"{key!r} must be ({n}, {per_step}) numbers"
    if numeric and len(shape) >= 1 and shape[0] == n:
        return None
    return f"{key!r} must be numbers with a leading axis of {n} frames"


def check_keys(present: Sequence[str] | Mapping[str, object], name: str,
               keys: Sequence[str] = ()) -> None:
    """``image``, ``action``, ``reward`` and ``keys`` must all be ``present``."""
    missing = [k for k in dict.fromkeys((*REQUIRED_KEYS, *keys)) if k not in present]
    if missing:
        raise DataError(f"{name}: missing key(s) {missing} (has {sorted(present)})")


def check_arrays(arrays: Mapping[str, Header], name: str, *,
                 frame_size: int | None = DEFAULT_FRAME_SIZE, num_actions: int | None = None,
                 keys: Sequence[str] = (), optional: Sequence[str] = tuple(GLOBAL_SHAPES)) -> int:
    """Check the shapes and dtypes of an episode's arrays against the layout (module docstring).

    Args:
        arrays: ``key -> (shape, dtype)`` of every array of the episode.
        name: what to call the episode in errors (its path).
        frame_size: S, the side of the square frames expected (None: any square size).
        num_actions: A, the one-hot width / index bound expected (None: any).
        keys: keys needed besides ``image``, ``action``, ``reward``.
        optional: keys checked when present (default: every global observable).
    Returns:
        N, the number of frames.
    Raises:
        DataError: ``"{name}: ..."`` naming the first array that is missing or wrong.
    """
    check_keys(arrays, name, keys)
    shape, dtype = arrays["image"]
    square = len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3
    if not (square and dtype == np.uint8 and frame_size in (None, shape[1])):
        side = "S" if frame_size is None else frame_size
        raise DataError(f"{name}: 'image' must be (N, {side}, {side}, 3) uint8, got "
                        f"{tuple(shape)} {dtype}")
    n = int(shape[0])
    checked = (*REQUIRED_KEYS, *keys, *optional)
    for key in dict.fromkeys(k for k in checked if k in arrays and k != "image"):
        shape, dtype = arrays[key]
        problem = _problem(key, tuple(shape), dtype, n, num_actions)
        if problem is not None:
            raise DataError(f"{name}: {problem}, got {tuple(shape)} {dtype}")
    return n


def check_values(reward: np.ndarray, action: np.ndarray | None, name: str,
                 num_actions: int | None = None) -> None:
    """The value checks: ``reward (N,)`` finite; ``action (N,)`` indices (if given) in range."""
    bad = np.flatnonzero(~np.isfinite(reward.astype(np.float64)))
    if len(bad):
        raise DataError(f"{name}: 'reward' has {len(bad)} non-finite value(s) "
                        f"({reward[bad[0]]} at frame {bad[0]})")
    if action is not None and len(action):
        low, high = int(action.min()), int(action.max())
        if low < 0 or (num_actions is not None and high >= num_actions):
            bound = "A" if num_actions is None else num_actions
            raise DataError(f"{name}: 'action' indices must be in [0, {bound}), got [{low}, {high}]")


# -- one file -------------------------------------------------------------------------------------

def _header(zf: zipfile.ZipFile, key: str, name: str) -> Header:
    """The header of ``key.npy``; its data must be exactly the bytes the header declares."""
    member = f"{key}.npy"
    with zf.open(member) as f:
        shape, _, dtype = read_npy_header(f)
        data_bytes = zf.getinfo(member).file_size - f.tell()
    declared = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and declared != data_bytes:
        raise DataError(f"{name}: {key!r} is truncated or padded: its header declares "
                        f"{tuple(shape)} {dtype} ({declared} bytes), it holds {data_bytes}")
    return tuple(shape), dtype


def _values(zf: zipfile.ZipFile, key: str, header: Header, name: str) -> np.ndarray:
    """The whole (small, 1-D) array ``key``."""
    shape, dtype = header
    with zf.open(f"{key}.npy") as f:
        read_npy_header(f)
        data = f.read(math.prod(shape) * dtype.itemsize)
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise DataError(f"{name}: {key!r} is truncated")
    return np.frombuffer(data, dtype=dtype)


def inspect_episode(path: str | os.PathLike, *, frame_size: int | None = DEFAULT_FRAME_SIZE,
                    num_actions: int | None = None, keys: Sequence[str] = (),
                    optional: Sequence[str] = ()) -> EpisodeFile:
    """Check one episode file (see the module docstring) without decoding its frames.

    Args: as :func:`check_arrays`, but ``optional`` (the keys the reader reads when present)
    defaults to none. Returns: the file, its N and S.
    Raises:
        DataError: ``"{path}: ..."``: unreadable, corrupt, truncated, or not in the layout.
    """
    path = Path(path)
    name = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            present = sorted({m[:-4] for m in zf.namelist() if m.endswith(".npy")})
            check_keys(present, name, keys)
            arrays = {k: _header(zf, k, name) for k in (*REQUIRED_KEYS, *keys, *optional)
                      if k in present}
            n = check_arrays(arrays, name, frame_size=frame_size, num_actions=num_actions,
                             keys=keys, optional=optional)
            reward = _values(zf, "reward", arrays["reward"], name)
            as_indices = len(arrays["action"][0]) == 1  # (N,) indices rather than (N, A) one-hot
            action = _values(zf, "action", arrays["action"], name) if as_indices else None
            check_values(reward, action, name, num_actions)
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{path}: unreadable or corrupt episode file "
                        f"({type(exc).__name__}: {exc})") from exc
    return EpisodeFile(path, n, int(arrays["image"][0][1]))


# -- the index ------------------------------------------------------------------------------------

def index_episodes(paths: Sequence[str | os.PathLike], seq_len: int, keys: Sequence[str] = (), *,
                   frame_size: int | None = DEFAULT_FRAME_SIZE, num_actions: int | None = None,
                   optional: Sequence[str] = (), refuse_empty: str | None = None,
                   ) -> list[EpisodeFile]:
    """The usable files among ``paths``, each checked once by :func:`inspect_episode`.

    A file that fails the check is named in an :class:`EpisodeWarning` and skipped; files with
    fewer than ``seq_len`` frames are skipped with one warning naming them all. With
    ``frame_size=None`` the first usable file's frame size is the data set's: later files of
    another size are skipped.

    Args:
        refuse_empty: when given (what the files are for, e.g. ``"data/x (training)"``), finding
            no usable file is a DataError that starts with it and lists every file's reason.
    """
    usable: list[EpisodeFile] = []
    reasons, short = [], []
    size = frame_size
    for path in map(Path, paths):
        try:
            entry = inspect_episode(path, frame_size=size, num_actions=num_actions, keys=keys,
                                    optional=optional)
        except DataError as exc:
            reasons.append(str(exc))
            warn_episode(f"skipping episode file {exc}")
            continue
        if entry.length < seq_len:
            short.append(f"{path} ({entry.length})")
            reasons.append(f"{path}: {entry.length} frames, fewer than seq_len={seq_len}")
            continue
        usable.append(entry)
        size = entry.frame_size
    if short:
        more = f" and {len(short) - _MAX_NAMED} more" if len(short) > _MAX_NAMED else ""
        warn_episode(f"skipping {len(short)} episode file(s) with fewer than seq_len={seq_len} "
                     f"frames: {', '.join(short[:_MAX_NAMED])}{more}")
    if not usable and refuse_empty is not None:
        if not reasons:
            raise DataError(f"{refuse_empty}: no episode files (*.npz)")
        more = f"; and {len(reasons) - _MAX_NAMED} more" if len(reasons) > _MAX_NAMED else ""
        raise DataError(f"{refuse_empty}: no usable episode files among {len(reasons)}: "
                        f"{'; '.join(reasons[:_MAX_NAMED])}{more}")
    return usable
