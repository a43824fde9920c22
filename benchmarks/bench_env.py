"""Imagination vs reality: frames/s of the learned world against steps/s of the real simulator.

Measured in one run, each part in its own fresh process (clean peak memory, no cross-talk):

* real: the real Memory Maze 9x9 (``MemoryMazeEnv``), random actions, steps/s; as installed
  and with the vectorised target-contact check (``world_model.sim.fast_maze``).
* imagined: ``BatchedWorlds`` (the engine core of RADEnv/RADVecEnv) at batch 1, 8, 32, 64, in
  float32 and bfloat16 (autocast), with 1 and 2 torch threads, or the rows split across
  ``--processes`` worker processes (``EnvConfig.processes``), and compiled (``--compile``): frames/s
  (all rows, decode included), seconds per batched step, engine state per env, and peak memory
  per env (peak RSS after stepping minus RSS after loading the world, over the batch).
* long: time per step at step 10 and at step ``--long`` (1000) of one rollout (batch 1): the
  rollout is snapshotted at both, and the step after each is timed ``--long-pairs`` times,
  alternately from the snapshots (a host that drifts moves both alike); constant cost per frame
  means a ratio near 1.

    python benchmarks/bench_env.py                       # the shipped world
    python benchmarks/bench_env.py --checkpoint runs/rad --steps 10 --json bench.json
    python benchmarks/bench_env.py --batches 32 --long 0 --rounds 3   # median of 3 paired ratios

With ``--rounds K`` the simulator and every cell are measured K times, back to back, and each cell's
ratio is taken against its own round's simulator: on a host whose speed drifts (a shared VM) a
single ratio moves by a third from run to run, the median of paired ratios much less.

The goal (issue "Imagination faster than reality"): at the world's default DDIM steps, imagined
frames/s at batch 32 at least 3x the patched real simulator's steps/s, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_real(job: dict) -> dict:
    from world_model.sim import fast_maze
    from world_model.sim.maze_env import MemoryMazeEnv

    out = {}
    rng = np.random.default_rng(0)
    kinds = (("as_installed", False), ("fast_contacts", True))
    for name, patch in kinds if job.get("as_installed", True) else kinds[1:]:
        if patch:
            fast_maze.patch_target_contacts()
        env = MemoryMazeEnv("9x9")
        env.reset(seed=0)
        for a in rng.integers(6, size=5):  # warm up
            env.step(int(a))
        start = time.perf_counter()
        for a in rng.integers(6, size=job["n"]):
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:  # a new episode, as an RL run would (resets included)
                env.reset()
        out[name] = job["n"] / (time.perf_counter() - start)
        env.close()
    return {"real_steps_per_s": out}


def tree_rss_mib(worlds) -> float:
    """Peak resident memory of this process plus, for rows in worker processes
    (``EnvConfig.processes``), each worker's peak (``VmHWM``), in MiB."""
    total = rss_mib()
    for proc in getattr(worlds, "_procs", []):
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmHWM:")), 0) / 1024
    return total


def worker_imagine(job: dict) -> dict:
    import torch

    from rad_env.sharded import make_worlds

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    B = job["batch"]
    worlds = make_worlds(B, job["checkpoint"], steps=job["steps"], device=job["device"],
                         dtype=job["dtype"], max_steps=10**9, compile=job["compile"],
                         processes=job.get("processes", 1))
    loaded = tree_rss_mib(worlds)
    worlds.reset_rows(range(B))
    rng = np.random.default_rng(0)
    for _ in range(job["warmup"]):
        worlds.step(rng.integers(worlds.num_actions, size=B))
    sync = torch.cuda.synchronize if job["device"].startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(job["frames"]):
        worlds.step(rng.integers(worlds.num_actions, size=B))
    sync()
    elapsed = time.perf_counter() - start
    peak = tree_rss_mib(worlds)
    out = {"batch": B, "frames_per_s": B * job["frames"] / elapsed,
           "s_per_batched_step": elapsed / job["frames"],
           "state_bytes_per_env": worlds.state_bytes(),
           "peak_mib_per_env": (peak - loaded) / B, "peak_rss_mib": peak,
           "processes": getattr(worlds, "processes", 1),
           "threads": getattr(worlds, "threads", torch.get_num_threads()), "device": job["device"]}
    worlds.close()
    return out


