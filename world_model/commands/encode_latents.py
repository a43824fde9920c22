"""Encode a data set's frames with a VAE once, into the latent cache beside it.

Examples:
  rad encode-latents --data data/maze9 --vae vaes/maze9

Writes DATA/.latents/<vae id>/ (one file per episode: latents, actions, rewards), which
`rad train --vae VAE` reads instead of running the encoder at every step; `rad train` encodes
whatever is missing itself, so this command only lets the encoding run ahead (while data is still
being collected, say). Re-running skips the episodes already cached. See docs/vae.md.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="directory of episode .npz files")
    p.add_argument("--vae", required=True, help="VAE directory (rad train-vae)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.training.latent_cache import encode_data

    bar = tqdm(desc="encode latents", unit="episode", dynamic_ncols=True, disable=args.no_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        cache = encode_data(args.data, args.vae, progress=progress)
    finally:
        bar.close()
    print(f"latents of {args.data} under {args.vae}: {cache}")
    return 0
