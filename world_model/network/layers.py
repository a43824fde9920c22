"""The layers of the RAD network: RoPE, adaLN modulation, axis attention, MLP, the noise-level
embedding, and the RAD layer built from them (paper Sec. 4.1).

:class:`RADBlock` is one RAD layer: spatial attention, temporal attention, memory, MLP, each
modulated by adaLN-Zero from the frame's conditioning ``c`` (noise level + action):
``x + gate * part(LN(x) * (1 + scale) + shift)``. The modulations are one linear map of ``c``,
unpacked by name into a :class:`Modulation` (DiT's names; ``tmp`` is the temporal attention,
``mem`` the memory); ``RADModel.initialize_weights`` zero-initialises that map, so a fresh layer
is the identity. The layer runs in three passes that share every weight (see
:mod:`world_model.network.model`): :meth:`RADBlock.forward` (windowed, training),
:meth:`RADBlock.write` (window 1 over clean frames, the memory pre-fetch) and
:meth:`RADBlock.forward_frame` (one frame against cached keys/values).

All attention goes through ``torch.nn.functional.scaled_dot_product_attention``. The temporal
attention's cache of context frames has the types :data:`LayerKV` and :data:`KVCache`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from world_model.config import ModelConfig
from world_model.network.memory import LayerMemory, make_memory

#: One layer's cached temporal keys and values of P context frames: ``(keys, values)``, each
#: ``(B, N, heads, P, head_dim)`` (N tokens per frame), oldest frame first.
LayerKV = tuple[Tensor, Tensor]
#: The temporal-attention cache of every layer: ``depth`` :data:`LayerKV`, first layer first.
KVCache = list[LayerKV]


def rope_angles(positions: Tensor, dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables for rotary embeddings.

    Args:
        positions: ``(L,)`` float positions.
        dim: even number of channels rotated.
    Returns:
        ``cos, sin`` each ``(L, dim // 2)``.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device).float() / dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs of ``x (..., L, dim)`` by the angles ``(L, dim/2)``."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


def rope_2d(grid: int, head_dim: int, device=None) -> tuple[Tensor, Tensor]:
    """2D RoPE tables for a ``grid x grid`` token layout: half the channels encode the row, half the
    column. Returns ``cos, sin`` each ``(grid*grid, head_dim/2)``."""
    rows = torch.arange(grid, device=device).repeat_interleave(grid)
    cols = torch.arange(grid, device=device).repeat(grid)
    cos_r, sin_r = rope_angles(rows, head_dim // 2)
    cos_c, sin_c = rope_angles(cols, head_dim // 2)
    return torch.cat([cos_r, cos_c], dim=-1), torch.cat([sin_r, sin_c], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x * (1 + scale) + shift``; shift/scale broadcast over the token axis."""
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head self-attention with RoPE, over the second-to-last axis of ``(B, L, D)``.

    Keys and values can be extended with cached ones from earlier frames (temporal attention in the
    rollout engine); cached keys are stored *before* RoPE so positions can be re-based.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x (B, L, D)`` -> ``q, k, v`` each ``(B, heads, L, D/heads)`` (no RoPE yet)."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, L, hd)
        return q, k, v

    def attend(self, q: Tensor, k: Tensor, v: Tensor, rope_q: tuple[Tensor, Tensor],
               rope_k: tuple[Tensor, Tensor], mask: Tensor | None = None) -> Tensor:
        """RoPE then SDPA. ``q (B,h,Lq,hd)``, ``k, v (B,h,Lk,hd)``, ``mask (Lq, Lk)`` bool (True = attend).
        Returns ``(B, Lq, D)``."""
        return self.attend_rotated(apply_rope(q, *rope_q), apply_rope(k, *rope_k), v, mask)

    def attend_rotated(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """SDPA on queries and keys that already carry their RoPE; returns ``(B, Lq, D)``."""
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, h, n, hd = o.shape
        return self.out(o.transpose(1, 2).reshape(b, n, h * hd))

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None = None) -> Tensor:
        q, k, v = self.project(x)
        return self.attend(q, k, v, rope, rope, mask)

    def self_only(self, x: Tensor) -> Tensor:
        """Attention of each position to itself alone (a window of 1): exactly ``out(v)``."""
        d = x.shape[-1]
        v = F.linear(x, self.qkv.weight[2 * d:], self.qkv.bias[2 * d:])
        return self.out(v)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class LevelEmbedding(nn.Module):
    """Noise level ``k`` in ``[0, K]`` -> ``(..., D)``: sinusoidal features then an MLP."""

    def __init__(self, dim: int, num_levels: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = 1000.0 / num_levels
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, levels: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=levels.device) / half)
        args = levels.float()[..., None] * self.scale * freqs
        emb = torch.cat([args.cos(), args.sin()], dim=-1)
        return self.mlp(emb)


