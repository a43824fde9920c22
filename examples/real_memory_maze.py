"""The real Memory Maze through Gymnasium: reset with a seed, take 20 random steps.

    python examples/real_memory_maze.py            # MemoryMaze-9x9-v0 (image observation)
    python examples/real_memory_maze.py --extra    # MemoryMaze-9x9-ExtraObs-v0 (Dict observation)

Needs the simulator: pip install 'rad-env[maze]'. Headless machines render with MUJOCO_GL=egl
(the default) or MUJOCO_GL=osmesa.
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="9x9", choices=["9x9", "11x11", "13x13", "15x15"])
    parser.add_argument("--extra", action="store_true", help="the ExtraObs variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    env_id = f"rad_env:MemoryMaze-{args.size}{'-ExtraObs' if args.extra else ''}-v0"
    env = gymnasium.make(env_id)  # "rad_env:" imports rad_env, which registers the ids
    env.action_space.seed(args.seed)
    obs, info = env.reset(seed=args.seed)
    print(f"{env_id}: action space {env.action_space}, {env.spec.max_episode_steps} steps/episode")
    shapes = ({k: (v.shape, v.dtype.name) for k, v in obs.items()} if isinstance(obs, dict)
              else (obs.shape, obs.dtype.name))
    print(f"observation: {shapes}")
    if info:
        print(f"info keys: {sorted(info)}")
    total = 0.0
    for _ in range(args.steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += float(reward)
        if terminated or truncated:
            obs, info = env.reset()
    image = obs["image"] if isinstance(obs, dict) else obs
    print(f"{args.steps} random steps: total reward {total}, last image mean {np.mean(image):.1f}")
    env.close()


if __name__ == "__main__":
    main()
