"""``EnvConfig``: every option of the learned env, in one typed place.

``RADEnv``, ``RADVecEnv``, ``RADVectorEnv`` and :class:`~rad_env.worlds.BatchedWorlds` take these
fields as keyword arguments (``gymnasium.make("rad_env:RAD-MemoryMaze-v0", steps=2, device="cuda")``)
or a ready ``config=EnvConfig(...)``; :meth:`EnvConfig.from_kwargs` turns the keywords into a
config, and names an unknown keyword together with the ones that exist. Values are checked here,
once, when the config is made; what can only be checked against the world (the context length
against the bank, the steps against the sampler) is checked when the world loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from world_model.errors import UserError

#: How the reward head's output becomes the env's reward.
REWARD_MODES = ("round", "raw")
#: Where resets start by default (``reset(options={"context": ...})`` overrides it per reset).
CONTEXT_SOURCES = ("bank", "data", "real")


@dataclass(frozen=True)
class EnvConfig:
    """The options of a learned env (all optional; the defaults come from the world)."""

    contexts: str | os.PathLike | None = None
    """A ``contexts.npz`` bank of real starting clips (default: the checkpoint's own)."""
    context: str = "bank"
    """Where resets start: ``"bank"`` (the context bank), ``"data"`` (random windows of the episode
    files under ``data_dir``) or ``"real"`` (the real env the world learned, run for the context
    length under random actions)."""
    data_dir: str | os.PathLike | None = None
    """A directory of episode files, for ``context="data"``."""
    context_len: int | None = None
    """Real frames per context (default: the bank's clip length; without a bank ``2 * window``)."""
    device: Any = "cpu"
    """``"cpu"``, ``"cuda"``, ``"auto"``, ... (:func:`world_model.devices.resolve_device`)."""
    steps: int | None = None
    """Sampler steps per frame. Default: the world's ``sampler.json`` (the steps it was measured
    best with; the shipped world has one), else :data:`world_model.loading.DEFAULT_STEPS`."""
    eta: float | None = None
    """DDIM stochasticity (0: deterministic given the initial noise). Default: the world's
    ``sampler.json``, else 0."""
    context_level: int | None = None
    """Noise level at which the world sees its context frames (``SamplerConfig.context_level``,
    a defence against drift). Default: the world's ``sampler.json`` (the shipped world: 25),
    else 0 (clean) for worlds trained with 'independent' context."""
    reencode: bool | None = None
    """Decode and re-encode every imagined frame before it joins the world's context
    (``SamplerConfig.reencode``, a defence against drift). Default: the world's ``sampler.json``,
    else off."""
    dtype: Any = "auto"
    """Compute dtype of the network: ``"auto"`` (bfloat16 where the device computes it natively: a
    GPU, or a CPU with avx512_bf16 / AMX; float32 elsewhere, where bfloat16 is emulated and slower),
    ``"float32"``, ``"bfloat16"``, ``"float16"`` (run under autocast, state kept in float32)."""
    reward_mode: str | None = None
    """``"round"``: 1.0 where the predicted reward is >= ``reward_threshold``, else 0.0 (Memory
    Maze rewards are 0 or 1); ``"raw"``: the reward head's output. Default: the real env's (round
    for Memory Maze, raw for the others)."""
    reward_threshold: float | None = None
    """``"round"``: the reward head's output that counts as a reward event. Default: the world's
    ``sampler.json`` (chosen by ``rad reward-check --save-threshold``), else 0.5."""
    max_steps: int | None = None
    """Episode length in steps after the reset, after which an episode is truncated. This env is
    the one place that decides it (the learned ids register no Gymnasium ``TimeLimit``). Default:
    the real env's (Memory Maze 9x9: 1000, Crafter: 10000, MineRL Navigate: 6000; 1000 without
    one)."""
    real_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments of the real env for ``context="real"`` (Memory Maze: task arguments, e.g.
    ``camera_resolution``)."""
    family: str | None = None
    """The kind of world this face serves (``"memory-maze"``: ``RAD-MemoryMaze-v0``); a checkpoint
    of another env is refused. None: any (``RAD-v0``)."""
    compile: bool = False
    """``torch.compile`` the engine's frame pass (falls back to eager where compilation is
    unavailable); measured cost and gain in docs/env.md."""
    processes: int | str = "auto"
    """Vector envs (``RADVecEnv``, ``RADVectorEnv``): worker processes the rows are split across,
    each running its own engine on its share with ``cpu_count // processes`` torch threads
    (:mod:`rad_env.sharded`); on a CPU, where a frame is many small kernels, processes use the
    cores better than threads (measured in docs/env.md). 1: the rows are stepped here.
    ``"auto"``: one process per :data:`rad_env.sharded.ROWS_PER_PROCESS` rows, at most one per
    core, on an eager CPU engine; 1 on a GPU or with ``compile`` (where two processes measured
    slower) - :func:`rad_env.sharded.choose_processes`."""

    def __post_init__(self) -> None:
        if self.context not in CONTEXT_SOURCES:
            raise UserError(f"context={self.context!r}: expected one of {CONTEXT_SOURCES}")
        if self.context == "data" and self.data_dir is None:
            raise UserError("context='data' needs data_dir=DIR (a directory of episode files)")
        if self.reward_mode not in (None, *REWARD_MODES):
            raise UserError(f"reward_mode={self.reward_mode!r}: expected one of {REWARD_MODES}")
        th = self.reward_threshold
        if th is not None and (isinstance(th, bool) or not isinstance(th, Real) or not 0 < th < 1):
            raise UserError(f"reward_threshold must be a number in (0, 1), got {th!r}")
        if self.processes != "auto" and (isinstance(self.processes, bool)
                                          or not isinstance(self.processes, Integral)
                                          or self.processes < 1):
            raise UserError(f"processes must be >= 1 (an integer) or 'auto', got {self.processes!r}")
        for name in ("max_steps", "context_len"):  # steps and eta: checked by the sampler
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)
                                      or value < 1):
                raise UserError(f"{name} must be >= 1 (an integer), got {value!r}")
        object.__setattr__(self, "real_env_kwargs", dict(self.real_env_kwargs or {}))

    @classmethod
    def from_kwargs(cls, config: EnvConfig | None = None, **kwargs: Any) -> EnvConfig:
        """``config`` (default: all defaults) with ``kwargs`` replacing its fields; an unknown
        keyword is a :class:`UserError` that names it, the closest field and every field."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, names, 1))
                     else repr(k) for k in unknown]
            raise UserError(f"unknown option(s) of the learned env: {', '.join(hints)}; the "
                            f"options are {', '.join(names)} (rad_env.config.EnvConfig)")
        if kwargs.get("real_env_kwargs") is None:
            kwargs.pop("real_env_kwargs", None)
        base = config if config is not None else cls()
        return dataclasses.replace(base, **kwargs)
