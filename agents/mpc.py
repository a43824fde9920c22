"""The model-predictive control loop: plan in the learned world, act in the REAL env, feed each
real frame back (:func:`run_mpc`). ``python -m agents.plan`` is its command line (usage there),
:mod:`agents.mpc_report` its resumable table."""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agents.planning import PlannerConfig
from world_model.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MPCConfig:
    """Model-predictive control in the real env. Every field is an option of this module."""

    checkpoint: str | None = None
    """World run directory; None: the world shipped with rad_env."""
    env_id: str = "rad_env:MemoryMaze-9x9-v0"
    """The REAL environment acted in (same spaces as the world)."""
    episodes: int = 1
    """Real episodes to play under model-predictive control."""
    max_steps: int = 1000
    """Real steps per episode (Memory Maze 9x9 episodes are 1000 steps)."""
    replan_every: int = 4
    """Real steps taken from each plan before planning again."""
    value: str | None = None
    """Reward-to-go model directory (``rad train-reward --gamma``) whose estimate after the
    horizon joins every plan's return (None: the plan counts predicted rewards only)."""
    sampling_steps: int | None = None
    """Sampler steps per frame (None: the world's sampler.json, else 10)."""
    seed: int = 0
    """Seeds episode e's real maze (seed + e), the world's noise and the planner (both reseeded
    with seed + e at each episode, so that an episode does not depend on the ones before it)."""
    out: str | None = None
    """Directory for ``mpc.json`` and ``table.md``, rewritten after every episode; the same
    command again skips the episodes already there (resume)."""
    baselines: bool = True
    """With --out: score a uniformly random policy and the data collector's scripted exploration
    on the same mazes, beside the planner."""


@dataclass
class EpisodeResult:
    real_return: float
    steps: int
    plan_seconds: list[float]
    predicted_returns: list[float]


def load_value(path: str, world):
    """The reward-to-go model in ``path``, checked to read ``world``'s latents and actions."""
    from pathlib import Path

    from world_model.checkpoint import check_reward_model_fits
    from world_model.network.reward_model import load_reward_model

    value = load_reward_model(path)
    if value.cfg.gamma <= 0:
        raise UserError(f"{path}: a step reward model (gamma 0); --value takes a reward-to-go "
                        f"model, trained with `rad train-reward --gamma 0.97`")
    check_reward_model_fits(Path(path), value, world.config)
    return value.to(next(world.model.parameters()).device).eval()


def run_mpc(mpc: MPCConfig, planner_cfg: PlannerConfig, progress: bool = True,
            skip: Sequence[int] = (),
            on_episode: Callable[[int, EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """Run ``mpc.episodes`` real episodes under model-predictive control (see the module), but
    for the episode indices in ``skip``; ``on_episode(e, result)`` after each one."""
    import gymnasium
    import torch
    from tqdm.auto import tqdm

    from agents.planning import Planner
    from rad_env.worlds import resolve_checkpoint
    from world_model.loading import load_engine

    if min(mpc.episodes, mpc.max_steps, mpc.replan_every, mpc.sampling_steps or 1) < 1:
        raise UserError(f"MPCConfig: counts must be >= 1: {mpc}")
    engine = load_engine(resolve_checkpoint(mpc.checkpoint), steps=mpc.sampling_steps)
    world = engine.world
    num_actions = world.config.model.num_actions
    value = load_value(mpc.value, world) if mpc.value is not None else None
    planner = Planner(engine, num_actions, dataclasses.replace(planner_cfg, seed=mpc.seed), value)
    env = gymnasium.make(mpc.env_id)
    if getattr(env.action_space, "n", None) != num_actions:
        raise UserError(f"{mpc.env_id} has action space {env.action_space}, the world "
                       f"{num_actions} actions")
    results = []
    try:
        for e in range(mpc.episodes):
            if e in skip:
                continue
            planner.generator.manual_seed(mpc.seed + e)
            obs, _ = env.reset(seed=mpc.seed + e)
            state = engine.start(torch.from_numpy(np.asarray(obs)[None, None].copy()),
                                 torch.zeros(1, 1, dtype=torch.long), seeds=[mpc.seed + e])
            total, queue, times, predicted, previous = 0.0, [], [], [], None
            bar = tqdm(total=mpc.max_steps, desc=f"episode {e}", unit="step", disable=not progress)
            for t in range(mpc.max_steps):
                if not queue:
                    warm = None
                    if previous is not None and mpc.replan_every < len(previous):
                        # the last plan, shifted by the steps taken, padded with its last action
                        rest = previous[mpc.replan_every:]
                        warm = torch.cat([rest, rest[-1:].expand(planner_cfg.horizon - len(rest))])
                    plan = planner.plan(state, warm)
                    times.append(plan.seconds)
                    predicted.append(plan.expected_return)
                    previous = plan.actions
                    queue = plan.actions[:mpc.replan_every].tolist()
                action = int(queue.pop(0))
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                engine.observe(state, torch.from_numpy(np.asarray(obs)[None].copy()),
                               torch.tensor([action]))
                bar.update(1)
                bar.set_postfix(ret=f"{total:.0f}", plan_s=f"{times[-1]:.1f}")
                if terminated or truncated:
                    break
            bar.close()
            results.append(EpisodeResult(total, t + 1, times, predicted))
            if on_episode is not None:
                on_episode(e, results[-1])
            logger.info("episode %d: real return %.1f in %d steps, %.2f s per plan (median)",
                        e, total, t + 1, statistics.median(times))
    finally:
        env.close()
    return results
