"""Trust the world's reward: precision and recall of the reward head's events against the real
rewards of held-out real episodes.

Two readings of the same episodes (files in the project's episode format, e.g. from
``rad collect`` with a seed the world was not trained on):

* **teacher-forced**: every real frame is fed to the world (``RolloutEngine.observe``); the
  world's reward model reads the real frames before the step (or, without one, the reward head
  reads the real frame the step led to). This is what the reader learned.
* **open loop**: from ``context`` real frames the world imagines the next ``horizon`` frames
  under the recorded actions, and the reader reads its own frames. A predicted event counts as
  found when a real event lies within ``tolerance`` steps of it (imagined time may drift).

A real event is a step with reward > 0 (Memory Maze: +1 on touching the target). For every
threshold on the reader's output the report gives precision, recall and F1 of both readings. The
threshold a world's users get (``RAD-MemoryMaze-v0``'s ``reward_threshold``) is chosen on a
SEPARATE split of episodes (``select_data``): the one with the best F1 of the ``choose_by``
reading there (default open loop: in the env the head reads the world's own frames). The scored
episodes then give precision and recall at that threshold; ``save_threshold`` writes it into the
world's ``sampler.json``.

    rad reward-check --checkpoint runs/rad --data data/maze9-heldout --select-data data/maze9-select \
        --out reports/reward --save-threshold
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

#: Thresholds scored: low ones for calibrated reward models (Memory Maze: about 2 events in 1000
#: steps, so a calibrated probability of a real touch is often well below 0.5), then 0.05 ... 0.95.
THRESHOLDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03,
              *(round(x, 2) for x in np.arange(0.05, 1.0, 0.05)))
READINGS = ("teacher_forced", "open_loop")


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
    select_data: str | None = None
    """Directory of OTHER held-out episodes on which the threshold is chosen (None: none chosen,
    only the curves of --data are reported)."""
    choose_by: str = "open_loop"
    """Reading whose F1 on --select-data chooses the threshold: ``open_loop`` or ``teacher_forced``."""
    save_threshold: bool = False
    """Write the chosen threshold into the world's sampler.json (needs --select-data)."""
    lead_steps: tuple[int, ...] = (1, 2, 4, 8)
    """Imminent events (what a planner needs): for each real event of --data and each k here,
    the world starts from the real frames up to k steps before it and imagines the k steps under
    the recorded actions; the head's highest output over the last ``tolerance + 1`` imagined
    frames is its reading of the event. () skips this."""
    progress: bool = True
    """Progress bars of the readings (--no-progress: none)."""

    def validate(self) -> RewardCheckConfig:
        if self.choose_by not in READINGS:
            raise UserError(f"choose_by={self.choose_by!r}: expected one of {READINGS}")
        if self.save_threshold and self.select_data is None:
            raise UserError("--save-threshold needs --select-data: the threshold is chosen on "
                            "episodes other than the ones scored")
        if self.select_data is not None and Path(self.select_data).resolve() == Path(self.data).resolve():
            raise UserError(f"--select-data {self.select_data} is --data: choose the threshold on "
                            f"other episodes than the ones scored")
        if (min(self.max_episodes, self.context, self.horizon, self.batch, *self.lead_steps) < 1
                or self.tolerance < 0):
            raise UserError(f"reward check: counts must be >= 1 (tolerance >= 0): {self}")
        return self


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


