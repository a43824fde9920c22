"""RL in imagination, scored in reality: RecurrentPPO, training on the real maze, agents.compare."""

from __future__ import annotations

import dataclasses
import json

import gymnasium
import numpy as np
import pytest

from agents.compare import CompareConfig, cell_key, main, run_compare
from agents.ppo import (
    ModelPolicy,
    PPOConfig,
    finished_run,
    load_model,
    read_train_stats,
    train_ppo,
)
from world_model.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _tiny(**kwargs) -> PPOConfig:
    base = {"num_envs": 2, "total_timesteps": 32, "n_steps": 16, "batch_size": 32, "n_epochs": 1,
            "sampling_steps": 1, "episode_steps": 16, "policy_device": "cpu"}
    return PPOConfig(**{**base, **kwargs})


class _Corridor(gymnasium.Env):
    """Episodes of 3 steps of the real maze's spaces."""

    observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(6)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action)
        self.t += 1
        return self.observation_space.sample(), 1.0, False, self.t == 3, {}


def test_recurrent_ppo_learns_in_imagination_and_acts_with_its_lstm_state(tiny_world, tmp_path):
    from sb3_contrib import RecurrentPPO

    from agents.evaluate import evaluate

    cfg = _tiny(algo="recurrent-ppo", checkpoint=str(tiny_world), total_timesteps=64,
                out=str(tmp_path / "run"))
    model = train_ppo(cfg)
    assert isinstance(model, RecurrentPPO) and model.num_timesteps == 64
    # 2 worlds x 32 steps in episodes of 16 (the tiny world never terminates): 4 episodes
    assert [e["l"] for e in model.ep_info_buffer] == [16] * 4
    assert finished_run(cfg) and not finished_run(dataclasses.replace(cfg, seed=1))
    stats = read_train_stats(cfg.out)
    assert stats["steps"] == 64 and stats["env"] == "imagination" and stats["steps_per_s"] > 0
    assert not (tmp_path / "run" / "model.tmp.zip").exists()
    # one metrics line per rollout of 2 x 16 steps; each rollout finishes 2 episodes of 16
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [32, 64]
    assert all(line["ep_len_mean"] == 16 and np.isfinite(line["ep_return_mean"])
               and line["steps_per_s"] > 0 for line in lines)

    loaded = load_model(tmp_path / "run" / "model.zip", "recurrent-ppo")
    obs = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    action, state = loaded.predict(obs, state=None, episode_start=np.ones(2, bool))
    assert action.shape == (2,) and ((0 <= action) & (action < 6)).all()
    h, c = state
    assert h.shape == c.shape and h.shape[1] == 2 and np.abs(h).sum() > 0
    _, state2 = loaded.predict(obs, state=state, episode_start=np.zeros(2, bool))
    _, fresh = loaded.predict(obs, state=None, episode_start=np.ones(2, bool))
    assert not np.allclose(state2[0], state[0])  # the state carries history ...
    np.testing.assert_allclose(fresh[0], state[0], rtol=1e-5)  # ... and a reset forgets it

    policy = ModelPolicy(loaded)
    assert policy.recurrent
    resets = []
    original_reset = policy.reset
    policy.reset = lambda: (resets.append(policy.state is not None), original_reset())
    result = evaluate(policy, _Corridor(), episodes=2)  # it resets the policy
    assert result.lengths == [3, 3] and result.returns == [3.0, 3.0]
    assert resets == [False, True]  # reset before each episode, the second one with a state to drop
    assert policy.state is not None


def test_ppo_trains_on_the_real_maze(tmp_path):
    pytest.importorskip("memory_maze")
    from stable_baselines3 import PPO

    from world_model.sim.fast_maze import is_patched

    # checkpoint=None: imagination would need the shipped world; the real env needs none
    cfg = _tiny(env="real", num_envs=1, n_steps=32, out=str(tmp_path / "real"))
    model = train_ppo(cfg)
    assert type(model) is PPO and model.num_timesteps == 32
    assert [e["l"] for e in model.ep_info_buffer] == [16, 16]  # episodes of episode_steps
    assert is_patched()  # the vectorised contact check
    assert read_train_stats(cfg.out)["env"] == "real" and finished_run(cfg)


