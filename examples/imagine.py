"""Imagine 20 frames of Memory Maze with a world model, starting from real frames.

    python examples/imagine.py runs/rad-lstm               # a trained world
    python examples/imagine.py runs/rad-lstm --context data/eval/ep_000000.npz
    python examples/imagine.py                             # UNTRAINED tiny random world (demo)

Context: the first --context-frames frames of an episode file, or (default) frames rendered live by
the real simulator (pip install 'rad-env[maze]') with random actions. Then the engine imagines
--frames frames, turning left then walking forward, and saves a GIF (green border: real context,
red border: imagined).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from world_model.checkpoint import load, save_world
from world_model.config import SamplerConfig
from world_model.configs import resolve_config
from world_model.engine.rollout import RolloutEngine
from world_model.evaluation.videos import imagined_panel, write_video
from world_model.world import build_world


def untrained_world(directory: Path) -> Path:
    """Save the ``tiny`` preset with random weights (a demo of the API, not of a model)."""
    config = resolve_config("tiny")
    torch.manual_seed(0)
    return save_world(directory / "untrained-tiny", config, build_world(config).model)


def real_context(path: str | None, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 64, 64, 3) uint8`` real frames and ``(T,)`` the actions that led to them."""
    from world_model.data.format import action_indices, read_episode

    if path:
        ep = read_episode(path)
        return ep["image"][:frames], action_indices(ep["action"])[:frames]
    from world_model.sim.memory_maze import NUM_ACTIONS
    from world_model.sim.recorder import real_clip

    rng = np.random.default_rng(seed)
    ep = real_clip("9x9", seed, rng.integers(NUM_ACTIONS, size=frames - 1))
    return ep["image"], action_indices(ep["action"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="checkpoint directory (default: untrained demo)")
    parser.add_argument("--context", help="episode .npz for the real context frames")
    parser.add_argument("--context-frames", type=int, default=10)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps per frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="imagined.gif")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = untrained_world(Path(tmp))
            print("NOTE: no checkpoint given: an UNTRAINED tiny world with random weights; "
                  "its frames are noise. Pass a trained run directory to see imagination.")
        world = load(run, "cuda" if torch.cuda.is_available() else "cpu")
    engine = RolloutEngine(world, SamplerConfig(steps=args.steps))
    frames, actions = real_context(args.context, args.context_frames, args.seed)
    state = engine.start(torch.from_numpy(frames[None]), torch.from_numpy(actions[None]),
                         seeds=[args.seed])
    plan = [2] * 4 + [1] * (args.frames - 4)  # turn left a little, then walk forward
    imagined = []
    for action in plan:
        frame, info = engine.step(state, torch.tensor([action]))
        imagined.append(frame[0].cpu().numpy())
    reward = "n/a" if info.reward is None else f"{float(info.reward[0]):+.3f}"
    print(f"{len(frames)} real frames, {len(imagined)} imagined; world state "
          f"{state.nbytes() / 1e6:.2f} MB; last predicted reward {reward}")
    path = write_video(args.out, imagined_panel(frames, np.stack(imagined), scale=3), fps=6)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
