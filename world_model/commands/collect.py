"""Collect trajectories of a real environment into episode files (one .npz per episode).

Environments (--env): memory-maze-9x9 (-11x11, -13x13, -15x15) with the scripted exploration
policy of the official data sets; crafter; minerl-navigate (where MineRL 0.4.4 runs); gym:ENV_ID,
any registered Gymnasium env with discrete actions and RGB observations or rgb_array renders
(gym:module:ENV_ID imports module first). All but Memory Maze run --policy (default: uniformly
random actions) and record frames of --size pixels, the env id and the action count.

Each episode is one OUT/ep_NNNNNN.npz file, written atomically. Re-running the same command
resumes: finished episodes are kept, only missing ones are collected. Ctrl-C loses at most the
episodes in flight. See docs/data-collection.md and docs/envs.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="memory-maze-9x9",
                        help="memory-maze-9x9 | -11x11 | -13x13 | -15x15 | crafter | "
                             "minerl-navigate | gym:ENV_ID (default: %(default)s)")
    parser.add_argument("--episodes", type=int, required=True, help="episodes wanted in --out")
    parser.add_argument("--steps", type=int, default=1000,
                        help="actions per episode (fewer where the env ends it); files hold "
                             "steps+1 frames (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel simulator processes (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed; episode i uses a seed derived from (seed, i) (default: 0)")
    parser.add_argument("--policy", default=None,
                        help="all but memory-maze: 'random' (default) or a policy factory, "
                             "'module:factory' or 'path/to/file.py:factory' (docs/envs.md)")
    parser.add_argument("--size", type=int, default=64,
                        help="all but memory-maze: frames are resized to SIZE x SIZE "
                             "(default: %(default)s)")
    parser.add_argument("--noise", type=float, default=0.25,
                        help="memory-maze: probability of a random action per step "
                             "(default: %(default)s)")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="memory-maze: use dm_control's original (slow) target-contact check")


def main(args: argparse.Namespace) -> int:
    from world_model.errors import UserError
    from world_model.sim.jobs import progress_bar

    maze = args.env.startswith("memory-maze")
    if maze and (args.policy is not None or args.size != 64):
        raise UserError("--policy and --size are for the other environments; Memory Maze is "
                        "collected with its scripted policy at 64x64")

    def postfix(result, frames_per_s: float) -> str:
        return f"{frames_per_s:.0f} frames/s, last reward {result.reward:.0f}"

    with progress_bar("collect", "ep", postfix) as progress:
        if maze:
            from world_model.sim.collect import collect
            from world_model.sim.memory_maze import quiet_simulator_logs

            if not getattr(args, "verbose", False):
                quiet_simulator_logs()
            paths = collect(args.out, args.episodes, env=args.env, steps=args.steps,
                            workers=args.workers, seed=args.seed, noise=args.noise,
                            fast=args.fast, progress=progress)
        else:
            from world_model.sim.gym_collect import collect_pixels

            paths = collect_pixels(args.out, args.episodes, env=args.env, steps=args.steps,
                                   workers=args.workers, seed=args.seed,
                                   policy=args.policy or "random", size=args.size,
                                   progress=progress)
    bound = "" if maze else "at most "
    print(f"{len(paths)} episodes of {bound}{args.steps} steps in {args.out}")
    return 0
