"""Bad episode files never reach a batch or a model: each reader checks every file once and skips a
bad one with a warning naming it, or refuses by name when no good file is left.

The files are the kinds a converter bug or another environment's data produce: frames of another
size (``(N, 64, 32, 3)`` and ``(N, 32, 32, 3)``), a NaN reward, a one-hot action of the wrong
width, an array cut short inside a valid zip.
"""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
from model_utils import tiny_config

from rad_env.bank import make_context_bank
from rad_env.contexts import DataContexts
from world_model.cli import main as rad
from world_model.config import LatentConfig, RunConfig, TrainConfig
from world_model.data.checks import EpisodeWarning, inspect_episode
from world_model.data.dataset import EpisodeWindows, make_dataloaders
from world_model.data.format import list_episodes, read_episode, write_episode
from world_model.errors import DataError
from world_model.training.run import train

T, B = 6, 2


def _narrow(src, dst):
    """``src`` with its frames cut to (N, 64, 32, 3), written as a converter would (np.savez)."""
    ep = read_episode(src)
    ep["image"] = np.ascontiguousarray(ep["image"][:, :, :32])
    np.savez_compressed(dst, **ep)


def _small(src, dst):
    """``src`` with (N, 32, 32, 3) frames: a valid file of another frame size."""
    ep = read_episode(src)
    ep["image"] = np.ascontiguousarray(ep["image"][:, ::2, ::2])
    write_episode(dst, ep)


@pytest.fixture()
def mixed(real_episodes_dir, tmp_path):
    """The 3 real episodes and two of other frame sizes, ``narrow.npz`` and ``small.npz``."""
    root = tmp_path / "mixed"
    root.mkdir()
    good = list_episodes(real_episodes_dir)
    for path in good:
        shutil.copy(path, root / path.name)
    _narrow(good[0], root / "narrow.npz")
    _small(good[1], root / "small.npz")
    return root


@pytest.fixture()
def alone(real_episodes_dir, tmp_path):
    """A directory holding only ``narrow.npz``."""
    root = tmp_path / "alone"
    root.mkdir()
    _narrow(list_episodes(real_episodes_dir)[0], root / "narrow.npz")
    return root


def _warned(record) -> str:
    return "\n".join(str(w.message) for w in record if w.category is EpisodeWarning)


def test_a_file_of_another_frame_size_is_named_and_skipped_by_the_loader(mixed):
    with pytest.warns(EpisodeWarning) as record:
        train_loader, _ = make_dataloaders(mixed, seq_len=T, batch_size=B, val_fraction=0.0,
                                           frame_size=64)
    warned = _warned(record)
    assert "narrow.npz: 'image' must be (N, 64, 64, 3) uint8, got (41, 64, 32, 3)" in warned
    assert "small.npz: 'image' must be (N, 64, 64, 3) uint8, got (41, 32, 32, 3)" in warned
    names = {f.path.name for f in train_loader.dataset.files}
    assert names == {"episode-000.npz", "episode-001.npz", "episode-002.npz"}
    for step in range(6):
        assert train_loader.dataset.batch(step)["frames"].shape == (B, T, 64, 64, 3)


def test_the_configured_frame_size_decides_which_files_are_good(mixed):
    with pytest.warns(EpisodeWarning) as record:
        dataset = EpisodeWindows(mixed, seq_len=T, batch_size=B, frame_size=32)
    assert [f.path.name for f in dataset.files] == ["small.npz"]
    assert "episode-000.npz: 'image' must be (N, 32, 32, 3)" in _warned(record)
    assert dataset.batch(0)["frames"].shape == (B, T, 32, 32, 3)


