"""Frame-wise vs chunk-wise autoregression: one mechanism, two masks (design/rad-method.md).

* frame: frame ``i`` attends to frames ``i-W+1 .. i`` (banded causal) and reads the memory state
  after frames ``0 .. i-W`` (index ``i-W+1``).
* chunk: frame ``i`` of chunk ``c = i // W`` attends causally within its chunk only and reads the
  state after all earlier chunks (index ``c*W``).

Memory state index ``s`` means "after consuming frames ``0 .. s-1``" (``s = 0``: the initial state).
"""

from __future__ import annotations

import torch
from torch import Tensor


def window_start(i: Tensor, window: int, mode: str) -> Tensor:
    """First frame of each frame's attention window (= the memory state index it reads)."""
    if mode == "frame":
        return (i - window + 1).clamp(min=0)
    if mode == "chunk":
        return torch.div(i, window, rounding_mode="floor") * window
    raise ValueError(f"unknown mode {mode!r}")


def read_index(T: int, window: int, mode: str, device=None) -> Tensor:
    """``(T,)`` int64: the memory state index read by each of frames ``0..T-1``."""
    return window_start(torch.arange(T, device=device), window, mode)


def temporal_mask(T: int, window: int, mode: str, device=None) -> Tensor:
    """``(T, T)`` bool, ``mask[i, j]`` True when frame ``i`` attends to frame ``j``."""
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    return (j <= i) & (j >= window_start(i, window, mode))