def json_safe(value):
    """``value`` with every non-finite float as None (JSON has no NaN: precision and F1 of a
    threshold that predicts no event are undefined)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def curve(scores: np.ndarray, real: np.ndarray, tolerance: int) -> list[dict[str, float]]:
    """One :func:`at_threshold` row per threshold of :data:`THRESHOLDS`."""
    return [at_threshold(scores, real, tolerance, th) for th in THRESHOLDS]


def lead_readings(engine, cfg: RewardCheckConfig, frames: np.ndarray, actions: np.ndarray,
                  real: np.ndarray) -> dict[int, np.ndarray]:
    """``{k: (events,) float32}``: the head's reading of every real event (episode ``i``, frame
    ``t``) after imagining the ``k`` frames up to it from the real ``context`` frames ending at
    ``t - k`` (events too early for that are left out). See ``RewardCheckConfig.lead_steps``."""
    import torch
    from tqdm.auto import tqdm

    out = {}
    for k in tqdm(cfg.lead_steps, desc="imminent events", unit="lead", disable=not cfg.progress):
        events = [(i, t) for i, t in zip(*np.nonzero(real)) if t - k - cfg.context + 1 >= 0]
        scores = np.zeros(len(events), np.float32)
        for b in range(0, len(events), cfg.batch):
            part = events[b:b + cfg.batch]
            first = [t - k - cfg.context + 1 for _, t in part]  # first context frame
            ctx = np.stack([frames[i, f:f + cfg.context] for (i, _), f in zip(part, first)])
            act = np.stack([actions[i, f:f + cfg.context + k] for (i, _), f in zip(part, first)])
            st = engine.start(torch.from_numpy(ctx), torch.from_numpy(act[:, :cfg.context]),
                              seeds=[cfg.seed + b + j for j in range(len(part))])
            best = torch.full((len(part),), -np.inf)
            for h in range(k):
                info = engine.step_latents(st, torch.from_numpy(act[:, cfg.context + h]))
                if h >= k - 1 - cfg.tolerance:
                    best = torch.maximum(best, info.reward.float().cpu())
            scores[b:b + len(part)] = best.numpy()
        out[int(k)] = scores
    return out


def read_episodes(engine, cfg: RewardCheckConfig, data: str, leads: bool = False) -> dict:
    """Both readings of ``data``'s first ``max_episodes`` episodes: their curves (one row per
    threshold) and the head's scores with the real events, for scoring another threshold; with
    ``leads``, the imminent events' readings too (:func:`lead_readings`)."""
    import torch
    from tqdm.auto import tqdm

    from world_model.data.format import action_indices, list_episodes, read_episode

    paths = list_episodes(data)[:cfg.max_episodes]
    if not paths:
        raise UserError(f"{data}: no episode files")
    episodes = [read_episode(p, ("image", "action", "reward")) for p in paths]
    # teacher-forced: all episodes side by side (trimmed to the shortest)
    T = min(len(e["image"]) for e in episodes)
    if T < cfg.context + cfg.horizon:
        raise UserError(f"{data}: episodes of {T} frames, shorter than context + horizon "
                        f"({cfg.context} + {cfg.horizon})")
    frames = np.stack([e["image"][:T] for e in episodes])
    actions = np.stack([action_indices(e["action"])[:T] for e in episodes])
    real = np.stack([e["reward"][:T] for e in episodes]) > 0
    state = engine.init_state(len(episodes), seeds=cfg.seed)
    forced = np.zeros((len(episodes), T), np.float32)
    for t in tqdm(range(T), desc=f"{Path(data).name}: teacher-forced", unit="frame",
                  disable=not cfg.progress):
        info = engine.observe(state, torch.from_numpy(frames[:, t]), torch.from_numpy(actions[:, t]))
        forced[:, t] = info.reward.float().cpu().numpy()
    # open loop: segments [s, s + context + horizon) tiling every episode
    L = cfg.context + cfg.horizon
    segs = [(i, s) for i in range(len(episodes)) for s in range(0, T - L + 1, L)]
    open_scores = np.zeros((len(segs), cfg.horizon), np.float32)
    open_real = np.zeros((len(segs), cfg.horizon), bool)
    for b in tqdm(range(0, len(segs), cfg.batch), desc=f"{Path(data).name}: open loop",
                  unit="batch", disable=not cfg.progress):
        part = segs[b:b + cfg.batch]
        ctx = np.stack([frames[i, s:s + cfg.context] for i, s in part])
        act = np.stack([actions[i, s:s + L] for i, s in part])
        st = engine.start(torch.from_numpy(ctx), torch.from_numpy(act[:, :cfg.context]),
                          seeds=[cfg.seed + b + k for k in range(len(part))])
        for h in range(cfg.horizon):
            info = engine.step_latents(st, torch.from_numpy(act[:, cfg.context + h]))
            open_scores[b:b + len(part), h] = info.reward.float().cpu().numpy()
        for k, (i, s) in enumerate(part):
            open_real[b + k] = real[i, s + cfg.context:s + L]
    readings = {  # frame 0 of an episode has no step into it
        "teacher_forced": (forced[:, 1:], real[:, 1:], 0),
        "open_loop": (open_scores, open_real, cfg.tolerance),
    }
    lead = lead_readings(engine, cfg, frames, actions, real) if leads else {}
    return {"episodes": len(episodes), "frames": int(T), "open_loop_segments": len(segs),
            "files": [p.name for p in paths], "readings": readings, "lead_scores": lead,
            **{name: curve(*args) for name, args in readings.items()}}


