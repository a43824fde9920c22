"""N learned worlds started from real frames and stepped by ONE batched engine call.

The worlds are those of any checkpoint: a world of Memory Maze, Crafter, MineRL or any Gymnasium
pixel env. Its spaces come from the checkpoint (``latent.frame_size``, ``model.num_actions``) and
what it imitates from the real env it learned (``train.env_id``, :mod:`world_model.sim.real_envs`):
the episode length, how rewards are read and where ``context="real"`` resets start.

:class:`BatchedWorlds` is the core under every Gymnasium face of the learned world: ``RADEnv``
(:mod:`rad_env.env`, one row) and the vector envs of :mod:`rad_env.vector` (N rows). It holds the
engine state of the rows, draws their real starting contexts (:mod:`rad_env.reset_options`),
steps and observes them, counts their episode steps and branches them (snapshots).

Values cross from numpy to torch once on the way in (actions, observed frames, contexts) and
from torch to numpy once on the way out (frames, rewards); actions and frames are checked once, by
the engine's public methods (:mod:`world_model.engine.checks`). All sampling noise comes
from one ``torch.Generator`` per row, seeded from that row's numpy generator at its reset (the
env's ``np_random`` for ``RADEnv``), so a seeded reset and the actions after it fix every frame.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rad_env.config import EnvConfig
from rad_env.contexts import stack_contexts
from rad_env.reset_options import ContextChooser
from world_model.checkpoint import load, load_reward_threshold
from world_model.engine.rollout import StepInfo
from world_model.engine.world_state import WorldState
from world_model.errors import CheckpointError, UserError
from world_model.loading import (  # noqa: F401 (re-exported: where env users look for them)
    DEFAULT_STEPS,
    SHIPPED_WORLD,
    engine_for,
    resolve_checkpoint,
    world_sampler,
)
from world_model.sim.real_envs import RealEnvSpec, real_env_spec

logger = logging.getLogger(__name__)

#: Episode length of a world whose real env has no time limit.
DEFAULT_MAX_STEPS = 1000


def world_env_spec(env_id: str) -> RealEnvSpec:
    """What a world of the real env ``env_id`` imitates; a ``gym:`` env that cannot be looked up
    here (its module not importable) gets raw rewards and episodes of :data:`DEFAULT_MAX_STEPS`."""
    try:
        return real_env_spec(env_id)
    except UserError as exc:
        if not env_id.startswith("gym:"):
            raise CheckpointError(f"the world's train.env_id: {exc}") from exc
        logger.warning("%s; the learned env reads rewards raw and ends episodes after %d steps "
                       "(max_steps= to change)", exc, DEFAULT_MAX_STEPS)
        return RealEnvSpec(env_id, "gym", None, "raw")


@dataclass
class StepResult:
    """One frame for every row; arrays have the row as first axis (N rows)."""

    obs: np.ndarray
    """``(N, H, W, 3)`` uint8: the new frames (imagined, or the observed real ones)."""
    reward: np.ndarray
    """``(N,)`` float32 reward after ``reward_mode``."""
    reward_raw: np.ndarray
    """``(N,)`` float32 output of the reward head (0 without one)."""
    termination_prob: np.ndarray
    """``(N,)`` float32 in [0, 1] from the termination head (0 without one)."""
    terminated: np.ndarray
    """``(N,)`` bool: termination probability above 0.5."""
    truncated: np.ndarray
    """``(N,)`` bool: the row reached ``max_steps`` steps since its reset."""
    frame_index: np.ndarray
    """``(N,)`` int64: index of the new frame in its world, context frames included."""
    episode_step: np.ndarray
    """``(N,)`` int64: steps since the row's reset (``info["step"]``)."""
    imagined: bool
    sampling_steps: int
    """DDIM steps per frame."""

    def info(self, i: int) -> dict[str, Any]:
        """Row ``i``'s Gymnasium info dict."""
        return {"frame_index": int(self.frame_index[i]), "step": int(self.episode_step[i]),
                "sampling_steps": self.sampling_steps, "imagined": self.imagined,
                "reward_raw": float(self.reward_raw[i]),
                "termination_prob": float(self.termination_prob[i])}


@dataclass
class WorldSnapshot:
    """Everything that decides how the rows go on: engine state (KV cache, memory, per-row torch
    generators), step counters, last frames, and the numpy generators that draw contexts."""

    state: WorldState
    episode_step: np.ndarray
    obs: np.ndarray
    ended: np.ndarray
    started: np.ndarray
    rng_states: list[dict[str, Any]]
    sources: list[tuple[str, int]]
    extra: dict[str, Any] = field(default_factory=dict)


