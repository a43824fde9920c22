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
from world_model.config import LatentConfig, ModelConfig, RunConfig
from world_model.evaluate import imagined_panel, write_video
from world_model.model import RADModel
from world_model.rollout import RolloutEngine
from world_model.sampler import SamplerConfig


def untrained_world(directory: Path) -> Path:
    """Save a tiny RAD world with random weights (a demo of the API, not of a model)."""
    cfg = ModelConfig(latent_channels=3, latent_size=64, patch_size=16, width=32, depth=2, heads=2,
                      window=4, memory="lstm", memory_hidden=32, memory_action_dim=8)
    torch.manual_seed(0)
    return save_world(directory / "untrained-tiny", RunConfig(model=cfg, latent=LatentConfig()),
                      RADModel(cfg))


def real_context(path: str | None, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 64, 64, 3) uint8`` real frames and ``(T,)`` the actions that led to them."""
    if path:
        from world_model.data.format import action_indices, read_episode

        ep = read_episode(path)
        return ep["image"][:frames], action_indices(ep["action"])[:frames]
    from world_model.data.memory_maze import NUM_ACTIONS, make_dm_env

    env = make_dm_env("9x9", seed=seed)
    rng = np.random.default_rng(seed)
    images, actions = [env.reset().observation["image"]], [0]
    for action in rng.integers(NUM_ACTIONS, size=frames - 1):
        images.append(env.step(int(action)).observation["image"])
        actions.append(int(action))
    env.close()
    return np.stack(images), np.array(actions)


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
