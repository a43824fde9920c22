"""Make the learned Memory Maze, start it from real frames, take 20 random steps, save the frames.

    python examples/gym_env.py                          # the world shipped with rad-env
    python examples/gym_env.py --checkpoint runs/rad    # your own (config.json, model.safetensors,
                                                        # contexts.npz)

Writes OUT/frame_00.png ... (the last real context frame, then 20 imagined ones) and OUT/run.gif.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium
import imageio.v3 as iio
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="world run directory (default: the shipped world)")
    parser.add_argument("--steps", type=int, help="DDIM steps per frame (default: the world's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gym_env_frames", help="output directory")
    args = parser.parse_args()

    # Gymnasium imports rad_env, which registers the id; nothing heavy loads before this call.
    env = gymnasium.make("rad_env:RAD-MemoryMaze-v0", checkpoint=args.checkpoint,
                         steps=args.steps, render_mode="rgb_array")
    env.action_space.seed(args.seed)
    obs, info = env.reset(seed=args.seed)  # a real clip shipped with the weights
    print(f"reset: context from {info['context_source']} clip {info['clip']}, "
          f"frame {info['frame_index']}, obs {obs.shape} {obs.dtype}")
    frames = [obs]
    for _ in range(20):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        frames.append(env.render())
        print(f"action {action}: frame {info['frame_index']}, reward {reward}, "
              f"terminated {terminated}, truncated {truncated}")
    env.close()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        iio.imwrite(out / f"frame_{i:02d}.png", frame)
    iio.imwrite(out / "run.gif", np.stack(frames), duration=250, loop=0)
    print(f"wrote {len(frames)} frames and run.gif to {out}/")


if __name__ == "__main__":
    main()
