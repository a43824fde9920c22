"""The reward model: a step's reward read from the frames before it and the action."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from world_model import cli
from world_model.errors import CheckpointError, UserError
from world_model.network.reward_model import (
    RewardModel,
    RewardModelConfig,
    load_reward_model,
    save_reward_model,
)
from world_model.training.reward_config import RewardTrainConfig
from world_model.training.reward_model import prior_shift, ranking, train_reward_model

REWARDED = 2  # the planted rule below: the step earns a reward when its action is this one


@pytest.fixture(scope="module")
def vae_world(tmp_path_factory):
    """A tiny latent world (random weights) on a small VAE: 4x16x16 latents of 64x64 frames."""
    from world_model.autoencoder import AutoencoderConfig, RADAutoencoder
    from world_model.checkpoint import save_world
    from world_model.configs import resolve_config
    from world_model.world import build_world

    root = tmp_path_factory.mktemp("vae_world")
    torch.manual_seed(0)
    vae = RADAutoencoder(AutoencoderConfig(latent_channels=4, block_out_channels=(8, 16, 16)))
    vae.save_pretrained(root / "vae-src")
    cfg = resolve_config("tiny", ["latent.kind=vae", "latent.vae_path=\"vae\"",
                                  "model.latent_channels=4", "model.latent_size=16",
                                  "model.patch_size=4"])
    world = build_world(cfg, vae_path=root / "vae-src")
    return save_world(root / "world", cfg, world.model, vae_source=root / "vae-src")


@pytest.fixture(scope="module")
def planted(real_episodes_dir, tmp_path_factory):
    """The real episodes with their rewards replaced by a rule a model can learn from the action
    alone (the real 40-step episodes hold no touch): reward 1 on every step whose action is
    :data:`REWARDED`. Frames and actions stay the simulator's."""
    from world_model.data.format import action_indices, list_episodes, read_episode, write_episode

    out = tmp_path_factory.mktemp("planted")
    for p in list_episodes(real_episodes_dir):
        ep = dict(read_episode(p))
        reward = (action_indices(ep["action"]) == REWARDED).astype(np.float32)
        reward[0] = 0.0
        ep["reward"] = reward
        write_episode(out / p.name, ep)
    return out


def test_model_gives_one_logit_per_action_and_names_bad_input(tmp_path):
    cfg = RewardModelConfig(latent_channels=4, latent_size=8, num_actions=5, frames=3, width=8)
    model = RewardModel(cfg)
    x = torch.randn(2, 3, 4, 8, 8)
    assert model(x).shape == (2, 5)
    assert torch.equal(model.logit(x, torch.tensor([4, 1])), model(x)[[0, 1], [4, 1]])
    with pytest.raises(UserError, match=r"latents must be \(B, 3, 4, 8, 8\)"):
        model(torch.randn(2, 2, 4, 8, 8))
    with pytest.raises(UserError, match="latent_size must be a multiple of 4"):
        RewardModelConfig(latent_size=6)
    save_reward_model(tmp_path / "r", model, {"x": 1})
    back = load_reward_model(tmp_path / "r")
    assert back.cfg == cfg and torch.equal(back(x), model.eval()(x))


