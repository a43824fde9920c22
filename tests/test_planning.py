"""Planning in the learned world: the search finds what the reward head rewards, branches are
imagined in one batched engine call per step, and the world state it starts from is untouched."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from agents.planning import Planner, PlannerConfig
from world_model.checkpoint import load
from world_model.config import SamplerConfig
from world_model.engine.rollout import RolloutEngine
from world_model.errors import UserError


@dataclass
class FakeState:
    """Rows of a toy world: each row counts its steps."""

    t: torch.Tensor

    @property
    def batch_size(self) -> int:
        return len(self.t)

    def index(self, rows):
        return FakeState(self.t[torch.as_tensor(rows)].clone())


@dataclass
class FakeInfo:
    reward: torch.Tensor
    latent: torch.Tensor | None = None


class FakeEngine:
    """Reward 1 for the step's 'right' action (a fixed sequence), else 0."""

    def __init__(self, good):
        self.good = torch.as_tensor(good)
        self.calls = 0

    def step_latents(self, state, actions):
        self.calls += 1
        reward = (actions == self.good[state.t]).float()
        state.t += 1
        return FakeInfo(reward)


GOOD = [2, 5, 1, 1, 3, 0]


@pytest.mark.parametrize("method", ("cem", "mppi"))
def test_cem_and_mppi_find_the_rewarded_sequence(method):
    engine = FakeEngine(GOOD)
    cfg = PlannerConfig(method=method, horizon=6, candidates=64, iterations=6, elites=6,
                        temperature=0.2, smoothing=0.1)
    plan = Planner(engine, 6, cfg).plan(FakeState(torch.zeros(1, dtype=torch.long)))
    assert plan.actions.tolist() == GOOD
    assert plan.expected_return == pytest.approx(sum(0.99 ** h for h in range(6)))
    assert engine.calls == 6 * 6  # one batched call per imagined step and round
    assert plan.returns.shape == (6, 64) and plan.imagined_frames == 6 * 64 * 6
    # the later rounds do better than the first on average: the distribution was refitted
    assert plan.returns[-1].mean() > plan.returns[0].mean()


def test_random_shooting_returns_its_best_candidate():
    engine = FakeEngine(GOOD)
    plan = Planner(engine, 6, PlannerConfig(method="random", horizon=3, candidates=50)).plan(
        FakeState(torch.zeros(1, dtype=torch.long)))
    assert engine.calls == 3 and plan.returns.shape == (1, 50)
    assert plan.expected_return == pytest.approx(float(plan.returns.max()))


def test_warm_start_is_among_the_candidates():
    engine = FakeEngine(GOOD)
    cfg = PlannerConfig(method="random", horizon=6, candidates=2, seed=3)
    plan = Planner(engine, 6, cfg).plan(FakeState(torch.zeros(1, dtype=torch.long)),
                                        warm_start=torch.tensor(GOOD))
    assert plan.actions.tolist() == GOOD


def test_planning_on_a_world_leaves_its_state_untouched(tiny_world):
    world = load(tiny_world)
    engine = RolloutEngine(world, SamplerConfig(steps=2))
    size = world.config.latent.frame_size
    frames = torch.randint(0, 256, (1, 3, size, size, 3), dtype=torch.uint8)
    state = engine.start(frames, torch.zeros(1, 3, dtype=torch.long), seeds=0)
    before = [t.clone() for t in state._tensors()]
    cfg = PlannerConfig(method="cem", horizon=3, candidates=5, iterations=2, elites=2)
    plan = Planner(engine, world.config.model.num_actions, cfg).plan(state)
    assert plan.actions.shape == (3,) and 0 <= int(plan.actions.min())
    assert int(plan.actions.max()) < world.config.model.num_actions
    assert all(torch.equal(a, b) for a, b in zip(before, state._tensors()))
    assert state.frame_index.tolist() == [3]


