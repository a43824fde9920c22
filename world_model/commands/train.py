"""Train a RAD world model on episode files (diffusion forcing with hidden-state pre-fetch).

Examples:
  rad train --data data/maze9 --config cpu-small --out runs/rad-lstm
  rad train --data data/maze9 --config cpu-small --out runs/df --set model.memory=none
  rad train --data data/maze9 --config my.json --out runs/rad-lstm --resume
  rad train --data data/maze9 --init-from rad_env/weights/memory-maze-9x9 --out runs/more
  torchrun --nproc_per_node 2 -m world_model.cli train --data ... --config ... --out ...

The world's action set is sized to the data (model.num_actions = the episode files' action
count; --set model.num_actions=N keeps N, at least the data's) and records the environment the
files name (train.env_id: crafter, gym:ENV_ID, ...), which the learned env RAD-v0 imitates.
--config is a JSON file or a preset name (tiny, cpu-small, gpu-base, crafter-small). --set overrides single fields
(section.field=value, JSON values; world_model.configs.resolve_config). --init-from WORLD warm-starts
a new run from a trained world's weights (fresh optimiser, short warm-up); its config.json is the
default --config and its vae/ the default --vae. Checkpoints: OUT/config.json + OUT/model.safetensors (EMA
weights) + OUT/train_state.pt (resume). Metrics: OUT/metrics.jsonl and wandb (offline by default).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="directory of episode .npz files")
    p.add_argument("--config", help="JSON config file or preset name (default: cpu-small, or the "
                   "--init-from world's config.json)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. model.memory=none or train.steps=100")
    p.add_argument("--steps", type=int, help="shortcut for --set train.steps=N")
    p.add_argument("--vae", help="shortcut: latents from this local VAE directory (rad train-vae; cached "
                        "beside the data on first use, docs/vae.md)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--init-from", metavar="WORLD_DIR",
                   help="warm start a new run from this trained world's weights (fresh optimiser, "
                        "train.warmup_steps of warm-up); its model config must match")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"),
                   help="wandb mode (default: offline, no account needed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training pass (minutes to compile; faster steps)")
    p.add_argument("--keep-every", type=int, default=0, metavar="N",
                   help="also keep the EMA world of every N-th step in OUT/steps/NNNNNN/")
    p.add_argument("--budget-minutes", type=float, metavar="M",
                   help="stop with a checkpoint after M minutes of CPU time in all (resumed parts "
                        "included): compare recipes at equal budget")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from world_model.configs import resolve_config
    from world_model.errors import UserError
    from world_model.training.run import TrainOptions, train

    overrides = list(args.set)
    config_source = args.config or "cpu-small"
    if args.init_from:
        world = Path(args.init_from)
        if not (world / "config.json").is_file():
            raise UserError(f"--init-from {world}: not a world directory (no config.json)")
        if args.config is None:
            config_source = str(world / "config.json")
            if args.vae is None and (world / "vae").is_dir():
                args.vae = str(world / "vae")
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.vae:
        overrides += ["latent.kind=vae", f"latent.vae_path={json.dumps(args.vae)}"]
    config = resolve_config(config_source, overrides)
    options = TrainOptions(device=args.device, wandb=args.wandb, resume=args.resume,
                           progress=not args.no_progress, budget_minutes=args.budget_minutes,
                           compile=args.compile, keep_every=args.keep_every,
                           init_from=args.init_from,
                           actions_from_data=not any(o.startswith("model.num_actions=")
                                                     for o in overrides))
    metrics = train(config, args.data, args.out, options)
    shown = {k: round(v, 5) for k, v in metrics.items() if k.startswith(("val/", "loss/"))}
    print(f"trained to step {int(metrics['step'])} ({metrics['cpu_minutes']:.1f} CPU minutes): "
          f"{json.dumps(shown)}")
    print(f"checkpoint: {args.out}")
    return 0
