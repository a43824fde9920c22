"""Score checkpoints on outbound-and-return trajectories (the paper's Sec. 5.1 protocol), or
(--protocol predict) on clips of plain held-out episodes with revisits.

Examples:
  rad eval --checkpoint runs/rad-lstm runs/df --data data/maze9-eval --out reports/eval
  rad eval --checkpoint runs/rad-lstm --data data/maze9-eval --out reports/quick --steps 10 \\
      --max-trajectories 8
  rad eval --protocol lockstep --idm idms/maze9 --checkpoint runs/rad runs/df \\
      --data data/maze9-heldout --context-frames 24 --predict-frames 300 --out reports/lockstep

The first `context_frames` real frames of each trajectory are context; the model generates the rest
from the recorded actions alone. Prints one table (a row per checkpoint and a repeat-the-last-
context-frame baseline) with PSNR, SSIM and LPIPS over all generated frames and over the return
part (generated frames whose matching outbound view is beyond the attention horizon; see
docs/rollout.md). Writes OUT/table.md, OUT/table.json, OUT/per_frame.json, OUT/curves.png and
OUT/videos/*.gif (real | each checkpoint).

--protocol predict (Crafter, MineRL, gym:ENV_ID worlds): from every held-out episode one clip of
--context-frames + --predict-frames frames (by default the one with the most revisits); the
"revisit" columns score the generated frames where the agent is back at a place of the context
that it has not seen for a horizon (world_model/evaluation/clips.py, docs/envs.md).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.evaluation.settings import EvalSettings
    from world_model.options import add_options

    p.add_argument("--checkpoint", nargs="+", required=True, metavar="RUN",
                   help="one or more checkpoint directories (config.json + model.safetensors)")
    p.add_argument("--data", required=True, help="directory of evaluation trajectories (.npz)")
    p.add_argument("--out", required=True, help="report directory")
    add_options(p, EvalSettings, defaults={"device": "auto"})
    p.add_argument("--idm", metavar="DIR",
                   help="lockstep: the inverse-dynamics model of `rad train-idm`")
    p.add_argument("--save-sampler", action="store_true",
                   help="write sampler.json into the (one) checkpoint: these --steps/--eta become "
                        "the world's default sampler (the env's), with the figures measured here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from world_model.devices import resolve_device
    from world_model.errors import UserError
    from world_model.evaluation.protocol import evaluate
    from world_model.evaluation.report import markdown_table
    from world_model.evaluation.settings import EvalSettings
    from world_model.options import from_args

    device = str(resolve_device(args.device))
    if args.save_sampler and (len(args.checkpoint) != 1 or args.steps is None):
        raise UserError("--save-sampler needs exactly one --checkpoint and --steps")
    if args.max_trajectories is not None and args.max_trajectories < 1:
        raise UserError(f"--max-trajectories must be >= 1, got {args.max_trajectories}")
    if args.horizon is not None and args.horizon < 1:
        raise UserError(f"--horizon must be >= 1, got {args.horizon}")
    settings = from_args(EvalSettings, args, device=device)
    bars: list[tqdm] = []  # made on the first generated frames, once the total is known

    def progress(n: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="frame", desc="rad eval", dynamic_ncols=True,
                             disable=args.no_progress))
        bars[0].update(n)

    if args.protocol == "lockstep":
        return _lockstep(args, settings, progress, bars)
    try:
        report = evaluate(args.checkpoint, args.data, args.out, settings, progress)
    finally:
        for bar in bars:
            bar.close()
    print(markdown_table(report), end="")
    print(f"report: {args.out}/table.md, table.json, per_frame.json, curves.png, videos/")
    if args.save_sampler:
        from dataclasses import asdict

        from world_model.checkpoint import save_sampler
        from world_model.evaluation.protocol import world_sampler_for

        measured = {"data": str(args.data), "trajectories": report.trajectories,
                    "rows": [asdict(r) for r in report.rows]}
        sampler = world_sampler_for(args.checkpoint[0], settings)
        path = save_sampler(args.checkpoint[0], sampler, measured)
        print(f"sampler: {path} ({sampler.steps} {sampler.kind} steps, eta {sampler.eta}, "
              f"context level {'default' if sampler.context_level is None else sampler.context_level}"
              f"{', re-encoded context' if sampler.reencode else ''})")
    return 0


def _lockstep(args: argparse.Namespace, settings, progress, bars) -> int:
    from world_model.errors import UserError
    from world_model.evaluation.lockstep import evaluate_lockstep

    if args.idm is None:
        raise UserError("--protocol lockstep needs --idm DIR (train one with `rad train-idm`)")
    if args.save_sampler:
        raise UserError("--save-sampler goes with the outbound-return or predict protocol")
    try:
        report = evaluate_lockstep(args.checkpoint, args.data, args.out, args.idm, settings,
                                   progress)
    finally:
        for bar in bars:
            bar.close()
    print(report.table(), end="")
    print(f"report: {args.out}/lockstep.md, lockstep.json, lockstep.png")
    return 0
