"""Soak the learned world: a vector env stepped for many imagined frames under random actions.

``RADVecEnv`` (stable-baselines3 semantics: a row that ends is reset at once from a new real
context) of ``--envs`` worlds is stepped with uniformly random actions until ``--frames`` frames
(all rows) are imagined. Every ``--every`` batched steps it prints a block: frames/s of the block,
the process's peak RSS so far (and its current RSS), episodes finished, and the non-finite
outputs found so far; a non-finite frame (its latent before decoding), reward or termination
probability is reported with its step and row the first time it appears. The summary: median
frames/s over the blocks after the first (the first holds the warm-up), RSS growth from the end of
the first block to the end (a leak shows as growth that keeps rising with ``--frames``), episodes
and auto-resets. Exit status 1 when anything was non-finite.

    python benchmarks/soak_env.py                                   # the shipped world
    python benchmarks/soak_env.py --checkpoint runs/rad --frames 100000 --envs 8 --json soak.json
    python benchmarks/soak_env.py --checkpoint runs/rad --data data/maze9 --max-steps 50

Without a context bank beside the weights (``RUN/contexts.npz``) pass ``--contexts FILE`` or
``--data DIR`` (contexts drawn from the episode files there).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now (MiB), from /proc (the peak where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mib()
    return pages * resource.getpagesize() / 2**20


class FiniteWatch:
    """Wraps the engine's ``step_latents`` and records, per imagined frame, whether its latent
    ``(N, C, h, w)``, reward and termination probability ``(N,)`` are finite."""

    def __init__(self, engine) -> None:
        self.inner, self.step = engine.step_latents, 0
        self.counts = {"frame": 0, "reward": 0, "termination": 0}
        self.first: dict[str, tuple[int, int]] = {}  # kind -> (batched step, row)
        engine.step_latents = self

    def __call__(self, state, actions):
        import torch

        info = self.inner(state, actions)
        rows = {"frame": ~torch.isfinite(info.latent).flatten(1).all(1)}
        if info.reward is not None:
            rows["reward"] = ~torch.isfinite(info.reward)
            rows["termination"] = ~torch.isfinite(info.termination_prob)
        for kind, bad in rows.items():
            bad = bad.cpu().numpy()
            self.counts[kind] += int(bad.sum())
            if bad.any() and kind not in self.first:
                self.first[kind] = (self.step, int(np.flatnonzero(bad)[0]))
        self.step += 1
        return info

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def make_env(args: argparse.Namespace):
    from rad_env.vector import RADVecEnv

    kwargs = {"steps": args.steps, "device": args.device, "dtype": args.dtype}
    if args.max_steps:
        kwargs["max_steps"] = args.max_steps
    if args.contexts:
        kwargs["contexts"] = args.contexts
    if args.data:
        kwargs.update(context="data", data_dir=args.data)
    return RADVecEnv(args.envs, args.checkpoint, **kwargs)


def soak(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    env = make_env(args)
    worlds = env.worlds
    watch = FiniteWatch(worlds.engine)
    cuda = worlds.engine.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rng = np.random.default_rng(args.seed)
    env.seed(args.seed)
    env.reset()
    loaded = peak_rss_mib()
    N = args.envs
    total_steps = -(-args.frames // N)  # ceil: at least --frames frames
    print(f"world {worlds.run_dir} on {worlds.engine.device} ({args.dtype}, "
          f"{torch.get_num_threads()} threads): {N} envs, {worlds.sampling_steps} DDIM steps, "
          f"episodes of {worlds.max_steps} steps; {total_steps * N} frames in blocks of "
          f"{args.every} steps ({args.every * N} frames)")
    print(f"{'block':>5} {'frames':>9} {'frames/s':>9} {'peak RSS':>10} {'RSS now':>10} "
          f"{'episodes':>8} {'non-finite':>10}")
    blocks, episodes, frames_done, step, reported = [], 0, 0, 0, set()
    start = time.perf_counter()
    while step < total_steps:
        n = min(args.every, total_steps - step)
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            _, _, dones, _ = env.step(rng.integers(worlds.num_actions, size=N))
            episodes += int(dones.sum())
        sync()
        elapsed = time.perf_counter() - t0
        step += n
        frames_done += n * N
        block = {"block": len(blocks), "frames": frames_done, "frames_per_s": n * N / elapsed,
                 "peak_rss_mib": peak_rss_mib(), "rss_mib": current_rss_mib(),
                 "episodes": episodes, "non_finite": watch.total}
        if cuda:
            block["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        blocks.append(block)
        print(f"{block['block']:>5} {frames_done:>9} {block['frames_per_s']:>9.2f} "
              f"{block['peak_rss_mib']:>8.1f}Mi {block['rss_mib']:>8.1f}Mi {episodes:>8} "
              f"{watch.total:>10}", flush=True)
        for kind, (at, row) in watch.first.items():
            if kind not in reported:  # each kind once, where it first appeared
                print(f"      non-finite {kind} first at batched step {at}, row {row}")
                reported.add(kind)
    env.close()
    steady = [b["frames_per_s"] for b in blocks[1:]] or [blocks[0]["frames_per_s"]]
    summary = {
        "checkpoint": str(worlds.run_dir), "device": str(worlds.engine.device),
        "dtype": args.dtype, "threads": torch.get_num_threads(), "envs": N,
        "ddim_steps": worlds.sampling_steps, "max_steps": worlds.max_steps,
        "frames": frames_done, "seconds": time.perf_counter() - start,
        "median_frames_per_s": float(np.median(steady)),
        "min_frames_per_s": float(np.min(steady)), "max_frames_per_s": float(np.max(steady)),
        "rss_after_load_mib": loaded, "peak_rss_first_block_mib": blocks[0]["peak_rss_mib"],
        "peak_rss_end_mib": blocks[-1]["peak_rss_mib"],
        "rss_growth_mib": blocks[-1]["peak_rss_mib"] - blocks[0]["peak_rss_mib"],
        "episodes_finished": episodes, "non_finite": dict(watch.counts),
        "first_non_finite": {k: {"step": at, "row": row} for k, (at, row) in watch.first.items()},
        "blocks": blocks,
    }
    return summary


def print_summary(s: dict) -> None:
    bad = sum(s["non_finite"].values())
    over = "block 0 (the only one)" if len(s["blocks"]) == 1 else f"blocks 1-{len(s['blocks']) - 1}"
    print(f"summary: {s['frames']} frames in {s['seconds']:.1f} s; median "
          f"{s['median_frames_per_s']:.2f} frames/s over {over} (min {s['min_frames_per_s']:.2f}, max "
          f"{s['max_frames_per_s']:.2f}); peak RSS {s['peak_rss_first_block_mib']:.1f} MiB after "
          f"block 0, {s['peak_rss_end_mib']:.1f} MiB at the end (growth "
          f"{s['rss_growth_mib']:+.1f} MiB); {s['episodes_finished']} episodes finished and "
          f"reset; non-finite: "
          + (", ".join(f"{n} {kind}s" for kind, n in s["non_finite"].items() if n) if bad
             else "none"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", metavar="RUN",
                        help="world run directory (default: the shipped world)")
    parser.add_argument("--frames", type=int, default=100_000,
                        help="imagined frames, all envs together (default: %(default)s)")
    parser.add_argument("--envs", type=int, default=8, help="vector env rows (default: 8)")
    parser.add_argument("--every", type=int, default=50,
                        help="batched steps per reported block (default: 50)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the env's)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="episode length (default: the world's); short ones exercise resets")
    parser.add_argument("--contexts", metavar="FILE", help="a context bank instead of RUN's")
    parser.add_argument("--data", metavar="DIR", help="draw contexts from these episode files")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16, float16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the summary and blocks here")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.envs < 1 or args.every < 1:
        parser.error("--frames, --envs and --every must be >= 1")

    from rad_env.worlds import SHIPPED_WORLD, world_sampler
    from world_model.errors import RadError

    try:
        args.steps = world_sampler(args.checkpoint or SHIPPED_WORLD, args.steps).steps
        summary = soak(args)
    except RadError as exc:
        hint = "" if args.checkpoint else " (pass --checkpoint RUN to soak a world you trained)"
        if "context bank" in str(exc):
            hint += " (soak_env.py: --contexts FILE, or --data DIR to draw contexts from episodes)"
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"results: {args.json}")
    return 1 if sum(summary["non_finite"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
