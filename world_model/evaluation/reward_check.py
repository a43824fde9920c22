"""Trust the world's reward: precision and recall of the reward head's events against the real
rewards of held-out real episodes.

Two readings of the same episodes (files in the project's episode format, e.g. from
``rad collect`` with a seed the world was not trained on):

* **teacher-forced**: every real frame is fed to the world (``RolloutEngine.observe``); the
  reward head reads the real frame the step led to. This is what the head learned.
* **open loop**: from ``context`` real frames the world imagines the next ``horizon`` frames
  under the recorded actions, and the head reads its own frames. A predicted event counts as
  found when a real event lies within ``tolerance`` steps of it (imagined time may drift).

A real event is a step with reward > 0 (Memory Maze: +1 on touching the target). For every
threshold on the head's output the report gives precision, recall and F1; the threshold with the
best teacher-forced F1 is the one to give ``RAD-MemoryMaze-v0`` (``reward_threshold``).

    rad reward-check --checkpoint runs/rad --data data/maze9-heldout --out reports/reward
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.errors import UserError

logger = logging.getLogger(__name__)

THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 1.0, 0.05))


@dataclass(frozen=True)
class RewardCheckConfig:
    """Every field is an option of ``rad reward-check``."""

    data: str = "data/maze9-heldout"
    """Directory of held-out real episode files."""
    checkpoint: str | None = None
    """World run directory; None: the world shipped with rad_env."""
    out: str = "reports/reward"
    """Report directory."""
    max_episodes: int = 8
    """Episode files read from --data."""
    context: int = 20
    """Open loop: real frames before each imagined segment."""
    horizon: int = 40
    """Open loop: imagined frames per segment (segments tile each episode)."""
    tolerance: int = 2
    """Open loop: steps of slack when matching predicted to real events."""
    sampling_steps: int | None = None
    """Sampler steps per frame (None: the world's sampler.json, else 10)."""
    batch: int = 8
    """Open-loop segments imagined together."""
    seed: int = 0
    """Seeds the world's noise."""


def precision_recall(pred: np.ndarray, real: np.ndarray, tolerance: int = 0
                     ) -> tuple[float, float, int, int]:
    """``pred, real`` bool ``(n, T)`` event masks -> (precision, recall, predicted, real count).

    A predicted event is right when a real one is within ``tolerance`` steps (same row); a real
    event is found when a predicted one is within ``tolerance`` steps of it."""
    def near(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a's events with a b-event nearby
        hit = np.zeros_like(a)
        for shift in range(-tolerance, tolerance + 1):
            moved = np.roll(b, shift, axis=1)
            if shift > 0:
                moved[:, :shift] = False
            elif shift < 0:
                moved[:, shift:] = False
            hit |= a & moved
        return hit

    n_pred, n_real = int(pred.sum()), int(real.sum())
    precision = float(near(pred, real).sum() / n_pred) if n_pred else float("nan")
    recall = float(near(real, pred).sum() / n_real) if n_real else float("nan")
    return precision, recall, n_pred, n_real


def curve(scores: np.ndarray, real: np.ndarray, tolerance: int) -> list[dict[str, float]]:
    rows = []
    for th in THRESHOLDS:
        p, r, n_pred, n_real = precision_recall(scores >= th, real, tolerance)
        f1 = 2 * p * r / (p + r) if np.isfinite(p) and np.isfinite(r) and p + r > 0 else float("nan")
        rows.append({"threshold": th, "precision": p, "recall": r, "f1": f1,
                     "predicted_events": n_pred, "real_events": n_real})
    return rows


def run_reward_check(cfg: RewardCheckConfig) -> dict:
    import torch

    from world_model.data.format import action_indices, list_episodes, read_episode
    from world_model.io import atomic_write_text
    from world_model.loading import load_engine, resolve_checkpoint

    engine = load_engine(resolve_checkpoint(cfg.checkpoint), steps=cfg.sampling_steps)
    world = engine.world
    if not world.config.model.reward_head:
        raise UserError("this world has no reward head (model.reward_head=false)")
    paths = list_episodes(cfg.data)[:cfg.max_episodes]
    if not paths:
        raise UserError(f"{cfg.data}: no episode files")
    episodes = [read_episode(p, ("image", "action", "reward")) for p in paths]
    # teacher-forced: all episodes side by side (same length assumed, trimmed to the shortest)
    T = min(len(e["image"]) for e in episodes)
    frames = np.stack([e["image"][:T] for e in episodes])
    actions = np.stack([action_indices(e["action"])[:T] for e in episodes])
    real = np.stack([e["reward"][:T] for e in episodes]) > 0
    state = engine.init_state(len(episodes), seeds=cfg.seed)
    forced = np.zeros((len(episodes), T), np.float32)
    for t in range(T):
        info = engine.observe(state, torch.from_numpy(frames[:, t]), torch.from_numpy(actions[:, t]))
        forced[:, t] = info.reward.cpu().numpy()
    # open loop: segments [s, s + context + horizon) tiling every episode
    L = cfg.context + cfg.horizon
    segs = [(i, s) for i in range(len(episodes)) for s in range(0, T - L + 1, L)]
    open_scores = np.zeros((len(segs), cfg.horizon), np.float32)
    open_real = np.zeros((len(segs), cfg.horizon), bool)
    for b in range(0, len(segs), cfg.batch):
        part = segs[b:b + cfg.batch]
        ctx = np.stack([frames[i, s:s + cfg.context] for i, s in part])
        act = np.stack([actions[i, s:s + L] for i, s in part])
        st = engine.start(torch.from_numpy(ctx), torch.from_numpy(act[:, :cfg.context]),
                          seeds=[cfg.seed + b + k for k in range(len(part))])
        for h in range(cfg.horizon):
            info = engine.step_latents(st, torch.from_numpy(act[:, cfg.context + h]))
            open_scores[b:b + len(part), h] = info.reward.cpu().numpy()
        for k, (i, s) in enumerate(part):
            open_real[b + k] = real[i, s + cfg.context:s + L]
    report = {
        "config": dataclasses.asdict(cfg),
        "episodes": len(episodes), "frames": int(T),
        "teacher_forced": curve(forced[:, 1:], real[:, 1:], 0),  # frame 0 has no step into it
        "open_loop": curve(open_scores, open_real, cfg.tolerance),
        "open_loop_segments": len(segs),
    }
    best = max((r for r in report["teacher_forced"] if np.isfinite(r["f1"])),
               key=lambda r: r["f1"], default=None)
    report["best_threshold"] = None if best is None else best["threshold"]
    atomic_write_text(Path(cfg.out) / "reward_check.json", json.dumps(report, indent=1) + "\n")
    return report
