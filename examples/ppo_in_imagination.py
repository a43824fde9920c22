"""Train PPO inside the learned world, then score it in the REAL Memory Maze.

    python examples/ppo_in_imagination.py                 # the shipped world
    python examples/ppo_in_imagination.py --tiny-world    # no weights needed: about a minute

--tiny-world runs the whole pipeline with no trained weights: it records a few short real
Memory Maze episodes, cuts a context bank out of them, saves a tiny RANDOM world model, trains
PPO on it for a few hundred imagined steps (4 worlds, batched) and scores the policy in the real
maze against random actions. A random world teaches nothing: the point is the plumbing. With the
shipped world (or --checkpoint) it trains for --timesteps and evaluates on full real episodes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents.evaluate import evaluate_in_real, policy_from_model, random_policy
from agents.ppo import PPOConfig, train_ppo
from rad_env.bank import BANK_FILE, make_context_bank
from world_model.checkpoint import save_world
from world_model.configs import resolve_config
from world_model.data.format import write_episode
from world_model.sim.recorder import real_clip
from world_model.world import build_world


def record_real_episodes(out: Path, episodes: int = 2, steps: int = 24, seed: int = 0) -> Path:
    """Short real Memory Maze episodes under random actions, in the episode file format."""
    rng = np.random.default_rng(seed)
    for k in range(episodes):
        write_episode(out / f"ep_{k:03d}.npz", real_clip("9x9", seed + k, rng.integers(6, size=steps)))
    return out


def tiny_random_world(run_dir: Path, episodes: Path) -> Path:
    """The ``tiny`` preset, untrained (64x64 pixels, window 4), with a bank of real clips."""
    config = resolve_config("tiny")
    torch.manual_seed(0)
    model = build_world(config).model
    with torch.no_grad():
        model.head.bias[1] = -20.0  # never terminate, like Memory Maze
    save_world(run_dir, config, model)
    make_context_bank(episodes, run_dir / BANK_FILE, clips=4, context_len=8)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny-world", action="store_true",
                        help="a tiny random world from real clips (no weights needed)")
    parser.add_argument("--checkpoint", help="world run directory (default: the shipped world)")
    parser.add_argument("--timesteps", type=int, default=20_000, help="PPO steps (full world)")
    parser.add_argument("--out", default="runs/ppo-imagination")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))

    start = time.perf_counter()
    if args.tiny_world:
        work = Path(tempfile.mkdtemp(prefix="rad-tiny-"))
        episodes = record_real_episodes(work / "episodes")
        world = tiny_random_world(work / "world", episodes)
        cfg = PPOConfig(checkpoint=str(world), num_envs=4, total_timesteps=256, n_steps=32,
                        batch_size=64, n_epochs=1, sampling_steps=2, episode_steps=32,
                        out=str(work / "ppo"))
        real_steps, real_episodes = 50, 1
        print(f"tiny random world and real clips in {work} ({time.perf_counter() - start:.0f} s)")
    else:
        cfg = PPOConfig(checkpoint=args.checkpoint, total_timesteps=args.timesteps, out=args.out)
        real_steps, real_episodes = None, 3

    t = time.perf_counter()
    model = train_ppo(cfg)
    print(f"PPO: {model.num_timesteps} imagined steps in {time.perf_counter() - t:.0f} s "
          f"({cfg.num_envs} worlds per batched step)")

    trained = evaluate_in_real(policy_from_model(model), real_episodes, seed=100,
                               max_steps=real_steps)
    baseline = evaluate_in_real(random_policy(seed=100), real_episodes, seed=100,
                                max_steps=real_steps)
    print(f"real Memory Maze, {real_episodes} episode(s) of {trained.lengths[0]} steps: "
          f"PPO return {trained.mean_return:.2f}, random {baseline.mean_return:.2f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
