"""The project's small VAE and the latent cache: files, dispatch, resume, windows, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_model.autoencoder import AutoencoderConfig, RADAutoencoder, is_rad_autoencoder
from world_model.data.dataset import EpisodeWindows
from world_model.data.format import list_episodes
from world_model.devices import native_bf16, resolve_precision
from world_model.errors import DataError, UserError
from world_model.latents import VAECodec, float_to_frames, frames_to_float, load_vae
from world_model.training.latent_cache import (
    LatentEpisodes,
    LatentWindows,
    cache_dir,
    encode_data,
    make_latent_loaders,
)
from world_model.training.vae import border_psnr, ssim_torch


@pytest.fixture(scope="module")
def small_vae(tmp_path_factory):
    torch.manual_seed(0)
    vae = RADAutoencoder(AutoencoderConfig(latent_channels=4, block_out_channels=(8, 16, 16)))
    vae.register_to_config(scaling_factor=0.5)
    path = tmp_path_factory.mktemp("vae") / "small"
    vae.save_pretrained(path)
    return path


def test_small_vae_round_trips_through_load_vae(small_vae):
    assert is_rad_autoencoder(small_vae)
    vae = load_vae(small_vae)
    assert isinstance(vae, RADAutoencoder) and vae.config.scaling_factor == 0.5
    codec = VAECodec(vae)
    assert (codec.channels, codec.downsample) == (4, 4)
    frames = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    z = codec.encode(frames)
    assert z.shape == (2, 3, 4, 16, 16)
    assert codec.decode(z).shape == frames.shape and codec.decode(z).dtype == torch.uint8


def test_latent_cache_encodes_once_resumes_and_is_not_taken_for_episodes(
        real_episodes_dir, small_vae, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in list_episodes(real_episodes_dir):
        (data / p.name).symlink_to(p)
    cache = encode_data(data, small_vae)
    assert cache == cache_dir(data, small_vae) and cache.parent.name == ".latents"
    assert list_episodes(data) == sorted(data.glob("*.npz"))  # the cache is no episode
    first = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
    assert len(first) == 3
    (cache / "episode-001.npz").unlink()
    encode_data(data, small_vae)  # only the missing one again
    again = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
    assert again["episode-000.npz"] == first["episode-000.npz"] and len(again) == 3
    with np.load(cache / "episode-000.npz") as z:
        codec = VAECodec(load_vae(small_vae))
        frames = np.load(data / "episode-000.npz")["image"]
        expect = codec.encode(torch.from_numpy(frames)).numpy()
        assert z["latent"].dtype == np.float16 and z["latent"].shape == (41, 4, 16, 16)
        np.testing.assert_allclose(z["latent"], expect, atol=2e-2, rtol=1e-2)


def test_the_codec_s_channels_last_path_gives_the_plain_vae_s_frames(small_vae):
    codec = VAECodec(load_vae(small_vae))
    plain = load_vae(small_vae).eval()  # contiguous (NCHW) weights and inputs
    torch.manual_seed(0)
    z = torch.randn(3, 4, 16, 16)
    with torch.no_grad():
        expect = float_to_frames(plain.decode(z / codec.scaling).sample)
        frames = codec.decode(z)
        assert frames.shape == (3, 64, 64, 3) and frames.is_contiguous()
        assert (frames.int() - expect.int()).abs().max() <= 1
        real = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
        mode = plain.encode(frames_to_float(real)).latent_dist.mode() * codec.scaling
        torch.testing.assert_close(codec.encode(real), mode, atol=1e-4, rtol=1e-4)


def test_latent_windows_draw_the_frame_loaders_windows(real_episodes_dir, small_vae, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in list_episodes(real_episodes_dir):
        (data / p.name).symlink_to(p)
    cache = encode_data(data, small_vae)
    frames = EpisodeWindows(data, seq_len=8, batch_size=4, seed=5)
    latents = LatentWindows(LatentEpisodes(cache, data, frames.files), 8, 4, seed=5)
    for step in (0, 7):
        a, b = frames.batch(step), latents.batch(step)
        for key in ("actions", "rewards", "episode", "start"):
            np.testing.assert_array_equal(a[key], b[key])
        assert b["latents"].shape == (4, 8, 4, 16, 16) and b["latents"].dtype == np.float32
    frames3 = EpisodeWindows(data, seq_len=8, batch_size=4, seed=5, chunks=3)  # carried chunks
    latents3 = LatentWindows(LatentEpisodes(cache, data, frames3.files), 8, 4, seed=5, chunks=3)
    for step in (0, 1, 2, 4):
        a, b = frames3.batch(step), latents3.batch(step)
        for key in ("actions", "rewards", "episode", "start", "chunk"):
            np.testing.assert_array_equal(a[key], b[key])
    train, val = make_latent_loaders(data, small_vae, seq_len=8, batch_size=2, val_fraction=0.34)
    assert val is not None and next(iter(train))["latents"].shape == (2, 8, 4, 16, 16)
    (cache / "episode-002.npz").write_bytes(b"broken")
    with pytest.raises(DataError, match="rad encode-latents"):
        LatentEpisodes(cache, data, frames.files)


def test_rad_train_with_a_vae_trains_from_the_cache(real_episodes_dir, small_vae, tmp_path,
                                                    monkeypatch):
    from world_model.checkpoint import load
    from world_model.configs import resolve_config
    from world_model.training.run import TrainOptions, train

    data = tmp_path / "data"
    data.mkdir()
    for p in list_episodes(real_episodes_dir):
        (data / p.name).symlink_to(p)
    cfg = resolve_config("tiny", ["latent.kind=vae", f"latent.vae_path=\"{small_vae}\"",
                                  "model.latent_channels=4", "model.latent_size=16",
                                  "model.patch_size=4", "train.steps=3"])
    calls = []
    original = VAECodec.encode
    monkeypatch.setattr(VAECodec, "encode", lambda self, f: calls.append(f.shape) or original(self, f))
    train(cfg, data, tmp_path / "run", TrainOptions(device="cpu", wandb="disabled",
                                                    progress=False))
    assert calls and all(shape[0] <= 250 and len(shape) == 4 for shape in calls)  # encoding only
    assert (data / ".latents").is_dir() and load(tmp_path / "run").config.latent.kind == "vae"


def test_ssim_loss_matches_scikit_image_and_border_psnr_reads_the_border():
    from world_model.evaluation.metrics import ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    as_float = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).double() / 127.5 - 1
    assert float(ssim_torch(as_float(a), as_float(b))) == pytest.approx(ssim(a, b).mean(), abs=1e-6)
    c = a.copy()
    c[:, 2:-2, 2:-2] = 0  # the inside changes, the border does not
    assert border_psnr(a, c) == pytest.approx(10 * np.log10(255.0 ** 2 / 1e-10))
    c[:, 0] = 255 - c[:, 0]
    assert border_psnr(a, c) < 20


def test_auto_precision_is_float32_without_native_bf16(monkeypatch):
    from world_model import devices

    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "fma"})
    assert not native_bf16("cpu") and resolve_precision("auto") == "float32"
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert native_bf16("cpu") and resolve_precision("auto") == "bfloat16"
    assert resolve_precision("float32") == "float32"
    with pytest.raises(UserError, match="precision"):
        resolve_precision("fp8")
