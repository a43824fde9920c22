"""Plot training and validation loss curves of one or more runs from their ``metrics.jsonl``.

    python benchmarks/plot_training.py runs/rad-lstm runs/df --out docs/img/training_loss.png
    python benchmarks/plot_training.py runs/a runs/b --x cpu_minutes --out curves.png  # equal budget
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_metrics(run: Path, max_step: int | None) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    return [r for r in rows if max_step is None or r["step"] <= max_step]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-step", type=int)
    p.add_argument("--x", choices=("step", "cpu_minutes"), default="step",
                   help="x axis: optimiser steps, or the run's CPU minutes (recipes at equal budget)")
    args = p.parse_args()
    fig, (ax_t, ax_v) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in args.runs:
        rows = read_metrics(run, args.max_step)
        minutes = {r["step"]: r["cpu_minutes"] for r in rows if "cpu_minutes" in r}

        logged = sorted(minutes)

        def x(r: dict, minutes: dict = minutes, logged: list = logged) -> float:
            if args.x == "step":
                return r["step"]
            below = [s for s in logged if s <= r["step"]]  # the last logged step at or before it
            return minutes[below[-1]] if below else float("nan")

        train = [(x(r), r["loss/diffusion"]) for r in rows if "loss/diffusion" in r]
        val = [(x(r), r["val/diffusion"]) for r in rows if "val/diffusion" in r]
        if train:
            ax_t.plot(*zip(*train), label=run.name, lw=0.8)
        if val:
            ax_v.plot(*zip(*val), "o-", label=run.name)
            print(f"{run.name}: " + ", ".join(f"{args.x} {s:.4g}: {v:.4f}" for s, v in val))
    ax_t.set(title="training diffusion loss (per logged step)", xlabel=args.x, yscale="log")
    ax_v.set(title="validation diffusion loss (EMA weights)", xlabel=args.x)
    for ax in (ax_t, ax_v):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
