"""The campaign's curves: validation loss against campaign steps, and the lockstep metrics of its
snapshots, from the runs' ``metrics.jsonl`` and ``rad eval --protocol lockstep`` reports.

A run started with ``--init-from`` counts from the world it started from (its ``init_from.json``
carries that world's campaign steps), so a warm-started run continues the same axis. Lockstep rows
are placed by name: a world directory named ``c<campaign step>`` (e.g. ``c13000``); several reports
of the same worlds (other ``--seed``) give the mean and the range.

    python benchmarks/campaign_curves.py /work/campaign/runs/rad \\
        --lockstep reports/sweep-seed0/lockstep.json reports/sweep-seed1/lockstep.json \\
        --out docs/img/campaign_curves.png
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BUCKETS = ("1-20", "21-100", "101-300")


def step_offset(run: Path) -> int:
    """Campaign steps before this run's step 0 (0 for a run started from scratch)."""
    info = run / "init_from.json"
    if not info.is_file():
        return 0
    source = json.loads(info.read_text()).get("source_train_info") or {}
    return int(source.get("campaign_steps", source.get("step", 0)))


def validation(run: Path) -> list[tuple[int, float]]:
    off = step_offset(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    return [(r["step"] + off, r["val/diffusion"]) for r in rows if "val/diffusion" in r]


def lockstep_points(reports: list[Path]) -> dict[tuple[str, str], dict[int, list[float]]]:
    """``{(metric, bucket): {campaign step: [value per report]}}`` plus the floors under step -1."""
    out: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for report in reports:
        for row in json.loads(report.read_text())["rows"]:
            m = re.fullmatch(r"c(\d+)", row["name"])
            step = int(m.group(1)) if m else (-1 if row["name"] == "repeat last frame" else None)
            if step is None:
                continue
            for metric in ("fidelity", "frechet", "psnr"):
                if row.get(metric) is not None:
                    out[(metric, row["steps"])][step].append(row[metric])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (metrics.jsonl)")
    p.add_argument("--lockstep", nargs="*", type=Path, default=[],
                   help="lockstep.json reports whose world names are c<campaign step>")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for run in args.runs:
        val = validation(run)
        axes[0].plot(*zip(*val), "-", label=run.name, lw=1)
        print(f"{run.name}: validation {val[0][1]:.4f} at {val[0][0]} -> {val[-1][1]:.4f} at {val[-1][0]}")
    axes[0].set(title="validation diffusion loss (EMA)", xlabel="campaign step")
    points = lockstep_points(args.lockstep)
    for ax, metric in zip(axes[1:], ("fidelity", "frechet", "psnr")):
        for bucket in BUCKETS:
            by_step = points.get((metric, bucket), {})
            steps = sorted(s for s in by_step if s >= 0)
            if not steps:
                continue
            mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
            err = [[m - min(by_step[s]) for s, m in zip(steps, mean)],
                   [max(by_step[s]) - m for s, m in zip(steps, mean)]]
            line = ax.errorbar(steps, mean, yerr=err, fmt="o-", capsize=3, label=f"steps {bucket}")
            if by_step.get(-1):
                ax.axhline(by_step[-1][0], ls=":", color=line[0].get_color(), lw=1)
            print(f"{metric} {bucket}: " + ", ".join(f"{s} {m:.3g}" for s, m in zip(steps, mean)))
        ax.set(title=f"lockstep {metric} (dotted: repeat last frame)", xlabel="campaign step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