def worker_long(job: dict) -> dict:
    import torch

    from rad_env.worlds import BatchedWorlds

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    worlds = BatchedWorlds(1, job["checkpoint"], steps=job["steps"], device=job["device"],
                           dtype=job["dtype"], max_steps=10**9, compile=job["compile"])
    worlds.reset_rows([0])
    rng = np.random.default_rng(0)
    times = []
    for i in range(job["long"]):
        if i == 10:
            at_10 = worlds.snapshot()
        start = time.perf_counter()
        worlds.step(rng.integers(worlds.num_actions, size=1))
        times.append(time.perf_counter() - start)
    at_end = worlds.snapshot()
    # paired: the step after step 10 and the step after step `long`, from snapshots, alternately,
    # so that the host's drift over the rollout moves both alike
    pairs = []
    for _ in range(job.get("pairs", 30)):
        pair = []
        for snap in (at_10, at_end):
            worlds.restore(snap)
            start = time.perf_counter()
            worlds.step(rng.integers(worlds.num_actions, size=1))
            pair.append(time.perf_counter() - start)
        pairs.append(pair)
    pairs = np.array(pairs)
    early, late = float(np.median(pairs[:, 0])), float(np.median(pairs[:, 1]))
    return {"steps": job["long"], "s_per_step_near_10": early, "s_per_step_near_end": late,
            "ratio_end_over_10": late / early,
            "paired_ratio_median": float(np.median(pairs[:, 1] / pairs[:, 0])),
            "rollout_s_per_step_6_15": float(np.median(times[5:15])),
            "rollout_s_per_step_last_10": float(np.median(times[-10:]))}


WORKERS = {"real": worker_real, "imagine": worker_imagine, "long": worker_long}


