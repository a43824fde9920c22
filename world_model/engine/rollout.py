"""The rollout engine: B independent worlds, O(1) work and memory per generated frame.

Generating frame ``t`` (design/rad-method.md, "Inference"):

1. The sampler (:mod:`world_model.diffusion.samplers`, DDIM by default) from pure noise over a
   denoise function the engine hands it: every network pass is ONE single-frame pass whose temporal attention runs
   against the cached keys/values of the clean context frames in ``t``'s window, and whose memory
   block reads the state after the frames that left that window (``windows.window_start``).
2. One pass at level 0 on the clean result (at ``SamplerConfig.context_level``, by default the
   world's ``DiffusionConfig.context_level`` for 'augmented' context, on a noised copy): its keys/values go into the ring buffer, and the
   reward/termination heads give their outputs (a world with a reward model reads the step's
   reward from it instead, from the context frames before the new one and the action). Models that stack the previous frame keep it
   (``WorldState.prev``) for the next frame's tokens.
3. Memory bookkeeping, from clean frames only, after the last denoising step, exactly as the
   pre-fetch in training:
   * frame mode: the frame leaving the window of ``t + 1`` (frame ``t - W + 1``) is written into
     the memory by a window-1 pass (``model.write_frame``); its latent waits in the ring until then;
   * chunk mode: frame ``t`` is written into a *running* state at once; when ``t`` closes its chunk
     the running state becomes the state the next chunk reads, and the cache empties (the next
     frame sees no context).

So a frame costs ``steps + 2`` single-frame passes, whatever the rollout length. Real frames enter
through :meth:`RolloutEngine.observe` (steps 2-3 only). Rows may sit at different frame indices
(after a single-row reset); a key mask over the cache keeps each row's window exact.

The state is an explicit :class:`~world_model.engine.world_state.WorldState` that the engine
updates in place: ``clone()`` it to branch, index it by rows, reset rows, move it between devices.

Frames and actions from the caller are checked once, here, at the public methods
(:mod:`world_model.engine.checks`): every face above (``rad_env``, the agents' tools) passes them
through unchecked and gets the engine's error, which names what is wrong.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from world_model.config import SamplerConfig
from world_model.diffusion.samplers import make_sampler, randn_rows
from world_model.engine.bookkeeping import MemoryBookkeeping
from world_model.engine.checks import check_actions, check_frames
from world_model.engine.precision import low_precision_copy
from world_model.engine.world_state import WorldState, row_generators
from world_model.errors import UserError
from world_model.network.layers import KVCache
from world_model.network.model import FramePlan, ModelOutput
from world_model.network.windows import has_previous, window_start
from world_model.world import World

logger = logging.getLogger(__name__)

#: What :meth:`RolloutEngine.context` returns: the cached context of every row's next frame
#: (``KVCache`` with keys already rotated, or None) and its key mask ``(B, P)`` bool (or None).
Context = tuple[KVCache | None, Tensor | None]


@dataclass
class StepInfo:
    """What one new frame (generated or observed) gives besides its pixels."""

    latent: Tensor
    """``(B, C, h, w)`` float32: the frame's clean latent (now part of the context)."""
    reward: Tensor | None
    """``(B,)`` float32 predicted reward of the step into the frame: the world's reward model's
    probability of a reward event, read from the frames BEFORE it and the action (worlds with
    ``reward/``), else the network's reward head on the frame (None without either)."""
    termination_prob: Tensor | None
    """``(B,)`` float32 in [0, 1]: predicted probability that the frame ends the episode."""