def test_loading_refuses_what_is_not_a_reward_model(tmp_path, vae_world):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_reward_model(tmp_path)
    with pytest.raises(CheckpointError, match="a world checkpoint, not a reward model"):
        load_reward_model(vae_world)
    save_reward_model(tmp_path / "r", RewardModel(RewardModelConfig(width=8)))
    raw = json.loads((tmp_path / "r" / "config.json").read_text())
    (tmp_path / "r" / "config.json").write_text(json.dumps({**raw, "version": 99}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_reward_model(tmp_path / "r")


def test_prior_shift_and_ranking():
    # batches of 25% drawn events + 75% from all steps at a 1% rate: 25.75% events
    want = math.log(0.01 / 0.99) - math.log(0.2575 / 0.7425)
    assert prior_shift(0.01, 0.25) == pytest.approx(want)
    labels = np.array([1, 0, 1, 0, 0], bool)
    perfect = ranking(np.array([0.9, 0.1, 0.8, 0.2, 0.3]), labels)
    assert perfect["average_precision"] == 1.0 and perfect["best_f1"] == 1.0
    assert perfect["best_threshold"] == 0.8 and perfect["recall_at_0.5"] == 1.0
    worst = ranking(np.array([0.1, 0.9, 0.2, 0.8, 0.7]), labels)
    assert worst["average_precision"] == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert worst["precision_at_0.5"] == 0.0
    assert ranking(np.zeros(3), np.zeros(3, bool))["average_precision"] is None


def test_train_reward_learns_a_planted_rule_calibrates_and_resumes_exactly(planted, vae_world,
                                                                          tmp_path):
    cfg = RewardTrainConfig(frames=2, width=8, steps=60, batch_size=32, val_every=30,
                            val_fraction=0.34, warmup_steps=5, lr=3e-3, device="cpu")
    scores = train_reward_model(planted, vae_world, tmp_path / "a", cfg)
    assert scores["step"] == 60 and scores["val_episodes"] == 1 and scores["events"] > 0
    assert scores["average_precision"] > 0.9 and scores["best_f1"] > 0.9
    assert json.loads((tmp_path / "a" / "reward.json").read_text())["step"] == 60
    # the saved output is calibrated to the data's event rate, not the batches' 25%
    model = load_reward_model(tmp_path / "a")
    from world_model.data.checks import index_episodes
    from world_model.data.format import list_episodes
    from world_model.training.latent_cache import LatentEpisodes, cache_dir
    from world_model.training.reward_model import RewardSteps

    files = index_episodes(list_episodes(planted), 2, frame_size=None)
    steps = RewardSteps(LatentEpisodes(cache_dir(planted, vae_world / "vae"), planted, files), 2)
    idx = np.arange(len(steps))
    prob = torch.sigmoid(model.logit(torch.from_numpy(steps.context(idx)),
                                     torch.from_numpy(steps.actions[idx])))
    assert float(prob[torch.from_numpy(steps.labels)].min()) > 0.5
    assert float(prob.mean()) == pytest.approx(steps.event_rate, abs=0.05)
    # half, then resumed: the same weights as one run
    train_reward_model(planted, vae_world, tmp_path / "b",
                       RewardTrainConfig(**{**cfg.__dict__, "steps": 30}))
    train_reward_model(planted, vae_world, tmp_path / "b",
                       RewardTrainConfig(**{**cfg.__dict__, "resume": True}))
    b = load_reward_model(tmp_path / "b")
    for v, w in zip(model.state_dict().values(), b.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6)
    with pytest.raises(UserError, match="not empty"):
        train_reward_model(planted, vae_world, tmp_path / "a", cfg)


def test_a_world_with_reward_dir_reads_rewards_before_the_frame(planted, vae_world, tmp_path):
    from world_model.checkpoint import load
    from world_model.data.format import action_indices, list_episodes, read_episode
    from world_model.loading import load_engine

    world = tmp_path / "world"
    shutil.copytree(vae_world, world)
    model = RewardModel(RewardModelConfig(latent_channels=4, latent_size=16, frames=2, width=8))
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_(std=0.3)
    save_reward_model(world / "reward", model)
    engine = load_engine(world, steps=2)
    ep = read_episode(list_episodes(planted)[0])
    frames = torch.from_numpy(ep["image"][:6])
    actions = torch.from_numpy(action_indices(ep["action"])[:6])
    state = engine.start(frames[None, :3], actions[None, :3], seeds=0)
    assert state.recent.shape == (1, 2, 4, 16, 16)
    latents = engine.codec.encode(frames[None])[0]
    model.eval()
    info = engine.observe(state, frames[None, 3], actions[None, 3])  # reads frames 1, 2
    want = torch.sigmoid(model.logit(latents[None, 1:3], actions[None, 3]))
    assert torch.allclose(info.reward, want, atol=1e-5)
    branch = state.clone()
    a = engine.step_latents(state, actions[None, 4])
    b = engine.step_latents(branch, actions[None, 4])
    assert torch.equal(a.reward, b.reward) and torch.equal(a.latent, b.latent)
    want = torch.sigmoid(model.logit(latents[None, 2:4], actions[None, 4]))
    assert torch.allclose(a.reward, want, atol=1e-5)  # read before the imagined frame joins
    state.reset_rows([0])
    assert not state.recent.any()
    # a reward model made for other latents is named
    save_reward_model(world / "reward", RewardModel(RewardModelConfig(latent_channels=8, width=8)))
    with pytest.raises(CheckpointError, match="retrain it with `rad train-reward"):
        load(world)


def test_cli_options_are_the_train_config_fields():
    from world_model.options import from_args

    args = cli.build_parser().parse_args(["train-reward", "--data", "d", "--out", "o"])
    assert from_args(RewardTrainConfig, args) == RewardTrainConfig()
    args = cli.build_parser().parse_args(["train-reward", "--data", "d", "--out", "o", "--frames",
                                          "3", "--resume"])
    assert from_args(RewardTrainConfig, args) == RewardTrainConfig(frames=3, resume=True)


def test_reward_to_go_sums_the_discounted_events_ahead_clipped_at_one():
    from world_model.training.reward_model import reward_to_go

    got = reward_to_go(np.array([0, 0, 1, 0, 1], np.float32), 0.5)
    assert got.tolist() == pytest.approx([0.3125, 0.625, 1.0, 0.5, 1.0])  # t=2: 1 + 0.25 -> 1
    assert reward_to_go(np.array([0, 1, 0], np.float32), 0.0).tolist() == [0, 1, 0]
    with pytest.raises(UserError, match="gamma must be in"):
        RewardTrainConfig(gamma=1.0)


def test_a_reward_to_go_model_learns_its_target_and_only_a_planner_takes_it(planted, vae_world,
                                                                           tmp_path):
    from agents.mpc import load_value
    from world_model.checkpoint import load

    cfg = RewardTrainConfig(frames=2, width=8, steps=60, batch_size=32, val_every=0,
                            val_fraction=0.34, warmup_steps=5, lr=3e-3, gamma=0.5, device="cpu")
    scores = train_reward_model(planted, vae_world, tmp_path / "v", cfg)
    # the planted reward follows the step's own action, most of the reward-to-go's variance
    assert scores["gamma"] == 0.5 and scores["r2"] > 0.3 and scores["mse"] < 0.1
    value = load_reward_model(tmp_path / "v")
    assert value.cfg.gamma == 0.5
    world = tmp_path / "world"
    shutil.copytree(vae_world, world)
    assert load_value(str(tmp_path / "v"), load(world)).cfg.gamma == 0.5
    shutil.copytree(tmp_path / "v", world / "reward")  # not what a world reads rewards from
    with pytest.raises(CheckpointError, match="a reward-to-go model"):
        load(world)
    save_reward_model(tmp_path / "step", RewardModel(RewardModelConfig(latent_channels=4,
                                                                       width=8)))
    with pytest.raises(UserError, match="a step reward model"):
        load_value(str(tmp_path / "step"), load(vae_world))
