"""The explicit state of B rollout worlds: a per-layer KV ring buffer of W frames, the recurrent
memory, the clean latents still inside the window (and the last few, for a reward model), the frame
index and a torch.Generator per row.

:class:`WorldState` is what the rollout engine (:mod:`world_model.engine.rollout`) reads and
updates; it can be cloned (to branch), indexed and assigned by rows, reset row by row, and moved
between devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from world_model.errors import UserError
from world_model.network.memory import MemoryState, map_memory, memory_tensors
from world_model.network.windows import window_start

Rows = Tensor | np.ndarray | Sequence[int] | Sequence[bool] | int


def _clone_generator(g: torch.Generator) -> torch.Generator:
    new = torch.Generator(device=g.device)
    new.set_state(g.get_state())
    return new


@dataclass
class WorldState:
    """The state of B independent worlds; every tensor has the batch row as its first axis.

    ``S = max(window - 1, 0)`` context slots: a frame's window holds itself and at most ``W - 1``
    earlier frames. Frame ``j`` lives in slot ``j % S`` (frame mode) or ``j % W`` (chunk mode,
    the last frame of a chunk is never stored: nothing attends to it). Which slots are valid is
    derived from ``frame_index`` alone.
    """

    keys: list[Tensor]
    """The KV ring buffer's keys: per layer ``(B, N, heads, S, head_dim)``, the temporal keys of
    the context frames (pre-RoPE) by slot."""
    values: list[Tensor]
    """Per layer ``(B, N, heads, S, head_dim)``: the temporal values of the context frames."""
    memory: MemoryState
    """Per layer the memory state the *next* frame reads (tensors ``(B, N, *f)``) or None for
    memory 'none': after frames ``0 .. window_start(t) - 1`` where ``t = frame_index``."""
    running: MemoryState | None
    """Chunk mode with memory: the state after *all* frames so far (written eagerly); else None."""
    latents: Tensor | None
    """Frame mode with memory: ``(B, S, C, h, w)`` clean latents of the frames in the ring, written
    into the memory when they leave the window; else None."""
    actions: Tensor | None
    """``(B, S)`` int64: the actions of those frames (with ``latents``)."""
    prev: Tensor | None
    """Models that stack the previous frame (``ModelConfig.prev_frame``): ``(B, C, h, w)`` the
    latest context frame as the network saw it (clean, or noised to the context level); which rows
    hold one is derived from ``frame_index`` (``windows.has_previous``). Else None."""
    recent: Tensor | None
    """Worlds with a reward model (``World.reward_model``): ``(B, K, C, h, w)`` float32, the last
    K clean latents, oldest first (zeros before a row's first frame), which it reads. Else None."""
    frame_index: Tensor
    """``(B,)`` int64 on the CPU: frames each world holds so far (the index of its next frame)."""
    generators: list[torch.Generator]
    """One CPU ``torch.Generator`` per row: all sampling noise of that row."""
    window: int
    mode: str

    # -- geometry ----------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def slots(self) -> int:
        return max(self.window - 1, 0)

    @property
    def device(self) -> torch.device:
        return self.keys[0].device

    def context_length(self) -> Tensor:
        """``(B,)`` int64: how many cached frames the next frame of each row attends to."""
        return self.frame_index - window_start(self.frame_index, self.window, self.mode)

    def _tensors(self) -> list[Tensor]:
        out = [*self.keys, *self.values, *memory_tensors(self.memory),
               *memory_tensors(self.running), self.frame_index]
        return out + [t for t in (self.latents, self.actions, self.prev, self.recent)
                      if t is not None]

    def _map(self, fn, frame_index: Tensor, generators: list[torch.Generator]) -> WorldState:
        opt = (lambda t: None if t is None else fn(t))
        return WorldState(
            keys=[fn(k) for k in self.keys], values=[fn(v) for v in self.values],
            memory=map_memory(self.memory, fn), running=map_memory(self.running, fn),
            latents=opt(self.latents), actions=opt(self.actions), prev=opt(self.prev),
            recent=opt(self.recent), frame_index=frame_index,
            generators=generators, window=self.window, mode=self.mode)

    # -- copies, rows, devices -------------------------------------------------------------------
    def clone(self) -> WorldState:
        """A deep copy (generators included): it continues exactly as the original would."""
        return self._map(lambda t: t.clone(), self.frame_index.clone(),
                         [_clone_generator(g) for g in self.generators])

    def index(self, rows: Rows) -> WorldState:
        """A new state holding copies of ``rows`` (indices or a boolean mask), in that order."""
        idx = self.rows(rows)
        return self._map(lambda t: t[idx.to(t.device)], self.frame_index[idx].clone(),
                         [_clone_generator(self.generators[i]) for i in idx.tolist()])

    __getitem__ = index

    def __setitem__(self, rows: Rows, other: WorldState) -> None:
        """Overwrite ``rows`` with the rows of ``other`` (same model geometry, ``len(rows)`` rows)."""
        idx = self.rows(rows)
        if other.batch_size != len(idx) or (other.window, other.mode) != (self.window, self.mode):
            raise UserError(f"cannot put a state of {other.batch_size} row(s) (window "
                            f"{other.window}, {other.mode}) into {len(idx)} row(s) of a state "
                            f"with window {self.window}, {self.mode}")
        mine, theirs = self._tensors(), other._tensors()
        if [t.shape[1:] for t in mine] != [t.shape[1:] for t in theirs]:
            raise UserError("cannot assign rows between states of different models")
        for dst, src in zip(mine, theirs):
            dst[idx.to(dst.device)] = src.to(dst.device)
        for i, g in zip(idx.tolist(), other.generators):
            self.generators[i] = _clone_generator(g)

    def to(self, device: torch.device | str) -> WorldState:
        """A copy of the state on ``device`` (generators and ``frame_index`` stay on the CPU)."""
        return self._map(lambda t: t.to(device, copy=True), self.frame_index.clone(),
                         [_clone_generator(g) for g in self.generators])

    def rows(self, rows: Rows) -> Tensor:
        """Row indices ``(n,)`` int64 (CPU) from indices, an int, or a ``(B,)`` boolean mask."""
        t = torch.as_tensor(rows).cpu()
        if t.dtype == torch.bool:
            if t.shape != (self.batch_size,):
                raise UserError(f"row mask must have shape ({self.batch_size},), got {tuple(t.shape)}")
            return t.nonzero().flatten()
        t = t.long().flatten()
        if len(t) and (t.min() < -self.batch_size or t.max() >= self.batch_size):
            raise UserError(f"row index out of range for {self.batch_size} rows: {t.tolist()}")
        return t % self.batch_size

    def reset_rows(self, rows: Rows, seeds: Sequence[int] | None = None) -> None:
        """Empty ``rows`` in place: no cached frames, zero memory, frame index 0.

        ``seeds`` (one per row) re-seeds their generators; otherwise their noise streams go on.
        """
        idx = self.rows(rows)
        for t in self._tensors():
            t[idx.to(t.device)] = 0
        if seeds is not None:
            if len(seeds) != len(idx):
                raise UserError(f"reset_rows: {len(seeds)} seeds for {len(idx)} rows")
            for i, seed in zip(idx.tolist(), seeds):
                self.generators[i] = torch.Generator().manual_seed(int(seed))

    def nbytes(self) -> int:
        """Bytes of state per row: cache, memory, pending latents, frame index, generator state."""
        tensor_bytes = sum(t.nbytes for t in self._tensors())
        gen_bytes = sum(g.get_state().nbytes for g in self.generators)
        return (tensor_bytes + gen_bytes) // self.batch_size


def row_generators(batch: int, seeds: int | Sequence[int] | None) -> list[torch.Generator]:
    """One CPU generator per row. ``seeds``: one int per row (used as is); a single int (row ``b``
    gets ``SeedSequence(seed).spawn(batch)[b]``, independent of ``batch``); None (fresh entropy)."""
    if seeds is None or isinstance(seeds, (int, np.integer)):
        children = np.random.SeedSequence(None if seeds is None else int(seeds)).spawn(batch)
        seeds = [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]
    seeds = list(seeds)
    if len(seeds) != batch:
        raise UserError(f"{len(seeds)} seeds for a batch of {batch}")
    return [torch.Generator().manual_seed(int(s)) for s in seeds]
