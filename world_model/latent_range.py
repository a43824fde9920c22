"""The range of a VAE's latents over real frames, per channel: what the sampler clips to.

A pixel world's sampler clamps every predicted clean frame to [-1, 1], the range every real frame
has. A VAE has no such range by construction, so it is measured: ``rad latent-range --vae DIR
--data DATA`` encodes real episodes (through the latent cache) and writes the per-channel
quantiles ``q`` and ``1 - q`` of their latents into ``DIR/latent_range.json``. A codec loaded from
a directory with that file has a ``value_range`` and the sampler (``SamplerConfig.clip``) clamps
to it; without it nothing is clipped, as before. A world's ``vae/`` is a copy of its VAE
directory, so the file travels with the world.

Why: an imagined latent that leaves the range of real ones decodes to a mosaic, and the next
frame is predicted from it (docs/training.md, "Clipping to the real latents' range").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from world_model.errors import CheckpointError
from world_model.io import atomic_write_text

RANGE_FILE = "latent_range.json"


def measure(latents: list[np.ndarray], quantile: float = 0.01, max_values: int = 4_000_000,
            seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel ``quantile`` and ``1 - quantile`` of latents ``[(T, C, h, w), ...]``, from a
    seeded subsample of at most ``max_values`` values per channel (exact below that)."""
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
    if not latents:
        raise ValueError("no latents to measure")
    channels = latents[0].shape[1]
    flat = np.concatenate([np.asarray(z, np.float32).transpose(1, 0, 2, 3).reshape(channels, -1)
                           for z in latents], axis=1)
    if flat.shape[1] > max_values:
        keep = np.random.default_rng(seed).choice(flat.shape[1], max_values, replace=False)
        flat = flat[:, keep]
    low, high = np.quantile(flat, [quantile, 1.0 - quantile], axis=1)
    return low.tolist(), high.tolist()


def write(vae_dir: str | os.PathLike, low: list[float], high: list[float], **meta) -> Path:
    """Write ``vae_dir/latent_range.json`` atomically (``meta``: how it was measured)."""
    if len(low) != len(high) or any(lo >= hi for lo, hi in zip(low, high)):
        raise ValueError(f"bad latent range: low {low}, high {high}")
    text = json.dumps({"low": [float(v) for v in low], "high": [float(v) for v in high], **meta},
                      indent=2)
    return atomic_write_text(Path(vae_dir) / RANGE_FILE, text + "\n")


def read(vae_dir: str | os.PathLike, channels: int) -> tuple[list[float], list[float]] | None:
    """The per-channel ``(low, high)`` in ``vae_dir/latent_range.json``, or None without it.

    Raises:
        CheckpointError: a corrupt file or one for another number of channels (named).
    """
    path = Path(vae_dir) / RANGE_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
        low, high = [float(v) for v in spec["low"]], [float(v) for v in spec["high"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a latent range file ({exc}); write it again with "
                              f"`rad latent-range --vae {vae_dir} --data DATA`") from exc
    if len(low) != channels or len(high) != channels or any(lo >= hi for lo, hi in zip(low, high)):
        raise CheckpointError(f"{path}: expected {channels} increasing (low, high) pairs, got "
                              f"low {low}, high {high}")
    return low, high