@dataclass
class Modulation:
    """The adaLN-Zero outputs of one layer, each ``(B, T, 1, D)`` (broadcast over tokens)."""

    shift_msa: Tensor
    scale_msa: Tensor
    gate_msa: Tensor
    """Spatial (multi-head self-) attention over the frame's tokens."""
    shift_tmp: Tensor
    scale_tmp: Tensor
    gate_tmp: Tensor
    """Temporal attention over the frames of the window."""
    shift_mlp: Tensor
    scale_mlp: Tensor
    gate_mlp: Tensor
    """The MLP."""
    shift_mem: Tensor | None = None
    scale_mem: Tensor | None = None
    gate_mem: Tensor | None = None
    """The memory read (None without memory)."""


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
        if self.memory is not None:
            self.norm_m = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
            self.mem_out = nn.Linear(self.memory.out_dim, D)
            self.mem_action = (nn.Embedding(cfg.num_actions, cfg.memory_action_dim)
                               if cfg.memory_action_dim > 0 else None)
        # shift, scale, gate for: spatial, temporal, [memory,] MLP -- in this order
        self.num_modulations = 9 if self.memory is None else 12
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(D, self.num_modulations * D))

    # -- pieces shared by every pass -------------------------------------------------------------
    def modulations(self, c: Tensor) -> Modulation:
        """``c (B, T, D)`` -> the layer's :class:`Modulation`."""
        mods = [m[:, :, None] for m in self.ada(c).chunk(self.num_modulations, dim=-1)]
        if self.memory is None:
            (shift_msa, scale_msa, gate_msa, shift_tmp, scale_tmp, gate_tmp,
             shift_mlp, scale_mlp, gate_mlp) = mods
            shift_mem = scale_mem = gate_mem = None
        else:
            (shift_msa, scale_msa, gate_msa, shift_tmp, scale_tmp, gate_tmp,
             shift_mem, scale_mem, gate_mem, shift_mlp, scale_mlp, gate_mlp) = mods
        return Modulation(shift_msa, scale_msa, gate_msa, shift_tmp, scale_tmp, gate_tmp,
                          shift_mlp, scale_mlp, gate_mlp, shift_mem, scale_mem, gate_mem)

    def spatial_part(self, x: Tensor, m: Modulation, rope_s) -> Tensor:
        B, T, N, D = x.shape
        h = modulate(self.norm_s(x), m.shift_msa, m.scale_msa).reshape(B * T, N, D)
        return x + m.gate_msa * self.spatial(h, rope_s).view(B, T, N, D)

    def temporal_input(self, x: Tensor, m: Modulation) -> Tensor:
        return modulate(self.norm_t(x), m.shift_tmp, m.scale_tmp)

    def memory_input(self, x: Tensor, m: Modulation, actions: Tensor) -> Tensor:
        """``u = concat(LN-modulated y, Linear(a))``: ``(B, T, N, D + memory_action_dim)``."""
        u = modulate(self.norm_m(x), m.shift_mem, m.scale_mem)
        if self.mem_action is not None:
            a = self.mem_action(actions)[:, :, None].expand(-1, -1, x.shape[2], -1)
            u = torch.cat([u, a], dim=-1)
        return u

    def memory_residual(self, x: Tensor, m: Modulation, mem_out: Tensor) -> Tensor:
        return x + m.gate_mem * self.mem_out(mem_out)

    def mlp_part(self, x: Tensor, m: Modulation) -> Tensor:
        return x + m.gate_mlp * self.mlp(modulate(self.norm_f(x), m.shift_mlp, m.scale_mlp))

    def read_memory(self, u: Tensor, state: LayerMemory) -> Tensor:
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
                reads: LayerMemory) -> Tensor:
        """Windowed pass. ``x (B, T, N, D)``, ``c (B, T, D)``, ``mask (T, T)``,
        ``reads`` tensors ``(B, N, T, *f)``: the state each frame reads."""
        B = x.shape[0]
        m = self.modulations(c)
        x = self.spatial_part(x, m, rope_s)
        h = rearrange(self.temporal_input(x, m), "b t n d -> (b n) t d")
        t_out = self.temporal(h, rope_t, mask)
        x = x + m.gate_tmp * rearrange(t_out, "(b n) t d -> b t n d", b=B)
        if self.memory is not None:
            x = self.memory_residual(x, m, self.read_memory(self.memory_input(x, m, actions), reads))
        return self.mlp_part(x, m)

    def write(self, x: Tensor, c: Tensor, actions: Tensor, rope_s, state: LayerMemory,
              keep: Tensor | None, detach_every: int = 0, last: bool = False):
        """Window-1 pass over clean frames: temporal attention sees the frame itself only, and the
        memory runs its recurrence over the T frames. Returns ``(x, kept states, final state)``;
        kept tensors ``(B, N, len(keep), *f)``, final ``(B, N, *f)``."""
        B, _T, N, _D = x.shape
        m = self.modulations(c)
        x = self.spatial_part(x, m, rope_s)
        x = x + m.gate_tmp * self.temporal.self_only(self.temporal_input(x, m))
        if self.memory is None:
            return (x if last else self.mlp_part(x, m)), None, None
        u = rearrange(self.memory_input(x, m, actions), "b t n d -> (b n) t d")
        if state is None:
            st = self.memory.init_state(B * N, x.device, x.dtype)
        else:
            st = tuple(s.reshape(B * N, *s.shape[2:]) for s in state)
        out, kept, final = self.memory.scan(u, st, keep, detach_every)
        kept = tuple(s.reshape(B, N, *s.shape[1:]) for s in kept)
        final = tuple(s.reshape(B, N, *s.shape[1:]) for s in final)
        if last:  # nothing reads the last layer's output in a write pass
            return x, kept, final
        x = self.memory_residual(x, m, rearrange(out, "(b n) t d -> b t n d", b=B))
        return self.mlp_part(x, m), kept, final

    def forward_frame(self, x: Tensor, c: Tensor, actions: Tensor, rope_s, past: LayerKV | None,
                      rope_new, read: tuple[Tensor, ...] | None, mask: Tensor | None = None
                      ) -> tuple[Tensor, LayerKV]:
        """One new frame against cached context. ``x (B, 1, N, D)``; ``past`` = cached ``(k, v)``
        each ``(B*N, heads, P, hd)`` with the temporal RoPE of positions ``0..P-1`` already applied
        (``RADModel.plan_frame``), or None; ``rope_new`` = the RoPE of position ``P`` (the new
        frame's query and key); ``read`` = the memory's :meth:`~world_model.network.memory.Memory.read_plan`
        of the state the frame reads (rows ``B*N``); ``mask (B*N, 1, 1, P+1)`` bool (True = attend)
        or None (all attended).
        Returns ``(x, (k, v))`` with this frame's keys/values ``(B, N, heads, 1, hd)`` (pre-RoPE)."""
        B, _, N, _ = x.shape
        m = self.modulations(c)
        x = self.spatial_part(x, m, rope_s)
        h = rearrange(self.temporal_input(x, m), "b t n d -> (b n) t d")
        q, k, v = self.temporal.project(h)  # (B*N, heads, 1, hd)
        q_rot, k_rot = apply_rope(q, *rope_new), apply_rope(k, *rope_new)
        if past is not None:
            k_all, v_all = torch.cat([past[0], k_rot], dim=2), torch.cat([past[1], v], dim=2)
        else:
            k_all, v_all, mask = k_rot, v, None
        t_out = self.temporal.attend_rotated(q_rot, k_all, v_all, mask)
        x = x + m.gate_tmp * rearrange(t_out, "(b n) t d -> b t n d", b=B)
        if self.memory is not None:
            u = self.memory_input(x, m, actions).reshape(B * N, -1)  # T = 1: rows (b n)
            out = self.memory.read(u, read).view(B, 1, N, -1)
            x = self.memory_residual(x, m, out)
        new_kv = (rearrange(k, "(b n) h l d -> b n h l d", b=B),
                  rearrange(v, "(b n) h l d -> b n h l d", b=B))
        return self.mlp_part(x, m), new_kv
