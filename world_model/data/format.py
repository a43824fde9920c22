"""The episode file format: the official Memory Maze offline data set layout, one ``.npz`` a trajectory.

Every array has a leading time axis of length T+1. ``image[0]`` is the observation before the first
action; ``action[t]`` (one-hot) is the action that led to ``image[t]``, so ``action[0]`` is all
zeros; ``reward[t]`` was received on the step into ``image[t]``. See docs/data-format.md.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from world_model.data.checks import (  # noqa: F401 (the layout's names, re-exported)
    GLOBAL_KEYS,
    META_KEYS,
    REQUIRED_KEYS,
    check_arrays,
    check_values,
    read_npy_header,
)
from world_model.errors import DataError
from world_model.io import atomic_write_npz


def one_hot_actions(actions: np.ndarray, num_actions: int) -> np.ndarray:
    """Indices ``(T,)`` of the actions taken -> ``(T+1, num_actions)`` float32 "last action" one-hot
    with an all-zero first row."""
    actions = np.asarray(actions, dtype=np.int64)
    out = np.zeros((len(actions) + 1, num_actions), dtype=np.float32)
    out[np.arange(1, len(actions) + 1), actions] = 1.0
    return out


def action_indices(action: np.ndarray) -> np.ndarray:
    """One-hot ``(T+1, A)`` -> indices ``(T+1,)`` int64. The all-zero first row maps to 0 (noop)."""
    action = np.asarray(action)
    if action.ndim == 1:  # already indices
        return action.astype(np.int64)
    return action.argmax(axis=-1).astype(np.int64)


def validate_episode(episode: Mapping[str, np.ndarray], name: str = "episode") -> int:
    """Check an episode in memory before it is written; returns the number of frames T+1.

    The layout check every reader makes (:func:`world_model.data.checks.check_arrays` and
    ``check_values``: keys, shapes, dtypes, square frames of any size, finite rewards), and what
    a writer promises besides: every array but the scalars of :data:`META_KEYS` has the time axis.
    """
    arrays = {k: np.asarray(v) for k, v in episode.items()}
    n = check_arrays({k: (v.shape, v.dtype) for k, v in arrays.items()}, name, frame_size=None)
    action = arrays["action"]
    check_values(arrays["reward"], action if action.ndim == 1 else None, name)
    for key, value in arrays.items():
        if key not in META_KEYS and (value.ndim == 0 or len(value) != n):
            raise DataError(f"{name}: {key!r} has {value.shape}, expected a leading axis of {n}")
    return n


def write_episode(path: str | os.PathLike, episode: Mapping[str, np.ndarray]) -> Path:
    """Write one episode atomically: a temporary file in the same directory, then ``os.replace``.

    A crash or interrupt never leaves a partial ``path`` behind.
    """
    path = Path(path)
    validate_episode(episode, str(path))
    return atomic_write_npz(path, {k: np.asarray(v) for k, v in episode.items()})


def read_episode(path: str | os.PathLike, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Read an episode (all keys, or only ``keys``). Raises :class:`DataError` naming a corrupt file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            names = data.files if keys is None else [k for k in keys if k in data.files]
            missing = [] if keys is None else [k for k in keys if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}")
            return {k: data[k] for k in names}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or corrupt episode file ({exc})") from exc


def episode_length(path: str | os.PathLike) -> int:
    """Number of frames (T+1) in an episode file, read from the ``image`` header without decoding it."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf, zf.open("image.npy") as f:
            shape, _, _ = read_npy_header(f)
        return int(shape[0])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or corrupt episode file ({exc})") from exc


def episode_name(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """How an episode file is named in a data set: its path relative to the directory ``root``
    (posix), or its file name (``root`` a file, None, or not above ``path``)."""
    path = Path(path)
    if root is not None and Path(root).is_dir():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def list_episodes(root: str | os.PathLike) -> list[Path]:
    """All ``*.npz`` episode files under ``root`` (recursively), sorted; hidden files and
    directories excluded (temporary files, and the latent cache ``root/.latents/``)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such directory")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.npz")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))
