"""Measure the range of a VAE's latents over real episodes, per channel, for the sampler's clip.

Examples:
  rad latent-range --vae rad_env/weights/memory-maze-9x9/vae --data data/maze9
  rad latent-range --vae runs/rad/vae --data data/maze9 --quantile 0.0001

Encodes the episodes of DATA (through the latent cache, which `rad train` reuses) and writes
VAE/latent_range.json: the per-channel QUANTILE and 1 - QUANTILE of their latents. A world whose
vae/ holds that file has its predicted clean latents clamped to the range while sampling
(`SamplerConfig.clip`, on by default; `"clip": false` in the world's sampler.json turns it off),
as a pixel world's are clamped to [-1, 1]. Without the file nothing is clipped. See
docs/training.md.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vae", required=True,
                   help="VAE directory (rad train-vae, or a world's vae/) to write the range into")
    p.add_argument("--data", required=True, help="directory of real episode .npz files")
    p.add_argument("--quantile", type=float, default=0.01,
                   help="the range is the per-channel QUANTILE and 1 - QUANTILE of the latents")
    p.add_argument("--max-episodes", type=int, default=None,
                   help="measure the first N episodes only (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from world_model import latent_range
    from world_model.data.format import list_episodes
    from world_model.errors import UserError
    from world_model.training.latent_cache import cached_path, encode_data

    if not 0.0 <= args.quantile < 0.5:
        raise UserError(f"--quantile must be in [0, 0.5), got {args.quantile}")
    if args.max_episodes is not None and args.max_episodes < 1:
        raise UserError(f"--max-episodes must be >= 1, got {args.max_episodes}")
    paths = list_episodes(args.data)[:args.max_episodes]
    bar = tqdm(desc="encode latents", unit="episode", dynamic_ncols=True, disable=args.no_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        cache = encode_data(args.data, args.vae, paths=paths, progress=progress)
    finally:
        bar.close()
    latents = []
    for path in paths:
        with np.load(cached_path(cache, args.data, path)) as z:
            latents.append(z["latent"])
    low, high = latent_range.measure(latents, args.quantile)
    out = latent_range.write(args.vae, low, high, quantile=args.quantile, data=str(args.data),
                             episodes=len(paths), frames=int(sum(len(z) for z in latents)))
    for c, (lo, hi) in enumerate(zip(low, high)):
        print(f"channel {c}: [{lo:.3f}, {hi:.3f}]")
    print(f"wrote {out}")
    return 0
