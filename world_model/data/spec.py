"""What a directory of episode files holds: the environment, its action count, the frame size.

``rad train`` reads it to size the world to its data (``model.num_actions``, the real env the
world learns, ``env.id``) and to check the frames against ``latent.frame_size``. Everything comes
from the files' ``.npy`` headers and two scalars, never from decoding frames: the action count is
the width of the one-hot ``action`` array (or the ``num_actions`` scalar where actions are stored
as indices), the env id the ``env_id`` scalar the collectors write (files without one, like the
official Memory Maze data sets, have none).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.data.format import list_episodes, read_npy_header
from world_model.errors import DataError

_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class DataSpec:
    """What every episode file of a data set agrees on."""

    num_actions: int
    """Size of the discrete action set."""
    frame_size: int
    """Side S of the ``(S, S, 3)`` frames."""
    env_id: str | None
    """The real environment (``crafter``, ``gym:ENV_ID``, ...), None when the files do not say."""
    files: int
    """Episode files read."""


def _scalar(zf: zipfile.ZipFile, key: str):
    with zf.open(f"{key}.npy") as f:
        shape, _, dtype = read_npy_header(f)
        if shape != () or dtype.hasobject:
            raise ValueError(f"{key!r} must be a scalar, got {shape} {dtype}")
        return np.frombuffer(f.read(dtype.itemsize), dtype=dtype)[0].item()


def file_spec(path: str | os.PathLike) -> tuple[int, int, str | None]:
    """``(num_actions, frame_size, env_id)`` of one episode file, from its headers."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {m[:-4] for m in zf.namelist() if m.endswith(".npy")}
            with zf.open("image.npy") as f:
                image, _, _ = read_npy_header(f)
            with zf.open("action.npy") as f:
                action, _, _ = read_npy_header(f)
            stored = int(_scalar(zf, "num_actions")) if "num_actions" in members else None
            env_id = str(_scalar(zf, "env_id")) if "env_id" in members else None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: unreadable or corrupt episode file ({exc})") from exc
    if len(image) != 4:
        raise DataError(f"{path}: 'image' must be (T+1, S, S, 3), got {image}")
    if len(action) == 2:
        width = int(action[1])
        if stored is not None and stored != width:
            raise DataError(f"{path}: 'num_actions' is {stored} but 'action' is one-hot of {width}")
    elif stored is not None:
        width = stored
    else:
        raise DataError(f"{path}: 'action' holds indices {action} and there is no 'num_actions' "
                        f"scalar to say how many actions there are")
    return width, int(image[1]), env_id


def read_data_spec(root: str | os.PathLike) -> DataSpec:
    """The :class:`DataSpec` of the episode files under ``root`` (a directory or one file).

    Unreadable files are left to the data loader (which names and skips them).

    Raises:
        DataError: no readable file, or files that disagree on the action count or the
            environment (naming one file of each kind). ``frame_size`` is the most common one.
    """
    specs: dict[Path, tuple[int, int, str | None]] = {}
    for path in list_episodes(root):
        try:
            specs[path] = file_spec(path)
        except DataError:
            continue
    if not specs:
        raise DataError(f"{root}: no readable episode file (*.npz)")
    for i, what in ((0, "action counts"), (2, "environments")):
        values = Counter(s[i] for s in specs.values())
        if len(values) > 1:
            examples = {v: next(p for p, s in specs.items() if s[i] == v) for v in values}
            listed = ", ".join(f"{v!r} ({n} files, e.g. {examples[v]})" for v, n in values.items())
            raise DataError(f"{root}: the episode files disagree on their {what}: {listed}; "
                            f"train one world per environment")
    num_actions, _, env_id = next(iter(specs.values()))
    # A file of another frame size is a bad file, not another environment: the loader checks
    # every file against latent.frame_size and skips it by name (world_model.data.checks).
    frame_size = Counter(s[1] for s in specs.values()).most_common(1)[0][0]
    return DataSpec(num_actions, frame_size, env_id, len(specs))
