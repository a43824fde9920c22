"""The training objective of a RAD world model: diffusion forcing with hidden-state pre-fetch.

One call on a batch of real frames:
1. encode frames to latents (no gradient through the codec), unless the batch brings them from
   the latent cache;
2. pre-fetch: the window-1 pass over the *clean* latents writes every memory state, layer by layer;
3. draw a noise level per frame (``DiffusionConfig.level_sampling``) and noise the latents;
4. one parallel windowed pass reads the pre-fetched states and predicts every frame, against the
   context ``DiffusionConfig.context`` asks for: the noisy frames themselves ('independent',
   diffusion forcing), or a clean ('clean') or lightly noised ('augmented') context stream;
5. diffusion loss (in ``DiffusionConfig.loss_space``) + reward and termination heads on the real
   rewards (read from the context stream where there is one, as the engine reads them), weighted
   by ``TrainConfig.reward_loss_weight`` and ``termination_loss_weight``.

Returns ``(loss, logs)`` so one generic trainer serves it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_model.diffusion.schedule import Diffusion
from world_model.network.memory import MemoryState, map_memory
from world_model.network.model import ModelOutput, RADModel
from world_model.network.windows import previous_frames


@dataclass
class Batch:
    """A training batch (see ``world_model.data.dataset``)."""

    frames: Tensor | None
    """``(B, T, H, W, 3) uint8``, or None when ``latents`` come from the latent cache."""
    actions: Tensor
    """``(B, T) int64``: ``actions[:, i]`` led to frame ``i``."""
    rewards: Tensor
    """``(B, T) float32``: reward received on the step into frame ``i``."""
    terminals: Tensor | None = None
    """``(B, T) bool`` or None (Memory Maze episodes never terminate)."""
    latents: Tensor | None = None
    """``(B, T, C, h, w) float32``: the frames' latents already encoded
    (:mod:`world_model.training.latent_cache`); the codec is then not run."""
    chunk: Tensor | None = None
    """``(B,) int64``, the same in every row: which chunk of each row's stretch of frames this is
    (``TrainConfig.carry_chunks`` > 1; chunk 0 starts the memory from zeros, chunk k > 0 from
    the state after chunk k - 1), or None: independent samples."""

    @classmethod
    def from_dict(cls, d: dict[str, Tensor], device=None) -> Batch:
        get = (lambda k: d[k].to(device, non_blocking=True) if k in d else None)
        return cls(get("frames"), get("actions"), get("rewards"), get("terminals"),
                   get("latents"), d.get("chunk"))

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, T)``."""
        return tuple(self.actions.shape)