def test_compare_writes_the_table_and_a_rerun_skips_finished_cells(tiny_world, tmp_path,
                                                                   monkeypatch):
    pytest.importorskip("memory_maze")
    import agents.compare
    import agents.ppo

    cfg = CompareConfig(checkpoint=str(tiny_world), algos=("ppo",), seeds=(0,), timesteps=32,
                        episodes=1, max_steps=20, num_envs=1, n_steps=32, batch_size=32,
                        n_epochs=1, sampling_steps=1, episode_steps=16, policy_device="cpu",
                        out=str(tmp_path))
    table = run_compare(cfg, command="python -m agents.compare --tiny", progress=False)
    keys = ["random/seed0", "ppo/imagination/seed0", "ppo/real/seed0"]
    assert sorted(table["cells"]) == sorted(keys)
    for key in keys:
        cell = table["cells"][key]
        assert cell["lengths"] == [20] and np.isfinite(cell["returns"]).all()
        assert cell["wall_s"] >= cell["eval_wall_s"] > 0
    for key in keys[1:]:
        assert table["cells"][key]["train_steps"] == 32
        assert table["cells"][key]["train_steps_per_s"] > 0
    assert [(r["policy"], r["trained_in"]) for r in table["rows"]] == [
        ("random", None), ("ppo", "imagination"), ("ppo", "real")]
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["cells"] == json.loads(json.dumps(table["cells"]))
    md = (tmp_path / "table.md").read_text()
    assert "python -m agents.compare --tiny" in md
    for row in ("| random | - | 1 |", "| ppo | imagination | 1 |", "| ppo | real | 1 |"):
        assert row in md
    for row in table["rows"]:
        assert row["std"] == 0.0 and row["mean"] == row["seed_means"][0]  # one seed
        assert f"| {row['mean']:.2f} ± 0.00 | {row['mean']:.2f} |" in md

    def boom(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    # a re-run skips every scored cell ...
    monkeypatch.setattr(agents.ppo, "train_ppo", boom)
    monkeypatch.setattr(agents.compare, "score", boom)
    assert run_compare(cfg, progress=False)["cells"] == table["cells"]
    # ... and a cell cut off after training is scored from its saved model, not trained again
    monkeypatch.undo()
    monkeypatch.setattr(agents.ppo, "train_ppo", boom)
    del saved["cells"]["ppo/real/seed0"]
    (tmp_path / "table.json").write_text(json.dumps(saved))
    again = run_compare(cfg, progress=False)["cells"]["ppo/real/seed0"]
    assert again["returns"] == table["cells"]["ppo/real/seed0"]["returns"]  # same model, same maze
    assert again["train_steps"] == 32
    # other settings in the same --out are refused, by name
    with pytest.raises(UserError, match="timesteps"):
        run_compare(dataclasses.replace(cfg, timesteps=64), progress=False)


def test_two_compare_runs_sharing_one_out_merge_their_cells(tmp_path, monkeypatch):
    import agents.compare

    calls = []

    def fake_cell(cfg, algo, env, seed):
        calls.append(cell_key(algo, env, seed))
        if calls == ["random/seed0"]:  # the other run finishes its cells meanwhile
            run_compare(dataclasses.replace(cfg, envs=("real",)), progress=False,
                        command="python -m agents.compare --envs real")
        return {"algo": algo, "env": env, "seed": seed, "mean_return": float(len(calls)),
                "train_steps_per_s": None if algo == "random" else 10.0,
                "train_wall_s": 0.0 if algo == "random" else 5.0, "wall_s": 6.0}

    monkeypatch.setattr(agents.compare, "run_cell", fake_cell)
    cfg = CompareConfig(algos=("ppo",), envs=("imagination",), seeds=(0,), out=str(tmp_path))
    table = run_compare(cfg, progress=False, command="python -m agents.compare --envs imagination")
    # the other run's cells are kept beside this run's; each run keeps its own random cell
    assert sorted(table["cells"]) == ["ppo/imagination/seed0", "ppo/real/seed0", "random/seed0"]
    saved = json.loads((tmp_path / "table.json").read_text())
    assert sorted(saved["cells"]) == sorted(table["cells"])
    assert [(r["policy"], r["trained_in"]) for r in saved["rows"]] == [
        ("random", None), ("ppo", "imagination"), ("ppo", "real")]
    md = (tmp_path / "table.md").read_text()
    assert "| ppo | real | 1 |" in md and "| ppo | imagination | 1 |" in md
    assert saved["commands"] == ["python -m agents.compare --envs real",
                                 "python -m agents.compare --envs imagination"]
    assert all(f"    {c}" in md for c in saved["commands"])  # both commands behind the table
    # a third run of either grid finds every cell scored
    monkeypatch.setattr(agents.compare, "run_cell", lambda *a: pytest.fail("cell run again"))
    assert sorted(run_compare(dataclasses.replace(cfg, envs=("real",)),
                              progress=False)["cells"]) == sorted(table["cells"])


@pytest.mark.parametrize("make, message", [
    (lambda: PPOConfig(algo="a2c"), "algo='a2c'"),
    (lambda: PPOConfig(env="sim"), "env='sim'"),
    (lambda: PPOConfig(wandb="cloud"), "wandb='cloud'"),
    (lambda: CompareConfig(timesteps=0), "--timesteps must be >= 1"),
    (lambda: CompareConfig(episodes=0), "--episodes must be >= 1"),
    (lambda: CompareConfig(algos=("dqn",)), "--algos dqn"),
    (lambda: CompareConfig(envs=("real", "real")), "--envs real real"),
    (lambda: CompareConfig(seeds=()), "--seeds"),
    (lambda: CompareConfig(batch_size=4096), "batch_size=4096"),
])
def test_bad_options_are_named(make, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        make().validate()


def test_compare_cli_reports_bad_options(tmp_path, capsys):
    assert main(["--timesteps", "0", "--out", str(tmp_path)]) == 2
    assert "--timesteps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--algos", "dqn"])
    assert not (tmp_path / "table.json").exists()


