"""Benchmark Memory Maze data collection: frames/s with and without the fast contact check.

Two measurements, each repeated and reported as the median:

* ``step``: simulator steps/s of ``env.step`` alone (one process, random actions, env built and
  reset before timing);
* ``collect``: end-to-end :func:`world_model.sim.collect.collect` frames/s (policy, one env
  build and reset per episode, compression and atomic writes, worker start-up) with 1, 2, ...
  workers.

Example (the figures in docs/data-collection.md)::

    python benchmarks/bench_collect.py --episodes 4 --steps 250 --repeats 3 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def step_rate(fast: bool, steps: int, seed: int) -> float:
    """Steps/s of ``env.step`` with random actions in a freshly built and reset 9x9 env."""
    from world_model.sim import fast_maze
    from world_model.sim.memory_maze import make_dm_env

    (fast_maze.patch_target_contacts if fast else fast_maze.unpatch_target_contacts)()
    try:
        env = make_dm_env("9x9", seed=seed)
        env.reset()
        actions = np.random.default_rng(seed).integers(0, 6, steps)
        start = time.perf_counter()
        for a in actions:
            env.step(int(a))
        elapsed = time.perf_counter() - start
        env.close()
    finally:
        fast_maze.unpatch_target_contacts()
    return steps / elapsed


def collect_rate(fast: bool, workers: int, episodes: int, steps: int, seed: int) -> float:
    """End-to-end frames/s (steps written per wall-clock second) of ``collect``."""
    from world_model.sim.collect import collect

    with tempfile.TemporaryDirectory(prefix="bench_collect_") as out:
        start = time.perf_counter()
        collect(out, episodes, steps=steps, workers=workers, seed=seed, fast=fast)
        elapsed = time.perf_counter() - start
    return episodes * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4, help="episodes per collect run")
    parser.add_argument("--steps", type=int, default=250, help="steps per episode")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--step-steps", type=int, default=300, help="steps for the step-only rate")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from world_model.sim.memory_maze import quiet_simulator_logs

    quiet_simulator_logs()
    load_before = os.getloadavg()
    rows = []
    for fast in (False, True):
        rates = [step_rate(fast, args.step_steps, seed) for seed in range(args.repeats)]
        rows.append({"what": "env.step only", "fast": fast, "workers": 1, "rates": rates})
        print(rows[-1], flush=True)
    for workers in args.workers:
        for fast in (False, True):
            rates = [collect_rate(fast, workers, args.episodes, args.steps, seed)
                     for seed in range(args.repeats)]
            rows.append({"what": "collect", "fast": fast, "workers": workers, "rates": rates})
            print(rows[-1], flush=True)

    print(f"\ncpus={os.cpu_count()}, 1-min load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; episodes={args.episodes} steps={args.steps} "
          f"repeats={args.repeats}\n")
    print("| measurement | contact check | workers | median frames/s | runs |")
    print("|---|---|---|---|---|")
    for row in rows:
        check = "vectorised (fast)" if row["fast"] else "original"
        runs = ", ".join(f"{r:.1f}" for r in row["rates"])
        print(f"| {row['what']} | {check} | {row['workers']} | "
              f"{statistics.median(row['rates']):.1f} | {runs} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