def best_threshold(rows: list[dict[str, float]]) -> float | None:
    """The threshold with the best finite F1 (the lowest among ties); None if none is finite."""
    best = max((r for r in rows if np.isfinite(r["f1"])), key=lambda r: r["f1"], default=None)
    return None if best is None else best["threshold"]


def choose(select: dict, choose_by: str) -> tuple[float | None, str | None]:
    """The threshold of the best ``choose_by`` F1 of ``select``'s curves, and the reading that
    chose it: the other reading when ``choose_by`` has no finite F1 at any threshold (no
    predicted event near a real one; the fallback is logged and recorded), (None, None) when
    neither has."""
    for reading in (choose_by, *[r for r in READINGS if r != choose_by]):
        chosen = best_threshold(select[reading])
        if chosen is not None:
            if reading != choose_by:
                logger.warning("no %s threshold finds a real reward event on the selection "
                               "episodes: the threshold is chosen by %s F1 instead",
                               choose_by, reading)
            return chosen, reading
    return None, None


def at_threshold(scores: np.ndarray, real: np.ndarray, tolerance: int, threshold: float) -> dict:
    """Precision, recall and F1 of the events ``scores >= threshold`` against ``real``."""
    p, r, n_pred, n_real = precision_recall(scores >= threshold, real, tolerance)
    f1 = 2 * p * r / (p + r) if np.isfinite(p) and np.isfinite(r) and p + r > 0 else float("nan")
    return {"threshold": threshold, "precision": p, "recall": r, "f1": f1,
            "predicted_events": n_pred, "real_events": n_real}


def run_reward_check(cfg: RewardCheckConfig) -> dict:
    from world_model.checkpoint import save_reward_threshold
    from world_model.io import atomic_write_text
    from world_model.loading import load_engine, resolve_checkpoint

    cfg = cfg.validate()
    run_dir = resolve_checkpoint(cfg.checkpoint)
    engine = load_engine(run_dir, steps=cfg.sampling_steps)
    has_model = engine.world.reward_model is not None
    if not (has_model or engine.world.config.model.reward_head):
        raise UserError("this world has neither a reward model (reward/, `rad train-reward`) nor "
                        "a reward head (model.reward_head=false)")
    path = Path(cfg.out) / "reward_check.json"
    scored = read_episodes(engine, cfg, cfg.data, leads=True)
    readings = scored.pop("readings")
    lead = scored.pop("lead_scores")
    scored["imminent"] = {str(k): {"events": len(v), "median_reading": float(np.median(v)) if len(v)
                                   else float("nan"),
                                   "found": {str(th): int((v >= th).sum()) for th in THRESHOLDS}}
                          for k, v in lead.items()}
    reader = ("reward model (reward/): the frames before the step and its action" if has_model
              else "reward head: the frame the step led to")
    report = {"config": dataclasses.asdict(cfg), "reader": reader, **scored,
              "best_threshold": best_threshold(scored["teacher_forced"])}
    atomic_write_text(path, json.dumps(json_safe(report), indent=1) + "\n")  # kept if the rest fails
    if cfg.select_data is not None:
        select = read_episodes(engine, cfg, cfg.select_data)
        select.pop("readings")
        select.pop("lead_scores")
        report["select"] = select
        chosen, chosen_by = choose(select, cfg.choose_by)
        report["chosen_threshold"], report["chosen_by"] = chosen, chosen_by
        if chosen is not None:
            report["at_chosen"] = {name: at_threshold(*args, chosen)
                                   for name, args in readings.items()}
        if cfg.save_threshold and chosen is not None:
            save_reward_threshold(run_dir, chosen, json_safe({
                "chosen_by": f"best {chosen_by} F1 on {cfg.select_data} "
                             f"({select['episodes']} episodes)",
                "scored_on": f"{cfg.data} ({scored['episodes']} episodes)",
                **{f"{name}_at_chosen": row for name, row in report["at_chosen"].items()}}))
            logger.info("reward threshold %.2f written into %s/sampler.json", chosen, run_dir)
    atomic_write_text(path, json.dumps(json_safe(report), indent=1) + "\n")
    return report
