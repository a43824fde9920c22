"""`rad eval` and `rad rollout` on a tiny random world and real Memory Maze frames: the report's
files, its numbers against a direct scikit-image computation, the return part, determinism and
errors."""

from __future__ import annotations

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from world_model.cli import main as rad
from world_model.data.checks import EpisodeWarning
from world_model.data.format import list_episodes, read_episode, write_episode
from world_model.errors import DataError
from world_model.evaluation.protocol import (
    Trajectory,
    load_trajectories,
    matched_outbound,
    return_mask,
)

# (context_frames, outbound_frames, frames) of the two evaluation files: different on purpose
SPLITS = ((25, 20, 41), (30, 16, 38))


@pytest.fixture(scope="module")
def eval_dir(real_episodes_dir, tmp_path_factory):
    """Two real Memory Maze episodes (cut to 41 and 38 frames) with the evaluation keys added."""
    root = tmp_path_factory.mktemp("evalset")
    for (ctx, outbound, n), path in zip(SPLITS, list_episodes(real_episodes_dir)):
        ep = read_episode(path)
        T = len(ep["image"])
        ep = {k: (v[:n] if np.ndim(v) and len(v) == T else v) for k, v in ep.items()}
        ep["context_frames"], ep["outbound_frames"] = np.int64(ctx), np.int64(outbound)
        write_episode(root / path.name, ep)
    return root


@pytest.fixture(scope="module")
def checkpoint(tiny_world):
    """The tiny random (untrained) world on 64x64 pixel latents (conftest), named tiny-lstm."""
    return tiny_world


def run_eval(checkpoint, eval_dir, out, *extra):
    argv = ["eval", "--checkpoint", str(checkpoint), "--data", str(eval_dir), "--out", str(out),
            "--steps", "2", "--batch", "2", "--device", "cpu", "--no-progress", *extra]
    return rad(argv)


