"""The learned world as a Gymnasium environment: ``RADEnv``, over the batched engine core.

``gymnasium.make("rad_env:RAD-MemoryMaze-v0")`` builds :class:`RADEnv`: the same spaces as the
real ``MemoryMaze-9x9-v0`` (observation ``Box(0, 255, (64, 64, 3), uint8)``, ``Discrete(6)``
actions) and the same episode length (1000 steps, then truncation), so an agent moves between the
learned and the real env unchanged.

* ``reset(seed=..., options=...)`` starts from REAL frames (see :mod:`rad_env.contexts`): a clip
  shipped with the weights by default; ``options={"context": "data"}`` a window of the episode
  files under ``data_dir``; ``{"context": "real"}`` the real Memory Maze run for the context
  length; ``{"clip": k}`` clip ``k`` of the bank; ``{"frames": (C, 64, 64, 3) uint8,
  "actions": (C,) int}`` the caller's own. The observation is the last real frame.
* ``step(action)`` imagines one frame: ``steps`` DDIM passes plus one clean pass against the
  cached window and the recurrent memory (constant cost per frame). The reward and termination
  come from heads trained with the world model on the real rewards.
* ``observe(frame, action)`` feeds a real frame instead of an imagined one (grounding);
  ``get_state()``/``set_state()`` branch futures from one moment.

:class:`BatchedWorlds` is the engine core shared with the vector envs of :mod:`rad_env.vector`:
N rows, one batched engine call per step. All sampling noise comes from one ``torch.Generator``
per row, seeded from that row's numpy generator at its reset (the env's ``np_random`` here), so a
seeded reset and the actions after it fix every frame.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, SupportsFloat

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rad_env.contexts import ContextChooser, stack_contexts
from world_model.checkpoint import load
from world_model.errors import CheckpointError, UserError
from world_model.rollout import RolloutEngine, StepInfo, WorldState
from world_model.sampler import SamplerConfig

logger = logging.getLogger(__name__)

#: DDIM steps per frame unless ``steps=`` says otherwise.
DEFAULT_STEPS = 10
#: The world shipped inside the package: a run directory plus ``contexts.npz``.
SHIPPED_WORLD = Path(__file__).resolve().parent / "weights" / "memory-maze-9x9"
REWARD_MODES = ("round", "raw")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path:
    """``checkpoint`` as a path; None is the shipped world (a clear error if it is not there)."""
    if checkpoint is not None:
        return Path(checkpoint)
    if not (SHIPPED_WORLD / "config.json").is_file():
        raise CheckpointError(
            f"this rad-env installation ships no world weights ({SHIPPED_WORLD} has no "
            f"config.json). Pass checkpoint=RUN_DIR: a directory with config.json + "
            f"model.safetensors (from `rad train`) and its real starting clips in "
            f"RUN_DIR/contexts.npz (rad_env.contexts.make_context_bank), or given by "
            f"contexts=FILE, data_dir=DIR with context='data', or context='real'.")
    return SHIPPED_WORLD


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None: CUDA when available, else the CPU; otherwise ``torch.device(device)``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"device={device!r}: not a torch device ({exc})") from exc


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, ``"float16"`` (or the torch dtype): the compute dtype."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype not in _DTYPES:
        raise UserError(f"dtype={dtype!r}: expected one of {list(_DTYPES)}")
    return _DTYPES[dtype]


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
    step: np.ndarray
    """``(N,)`` int64: steps since the row's reset."""
    imagined: bool
    sampling_steps: int

    def info(self, i: int) -> dict[str, Any]:
        """Row ``i``'s Gymnasium info dict."""
        return {"frame_index": int(self.frame_index[i]), "step": int(self.step[i]),
                "sampling_steps": self.sampling_steps, "imagined": self.imagined,
                "reward_raw": float(self.reward_raw[i]),
                "termination_prob": float(self.termination_prob[i])}


