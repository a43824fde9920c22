"""Collect Memory Maze trajectories with the scripted exploration policy (official data set layout).

Each episode is one OUT/ep_NNNNNN.npz file, written atomically. Re-running the same command
resumes: finished episodes are kept, only missing ones are collected. Ctrl-C loses at most the
episodes in flight. See docs/data-collection.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="memory-maze-9x9",
                        help="memory-maze-9x9 | -11x11 | -13x13 | -15x15 (default: %(default)s)")
    parser.add_argument("--episodes", type=int, required=True, help="episodes wanted in --out")
    parser.add_argument("--steps", type=int, default=1000,
                        help="actions per episode; files hold steps+1 frames (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel simulator processes (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed; episode i uses a seed derived from (seed, i) (default: 0)")
    parser.add_argument("--noise", type=float, default=0.25,
                        help="probability of a random action per step (default: %(default)s)")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="use dm_control's original (slow) target-contact check")


def main(args: argparse.Namespace) -> int:
    from world_model.sim.memory_maze import quiet_simulator_logs

    if not getattr(args, "verbose", False):
        quiet_simulator_logs()
    import time

    from tqdm import tqdm

    from world_model.sim.collect import collect
    from world_model.sim.pool import Progress

    state: dict = {}

    def progress(p: Progress) -> None:
        if p.result is None:  # first report: episodes already present
            state.update(bar=tqdm(total=p.total, initial=p.done, unit="ep", desc="collect",
                                  dynamic_ncols=True), frames=0, start=time.perf_counter())
            return
        state["frames"] += p.result.frames
        rate = state["frames"] / max(time.perf_counter() - state["start"], 1e-9)
        state["bar"].set_postfix_str(f"{rate:.0f} frames/s, last reward {p.result.reward:.0f}",
                                     refresh=False)
        state["bar"].update(1)

    try:
        paths = collect(args.out, args.episodes, env=args.env, steps=args.steps,
                        workers=args.workers, seed=args.seed, noise=args.noise, fast=args.fast,
                        progress=progress)
    finally:
        if "bar" in state:
            state["bar"].close()
    print(f"{len(paths)} episodes of {args.steps} steps in {args.out}")
    return 0