@pytest.fixture(scope="module")
def report(checkpoint, eval_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAD_LPIPS_WEIGHTS", str(out / "no-such-weights.pth"))
    try:
        assert run_eval(checkpoint, eval_dir, out, "--save-frames", "--horizon", "12") == 0
    finally:
        mp.undo()
    return out


def test_eval_writes_table_curves_videos_and_frames(report, eval_dir):
    for name in ("table.md", "table.json", "per_frame.json", "curves.png"):
        assert (report / name).stat().st_size > 0, name
    table = json.loads((report / "table.json").read_text())
    assert [r["name"] for r in table["rows"]] == ["repeat last context frame", "tiny-lstm"]
    assert table["trajectories"] == 2 and table["horizon"] == 12
    assert table["generated_frames"] == sum(n - c for c, _, n in SPLITS)
    assert table["lpips"].startswith("unavailable")
    assert all(r["lpips"] is None for r in table["rows"])
    assert "unavailable" in (report / "table.md").read_text()
    gifs = sorted((report / "videos").glob("*.gif"))
    assert len(gifs) == 2
    video = iio.imread(gifs[0], index=None)
    first = read_episode(list_episodes(eval_dir)[0])["image"]
    assert video.shape[0] == len(first)  # every frame of the trajectory, real | generated
    assert video.shape[2] == 2 * video.shape[1]


def test_table_numbers_equal_a_direct_skimage_computation(report, eval_dir):
    table = json.loads((report / "table.json").read_text())
    generated = np.load(report / "frames" / "tiny-lstm.npz")
    trajs = load_trajectories(eval_dir)
    for row in table["rows"]:
        psnrs, ssims, ret = [], [], []
        for t in trajs:
            real = t.frames[t.context_frames:]
            pred = (np.repeat(t.frames[t.context_frames - 1][None], len(real), 0)
                    if row["checkpoint"] is None else generated[t.name])
            assert pred.shape == real.shape and pred.dtype == np.uint8
            psnrs += [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(real, pred)]
            ssims += [structural_similarity(a, b, channel_axis=-1, data_range=255)
                      for a, b in zip(real, pred)]
            ret += list(return_mask(t, table["horizon"]))
        ret = np.array(ret)
        assert 0 < ret.sum() < len(ret)  # both parts are non-empty here
        assert row["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-9)
        assert row["ssim"] == pytest.approx(np.mean(ssims), rel=1e-9)
        assert row["return_psnr"] == pytest.approx(np.mean(np.array(psnrs)[ret]), rel=1e-9)
        assert row["return_ssim"] == pytest.approx(np.mean(np.array(ssims)[ret]), rel=1e-9)


def test_return_part_is_where_the_nearest_outbound_view_is_beyond_the_horizon():
    # A straight corridor out (x = 0..4) and back: frame i returns to the place of frame 8 - i.
    x = np.array([0, 1, 2, 3, 4, 4, 3, 2, 1, 0], dtype=float)
    traj = Trajectory("line", np.zeros((10, 4, 4, 3), np.uint8), np.zeros(10, np.int64),
                      context_frames=6, outbound_frames=5,
                      positions=np.stack([x, np.zeros(10)], axis=1))
    assert matched_outbound(traj)[6:].tolist() == [3, 2, 1, 0]  # ties (4 == 4) go to the latest
    assert return_mask(traj, horizon=5).tolist() == [False, True, True, True]  # 6-3 < 5 <= 7-2
    mirror = Trajectory("mirror", traj.frames, traj.actions, 6, 5, None)
    assert matched_outbound(mirror)[6:].tolist() == [2, 1, 0, 0]  # 2 (O - 1) - i, clipped


def test_eval_is_deterministic_and_independent_of_the_batch_size(report, checkpoint, eval_dir,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setenv("RAD_LPIPS_WEIGHTS", str(tmp_path / "none.pth"))
    assert run_eval(checkpoint, eval_dir, tmp_path, "--save-frames", "--horizon", "12",
                    "--batch", "1", "--videos", "0") == 0
    ours = np.load(tmp_path / "frames" / "tiny-lstm.npz")
    before = np.load(report / "frames" / "tiny-lstm.npz")
    for name in before.files:  # batched and one-by-one: the same frames, up to a rare rounding
        diff = np.abs(ours[name].astype(int) - before[name].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not list((tmp_path / "videos").glob("*.gif"))


def test_eval_names_a_file_without_evaluation_keys(real_episodes_dir, checkpoint, tmp_path,
                                                   capsys):
    with pytest.raises(DataError, match="context_frames"):
        load_trajectories(real_episodes_dir)
    assert run_eval(checkpoint, real_episodes_dir, tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "episode-000.npz" in err and "context_frames" in err


def test_eval_rejects_a_missing_checkpoint(eval_dir, tmp_path, capsys):
    assert run_eval(tmp_path / "nope", eval_dir, tmp_path / "r") == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


def test_rollout_renders_the_imagined_continuation_beside_the_real_one(checkpoint, eval_dir,
                                                                       tmp_path, capsys):
    out = tmp_path / "imagined.gif"
    common = ["rollout", "--checkpoint", str(checkpoint), "--context",
              str(list_episodes(eval_dir)[0]), "--out", str(out), "--steps", "2",
              "--device", "cpu", "--no-progress"]
    assert rad([*common, "--frames", "5"]) == 0
    video = iio.imread(out, index=None)
    assert video.shape[0] == 25 + 5 and video.shape[2] == 2 * video.shape[1]  # real | imagined
    assert "5 frames imagined after 25 context frames" in capsys.readouterr().out
    assert rad([*common, "--actions", "1,1,2", "--context-frames", "10"]) == 0
    video = iio.imread(out, index=None)
    assert video.shape[0] == 13 and video.shape[1] == video.shape[2]  # imagined only
    assert rad([*common, "--actions", "1,9"]) == 2
    assert "outside [0, 6)" in capsys.readouterr().err


def test_eval_and_rollout_skip_or_refuse_a_trajectory_of_another_frame_size_by_name(
        eval_dir, checkpoint, tmp_path, capsys, monkeypatch):
    mixed, alone = tmp_path / "mixed", tmp_path / "alone"
    shutil.copytree(eval_dir, mixed)
    alone.mkdir()
    ep = read_episode(list_episodes(eval_dir)[0])
    ep["image"] = np.ascontiguousarray(ep["image"][:, :, :32])  # (N, 64, 32, 3): a converter bug
    np.savez_compressed(mixed / "narrow.npz", **ep)
    shutil.copy(mixed / "narrow.npz", alone / "narrow.npz")
    with pytest.warns(EpisodeWarning, match="narrow.npz: 'image' must be"):
        trajs = load_trajectories(mixed, frame_size=64)
    assert [t.name for t in trajs] == [p.stem for p in list_episodes(eval_dir)]
    monkeypatch.setenv("RAD_LPIPS_WEIGHTS", str(tmp_path / "none.pth"))
    with pytest.warns(EpisodeWarning, match="narrow.npz"):
        assert run_eval(checkpoint, mixed, tmp_path / "r", "--videos", "0") == 0
    assert json.loads((tmp_path / "r" / "table.json").read_text())["trajectories"] == 2
    with pytest.warns(EpisodeWarning), pytest.raises(DataError, match="narrow.npz: 'image' must"):
        load_trajectories(alone)
    capsys.readouterr()
    assert run_eval(checkpoint, alone, tmp_path / "r2") == 2
    err = capsys.readouterr().err
    assert "narrow.npz: 'image' must be (N, 64, 64, 3)" in err and "Traceback" not in err
    assert rad(["rollout", "--checkpoint", str(checkpoint), "--context", str(alone / "narrow.npz"),
                "--out", str(tmp_path / "x.gif"), "--steps", "2", "--device", "cpu",
                "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "narrow.npz: 'image' must be (N, 64, 64, 3)" in err and "Traceback" not in err
