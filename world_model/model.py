"""The RAD network (paper Sec. 4): a diffusion transformer over per-frame latents in which every
layer has spatial attention (2D RoPE), temporal attention (1D RoPE, the mode's window mask), a
recurrent memory block fed with the action (Sec. 6.1), and an MLP, all conditioned by adaLN-Zero
on each frame's noise level and action.

Three passes share every weight:

* ``forward``        - the windowed pass over a whole sequence (training; diffusion loss).
* ``prefetch``       - the window-1 pass over *clean* frames that writes the memory, layer by layer
                       (attention parallel over frames, one recurrent scan per layer). Paper Sec. 4.3.
* ``forward_frame``  - one frame against cached keys/values of its context (the rollout engine).

Memory states are explicit: per layer a tuple of tensors shaped ``(B, N, *feature)`` (N tokens per
frame), or ``None`` for memory ``'none'``. The network knows nothing of the noise schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from world_model.config import ModelConfig
from world_model.layers import (
    MLP,
    Attention,
    LevelEmbedding,
    apply_rope,
    modulate,
    rope_2d,
    rope_angles,
)
from world_model.memory import State, make_memory
from world_model.windows import read_index, teacher_mask, temporal_mask

#: Per layer: the memory state tuple (each ``(B, N, *feature)``), or None without memory.
MemoryState = list
#: Per layer: cached temporal keys and values of context frames, each ``(B, N, heads, P, head_dim)``.
KVCache = list


@dataclass
class ModelOutput:
    prediction: Tensor
    """``(B, T, C, h, w)``: the network's diffusion prediction (v, eps or x0 per DiffusionConfig)."""
    reward: Tensor | None = None
    """``(B, T)`` predicted reward of each frame."""
    termination_logit: Tensor | None = None
    """``(B, T)`` logit that the frame ends the episode."""


