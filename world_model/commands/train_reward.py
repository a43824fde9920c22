"""Train the reward model a world reads rewards from before it draws the frame (docs/agents.md).

Examples:
  rad train-reward --data data/maze9 --out runs/rad/reward
  rad train-reward --data data/maze9 --world runs/rad --out runs/rad/reward --steps 6000 --resume

  rad train-reward --data data/maze9 --gamma 0.97 --out runs/rad-value   # reward-to-go

The model (config.json + model.safetensors, reward.json with its held-out scores) reads the last
--frames latents of the world's VAE and the action, and predicts whether the step earns a reward.
A world directory holding it in `reward/` gets its rewards from it (`rad_env`, `agents.plan`,
`rad reward-check`); choose the env's threshold with `rad reward-check --save-threshold`.
With --gamma > 0 it predicts the discounted reward-to-go instead, the value a planner adds beyond
its horizon (`python -m agents.plan --value DIR`; docs/agents.md).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.options import add_options
    from world_model.training.reward_config import RewardTrainConfig

    p.add_argument("--data", required=True, help="directory of real episode .npz files (>= 2)")
    p.add_argument("--world", default=None,
                   help="world directory whose VAE latents the model reads (default: the world "
                        "shipped with rad_env)")
    p.add_argument("--out", required=True,
                   help="output directory (WORLD/reward: the world then reads rewards from it)")
    add_options(p, RewardTrainConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.loading import resolve_checkpoint
    from world_model.options import from_args
    from world_model.training.reward_model import RewardTrainConfig, train_reward_model

    config = from_args(RewardTrainConfig, args)
    bar = tqdm(total=config.steps, unit="step", desc="train-reward", dynamic_ncols=True,
               disable=args.no_progress)

    def on_step(step: int, logs: dict[str, float]) -> None:
        bar.n = step
        shown = {k: f"{logs[k]:.3f}" for k in ("loss", "accuracy", "val_ap") if k in logs}
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    try:
        scores = train_reward_model(args.data, resolve_checkpoint(args.world), args.out, config,
                                    on_step)
    finally:
        bar.close()
    ap, f1 = scores.get("average_precision"), scores.get("best_f1")
    fmt = lambda x: "-" if x is None else f"{x:.3f}"
    if config.gamma > 0:
        print(f"wrote {args.out}: step {scores['step']}, reward-to-go (gamma {config.gamma}) "
              f"held-out R^2 {fmt(scores.get('r2'))}, mean squared error {fmt(scores.get('mse'))},"
              f" average precision of the steps at >= 0.5 {fmt(ap)} over "
              f"{scores.get('steps', 0)} steps of {scores['val_episodes']} episodes")
        return 0
    print(f"wrote {args.out}: step {scores['step']}, held-out average precision {fmt(ap)}, "
          f"best F1 {fmt(f1)} at {fmt(scores.get('best_threshold'))} over "
          f"{scores.get('events', 0)} events in {scores.get('steps', 0)} steps of "
          f"{scores['val_episodes']} episodes")
    return 0
