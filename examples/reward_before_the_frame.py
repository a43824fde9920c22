"""Which action earns a reward now? The world's reward model answers before any frame is drawn.

    python examples/reward_before_the_frame.py                   # the shipped world
    python examples/reward_before_the_frame.py --checkpoint runs/rad --steps 300

Walks the REAL Memory Maze with the data collector's scripted exploration, feeds every real frame
to the world and, before each step, prints the reward model's probability of a reward for every
action (the world's `reward/`, trained with `rad train-reward`) where one of them reaches the
world's reward threshold, beside the reward the real maze then gives.
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np
import torch

from agents.evaluate import ScriptedPolicy
from world_model.checkpoint import load_reward_threshold
from world_model.loading import load_engine, resolve_checkpoint
from world_model.sim.memory_maze import ACTION_NAMES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world directory (default: the shipped one)")
    p.add_argument("--steps", type=int, default=200, help="real steps")
    p.add_argument("--seed", type=int, default=0, help="maze seed")
    args = p.parse_args()
    run_dir = resolve_checkpoint(args.checkpoint)
    engine = load_engine(run_dir)
    if engine.reward_model is None:
        raise SystemExit(f"{run_dir} has no reward/ (train one: rad train-reward --out "
                         f"{run_dir}/reward)")
    threshold = load_reward_threshold(run_dir)
    env = gymnasium.make("rad_env:MemoryMaze-9x9-ExtraObs-v0")  # the scripted walk reads the map
    policy = ScriptedPolicy(seed=args.seed)
    obs, _ = env.reset(seed=args.seed)
    first = torch.from_numpy(obs["image"][None, None])  # (1, 1, 64, 64, 3)
    state = engine.start(first, torch.zeros(1, 1, dtype=torch.long), seeds=args.seed)
    total = hits = 0
    for t in range(1, args.steps + 1):
        with torch.no_grad():  # every action's probability, read from the frames so far
            probs = torch.sigmoid(engine.reward_model(state.recent))[0].numpy()
        action = int(policy(obs))
        obs, reward, *_ = env.step(action)
        engine.observe(state, torch.from_numpy(obs["image"][None]), torch.tensor([action]))
        total += reward
        hits += int(reward > 0 and probs[action] >= threshold)
        if probs.max() >= threshold or reward > 0:
            best = int(np.argmax(probs))
            print(f"step {t:4d}: took {ACTION_NAMES[action]:<13} p={probs[action]:.2f} "
                  f"(best {ACTION_NAMES[best]} {probs[best]:.2f}); real reward {reward:.0f}")
    env.close()
    print(f"{args.steps} real steps: real return {total:.0f}, {hits} of its rewards foreseen at "
          f"threshold {threshold:g}")


if __name__ == "__main__":
    main()
