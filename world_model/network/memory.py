"""Recurrent memory blocks behind one interface: LSTM (main), Mamba2, TTT-linear.

A memory block maps a sequence of inputs ``u`` (one per frame, per token position) to outputs,
carrying a recurrent state. The state is a tuple of tensors whose first axis is the *row*
(batch x token position); it is always passed in and returned, never kept inside the module, so
callers can clone, index, reset and move it.

Interface (``rows`` = independent sequences):
    init_state(rows, device, dtype) -> RowState     each tensor (rows, *feature)
    step(u (rows, Din), state) -> (out (rows, Dout), new_state)
    read_plan(state) -> plan; read(u (rows, Din), plan) -> out (rows, Dout)
        a step whose new state is not kept, its input-free half computed once per state
    scan(u (rows, T, Din), state, keep) -> (out (rows, T, Dout), kept states, final state)
        kept states: each tensor (rows, len(keep), *feature), the state *before* frame keep[j]
        (index T = after the last frame).

All three are pure PyTorch. ``LSTMMemory`` uses ``torch.nn.LSTMCell`` parameters; its scan
pre-computes the input projection for all frames in one matmul (``scan_inputs``) and runs only the
recurrent part sequentially (``scan_step``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: A memory block's recurrent state over independent rows: tensors ``(rows, *feature)``; LSTM
#: ``(h, c)``, Mamba2 ``(conv buffer, SSM state)``, TTT ``(W,)`` (see each class).
RowState = tuple[Tensor, ...]
#: One RAD layer's memory state for B worlds: the :data:`RowState` tensors reshaped to
#: ``(B, N, *feature)`` (a row per world and token position), or None for memory ``'none'``.
LayerMemory = tuple[Tensor, ...] | None
#: The memory state of every layer of the network (``depth`` :data:`LayerMemory`, first first).
MemoryState = list[LayerMemory]


def map_memory(memory: MemoryState | None, fn) -> MemoryState | None:
    """``fn`` applied to every tensor of a :data:`MemoryState` (clone, index rows, move, cast)."""
    if memory is None:
        return None
    return [None if layer is None else tuple(fn(s) for s in layer) for layer in memory]


def memory_tensors(memory: MemoryState | None) -> list[Tensor]:
    """Every tensor of a :data:`MemoryState`, first layer first (to assign rows in place)."""
    if memory is None:
        return []
    return [s for layer in memory if layer is not None for s in layer]


class Memory(nn.Module):
    """Base class; subclasses implement ``state_shapes``, ``step`` and may speed up ``scan``."""

    in_dim: int
    out_dim: int

    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        raise NotImplementedError

    def init_state(self, rows: int, device=None, dtype=torch.float32) -> RowState:
        return tuple(torch.zeros((rows, *s), device=device, dtype=dtype) for s in self.state_shapes())

    def step(self, u: Tensor, state: RowState) -> tuple[Tensor, RowState]:
        raise NotImplementedError

    def read_plan(self, state: RowState) -> RowState:
        """The part of a read from ``state`` that does not depend on the input, computed once
        when several inputs read the same state (the rollout engine's denoising passes of one
        frame); by default the state itself. :meth:`read` takes the result."""
        return state

    def read(self, u: Tensor, plan: RowState) -> Tensor:
        """The output of one step from the state behind ``plan`` (:meth:`read_plan`), the new
        state discarded: equals ``step(u, state)[0]`` up to float rounding."""
        return self.step(u, plan)[0]

    def scan_inputs(self, u: Tensor) -> Tensor:
        """Per-frame work that needs no state, done for all frames at once before the loop
        (``(rows, T, Din)`` -> ``(rows, T, *)``); by default none."""
        return u

    def scan_step(self, x: Tensor, state: RowState) -> tuple[Tensor, RowState]:
        """One recurrent step on a :meth:`scan_inputs` slice; by default :meth:`step`."""
        return self.step(x, state)

    def scan(self, u: Tensor, state: RowState, keep: Tensor | None = None,
             detach_every: int = 0) -> tuple[Tensor, RowState, RowState]:
        """Run the recurrence over ``u (rows, T, Din)``; see the module docstring."""
        xs = self.scan_inputs(u)
        T = u.shape[1]
        keep_set = _keep_positions(keep, T)
        kept: dict[int, RowState] = {}
        outs = []
        for t in range(T):
            if t in keep_set:
                kept[t] = state
            if detach_every and t > 0 and t % detach_every == 0:
                state = tuple(s.detach() for s in state)
            o, state = self.scan_step(xs[:, t], state)
            outs.append(o)
        if T in keep_set:
            kept[T] = state
        return torch.stack(outs, dim=1), _gather_kept(kept, keep, state), state


def _keep_positions(keep: Tensor | None, T: int) -> set[int]:
    if keep is None:
        return set(range(T + 1))
    return {int(i) for i in keep.tolist()}


def _gather_kept(kept: dict[int, RowState], keep: Tensor | None, final: RowState) -> RowState:
    order = sorted(kept) if keep is None else [int(i) for i in keep.tolist()]
    if not order:
        return tuple(f.new_empty((f.shape[0], 0, *f.shape[1:])) for f in final)
    return tuple(torch.stack([kept[i][j] for i in order], dim=1) for j in range(len(final)))


class LSTMMemory(Memory):
    """LSTM (paper Sec. 3.1): state ``(h, c)``, each ``(rows, hidden)``; output ``h``."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden = in_dim, hidden, hidden
        self.cell = nn.LSTMCell(in_dim, hidden)

    def state_shapes(self):
        return ((self.hidden,), (self.hidden,))

    def step(self, u, state):
        h, c = self.cell(u, state)
        return h, (h, c)

    def read_plan(self, state: RowState) -> RowState:
        """``(W_hh h + b_hh + b_ih, c)``: the recurrent half of the gates, once per state."""
        h, c = state
        return F.linear(h, self.cell.weight_hh, self.cell.bias_hh) + self.cell.bias_ih, c

    def read(self, u: Tensor, plan: RowState) -> Tensor:
        recurrent, c = plan
        i, f, g, o = (F.linear(u, self.cell.weight_ih) + recurrent).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c)

    def scan_inputs(self, u: Tensor) -> Tensor:
        return F.linear(u, self.cell.weight_ih, self.cell.bias_ih)  # (rows, T, 4H): one matmul

    def scan_step(self, xw: Tensor, state: RowState) -> tuple[Tensor, RowState]:
        h, c = state
        gates = xw + F.linear(h, self.cell.weight_hh, self.cell.bias_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class Mamba2Memory(Memory):
    """Mamba2-style selective SSM (paper App. A.2), pure PyTorch, one step at a time.

    State: the causal-convolution buffer ``(rows, conv-1, conv_dim)`` and the SSM state
    ``(rows, heads, head_dim, d_state)``.
    """

    def __init__(self, in_dim: int, hidden: int, d_state: int = 16, heads: int = 4,
                 conv: int = 4) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, hidden
        self.hidden, self.d_state, self.heads, self.conv = hidden, d_state, heads, conv
        self.head_dim = hidden // heads
        self.conv_dim = hidden + 2 * d_state
        self.in_proj = nn.Linear(in_dim, hidden + self.conv_dim + heads)  # z, xBC, dt
        self.conv_weight = nn.Parameter(torch.randn(self.conv_dim, conv) / math.sqrt(conv))
        self.conv_bias = nn.Parameter(torch.zeros(self.conv_dim))
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
        self.A_log = nn.Parameter(torch.log(torch.arange(1, heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = nn.RMSNorm(hidden, eps=1e-5)
        self.out_proj = nn.Linear(hidden, hidden)

    def state_shapes(self):
        return ((self.conv - 1, self.conv_dim), (self.heads, self.head_dim, self.d_state))

    def step(self, u, state):
        conv_buf, ssm = state
        rows = u.shape[0]
        z, xbc, dt = torch.split(self.in_proj(u), [self.hidden, self.conv_dim, self.heads], dim=-1)
        window = torch.cat([conv_buf, xbc[:, None]], dim=1)  # (rows, conv, conv_dim)
        xbc = F.silu((window * self.conv_weight.t()[None]).sum(1) + self.conv_bias)
        x, B, C = torch.split(xbc, [self.hidden, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt + self.dt_bias)  # (rows, heads)
        decay = torch.exp(dt * -torch.exp(self.A_log))  # (rows, heads)
        x = x.view(rows, self.heads, self.head_dim)
        ssm = decay[..., None, None] * ssm + (dt[..., None] * x)[..., None] * B[:, None, None, :]
        y = (ssm @ C[:, None, :, None]).squeeze(-1) + self.D[:, None] * x  # (rows, heads, hd)
        y = self.norm(y.reshape(rows, self.hidden) * F.silu(z))
        return self.out_proj(y), (window[:, 1:], ssm)


class TTTLinearMemory(Memory):
    """TTT-linear (paper App. A.2): the state is a weight matrix per head, updated by one gradient
    step of a self-supervised reconstruction loss per frame (mini-batch size 1).

    ``W <- W - lr * k^T (k W - v)`` with ``k`` L2-normalised and ``lr = ttt_lr * sigmoid(w . u)``
    per head; output ``LN(q W) + q``. State ``(rows, heads, head_dim, head_dim)``.
    """

    def __init__(self, in_dim: int, hidden: int, heads: int = 4, base_lr: float = 1.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, hidden
        self.heads, self.head_dim, self.base_lr = heads, hidden // heads, base_lr
        self.qkv = nn.Linear(in_dim, 3 * hidden)
        self.lr_gate = nn.Linear(in_dim, heads)
        self.norm = nn.LayerNorm(self.head_dim)
        self.out_proj = nn.Linear(hidden, hidden)

    def state_shapes(self):
        return ((self.heads, self.head_dim, self.head_dim),)

    def step(self, u, state):
        (W,) = state
        rows = u.shape[0]
        q, k, v = self.qkv(u).view(rows, 3, self.heads, self.head_dim).unbind(1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        lr = self.base_lr * torch.sigmoid(self.lr_gate(u))  # (rows, heads)
        err = (k[:, :, None] @ W).squeeze(2) - v  # (rows, heads, hd)
        W = W - lr[..., None, None] * (k[..., :, None] * err[..., None, :])
        out = self.norm((q[:, :, None] @ W).squeeze(2)) + q
        return self.out_proj(out.reshape(rows, -1)), (W,)


def make_memory(kind: str, in_dim: int, cfg) -> Memory | None:
    """Build the memory block named by ``cfg.memory`` (``None`` for 'none')."""
    if kind == "none":
        return None
    if kind == "lstm":
        return LSTMMemory(in_dim, cfg.memory_hidden)
    if kind == "mamba2":
        return Mamba2Memory(in_dim, cfg.memory_hidden, cfg.mamba_state, cfg.mamba_heads, cfg.mamba_conv)
    if kind == "ttt":
        return TTTLinearMemory(in_dim, cfg.memory_hidden, cfg.ttt_heads, cfg.ttt_lr)
    raise ValueError(f"unknown memory type {kind!r}")
