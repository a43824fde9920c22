"""Errors meant for users: each names the file, option or value that is wrong."""

from __future__ import annotations


class RadError(Exception):
    """Base class: the ``rad`` CLI prints these without a traceback."""


class UserError(RadError, ValueError):
    """Bad input from the user: wrong option, shape, dtype or value."""


class DataError(RadError):
    """A data file is missing, corrupt or not in the expected layout."""


class CheckpointError(RadError):
    """A checkpoint directory is missing files, incompatible or inconsistent."""


class BackendError(RadError, RuntimeError):
    """A system library or rendering backend the real simulator needs is missing."""


def require(ok: bool, message: str, what: str = "") -> None:
    """Raise :class:`UserError` (``"what: message"``) unless ``ok``: the configs' validation."""
    if not ok:
        raise UserError(f"{what}: {message}" if what else message)
