"""The paper's evaluation protocol (RAD Sec. 5.1) on outbound-and-return trajectories.

For every trajectory (an episode file with scalars ``context_frames`` and ``outbound_frames``, see
``world_model.sim.evalset``): the first ``context_frames`` real frames are given to the model,
which generates every later frame from the recorded actions alone. Generated frames are scored
against the real ones with PSNR, SSIM and LPIPS (:mod:`world_model.evaluation.metrics`), averaged over all
generated frames of all trajectories, for the whole prediction and for its **return part**:

    Let ``O = outbound_frames`` and ``H`` the attention horizon (the largest
    ``config.model.horizon`` among the evaluated checkpoints, or ``--horizon``). A generated frame
    ``i`` is matched to the outbound frame ``m(i) < O`` whose ``agent_pos`` is nearest to its own
    (ties: the latest); a file without ``agent_pos`` uses the mirror frame
    ``m(i) = clip(2 (O - 1) - i, 0, O - 1)``. Frame ``i`` is in the return part when
    ``i - m(i) >= H``: the view of the same place is outside the frames ``i - H + 1 .. i`` whose
    pixels reach frame ``i``'s prediction through attention, for every evaluated model, so only
    memory (or what intermediate generated frames still show) can bring it back.

The same frames are scored for every checkpoint and for a trivial baseline that repeats the last
context frame, so every number has a floor. Sampling is seeded per trajectory (``seed`` and the
trajectory's index), so a run is deterministic and independent of the batch size.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from world_model.config import SamplerConfig
from world_model.data.checks import DEFAULT_FRAME_SIZE, index_episodes, warn_episode
from world_model.data.format import action_indices, list_episodes, read_episode
from world_model.devices import resolve_dtype
from world_model.engine.rollout import RolloutEngine
from world_model.errors import DataError, UserError
from world_model.evaluation import metrics
from world_model.evaluation.clips import Trajectory, prediction_trajectories, revisit_mask
from world_model.evaluation.report import BASELINE, Report, save_frames, write_report
from world_model.evaluation.settings import EvalSettings
from world_model.seeding import trajectory_seed

logger = logging.getLogger(__name__)


#: What an evaluation trajectory holds besides image, action and reward (rad make-evalset).
EVAL_KEYS = ("context_frames", "outbound_frames")


def load_trajectories(data: str | os.PathLike, max_trajectories: int | None = None, *,
                      frame_size: int | None = DEFAULT_FRAME_SIZE, num_actions: int | None = None,
                      ) -> list[Trajectory]:
    """Evaluation trajectories under ``data`` (a directory or one file), sorted by path.

    Every file is checked once (:mod:`world_model.data.checks`: the layout, ``frame_size`` S of
    its ``(S, S, 3)`` frames, ``num_actions``, the integer scalars ``context_frames`` and
    ``outbound_frames``); one that fails, or whose scalars do not fit its length, is skipped with
    an :class:`~world_model.data.checks.EpisodeWarning` naming it. ``max_trajectories`` counts
    usable files.

    Raises:
        DataError: no usable trajectory; it names every file and why.
    """
    what = (f"{data} (evaluation trajectories need {list(EVAL_KEYS)}: write them with "
            f"rad make-evalset)")
    files = index_episodes(list_episodes(data), 2, EVAL_KEYS, optional=("agent_pos",),
                           frame_size=frame_size, num_actions=num_actions, refuse_empty=what)
    out, reasons = [], []
    for entry in files:
        if max_trajectories is not None and len(out) >= max_trajectories:
            break
        try:
            out.append(_trajectory(entry.path))
        except DataError as exc:
            reasons.append(str(exc))
            warn_episode(f"skipping evaluation trajectory {exc}")
    if not out:
        raise DataError(f"{what}: no usable trajectory among {len(files)}: {'; '.join(reasons)}")
    return out


def _trajectory(path: Path) -> Trajectory:
    """One checked file (see :func:`load_trajectories`) as a trajectory."""
    ep = read_episode(path)
    frames = ep["image"]
    T = len(frames)
    ctx, outbound = int(ep["context_frames"]), int(ep["outbound_frames"])
    if not 1 <= ctx < T:
        raise DataError(f"{path}: context_frames={ctx} must be in [1, {T - 1}] ({T} frames)")
    if not 1 <= outbound <= T:
        raise DataError(f"{path}: outbound_frames={outbound} must be in [1, {T}]")
    pos = ep.get("agent_pos")
    return Trajectory(path.stem, frames, action_indices(ep["action"]), ctx, outbound,
                      None if pos is None else np.asarray(pos, dtype=np.float64))


def matched_outbound(traj: Trajectory) -> np.ndarray:
    """``(T,)`` int64: for every frame, the outbound frame showing the same place (see module)."""
    T, O = len(traj.frames), traj.outbound_frames
    idx = np.arange(T)
    if traj.positions is None:
        return np.clip(2 * (O - 1) - idx, 0, O - 1)
    d = np.linalg.norm(traj.positions[:, None, :] - traj.positions[None, :O, :], axis=-1)  # (T, O)
    # argmin over the reversed outbound axis picks the latest of equally near frames
    return (O - 1) - np.argmin(d[:, ::-1], axis=1)


def return_mask(traj: Trajectory, horizon: int) -> np.ndarray:
    """``(G,)`` bool over the generated frames: True for the return part (see module)."""
    i = np.arange(traj.context_frames, len(traj.frames))
    return i - matched_outbound(traj)[i] >= horizon


# -- generation ----------------------------------------------------------------------------------
def generate(engine: RolloutEngine, trajs: Sequence[Trajectory], seeds: Sequence[int],
             progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Generate every trajectory's frames after its context, all rows in one batch.

    Contexts are right-aligned so that they all end at the same step: a row with a shorter context
    observes filler frames first and is reset just before its real first frame (reset rows are
    exact). Rows leave the batch once their frames are generated.

    Returns per trajectory ``(T - context_frames, H, W, 3)`` uint8.
    """
    B = len(trajs)
    ctx = [t.context_frames for t in trajs]
    gen = [t.generated for t in trajs]
    C = max(ctx)
    state = engine.init_state(B, list(seeds))
    for i in range(C):
        offset = [i - (C - c) for c in ctx]  # the row's own frame index at this step
        starting = [b for b in range(B) if offset[b] == 0]
        if starting and i > 0:
            state.reset_rows(starting)
        frames = np.stack([trajs[b].frames[max(offset[b], 0)] for b in range(B)])
        actions = np.array([trajs[b].actions[max(offset[b], 0)] for b in range(B)])
        engine.observe(state, torch.from_numpy(frames), torch.from_numpy(actions))
    outs: list[list[np.ndarray]] = [[] for _ in range(B)]
    active = list(range(B))
    for j in range(max(gen)):
        keep = [r for r, b in enumerate(active) if gen[b] > j]
        if len(keep) < len(active):
            state = state.index(keep)
            active = [active[r] for r in keep]
        actions = np.array([trajs[b].actions[ctx[b] + j] for b in active])
        frames, _ = engine.step(state, torch.from_numpy(actions))
        frames = frames.cpu().numpy()
        for r, b in enumerate(active):
            outs[b].append(frames[r])
        if progress is not None:
            progress(len(active))
    return [np.stack(o) for o in outs]