class RADBlock(nn.Module):
    """One RAD layer: spatial attention, temporal attention, memory, MLP; adaLN-Zero throughout."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D = cfg.width
        self.cfg = cfg
        self.norm_s = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.norm_t = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.norm_f = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.spatial = Attention(D, cfg.heads)
        self.temporal = Attention(D, cfg.heads)
        self.mlp = MLP(D, int(D * cfg.mlp_ratio))
        self.memory = make_memory(cfg.memory, D + cfg.memory_action_dim, cfg)
        n_mod = 9
        if self.memory is not None:
            self.norm_m = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
            self.mem_out = nn.Linear(self.memory.out_dim, D)
            self.mem_action = (nn.Embedding(cfg.num_actions, cfg.memory_action_dim)
                               if cfg.memory_action_dim > 0 else None)
            n_mod = 12
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(D, n_mod * D))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    # -- pieces shared by every pass -------------------------------------------------------------
    def modulations(self, c: Tensor) -> list[Tensor]:
        """``c (B, T, D)`` -> shift/scale/gate tensors, each ``(B, T, 1, D)``."""
        return [m[:, :, None] for m in self.ada(c).chunk(12 if self.memory is not None else 9, -1)]

    def spatial_part(self, x: Tensor, mods: list[Tensor], rope_s) -> Tensor:
        B, T, N, D = x.shape
        h = modulate(self.norm_s(x), mods[0], mods[1]).reshape(B * T, N, D)
        return x + mods[2] * self.spatial(h, rope_s).view(B, T, N, D)

    def temporal_input(self, x: Tensor, mods: list[Tensor]) -> Tensor:
        return modulate(self.norm_t(x), mods[3], mods[4])

    def memory_input(self, x: Tensor, mods: list[Tensor], actions: Tensor) -> Tensor:
        """``u = concat(LN-modulated y, Linear(a))``: ``(B, T, N, D + memory_action_dim)``."""
        u = modulate(self.norm_m(x), mods[6], mods[7])
        if self.mem_action is not None:
            a = self.mem_action(actions)[:, :, None].expand(-1, -1, x.shape[2], -1)
            u = torch.cat([u, a], dim=-1)
        return u

    def memory_residual(self, x: Tensor, mods: list[Tensor], mem_out: Tensor) -> Tensor:
        return x + mods[8] * self.mem_out(mem_out)

    def mlp_part(self, x: Tensor, mods: list[Tensor]) -> Tensor:
        i = 6 if self.memory is None else 9
        return x + mods[i + 2] * self.mlp(modulate(self.norm_f(x), mods[i], mods[i + 1]))

    def read_memory(self, u: Tensor, state: State) -> Tensor:
        """One recurrent step per frame from a given state whose result is *not* kept.

        ``u (B, T, N, Din)``, state tensors ``(B, N, T, *f)`` -> ``(B, T, N, Dout)``.
        """
        B, T, N, _Din = u.shape
        rows = rearrange(u, "b t n d -> (b n t) d")
        st = tuple(s.reshape(B * N * T, *s.shape[3:]) for s in state)
        out, _ = self.memory.step(rows, st)
        return rearrange(out, "(b n t) d -> b t n d", b=B, n=N, t=T)

    # -- the three passes ------------------------------------------------------------------------
    def forward(self, x: Tensor, c: Tensor, actions: Tensor, rope_s, rope_t, mask: Tensor,
                reads: State | None) -> Tensor:
        """Windowed pass. ``x (B, T, N, D)``, ``c (B, T, D)``, ``mask (T, T)``,
        ``reads`` tensors ``(B, N, T, *f)``: the state each frame reads."""
        B, _T, _N, _D = x.shape
        mods = self.modulations(c)
        x = self.spatial_part(x, mods, rope_s)
        h = rearrange(self.temporal_input(x, mods), "b t n d -> (b n) t d")
        t_out = self.temporal(h, rope_t, mask)
        x = x + mods[5] * rearrange(t_out, "(b n) t d -> b t n d", b=B)
        if self.memory is not None:
            x = self.memory_residual(x, mods, self.read_memory(self.memory_input(x, mods, actions), reads))
        return self.mlp_part(x, mods)

    def write(self, x: Tensor, c: Tensor, actions: Tensor, rope_s, state: State | None,
              keep: Tensor | None, detach_every: int = 0, last: bool = False):
        """Window-1 pass over clean frames: temporal attention sees the frame itself only, and the
        memory runs its recurrence over the T frames. Returns ``(x, kept states, final state)``;
        kept tensors ``(B, N, len(keep), *f)``, final ``(B, N, *f)``."""
        B, _T, N, _D = x.shape
        mods = self.modulations(c)
        x = self.spatial_part(x, mods, rope_s)
        x = x + mods[5] * self.temporal.self_only(self.temporal_input(x, mods))
        if self.memory is None:
            return (x if last else self.mlp_part(x, mods)), None, None
        u = rearrange(self.memory_input(x, mods, actions), "b t n d -> (b n) t d")
        if state is None:
            st = self.memory.init_state(B * N, x.device, x.dtype)
        else:
            st = tuple(s.reshape(B * N, *s.shape[2:]) for s in state)
        out, kept, final = self.memory.scan(u, st, keep, detach_every)
        kept = tuple(s.reshape(B, N, *s.shape[1:]) for s in kept)
        final = tuple(s.reshape(B, N, *s.shape[1:]) for s in final)
        if last:  # nothing reads the last layer's output in a write pass
            return x, kept, final
        x = self.memory_residual(x, mods, rearrange(out, "(b n) t d -> b t n d", b=B))
        return self.mlp_part(x, mods), kept, final

    def forward_frame(self, x: Tensor, c: Tensor, actions: Tensor, rope_s, past: tuple | None,
                      rope_new, read: State | None, key_mask: Tensor | None = None):
        """One new frame against cached context. ``x (B, 1, N, D)``; ``past`` = cached ``(k, v)``
        each ``(B, N, heads, P, hd)`` with the temporal RoPE of positions ``0..P-1`` already applied
        (:meth:`RADModel.rotate_past`), or None; ``rope_new`` = the RoPE of position ``P`` (the new
        frame's query and key); ``read`` tensors ``(B, N, *f)``; ``key_mask (B, P)`` bool
        (True = attend) or None (all P attended).
        Returns ``(x, (k, v))`` with this frame's keys/values ``(B, N, heads, 1, hd)`` (pre-RoPE)."""
        B, _, N, _ = x.shape
        mods = self.modulations(c)
        x = self.spatial_part(x, mods, rope_s)
        h = rearrange(self.temporal_input(x, mods), "b t n d -> (b n) t d")
        q, k, v = self.temporal.project(h)  # (B*N, heads, 1, hd)
        q_rot, k_rot = apply_rope(q, *rope_new), apply_rope(k, *rope_new)
        mask = None
        if past is not None:
            pk, pv = (rearrange(p, "b n h l d -> (b n) h l d") for p in past)
            k_all, v_all = torch.cat([pk, k_rot], dim=2), torch.cat([pv, v], dim=2)
            if key_mask is not None:  # the frame always attends to itself
                m = torch.cat([key_mask, key_mask.new_ones(B, 1)], dim=1)  # (B, P+1)
                mask = m[:, None, None, None, :].expand(B, N, 1, 1, m.shape[1]).flatten(0, 1)
        else:
            k_all, v_all = k_rot, v
        t_out = self.temporal.attend_rotated(q_rot, k_all, v_all, mask)  # mask (B*N, 1, 1, P+1)
        x = x + mods[5] * rearrange(t_out, "(b n) t d -> b t n d", b=B)
        if self.memory is not None:
            u = self.memory_input(x, mods, actions)
            state = tuple(s[:, :, None] for s in read)  # (B, N, 1, *f)
            x = self.memory_residual(x, mods, self.read_memory(u, state))
        new_kv = (rearrange(k, "(b n) h l d -> b n h l d", b=B), rearrange(v, "(b n) h l d -> b n h l d", b=B))
        return self.mlp_part(x, mods), new_kv


class RADModel(nn.Module):
    """The RAD denoiser with memory. See the module docstring for the three passes."""

    def __init__(self, cfg: ModelConfig, num_levels: int = 1000) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        D, p, C = cfg.width, cfg.patch_size, cfg.latent_channels
        self.patch_in = nn.Linear(C * p * p * (1 if cfg.prev_frame == "none" else 2), D)
        self.level_emb = LevelEmbedding(D, num_levels)
        self.action_emb = nn.Embedding(cfg.num_actions, D)
        self.blocks = nn.ModuleList(RADBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.patch_out = nn.Linear(D, C * p * p)
        for layer in (self.ada_out[1], self.patch_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if cfg.reward_head:
            self.head_norm = nn.LayerNorm(D)
            self.head = nn.Linear(D, 2)  # reward, termination logit
        cos, sin = rope_2d(cfg.grid, cfg.head_dim)
        self.register_buffer("rope_s_cos", cos, persistent=False)
        self.register_buffer("rope_s_sin", sin, persistent=False)

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
        return rope_angles(positions, self.cfg.head_dim)

    def _output(self, x: Tensor, c: Tensor, prev: Tensor | None = None) -> ModelOutput:
        p, g = self.cfg.patch_size, self.cfg.grid
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

    def forward_frame(self, x: Tensor, level: Tensor, action: Tensor, past: KVCache | None,
                      read: MemoryState | None, key_mask: Tensor | None = None,
                      prev: Tensor | None = None) -> tuple[ModelOutput, KVCache]:
        """One frame against its cached context (the rollout engine's inner step).

        Args:
            x: ``(B, C, h, w)`` the new frame's noisy latent.
            level: ``(B,)`` its noise level.
            action: ``(B,)`` the action that led to it.
            past: per layer ``(k, v)`` each ``(B, N, heads, P, hd)`` of the P context frames in its
                window (oldest first), keys already rotated by :meth:`rotate_past`; or None when
                P = 0.
            read: the memory state the frame reads (per layer ``(B, N, *f)``).
            key_mask: ``(B, P)`` bool, True where a cached frame is in that row's window; lets rows
                with fewer context frames than P share a batch (their cache is left-padded: the
                masked entries come first, so relative positions stay right). None: all attended.
            prev: ``(B, C, h, w)`` the previous context frame (zeros for rows without one), when
                the model stacks it; None = zeros.
        Returns:
            ``(output, kv)``: output tensors with T = 1; ``kv`` per layer this frame's pre-RoPE
            ``(k, v)`` each ``(B, N, heads, 1, hd)``, to append to the cache once it is clean.
        """
        P = 0 if past is None or past[0] is None else past[0][0].shape[3]
        c = self._cond(level[:, None], action[:, None])
        prev_t = None if prev is None else prev[:, None]
        h = self._tokens(x[:, None], prev_t)
        rope_new = self._rope_t(torch.tensor([P], device=x.device))
        new_kv = []
        for i, block in enumerate(self.blocks):
            h, kv = block.forward_frame(h, c, action[:, None], self.rope_s,
                                        None if P == 0 else past[i], rope_new,
                                        read[i] if self.has_memory else None,
                                        None if P == 0 else key_mask)
            new_kv.append(kv)
        return self._output(h, c, prev_t), new_kv