def run_worker(job: dict) -> dict:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker {job['kind']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


HEADER = (f"{'dtype':>8} {'compiled':>8} {'procs':>5} {'threads':>7} {'batch':>5} {'frames/s':>9} "
          f"{'s/step':>8} {'vs patched':>10} {'state/env':>10} {'peak/env':>9}")


def measure_round(args: argparse.Namespace, common: dict, first: bool) -> tuple[dict, list[dict]]:
    """The real simulator, then every imagined cell, each ratio against this round's simulator
    (the simulator as installed only in the first round: it does not enter any ratio)."""
    real = run_worker({"kind": "real", "n": args.real_steps, "as_installed": first})
    real = real["real_steps_per_s"]
    installed = f"{real['as_installed']:.1f} steps/s as installed, " if first else ""
    print(f"real Memory Maze 9x9: {installed}{real['fast_contacts']:.1f} steps/s with the "
          f"vectorised contact check (patched)")
    print(HEADER)
    rows = []
    cells = [(p, t) for p in args.processes for t in (args.threads if p == 1 else [0])]
    for dtype in args.dtypes:
        for compiled in ([False, True] if args.compile else [False]):
            for processes, threads in cells:
                for batch in args.batches:
                    r = run_worker({"kind": "imagine", "batch": batch, "frames": args.frames,
                                    "warmup": args.warmup, "dtype": dtype, "threads": threads,
                                    "compile": compiled, "processes": processes, **common})
                    r.update(dtype=dtype, compiled=compiled,
                             ratio_to_patched=r["frames_per_s"] / real["fast_contacts"])
                    rows.append(r)
                    print(row_line(r), flush=True)
    return real, rows


def row_line(r: dict) -> str:
    return (f"{r['dtype']:>8} {r['compiled']!s:>8} {r['processes']:>5} {r['threads']:>7} "
            f"{r['batch']:>5} {r['frames_per_s']:>9.2f} {r['s_per_batched_step']:>8.3f} "
            f"{r['ratio_to_patched']:>9.2f}x {r['state_bytes_per_env'] / 2**20:>8.2f}MiB "
            f"{r['peak_mib_per_env']:>7.1f}MiB")


def summarize_rounds(rounds: list[tuple[dict, list[dict]]]) -> list[dict]:
    """Per cell: the median over rounds of frames/s, s/step, peak and of the ratio to the same
    round's simulator, with every round's ratio (a host whose speed drifts moves both sides of a
    round together, so the ratio is steadier than either speed)."""
    print(f"median of {len(rounds)} rounds (each ratio against its own round's simulator):")
    print(HEADER + "  ratios by round")
    out = []
    for k, first in enumerate(rounds[0][1]):
        cell = [imagined[k] for _, imagined in rounds]
        r = dict(first)
        for key in ("frames_per_s", "s_per_batched_step", "ratio_to_patched", "peak_mib_per_env"):
            r[key] = float(np.median([c[key] for c in cell]))
        r["ratios"] = [c["ratio_to_patched"] for c in cell]
        out.append(r)
        print(row_line(r) + "  " + " ".join(f"{x:.2f}" for x in r["ratios"]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="world run directory (default: the shipped world)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps (default: the world's own, its sampler.json)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--frames", type=int, default=20, help="timed batched steps per batch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--long", type=int, default=1000, help="rollout length for step-10 vs "
                        "step-N timing (0 skips it)")
    parser.add_argument("--long-pairs", type=int, default=30,
                        help="timed pairs (the step after step 10, the step after step --long)")
    parser.add_argument("--real-steps", type=int, default=100, help="timed real simulator steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        help="compute dtypes to measure (default: float32 bfloat16)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts to measure (default: 1 2)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure the compiled engine (RolloutEngine compile=True)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="worker processes the rows are split across (EnvConfig.processes; "
                             "above 1 each takes cpu_count // processes threads, --threads is "
                             "for 1 only)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the simulator and every cell this many times, back to "
                             "back, and print the median of each cell's per-round ratio")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if 0 < args.long <= 10 or args.long_pairs < 1:
        parser.error(f"--long must be 0 or above 10 and --long-pairs at least 1, got {args.long} "
                     f"and {args.long_pairs}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(WORKERS[job["kind"]](job)))
        return

    from rad_env.worlds import SHIPPED_WORLD, world_sampler

    steps = world_sampler(args.checkpoint or SHIPPED_WORLD, args.steps).steps
    common = {"checkpoint": args.checkpoint, "steps": steps, "device": args.device}
    print(f"world: {args.checkpoint or 'shipped'}; {steps} DDIM steps; {args.device}")
    rounds = [measure_round(args, common, first=k == 0) for k in range(args.rounds)]
    real, rows = rounds[0]
    if args.rounds > 1:
        rows = summarize_rounds(rounds)
        real = {"fast_contacts": float(np.median([r["fast_contacts"] for r, _ in rounds])),
                "as_installed": rounds[0][0]["as_installed"]}
    result = {"config": {**common, "frames": args.frames, "rounds": args.rounds}, "real": real,
              "imagined": rows}
    if args.rounds > 1:
        result["rounds"] = [{"real": r, "imagined": imagined} for r, imagined in rounds]
    if args.long:
        best = max(rows, key=lambda r: r["frames_per_s"] if r["batch"] == 1 and r["processes"] == 1
                   else -1)
        long = run_worker({"kind": "long", "long": args.long, "pairs": args.long_pairs, "dtype": best["dtype"],
                           "threads": best["threads"], "compile": best["compiled"], **common})
        result["long"] = long
        print(f"batch 1 ({best['dtype']}, {best['threads']} threads), time per step near step 10: "
              f"{long['s_per_step_near_10'] * 1e3:.1f} ms, near step {args.long}: "
              f"{long['s_per_step_near_end'] * 1e3:.1f} ms "
              f"(ratio {long['ratio_end_over_10']:.3f}; median of {args.long_pairs} paired "
              f"ratios {long['paired_ratio_median']:.3f}; the step after step 10 and after step "
              f"{args.long}, alternately from snapshots)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