class RolloutEngine(MemoryBookkeeping):
    """Generates and observes frames of B independent worlds with one trained :class:`World`.

    Args:
        world: from :func:`world_model.checkpoint.load` or
            :func:`world_model.world.build_world` (model, diffusion, codec, config).
        sampler: which sampler (DDIM, Heun), its steps and eta, the context noise level.
        compute_dtype: run the network and the VAE decoder under ``torch.autocast`` in this
            dtype (e.g. ``torch.bfloat16`` where the device has it natively); None or the
            weights' dtype: no autocast. The state (cache, memory) stays in the weights' dtype, so
            states are interchangeable. In a lower dtype the engine runs a copy of the network
            whose linear layers are cast once (:mod:`world_model.engine.precision`: the same
            outputs bit for bit); ``world.model`` itself is left as it is, so an engine built
            before the weights change keeps the old ones.
        compile: run the per-frame pass (``RADModel.forward_frame``, every denoising step and
            the clean pass) through ``torch.compile`` (static shapes: the context is always the
            whole ring, its empty slots masked, so one graph per batch size and key mask kind,
            compiled on first use). Where compilation fails (no C++ compiler, an unsupported
            backend) the engine logs why and runs eagerly.
    """

    def __init__(self, world: World, sampler: SamplerConfig | None = None,
                 compute_dtype: torch.dtype | None = None, compile: bool = False) -> None:
        self.world = world
        self._weights_dtype = next(world.model.parameters()).dtype
        self.model = (low_precision_copy(world.model, compute_dtype)
                      if compute_dtype is not None and compute_dtype != self._weights_dtype
                      else world.model)
        self.codec = world.codec
        self.reward_model = world.reward_model
        self.cfg = world.model.cfg
        self.sampler = make_sampler(world.diffusion, sampler or SamplerConfig(),
                                    getattr(world.codec, "value_range", None))
        self.compute_dtype = compute_dtype
        self.window, self.mode = self.cfg.window, self.cfg.mode
        self.slots = max(self.window - 1, 0)
        self.frame_size = world.config.latent.frame_size
        level = (sampler or SamplerConfig()).context_level
        self.context_level = (world.config.diffusion.engine_context_level if level is None
                              else int(level))
        self.reencode = bool((sampler or SamplerConfig()).reencode)
        self.compiled = bool(compile)
        self._prev_is_noised = world.config.diffusion.context == "augmented"
        #: Assemble every frame's context over the whole ring (empty slots masked): one shape for
        #: every frame, so a compiled frame pass has one graph (the same frames to float rounding).
        self.static_context = bool(compile)
        self._frame_pass = (torch.compile(self.model.forward_frame, dynamic=False)
                            if compile else None)

    def _forward_frame(self, *args):
        """``RADModel.forward_frame``, compiled when asked and possible (else eager)."""
        if not self.compiled:
            return self.model.forward_frame(*args)
        try:
            return self._frame_pass(*args)
        except Exception as exc:  # noqa: BLE001 (any compiler failure): say why once, run eagerly
            logger.warning("torch.compile of the frame pass failed (%s: %s); running eagerly",
                           type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self.compiled = False
            return self.model.forward_frame(*args)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' (and the state's) dtype; the passes may compute in ``compute_dtype``."""
        return self._weights_dtype

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.cfg.latent_channels, self.cfg.latent_size, self.cfg.latent_size)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """The context every network call runs in: autocast to ``compute_dtype``, or nothing."""
        if self.compute_dtype is None or self.compute_dtype == self.dtype:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    # -- state -----------------------------------------------------------------------------------
    def init_state(self, batch: int, seeds: int | Sequence[int] | None = None) -> WorldState:
        """``batch`` empty worlds (no frames yet). See :func:`row_generators` for ``seeds``."""
        if batch < 1:
            raise UserError(f"batch must be >= 1, got {batch}")
        cfg, dev, dt = self.cfg, self.device, self.dtype
        kv_shape = (batch, cfg.tokens_per_frame, cfg.heads, self.slots, cfg.head_dim)
        with_memory = self.model.has_memory
        pending = with_memory and self.mode == "frame" and self.slots > 0
        return WorldState(
            keys=[torch.zeros(kv_shape, device=dev, dtype=dt) for _ in range(cfg.depth)],
            values=[torch.zeros(kv_shape, device=dev, dtype=dt) for _ in range(cfg.depth)],
            memory=self.model.init_memory(batch, dev, dt),
            running=(self.model.init_memory(batch, dev, dt)
                     if with_memory and self.mode == "chunk" else None),
            latents=(torch.zeros(batch, self.slots, *self.latent_shape, device=dev)
                     if pending else None),
            actions=(torch.zeros(batch, self.slots, dtype=torch.long, device=dev)
                     if pending else None),
            prev=(torch.zeros(batch, *self.latent_shape, device=dev, dtype=dt)
                  if self.model.uses_prev else None),
            recent=(torch.zeros(batch, self.reward_model.cfg.frames, *self.latent_shape,
                                device=dev) if self.reward_model is not None else None),
            frame_index=torch.zeros(batch, dtype=torch.long),
            generators=row_generators(batch, seeds),
            window=self.window, mode=self.mode)

    @torch.no_grad()
    def start(self, frames: Tensor | np.ndarray, actions: Tensor | np.ndarray,
              seeds: int | Sequence[int] | None = None) -> WorldState:
        """New worlds from real context frames.

        Args:
            frames: ``(B, T, H, W, 3)`` uint8, ``T >= 1``.
            actions: ``(B, T)`` integers, ``actions[:, i]`` led to frame ``i`` (0 for the first).
            seeds: sampling noise per row (see :func:`row_generators`).
        """
        frames = check_frames(frames, "(B, T, H, W, 3)", self.frame_size).to(self.device)
        # B frames at a time: one encoder pass over all B * T frames held all their activations
        # at once (a reset of 32 rows with 12-frame contexts: peak RSS +95 MiB, docs/env.md)
        latents = torch.stack([self.codec.encode(frames[:, i]) for i in range(frames.shape[1])], 1)
        return self.start_latents(latents, actions, seeds)

    @torch.no_grad()
    def start_latents(self, latents: Tensor, actions: Tensor | np.ndarray,
                      seeds: int | Sequence[int] | None = None) -> WorldState:
        """As :meth:`start` from clean latents ``(B, T, C, h, w)``."""
        if latents.dim() != 5 or tuple(latents.shape[2:]) != self.latent_shape:
            raise UserError(f"latents must be (B, T, {', '.join(map(str, self.latent_shape))}), "
                            f"got {tuple(latents.shape)}")
        B, T = latents.shape[:2]
        actions = self._actions(actions, (B, T))
        state = self.init_state(B, seeds)
        for i in range(T):
            self._observe(state, latents[:, i], actions[:, i])
        return state

    # -- one frame -------------------------------------------------------------------------------
    @torch.no_grad()
    def observe(self, state: WorldState, frames: Tensor | np.ndarray,
                actions: Tensor | np.ndarray) -> StepInfo:
        """Append REAL frames ``(B, H, W, 3)`` uint8 reached by ``actions (B,)`` (state in place)."""
        B = state.batch_size
        frames = check_frames(frames, "(B, H, W, 3)", self.frame_size, rows=B)
        actions = self._actions(actions, (B,))
        return self._observe(state, self.codec.encode(frames.to(self.device)), actions)

    @torch.no_grad()
    def observe_latents(self, state: WorldState, latents: Tensor,
                        actions: Tensor | np.ndarray) -> StepInfo:
        """Append clean latents ``(B, C, h, w)`` reached by ``actions (B,)`` (state in place)."""
        B = state.batch_size
        if tuple(latents.shape) != (B, *self.latent_shape):
            raise UserError(f"latents must be ({B}, {', '.join(map(str, self.latent_shape))}), "
                            f"got {tuple(latents.shape)}")
        return self._observe(state, latents, self._actions(actions, (B,)))

    def _observe(self, state: WorldState, latents: Tensor, actions: Tensor) -> StepInfo:
        return self._append(state, latents.to(self.device, torch.float32), actions,
                            self.plan(state))

    @torch.no_grad()
    def step(self, state: WorldState, actions: Tensor | np.ndarray) -> tuple[Tensor, StepInfo]:
        """Generate one frame per row for ``actions (B,)`` (state in place).

        Returns:
            ``frames (B, H, W, 3) uint8`` (decoded) and the :class:`StepInfo`.
        """
        if not self.reencode:
            info = self.step_latents(state, actions)
            return self.decode(info.latent), info
        x, actions, plan = self._sample(state, actions)
        frames = self.decode(x)  # the observation; its latent is what the context keeps
        return frames, self._append(state, self.codec.encode(frames).float(), actions, plan)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Frames ``(..., H, W, 3)`` uint8 of latents ``(..., C, h, w)``: the codec's decoder under
        the compute dtype (bf16 decoding moves a pixel by at most one level: docs/rollout.md)."""
        with self._autocast():
            return self.codec.decode(latents)

    @torch.no_grad()
    def step_latents(self, state: WorldState, actions: Tensor | np.ndarray) -> StepInfo:
        """As :meth:`step` without decoding: the sampler's denoising passes over the cached
        context, one clean pass, one write. What the passes share (context, memory read, previous
        frame: :meth:`plan`) is computed once for the frame. With ``SamplerConfig.reencode`` the
        frame's latent is that of its decoded picture (``encode(decode(x))``)."""
        x, actions, plan = self._sample(state, actions)
        if self.reencode:
            x = self.codec.encode(self.decode(x)).float()
        return self._append(state, x, actions, plan)

    def _sample(self, state: WorldState, actions) -> tuple[Tensor, Tensor, FramePlan]:
        """The sampler's output ``(B, C, h, w)`` for the rows' next frame under ``actions``
        (checked here), with the checked actions and the frame's plan; of the state only the rows'
        noise generators advance."""
        actions = self._actions(actions, (state.batch_size,))
        plan = self.plan(state)

        def denoise(x: Tensor, level: int) -> Tensor:
            return self.predict(state, x, level, actions, plan).prediction[:, 0]

        def noise() -> Tensor:
            return randn_rows(state.generators, self.latent_shape, self.device)

        return self.sampler.sample(denoise, noise(), noise), actions, plan

    @torch.no_grad()
    def predict(self, state: WorldState, x: Tensor, level: int | Tensor, actions: Tensor,
                plan: FramePlan | None = None) -> ModelOutput:
        """The denoiser on the next frame of every row: ``x (B, C, h, w)`` at ``level`` (int or
        ``(B,)``), reached by ``actions (B,)``, against the cached context and the memory state
        the frame reads (``plan``: :meth:`plan` of ``state``, computed here when not given).
        Returns the network output with T = 1."""
        plan = self.plan(state) if plan is None else plan
        levels = torch.as_tensor(level, device=self.device).long().expand(state.batch_size)
        with self._autocast():
            out, _ = self._forward_frame(x.to(self.dtype), levels, actions, plan)
        return out

    @torch.no_grad()
    def plan(self, state: WorldState) -> FramePlan:
        """What every network pass over the rows' next frame shares (``RADModel.plan_frame``):
        the cached context (:meth:`context`), the memory read, the previous frame."""
        past, key_mask = self.context(state)
        with self._autocast():
            return self.model.plan_frame(past, state.memory if self.model.has_memory else None,
                                         key_mask, self.previous(state))

    def previous(self, state: WorldState) -> Tensor | None:
        """``(B, C, h, w)``: every row's previous context frame as the next frame's tokens see it
        (zeros for rows whose window holds none), or None when the model does not stack it."""
        if state.prev is None:
            return None
        ok = has_previous(state.frame_index, self.window, self.mode).to(state.device)
        return state.prev * ok.view(-1, 1, 1, 1).to(state.prev.dtype)

    def context(self, state: WorldState) -> Context:
        """The cached context of every row's next frame, assembled from the ring.

        Returns ``(past, key_mask)``: per layer ``(k, v)`` each ``(B, N, heads, P, hd)``, oldest
        first, keys rotated once for the whole frame (``RADModel.rotate_past``), where ``P`` is the
        longest context among the rows (the whole ring, ``window - 1``, when the frame pass is
        compiled: one shape for every frame); rows with fewer context frames are left-padded and
        ``key_mask (B, P)`` bool marks their real frames (None when every row has ``P``).
        ``(None, None)`` when no row has context.
        """
        t = state.frame_index
        start = window_start(t, self.window, self.mode)
        P = int((t - start).max())
        if self.static_context and self.slots > 0:
            P = self.slots  # one shape for every frame: one compiled graph (the rest masked)
        if P == 0:
            return None, None
        frames = t[:, None] - P + torch.arange(P)  # (B, P) frame index of each view entry
        valid = frames >= start[:, None]
        slot = self._slot(frames.clamp(min=0)).clamp(max=self.slots - 1)
        if bool((t == t[0]).all()):  # every row alike: one index for all
            idx = slot[0].to(state.device)
            past = [(k.index_select(3, idx), v.index_select(3, idx))
                    for k, v in zip(state.keys, state.values)]
        else:
            k0 = state.keys[0]
            idx = slot.to(state.device)[:, None, None, :, None].expand(
                -1, k0.shape[1], k0.shape[2], -1, k0.shape[4])  # (B, N, heads, P, hd)
            past = [(k.gather(3, idx), v.gather(3, idx)) for k, v in zip(state.keys, state.values)]
        mask = None if bool(valid.all()) else valid.to(state.device)
        return self.model.rotate_past(past), mask

    def _slot(self, frame: Tensor) -> Tensor:
        return frame % (self.slots if self.mode == "frame" else self.window)

    def _append(self, state: WorldState, latent: Tensor, actions: Tensor,
                plan: FramePlan) -> StepInfo:
        """Make the clean ``latent (B, C, h, w)`` the rows' next frame: one level-0 pass (over
        the frame's ``plan``) for its keys/values and heads, then the memory bookkeeping, then
        the ring write."""
        B = state.batch_size
        reward = term = None
        if state.recent is not None:  # read before the frame joins the context
            reward = torch.sigmoid(self.reward_model.logit(state.recent, actions).float())
            state.recent = torch.cat([state.recent[:, 1:], latent[:, None].float()], 1)
        levels = torch.full((B,), self.context_level, dtype=torch.long, device=self.device)
        seen = latent  # the frame as its context pass sees it: clean, or noised to context_level
        if self.context_level > 0:
            noise = randn_rows(state.generators, self.latent_shape, self.device)
            seen = self.world.diffusion.add_noise(latent[:, None], levels[:, None], noise[:, None])[:, 0]
        with self._autocast():
            out, kv = self._forward_frame(seen.to(self.dtype), levels, actions, plan)
        if state.prev is not None:  # the stacked previous frame as training saw it: the noised
            # context stream's for 'augmented' context, the clean frame otherwise
            state.prev = (seen if self._prev_is_noised else latent).to(state.prev.dtype)
        t = state.frame_index
        if self.model.has_memory:
            self._bookkeep_memory(state, latent, actions, t)
        # Store the frame's keys/values (and latent) in its slot, where a later frame will read it.
        if self.slots > 0:
            keep = torch.ones(B, dtype=torch.bool) if self.mode == "frame" else t % self.window < self.slots
            rows = keep.nonzero().flatten()
            if len(rows):
                slots = self._slot(t[rows]).to(state.device)
                rows_d = rows.to(state.device)
                for layer, (k, v) in enumerate(kv):
                    keys, values = state.keys[layer], state.values[layer]
                    keys[rows_d, :, :, slots] = k[rows_d, :, :, 0].to(keys.dtype)
                    values[rows_d, :, :, slots] = v[rows_d, :, :, 0].to(values.dtype)
                if state.latents is not None:
                    state.latents[rows_d, slots] = latent[rows_d].float()
                    state.actions[rows_d, slots] = actions[rows_d]
        state.frame_index += 1
        if out.reward is not None:
            reward = out.reward[:, 0].float() if reward is None else reward
            term = torch.sigmoid(out.termination_logit[:, 0].float())
        return StepInfo(latent.float(), reward, term)

    # -- input checks ----------------------------------------------------------------------------
    def _actions(self, actions, shape: tuple[int, ...]) -> Tensor:
        """``actions`` checked (:func:`check_actions`) as int64 on the engine's device."""
        return check_actions(actions, shape, self.cfg.num_actions).to(self.device, torch.long)
