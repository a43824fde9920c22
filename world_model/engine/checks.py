"""The one validator of the frames and actions that enter a world from outside.

Each value is checked once, where it enters: the engine's public methods (every face above, the
Gymnasium and stable-baselines3 envs included, passes values through to them) and the context
checks of reset options. Errors name the expected shape, dtype
and range. Checks read numpy arrays and tensors alike and return a tensor that shares the caller's
memory (``torch.as_tensor``): no copy, and no conversion back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from world_model.errors import UserError


def check_actions(actions: Any, shape: tuple[int, ...], num_actions: int,
                  name: str = "actions") -> Tensor:
    """``actions`` as an integer tensor of ``shape`` with values in ``[0, num_actions)``.

    ``shape == ()`` checks one action (a Gymnasium ``Discrete`` step). Returns the values as a
    CPU or device tensor of the caller's integer dtype (use ``.long()`` for indexing).

    Raises:
        UserError: a wrong shape, a non-integer dtype, or a value outside the range.
    """
    t = _as_tensor(actions, name)
    integer = not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)
    if not integer and t.numel() == 1:
        shown = actions.tolist() if hasattr(actions, "tolist") else actions
        raise UserError(f"{name} {shown!r} is not an integer of Discrete({num_actions})")
    if tuple(t.shape) != tuple(shape) or not integer:
        if shape == ():
            raise UserError(f"{name} {actions!r} is not an integer of Discrete({num_actions})")
        raise UserError(f"{name} must be integer {tuple(shape)}, one per row, got "
                        f"{tuple(t.shape)} {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_actions):
        bad = ((t < 0) | (t >= num_actions)).nonzero()[0].tolist()
        where = f" at index {tuple(bad) if len(bad) > 1 else bad[0]}" if bad and t.numel() > 1 else ""
        value = int(t[tuple(bad)]) if bad else int(t)
        raise UserError(f"action {value}{where} is outside Discrete({num_actions}): {name} must "
                        f"be in [0, {num_actions})")
    return t


def check_frames(frames: Any, layout: str, frame_size: int, rows: int | None = None,
                 name: str = "frames") -> Tensor:
    """``frames`` as a uint8 tensor laid out as ``layout`` (e.g. ``"(B, T, H, W, 3)"``) with
    ``H = W = frame_size``; ``rows``: the first axis must have that length (the batch).

    Raises:
        UserError: naming the layout, the frame size and what was given.
    """
    t = _as_tensor(frames, name)
    ndim = layout.count(",") + 1
    if t.dim() != ndim or tuple(t.shape[-3:]) != (frame_size, frame_size, 3) or t.dtype != torch.uint8:
        raise UserError(f"{name} must be {layout} uint8 with H = W = {frame_size}, got "
                        f"{tuple(t.shape)} {t.dtype}")
    if rows is not None and t.shape[0] != rows:
        raise UserError(f"{name} have {t.shape[0]} rows, the state has {rows}")
    return t


def _as_tensor(value: Any, name: str) -> Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{name}: not an array of numbers ({exc})") from exc