class ActionEcho:
    """No reward anywhere; each imagined frame's latent is the action that led to it."""

    def step_latents(self, state, actions):
        state.t += 1
        return FakeInfo(torch.zeros(len(actions)), actions.float().view(-1, 1, 1, 1))


@dataclass
class ValueCfg:
    frames: int
    gamma: float


class EndsOnThree(torch.nn.Module):
    """A reward-to-go model of one frame: about 1 after a frame reached by action 3, else 0."""

    cfg = ValueCfg(1, 0.9)

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, latents):
        near = (latents[:, -1].flatten(1)[:, 0] == 3).float() * 2 - 1  # (N,)
        return (self.scale * near)[:, None].expand(-1, 6)


def test_a_value_beyond_the_horizon_steers_plans_that_see_no_reward():
    cfg = PlannerConfig(method="random", horizon=2, candidates=40, gamma=0.9)
    state = FakeState(torch.zeros(1, dtype=torch.long))
    plan = Planner(ActionEcho(), 6, cfg, value=EndsOnThree()).plan(state)
    assert plan.actions[-1] == 3  # the plan ends where the value is high
    assert plan.expected_return == pytest.approx(0.9 ** 2, abs=1e-6)
    blind = Planner(ActionEcho(), 6, cfg).plan(state)
    assert blind.expected_return == 0.0
    two_frames, step_model = EndsOnThree(), EndsOnThree()
    two_frames.cfg, step_model.cfg = ValueCfg(2, 0.9), ValueCfg(1, 0.0)
    with pytest.raises(UserError, match="more than the horizon"):
        Planner(ActionEcho(), 6, PlannerConfig(horizon=1), value=two_frames)
    with pytest.raises(UserError, match="reward-to-go model"):
        Planner(ActionEcho(), 6, cfg, value=step_model)


def test_bad_planner_settings_are_refused_by_name():
    with pytest.raises(UserError, match="method"):
        PlannerConfig(method="greedy").validate()
    with pytest.raises(UserError, match="elites"):
        PlannerConfig(candidates=2, elites=3).validate()
    with pytest.raises(UserError, match="one world"):
        Planner(FakeEngine(GOOD), 6).plan(FakeState(torch.zeros(2, dtype=torch.long)))


def test_mpc_report_plays_the_real_maze_beside_the_baselines_and_resumes(tiny_world, tmp_path):
    import json

    from agents.mpc import MPCConfig
    from agents.mpc_report import RESULTS, TABLE, run_report

    planner = PlannerConfig(method="cem", horizon=2, candidates=3, iterations=1, elites=1)
    mpc = MPCConfig(checkpoint=str(tiny_world), episodes=1, max_steps=4, replan_every=2,
                    sampling_steps=1, seed=7, out=str(tmp_path))
    run_report(mpc, planner, "cmd", progress=False)
    first = json.loads((tmp_path / RESULTS).read_text())
    assert list(first["mpc"]) == ["0"] and first["mpc"]["0"]["maze_seed"] == 7
    assert first["mpc"]["0"]["steps"] == 4 and len(first["mpc"]["0"]["plan_seconds"]) == 2
    assert {k: len(v) for k, v in first["baselines"].items()} == {"random": 1, "scripted": 1}
    # one more episode: the first is kept as it was, not played again
    table = run_report(dataclasses.replace(mpc, episodes=2), planner, "cmd", progress=False)
    second = json.loads((tmp_path / RESULTS).read_text())
    assert second["mpc"]["0"] == first["mpc"]["0"] and second["mpc"]["1"]["maze_seed"] == 8
    assert {k: len(v) for k, v in second["baselines"].items()} == {"random": 2, "scripted": 2}
    assert second["baselines"]["random"][0] == first["baselines"]["random"][0]  # same maze
    assert "| MPC in the world (cem, H=2, N=3" in table and "| 2 |" in table
    assert (tmp_path / TABLE).read_text().startswith("```bash\ncmd\n```")
    with pytest.raises(UserError, match="other settings"):
        run_report(dataclasses.replace(mpc, replan_every=1), planner, "cmd", progress=False)
