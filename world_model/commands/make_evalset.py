"""Make the paper's outbound-and-return evaluation trajectories (RAD Sec. 5.1) for Memory Maze.

Each trajectory goes from the spawn point along a shortest path to a distant goal cell, turns
around in place and comes back along the same cells; it is stored as OUT/ep_NNNNNN.npz in the
official layout plus seed, context_frames (60% of the frames) and outbound_frames. Failed
attempts are logged and replaced with another seed. Re-running resumes. See
docs/data-collection.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="memory-maze-9x9",
                        help="memory-maze-9x9 | -11x11 | -13x13 | -15x15 (default: %(default)s)")
    parser.add_argument("--trajectories", type=int, required=True, help="trajectories wanted")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: %(default)s)")
    parser.add_argument("--min-frames", type=int, default=100,
                        help="shortest trajectory, in frames (default: %(default)s)")
    parser.add_argument("--max-frames", type=int, default=300,
                        help="longest trajectory, in frames (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel simulator processes (default: %(default)s)")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="use dm_control's original (slow) target-contact check")


def main(args: argparse.Namespace) -> int:
    from world_model.sim.memory_maze import quiet_simulator_logs

    if not getattr(args, "verbose", False):
        quiet_simulator_logs()
    from world_model.sim.evalset import make_evalset
    from world_model.sim.jobs import progress_bar

    with progress_bar("make-evalset", "traj",
                      lambda result, rate: f"last {result.frames} frames") as progress:
        paths = make_evalset(args.out, args.trajectories, env=args.env, seed=args.seed,
                             min_frames=args.min_frames, max_frames=args.max_frames,
                             workers=args.workers, fast=args.fast, progress=progress)
    print(f"{len(paths)} evaluation trajectories in {args.out}")
    return 0
