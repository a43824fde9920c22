"""Train the inverse-dynamics judge (IDM) on real episodes: (frame, next frame) -> action.

Examples:
  rad train-idm --data data/maze9 --out idms/maze9
  rad train-idm --data data/maze9 --out idms/maze9 --steps 4000 --resume

The IDM (config.json + model.safetensors, idm.json with its held-out accuracy) is what
`rad eval --protocol lockstep --idm DIR` uses to measure a world's action fidelity and realism
(docs/training.md, "Judging a world").
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults mirror world_model.training.idm.IDMTrainConfig (tests/test_idm.py checks them).
    p.add_argument("--data", required=True, help="directory of real episode .npz files (>= 2)")
    p.add_argument("--out", required=True, help="output IDM directory")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="transitions per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--max-episodes", type=int, default=48,
                   help="training episode files held in memory (default: %(default)s)")
    p.add_argument("--val-every", type=int, default=500,
                   help="held-out accuracy (and train state) every N steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.training.idm import IDMTrainConfig, train_idm

    config = IDMTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            max_episodes=args.max_episodes, val_every=args.val_every,
                            seed=args.seed, device=args.device, resume=args.resume)
    bar = tqdm(total=config.steps, unit="step", desc="train-idm", dynamic_ncols=True,
               disable=args.no_progress)

    def on_step(step: int, logs: dict[str, float]) -> None:
        bar.n = step
        shown = {k: f"{logs[k]:.3f}" for k in ("loss", "accuracy", "val_accuracy") if k in logs}
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    try:
        scores = train_idm(args.data, args.out, config, on_step)
    finally:
        bar.close()
    print(f"wrote {args.out}: step {scores['step']}, held-out accuracy {scores['accuracy']:.3f} "
          f"on {scores['pairs']} real transitions of {scores['val_episodes']} episodes "
          f"(majority class {scores['majority']:.3f})")
    per = ", ".join("-" if a is None else f"{a:.2f}" for a in scores["per_class"])
    print(f"per action: {per}")
    return 0