def baseline(traj: Trajectory) -> np.ndarray:
    """The floor: the last context frame repeated, ``(G, H, W, 3)`` uint8."""
    return np.repeat(traj.frames[traj.context_frames - 1][None], traj.generated, axis=0)


# -- scoring -------------------------------------------------------------------------------------
@dataclass
class Scores:
    """Per-frame scores of one model on one trajectory, each ``(G,)``."""

    psnr: np.ndarray
    ssim: np.ndarray
    lpips: np.ndarray | None


def score(real: np.ndarray, pred: np.ndarray, lpips_fn: metrics.LPIPSFn | None) -> Scores:
    return Scores(metrics.psnr(real, pred), metrics.ssim(real, pred),
                  None if lpips_fn is None else lpips_fn(real, pred))


@dataclass
class Row:
    """One line of the table: means over all generated frames, and over the return part."""

    name: str
    checkpoint: str | None
    memory: str | None = None
    mode: str | None = None
    window: int | None = None
    horizon: int | None = None
    psnr: float = math.nan
    ssim: float = math.nan
    lpips: float | None = None
    return_psnr: float | None = None
    return_ssim: float | None = None
    return_lpips: float | None = None


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def summarize(row: Row, scores: Sequence[Scores], masks: Sequence[np.ndarray]) -> Row:
    cat = {k: np.concatenate([getattr(s, k) for s in scores]) for k in ("psnr", "ssim")}
    mask = np.concatenate(masks)
    row.psnr, row.ssim = float(cat["psnr"].mean()), float(cat["ssim"].mean())
    row.return_psnr, row.return_ssim = _mean(cat["psnr"][mask]), _mean(cat["ssim"][mask])
    if all(s.lpips is not None for s in scores):
        lp = np.concatenate([s.lpips for s in scores])
        row.lpips, row.return_lpips = float(lp.mean()), _mean(lp[mask])
    return row


# -- the whole protocol --------------------------------------------------------------------------
def world_sampler_for(path: str | os.PathLike, settings: EvalSettings) -> SamplerConfig:
    """The sampler a world is scored with: its own (``sampler.json``, as its users get it;
    :func:`world_model.loading.world_sampler`), each field the settings give overriding it."""
    from world_model.loading import world_sampler

    return world_sampler(path, settings.steps, settings.eta, settings.sampler,
                         settings.context_level, settings.reencode)


