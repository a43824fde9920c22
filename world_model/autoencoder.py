"""The project's own per-frame VAE: a small convolutional autoencoder sized for a CPU simulator.

A diffusers ``AutoencoderKL`` of widths 32,64,128 costs about 2.5 GFLOP to encode and decode one
64x64 frame (measured here: 5 frames/s of training per CPU core), and its decoder alone would cost
more than the world's denoiser on every imagined frame. This one is a plain stack: a 3x3 stem,
one stride-2 4x4 convolution per halving, residual blocks at the lowest resolution, a diagonal
Gaussian posterior (KL-regularised latents, as a VAE), and the mirror image with transposed
convolutions: about 75 MFLOP to encode and 95 MFLOP to decode with widths 16,32,64 (f4).

It offers the slice of the diffusers ``AutoencoderKL`` interface the project uses
(``encode(x).latent_dist`` with ``mode``/``sample``/``kl``, ``decode(z).sample``, ``config`` with
``latent_channels``, ``block_out_channels`` and ``scaling_factor``, ``register_to_config``,
``save_pretrained``), so ``rad train-vae``, :class:`world_model.latents.VAECodec` and the world
checkpoints treat both alike; :func:`world_model.latents.load_vae` tells them apart by the
``"_class_name"`` of ``config.json`` (``"RADAutoencoder"`` here). Weights are safetensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from world_model.errors import CheckpointError, require

CLASS_NAME = "RADAutoencoder"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


@dataclass
class AutoencoderConfig:
    """Shape of a :class:`RADAutoencoder` (what its ``config.json`` holds)."""

    latent_channels: int = 8
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    """Width at each resolution, full resolution first; n widths downsample by ``2**(n-1)``."""
    res_blocks: int = 1
    """Residual blocks at the lowest resolution, in the encoder and in the decoder."""
    sample_size: int = 64
    """Side of the square frames."""
    scaling_factor: float = 1.0
    """Latents are multiplied by this (fitted after training: 1 / their std)."""

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        need = lambda ok, msg: require(ok, msg, "invalid autoencoder config")
        need(self.latent_channels > 0, "latent_channels must be > 0")
        need(len(self.block_out_channels) >= 1 and min(self.block_out_channels) > 0,
             "block_out_channels must be positive widths")
        need(self.res_blocks >= 0, "res_blocks must be >= 0")


class _Posterior:
    """Diagonal Gaussian over latents ``(B, C, h, w)`` (the diffusers ``latent_dist`` API)."""

    def __init__(self, moments: Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def mode(self) -> Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                            dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> Tensor:
        """``(B,)`` KL divergence to the unit Gaussian, summed over latent elements."""
        return 0.5 * (self.mean ** 2 + self.std ** 2 - 1.0 - self.logvar).sum(dim=(1, 2, 3))


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(width, width, 3, 1, 1),
                                  nn.SiLU(), nn.Conv2d(width, width, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RADAutoencoder(nn.Module):
    """``encode(x (B, 3, S, S) in [-1, 1]).latent_dist`` and ``decode(z (B, C, S/f, S/f)).sample``."""

    def __init__(self, cfg: AutoencoderConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = cfg or AutoencoderConfig(**kwargs)
        self._cfg = cfg
        w = cfg.block_out_channels
        enc: list[nn.Module] = [nn.Conv2d(3, w[0], 3, 1, 1)]
        for a, b in pairwise(w):
            enc += [nn.SiLU(), nn.Conv2d(a, b, 4, 2, 1)]
        enc += [_Residual(w[-1]) for _ in range(cfg.res_blocks)]
        enc += [nn.SiLU(), nn.Conv2d(w[-1], 2 * cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, w[-1], 3, 1, 1)]
        dec += [_Residual(w[-1]) for _ in range(cfg.res_blocks)]
        for a, b in pairwise(w[::-1]):
            dec += [nn.SiLU(), nn.ConvTranspose2d(a, b, 4, 2, 1)]
        dec += [nn.SiLU(), nn.Conv2d(w[0], 3, 3, 1, 1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def config(self) -> SimpleNamespace:
        """The config as attributes (``latent_channels``, ``block_out_channels``, ...)."""
        return SimpleNamespace(**asdict(self._cfg))

    def register_to_config(self, **values) -> None:
        for k, v in values.items():
            setattr(self._cfg, k, v)

    def encode(self, x: Tensor) -> SimpleNamespace:
        return SimpleNamespace(latent_dist=_Posterior(self.encoder(x)))

    def decode(self, z: Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=self.decoder(z))

    # -- files (the diffusers layout: config.json + diffusion_pytorch_model.safetensors) ---------
    def save_pretrained(self, path: str | Path, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(path / WEIGHTS_FILE), metadata={"format": "pt"})
        cfg = {"_class_name": CLASS_NAME, **asdict(self._cfg)}
        cfg["block_out_channels"] = list(self._cfg.block_out_channels)
        (path / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> RADAutoencoder:
        from world_model.weights import load_state_into

        path = Path(path)
        try:
            raw = json.loads((path / "config.json").read_text())
            raw.pop("_class_name", None)
            model = cls(AutoencoderConfig(**raw))
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}/config.json: not a valid {CLASS_NAME} config "
                                  f"({exc})") from exc
        load_state_into(model, path / WEIGHTS_FILE)
        return model


def is_rad_autoencoder(path: str | Path) -> bool:
    """Whether ``path/config.json`` describes a :class:`RADAutoencoder`."""
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("_class_name") == CLASS_NAME
    except (OSError, ValueError, AttributeError):
        return False
