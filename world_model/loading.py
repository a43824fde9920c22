"""One path from a world directory to a ready rollout engine, honouring its ``sampler.json``.

Every command, env face and agent tool that samples a trained world goes through
:func:`load_engine` (or :func:`world_sampler` when it holds the world already), so a world is
always sampled the way its ``sampler.json`` says unless the caller overrides a field.
:func:`resolve_checkpoint` turns "no checkpoint given" into the world shipped with the package
(``rad_env/weights/memory-maze-9x9``), found without importing ``rad_env``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from numbers import Real
from pathlib import Path

import torch

from world_model.checkpoint import load, load_sampler
from world_model.config import SamplerConfig
from world_model.devices import resolve_dtype
from world_model.engine.rollout import RolloutEngine
from world_model.errors import CheckpointError, UserError
from world_model.world import World

#: Sampler steps per frame of a world without ``sampler.json``, unless the caller says otherwise.
DEFAULT_STEPS = 10


def shipped_weights(name: str) -> Path:
    """``rad_env/weights/<name>`` of the installed ``rad_env`` package (the shipped world, VAE
    and IDM judge live there), located without importing the package; the path may not exist."""
    spec = importlib.util.find_spec("rad_env")
    if spec is None or not spec.submodule_search_locations:
        return Path("rad_env") / "weights" / name  # no rad_env installed: a path that is absent
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / name


#: The world shipped inside the package: a run directory plus ``contexts.npz``.
SHIPPED_WORLD = shipped_weights("memory-maze-9x9")


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path:
    """``checkpoint`` as a path; None is the shipped world (a clear error if it is not there)."""
    if checkpoint is not None:
        return Path(checkpoint)
    if not (SHIPPED_WORLD / "config.json").is_file():
        raise CheckpointError(
            f"this rad-env installation ships no world weights ({SHIPPED_WORLD} has no "
            f"config.json). Pass checkpoint=RUN_DIR (RAD-v0 takes a world of any environment): "
            f"a directory with config.json + "
            f"model.safetensors (from `rad train`) and its real starting clips in "
            f"RUN_DIR/contexts.npz (rad_env.bank.make_context_bank), or given by "
            f"contexts=FILE, data_dir=DIR with context='data', or context='real'.")
    return SHIPPED_WORLD


def world_sampler(run_dir: str | os.PathLike | None, steps: int | None = None,
                  eta: float | None = None, kind: str | None = None,
                  context_level: int | None = None,
                  reencode: bool | None = None) -> SamplerConfig:
    """The sampler of a world: its ``sampler.json`` (else :data:`DEFAULT_STEPS` deterministic
    DDIM), each field given here (not None) overriding it."""
    base = (load_sampler(run_dir) if run_dir is not None else None) or SamplerConfig(DEFAULT_STEPS)
    for name, value in (("steps", steps), ("eta", eta), ("context_level", context_level)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise UserError(f"{name}={value!r}: expected a number")
    return replace(base, steps=base.steps if steps is None else int(steps),
                   eta=base.eta if eta is None else float(eta),
                   kind=base.kind if kind is None else kind,
                   context_level=base.context_level if context_level is None else int(context_level),
                   reencode=base.reencode if reencode is None else bool(reencode))


def engine_for(world: World, run_dir: str | os.PathLike | None = None, *,
               steps: int | None = None, eta: float | None = None, kind: str | None = None,
               context_level: int | None = None, reencode: bool | None = None,
               dtype: str | torch.dtype | None = None, compile: bool = False) -> RolloutEngine:
    """A rollout engine over a loaded ``world`` with the sampler of ``run_dir`` (see
    :func:`world_sampler`); ``dtype``: the compute dtype (None: the weights'; ``"auto"``: bfloat16
    where the world's device computes it natively, else float32)."""
    sampler = world_sampler(run_dir, steps, eta, kind, context_level, reencode).validate(
        world.diffusion.num_levels)
    compute = resolve_dtype(dtype, next(world.model.parameters()).device) if dtype else None
    return RolloutEngine(world, sampler, compute_dtype=compute,
                         compile=compile)


def load_engine(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu",
                steps: int | None = None, eta: float | None = None, kind: str | None = None,
                context_level: int | None = None, reencode: bool | None = None,
                dtype: str | torch.dtype | None = "auto", compile: bool = False) -> RolloutEngine:
    """Load the world in ``run_dir`` (:func:`world_model.checkpoint.load`) onto ``device`` and
    build its engine with its own sampler, fields given here overriding ``sampler.json``.

    Raises:
        CheckpointError: a missing or corrupt world or sampler file (named).
        UserError: a bad override.
    """
    world = load(Path(run_dir), device)
    return engine_for(world, run_dir, steps=steps, eta=eta, kind=kind,
                      context_level=context_level, reencode=reencode, dtype=dtype,
                      compile=compile)