@dataclass
class WorldSnapshot:
    """Everything that decides how the rows go on: engine state (KV cache, memory, per-row torch
    generators), step counters, last frames, and the numpy generators that draw contexts."""

    state: WorldState
    steps: np.ndarray
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
            ``contexts.npz``]); None: the shipped world.
        contexts: a ``contexts.npz`` file (default: the checkpoint's, when present).
        context: where resets start by default: ``"bank"`` (the context bank), ``"data"``
            (random windows of the episode files under ``data_dir``) or ``"real"`` (the real
            Memory Maze, run for the context length under random actions).
        data_dir: directory of episode files for ``context="data"``.
        context_len: real frames per context (default: the bank's clip length; without a bank
            ``2 * window``).
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, ...
        steps: DDIM steps per frame.
        eta: DDIM stochasticity (0: deterministic given the initial noise).
        dtype: compute dtype of the network (``"float32"``, ``"bfloat16"``, ``"float16"``; run
            under autocast, state kept in float32). bfloat16 pays on GPUs, not on CPUs without it.
        reward_mode: ``"round"``: 1.0 where the predicted reward is >= 0.5, else 0.0 (Memory Maze
            rewards are 0 or 1); ``"raw"``: the reward head's output.
        max_steps: episode length in steps after the reset (Memory Maze 9x9: 1000).
        real_env_kwargs: passed to the real Memory Maze for ``context="real"``.

    Raises:
        CheckpointError: a missing or corrupt checkpoint, or no context bank where one is needed.
        UserError: a bad argument (named).
    """

    def __init__(self, num_envs: int = 1, checkpoint: str | os.PathLike | None = None, *,
                 contexts: str | os.PathLike | None = None, context: str = "bank",
                 data_dir: str | os.PathLike | None = None, context_len: int | None = None,
                 device: str | torch.device | None = "cpu", steps: int = DEFAULT_STEPS,
                 eta: float = 0.0, dtype: str | torch.dtype = "float32",
                 reward_mode: str = "round", max_steps: int = 1000,
                 real_env_kwargs: dict[str, Any] | None = None) -> None:
        if int(num_envs) < 1:
            raise UserError(f"num_envs must be >= 1, got {num_envs}")
        if reward_mode not in REWARD_MODES:
            raise UserError(f"reward_mode={reward_mode!r}: expected one of {REWARD_MODES}")
        if int(max_steps) < 1:
            raise UserError(f"max_steps must be >= 1, got {max_steps}")
        self.num_envs, self.max_steps, self.reward_mode = int(num_envs), int(max_steps), reward_mode
        self.run_dir = resolve_checkpoint(checkpoint)
        self.world = load(self.run_dir, resolve_device(device))
        sampler = SamplerConfig(int(steps), float(eta)).validate(self.world.diffusion.cfg.num_levels)
        self.engine = RolloutEngine(self.world, sampler, compute_dtype=resolve_dtype(dtype))
        self.sampling_steps = int(steps)
        self.frame_size = self.world.config.latent.frame_size
        self.num_actions = self.world.config.model.num_actions
        self.observation_space = spaces.Box(0, 255, (self.frame_size, self.frame_size, 3), np.uint8)
        self.action_space = spaces.Discrete(self.num_actions)
        window = self.world.config.model.window
        self.contexts = ContextChooser(
            self.run_dir, self.frame_size, self.num_actions, window, contexts=contexts,
            context=context, data_dir=data_dir, context_len=context_len,
            real_env_kwargs=real_env_kwargs)
        self.rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self.state: WorldState | None = None
        N, H = self.num_envs, self.frame_size
        self.obs = np.zeros((N, H, H, 3), np.uint8)
        self.steps = np.zeros(N, np.int64)
        self.ended = np.ones(N, bool)  # no episode under way: reset first
        self.started = np.zeros(N, bool)
        self.sources: list[tuple[str, int]] = [("", -1)] * N  # (source, clip) of each row
        logger.info("world %s on %s: %d DDIM steps, window %d, contexts of %d frames (%s)",
                    self.run_dir, self.engine.device, self.sampling_steps, window,
                    self.contexts.context_len, context)

    # -- rows -------------------------------------------------------------------------------------
    def seed_row(self, row: int, seed: int) -> None:
        """Give row ``row`` a new numpy generator (contexts and noise seeds of its resets)."""
        self.rngs[row] = np.random.default_rng(seed)

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
        self.steps[rows], self.ended[rows], self.started[rows] = 0, False, True

    def reset_info(self, row: int) -> dict[str, Any]:
        """Row ``row``'s info after its reset."""
        assert self.state is not None
        source, clip = self.sources[row]
        return {"frame_index": int(self.state.frame_index[row]) - 1, "step": 0,
                "sampling_steps": self.sampling_steps, "imagined": False,
                "context_source": source, "clip": clip}

    # -- frames -----------------------------------------------------------------------------------
    def check_actions(self, actions: Any) -> np.ndarray:
        """``(N,)`` integers in ``[0, num_actions)`` -> int64 array; a clear error otherwise."""
        a = np.asarray(actions)
        if a.shape == () and self.num_envs == 1:
            a = a.reshape(1)
        if a.shape != (self.num_envs,):
            raise UserError(f"actions must have shape ({self.num_envs},), one per environment, "
                            f"got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise UserError(f"actions must be integers of Discrete({self.num_actions}), got "
                            f"{a.dtype} {a.tolist()}")
        bad = np.flatnonzero((a < 0) | (a >= self.num_actions))
        if len(bad):
            raise UserError(f"action {a[bad[0]]} (environment {bad[0]}) is outside "
                            f"Discrete({self.num_actions})")
        return a.astype(np.int64)

    def _require_started(self) -> WorldState:
        if self.state is None or not self.started.all():
            raise ResetNeeded("step() before reset(): every environment must be reset first")
        return self.state

    def step(self, actions: Any) -> StepResult:
        """Imagine one frame for every row: ``actions (N,)`` -> :class:`StepResult`."""
        a = self.check_actions(actions)
        frames, info = self.engine.step(self._require_started(), torch.from_numpy(a))
        return self._finish(frames, info, imagined=True)

    def observe(self, frames: Any, actions: Any) -> StepResult:
        """Feed real frames ``(N, H, W, 3)`` uint8, reached by ``actions (N,)``, instead of
        imagined ones: the world goes on from reality."""
        a = self.check_actions(actions)
        f = np.asarray(frames)
        shape = (self.num_envs, self.frame_size, self.frame_size, 3)
        if f.shape != shape or f.dtype != np.uint8:
            raise UserError(f"observed frames must be {shape} uint8, got {f.shape} {f.dtype}")
        frames_t = torch.from_numpy(f.copy())  # the caller keeps its array
        info = self.engine.observe(self._require_started(), frames_t, torch.from_numpy(a))
        return self._finish(frames_t, info, imagined=False)

    def _finish(self, frames: torch.Tensor, info: StepInfo, imagined: bool) -> StepResult:
        N = self.num_envs
        obs = frames.cpu().numpy()
        raw = info.reward.cpu().numpy() if info.reward is not None else np.zeros(N, np.float32)
        prob = (info.termination_prob.cpu().numpy() if info.termination_prob is not None
                else np.zeros(N, np.float32))
        reward = (raw >= 0.5).astype(np.float32) if self.reward_mode == "round" else raw
        self.steps += 1
        terminated, truncated = prob > 0.5, self.steps >= self.max_steps
        self.obs[:] = obs
        self.ended |= terminated | truncated
        assert self.state is not None
        return StepResult(obs, reward.astype(np.float32), raw.astype(np.float32),
                          prob.astype(np.float32), terminated, truncated,
                          self.state.frame_index.numpy() - 1, self.steps.copy(), imagined,
                          self.sampling_steps)

    # -- branching --------------------------------------------------------------------------------
    def snapshot(self) -> WorldSnapshot:
        """A deep copy of everything that decides the future of every row."""
        if self.state is None:
            raise ResetNeeded("get_state() before reset(): there is no world to snapshot yet")
        return WorldSnapshot(self.state.clone(), self.steps.copy(), self.obs.copy(),
                             self.ended.copy(), self.started.copy(),
                             [copy.deepcopy(r.bit_generator.state) for r in self.rngs],
                             list(self.sources))

    def restore(self, snapshot: WorldSnapshot) -> None:
        """Go back to ``snapshot`` (it stays valid: restore it again for another branch)."""
        if snapshot.state.batch_size != self.num_envs:
            raise UserError(f"snapshot of {snapshot.state.batch_size} environment(s) cannot be "
                            f"restored into {self.num_envs}")
        self.state = snapshot.state.clone()
        self.steps, self.obs = snapshot.steps.copy(), snapshot.obs.copy()
        self.ended, self.started = snapshot.ended.copy(), snapshot.started.copy()
        for rng, st in zip(self.rngs, snapshot.rng_states):
            rng.bit_generator.state = copy.deepcopy(st)
        self.sources = list(snapshot.sources)

    def state_bytes(self) -> int:
        """Bytes of engine state per row (KV cache, memory, pending latents, generator)."""
        return self._require_started().nbytes()

    def close(self) -> None:
        self.contexts.close()


class RADEnv(gymnasium.Env):
    """One learned Memory Maze world (a :class:`BatchedWorlds` of one row).

    Args:
        checkpoint: run directory; None (default) is the world shipped in
            ``rad_env/weights/memory-maze-9x9`` (a clear CheckpointError if it is not installed).
        render_mode: ``"rgb_array"`` (``render()`` returns the last frame) or None.
        **kwargs: ``contexts``, ``context``, ``data_dir``, ``context_len``, ``device``,
            ``steps``, ``eta``, ``dtype``, ``reward_mode``, ``max_steps``, ``real_env_kwargs``:
            see :class:`BatchedWorlds`.

    ``info`` holds ``frame_index`` (of the returned frame in the world, context included),
    ``step`` (since the reset), ``sampling_steps``, ``imagined``, ``reward_raw`` and
    ``termination_prob``; after a reset ``context_source`` and ``clip`` instead of the last two.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, checkpoint: str | os.PathLike | None = None, *,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise UserError(f"render_mode={render_mode!r}: expected one of "
                            f"{self.metadata['render_modes']} or None")
        self.worlds = BatchedWorlds(1, checkpoint, **kwargs)
        self.render_mode = render_mode
        self.observation_space = self.worlds.observation_space
        self.action_space = self.worlds.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode from a real context (see the module docstring for ``options``)."""
        super().reset(seed=seed)
        self.worlds.rngs[0] = self.np_random  # contexts and noise seeds follow the env's seed
        self.worlds.reset_rows([0], options)
        return self.worlds.obs[0].copy(), self.worlds.reset_info(0)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Imagine the frame that ``action`` leads to."""
        self._check_running("step")
        return self._unbatch(self.worlds.step(np.asarray([self._action(action)])))

    def observe(self, frame: Any, action: Any
                ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Feed the REAL ``frame (64, 64, 3) uint8`` that ``action`` led to, in place of an
        imagined one. Counts as a step; returns what :meth:`step` returns (``obs`` is ``frame``,
        the reward and termination are the heads' reading of it, ``info["imagined"]`` False)."""
        self._check_running("observe")
        frames = np.asarray(frame)
        if frames.shape != self.observation_space.shape or frames.dtype != np.uint8:
            raise UserError(f"observed frame must be {self.observation_space.shape} uint8, got "
                            f"{frames.shape} {frames.dtype}")
        return self._unbatch(self.worlds.observe(frames[None], np.asarray([self._action(action)])))

    def get_state(self) -> WorldSnapshot:
        """A snapshot (memory, KV cache, sampling generators, counters, the env's RNG) that
        :meth:`set_state` restores, as often as wanted: each restore continues identically."""
        return self.worlds.snapshot()

    def set_state(self, snapshot: WorldSnapshot) -> None:
        self.worlds.restore(snapshot)

    def render(self) -> np.ndarray | None:
        """The last frame ``(64, 64, 3) uint8`` in ``"rgb_array"`` mode; None without a mode."""
        if self.render_mode is None:
            return None
        if not self.worlds.started[0]:
            raise ResetNeeded("render() called before reset()")
        return self.worlds.obs[0].copy()

    def close(self) -> None:
        self.worlds.close()

    def _check_running(self, what: str) -> None:
        if self.worlds.ended[0]:
            raise ResetNeeded(f"RADEnv.{what}() called before reset() or after the episode ended "
                              f"(terminated/truncated); call reset() first")

    def _action(self, action: Any) -> int:
        a = np.asarray(action)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
            raise UserError(f"action {action!r} is not an integer of Discrete({self.worlds.num_actions})")
        index = int(a.reshape(()))
        if not 0 <= index < self.worlds.num_actions:
            raise UserError(f"action {index} is outside Discrete({self.worlds.num_actions})")
        return index

    @staticmethod
    def _unbatch(r: StepResult) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return (r.obs[0].copy(), float(r.reward[0]), bool(r.terminated[0]), bool(r.truncated[0]),
                r.info(0))
