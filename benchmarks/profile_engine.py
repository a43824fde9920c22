"""Where the time of one imagined frame goes: ``torch.profiler`` over batched env steps.

Steps a world (``BatchedWorlds``, the core of RADEnv/RADVecEnv) at one batch size for a few
warm-up frames, then profiles ``--frames`` more and prints the top operators by self CPU time
(a Markdown table, for docs/rollout.md) and the share of the three passes of a frame: the
denoising passes, the clean pass that writes the frame's keys/values, and the memory write.

    python benchmarks/profile_engine.py                         # the shipped world, batch 32
    python benchmarks/profile_engine.py --checkpoint runs/rad --batch 8 --steps 2 --rows 15
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="world run directory (default: the shipped world)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the world's)")
    p.add_argument("--frames", type=int, default=5, help="profiled batched steps")
    p.add_argument("--warmup", type=int, default=8, help="steps first (fills the window)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows", type=int, default=12, help="operators to list")
    args = p.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from rad_env.worlds import BatchedWorlds

    torch.set_num_threads(args.threads)
    worlds = BatchedWorlds(args.batch, args.checkpoint, steps=args.steps, dtype=args.dtype,
                           max_steps=10**9)
    engine = worlds.engine
    passes = {"denoise": engine.predict, "clean pass + ring write": engine._append,
              "memory write": engine._write}
    for name, fn in passes.items():  # label each pass in the trace
        def labelled(*a, _fn=fn, _name=name, **k):
            with record_function(_name):
                return _fn(*a, **k)
        setattr(engine, fn.__name__, labelled)
    worlds.reset_rows(range(args.batch))
    rng = np.random.default_rng(0)
    for _ in range(args.warmup):
        worlds.step(rng.integers(worlds.num_actions, size=args.batch))
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.frames):
            worlds.step(rng.integers(worlds.num_actions, size=args.batch))
    wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    print(f"world {worlds.run_dir}: batch {args.batch}, {worlds.sampling_steps} DDIM steps, "
          f"{args.dtype}, {args.threads} thread(s); {args.frames} profiled steps in {wall:.2f} s "
          f"({args.batch * args.frames / wall:.1f} frames/s under the profiler)")
    print("\n| pass | CPU time per batched step (ms) | share |\n|---|---|---|")
    for name in passes:
        e = next((e for e in events if e.key == name), None)
        if e is not None:
            ms = e.cpu_time_total / 1e3 / args.frames
            print(f"| {name} | {ms:.1f} | {e.cpu_time_total / (wall * 1e6):.0%} |")
    print("\n| operator | self CPU (ms per step) | share | calls per step |\n|---|---|---|---|")
    ops = sorted((e for e in events if e.key not in passes), key=lambda e: -e.self_cpu_time_total)
    for e in ops[:args.rows]:
        print(f"| `{e.key}` | {e.self_cpu_time_total / 1e3 / args.frames:.1f} | "
              f"{e.self_cpu_time_total / total:.0%} | {e.count / args.frames:.0f} |")


if __name__ == "__main__":
    main()