def test_training_among_files_of_another_frame_size_proceeds_without_them(mixed, tmp_path):
    config = RunConfig(model=tiny_config(latent_size=64, patch_size=16, width=64),
                       latent=LatentConfig("pixels"),
                       train=TrainConfig(seq_len=T, batch_size=B, steps=2, warmup_steps=1,
                                         log_every=1, val_every=2, checkpoint_every=2,
                                         val_batches=1, num_workers=0, val_fraction=0.34))
    with pytest.warns(EpisodeWarning) as record:
        metrics = train(config, mixed, tmp_path / "run")
    assert metrics["step"] == 2 and np.isfinite(metrics["loss/total"])
    assert "narrow.npz" in _warned(record) and "small.npz" in _warned(record)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_file_of_another_frame_size_alone_is_refused_by_name(alone, tmp_path, capsys):
    with pytest.warns(EpisodeWarning), pytest.raises(DataError) as info:
        make_dataloaders(alone, seq_len=T, batch_size=B, val_fraction=0.0)
    assert "training episode files" in str(info.value)
    assert "narrow.npz: 'image' must be (N, 64, 64, 3) uint8, got (41, 64, 32, 3)" in str(info.value)
    code = rad(["train", "--data", str(alone), "--config", "tiny", "--out", str(tmp_path / "run"),
                "--steps", "1", "--wandb", "disabled", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "narrow.npz: 'image' must be (N, 64, 64, 3)" in err and "Traceback" not in err


def test_the_context_bank_skips_a_file_of_another_frame_size_by_name(mixed, alone, tmp_path):
    with pytest.warns(EpisodeWarning) as record:
        bank = make_context_bank(mixed, tmp_path / "contexts.npz", clips=8, context_len=T)
    assert "narrow.npz" in _warned(record) and "small.npz" in _warned(record)
    assert bank.frames.shape == (8, T, 64, 64, 3)
    assert set(bank.episode) == {"episode-000.npz", "episode-001.npz", "episode-002.npz"}
    with pytest.warns(EpisodeWarning), pytest.raises(DataError, match="narrow.npz: 'image' must"):
        make_context_bank(alone, tmp_path / "none.npz", clips=2, context_len=T)
    assert not (tmp_path / "none.npz").exists()


def test_data_contexts_skip_a_file_of_another_frame_size_by_name(mixed, alone):
    with pytest.warns(EpisodeWarning, match="narrow.npz"):
        contexts = DataContexts(mixed, T, frame_size=64, num_actions=6)
    clip = contexts.sample(np.random.default_rng(0), T)
    assert clip.frames.shape == (T, 64, 64, 3)
    with pytest.warns(EpisodeWarning), pytest.raises(DataError, match="narrow.npz: 'image' must"):
        DataContexts(alone, T, frame_size=64)


def test_a_nan_reward_is_refused_by_name(real_episodes_dir, tmp_path):
    ep = read_episode(list_episodes(real_episodes_dir)[0])
    ep["reward"] = ep["reward"].copy()
    ep["reward"][7] = np.nan
    np.savez_compressed(tmp_path / "nan.npz", **ep)
    with pytest.raises(DataError, match=r"nan.npz: 'reward' has 1 non-finite value\(s\) \(nan at "
                                        r"frame 7\)"):
        inspect_episode(tmp_path / "nan.npz")
    with pytest.raises(DataError, match="written.npz: 'reward' has 1 non-finite"):
        write_episode(tmp_path / "written.npz", ep)
    shutil.copy(list_episodes(real_episodes_dir)[1], tmp_path / "good.npz")
    with pytest.warns(EpisodeWarning, match="nan.npz"):
        dataset = EpisodeWindows(tmp_path, seq_len=T, batch_size=B)
    assert [f.path.name for f in dataset.files] == ["good.npz"]


def test_wrong_action_width_and_cut_arrays_are_refused_by_name(real_episodes_dir, tmp_path):
    src = list_episodes(real_episodes_dir)[0]
    ep = read_episode(src)
    np.savez(tmp_path / "wide.npz", **{**ep, "action": np.pad(ep["action"], ((0, 0), (0, 1)))})
    with pytest.raises(DataError, match=r"wide.npz: 'action' must be \(41, 6\) one-hot"):
        inspect_episode(tmp_path / "wide.npz", num_actions=6)
    assert inspect_episode(tmp_path / "wide.npz").length == 41  # no action count asked for
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "cut.npz", "w") as zout:
        for member in zin.namelist():
            data = zin.read(member)
            zout.writestr(member, data[:-100] if member == "action.npy" else data)
    with pytest.raises(DataError, match="cut.npz: 'action' is truncated or padded"):
        inspect_episode(tmp_path / "cut.npz")
