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
    from world_model.options import add_options
    from world_model.training.idm_config import IDMTrainConfig

    p.add_argument("--data", required=True, help="directory of real episode .npz files (>= 2)")
    p.add_argument("--out", required=True, help="output IDM directory")
    add_options(p, IDMTrainConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.options import from_args
    from world_model.training.idm import IDMTrainConfig, train_idm

    config = from_args(IDMTrainConfig, args)
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
