"""A resumable run's output directory: ``ep_{i:06d}.npz`` files under a lock and a manifest.

Shared by data collection and evaluation-set generation: one writer at a time, the run's
settings fixed by a manifest (a resumed run must use the same ones), no stale temporary files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from world_model.data.format import episode_length
from world_model.errors import DataError, UserError
from world_model.io import atomic_write_text

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)


def episode_path(out: str | os.PathLike, index: int) -> Path:
    """``OUT/ep_{index:06d}.npz``."""
    return Path(out) / f"ep_{index:06d}.npz"


class OutputDir:
    """Context manager guarding an output directory for a resumable run.

    On entry: creates ``root``, takes an exclusive lock (``.rad.lock``; a second writer gets a
    :class:`UserError`), checks ``manifest`` (a JSON file of the run's settings) against
    ``settings`` or writes it, and deletes stale temporary files (``.*.tmp``) that an
    earlier, killed run left. On exit it deletes temporary files again and releases the lock.
    """

    def __init__(self, root: str | os.PathLike, manifest: str, settings: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = self.root / manifest
        self.settings = dict(settings)
        self._lock_fd: int | None = None

    def __enter__(self) -> Self:
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".rad.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.root}: another process is writing to this directory") from None
        self._lock_fd = fd
        try:
            self._check_manifest()
            self.remove_temporary_files()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove_temporary_files()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _check_manifest(self) -> None:
        if self.manifest.exists():
            try:
                old = json.loads(self.manifest.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"{self.manifest}: unreadable ({exc}); delete it to continue") from exc
            diff = {k: (old.get(k), v) for k, v in self.settings.items() if old.get(k) != v}
            if diff:
                details = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise UserError(f"{self.root} holds a run with other settings ({details}); "
                                "use the same settings to resume or another --out")
        else:
            atomic_write_text(self.manifest,
                              json.dumps(self.settings, indent=2, sort_keys=True) + "\n")

    def remove_temporary_files(self) -> int:
        """Delete ``.*.tmp`` files (partial writes of killed runs); returns how many."""
        stale = list(self.root.glob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info("%s: removed %d stale temporary file(s)", self.root, len(stale))
        return len(stale)

    def has_episode(self, path: str | os.PathLike, frames: int | None = None) -> bool:
        """Whether ``path`` is a finished episode (of ``frames`` frames when given).

        Raises :class:`DataError` for a corrupt file and :class:`UserError` for a wrong length.
        """
        path = Path(path)
        if not path.exists():
            return False
        try:
            n = episode_length(path)
        except DataError as exc:
            raise DataError(f"{exc}; delete it and re-run to collect it again") from exc
        if frames is not None and n != frames:
            raise UserError(f"{path} has {n} frames but this run makes {frames}; "
                            "use the same --steps or another --out")
        return True
