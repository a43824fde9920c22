"""`rad train-vae`: a per-frame AutoencoderKL trained on real Memory Maze frames, as a codec."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from world_model import cli
from world_model.data.format import read_episode
from world_model.errors import DataError, UserError
from world_model.latents import VAECodec, load_vae
from world_model.training.train_state import TRAIN_STATE_FILE
from world_model.training.vae import VAETrainConfig, parse_channels, train_vae

# Three stages -> 16x16 latents for 64x64 frames, as with the default widths, but tiny.
TINY = VAETrainConfig(steps=2, batch_size=2, channels=(8, 8, 16), mid_block_attention=False,
                      val_frames=4, scale_frames=8, val_every=0, checkpoint_every=1,
                      wandb="disabled", device="cpu")


@pytest.fixture(scope="module")
def trained(real_episodes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "tiny"
    metrics = train_vae(real_episodes_dir, out, TINY)
    return out, metrics


def test_trained_vae_loads_as_codec_and_round_trips_frames(trained, real_episodes_dir):
    out, metrics = trained
    codec = VAECodec(load_vae(out))
    image = read_episode(min(real_episodes_dir.glob("*.npz")))["image"]
    frames = torch.from_numpy(np.stack([image[:3], image[5:8]]))  # (B=2, T=3, 64, 64, 3) uint8

    latents = codec.encode(frames)
    assert latents.shape == (2, 3, 4, 16, 16) and latents.dtype == torch.float32
    decoded = codec.decode(latents)
    assert decoded.shape == frames.shape and decoded.dtype == torch.uint8
    assert metrics["latent_size"] == 16 and metrics["step"] == 2
    assert np.isfinite(metrics["val_psnr"]) and 0 < metrics["val_psnr"] < 100


def test_scaling_factor_whitens_the_latents_and_is_stored(trained):
    out, metrics = trained
    config = json.loads((out / "config.json").read_text())
    assert config["scaling_factor"] == pytest.approx(metrics["scaling_factor"])
    assert config["scaling_factor"] != 1.0
    assert metrics["scaling_factor"] == pytest.approx(1 / metrics["latent_std"])
    assert VAECodec(load_vae(out)).scaling == pytest.approx(metrics["scaling_factor"])
    assert (out / "diffusion_pytorch_model.safetensors").stat().st_mode & 0o044  # others may read


def test_train_state_holds_plain_tensors_only(trained):
    out, _ = trained
    state = torch.load(out / TRAIN_STATE_FILE, weights_only=True)
    assert state["step"] == 2 and state["kind"] == "vae"
    assert set(state) >= {"model", "optimizer", "rng"}
    assert set(state["rng"][0]) >= {"torch", "python", "numpy"}


def test_resume_continues_from_saved_step_like_an_uninterrupted_run(real_episodes_dir, tmp_path):
    straight = train_vae(real_episodes_dir, tmp_path / "straight", replace(TINY, steps=3))
    train_vae(real_episodes_dir, tmp_path / "resumed", replace(TINY, steps=2))
    resumed = train_vae(real_episodes_dir, tmp_path / "resumed",
                        replace(TINY, steps=3, resume=True))

    assert resumed["start_step"] == 2 and resumed["step"] == 3 and straight["start_step"] == 0
    assert torch.load(tmp_path / "resumed" / TRAIN_STATE_FILE, weights_only=True)["step"] == 3
    a = load_file(str(tmp_path / "straight" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_a_vae_run_in_the_old_train_state_layout_resumes_exactly(real_episodes_dir, tmp_path):
    train_vae(real_episodes_dir, tmp_path / "straight", replace(TINY, steps=3))
    train_vae(real_episodes_dir, tmp_path / "old", replace(TINY, steps=2))
    # the layout rad train-vae wrote before world_model/training/run_dir.py (format_version 1)
    path = tmp_path / "old" / TRAIN_STATE_FILE
    state = torch.load(path, weights_only=True)
    old = {k: state[k] for k in ("step", "nonfinite", "cpu_seconds", "model", "optimizer")}
    torch.save({"format_version": 1, **old, "torch_rng": state["rng"][0]["torch"]}, path)
    resumed = train_vae(real_episodes_dir, tmp_path / "old", replace(TINY, steps=3, resume=True))
    assert resumed["start_step"] == 2 and resumed["step"] == 3
    a = load_file(str(tmp_path / "straight" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "old" / "diffusion_pytorch_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_with_another_architecture_is_refused(trained, tmp_path, real_episodes_dir):
    out = tmp_path / "copy"
    shutil.copytree(trained[0], out)
    with pytest.raises(UserError, match="channels"):
        train_vae(real_episodes_dir, out, replace(TINY, channels=(8, 16, 16), resume=True))


def test_overwrite_without_resume_is_refused(trained, real_episodes_dir):
    # (--resume on a directory without a train state starts a new run, as rad train does)
    with pytest.raises(UserError, match="--resume"):
        train_vae(real_episodes_dir, trained[0], TINY)


def test_empty_data_dir_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no episode files"):
        train_vae(tmp_path / "empty", tmp_path / "out", TINY)
    code = cli.main(["train-vae", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out"),
                     "--wandb", "disabled"])
    assert code == 2
    assert "no episode files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_single_episode_file_is_refused_for_lack_of_validation_data(real_episodes_dir, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(min(real_episodes_dir.glob("*.npz")), one)
    with pytest.raises(DataError, match="at least 2"):
        train_vae(one, tmp_path / "out", TINY)


@pytest.mark.parametrize("text", ["32,x,128", "", "32,0", "-8,16"])
def test_bad_channels_are_user_errors(text):
    with pytest.raises(UserError, match="channels"):
        parse_channels(text)


def test_config_rejects_bad_values_and_derives_group_norm_groups():
    assert parse_channels("32,64,128") == (32, 64, 128)
    assert VAETrainConfig().norm_num_groups == 32
    assert VAETrainConfig(channels=(8, 12)).norm_num_groups == 4
    with pytest.raises(UserError, match="channels"):
        VAETrainConfig(channels=(0, 8))
    with pytest.raises(UserError, match="batch_size"):
        VAETrainConfig(batch_size=0)
    with pytest.raises(UserError, match="wandb"):
        VAETrainConfig(wandb="sometimes")  # type: ignore[arg-type]


def test_cli_options_are_the_config_fields(monkeypatch):
    from world_model.options import from_args

    monkeypatch.delenv("WANDB_MODE", raising=False)
    args = cli.build_parser().parse_args(["train-vae", "--data", "d", "--out", "o"])
    assert from_args(VAETrainConfig, args) == VAETrainConfig()  # flags derived from the fields
    args = cli.build_parser().parse_args(["train-vae", "--data", "d", "--out", "o", "--channels",
                                          "16,32,64", "--recon-loss", "l1_ssim",
                                          "--no-mid-block-attention"])
    cfg = from_args(VAETrainConfig, args)
    assert cfg.channels == (16, 32, 64) and cfg.recon_loss == "l1_ssim"
    assert not cfg.mid_block_attention
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train-vae", "--data", "d", "--out", "o", "--channels", "a,b"])
