"""The batched learned world: N rows in one engine call, as an SB3 VecEnv and a Gymnasium VectorEnv
(autoreset, terminal observations, truncation flags), and PPO training on it."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from model_utils import CONTEXT, STEPS

from rad_env.bank import BANK_FILE, ContextBank
from rad_env.env import RADEnv
from rad_env.vector import RADVecEnv, RADVectorEnv
from world_model.errors import UserError


def count_engine_calls(monkeypatch, worlds) -> list[int]:
    """Record the batch size of every engine.step call, and check that each call checks its
    actions exactly once (in the engine: the env faces pass them through)."""
    from world_model.engine import rollout

    calls: list[int] = []
    checks: list[int] = []
    step, check = worlds.engine.step, rollout.check_actions

    def counted_check(*args, **kwargs):
        checks.append(1)
        return check(*args, **kwargs)

    def counted(state, actions):
        before = len(checks)
        out = step(state, actions)
        assert len(checks) - before == 1  # checked once, by the engine
        calls.append(len(actions))
        return out

    monkeypatch.setattr(rollout, "check_actions", counted_check)
    monkeypatch.setattr(worlds.engine, "step", counted)
    return calls


# -- stable-baselines3 ----------------------------------------------------------------------------
def test_all_rows_advance_in_one_batched_engine_call(monkeypatch, tiny_world):
    env = RADVecEnv(3, tiny_world, steps=STEPS)
    calls = count_engine_calls(monkeypatch, env.worlds)
    env.reset()
    for _ in range(4):
        obs, *_ = env.step(np.array([1, 2, 3]))
    assert calls == [3, 3, 3, 3] and obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8


def test_each_row_follows_its_own_seed_like_a_single_env(tiny_world):
    actions = np.array([[1, 2, 3], [1, 1, 1], [4, 5, 0], [2, 2, 2]])
    env = RADVecEnv(3, tiny_world, steps=STEPS)
    env.seed(10)
    batched = [env.reset()] + [env.step(a)[0] for a in actions]
    for row in range(3):
        single = RADEnv(tiny_world, steps=STEPS)
        frames = [single.reset(seed=10 + row)[0]] + [single.step(int(a))[0] for a in actions[:, row]]
        for t, frame in enumerate(frames):  # equal up to float rounding of batch-size-dependent math
            diff = np.abs(frame.astype(int) - batched[t][row].astype(int))
            assert diff.max() <= 3 and diff.mean() < 0.1, (row, t, diff.max(), diff.mean())


def test_finished_rows_reset_at_once_with_terminal_observation_and_truncation_flag(tiny_world):
    bank = ContextBank.load(tiny_world / BANK_FILE)
    env = RADVecEnv(2, tiny_world, steps=STEPS, max_steps=3)
    env.seed(0)
    env.reset()
    for _ in range(2):
        obs, rewards, dones, infos = env.step(np.array([1, 1]))
        assert not dones.any() and all("terminal_observation" not in i for i in infos)
    last = env.worlds.obs.copy()
    obs, rewards, dones, infos = env.step(np.array([1, 1]))
    assert dones.tolist() == [True, True] and rewards.dtype == np.float32
    for row in range(2):
        info = infos[row]
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (64, 64, 3)
        assert not np.array_equal(info["terminal_observation"], last[row])  # a new frame
        clip = env.reset_infos[row]["clip"]
        assert np.array_equal(obs[row], bank.frames[clip, -1])  # the next episode's start
        assert env.reset_infos[row]["frame_index"] == CONTEXT - 1
    obs, rewards, dones, infos = env.step(np.array([1, 1]))
    assert not dones.any() and infos[0]["step"] == 1


def test_a_terminated_row_is_not_flagged_as_truncated(tmp_path, make_tiny_world):
    world = make_tiny_world(tmp_path / "ending", termination_bias=20.0)
    env = RADVecEnv(2, world, steps=STEPS)
    env.reset()
    _, _, dones, infos = env.step(np.array([0, 1]))
    assert dones.all() and all(i["TimeLimit.truncated"] is False for i in infos)
    assert all("terminal_observation" in i for i in infos)


def test_vec_env_reset_options_and_bad_actions(tiny_world):
    bank = ContextBank.load(tiny_world / BANK_FILE)
    env = RADVecEnv(2, tiny_world, steps=STEPS)
    env.set_options({"clip": 3})
    obs = env.reset()
    assert all(np.array_equal(o, bank.frames[3, -1]) for o in obs)
    with pytest.raises(UserError, match=r"action 6 at index 1 is outside Discrete\(6\)"):
        env.step(np.array([0, 6]))
    with pytest.raises(UserError, match=r"actions must be integer \(2,\)"):
        env.step(np.array([0, 1, 2]))
    assert env.get_attr("render_mode") == [None, None]
    assert env.env_is_wrapped(gymnasium.Wrapper) == [False, False]


def test_ppo_learns_on_the_vec_env_with_no_adapter(tiny_world):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    env = VecMonitor(RADVecEnv(2, tiny_world, steps=1, max_steps=8))
    env.seed(0)
    model = PPO("CnnPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps == 32
    assert len(model.ep_info_buffer) == 4  # 2 rows x 16 steps / 8 steps per episode
    assert all(ep["l"] == 8 for ep in model.ep_info_buffer)
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (2,)


# -- Gymnasium ------------------------------------------------------------------------------------
def test_make_vec_gives_the_batched_env_with_next_step_autoreset(tiny_world):
    env = gymnasium.make_vec("rad_env:RAD-MemoryMaze-v0", num_envs=2, checkpoint=str(tiny_world),
                             steps=STEPS, max_steps=2)
    assert isinstance(env, RADVectorEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.observation_space.shape == (2, 64, 64, 3) and env.single_action_space.n == 6
    obs, infos = env.reset(seed=0)
    assert infos["clip"].shape == (2,) and infos["_clip"].all()
    env.step(np.array([1, 2]))
    obs, reward, terminated, truncated, infos = env.step(np.array([1, 2]))
    assert truncated.all() and not terminated.any() and (infos["step"] == 2).all()
    obs, reward, terminated, truncated, infos = env.step(np.array([1, 2]))  # the autoreset step
    assert not truncated.any() and (reward == 0).all() and (infos["frame_index"] == CONTEXT - 1).all()
    assert list(infos["context_source"]) == ["bank", "bank"]
    bank = ContextBank.load(tiny_world / BANK_FILE)
    assert all(np.array_equal(obs[i], bank.frames[infos["clip"][i], -1]) for i in range(2))
    infos = env.step(np.array([1, 2]))[4]
    assert (infos["step"] == 1).all() and (infos["frame_index"] == CONTEXT).all()
    default = gymnasium.make_vec("rad_env:RAD-MemoryMaze-v0", num_envs=1, checkpoint=str(tiny_world))
    assert default.unwrapped.worlds.max_steps == 1000


def test_same_step_autoreset_returns_final_observation(tiny_world):
    bank = ContextBank.load(tiny_world / BANK_FILE)
    next_step = RADVectorEnv(2, tiny_world, steps=STEPS, max_steps=1)
    next_step.reset(seed=1)
    ended = next_step.step(np.array([1, 4]))[0]
    env = RADVectorEnv(2, tiny_world, steps=STEPS, max_steps=1, autoreset_mode="same_step")
    env.reset(seed=1)
    obs, _, _, truncated, infos = env.step(np.array([1, 4]))
    assert truncated.all() and infos["_final_obs"].all() and infos["_final_info"].all()
    assert all(np.array_equal(infos["final_obs"][i], ended[i]) for i in range(2))
    assert (infos["final_info"]["step"] == 1).all()
    assert (infos["frame_index"] == CONTEXT - 1).all()  # the rows already started again
    assert all(np.array_equal(obs[i], bank.frames[infos["clip"][i], -1]) for i in range(2))
    assert env.step(np.array([1, 1]))[3].all()  # and run their next 1-step episode


def test_disabled_autoreset_needs_a_masked_reset(tiny_world):
    env = RADVectorEnv(2, tiny_world, steps=STEPS, max_steps=1, autoreset_mode="disabled")
    env.reset(seed=1)
    env.step(np.array([1, 1]))
    with pytest.raises(UserError, match="reset_mask"):
        env.step(np.array([1, 1]))
    obs, infos = env.reset(options={"reset_mask": np.array([True, True])})
    assert (infos["step"] == 0).all()
    env.step(np.array([1, 1]))
    before = env.worlds.obs[1].copy()
    obs, infos = env.reset(options={"reset_mask": np.array([True, False])})
    assert infos["_step"].tolist() == [True, False] and np.array_equal(obs[1], before)
    with pytest.raises(UserError, match="reset_mask"):
        env.reset(options={"reset_mask": np.array([False, False])})


def test_vector_snapshot_restores_every_row(tiny_world):
    env = RADVectorEnv(3, tiny_world, steps=STEPS)
    env.reset(seed=4)
    snapshot = env.get_state()
    first = [env.step(np.array([1, 2, 3]))[0] for _ in range(3)]
    env.set_state(snapshot)
    second = [env.step(np.array([1, 2, 3]))[0] for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_seeded_vector_resets_reproduce(tiny_world):
    runs = []
    for _ in range(2):
        env = RADVectorEnv(2, tiny_world, steps=STEPS)
        obs, _ = env.reset(seed=[5, 6])
        runs.append([obs] + [env.step(np.array([1, 3]))[0] for _ in range(2)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    with pytest.raises(UserError, match="3 seeds for 2 environments"):
        env.reset(seed=[1, 2, 3])


def test_agents_train_ppo_in_imagination_and_score_a_policy(tmp_path, tiny_world):
    from agents.evaluate import evaluate, policy_from_model, random_policy
    from agents.ppo import PPOConfig, train_ppo

    cfg = PPOConfig(checkpoint=str(tiny_world), num_envs=2, total_timesteps=32, n_steps=16,
                    batch_size=16, n_epochs=1, sampling_steps=1, episode_steps=8,
                    policy_device="cpu", out=str(tmp_path / "ppo"))
    model = train_ppo(cfg)
    assert model.num_timesteps == 32 and (tmp_path / "ppo" / "model.zip").is_file()
    env = RADEnv(tiny_world, steps=1, max_steps=5)  # any env with Memory Maze's spaces
    for policy in (policy_from_model(model), random_policy(seed=0)):
        result = evaluate(policy, env, episodes=2, seed=0)
        assert result.lengths == [5, 5] and len(result.returns) == 2
    with pytest.raises(UserError, match="exceeds the rollout buffer"):
        train_ppo(PPOConfig(checkpoint=str(tiny_world), num_envs=1, n_steps=8, batch_size=16))


# -- rows split across worker processes (EnvConfig.processes) ------------------------------------
def test_rows_split_across_processes_match_one_process(tiny_world):
    """Three rows in two worker processes: the same first frames, frames up to the rounding of a
    smaller batch, the same resets, infos and truncation; snapshots restore; errors arrive here."""
    from rad_env.sharded import ShardedWorlds

    actions = np.array([[1, 2, 3], [4, 4, 4], [0, 5, 1], [2, 2, 2]])
    runs = {}
    for processes in (1, 2):
        env = RADVecEnv(3, tiny_world, steps=STEPS, max_steps=3, processes=processes,
                        dtype="float32")
        with pytest.raises(ResetNeeded):  # the shards keep the episodes' state and say so
            env.step(actions[0])
        env.seed(10)
        frames, dones, infos = [env.reset()], [], []
        for a in actions:
            obs, _, done, info = env.step(a)
            frames.append(obs)
            dones.append(done)
            infos.append([{k: v for k, v in i.items() if k != "terminal_observation"} for i in info])
        runs[processes] = (frames, dones, infos, [dict(r) for r in env.reset_infos])
        if processes == 2:
            assert isinstance(env.worlds, ShardedWorlds) and list(env.worlds.starts) == [0, 2, 3]
            snapshot = env.get_state()
            first = [env.step(np.array([1, 2, 3]))[0] for _ in range(2)]
            env.set_state(snapshot)
            assert all(np.array_equal(a, env.step(np.array([1, 2, 3]))[0]) for a in first)
            with pytest.raises(UserError, match=r"action 6 at index 1 is outside Discrete\(6\)"):
                env.step(np.array([0, 6, 1]))
        env.close()
    (f1, d1, i1, r1), (f2, d2, i2, r2) = runs[1], runs[2]
    assert np.array_equal(f1[0], f2[0])  # the same real contexts from the same seeds
    for a, b in zip(f1[1:], f2[1:]):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.1
    assert [d.tolist() for d in d1] == [d.tolist() for d in d2] == [[False] * 3] * 2 + \
        [[True] * 3] + [[False] * 3]
    assert r1 == r2
    for a, b in zip([x for r in i1 for x in r], [x for r in i2 for x in r]):  # up to rounding
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-3) for k in a)
    with pytest.raises(UserError, match="processes must be >= 1"):
        RADVecEnv(2, tiny_world, processes=0)
    with pytest.raises(UserError, match="sampler steps must be >= 1"):  # raised in a worker
        RADVectorEnv(2, tiny_world, steps=0, processes=2)


def test_auto_processes_split_rows_only_for_an_eager_cpu_engine_with_enough_rows(monkeypatch):
    """``processes="auto"`` (the default): one worker per ROWS_PER_PROCESS rows, at most one per
    core, on an eager CPU engine; 1 when compiled or on a GPU; a number is taken as it is."""
    from rad_env import sharded
    from rad_env.config import EnvConfig

    monkeypatch.setattr(sharded, "_cpus", lambda: 2)
    auto = EnvConfig()
    assert auto.processes == "auto" and sharded.ROWS_PER_PROCESS == 8
    assert [sharded.choose_processes(auto, n) for n in (1, 7, 8, 15, 16, 32, 64)] == \
        [1, 1, 1, 1, 2, 2, 2]
    monkeypatch.setattr(sharded, "_cpus", lambda: 16)
    assert [sharded.choose_processes(auto, n) for n in (16, 40, 1000)] == [2, 5, 16]
    assert sharded.choose_processes(EnvConfig(compile=True), 64) == 1
    assert sharded.choose_processes(EnvConfig(processes=3), 4) == 3
    monkeypatch.setattr(sharded, "resolve_device", lambda device: __import__("torch").device("cuda"))
    assert sharded.choose_processes(EnvConfig(device="cuda"), 64) == 1
    for bad in ("many", 0, 1.5, True):
        with pytest.raises(UserError, match="processes must be >= 1 .* or 'auto'"):
            EnvConfig(processes=bad)


def test_auto_processes_keep_a_small_vector_env_in_this_process(tiny_world):
    from rad_env.worlds import BatchedWorlds

    env = RADVecEnv(3, tiny_world, steps=STEPS)
    assert isinstance(env.worlds, BatchedWorlds) and env.worlds.config.processes == 1
    env.close()
