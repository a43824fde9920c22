"""One path from a world directory to a ready rollout engine, honouring its ``sampler.json``.

Every command, env face and agent tool that samples a trained world goes through
:func:`load_engine` (or :func:`world_sampler` when it holds the world already), so a world is
always sampled the way its ``sampler.json`` says unless the caller overrides a field.
"""

from __future__ import annotations

import os
from dataclasses import replace
from numbers import Real
from pathlib import Path

import torch

from world_model.checkpoint import load, load_sampler
from world_model.config import SamplerConfig
from world_model.devices import resolve_dtype
from world_model.engine.rollout import RolloutEngine
from world_model.errors import UserError
from world_model.world import World

#: Sampler steps per frame of a world without ``sampler.json``, unless the caller says otherwise.
DEFAULT_STEPS = 10


def world_sampler(run_dir: str | os.PathLike | None, steps: int | None = None,
                  eta: float | None = None, kind: str | None = None,
                  context_level: int | None = None) -> SamplerConfig:
    """The sampler of a world: its ``sampler.json`` (else :data:`DEFAULT_STEPS` deterministic
    DDIM), each field given here (not None) overriding it."""
    base = (load_sampler(run_dir) if run_dir is not None else None) or SamplerConfig(DEFAULT_STEPS)
    for name, value in (("steps", steps), ("eta", eta), ("context_level", context_level)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise UserError(f"{name}={value!r}: expected a number")
    return replace(base, steps=base.steps if steps is None else int(steps),
                   eta=base.eta if eta is None else float(eta),
                   kind=base.kind if kind is None else kind,
                   context_level=base.context_level if context_level is None else int(context_level))


def engine_for(world: World, run_dir: str | os.PathLike | None = None, *,
               steps: int | None = None, eta: float | None = None, kind: str | None = None,
               context_level: int | None = None, dtype: str | torch.dtype | None = None,
               compile: bool = False) -> RolloutEngine:
    """A rollout engine over a loaded ``world`` with the sampler of ``run_dir`` (see
    :func:`world_sampler`); ``dtype``: the compute dtype (None: the weights')."""
    sampler = world_sampler(run_dir, steps, eta, kind, context_level).validate(
        world.diffusion.num_levels)
    return RolloutEngine(world, sampler, compute_dtype=resolve_dtype(dtype) if dtype else None,
                         compile=compile)


def load_engine(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu",
                steps: int | None = None, eta: float | None = None, kind: str | None = None,
                context_level: int | None = None, dtype: str | torch.dtype | None = None,
                compile: bool = False) -> RolloutEngine:
    """Load the world in ``run_dir`` (:func:`world_model.checkpoint.load`) onto ``device`` and
    build its engine with its own sampler, fields given here overriding ``sampler.json``.

    Raises:
        CheckpointError: a missing or corrupt world or sampler file (named).
        UserError: a bad override.
    """
    world = load(Path(run_dir), device)
    return engine_for(world, run_dir, steps=steps, eta=eta, kind=kind,
                      context_level=context_level, dtype=dtype, compile=compile)
