"""Model-based planning in the learned world: random shooting, CEM and MPPI over action sequences.

From one world state, N candidate futures are branched (rows of a cloned
:class:`~world_model.engine.world_state.WorldState`) and imagined together: ONE batched engine call
per imagined step, whatever N. A sequence's return is the sum of the reward head's predictions
along it, discounted by ``gamma``. Memory Maze actions are discrete, so CEM and MPPI keep one
categorical distribution per step of the horizon:

* ``random``: N uniformly random sequences, the best one wins.
* ``cem``: ``iterations`` rounds; each samples N sequences from the distribution and refits it to
  the ``elites`` best (Rubinstein's cross-entropy method), smoothed by ``smoothing``.
* ``mppi``: as CEM, but the refit weights every sample by ``softmax(return / temperature)``
  (model-predictive path integral control, Williams et al. 2017).

With a reward-to-go model (``value``: ``rad train-reward --gamma``), a sequence's return also
counts ``gamma^H`` times its estimate after the last imagined step, the mean over actions of its
output on the last imagined frames: a plan that ends near a target is then worth more than one
that ends far from it, though neither reaches it within the horizon.

All return the best sequence imagined in any round. :func:`agents.mpc.run_mpc` uses this for
model-predictive control in the REAL environment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from world_model.errors import UserError

METHODS = ("random", "cem", "mppi")


@dataclass(frozen=True)
class PlannerConfig:
    """How a plan is searched for. Every field is an option of ``python -m agents.plan``."""

    method: str = "cem"
    """``random`` (random shooting), ``cem`` or ``mppi``."""
    horizon: int = 8
    """H: imagined steps per candidate sequence."""
    candidates: int = 16
    """N: sequences imagined together (one batched engine call per imagined step)."""
    iterations: int = 2
    """Rounds of sampling and refitting (``random`` always uses one)."""
    elites: int = 4
    """``cem``: sequences the distribution is refitted to."""
    temperature: float = 0.1
    """``mppi``: softmax temperature of the returns."""
    smoothing: float = 0.2
    """Share of the old distribution kept at each refit (0: replace it)."""
    gamma: float = 0.99
    """Discount of predicted rewards along a sequence."""
    seed: int = 0
    """Seeds the sampling of candidate sequences."""

    def validate(self) -> PlannerConfig:
        if self.method not in METHODS:
            raise UserError(f"planner method {self.method!r}: expected one of {METHODS}")
        if min(self.horizon, self.candidates, self.iterations, self.elites) < 1:
            raise UserError(f"planner counts must be >= 1: {self}")
        if self.method == "cem" and self.elites > self.candidates:
            raise UserError(f"elites ({self.elites}) exceed candidates ({self.candidates})")
        if self.temperature <= 0 or not 0.0 <= self.smoothing < 1.0 or not 0.0 < self.gamma <= 1.0:
            raise UserError("planner needs temperature > 0, smoothing in [0, 1), gamma in (0, 1]")
        return self


class Imaginer(Protocol):
    """What the planner needs of an engine (``world_model.engine.rollout.RolloutEngine``)."""

    def step_latents(self, state, actions: Tensor): ...


def terminal_value(value, latents: list[Tensor]) -> Tensor:
    """``(N,)`` the reward-to-go model's estimate after the imagined frames ``latents`` (a list
    of ``(N, C, h, w)``, oldest first; its last ``value.cfg.frames`` are read), averaged over
    the actions."""
    context = torch.stack(latents[-value.cfg.frames:], 1)
    weight = next(value.parameters())
    with torch.no_grad():
        logits = value(context.to(weight.device, weight.dtype))
    return torch.sigmoid(logits.float()).mean(1).cpu()


@dataclass
class Plan:
    """The outcome of one search."""

    actions: Tensor
    """``(H,)`` int64: the best sequence imagined."""
    expected_return: float
    """Its discounted sum of predicted rewards (plus the value after it, with a value)."""
    returns: Tensor
    """``(iterations, N)`` float32: every candidate's return, round by round."""
    imagined_frames: int
    """Frames imagined for this plan (``iterations * N * H``)."""
    seconds: float


