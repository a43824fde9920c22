"""Run directories written by earlier versions keep loading and computing the same numbers.

``tests/data/old_world`` was written before the package layout of issue 12 (``config.json`` with the
reward/termination loss weights still under ``diffusion``, ``model.safetensors``), together with
``expected.json``: the outputs that code computed on the inputs below. Parameter names and config
fields must keep loading; a field that moved section is migrated on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import world_model
from world_model.config import RunConfig, SamplerConfig
from world_model.engine.rollout import RolloutEngine

OLD_WORLD = Path(__file__).parent / "data" / "old_world"
ATOL = 1e-5


def expected() -> dict:
    return json.loads((OLD_WORLD / "expected.json").read_text())


def test_an_old_run_directory_loads_and_predicts_what_it_did():
    world = world_model.load(OLD_WORLD)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 5, 3, 4, 4, generator=g)
    a = torch.randint(0, 6, (1, 5), generator=g)
    k = torch.randint(0, 1001, (1, 5), generator=g)
    with torch.no_grad():
        out = world.model(z, k, a, world.model.prefetch(z, a)[0])
    want = expected()
    for name in ("prediction", "reward", "termination_logit"):
        got = getattr(out, name).flatten()
        torch.testing.assert_close(got, torch.tensor(want[name]), rtol=0, atol=ATOL, msg=name)


def test_an_old_run_directory_rolls_out_what_it_did():
    world = world_model.load(OLD_WORLD)
    g = torch.Generator().manual_seed(0)
    torch.randn(1, 5, 3, 4, 4, generator=g)  # the same stream as the prediction test
    torch.randint(0, 6, (1, 5), generator=g)
    torch.randint(0, 1001, (1, 5), generator=g)
    frames = torch.randint(0, 256, (1, 4, 4, 4, 3), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 6, (1, 4), generator=g)
    # clip=False: the sampler as it was when the fixture was written (clipping came later)
    engine = RolloutEngine(world, SamplerConfig(steps=3, clip=False))
    state = engine.start(frames, actions, seeds=[3])
    want = expected()
    for t in range(3):
        info = engine.step_latents(state, torch.tensor([t % 6]))
        torch.testing.assert_close(info.latent.flatten(), torch.tensor(want["rollout_latents"][t]),
                                   rtol=0, atol=ATOL)
    torch.testing.assert_close(info.reward, torch.tensor(want["rollout_reward"]), rtol=0, atol=ATOL)


def test_old_config_fields_keep_loading():
    world = world_model.load(OLD_WORLD)
    saved = json.loads((OLD_WORLD / "config.json").read_text())
    assert saved["diffusion"]["reward_loss_weight"] == 0.1  # the old layout, as written
    assert world.config.model.memory == "lstm" and world.config.model.window == 3
    assert (world.config.train.reward_loss_weight, world.config.train.termination_loss_weight) == (
        0.1, 0.01)


def test_loss_weights_under_diffusion_move_to_train():
    data = json.loads((OLD_WORLD / "config.json").read_text())
    data["diffusion"]["reward_loss_weight"] = 0.5
    data["diffusion"]["termination_loss_weight"] = 0.25
    config = RunConfig.from_dict(data)
    assert (config.train.reward_loss_weight, config.train.termination_loss_weight) == (0.5, 0.25)
    assert "reward_loss_weight" not in config.to_dict()["diffusion"]
    assert RunConfig.from_dict(config.to_dict()) == config  # and the new layout round-trips
