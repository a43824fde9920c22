"""How the rollout engine keeps the memory state the next frame reads (step 3 of
:mod:`world_model.engine.rollout`), from clean frames only, exactly as the training pre-fetch.

Frame mode: the frame leaving the window of ``t + 1`` (frame ``t - W + 1``) is written by a
window-1 pass (``model.write_frame``); its latent waited in the ring until then. Chunk mode: frame
``t`` is written at once into a running state, which becomes the state the next chunk reads when
``t`` closes its chunk. :class:`MemoryBookkeeping` is a base of
:class:`~world_model.engine.rollout.RolloutEngine` (it uses the engine's model, window, mode,
ring slots and autocast).
"""

from __future__ import annotations

import torch
from torch import Tensor

from world_model.engine.world_state import WorldState
from world_model.network.memory import MemoryState, map_memory, memory_tensors
from world_model.network.windows import window_start


class MemoryBookkeeping:
    """The memory writes of :class:`~world_model.engine.rollout.RolloutEngine`."""

    def _bookkeep_memory(self, state: WorldState, latent: Tensor, actions: Tensor,
                         t: Tensor) -> None:
        """Keep ``state.memory`` = the state after the frames that left the next frame's window."""
        B = state.batch_size
        if self.mode == "chunk":
            state.running = self._write(state.running, latent, actions, None)
            closed = ((t + 1) % self.window == 0).nonzero().flatten()  # rows whose chunk ended
            if len(closed) == B:
                state.memory = map_memory(state.running, lambda s: s.clone())
            elif len(closed):
                rows = closed.to(state.device)
                for dst, src in zip(memory_tensors(state.memory), memory_tensors(state.running)):
                    dst[rows] = src[rows]
            return
        if self.slots == 0:  # window 1: every frame leaves the window at once
            state.memory = self._write(state.memory, latent, actions, None)
            return
        # Frame mode: frame t - S (slot t % S, about to be overwritten by frame t) leaves the window.
        leaving = (t >= self.slots).nonzero().flatten()
        if len(leaving) == 0:
            return
        rows = leaving.to(state.device)
        slots = self._slot(t[leaving]).to(state.device)
        old_latent, old_action = state.latents[rows, slots], state.actions[rows, slots]
        state.memory = self._write(state.memory, old_latent, old_action,
                                   None if len(leaving) == B else rows)

    def _write(self, memory: MemoryState, latent: Tensor, actions: Tensor,
               rows: Tensor | None) -> MemoryState:
        """Window-1 pass: write clean ``latent (n, C, h, w)`` into ``memory`` (all rows, or the
        given ``rows``, in place)."""
        sub = memory if rows is None else map_memory(memory, lambda s: s[rows])
        with self._autocast():
            new = self.model.write_frame(latent.to(self.dtype), actions, sub)
        new = map_memory(new, lambda s: s.to(self.dtype))  # autocast may have lowered it
        if rows is None:
            return new
        for dst, src in zip(memory_tensors(memory), memory_tensors(new)):
            dst[rows] = src
        return memory

    @torch.no_grad()
    def flushed_memory(self, state: WorldState) -> MemoryState:
        """The memory state after ALL frames of every row (for probes; the state is unchanged).

        Frame mode writes the frames still in the window into a copy (up to ``W - 1`` passes).
        """
        if not self.model.has_memory:
            return list(state.memory)
        if self.mode == "chunk":
            return map_memory(state.running, lambda s: s.clone())
        memory = map_memory(state.memory, lambda s: s.clone())
        t = state.frame_index
        start = window_start(t, self.window, self.mode)
        for offset in range(int((t - start).max())):  # oldest pending frame first
            frame = start + offset
            rows = (frame < t).nonzero().flatten()
            if len(rows) == 0:
                continue
            rows_d = rows.to(state.device)
            slots = self._slot(frame[rows]).to(state.device)
            memory = self._write(memory, state.latents[rows_d, slots], state.actions[rows_d, slots],
                                 None if len(rows) == state.batch_size else rows_d)
        return memory
