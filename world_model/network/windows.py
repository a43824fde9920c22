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


def has_previous(i: Tensor, window: int, mode: str) -> Tensor:
    """Whether frame ``i``'s previous frame ``i - 1`` lies in its window (bool, like ``i``): the
    frame whose pixels ``ModelConfig.prev_frame`` stacks into ``i``'s tokens."""
    return (i >= 1) & (i - 1 >= window_start(i, window, mode))


def previous_frames(frames: Tensor, window: int, mode: str) -> Tensor:
    """``frames (B, T, ...)`` -> ``(B, T, ...)`` whose entry ``i`` is frame ``i - 1`` where
    :func:`has_previous`, zeros elsewhere."""
    T = frames.shape[1]
    ok = has_previous(torch.arange(T, device=frames.device), window, mode)
    shifted = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, :-1]], dim=1)
    return shifted * ok.view(1, T, *([1] * (frames.dim() - 2))).to(frames.dtype)


def teacher_mask(T: int, window: int, mode: str, device=None) -> Tensor:
    """``(2T, 2T)`` bool mask of the clean-context pass over ``[clean frames, noisy frames]``.

    Clean frame ``i`` attends to the clean frames of its window (:func:`temporal_mask`); noisy
    frame ``i`` attends to the clean frames of its window *before* it and to itself, and nothing
    attends to a noisy frame but itself: each noisy frame is denoised exactly as the rollout engine
    denoises it, against the clean cached context.
    """
    base = temporal_mask(T, window, mode, device)
    eye = torch.eye(T, dtype=torch.bool, device=device)
    top = torch.cat([base, torch.zeros_like(base)], dim=1)
    bottom = torch.cat([base & ~eye, eye], dim=1)
    return torch.cat([top, bottom], dim=0)
