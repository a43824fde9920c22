"""The files and data of ``rad train-vae`` (see :mod:`world_model.training.vae` for the layout).

Training and validation frames from the episode files, reconstruction and latent statistics for
validation and the fitted ``scaling_factor``, the check that a resumed run has the same
architecture, and the atomic ``save_pretrained`` output. The train state and resuming are the
run directory's (:mod:`world_model.training.run_dir`), as for every trainer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from world_model.data.format import list_episodes
from world_model.data.store import EpisodeStore
from world_model.errors import CheckpointError, DataError, UserError
from world_model.latents import float_to_frames, frames_to_float

if TYPE_CHECKING:
    from world_model.training.vae_config import VAETrainConfig

#: The format of ``train_config.json``.
FORMAT_VERSION = 1
TRAIN_CONFIG_FILE = "train_config.json"
#: Fields that fix the network's shape; a resumed run must agree on them.
ARCHITECTURE_FIELDS = ("arch", "latent_channels", "channels", "layers_per_block",
                       "mid_block_attention")


# --- data -------------------------------------------------------------------------------------

@dataclass
class FrameData:
    """Training and validation frames; the split is the world model trainer's (by file name).
    Training frames are drawn from up to ``max_episodes`` whole episodes held in memory
    (:class:`~world_model.data.store.EpisodeStore`): batch ``k`` is a pure function of
    ``(seed, k)``."""

    train: EpisodeStore
    val_frames: np.ndarray  # (N, H, W, 3) uint8, the same frames at every validation
    num_train_files: int
    num_val_files: int
    seed: int
    batch_size: int

    def train_batches(self, start_step: int) -> Iterator[Tensor]:
        """Training frames ``(B, H, W, 3) uint8`` of steps ``start_step, start_step + 1, ...``."""
        step = start_step
        while True:
            rng = np.random.default_rng([self.seed, step])
            yield torch.from_numpy(self.train.draw_frames(rng, self.batch_size))
            step += 1

    def train_sample(self, count: int) -> np.ndarray:
        """``count`` training frames ``(count, H, W, 3) uint8`` (a fixed draw)."""
        return self.train.draw_frames(np.random.default_rng([self.seed, 1 << 40]), count)


def load_frame_data(data_dir: str | Path, config: VAETrainConfig) -> FrameData:
    from world_model.data.dataset import split_episodes

    paths = list_episodes(data_dir)
    if not paths:
        raise DataError(f"{data_dir}: no episode files (*.npz); collect data first with "
                        f"`rad collect`")
    train_paths, val_paths = split_episodes(paths, config.val_fraction, data_dir)
    if not val_paths:
        raise DataError(f"{data_dir}: need at least 2 usable episode files (one is held out for "
                        f"validation)")
    train = EpisodeStore.load(train_paths[:config.max_episodes], None,
                              f"{data_dir} (training episode files)")
    val = EpisodeStore.load(val_paths, train.frame_size, f"{data_dir} (validation episode files)")
    val_frames = val.draw_frames(np.random.default_rng([config.seed, 1 << 41]), config.val_frames)
    return FrameData(train, val_frames, len(train.frames), len(val.frames), config.seed,
                     config.batch_size)


# --- evaluation -------------------------------------------------------------------------------


def _posterior_modes(vae: nn.Module, frames: np.ndarray, device: torch.device,
                     batch: int) -> Iterator[Tensor]:
    """Posterior-mode latents of ``frames (N, H, W, 3) uint8``, ``batch`` frames at a time."""
    for i in range(0, len(frames), batch):
        x = frames_to_float(torch.from_numpy(frames[i:i + batch]).to(device))
        yield vae.encode(x).latent_dist.mode()


@torch.no_grad()
def reconstruct(vae: nn.Module, frames: np.ndarray, device: torch.device,
                batch: int = 64) -> np.ndarray:
    """Encode (posterior mode) and decode ``frames (N, H, W, 3) uint8``; returns the same shape."""
    return np.concatenate([float_to_frames(vae.decode(z).sample).cpu().numpy()
                           for z in _posterior_modes(vae, frames, device, batch)])


@torch.no_grad()
def latent_std(vae: nn.Module, frames: np.ndarray, device: torch.device,
               batch: int = 64) -> tuple[float, float]:
    """``(mean, std)`` over every element of the posterior-mode latents of ``frames``."""
    z = torch.cat(list(_posterior_modes(vae, frames, device, batch))).double()
    return float(z.mean()), float(z.std())


# --- checkpoints ------------------------------------------------------------------------------


def config_dict(config: VAETrainConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["channels"] = list(config.channels)
    return {"format_version": FORMAT_VERSION, **data}


def check_resume_config(out: Path, config: VAETrainConfig) -> None:
    path = out / TRAIN_CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; cannot check that --resume matches the saved run")
    saved = json.loads(path.read_text())
    if saved.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {saved.get('format_version')}, "
                              f"expected {FORMAT_VERSION}")
    ours = config_dict(config)
    saved.setdefault("arch", "diffusers")  # runs saved before the conv VAE existed
    diff = [f"{k}: saved {saved.get(k)!r}, now {ours[k]!r}" for k in ARCHITECTURE_FIELDS
            if saved.get(k) != ours[k]]
    if diff:
        raise UserError(f"{out}: --resume with a different architecture ({'; '.join(diff)})")


def save_vae_dir(out: Path, vae: nn.Module) -> None:
    """``save_pretrained`` into a temporary directory inside ``out``, then move each file into place
    (weights first, ``config.json`` last) so ``out`` never holds a half-written file."""
    tmp = Path(tempfile.mkdtemp(prefix=".vae.", suffix=".tmp", dir=out))
    try:
        vae.save_pretrained(tmp, safe_serialization=True)
        files = sorted(tmp.iterdir(), key=lambda p: p.name == "config.json")
        for f in files:
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            f.chmod(0o644)  # a VAE is shared and shipped; the temporary files may be owner-only
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
