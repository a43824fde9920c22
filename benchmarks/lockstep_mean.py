"""Mean and range of several lockstep reports of the same worlds (other ``--seed``), as one table.

One lockstep run on 12-16 episodes moves by several hundredths of fidelity and Frechet distance
from one sampling seed to the next (docs/training.md), so worlds are compared on the mean of
several seeds:

    for s in 0 1 2 3; do rad eval --protocol lockstep ... --seed $s --out reports/ls-seed$s; done
    python benchmarks/lockstep_mean.py reports/ls-seed*/lockstep.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

METRICS = ("fidelity", "frechet", "psnr", "ssim")


def collect(reports: list[Path]) -> tuple[list[str], list[str], dict]:
    """``(worlds, buckets, {(world, bucket, metric): [value per report]})`` in report order."""
    values: dict = defaultdict(list)
    worlds: list[str] = []
    buckets: list[str] = []
    for report in reports:
        for row in json.loads(report.read_text())["rows"]:
            worlds += [row["name"]] if row["name"] not in worlds else []
            buckets += [row["steps"]] if row["steps"] not in buckets else []
            for metric in METRICS:
                if row.get(metric) is not None:
                    values[(row["name"], row["steps"], metric)].append(row[metric])
    return worlds, buckets, values


def cell(vals: list[float], digits: int) -> str:
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", type=Path, help="lockstep.json files of the same worlds")
    args = p.parse_args(argv)
    worlds, buckets, values = collect(args.reports)
    digits = {"fidelity": 2, "frechet": 3, "psnr": 2, "ssim": 3}
    print(f"mean (min-max) over {len(args.reports)} reports\n")
    print("| world | " + " | ".join(f"{m} {b}" for m in METRICS[:3] for b in buckets) + " |")
    print("|---|" + "---|" * (3 * len(buckets)))
    for w in worlds:
        cells = [cell(values.get((w, b, m), []), digits[m]) for m in METRICS[:3] for b in buckets]
        print(f"| {w} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
