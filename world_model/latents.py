"""Frame latents: pixels scaled to [-1, 1], or a per-frame VAE (the project's small convolutional
:class:`~world_model.autoencoder.RADAutoencoder`, or a diffusers ``AutoencoderKL``).

A codec maps ``frames (B, T, H, W, 3) uint8`` to ``latents (B, T, C, h, w) float32`` and back, one
frame at a time (no temporal compression, paper App. A.4). Nothing is downloaded: a VAE is loaded
from a local directory (``config.json`` + ``diffusion_pytorch_model.safetensors``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from world_model.errors import CheckpointError

logger = logging.getLogger(__name__)


def frames_to_float(frames: Tensor) -> Tensor:
    """``(..., H, W, 3) uint8`` -> ``(..., 3, H, W)`` float32 in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


def float_to_frames(x: Tensor) -> Tensor:
    """``(..., 3, H, W)`` float in [-1, 1] -> ``(..., H, W, 3) uint8``."""
    return x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1)


class PixelCodec(nn.Module):
    """Pixel space: the latent is the frame itself in [-1, 1] (C=3, h=w=64)."""

    channels = 3
    downsample = 1
    value_range = (-1.0, 1.0)
    """Every latent a real frame can have lies in this range (the sampler clips to it)."""

    def encode(self, frames: Tensor) -> Tensor:
        return frames_to_float(frames)

    def decode(self, latents: Tensor) -> Tensor:
        return float_to_frames(latents)


class VAECodec(nn.Module):
    """A VAE (``RADAutoencoder`` or diffusers ``AutoencoderKL``) applied per frame; latents are
    scaled by its ``scaling_factor`` so they have about unit variance.

    ``value_range``: per-channel ``(low, high)`` tensors ``(C, 1, 1)`` of real latents when the
    VAE directory has a ``latent_range.json`` (:mod:`world_model.latent_range`), else None."""

    def __init__(self, vae, value_range: tuple[list[float], list[float]] | None = None) -> None:
        super().__init__()
        # channels-last convolutions: 1.5-1.7x faster decoding on CPU (docs/env.md); the same
        # frames to float rounding (tests/test_latent_cache.py)
        self.vae = vae.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.channels = vae.config.latent_channels
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling = float(vae.config.scaling_factor)
        self.has_range = value_range is not None
        low, high = value_range if value_range is not None else ([0.0], [0.0])
        # not saved with any weights: the range lives in the VAE directory's latent_range.json
        self.register_buffer("range_low", torch.tensor(low).view(-1, 1, 1), persistent=False)
        self.register_buffer("range_high", torch.tensor(high).view(-1, 1, 1), persistent=False)

    @property
    def value_range(self) -> tuple[Tensor, Tensor] | None:
        return (self.range_low, self.range_high) if self.has_range else None

    @classmethod
    def from_dir(cls, path: str | Path) -> VAECodec:
        from world_model import latent_range

        vae = load_vae(path)
        return cls(vae, latent_range.read(path, vae.config.latent_channels))

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        lead = frames.shape[:-3]
        x = frames_to_float(frames.reshape(-1, *frames.shape[-3:]))
        z = self.vae.encode(x.contiguous(memory_format=torch.channels_last)).latent_dist.mode()
        z = z.contiguous() * self.scaling
        return z.reshape(*lead, *z.shape[1:])

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        lead = latents.shape[:-3]
        z = latents.reshape(-1, *latents.shape[-3:]) / self.scaling
        z = z.to(next(self.vae.parameters()).dtype).contiguous(memory_format=torch.channels_last)
        x = self.vae.decode(z).sample
        return float_to_frames(x).reshape(*lead, *x.shape[-2:], 3)


def load_vae(path: str | Path):
    """Load a local VAE directory: the project's :class:`~world_model.autoencoder.RADAutoencoder`
    or a diffusers ``AutoencoderKL``, with a clear error when it is neither."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a VAE directory (no config.json)")
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(f"{path}: no *.safetensors weights (only safetensors are loaded)")
    from world_model.autoencoder import RADAutoencoder, is_rad_autoencoder

    if is_rad_autoencoder(path):
        return RADAutoencoder.from_pretrained(path)
    from diffusers import AutoencoderKL

    try:
        return AutoencoderKL.from_pretrained(str(path), use_safetensors=True, local_files_only=True)
    except Exception as exc:  # diffusers raises a variety of errors for a bad directory
        raise CheckpointError(f"{path}: could not load the AutoencoderKL ({exc})") from exc


def make_codec(kind: str, vae_path: str | Path | None = None) -> nn.Module:
    """``'pixels'`` or ``'vae'`` (with a local AutoencoderKL directory)."""
    if kind == "pixels":
        return PixelCodec()
    if kind == "vae":
        if vae_path is None:
            raise CheckpointError("latent kind 'vae' needs a vae_path")
        return VAECodec.from_dir(vae_path)
    raise CheckpointError(f"unknown latent kind {kind!r}")


def latent_mismatch(codec: nn.Module, latent_channels: int, latent_size: int,
                    frame_size: int) -> str | None:
    """Why ``codec``'s latents of a ``frame_size`` frame do not fit a model expecting
    ``latent_channels x latent_size`` ones, or None when they do."""
    size = frame_size // codec.downsample
    if (codec.channels, size) == (latent_channels, latent_size):
        return None
    return (f"the codec gives {codec.channels}x{size}x{size} latents but the model expects "
            f"{latent_channels}x{latent_size}x{latent_size} (model.latent_channels/latent_size)")