class Planner:
    """Searches action sequences in a learned world (see the module docstring).

    Args:
        engine: the rollout engine of the world (its sampler decides the DDIM steps).
        num_actions: size of the discrete action set.
        config: the search.
        value: a reward-to-go model (``RewardModel`` with ``cfg.gamma > 0``) whose estimate
            after the horizon joins each sequence's return; its ``frames`` must not exceed the
            horizon.
    """

    def __init__(self, engine: Imaginer, num_actions: int,
                 config: PlannerConfig | None = None, value=None) -> None:
        self.engine = engine
        self.num_actions = int(num_actions)
        self.config = (config or PlannerConfig()).validate()
        self.generator = torch.Generator().manual_seed(self.config.seed)
        if value is not None:
            if not getattr(value.cfg, "gamma", 0) > 0:
                raise UserError("the planner's value must be a reward-to-go model (trained with "
                                "`rad train-reward --gamma`), got a step reward model")
            if value.cfg.frames > self.config.horizon:
                raise UserError(f"the value reads the last {value.cfg.frames} frames, more than "
                                f"the horizon of {self.config.horizon}: raise --horizon")
        self.value = value

    def imagine_returns(self, state, sequences: Tensor) -> Tensor:
        """Discounted predicted return of each of ``sequences (N, H)`` from the one-row
        ``state`` (left unchanged): N branches stepped together, one engine call per step."""
        N, H = sequences.shape
        branches = state.index([0] * N)  # N copies of the world, generators included
        total, latents = torch.zeros(N), []
        for h in range(H):
            info = self.engine.step_latents(branches, sequences[:, h])
            if info.reward is None:
                raise UserError("this world has neither a reward model (reward/) nor a reward "
                                "head (model.reward_head=false): nothing to plan for")
            total += (self.config.gamma ** h) * info.reward.float().cpu()
            if self.value is not None:
                latents = (latents + [info.latent])[-self.value.cfg.frames:]
        if self.value is not None:
            total += (self.config.gamma ** H) * terminal_value(self.value, latents)
        return total

    def plan(self, state, warm_start: Tensor | None = None) -> Plan:
        """Search from ``state`` (a WorldState of ONE row, not modified).

        ``warm_start (H,)``: a sequence always among the first round's candidates (e.g. the
        previous plan shifted by the steps taken since).
        """
        if state.batch_size != 1:
            raise UserError(f"plan() takes the state of one world, got {state.batch_size} rows")
        cfg, A = self.config, self.num_actions
        H, N = cfg.horizon, cfg.candidates
        t0 = time.perf_counter()
        probs = torch.full((H, A), 1.0 / A)
        rounds = 1 if cfg.method == "random" else cfg.iterations
        best_seq, best_ret, all_returns = None, -math.inf, []
        for r in range(rounds):
            seqs = torch.multinomial(probs, N, replacement=True, generator=self.generator).T  # (N, H)
            if r == 0 and warm_start is not None:
                seqs[0] = warm_start[:H].to(seqs.dtype)
            returns = self.imagine_returns(state, seqs)
            all_returns.append(returns)
            i = int(returns.argmax())
            if float(returns[i]) > best_ret:
                best_ret, best_seq = float(returns[i]), seqs[i].clone()
            if cfg.method == "random":
                break
            if cfg.method == "cem":
                weights = torch.zeros(N)
                weights[returns.topk(cfg.elites).indices] = 1.0 / cfg.elites
            else:
                weights = torch.softmax((returns - returns.max()) / cfg.temperature, dim=0)
            fitted = torch.zeros(H, A).index_put_(
                (torch.arange(H).repeat(N), seqs.reshape(-1)), weights.repeat_interleave(H),
                accumulate=True)  # (H, A): weighted action frequencies per step
            probs = cfg.smoothing * probs + (1 - cfg.smoothing) * fitted
        assert best_seq is not None
        return Plan(best_seq, best_ret, torch.stack(all_returns), rounds * N * H,
                    time.perf_counter() - t0)
