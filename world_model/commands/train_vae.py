"""Train a small per-frame VAE (diffusers AutoencoderKL) on collected episode frames.

Examples:
  rad train-vae --data data/maze9 --out vaes/maze9
  rad train-vae --data data/maze9 --out vaes/maze9 --steps 20000 --resume
  rad train-vae --data data/maze9 --out vaes/tiny --channels 16,32,64 --wandb disabled

The result (config.json + diffusion_pytorch_model.safetensors, with the fitted latent
scaling_factor) is what a model config's latent.vae_path points at. OUT/train_state.pt lets
--resume continue the run. See docs/vae.md.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults mirror world_model.training.vae.VAETrainConfig (not imported here: it pulls in torch);
    # tests/test_vae_train.py checks that they agree.
    p.add_argument("--data", required=True, help="directory of episode .npz files (>= 2 files)")
    p.add_argument("--out", required=True, help="output AutoencoderKL directory")
    p.add_argument("--steps", type=int, default=2000, help="total steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="frames per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=5e-4,
                   help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--arch", choices=("conv", "diffusers"), default="conv",
                   help="conv: the project's small convolutional VAE, sized for a CPU simulator; "
                        "diffusers: an AutoencoderKL (default: %(default)s)")
    p.add_argument("--latent-channels", type=int, default=4,
                   help="channels of a frame's latent (default: %(default)s)")
    p.add_argument("--channels", default="32,64,128",
                   help="encoder/decoder stage widths; n stages downsample by 2**(n-1) "
                        "(default: %(default)s -> 16x16 latents for 64x64 frames)")
    p.add_argument("--layers-per-block", type=int, default=1,
                   help="ResNet layers per encoder stage (default: %(default)s)")
    p.add_argument("--kl-weight", type=float, default=1e-6,
                   help="weight of the KL term (default: %(default)s)")
    p.add_argument("--recon-loss", choices=("l1", "mse", "l1_ssim"), default="l1",
                   help="pixel reconstruction loss; l1_ssim adds --ssim-weight * (1 - SSIM) "
                        "(default: %(default)s)")
    p.add_argument("--ssim-weight", type=float, default=0.2,
                   help="weight of the 1 - SSIM term of l1_ssim (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"), default=None,
                   help="wandb mode (default: $WANDB_MODE, else offline)")
    p.add_argument("--val-every", type=int, default=250,
                   help="validation PSNR every N steps, 0: only at the end (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=250,
                   help="write train_state.pt every N steps (default: %(default)s)")
    p.add_argument("--max-episodes", type=int, default=64,
                   help="training episode files read whole into memory, frames drawn from them "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.errors import UserError
    from world_model.training.vae import VAETrainConfig, parse_channels, train_vae

    wandb_mode = args.wandb or os.environ.get("WANDB_MODE") or "offline"
    if wandb_mode not in ("offline", "online", "disabled"):
        raise UserError(f"WANDB_MODE={wandb_mode!r}: expected offline, online or disabled")
    config = VAETrainConfig(
        arch=args.arch, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        latent_channels=args.latent_channels, channels=parse_channels(args.channels),
        layers_per_block=args.layers_per_block, kl_weight=args.kl_weight,
        recon_loss=args.recon_loss, ssim_weight=args.ssim_weight, device=args.device, resume=args.resume, wandb=wandb_mode,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every,
        max_episodes=args.max_episodes, seed=args.seed,
    )
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
