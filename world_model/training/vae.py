"""Train a small per-frame VAE (a diffusers ``AutoencoderKL``) on collected Memory Maze frames.

The VAE maps one ``64x64x3`` frame to a ``latent_channels x 16 x 16`` latent with the default
three stages (no temporal compression, paper App. A.4). The loss is an L1 (or MSE) reconstruction
loss plus a small KL term; there is no perceptual (LPIPS) term, since its weights cannot be
fetched offline. After training, the latent ``scaling_factor`` (1 / std of the latents of a sample
of training frames) is stored in the AutoencoderKL config, and the model is written with
``save_pretrained(safe_serialization=True)`` so :func:`world_model.latents.load_vae` and
:class:`world_model.latents.VAECodec` load it. The loop is the generic
:class:`~world_model.training.trainer.Trainer` over :class:`VAEObjective`; the files and the data
are in :mod:`world_model.training.vae_files`.

Output directory layout::

    OUT/config.json                          AutoencoderKL config, with the fitted scaling_factor
    OUT/diffusion_pytorch_model.safetensors  weights (written when training ends)
    OUT/train_config.json                    the VAETrainConfig that built it, with a format version
    OUT/train_state.pt                       resume state: step, weights, optimizer, RNG states

Frames are drawn from up to ``max_episodes`` training episodes read whole into memory
(:mod:`world_model.data.store`), with the world trainer's train/validation split by file name.
Which frames a step draws is a pure function of ``(seed, step)``, and ``train_state.pt`` holds
the RNG states (the torch RNG draws the posterior samples), so a resumed run takes exactly the
steps an uninterrupted one would. The directory, its train state and resuming are
:class:`~world_model.training.run_dir.RunDir`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from world_model.devices import resolve_device
from world_model.errors import DataError
from world_model.evaluation.metrics import psnr
from world_model.io import atomic_write_text
from world_model.latents import frames_to_float
from world_model.training.logger import RunLogger
from world_model.training.run_dir import RunDir
from world_model.training.trainer import Trainer
from world_model.training.vae_config import VAETrainConfig, parse_channels  # noqa: F401 (re-exported)
from world_model.training.vae_files import (
    TRAIN_CONFIG_FILE,
    check_resume_config,
    config_dict,
    latent_std,
    load_frame_data,
    reconstruct,
    save_vae_dir,
)

logger = logging.getLogger(__name__)


def build_vae(config: VAETrainConfig, frame_size: int) -> nn.Module:
    """A freshly initialised VAE (``config.arch``) for square frames of side ``frame_size``."""
    if config.arch == "conv":
        from world_model.autoencoder import AutoencoderConfig, RADAutoencoder

        return RADAutoencoder(AutoencoderConfig(
            latent_channels=config.latent_channels, block_out_channels=config.channels,
            res_blocks=config.layers_per_block, sample_size=frame_size))
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


# --- training ---------------------------------------------------------------------------------


class VAEObjective(nn.Module):
    """``forward(frames (B, H, W, 3) uint8) -> (loss, logs)``: the reconstruction loss of a
    posterior sample (L1 or MSE on frames in [-1, 1]) plus ``kl_weight`` times the KL term."""

    def __init__(self, vae: nn.Module, config: VAETrainConfig, device: torch.device) -> None:
        super().__init__()
        self.vae, self.config, self.device = vae, config, device

    def forward(self, frames: Tensor) -> tuple[Tensor, dict[str, float]]:
        x = frames_to_float(frames.to(self.device))  # (B, H, W, 3) uint8 -> (B, 3, H, W)
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        if self.config.recon_loss == "mse":
            rec = (recon - x).square().mean()
        else:
            rec = (recon - x).abs().mean()
        logs = {}
        if self.config.recon_loss == "l1_ssim":
            structure = 1.0 - ssim_torch(recon, x)
            rec = rec + self.config.ssim_weight * structure
            logs["ssim"] = 1.0 - structure.item()
        kl = posterior.kl().mean()
        loss = rec + self.config.kl_weight * kl
        return loss, {"loss": loss.item(), "recon": rec.item(), "kl": kl.item(), **logs}


def border_psnr(real: np.ndarray, recon: np.ndarray, width: int = 2) -> float:
    """PSNR (dB, mean over frames) of the ``width``-pixel frame border alone: where Memory Maze
    draws the current target's colour (``real, recon (N, H, W, 3) uint8``)."""
    mask = np.zeros(real.shape[1:3], bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    err = (real[:, mask].astype(np.float64) - recon[:, mask]) ** 2
    mse = np.maximum(err.reshape(len(real), -1).mean(1), 1e-10)
    return float(np.mean(10 * np.log10(255.0 ** 2 / mse)))


def ssim_torch(a: Tensor, b: Tensor, window: int = 7) -> Tensor:
    """Mean SSIM of images ``a, b (B, C, H, W)`` in [-1, 1], computed as scikit-image does on
    the same frames as uint8 (values mapped to [0, 1], a uniform ``window x window`` window,
    sample covariance, only windows inside the frame); differentiable."""
    a, b = (a + 1) / 2, (b + 1) / 2  # SSIM is not shift-invariant: score the [0, 1] images
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pool = lambda t: torch.nn.functional.avg_pool2d(t, window, 1)
    mu_a, mu_b = pool(a), pool(b)
    n = window * window
    cov = n / (n - 1)  # sample covariance, as scikit-image
    var_a = (pool(a * a) - mu_a ** 2) * cov
    var_b = (pool(b * b) - mu_b ** 2) * cov
    cov_ab = (pool(a * b) - mu_a * mu_b) * cov
    num = (2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()


def train_vae(data_dir: str | Path, out_dir: str | Path, config: VAETrainConfig | None = None,
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
        TrainingError: a non-finite loss.
    """
    config = config or VAETrainConfig()
    out = Path(out_dir)
    data = load_frame_data(data_dir, config)
    device = resolve_device(config.device)
    run_dir = RunDir(out, "vae", resume=config.resume, require_empty=True, device=device)
    if run_dir.resuming:
        check_resume_config(out, config)
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
    trainer = Trainer(vae, VAEObjective(vae, config, device), optimizer, lr=config.lr,
                      warmup_steps=config.warmup_steps, grad_clip=config.grad_clip,
                      max_nonfinite=1, advice="lower --lr", device=device)
    start = run_dir.restore(run_dir.read_state(), trainer) if run_dir.resuming else 0
    run_dir.create()
    atomic_write_text(out / TRAIN_CONFIG_FILE, json.dumps(config_dict(config), indent=2) + "\n")

    run = RunLogger(None, config.wandb, {"project": "rad-vae", "name": f"vae-{out.name}-s{config.seed}",
                                         "config": config_dict(config), "reinit": "finish_previous"})
    logs: dict[str, float] = {}
    val_psnr = float("nan")

    def after_step(trainer: Trainer, batch: Tensor, step_logs: dict[str, float] | None,
                   last: bool) -> None:
        nonlocal val_psnr, logs
        done, logs = trainer.step, step_logs
        if (config.val_every and done % config.val_every == 0) or last:
            vae.eval()
            recon = reconstruct(vae, val, device)
            val_psnr = float(psnr(recon, val).mean())
            logs["val_psnr"] = val_psnr
            logs["val_border_psnr"] = border_psnr(val, recon)
            logger.info("step %d: validation PSNR %.2f dB (border %.2f dB)", done, val_psnr,
                        logs["val_border_psnr"])
        if (config.checkpoint_every and done % config.checkpoint_every == 0) or last:
            run_dir.save(trainer)
        run.log(done, logs)
        if on_step is not None:
            on_step(done, logs)

    try:
        trainer.fit(data.train_batches(start), config.steps, [after_step])
        vae.eval()
        recon = reconstruct(vae, val, device)
        val_psnr, val_border = float(psnr(recon, val).mean()), border_psnr(val, recon)
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
            "val_border_psnr": val_border,
            "scaling_factor": 1.0 / std,
            "latent_mean": mean,
            "latent_std": std,
            "loss": logs.get("loss", float("nan")),
            "frame_size": size,
            "latent_channels": config.latent_channels,
            "latent_size": size // config.downsample,
        }
        run.summary(metrics)
        return metrics
    finally:
        run.close()
