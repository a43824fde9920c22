"""Building blocks of the RAD network: RoPE, adaLN modulation, axis attention, MLP, embeddings.

All attention goes through ``torch.nn.functional.scaled_dot_product_attention``. The temporal
attention's cache of context frames has the types :data:`LayerKV` and :data:`KVCache`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
