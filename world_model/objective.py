"""The training objective of a RAD world model: diffusion forcing with hidden-state pre-fetch.

One call on a batch of real frames:
1. encode frames to latents (no gradient through the codec);
2. pre-fetch: the window-1 pass over the *clean* latents writes every memory state, layer by layer;
3. draw an independent noise level per frame and noise the latents;
4. one parallel windowed pass reads the pre-fetched states and predicts every frame;
5. diffusion loss (+ reward and termination heads on the real rewards).

Returns ``(loss, logs)`` so one generic trainer serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_model.diffusion import Diffusion
from world_model.model import MemoryState, ModelOutput, RADModel


@dataclass
class Batch:
    """A training batch (see ``world_model.data.dataset``)."""

    frames: Tensor
    """``(B, T, H, W, 3) uint8``"""
    actions: Tensor
    """``(B, T) int64``: ``actions[:, i]`` led to frame ``i``."""
    rewards: Tensor
    """``(B, T) float32``: reward received on the step into frame ``i``."""
    terminals: Tensor | None = None
    """``(B, T) bool`` or None (Memory Maze episodes never terminate)."""

    @classmethod
    def from_dict(cls, d: dict[str, Tensor], device=None) -> Batch:
        get = (lambda k: d[k].to(device, non_blocking=True) if k in d else None)
        return cls(get("frames"), get("actions"), get("rewards"), get("terminals"))


class WorldModelObjective(nn.Module):
    """Wraps the network, the diffusion and the codec; ``forward(batch) -> (loss, logs)``."""

    def __init__(self, model: RADModel, diffusion: Diffusion, codec: nn.Module,
                 detach_every: int = 0) -> None:
        super().__init__()
        self.model = model
        self.diffusion = diffusion
        self.codec = codec
        self.detach_every = detach_every

    def denoise_pass(self, latents: Tensor, actions: Tensor, levels: Tensor, noise: Tensor,
                     ) -> tuple[ModelOutput, MemoryState, Tensor]:
        """Pre-fetch from clean ``latents``, then the windowed pass on the noised ones.

        Returns ``(output, reads, x_noisy)``. The memory reads depend on the clean latents and
        actions only, never on ``noise`` or ``levels``.
        """
        reads, _ = self.model.prefetch(latents, actions, detach_every=self.detach_every)
        x_noisy = self.diffusion.add_noise(latents, levels, noise)
        return self.model(x_noisy, levels, actions, reads), reads, x_noisy

    def forward(self, batch: Batch, generator: torch.Generator | None = None,
                ) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            latents = self.codec.encode(batch.frames)
        B, T = latents.shape[:2]
        levels = self.diffusion.sample_levels((B, T), generator, latents.device)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        out, _, _ = self.denoise_pass(latents, batch.actions, levels, noise)
        target = self.diffusion.target(latents, noise, levels)
        diff_loss = self.diffusion.loss(out.prediction, target, levels)
        loss = diff_loss
        logs = {"loss/diffusion": diff_loss.detach()}
        if out.reward is not None:
            r_loss = F.mse_loss(out.reward.float(), batch.rewards.float())
            term = (batch.terminals.float() if batch.terminals is not None
                    else torch.zeros_like(out.termination_logit))
            t_loss = F.binary_cross_entropy_with_logits(out.termination_logit.float(), term)
            cfg = self.diffusion.cfg
            loss = loss + cfg.reward_loss_weight * r_loss + cfg.termination_loss_weight * t_loss
            logs["loss/reward"] = r_loss.detach()
            logs["loss/termination"] = t_loss.detach()
        logs["loss/total"] = loss.detach()
        return loss, logs
