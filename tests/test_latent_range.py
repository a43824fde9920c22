"""A VAE's measured latent range: measuring, the file, the codec's range and the sampler's clip."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from world_model import latent_range
from world_model.errors import CheckpointError, UserError
from world_model.latents import VAECodec


@pytest.fixture(scope="module")
def small_vae(tmp_path_factory):
    from world_model.autoencoder import AutoencoderConfig, RADAutoencoder

    torch.manual_seed(0)
    vae = RADAutoencoder(AutoencoderConfig(latent_channels=4, block_out_channels=(8, 16, 16)))
    path = tmp_path_factory.mktemp("vae") / "small"
    vae.save_pretrained(path)
    return path


def test_measure_gives_per_channel_quantiles_and_min_max_at_zero():
    rng = np.random.default_rng(0)
    z = [rng.normal(size=(5, 3, 2, 2)) * np.array([1.0, 2.0, 3.0])[None, :, None, None]
         for _ in range(2)]
    low, high = latent_range.measure(z, 0.0)
    flat = np.concatenate(z).transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(low, flat.min(1), rtol=1e-6)
    np.testing.assert_allclose(high, flat.max(1), rtol=1e-6)
    low, high = latent_range.measure(z, 0.1)
    np.testing.assert_allclose(low, np.quantile(flat, 0.1, axis=1), rtol=1e-5)
    assert all(lo > flat_min for lo, flat_min in zip(low, flat.min(1)))
    with pytest.raises(ValueError, match="quantile"):
        latent_range.measure(z, 0.5)


def test_rad_latent_range_writes_the_file_the_codec_reads(real_episodes_dir, small_vae, tmp_path):
    from world_model.commands import latent_range as command

    vae = tmp_path / "vae"
    shutil.copytree(small_vae, vae)
    assert VAECodec.from_dir(vae).value_range is None  # no file: nothing to clip to
    args = argparse.Namespace(vae=str(vae), data=str(real_episodes_dir), quantile=0.0,
                              max_episodes=None, no_progress=True)
    assert command.main(args) == 0
    spec = json.loads((vae / latent_range.RANGE_FILE).read_text())
    assert spec["episodes"] == 3 and spec["frames"] == 3 * 41 and spec["quantile"] == 0.0
    codec = VAECodec.from_dir(vae)
    low, high = codec.value_range
    assert low.shape == (4, 1, 1) and torch.all(low < high)
    from world_model.data.format import list_episodes, read_episode

    frames = torch.from_numpy(read_episode(list_episodes(real_episodes_dir)[1])["image"])
    z = codec.encode(frames)  # q = 0: every real latent lies inside (fp16 cache rounding aside)
    assert torch.all(z >= low - 1e-2) and torch.all(z <= high + 1e-2)
    with pytest.raises(UserError, match="--quantile"):
        command.main(argparse.Namespace(**{**vars(args), "quantile": 0.7}))


def test_a_bad_range_file_is_named(small_vae, tmp_path):
    vae = tmp_path / "vae"
    shutil.copytree(small_vae, vae)
    (vae / latent_range.RANGE_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="latent_range.json: not a latent range file"):
        VAECodec.from_dir(vae)
    latent_range.write(vae, [0.0, 0.0], [1.0, 1.0])  # 2 channels for a 4-channel VAE
    with pytest.raises(CheckpointError, match="expected 4 increasing"):
        VAECodec.from_dir(vae)
    with pytest.raises(ValueError, match="bad latent range"):
        latent_range.write(vae, [0.0], [0.0])


def test_the_sampler_clips_each_channel_to_the_world_s_range(small_vae, tmp_path):
    from world_model.checkpoint import save_world
    from world_model.configs import resolve_config
    from world_model.loading import load_engine
    from world_model.world import build_world

    cfg = resolve_config("tiny", ["latent.kind=vae", "latent.vae_path=\"vae\"",
                                  "model.latent_channels=4", "model.latent_size=16",
                                  "model.patch_size=4"])
    torch.manual_seed(0)
    model = build_world(cfg, vae_path=small_vae).model
    plain = save_world(tmp_path / "plain", cfg, model, vae_source=small_vae)
    ranged_vae = tmp_path / "vae-ranged"
    shutil.copytree(small_vae, ranged_vae)
    low, high = [-0.3, -0.1, 0.0, 0.2], [-0.1, 0.1, 0.05, 0.6]  # narrow, different per channel
    latent_range.write(ranged_vae, low, high)
    ranged = save_world(tmp_path / "ranged", cfg, model, vae_source=ranged_vae)
    assert (ranged / "vae" / latent_range.RANGE_FILE).is_file()  # travels with the world

    def imagine(run, **overrides):
        engine = load_engine(run, steps=3, dtype="float32", **overrides)
        state = engine.start(torch.zeros(2, 2, 64, 64, 3, dtype=torch.uint8), [[0, 1], [0, 2]],
                             seeds=[0, 1])
        return torch.stack([engine.step_latents(state, [a, a]).latent for a in (1, 2, 3)])

    lo, hi = torch.tensor(low).view(4, 1, 1), torch.tensor(high).view(4, 1, 1)
    outside = lambda z: bool(torch.any((z < lo - 1e-6) | (z > hi + 1e-6)))
    assert outside(imagine(plain))  # random weights leave the narrow range ...
    z = imagine(ranged)
    assert not outside(z)  # ... the clip keeps every channel inside its own
    assert torch.all(z[..., 2, :, :] <= 0.05 + 1e-6) and torch.any(z[..., 3, :, :] > 0.1)


def test_the_shipped_worlds_clip_to_the_shipped_vae_s_range():
    from world_model.loading import SHIPPED_WORLD

    if not (SHIPPED_WORLD / "config.json").is_file():
        pytest.skip("no shipped world")
    weights = SHIPPED_WORLD.parent
    expect = latent_range.read(weights / "memory-maze-9x9-vae", 8)
    assert expect is not None  # rad train --vae with the shipped VAE copies the range into a run
    for world in ("memory-maze-9x9", "memory-maze-9x9-df"):
        assert latent_range.read(weights / world / "vae", 8) == expect
        low, high = VAECodec.from_dir(weights / world / "vae").value_range
        assert torch.equal(low.flatten(), torch.tensor(expect[0]))
        assert torch.equal(high.flatten(), torch.tensor(expect[1]))