def engine_for_settings(world, path: str | os.PathLike, settings: EvalSettings):
    """The engine a world is scored with (:func:`world_model.loading.engine_for`)."""
    from world_model.loading import engine_for

    return engine_for(world, path, steps=settings.steps, eta=settings.eta, kind=settings.sampler,
                      context_level=settings.context_level, reencode=settings.reencode,
                      dtype=settings.dtype, compile=settings.compile)


def evaluate(checkpoints: Sequence[str | os.PathLike], data: str | os.PathLike,
             out: str | os.PathLike, settings: EvalSettings | None = None,
             progress: Callable[[int, int], None] | None = None) -> Report:
    """Run the protocol for every checkpoint and write the report into ``out``:
    ``table.json``, ``table.md``, ``per_frame.json``, ``curves.png``, ``videos/*.gif`` (and
    ``frames/*.npz`` with ``settings.save_frames``); see :mod:`world_model.evaluation.report`.

    ``progress(n, total)`` is called after each batched step with the frames it generated and
    the frames to generate in all.
    """
    from world_model.checkpoint import load

    settings = settings or EvalSettings()
    if settings.batch < 1:
        raise UserError(f"--batch must be >= 1, got {settings.batch}")
    world_sampler_for(None, settings).validate()  # a bad override is named before any load
    resolve_dtype(settings.dtype)  # a bad dtype is named before any world loads
    worlds = [(Path(c), load(c, "cpu")) for c in checkpoints]  # configs first: fail early
    sizes = {path: world.config.latent.frame_size for path, world in worlds}
    if len(set(sizes.values())) > 1:
        raise UserError(f"the checkpoints make frames of different sizes {sizes}: evaluate them "
                        f"on separate data")
    check = {"frame_size": next(iter(sizes.values())),
             "num_actions": min(w.config.model.num_actions for _, w in worlds)}
    horizon = settings.horizon or max(w.config.model.horizon for _, w in worlds)
    if settings.protocol == "predict":

        trajs = prediction_trajectories(data, settings.context_frames, settings.predict_frames,
                                        horizon, settings.clip, settings.max_trajectories, **check)
        masks = [revisit_mask(t.positions, t.context_frames, horizon) if t.positions is not None
                 else np.zeros(t.generated, bool) for t in trajs]
    elif settings.protocol == "outbound-return":
        trajs = load_trajectories(data, settings.max_trajectories, **check)
        masks = [return_mask(t, horizon) for t in trajs]
    else:
        raise UserError(f"--protocol {settings.protocol!r}: expected outbound-return or predict")
    lpips_fn, lpips_note = metrics.load_lpips(settings.lpips_weights, settings.device)
    if lpips_fn is None:
        logger.warning("LPIPS %s", lpips_note)
    seeds = [trajectory_seed(settings.seed, i) for i in range(len(trajs))]
    total = sum(t.generated for t in trajs) * len(worlds)
    tick = None if progress is None else (lambda n: progress(n, total))
    # Batches of similar lengths keep the right-aligned contexts and the shrinking batch tight.
    order = sorted(range(len(trajs)), key=lambda i: (trajs[i].context_frames, len(trajs[i].frames)))
    names = _row_names([p for p, _ in worlds])
    rows, per_frame, videos = [], {}, {}
    base_scores = [score(t.frames[t.context_frames:], baseline(t), lpips_fn) for t in trajs]
    rows.append(summarize(Row(BASELINE, None), base_scores, masks))
    per_frame[BASELINE] = base_scores
    for name, (path, world) in zip(names, worlds):
        world.to(settings.device)
        engine = engine_for_settings(world, path, settings)
        generated: list[np.ndarray | None] = [None] * len(trajs)
        for start in range(0, len(order), settings.batch):
            idx = order[start:start + settings.batch]
            outs = generate(engine, [trajs[i] for i in idx], [seeds[i] for i in idx], tick)
            for i, o in zip(idx, outs):
                generated[i] = o
        world.to("cpu")
        scores = [score(t.frames[t.context_frames:], g, lpips_fn) for t, g in zip(trajs, generated)]
        cfg = world.config.model
        rows.append(summarize(Row(name, str(path), cfg.memory, cfg.mode, cfg.window, cfg.horizon),
                              scores, masks))
        per_frame[name] = scores
        videos[name] = generated[:settings.videos]
        if settings.save_frames:
            save_frames(Path(out) / "frames" / f"{name.strip('/').replace('/', '_')}.npz",
                         trajs, generated)
        logger.info("%s: PSNR %.2f SSIM %.3f", name, rows[-1].psnr, rows[-1].ssim)
    report = Report(rows, len(trajs), sum(t.generated for t in trajs),
                    int(sum(m.sum() for m in masks)), horizon, lpips_note,
                    {**asdict(settings), "checkpoints": [str(c) for c in checkpoints],
                     "data": str(data)})
    write_report(Path(out), report, trajs, masks, per_frame, videos, settings.fps)
    return report


def _row_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for n, p in zip(names, paths)]
