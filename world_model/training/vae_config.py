"""Options of ``rad train-vae`` (:func:`world_model.training.vae.train_vae`), torch-free so that the
command line is built from them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from world_model.errors import UserError, require


@dataclass(frozen=True)
class VAETrainConfig:
    """Options of :func:`train_vae`."""

    steps: int = 2000
    """Total optimizer steps (a resumed run continues up to this count)."""
    batch_size: int = 16
    """Frames per step."""
    lr: float = 5e-4
    """AdamW learning rate, reached after a linear warm-up and then held constant."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warm-up from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    arch: Literal["conv", "diffusers"] = "conv"
    """'conv': the project's small convolutional VAE (:mod:`world_model.autoencoder`, about 15x
    cheaper per frame than diffusers' at the same widths, sized for a CPU simulator);
    'diffusers': a diffusers ``AutoencoderKL``."""
    latent_channels: int = 4
    """Channels C of a frame's latent."""
    channels: tuple[int, ...] = (32, 64, 128)
    """Widths per resolution, full resolution first (``block_out_channels``); n widths
    downsample by ``2**(n-1)``."""
    layers_per_block: int = 1
    """'diffusers': ResNet layers per encoder stage (the decoder uses one more); 'conv': residual
    blocks at the lowest resolution, in the encoder and the decoder."""
    mid_block_attention: bool = True
    """'diffusers': self-attention in the bottleneck block of encoder and decoder."""
    kl_weight: float = 1e-6
    """Weight of the KL term (summed over latent elements, averaged over frames)."""
    recon_loss: Literal["l1", "mse", "l1_ssim"] = "l1"
    """Pixel reconstruction loss on frames scaled to [-1, 1], averaged over pixels;
    ``'l1_ssim'`` adds ``ssim_weight * (1 - SSIM)`` (structure: edges and the thin target-colour
    border that L1 alone blurs)."""
    ssim_weight: float = 0.2
    """Weight of the ``1 - SSIM`` term of ``recon_loss='l1_ssim'``."""
    device: str = "auto"
    """``'auto'`` (CUDA when present, else CPU), or any torch device string."""
    resume: bool = False
    """Continue from ``OUT/train_state.pt``; without it an existing non-empty OUT is an error."""
    wandb: Literal["offline", "online", "disabled"] = "offline"
    """wandb mode for metrics."""
    val_every: int = 250
    """Measure validation PSNR every this many steps (and always at the end); 0: only at the end."""
    checkpoint_every: int = 250
    """Write ``train_state.pt`` every this many steps (and at the end); 0: only at the end."""
    val_fraction: float = 0.05
    """Fraction of episode files held out for validation (at least one; the split is by file name,
    as in the world model's trainer, so the same fraction holds out the same files)."""
    val_frames: int = 256
    """Random frames of the held-out files, the same at every validation."""
    scale_frames: int = 512
    """Training frames encoded to fit the latent ``scaling_factor``."""
    max_episodes: int = 64
    """Training episode files read whole into memory, the first by name (12 MB each at 64x64);
    frames are drawn from them."""
    seed: int = 0
    """Seeds frame sampling, weight initialisation and posterior samples (the split is by name)."""

    def __post_init__(self) -> None:
        need = require
        object.__setattr__(self, "channels", tuple(self.channels))
        need(len(self.channels) >= 1 and all(isinstance(c, int) and c > 0 for c in self.channels),
             f"channels must be positive integers, got {self.channels}")
        need(self.latent_channels > 0, f"latent_channels must be > 0, got {self.latent_channels}")
        need(self.layers_per_block > 0,
             f"layers_per_block must be > 0, got {self.layers_per_block}")
        need(self.steps >= 0, f"steps must be >= 0, got {self.steps}")
        need(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.kl_weight >= 0, f"kl_weight must be >= 0, got {self.kl_weight}")
        need(self.recon_loss in ("l1", "mse", "l1_ssim"),
             f"recon_loss must be 'l1', 'mse' or 'l1_ssim', got {self.recon_loss!r}")
        need(self.ssim_weight >= 0, f"ssim_weight must be >= 0, got {self.ssim_weight}")
        need(self.wandb in ("offline", "online", "disabled"),
             f"wandb must be offline, online or disabled, got {self.wandb!r}")
        need(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        need(self.arch in ("conv", "diffusers"), f"arch must be conv or diffusers, got {self.arch!r}")
        need(self.max_episodes > 0, f"max_episodes must be > 0, got {self.max_episodes}")
        for name in ("val_every", "checkpoint_every", "warmup_steps"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0")
        for name in ("val_frames", "scale_frames"):
            need(getattr(self, name) > 0, f"{name} must be > 0")

    @property
    def norm_num_groups(self) -> int:
        """GroupNorm groups: the largest count <= 32 that divides every stage's channels."""
        return max(g for g in range(1, 33) if all(c % g == 0 for c in self.channels))

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


def parse_channels(text: str) -> tuple[int, ...]:
    """``"32,64,128"`` -> ``(32, 64, 128)``, with a :class:`UserError` for anything else."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--channels must be comma-separated integers like 32,64,128, "
                        f"got {text!r}") from None
    if not channels or any(c <= 0 for c in channels):
        raise UserError(f"--channels must be positive integers, got {text!r}") from None
    return channels
