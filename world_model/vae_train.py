"""Train a small per-frame VAE (a diffusers ``AutoencoderKL``) on collected Memory Maze frames.

The VAE maps one ``64x64x3`` frame to a ``latent_channels x 16 x 16`` latent with the default
three stages (no temporal compression, paper App. A.4). The loss is an L1 (or MSE) reconstruction
loss plus a small KL term; there is no perceptual (LPIPS) term, since its weights cannot be
fetched offline. After training, the latent ``scaling_factor`` (1 / std of the latents of a sample
of training frames) is stored in the AutoencoderKL config, and the model is written with
``save_pretrained(safe_serialization=True)`` so :func:`world_model.latents.load_vae` and
:class:`world_model.latents.VAECodec` load it.

Output directory layout::

    OUT/config.json                          AutoencoderKL config, with the fitted scaling_factor
    OUT/diffusion_pytorch_model.safetensors  weights (written when training ends)
    OUT/train_config.json                    the VAETrainConfig that built it, with a format version
    OUT/train_state.pt                       resume state: step, weights, optimizer, torch RNG

Frames come from :mod:`world_model.data.dataset` (windows of one frame, read lazily: nothing is
loaded but the frames drawn), with its train/validation split by file name. Which frames a step
draws is a pure function of ``(seed, step)``, and ``train_state.pt`` holds the torch RNG state, so a
resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from world_model.data.format import list_episodes
from world_model.errors import CheckpointError, DataError, UserError
from world_model.io import atomic_write, atomic_write_text
from world_model.latents import float_to_frames, frames_to_float

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TRAIN_CONFIG_FILE = "train_config.json"
TRAIN_STATE_FILE = "train_state.pt"
#: Fields that fix the network's shape; a resumed run must agree on them.
ARCHITECTURE_FIELDS = ("latent_channels", "channels", "layers_per_block", "mid_block_attention")


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
    latent_channels: int = 4
    """Channels C of a frame's latent."""
    channels: tuple[int, ...] = (32, 64, 128)
    """``block_out_channels`` of the encoder/decoder stages; n stages downsample by ``2**(n-1)``."""
    layers_per_block: int = 1
    """ResNet layers per encoder stage (the decoder uses one more)."""
    mid_block_attention: bool = True
    """Self-attention in the bottleneck block of encoder and decoder."""
    kl_weight: float = 1e-6
    """Weight of the KL term (summed over latent elements, averaged over frames)."""
    recon_loss: Literal["l1", "mse"] = "l1"
    """Pixel reconstruction loss on frames scaled to [-1, 1], averaged over pixels."""
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
    num_workers: int = 0
    """DataLoader processes reading training frames (0: read in the training process)."""
    seed: int = 0
    """Seeds frame sampling, weight initialisation and posterior samples (the split is by name)."""

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise UserError(message)

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
        need(self.recon_loss in ("l1", "mse"),
             f"recon_loss must be 'l1' or 'mse', got {self.recon_loss!r}")
        need(self.wandb in ("offline", "online", "disabled"),
             f"wandb must be offline, online or disabled, got {self.wandb!r}")
        need(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("val_every", "checkpoint_every", "warmup_steps", "num_workers"):
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


def build_vae(config: VAETrainConfig, frame_size: int) -> nn.Module:
    """A freshly initialised ``AutoencoderKL`` for square frames of side ``frame_size``."""
    from diffusers import AutoencoderKL

    n = len(config.channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=config.channels,
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=frame_size,
        scaling_factor=1.0,
        mid_block_add_attention=config.mid_block_attention,
    )


# --- data -------------------------------------------------------------------------------------


@dataclass
class FrameData:
    """Training and validation frames from :func:`world_model.data.dataset.make_dataloaders` with
    windows of one frame; the split is the world model trainer's (by file name)."""

    train_loader: Any  # DataLoader of {"frames": (B, 1, H, W, 3) uint8, ...}; batch k: f(seed, k)
    val_frames: np.ndarray  # (N, H, W, 3) uint8, the same frames at every validation
    num_train_files: int
    num_val_files: int

    def train_batches(self, start_step: int) -> Iterator[Tensor]:
        """Training frames ``(B, H, W, 3) uint8`` of steps ``start_step, start_step + 1, ...``."""
        self.train_loader.dataset.set_start_step(start_step)
        rng = torch.get_rng_state()
        batches = iter(self.train_loader)  # draws a base seed from the global torch RNG...
        torch.set_rng_state(rng)  # ...which must not shift the posterior samples of a resumed run
        for batch in batches:
            yield batch["frames"][:, 0]

    def train_sample(self, count: int) -> np.ndarray:
        """``count`` training frames ``(count, H, W, 3) uint8``: those of the first steps."""
        dataset = self.train_loader.dataset
        batches = math.ceil(count / dataset.batch_size)
        return np.concatenate([dataset.batch(i)["frames"][:, 0] for i in range(batches)])[:count]


def load_frame_data(data_dir: str | Path, config: VAETrainConfig) -> FrameData:
    from world_model.data.dataset import make_dataloaders

    if not list_episodes(data_dir):
        raise DataError(f"{data_dir}: no episode files (*.npz); collect data first with "
                        f"`rad collect`")
    val_batches = math.ceil(config.val_frames / config.batch_size)
    train, val = make_dataloaders(data_dir, seq_len=1, batch_size=config.batch_size,
                                  val_fraction=config.val_fraction, seed=config.seed,
                                  num_workers=config.num_workers, val_batches=val_batches)
    if val is None:
        raise DataError(f"{data_dir}: need at least 2 usable episode files (one is held out for "
                        f"validation)")
    val_frames = np.concatenate([val.dataset.batch(i)["frames"][:, 0] for i in range(val_batches)])
    return FrameData(train_loader=train, val_frames=val_frames[:config.val_frames],
                     num_train_files=len(train.dataset.files), num_val_files=len(val.dataset.files))


# --- evaluation -------------------------------------------------------------------------------


@torch.no_grad()
def reconstruct(vae: nn.Module, frames: np.ndarray, device: torch.device,
                batch: int = 64) -> np.ndarray:
    """Encode (posterior mode) and decode ``frames (N, H, W, 3) uint8``; returns the same shape."""
    out = []
    for i in range(0, len(frames), batch):
        x = frames_to_float(torch.from_numpy(frames[i:i + batch]).to(device))
        z = vae.encode(x).latent_dist.mode()
        out.append(float_to_frames(vae.decode(z).sample).cpu().numpy())
    return np.concatenate(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the PSNR (dB, capped at 100) of two ``(N, H, W, 3) uint8`` arrays."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 255.0**2 * 1e-10))))


@torch.no_grad()
def latent_std(vae: nn.Module, frames: np.ndarray, device: torch.device,
               batch: int = 64) -> tuple[float, float]:
    """``(mean, std)`` over every element of the posterior-mode latents of ``frames``."""
    zs = []
    for i in range(0, len(frames), batch):
        x = frames_to_float(torch.from_numpy(frames[i:i + batch]).to(device))
        zs.append(vae.encode(x).latent_dist.mode())
    z = torch.cat(zs).double()
    return float(z.mean()), float(z.std())


# --- checkpoints ------------------------------------------------------------------------------


def _config_dict(config: VAETrainConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["channels"] = list(config.channels)
    return {"format_version": FORMAT_VERSION, **data}


def _check_resume_config(out: Path, config: VAETrainConfig) -> None:
    path = out / TRAIN_CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; cannot check that --resume matches the saved run")
    saved = json.loads(path.read_text())
    if saved.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {saved.get('format_version')}, "
                              f"expected {FORMAT_VERSION}")
    ours = _config_dict(config)
    diff = [f"{k}: saved {saved.get(k)!r}, now {ours[k]!r}" for k in ARCHITECTURE_FIELDS
            if saved.get(k) != ours[k]]
    if diff:
        raise UserError(f"{out}: --resume with a different architecture ({'; '.join(diff)})")


def save_train_state(out: Path, step: int, vae: nn.Module,
                     optimizer: torch.optim.Optimizer) -> None:
    """Write ``train_state.pt`` atomically: plain tensors, ints and floats only."""
    state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "model": {k: v.detach().cpu() for k, v in vae.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_write(out / TRAIN_STATE_FILE, lambda tmp: torch.save(state, tmp))


def load_train_state(out: Path, vae: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore weights, optimizer and RNG from ``train_state.pt``; returns the saved step."""
    path = out / TRAIN_STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable or incompatible training state ({exc})") from exc
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


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


# --- training ---------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: CUDA is not available on this machine")
    return device


def vae_loss(vae: nn.Module, x: Tensor, config: VAETrainConfig) -> tuple[Tensor, dict[str, float]]:
    """``x (B, 3, H, W)`` in [-1, 1] -> ``(loss, logs)`` with a posterior sample as the latent."""
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample
    if config.recon_loss == "l1":
        rec = (recon - x).abs().mean()
    else:
        rec = (recon - x).square().mean()
    kl = posterior.kl().mean()
    loss = rec + config.kl_weight * kl
    return loss, {"loss": loss.item(), "recon": rec.item(), "kl": kl.item()}


def _open_wandb(config: VAETrainConfig, out: Path):
    if config.wandb == "disabled":
        return None
    import wandb

    return wandb.init(project="rad-vae", name=f"vae-{out.name}-s{config.seed}", mode=config.wandb,
                      config=_config_dict(config), reinit="finish_previous")


def train_vae(data_dir: str | Path, out_dir: str | Path, config: VAETrainConfig = VAETrainConfig(),
              on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
    """Train an ``AutoencoderKL`` on the frames of the episodes under ``data_dir`` into ``out_dir``.

    Args:
        data_dir: directory of episode ``.npz`` files (``image (T+1, H, W, 3) uint8``), >= 2 files.
        out_dir: output directory (see the module docstring for its layout).
        config: the options.
        on_step: called after every step with ``(step, logs)`` (the CLI's progress bar).

    Returns:
        Final metrics: ``step``, ``start_step``, ``val_psnr`` (dB), ``scaling_factor``,
        ``latent_mean``, ``latent_std``, ``loss``, and the frame and latent shapes.

    Raises:
        DataError: no or unreadable episode files. UserError: bad options, or a non-empty
        ``out_dir`` without ``resume``. CheckpointError: a resume state that does not fit.
    """
    out = Path(out_dir)
    data = load_frame_data(data_dir, config)
    if out.exists() and any(out.iterdir()) and not config.resume:
        raise UserError(f"{out}: exists and is not empty; pass --resume to continue it or choose "
                        f"another --out")
    if config.resume:
        if not (out / TRAIN_STATE_FILE).is_file():
            raise CheckpointError(f"{out / TRAIN_STATE_FILE}: nothing to resume")
        _check_resume_config(out, config)
    device = resolve_device(config.device)
    val = data.val_frames
    size = val.shape[1]
    if val.shape[1] != val.shape[2] or size % config.downsample:
        raise DataError(f"frames are {val.shape[1]}x{val.shape[2]}; need square frames whose side "
                        f"divides by {config.downsample} (2**(len(channels)-1))")
    logger.info("%d training files, %d validation files (%d frames of %dx%d); device %s",
                data.num_train_files, data.num_val_files, len(val), size, size, device)

    torch.manual_seed(config.seed)
    vae = build_vae(config, size).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = load_train_state(out, vae, optimizer) if config.resume else 0
    if config.resume:
        logger.info("resumed %s at step %d", out, start)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / TRAIN_CONFIG_FILE, json.dumps(_config_dict(config), indent=2) + "\n")

    run = _open_wandb(config, out)
    logs: dict[str, float] = {}
    val_psnr = float("nan")
    try:
        # range first: zip stops without drawing a batch past the last step
        for step, frames in zip(range(start, config.steps), data.train_batches(start)):
            lr = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            vae.train()
            x = frames_to_float(frames.to(device))  # (B, H, W, 3) uint8 -> (B, 3, H, W) in [-1, 1]
            loss, logs = vae_loss(vae, x, config)
            if not math.isfinite(logs["loss"]):
                raise RuntimeError(f"loss is {logs['loss']} at step {step}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                norm = nn.utils.clip_grad_norm_(vae.parameters(), config.grad_clip)
                logs["grad_norm"] = float(norm)
            optimizer.step()
            done = step + 1
            logs["lr"] = lr
            if (config.val_every and done % config.val_every == 0) or done == config.steps:
                vae.eval()
                val_psnr = psnr(reconstruct(vae, val, device), val)
                logs["val_psnr"] = val_psnr
                logger.info("step %d: validation PSNR %.2f dB", done, val_psnr)
            if ((config.checkpoint_every and done % config.checkpoint_every == 0)
                    or done == config.steps):
                save_train_state(out, done, vae, optimizer)
            if run is not None:
                run.log(logs, step=done)
            if on_step is not None:
                on_step(done, logs)

        vae.eval()
        if math.isnan(val_psnr):  # nothing trained in this call (already at --steps)
            val_psnr = psnr(reconstruct(vae, val, device), val)
        mean, std = latent_std(vae, data.train_sample(config.scale_frames), device)
        if not std > 0:
            raise RuntimeError(f"latent std is {std}; the VAE collapsed")
        vae.register_to_config(scaling_factor=1.0 / std)
        save_vae_dir(out, vae.cpu())
        logger.info("wrote %s: scaling_factor %.4f (latent mean %.4f, std %.4f), validation PSNR "
                    "%.2f dB", out, 1.0 / std, mean, std, val_psnr)
        metrics = {
            "step": max(start, config.steps),
            "start_step": start,
            "val_psnr": val_psnr,
            "scaling_factor": 1.0 / std,
            "latent_mean": mean,
            "latent_std": std,
            "loss": logs.get("loss", float("nan")),
            "frame_size": size,
            "latent_channels": config.latent_channels,
            "latent_size": size // config.downsample,
        }
        if run is not None:
            run.summary.update(metrics)
        return metrics
    finally:
        if run is not None:
            run.finish()