class BatchedWorlds:
    """N learned worlds, each started from real frames, stepped by one batched engine call.

    Args:
        num_envs: N rows.
        checkpoint: run directory (``config.json`` + ``model.safetensors`` [+ ``vae/``] [+
            ``contexts.npz``] [+ ``sampler.json``]); None: the shipped world.
        config: the env's options (:class:`~rad_env.config.EnvConfig`); default: all defaults.
        **options: fields of :class:`~rad_env.config.EnvConfig` replacing those of ``config``
            (``steps=2, device="cuda"``, ...); an unknown name is an error that names it.

    Raises:
        CheckpointError: a missing or corrupt checkpoint, or no context bank where one is needed.
        UserError: a bad argument (named).
    """

    def __init__(self, num_envs: int = 1, checkpoint: str | os.PathLike | None = None, *,
                 config: EnvConfig | None = None, **options: Any) -> None:
        if int(num_envs) < 1:
            raise UserError(f"num_envs must be >= 1, got {num_envs}")
        self.config = cfg = EnvConfig.from_kwargs(config, **options)
        self.run_dir = resolve_checkpoint(checkpoint)
        self.world = load(self.run_dir, cfg.device)
        self.env_id = self.world.config.train.env_id
        self.real_env = world_env_spec(self.env_id)
        """What the world imitates (:class:`~world_model.sim.real_envs.RealEnvSpec`)."""
        if cfg.family is not None and self.real_env.family != cfg.family:
            raise UserError(f"{self.run_dir} is a world of {self.env_id!r}, not of {cfg.family}: "
                            f"make it with gymnasium.make('rad_env:RAD-v0', checkpoint=...)")
        self.num_envs = int(num_envs)
        self.reward_mode = cfg.reward_mode or self.real_env.reward_mode
        self.reward_threshold = (load_reward_threshold(self.run_dir) if cfg.reward_threshold is None
                                 else float(cfg.reward_threshold))
        """``"round"`` rewards: the head's output counted as a reward event (``sampler.json``)."""
        self.max_steps = int(cfg.max_steps or self.real_env.episode_steps or DEFAULT_MAX_STEPS)
        """Episode length: a row is truncated after this many steps since its reset (the one
        place truncation is decided)."""
        self.engine = engine_for(self.world, self.run_dir, steps=cfg.steps, eta=cfg.eta,
                                 context_level=cfg.context_level, reencode=cfg.reencode,
                                 dtype=cfg.dtype,
                                 compile=cfg.compile)
        self.sampling_steps = self.engine.sampler.steps
        self.frame_size = self.world.config.latent.frame_size
        self.num_actions = self.world.config.model.num_actions
        self.observation_space = spaces.Box(0, 255, (self.frame_size, self.frame_size, 3), np.uint8)
        self.action_space = spaces.Discrete(self.num_actions)
        window = self.world.config.model.window
        self.contexts = ContextChooser(
            self.run_dir, self.frame_size, self.num_actions, window, contexts=cfg.contexts,
            context=cfg.context, data_dir=cfg.data_dir, context_len=cfg.context_len,
            real_env_kwargs=cfg.real_env_kwargs, env_id=self.env_id)
        self.rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self.state: WorldState | None = None
        N, H = self.num_envs, self.frame_size
        self.obs = np.zeros((N, H, H, 3), np.uint8)
        self.episode_step = np.zeros(N, np.int64)
        """``(N,)`` int64: steps each row has taken since its reset."""
        self.ended = np.ones(N, bool)  # no episode under way: reset first
        self.started = np.zeros(N, bool)
        self.sources: list[tuple[str, int]] = [("", -1)] * N  # (source, clip) of each row
        logger.info("world %s of %s on %s: %d sampler steps, window %d, contexts of %d frames (%s)",
                    self.run_dir, self.env_id, self.engine.device, self.sampling_steps, window,
                    self.contexts.context_len, cfg.context)

    # -- rows -------------------------------------------------------------------------------------
    def seed_row(self, row: int, seed: int | np.random.Generator) -> None:
        """Give row ``row`` a new numpy generator (contexts and noise seeds of its resets), or
        the caller's own (``RADEnv`` hands over its ``np_random``)."""
        self.rngs[row] = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def reset_rows(self, rows: Sequence[int], options: dict[str, Any] | None = None) -> None:
        """Start ``rows`` afresh from real contexts (the other rows are untouched)."""
        rows = [int(r) for r in rows]
        drawn = self.contexts.draw([self.rngs[r] for r in rows], options)
        seeds = [int(self.rngs[r].integers(2**63 - 1)) for r in rows]
        if self.state is None:
            self.state = self.engine.init_state(self.num_envs, seeds=0)
        for length in sorted({len(c.frames) for c in drawn}):
            group = [k for k, c in enumerate(drawn) if len(c.frames) == length]
            frames, actions = stack_contexts([drawn[k] for k in group])
            new = self.engine.start(torch.from_numpy(frames), torch.from_numpy(actions),
                                    seeds=[seeds[k] for k in group])
            self.state[[rows[k] for k in group]] = new
        for r, c in zip(rows, drawn):
            self.obs[r] = c.frames[-1]
            self.sources[r] = (c.source, c.clip)
        self.episode_step[rows], self.ended[rows], self.started[rows] = 0, False, True

    def reset_info(self, row: int) -> dict[str, Any]:
        """Row ``row``'s info after its reset."""
        assert self.state is not None
        source, clip = self.sources[row]
        return {"frame_index": int(self.state.frame_index[row]) - 1, "step": 0,
                "sampling_steps": self.sampling_steps, "imagined": False,
                "context_source": source, "clip": clip}

    # -- frames -----------------------------------------------------------------------------------
    def _rows_of(self, values: Any) -> Any:
        """One value per row: a scalar (or size-1 array) counts as ``(1,)`` when N = 1. The
        engine checks the result (shape, dtype, range) and names what is wrong."""
        if self.num_envs == 1 and np.ndim(values) == 0:
            return np.reshape(values, 1)
        return values

    def _require_started(self) -> WorldState:
        if self.state is None or not self.started.all():
            raise ResetNeeded("step() before reset(): every environment must be reset first")
        return self.state

    def step(self, actions: Any) -> StepResult:
        """Imagine one frame for every row: ``actions (N,)`` integers -> :class:`StepResult`."""
        frames, info = self.engine.step(self._require_started(), self._rows_of(actions))
        return self._finish(frames.cpu().numpy(), info, imagined=True)

    def observe(self, frames: Any, actions: Any) -> StepResult:
        """Feed real frames ``(N, H, W, 3)`` uint8, reached by ``actions (N,)``, instead of
        imagined ones: the world goes on from reality."""
        state = self._require_started()
        info = self.engine.observe(state, frames, self._rows_of(actions))  # checks both
        obs = np.array(frames, dtype=np.uint8, copy=True)  # the caller keeps its array
        return self._finish(obs, info, imagined=False)

    def _finish(self, obs: np.ndarray, info: StepInfo, imagined: bool) -> StepResult:
        N = self.num_envs
        raw = info.reward.cpu().numpy() if info.reward is not None else np.zeros(N, np.float32)
        prob = (info.termination_prob.cpu().numpy() if info.termination_prob is not None
                else np.zeros(N, np.float32))
        reward = ((raw >= self.reward_threshold).astype(np.float32) if self.reward_mode == "round"
                  else raw)
        self.episode_step += 1
        terminated, truncated = prob > 0.5, self.episode_step >= self.max_steps
        self.obs[:] = obs
        self.ended |= terminated | truncated
        assert self.state is not None
        return StepResult(obs, reward.astype(np.float32), raw.astype(np.float32),
                          prob.astype(np.float32), terminated, truncated,
                          self.state.frame_index.numpy() - 1, self.episode_step.copy(), imagined,
                          self.sampling_steps)

    # -- branching --------------------------------------------------------------------------------
    def snapshot(self) -> WorldSnapshot:
        """A deep copy of everything that decides the future of every row."""
        if self.state is None:
            raise ResetNeeded("get_state() before reset(): there is no world to snapshot yet")
        return WorldSnapshot(self.state.clone(), self.episode_step.copy(), self.obs.copy(),
                             self.ended.copy(), self.started.copy(),
                             [copy.deepcopy(r.bit_generator.state) for r in self.rngs],
                             list(self.sources))

    def restore(self, snapshot: WorldSnapshot) -> None:
        """Go back to ``snapshot`` (it stays valid: restore it again for another branch)."""
        if snapshot.state.batch_size != self.num_envs:
            raise UserError(f"snapshot of {snapshot.state.batch_size} environment(s) cannot be "
                            f"restored into {self.num_envs}")
        self.state = snapshot.state.clone()
        self.episode_step, self.obs = snapshot.episode_step.copy(), snapshot.obs.copy()
        self.ended, self.started = snapshot.ended.copy(), snapshot.started.copy()
        for rng, st in zip(self.rngs, snapshot.rng_states):
            rng.bit_generator.state = copy.deepcopy(st)
        self.sources = list(snapshot.sources)

    def state_bytes(self) -> int:
        """Bytes of engine state per row (KV cache, memory, pending latents, generator)."""
        return self._require_started().nbytes()

    def close(self) -> None:
        """Free the real env of ``"real"`` contexts (a Memory Maze task is closed after each
        draw; other envs are kept for the next)."""
        self.contexts.close()
