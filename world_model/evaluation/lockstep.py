"""``rad eval --protocol lockstep``: every world from the same real contexts of held-out episodes,
stepped open loop with their recorded actions, judged by an inverse-dynamics model
(:mod:`world_model.evaluation.fidelity` says what is measured).

Each world samples with its own ``sampler.json`` (the sampler its users get) unless the settings
name DDIM steps; the report records which.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from world_model.devices import resolve_dtype
from world_model.errors import UserError
from world_model.evaluation.fidelity import LockstepReport, lockstep_report, write_lockstep
from world_model.evaluation.protocol import (
    EvalSettings,
    _row_names,
    engine_for_settings,
    generate,
    trajectory_seed,
)

logger = logging.getLogger(__name__)


def evaluate_lockstep(checkpoints: Sequence[str | os.PathLike], data: str | os.PathLike,
                      out: str | os.PathLike, idm_dir: str | os.PathLike,
                      settings: EvalSettings,
                      progress: Callable[[int, int], None] | None = None) -> LockstepReport:
    """Run the lockstep protocol for every checkpoint on the held-out episodes under ``data``
    (the first ``context_frames + predict_frames`` frames of each) and write
    ``out/lockstep.{md,json,png}``.

    Raises:
        UserError: bad counts or worlds of another frame size / action set than the IDM.
        CheckpointError: an unreadable world or IDM. DataError: no usable episode.
    """
    from world_model.checkpoint import load
    from world_model.evaluation.clips import prediction_trajectories
    from world_model.evaluation.idm import load_idm

    if settings.batch < 1:
        raise UserError(f"--batch must be >= 1, got {settings.batch}")
    resolve_dtype(settings.dtype)
    idm = load_idm(idm_dir)
    worlds = [(Path(c), load(c, "cpu")) for c in checkpoints]
    for path, world in worlds:
        size, acts = world.config.latent.frame_size, world.config.model.num_actions
        if size != idm.cfg.frame_size or acts != idm.cfg.num_actions:
            raise UserError(f"{path}: a world of {size}px frames and {acts} actions cannot be "
                            f"judged by the IDM in {idm_dir} ({idm.cfg.frame_size}px, "
                            f"{idm.cfg.num_actions} actions)")
    trajs = prediction_trajectories(data, settings.context_frames, settings.predict_frames, 1,
                                    "start", settings.max_trajectories,
                                    frame_size=idm.cfg.frame_size, num_actions=idm.cfg.num_actions)
    if len(trajs) < 2:
        raise UserError(f"{data}: the lockstep protocol needs at least 2 held-out episodes of "
                        f"{settings.context_frames + settings.predict_frames} frames (the realism "
                        f"floor compares two halves), found {len(trajs)}")
    seeds = [trajectory_seed(settings.seed, i) for i in range(len(trajs))]
    total = len(trajs) * settings.predict_frames * len(worlds)
    tick = None if progress is None else (lambda n: progress(n, total))
    names = _row_names([p for p, _ in worlds])
    imagined: dict[str, list[np.ndarray]] = {}
    samplers = {}
    for name, (path, world) in zip(names, worlds):
        world.to(settings.device)
        engine = engine_for_settings(world, path, settings)
        sampler = engine.sampler.config
        samplers[name] = {"kind": sampler.kind, "steps": sampler.steps, "eta": sampler.eta,
                          "rho": sampler.rho, "context_level": engine.context_level,
                          "reencode": engine.reencode}
        frames: list[np.ndarray] = []
        for start in range(0, len(trajs), settings.batch):
            frames += generate(engine, trajs[start:start + settings.batch],
                               seeds[start:start + settings.batch], tick)
        world.to("cpu")
        imagined[name] = frames
        logger.info("%s: %d episodes imagined (%s)", name, len(frames), samplers[name])
    report = lockstep_report(
        idm, [t.frames for t in trajs], [t.actions for t in trajs], settings.context_frames,
        imagined, {"checkpoints": [str(c) for c in checkpoints], "data": str(data),
                   "idm": str(idm_dir), "samplers": samplers, "seed": settings.seed,
                   "dtype": settings.dtype, "compile": settings.compile})
    write_lockstep(Path(out), report, [t.frames for t in trajs], imagined, settings.videos)
    return report
