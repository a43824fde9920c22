"""The RAD network (paper Sec. 4): a diffusion transformer over per-frame latents in which every
layer has spatial attention (2D RoPE), temporal attention (1D RoPE, the mode's window mask), a
recurrent memory block fed with the action (Sec. 6.1), and an MLP, all conditioned by adaLN-Zero
on each frame's noise level and action.

Three passes share every weight:

* ``forward``        - the windowed pass over a whole sequence (training; diffusion loss).
* ``prefetch``       - the window-1 pass over *clean* frames that writes the memory, layer by layer
                       (attention parallel over frames, one recurrent scan per layer). Paper Sec. 4.3.
* ``forward_frame``  - one frame against cached keys/values of its context (the rollout engine).

(plus ``forward_context``, the windowed pass of a noisy and a clean stream together.) The layers
are :class:`~world_model.network.layers.RADBlock`. Memory states are explicit
(:data:`~world_model.network.memory.MemoryState`: per layer tensors ``(B, N, *feature)``, N tokens
per frame, or None for memory ``'none'``), as is the temporal-attention cache
(:data:`~world_model.network.layers.KVCache`). The network knows nothing of the noise schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from world_model.config import ModelConfig
from world_model.network.layers import (
    KVCache,
    LevelEmbedding,
    RADBlock,
    apply_rope,
    modulate,
    rope_2d,
    rope_angles,
)
from world_model.network.memory import MemoryState
from world_model.network.windows import read_index, teacher_mask, temporal_mask


class FramePlan(NamedTuple):
    """What every network pass over one new frame shares (:meth:`RADModel.plan_frame`, once per
    frame; the rollout engine's denoising passes and its clean pass all read it)."""

    past: list[tuple[Tensor, Tensor]] | None
    """Per layer the context's rotated keys and values, each ``(B*N, heads, P, hd)``; None if P = 0."""
    mask: Tensor | None
    """``(B*N, 1, 1, P+1)`` bool temporal key mask (True = attend), or None (all attended)."""
    rope_new: tuple[Tensor, Tensor]
    """The temporal RoPE of position P (the new frame's)."""
    reads: list | None
    """Per layer the memory's ``read_plan`` of the state the frame reads (rows ``B*N``)."""
    prev: Tensor | None
    """``(B, 1, C, h, w)`` the previous context frame (the residual's base), or None."""
    prev_tokens: Tensor | None
    """The previous frame's share of the input tokens (its half of ``patch_in`` plus the bias),
    ``(B, 1, N, D)`` (or ``(D,)``: no previous frame), when the model stacks it."""


@dataclass
class ModelOutput:
    prediction: Tensor
    """``(B, T, C, h, w)``: the network's diffusion prediction (v, eps or x0 per DiffusionConfig)."""
    reward: Tensor | None = None
    """``(B, T)`` predicted reward of each frame."""
    termination_logit: Tensor | None = None
    """``(B, T)`` logit that the frame ends the episode."""


class RADModel(nn.Module):
    """The RAD denoiser with memory. See the module docstring for the three passes."""

    def __init__(self, cfg: ModelConfig, num_levels: int = 1000) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.grid, self.head_dim = cfg.grid, cfg.head_dim  # derived once, read every pass
        D, p, C = cfg.width, cfg.patch_size, cfg.latent_channels
        self.patch_in = nn.Linear(C * p * p * (1 if cfg.prev_frame == "none" else 2), D)
        self.level_emb = LevelEmbedding(D, num_levels)
        self.action_emb = nn.Embedding(cfg.num_actions, D)
        self.blocks = nn.ModuleList(RADBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.patch_out = nn.Linear(D, C * p * p)
        if cfg.reward_head:
            self.head_norm = nn.LayerNorm(D)
            self.head = nn.Linear(D, 2)  # reward, termination logit
        cos, sin = rope_2d(cfg.grid, cfg.head_dim)
        self.register_buffer("rope_s_cos", cos, persistent=False)
        self.register_buffer("rope_s_sin", sin, persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """adaLN-Zero, in one place: every modulation map and the output projection start at
        zero, so each layer starts as the identity and the prediction as zero (DiT)."""
        zero = [block.ada[1] for block in self.blocks] + [self.ada_out[1], self.patch_out]
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def has_memory(self) -> bool:
        return self.cfg.memory != "none"

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def uses_prev(self) -> bool:
        """Whether the previous frame is stacked into the tokens (``ModelConfig.prev_frame``)."""
        return self.cfg.prev_frame != "none"

    def _patches(self, x: Tensor) -> Tensor:
        p = self.cfg.patch_size
        return rearrange(x, "b t c (gh p1) (gw p2) -> b t (gh gw) (p1 p2 c)", p1=p, p2=p)

    def _tokens(self, x: Tensor, prev: Tensor | None = None) -> Tensor:
        """``x (B, T, C, h, w)`` (and ``prev``, same shape, zeros when None) -> ``(B, T, N, D)``."""
        patches = self._patches(x)
        if self.uses_prev:
            prev_patches = torch.zeros_like(patches) if prev is None else self._patches(prev.to(x.dtype))
            patches = torch.cat([patches, prev_patches], dim=-1)  # (B, T, N, 2 p p C)
        return self.patch_in(patches)

    def _cond(self, levels: Tensor, actions: Tensor) -> Tensor:
        return self.level_emb(levels) + self.action_emb(actions)

    def _rope_t(self, positions: Tensor):
        return rope_angles(positions, self.head_dim)

    def _output(self, x: Tensor, c: Tensor, prev: Tensor | None = None) -> ModelOutput:
        p, g = self.cfg.patch_size, self.grid
        shift, scale = self.ada_out(c)[:, :, None].chunk(2, dim=-1)
        y = self.patch_out(modulate(self.norm_out(x), shift, scale))
        pred = rearrange(y, "b t (gh gw) (p1 p2 c) -> b t c (gh p1) (gw p2)", gh=g, gw=g, p1=p, p2=p)
        if self.cfg.prev_frame == "residual" and prev is not None:
            pred = pred + prev.to(pred.dtype)  # the prediction starts as a copy of the previous frame
        if not self.cfg.reward_head:
            return ModelOutput(pred)
        r = self.head(self.head_norm(x.mean(dim=2)))
        return ModelOutput(pred, r[..., 0], r[..., 1])

    @property
    def rope_s(self):
        return self.rope_s_cos, self.rope_s_sin

    # -- passes ----------------------------------------------------------------------------------
    def _check_inputs(self, reads: MemoryState | None, prev: Tensor | None) -> None:
        if self.has_memory and reads is None:
            raise ValueError("a model with memory needs the pre-fetched memory reads")
        if self.uses_prev and prev is None:
            raise ValueError(f"model.prev_frame={self.cfg.prev_frame!r} needs the previous frames "
                             "(windows.previous_frames of the clean latents)")

    def forward(self, x: Tensor, levels: Tensor, actions: Tensor, reads: MemoryState | None = None,
                prev: Tensor | None = None) -> ModelOutput:
        """Windowed pass over a sequence (training, 'independent' context: diffusion forcing).

        Args:
            x: ``(B, T, C, h, w)`` noisy latents, each frame at its own level.
            levels: ``(B, T)`` noise levels in ``[0, K]`` (0 = clean).
            actions: ``(B, T)`` int64, ``actions[:, i]`` led to frame ``i``.
            reads: from :meth:`prefetch` on the clean latents: per layer the state each frame
                reads, tensors ``(B, N, T, *f)``. Required when the model has memory.
            prev: ``(B, T, C, h, w)`` the previous context frame of each frame
                (``windows.previous_frames`` of the clean latents). Required when the model
                stacks it (``cfg.prev_frame``).
        """
        _B, T = x.shape[:2]
        self._check_inputs(reads, prev)
        # 1. input: tokens and per-frame conditioning
        c = self._cond(levels, actions)
        h = self._tokens(x, prev)
        rope_t = self._rope_t(torch.arange(T, device=x.device))
        mask = temporal_mask(T, self.cfg.window, self.cfg.mode, x.device)
        # 2. blocks
        for i, block in enumerate(self.blocks):
            h = block(h, c, actions, self.rope_s, rope_t, mask, reads[i] if self.has_memory else None)
        # 3. output
        return self._output(h, c, prev)

    def forward_context(self, x: Tensor, levels: Tensor, context: Tensor, context_levels: Tensor,
                        actions: Tensor, reads: MemoryState | None = None,
                        prev: Tensor | None = None) -> tuple[ModelOutput, ModelOutput]:
        """Windowed pass in which every noisy frame is denoised against a clean context stream
        (training, 'clean' and 'augmented' context): exactly what the rollout engine computes.

        The context stream (``context`` at ``context_levels``) and the noisy stream (``x`` at
        ``levels``) run together as one sequence of 2T frames through the same banded pass, with
        :func:`windows.teacher_mask`: context frame ``i`` attends to the context frames of its
        window, noisy frame ``i`` to the context frames of its window before it and to itself.
        Both streams read the same pre-fetched memory states and carry frame ``i``'s temporal
        position ``i``.

        Args:
            x, levels: ``(B, T, C, h, w)`` noisy latents and ``(B, T)`` their levels (> 0).
            context, context_levels: ``(B, T, C, h, w)`` the context latents (clean, or noised to
                ``context_levels``) and ``(B, T)`` their levels.
            actions, reads, prev: as :meth:`forward` (``prev`` from the context latents).
        Returns:
            ``(noisy, context)`` outputs, each with T frames; the engine's heads (reward,
            termination) read the context stream, as its level-0 pass does.
        """
        T = x.shape[1]
        self._check_inputs(reads, prev)
        # 1. input: the two streams as one sequence [context, noisy] of 2T frames
        acts = torch.cat([actions, actions], dim=1)
        c = self._cond(torch.cat([context_levels, levels], dim=1), acts)
        prev2 = None if prev is None else torch.cat([prev, prev], dim=1)
        h = self._tokens(torch.cat([context, x], dim=1), prev2)
        positions = torch.arange(T, device=x.device).repeat(2)
        rope_t = self._rope_t(positions)
        mask = teacher_mask(T, self.cfg.window, self.cfg.mode, x.device)
        reads2 = None
        if self.has_memory:  # both streams read the same states: (B, N, T, *f) -> (B, N, 2T, *f)
            reads2 = [tuple(torch.cat([s, s], dim=2) for s in layer) for layer in reads]
        # 2. blocks
        for i, block in enumerate(self.blocks):
            h = block(h, c, acts, self.rope_s, rope_t, mask, reads2[i] if self.has_memory else None)
        # 3. output, split back into the two streams
        out = self._output(h, c, prev2)
        def half(t: Tensor | None, j: int) -> Tensor | None:
            return None if t is None else t[:, j * T:(j + 1) * T]
        noisy, ctx = (ModelOutput(half(out.prediction, j), half(out.reward, j),
                                  half(out.termination_logit, j)) for j in (1, 0))
        return noisy, ctx

    def prefetch(self, latents: Tensor, actions: Tensor, state: MemoryState | None = None,
                 keep: Tensor | None = None, detach_every: int = 0) -> tuple[MemoryState, MemoryState]:
        """Hidden-state pre-fetch: the window-1 pass over *clean* frames that writes the memory.

        Args:
            latents: ``(B, T, C, h, w)`` clean latents.
            actions: ``(B, T)`` int64.
            state: memory state before frame 0 (per layer, tensors ``(B, N, *f)``); None = zeros.
            keep: ``(K,)`` state indices to return (index ``s`` = after frames ``0..s-1``); default:
                the index each frame reads under the model's mode (``windows.read_index``), so the
                result can be passed straight to :meth:`forward`.
        Returns:
            ``(reads, final)``: per layer, kept states ``(B, N, K, *f)`` and the state after all T
            frames ``(B, N, *f)``. Both lists hold None for memory ``'none'``.
        """
        B, T = latents.shape[:2]
        L = len(self.blocks)
        if not self.has_memory:
            return [None] * L, [None] * L
        if keep is None:
            keep = read_index(T, self.cfg.window, self.cfg.mode)
        zeros = torch.zeros(B, T, device=latents.device)
        c = self._cond(zeros, actions)
        h = self._tokens(latents)
        reads, finals = [], []
        for i, block in enumerate(self.blocks):
            st = None if state is None else state[i]
            h, kept, final = block.write(h, c, actions, self.rope_s, st, keep, detach_every,
                                         last=i == L - 1)
            reads.append(kept)
            finals.append(final)
        return reads, finals

    def init_memory(self, batch: int, device=None, dtype=torch.float32) -> MemoryState:
        """Zero memory state for ``batch`` worlds: per layer tensors ``(B, N, *f)``."""
        N = self.cfg.tokens_per_frame
        out = []
        for block in self.blocks:
            if block.memory is None:
                out.append(None)
            else:
                out.append(tuple(s.view(batch, N, *s.shape[1:])
                                 for s in block.memory.init_state(batch * N, device, dtype)))
        return out

    def write_frame(self, latent: Tensor, action: Tensor, state: MemoryState) -> MemoryState:
        """Write one clean frame into the memory (one step of :meth:`prefetch`).

        ``latent (B, C, h, w)``, ``action (B,)``; returns the new state.
        """
        if not self.has_memory:
            return state
        _, final = self.prefetch(latent[:, None], action[:, None], state,
                                 keep=torch.zeros(0, dtype=torch.long))
        return final

    def rotate_past(self, past: KVCache | None) -> KVCache | None:
        """Apply the temporal RoPE of positions ``0..P-1`` to cached keys, once per frame.

        ``past``: per layer pre-RoPE ``(k, v)`` each ``(B, N, heads, P, hd)`` (oldest first), as
        the rollout engine stores them. The result is what :meth:`forward_frame` takes; it serves
        every denoising step of the frame, so the keys are rotated once, not once per step.
        """
        if past is None:
            return None
        P = past[0][0].shape[3]
        cos, sin = self._rope_t(torch.arange(P, device=past[0][0].device))
        return [(apply_rope(k, cos, sin), v) for k, v in past]

    def plan_frame(self, past: KVCache | None, read: MemoryState | None,
                   key_mask: Tensor | None = None, prev: Tensor | None = None) -> FramePlan:
        """What every pass over one new frame shares, computed once for the frame.

        Args:
            past: per layer ``(k, v)`` each ``(B, N, heads, P, hd)`` of the P context frames in its
                window (oldest first), keys already rotated by :meth:`rotate_past`; or None when
                P = 0.
            read: the memory state the frame reads (per layer ``(B, N, *f)``; None without memory).
            key_mask: ``(B, P)`` bool, True where a cached frame is in that row's window; lets rows
                with fewer context frames than P share a batch (their cache is left-padded: the
                masked entries come first, so relative positions stay right). None: all attended.
            prev: ``(B, C, h, w)`` the previous context frame (zeros for rows without one), when
                the model stacks it; None = zeros.
        """
        P = 0 if past is None or past[0] is None else past[0][0].shape[3]
        device = self.rope_s_cos.device
        rope_new = self._rope_t(torch.tensor([P], device=device))
        flat, mask = None, None
        if P > 0:
            B, N = past[0][0].shape[:2]
            flat = [(k.flatten(0, 1), v.flatten(0, 1)) for k, v in past]  # (B*N, heads, P, hd)
            if key_mask is not None:  # the frame always attends to itself
                km = torch.cat([key_mask, key_mask.new_ones(B, 1)], dim=1)  # (B, P+1)
                mask = km[:, None, None, None, :].expand(B, N, 1, 1, P + 1).flatten(0, 1)
        reads = None
        if self.has_memory:
            reads = [block.memory.read_plan(tuple(s.flatten(0, 1) for s in layer))
                     for block, layer in zip(self.blocks, read)]
        prev_t = prev_tokens = None
        if self.uses_prev:
            K = self.patch_in.in_features // 2
            w_prev, bias = self.patch_in.weight[:, K:], self.patch_in.bias
            if prev is None:
                prev_tokens = bias
            else:
                prev_t = prev[:, None]
                prev_tokens = F.linear(self._patches(prev_t.to(w_prev.dtype)), w_prev, bias)
        return FramePlan(flat, mask, rope_new, reads, prev_t, prev_tokens)

    def forward_frame(self, x: Tensor, level: Tensor, action: Tensor,
                      plan: FramePlan) -> tuple[ModelOutput, KVCache]:
        """One frame against its cached context (the rollout engine's inner step).

        Args:
            x: ``(B, C, h, w)`` the new frame's noisy latent.
            level: ``(B,)`` its noise level.
            action: ``(B,)`` the action that led to it.
            plan: from :meth:`plan_frame`: the context, memory read and previous frame every pass
                over this frame shares.
        Returns:
            ``(output, kv)``: output tensors with T = 1; ``kv`` per layer this frame's pre-RoPE
            ``(k, v)`` each ``(B, N, heads, 1, hd)``, to append to the cache once it is clean.
        """
        c = self._cond(level[:, None], action[:, None])
        if self.uses_prev:
            K = self.patch_in.in_features // 2
            h = F.linear(self._patches(x[:, None]), self.patch_in.weight[:, :K]) + plan.prev_tokens
        else:
            h = self.patch_in(self._patches(x[:, None]))
        new_kv = []
        for i, block in enumerate(self.blocks):
            h, kv = block.forward_frame(h, c, action[:, None], self.rope_s,
                                        None if plan.past is None else plan.past[i], plan.rope_new,
                                        None if plan.reads is None else plan.reads[i], plan.mask)
            new_kv.append(kv)
        return self._output(h, c, plan.prev), new_kv
