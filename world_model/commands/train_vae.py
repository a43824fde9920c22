"""Train a small per-frame VAE (the project's conv VAE, or a diffusers AutoencoderKL) on collected episode frames.

Examples:
  rad train-vae --data data/maze9 --out vaes/maze9
  rad train-vae --data data/maze9 --out vaes/maze9 --steps 20000 --resume
  rad train-vae --data data/maze9 --out vaes/tiny --channels 16,32,64 --wandb disabled

The result (config.json + the weights, with the fitted latent scaling_factor) is what a model config's latent.vae_path points at. OUT/train_state.pt lets
--resume continue the run. See docs/vae.md.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.options import add_options
    from world_model.training.vae_config import VAETrainConfig

    p.add_argument("--data", required=True, help="directory of episode .npz files (>= 2 files)")
    p.add_argument("--out", required=True, help="output VAE directory")
    add_options(p, VAETrainConfig,
                defaults={"wandb": os.environ.get("WANDB_MODE") or "offline"})
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.options import from_args
    from world_model.training.vae import VAETrainConfig, train_vae

    config = from_args(VAETrainConfig, args)
    bar = None

    def on_step(step: int, logs: dict[str, float]) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=config.steps, initial=step - 1, unit="step", desc="train-vae",
                       dynamic_ncols=True)
        shown = {k: logs[k] for k in ("loss", "val_psnr") if k in logs}
        bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        bar.update(1)

    try:
        metrics = train_vae(args.data, args.out, config, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    c, s = metrics["latent_channels"], metrics["latent_size"]
    f = metrics["frame_size"]
    print(f"wrote {args.out}: {f}x{f} frames -> {c}x{s}x{s} latents, step {metrics['step']}, "
          f"scaling_factor {metrics['scaling_factor']:.4f}")
    print(f"validation PSNR: {metrics['val_psnr']:.2f} dB (target-colour border: "
          f"{metrics['val_border_psnr']:.2f} dB)")
    return 0