def test_a_cut_off_ppo_run_resumes_from_its_last_save(tiny_world, tmp_path):
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.ppo import PARTIAL_MODEL, PARTIAL_STATE

    class CutOff(BaseCallback):  # the session ends during the second rollout
        def _on_step(self) -> bool:
            if self.num_timesteps > 40:
                raise KeyboardInterrupt
            return True

    cfg = _tiny(checkpoint=str(tiny_world), total_timesteps=96, checkpoint_every=32,
                out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        train_ppo(cfg, callback=CutOff())
    state = json.loads((tmp_path / "run" / PARTIAL_STATE).read_text())
    assert state["steps"] == 32 and not finished_run(cfg)  # saved before the second rollout
    saved = load_model(tmp_path / "run" / PARTIAL_MODEL)

    class Start(BaseCallback):  # where the same command starts, with which weights
        def _on_training_start(self) -> None:
            self.steps = self.num_timesteps
            self.same = all(torch.equal(a, b) for a, b in zip(
                self.model.policy.state_dict().values(), saved.policy.state_dict().values()))

        def _on_step(self) -> bool:
            return True

    start = Start()
    model = train_ppo(cfg, callback=start)  # the same command again
    assert (start.steps, start.same) == (32, True)
    assert model.num_timesteps == 96 and finished_run(cfg)
    assert read_train_stats(cfg.out)["steps"] == 96
    assert not (tmp_path / "run" / PARTIAL_MODEL).exists()
    assert finished_run(dataclasses.replace(cfg, checkpoint_every=8))  # not a setting
    assert finished_run(dataclasses.replace(cfg, progress=False, wandb="disabled"))  # nor these
    # the resumed run dropped the metrics logged after its save and went on from there
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert steps == [32, 64, 96]
    assert not finished_run(dataclasses.replace(cfg, seed=1))


def test_world_compile_reaches_the_imagined_env_and_is_not_a_setting(tiny_world, tmp_path):
    from agents.ppo import make_imagined_vec_env

    cfg = _tiny(checkpoint=str(tiny_world), world_compile=True)
    env = make_imagined_vec_env(cfg)
    try:
        assert env.venv.worlds.config.compile is True
    finally:
        env.close()
    compare = CompareConfig(checkpoint=str(tiny_world), world_compile=True)
    assert compare.ppo_config("ppo", "imagination", 0).world_compile is True
    assert "world_compile" not in compare.settings()
