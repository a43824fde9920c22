"""Convert MineRL data set trajectories (recording.mp4 + rendered.npz) into episode files.

Examples:
  rad convert-minerl $MINERL_DATA_ROOT/MineRLNavigate-v0 --out data/minerl-navigate
  rad convert-minerl SRC --out DIR --size 64 --angle 15 --workers 2

Every trajectory directory under SRC becomes OUT/<trajectory>.npz in the project's format:
image (T+1, 64, 64, 3) uint8, one-hot action (T+1, 8) with the discrete MineRL action set of
MineRL-Navigate-v0 (noop, forward, turn_left, turn_right, look_up, look_down, jump_forward,
attack; see docs/envs.md), reward (T+1,). Written atomically; a re-run converts only what is
missing. Needs imageio-ffmpeg (the [envs] extra), not MineRL.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a MineRL task directory (or any directory above trajectories)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (default: 64)")
    p.add_argument("--angle", type=float, default=15.0,
                   help="degrees of one discrete turn/look; camera moves of at least half of it "
                        "count (default: 15)")
    p.add_argument("--env", default="minerl-navigate",
                   help="env id recorded in the files (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")


def main(args: argparse.Namespace) -> int:
    from world_model.sim.jobs import progress_bar
    from world_model.sim.minerl_data import convert_minerl

    with progress_bar("convert-minerl", "traj") as progress:
        paths = convert_minerl(args.src, args.out, size=args.size, angle=args.angle,
                               env_id=args.env, workers=args.workers, progress=progress)
    print(f"{len(paths)} MineRL trajectories as episode files in {args.out}")
    return 0
