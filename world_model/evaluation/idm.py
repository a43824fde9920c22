"""An inverse-dynamics model (IDM): the independent judge of whether a world follows its actions.

Trained on real transitions only (``rad train-idm``), it names the action behind a pair
``(frame, next frame)``. Applied to a world's imagined pairs under known actions, its accuracy
relative to its accuracy on the real pairs of the same steps is the world's *action fidelity*;
the per-frame features of its encoder are what the *realism* (Frechet) distance compares
(:mod:`world_model.evaluation.fidelity`).

Architecture: a per-frame convolutional encoder (stride 4) whose maps of both frames, and their
difference, are fused by a small convolutional head into action logits. A frame's features are
the per-channel mean and standard deviation of its encoder map, ``(2 * channels[-1],)``.

An IDM directory holds ``config.json`` (:class:`IDMConfig` with ``"kind": "rad-idm"``, so a world
checkpoint passed by mistake is named as such) and ``model.safetensors``; ``idm.json`` holds the
accuracy it was measured with. Nothing is unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from world_model.errors import UserError, require
from world_model.latents import frames_to_float
from world_model.weights import ModelKind

#: How an IDM directory is saved (:mod:`world_model.weights`); fields it does not know are ignored.
IDM = ModelKind("rad-idm", 1, "an inverse-dynamics model", "rad train-idm", "idm.json",
                strict=False)


@dataclass(frozen=True)
class IDMConfig:
    """The shape of an inverse-dynamics model."""

    num_actions: int = 6
    """Size of the discrete action set."""
    frame_size: int = 64
    """Side S of the square RGB frames; must divide by 16."""
    channels: tuple[int, int, int] = (16, 32, 64)
    """Widths of the per-frame encoder's three convolutions (the last two at S/4)."""
    head_channels: int = 64
    """Width of the fusion head's convolutions."""
    hidden: int = 256
    """Width of the head's last hidden layer."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        need = lambda ok, msg: require(ok, msg, "invalid IDMConfig")
        need(self.num_actions >= 2, f"num_actions must be >= 2, got {self.num_actions}")
        need(self.frame_size >= 16 and self.frame_size % 16 == 0,
             f"frame_size must be a multiple of 16, got {self.frame_size}")
        need(len(self.channels) == 3 and min(self.channels) > 0,
             f"channels must be three positive widths, got {self.channels}")
        need(self.head_channels > 0 and self.hidden > 0, "head_channels and hidden must be > 0")

    @property
    def feature_dim(self) -> int:
        return 2 * self.channels[-1]


class InverseDynamicsModel(nn.Module):
    """``(frame, next frame) -> action logits``; ``features(frames)`` for the realism distance."""

    def __init__(self, cfg: IDMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        h = cfg.head_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c0, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(c0, c1, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(c1, c2, 3, 1, 1), nn.SiLU(),
        )
        cells = (cfg.frame_size // 16) ** 2
        self.head = nn.Sequential(
            nn.Conv2d(3 * c2, h, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(h, h, 4, 2, 1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(h * cells, cfg.hidden), nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.num_actions),
        )

    def _check(self, frames: Tensor) -> None:
        S = self.cfg.frame_size
        if frames.dtype != torch.uint8 or frames.shape[-3:] != (S, S, 3):
            raise UserError(f"the IDM takes ({S}, {S}, 3) uint8 frames, got "
                            f"{tuple(frames.shape)} {frames.dtype}")

    def encode(self, frames: Tensor) -> Tensor:
        """``frames (B, S, S, 3) uint8`` -> encoder maps ``(B, c2, S/4, S/4)``."""
        self._check(frames)
        dev = next(self.parameters()).device
        return self.encoder(frames_to_float(frames.to(dev)))

    def logits(self, maps: Tensor, next_maps: Tensor) -> Tensor:
        """Action logits ``(B, A)`` from the encoder maps of both frames."""
        return self.head(torch.cat([maps, next_maps, next_maps - maps], dim=1))

    def forward(self, frames: Tensor, next_frames: Tensor) -> Tensor:
        """``frames, next_frames (B, S, S, 3) uint8`` -> logits ``(B, A)`` of the action that
        led from each frame to the next."""
        return self.logits(self.encode(frames), self.encode(next_frames))

    @staticmethod
    def pool(maps: Tensor) -> Tensor:
        """Encoder maps ``(B, c, h, w)`` -> features ``(B, 2c)``: per-channel mean and std."""
        flat = maps.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)

    def features(self, frames: Tensor) -> Tensor:
        """``frames (B, S, S, 3) uint8`` -> ``(B, feature_dim)`` float32."""
        return self.pool(self.encode(frames))


@torch.no_grad()
def judge(idm: InverseDynamicsModel, frames: Tensor, batch: int = 512
          ) -> tuple[Tensor, Tensor]:
    """Predicted actions and features of a sequence of frames, in one encoder pass per frame.

    Args:
        frames: ``(T, S, S, 3) uint8``, consecutive frames.
    Returns:
        ``(actions, features)``: ``(T - 1,)`` int64, the action predicted for each transition
        ``t -> t + 1``, and ``(T, feature_dim)`` float32, each frame's features (on the CPU).
    """
    idm.eval()
    maps = torch.cat([idm.encode(frames[i:i + batch]) for i in range(0, len(frames), batch)])
    n = len(frames) - 1  # transitions
    preds = [idm.logits(maps[i:min(i + batch, n)], maps[i + 1:min(i + batch, n) + 1]).argmax(-1)
             for i in range(0, n, batch)]
    actions = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    return actions.cpu(), idm.pool(maps).float().cpu()


def save_idm(path: str | Path, model: InverseDynamicsModel,
             measured: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and ``idm.json`` with ``measured``)."""
    from world_model.weights import save_tagged

    return save_tagged(path, IDM, model, model.cfg, measured)


def load_idm(path: str | Path, device: str | torch.device = "cpu") -> InverseDynamicsModel:
    """Load an IDM directory written by :func:`save_idm` (``rad train-idm``).

    Raises:
        CheckpointError: a missing or foreign directory (a world checkpoint is named as such),
            another version, or weights that do not fit the config.
    """
    from world_model.weights import load_tagged

    return load_tagged(path, IDM, IDMConfig, InverseDynamicsModel, device)
