"""Where imagination leaves reality: the same actions in the live Memory Maze and in the world.

The same actions in the REAL Memory Maze and in the learned world, from the same real start,
frame against frame.

Per episode: the real env is reset (seeded) and driven by the project's scripted exploration
policy (``world_model.sim.policies``: to random points under action noise, as the training data
were collected) for ``context`` steps; the world starts from those real frames. Then, for
``steps`` steps, the policy's action goes to both: the real env renders the true frame, the world
imagines its own (open loop: it never sees the real frames again). PSNR and SSIM per step,
averaged over episodes, beside the repeat-last-context-frame floor; a side-by-side video per
episode (real | imagined).

Example:
  rad real-lockstep --checkpoint runs/rad --episodes 4 --context 20 --steps 100 \\
      --out reports/lockstep

(``rad eval --protocol lockstep`` does the same on recorded held-out episodes, judged by the
inverse-dynamics model; this command runs the simulator live and needs MuJoCo.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.errors import UserError
from world_model.options import from_args

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockstepConfig:
    """Every field is an option of ``rad real-lockstep``."""

    checkpoint: str | None = None
    """World run directory; None: the world shipped with rad_env."""
    out: str = "reports/lockstep"
    """Report directory (lockstep.json, curves.png, videos)."""
    episodes: int = 4
    """Real episodes run in lockstep with the world."""
    context: int = 20
    """Real frames the world starts from."""
    steps: int = 100
    """Lockstep steps after the context."""
    sampling_steps: int | None = None
    """Sampler steps per frame (None: the world's sampler.json, else 10)."""
    size: str = "9x9"
    """Memory Maze size."""
    seed: int = 0
    """Seeds the real env and its policy (episode e: seed + e)."""
    videos: int = 2
    """Side-by-side videos written for the first this many episodes."""


@dataclass
class LockstepResult:
    psnr: np.ndarray
    """``(episodes, steps)`` PSNR of every imagined frame against the real one."""
    ssim: np.ndarray
    floor_psnr: np.ndarray
    """``(episodes, steps)``: the last context frame against the real ones."""
    floor_ssim: np.ndarray

    def summary(self) -> dict[str, float]:
        return {"psnr": float(self.psnr.mean()), "ssim": float(self.ssim.mean()),
                "floor_psnr": float(self.floor_psnr.mean()),
                "floor_ssim": float(self.floor_ssim.mean())}


def real_and_imagined(cfg: LockstepConfig, episode: int, engine) -> tuple[np.ndarray, np.ndarray]:
    """One episode: ``(real (C+S, H, W, 3), imagined (S, H, W, 3))`` uint8."""
    import torch

    from world_model.sim.maze_env import MemoryMazeEnv
    from world_model.sim.policies import ExplorationConfig, ExplorationPolicy

    env = MemoryMazeEnv(cfg.size, extra_obs=True)
    try:
        seed = cfg.seed + episode
        obs, _ = env.reset(seed=seed)
        policy = ExplorationPolicy(np.random.default_rng(seed), ExplorationConfig())
        frames, actions = [obs["image"]], [0]
        for _ in range(cfg.context - 1):
            a = policy.act(obs)
            obs, *_ = env.step(a)
            frames.append(obs["image"])
            actions.append(a)
        state = engine.start(torch.from_numpy(np.stack(frames)[None]),
                             torch.tensor([actions]), seeds=[seed])
        imagined = []
        for _ in range(cfg.steps):
            a = policy.act(obs)
            obs, *_ = env.step(a)
            frames.append(obs["image"])
            out, _ = engine.step(state, torch.tensor([a]))
            imagined.append(out[0].cpu().numpy())
    finally:
        env.close()
    return np.stack(frames), np.stack(imagined)


def run_lockstep(cfg: LockstepConfig, progress: bool = True) -> LockstepResult:
    """Run every episode, write ``out/lockstep.json``, ``out/curves.png`` and the videos."""
    from tqdm.auto import tqdm

    from world_model.evaluation import metrics
    from world_model.evaluation.videos import side_by_side, write_video
    from world_model.io import atomic_write_text
    from world_model.loading import load_engine, resolve_checkpoint

    if min(cfg.episodes, cfg.context, cfg.steps, cfg.sampling_steps or 1) < 1:
        raise UserError(f"LockstepConfig: counts must be >= 1: {cfg}")
    engine = load_engine(resolve_checkpoint(cfg.checkpoint), steps=cfg.sampling_steps)
    world = engine.world
    if world.config.latent.frame_size != 64 or world.config.model.num_actions != 6:
        raise UserError("lockstep runs the real Memory Maze (64x64 frames, 6 actions); this world "
                        f"makes {world.config.latent.frame_size}px frames with "
                        f"{world.config.model.num_actions} actions")
    out = Path(cfg.out)
    rows: dict[str, list[np.ndarray]] = {"psnr": [], "ssim": [], "floor_psnr": [], "floor_ssim": []}
    for e in tqdm(range(cfg.episodes), desc="lockstep", unit="episode", disable=not progress):
        real, imagined = real_and_imagined(cfg, e, engine)
        truth = real[cfg.context:]
        floor = np.repeat(real[cfg.context - 1][None], cfg.steps, axis=0)
        rows["psnr"].append(metrics.psnr(truth, imagined))
        rows["ssim"].append(metrics.ssim(truth, imagined))
        rows["floor_psnr"].append(metrics.psnr(truth, floor))
        rows["floor_ssim"].append(metrics.ssim(truth, floor))
        if e < cfg.videos:
            write_video(out / "videos" / f"episode_{e:03d}.gif",
                        side_by_side(real, [imagined], cfg.context))
    result = LockstepResult(*(np.stack(rows[k]) for k in ("psnr", "ssim", "floor_psnr", "floor_ssim")))
    out.mkdir(parents=True, exist_ok=True)
    curves = {k: np.stack(v).mean(0).round(4).tolist() for k, v in rows.items()}
    atomic_write_text(out / "lockstep.json", json.dumps(
        {"config": dataclasses.asdict(cfg), "summary": result.summary(), "curves": curves},
        indent=1) + "\n")
    plot_lockstep(out / "curves.png", result)
    return result


def plot_lockstep(path: Path, result: LockstepResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.arange(1, result.psnr.shape[1] + 1)
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.plot(steps, getattr(result, key).mean(0), label="imagined vs real")
        ax.plot(steps, getattr(result, f"floor_{key}").mean(0), "--", label="last context frame")
        ax.set(xlabel="steps after the real context", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Lockstep: same actions in the real maze and the world ({len(result.psnr)} "
                 f"episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.options import add_options

    add_options(p, LockstepConfig)


def main(args: argparse.Namespace) -> int:
    cfg = from_args(LockstepConfig, args)
    result = run_lockstep(cfg)
    s = result.summary()
    print(f"{cfg.episodes} episodes x {cfg.steps} steps: imagined PSNR {s['psnr']:.2f} SSIM "
          f"{s['ssim']:.3f}; last context frame PSNR {s['floor_psnr']:.2f} SSIM "
          f"{s['floor_ssim']:.3f}; report in {cfg.out}")
    return 0