class WorldModelObjective(nn.Module):
    """Wraps the network, the diffusion and the codec; ``forward(batch) -> (loss, logs)``.

    Args:
        model, diffusion, codec: the world's parts.
        detach_every, precision: ``TrainConfig.detach_every`` and ``TrainConfig.precision``.
        reward_weight, termination_weight: the weights of the heads' losses
            (``TrainConfig.reward_loss_weight``, ``termination_loss_weight``).
        compile: run :meth:`denoise_pass` (the network's part of a step) through
            ``torch.compile`` in :meth:`forward` (``rad train --compile``).
    """

    def __init__(self, model: RADModel, diffusion: Diffusion, codec: nn.Module,
                 detach_every: int = 0, precision: str = "float32", reward_weight: float = 0.1,
                 termination_weight: float = 0.01, compile: bool = False) -> None:
        super().__init__()
        self.model = model
        self.diffusion = diffusion
        self.codec = codec
        self.detach_every = detach_every
        self.precision = precision
        self.reward_weight = reward_weight
        self.termination_weight = termination_weight
        self._compiled_pass = torch.compile(self.denoise_pass) if compile else None
        self.carry: MemoryState | None = None
        """The memory state after the last batch's frames (``TrainConfig.carry_chunks`` > 1:
        batches that carry a ``chunk`` index), where the next chunk's pre-fetch starts."""

    def denoise_pass(self, latents: Tensor, actions: Tensor, levels: Tensor, noise: Tensor,
                     generator: torch.Generator | None = None, memory: MemoryState | None = None,
                     ) -> tuple[ModelOutput, MemoryState, Tensor, ModelOutput, MemoryState]:
        """Pre-fetch from clean ``latents (B, T, C, h, w)`` (starting from ``memory``, per layer
        ``(B, N, *f)``; None: zeros), then the windowed pass on the noised ones against the
        configured context.

        Returns ``(output, reads, x_noisy, heads, final)``: the noisy frames' output, the memory
        reads, the noisy input, the output whose reward/termination heads are trained (the
        context stream's, or ``output`` itself for 'independent'), and the memory state after
        all T frames. The memory reads depend on the clean latents and actions only (with
        ``history_noise_max`` > 0: on their noised copy, :meth:`noised_history`), never on
        ``noise`` or ``levels``.
        """
        model, cfg = self.model, self.diffusion.cfg
        history = self.noised_history(latents, generator)
        reads, final = model.prefetch(history, actions, memory, detach_every=self.detach_every)
        x_noisy = self.diffusion.add_noise(latents, levels, noise)
        W, mode = model.cfg.window, model.cfg.mode
        if cfg.context == "independent":
            prev = previous_frames(history, W, mode) if model.uses_prev else None
            out = model(x_noisy, levels, actions, reads, prev)
            return out, reads, x_noisy, out, final
        if cfg.context == "augmented":
            B, T = levels.shape
            ctx_levels = torch.randint(0, cfg.context_level_max + 1, (B, T), generator=generator,
                                       device=latents.device)
            ctx_noise = torch.randn(latents.shape, generator=generator, device=latents.device)
            context = self.diffusion.add_noise(latents, ctx_levels, ctx_noise)
        else:
            ctx_levels, context = torch.zeros_like(levels), latents
        prev = previous_frames(context, W, mode) if model.uses_prev else None
        out, heads = model.forward_context(x_noisy, levels, context, ctx_levels, actions, reads, prev)
        return out, reads, x_noisy, heads, final

    def noised_history(self, latents: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """What the memory and the stacked previous frame read in training: ``latents (B, T, C, h,
        w)`` themselves, or each frame noised to a random level in ``0..history_noise_max``
        (``DiffusionConfig.history_noise_max``), drawn from ``generator`` apart from ``noise``."""
        top = self.diffusion.cfg.history_noise_max
        if top == 0:
            return latents
        B, T = latents.shape[:2]
        lv = torch.randint(0, top + 1, (B, T), generator=generator, device=latents.device)
        eps = torch.randn(latents.shape, generator=generator, device=latents.device)
        return self.diffusion.add_noise(latents, lv, eps)

    def forward(self, batch: Batch, generator: torch.Generator | None = None,
                ) -> tuple[Tensor, dict[str, Tensor]]:
        latents = batch.latents
        if latents is None:
            with torch.no_grad():
                latents = self.codec.encode(batch.frames)
        B, T = latents.shape[:2]
        cfg = self.diffusion.cfg
        clean_prob = cfg.clean_prob if cfg.context == "independent" else 0.0
        levels = self.diffusion.sample_levels((B, T), generator, latents.device, clean_prob)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        denoise_pass = self.denoise_pass if self._compiled_pass is None else self._compiled_pass
        start = None  # the memory this sample starts from: zeros, or the previous chunk's
        if batch.chunk is not None and self.carry is not None and int(batch.chunk[0]) > 0:
            start = self.carry
        with self.autocast():
            out, _, _, heads, final = denoise_pass(latents, batch.actions, levels, noise,
                                                   generator, start)
        if batch.chunk is not None:  # truncated BPTT: the next chunk starts here, no gradient
            self.carry = map_memory(final, lambda s: s.detach().float())
        diff_loss = self.diffusion.loss(out.prediction, latents, noise, levels)
        loss = diff_loss
        logs = {"loss/diffusion": diff_loss.detach()}
        if heads.reward is not None:
            r_loss = F.mse_loss(heads.reward.float(), batch.rewards.float())
            term = (batch.terminals.float() if batch.terminals is not None
                    else torch.zeros_like(heads.termination_logit, dtype=torch.float32))
            t_loss = F.binary_cross_entropy_with_logits(heads.termination_logit.float(), term)
            loss = loss + self.reward_weight * r_loss + self.termination_weight * t_loss
            logs["loss/reward"] = r_loss.detach()
            logs["loss/termination"] = t_loss.detach()
        logs["loss/total"] = loss.detach()
        return loss, logs

    def autocast(self):
        """The forward pass's compute dtype (``precision``): autocast to bfloat16, or nothing."""
        if self.precision == "bfloat16":
            return torch.autocast(self.device_type(), dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def device_type(self) -> str:
        return next(self.model.parameters()).device.type
