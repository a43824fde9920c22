"""The agents' reports on a world: reward events against real rewards, lockstep with the real maze."""

from __future__ import annotations

import json

import numpy as np
import pytest

from world_model.commands.real_lockstep import LockstepConfig, run_lockstep
from world_model.evaluation.reward_check import (
    RewardCheckConfig,
    precision_recall,
    run_reward_check,
)


def test_precision_and_recall_count_events_within_the_tolerance():
    real = np.array([[0, 1, 0, 0, 0, 0, 1, 0]], bool)
    pred = np.array([[0, 0, 1, 0, 0, 0, 0, 1]], bool)
    assert precision_recall(pred, real, 0)[:2] == (0.0, 0.0)
    assert precision_recall(pred, real, 1)[:2] == (1.0, 1.0)
    pred2 = np.array([[0, 1, 0, 1, 0, 0, 0, 0]], bool)
    p, r, n_pred, n_real = precision_recall(pred2, real, 0)
    assert (p, r, n_pred, n_real) == (0.5, 0.5, 2, 2)
    assert np.isnan(precision_recall(np.zeros_like(real), real, 0)[0])  # nothing predicted


def test_reward_check_reports_both_readings_on_real_episodes(tiny_world, real_episodes_dir, tmp_path):
    cfg = RewardCheckConfig(data=str(real_episodes_dir), checkpoint=str(tiny_world),
                            out=str(tmp_path), context=5, horizon=10, sampling_steps=1, batch=4)
    report = run_reward_check(cfg)
    assert report["episodes"] == 3 and report["frames"] == 41
    assert report["open_loop_segments"] == 3 * (41 // 15)
    for reading in ("teacher_forced", "open_loop"):
        assert report[reading][0]["threshold"] == 0.001  # the low end, for calibrated models
        for row in report[reading]:
            for key in ("precision", "recall"):
                assert np.isnan(row[key]) or 0.0 <= row[key] <= 1.0
    saved = json.loads((tmp_path / "reward_check.json").read_text())
    assert saved["best_threshold"] == report["best_threshold"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_lockstep_scores_imagined_against_real_frames_and_the_floor(tiny_world, tmp_path):
    from world_model.evaluation import metrics

    cfg = LockstepConfig(checkpoint=str(tiny_world), out=str(tmp_path), episodes=1, context=3,
                         steps=4, sampling_steps=1, videos=1)
    result = run_lockstep(cfg, progress=False)
    assert result.psnr.shape == result.ssim.shape == result.floor_psnr.shape == (1, 4)
    assert np.isfinite(result.psnr).all() and (result.ssim <= 1.0).all()
    assert (tmp_path / "videos" / "episode_000.gif").is_file() and (tmp_path / "curves.png").is_file()
    saved = json.loads((tmp_path / "lockstep.json").read_text())
    assert saved["summary"]["psnr"] == pytest.approx(float(result.psnr.mean()))
    # the floor really is the last context frame against the real frames
    from world_model.commands.real_lockstep import real_and_imagined
    from world_model.loading import load_engine

    # the engine the command built: its dtype "auto" is bfloat16 on a CPU with native bf16
    engine = load_engine(tiny_world, steps=1)
    real, imagined = real_and_imagined(cfg, 0, engine)
    floor = np.repeat(real[2][None], 4, axis=0)
    np.testing.assert_allclose(result.floor_psnr[0], metrics.psnr(real[3:], floor), rtol=1e-6)
    np.testing.assert_allclose(result.psnr[0], metrics.psnr(real[3:], imagined), rtol=1e-6)


def test_the_threshold_is_the_best_f1_and_scored_at_its_own_events():
    from world_model.evaluation.reward_check import at_threshold, best_threshold, curve

    real = np.zeros((2, 20), bool)
    real[0, 5] = real[1, 12] = True
    scores = np.full((2, 20), 0.1, np.float32)
    scores[0, 5], scores[1, 12], scores[1, 3] = 0.7, 0.32, 0.5  # one false event at 0.5
    rows = curve(scores, real, 0)
    assert best_threshold(rows) == 0.15  # the lowest threshold that finds both (F1 0.8 with the false one)
    row = at_threshold(scores, real, 0, 0.35)
    assert (row["precision"], row["recall"], row["predicted_events"]) == (0.5, 0.5, 2)
    assert best_threshold(curve(np.zeros((1, 5)), np.zeros((1, 5), bool), 0)) is None


def _relabelled_copy(src, dst, events):
    """The real episodes with reward labels moved to ``events`` (frames and actions untouched):
    random 40-step episodes touch no target, and the check needs events to choose a threshold."""
    from world_model.data.format import list_episodes, read_episode, write_episode

    dst.mkdir()
    for k, path in enumerate(list_episodes(src)):
        episode = read_episode(path)
        episode["reward"] = np.zeros_like(episode["reward"])
        episode["reward"][events[k % len(events)]] = 1.0
        write_episode(dst / path.name, episode)
    return dst


def test_reward_check_chooses_the_threshold_elsewhere_and_the_env_uses_it(
        make_tiny_world, real_episodes_dir, tmp_path):
    import shutil

    from rad_env.worlds import BatchedWorlds
    from world_model.checkpoint import load_reward_threshold, load_sampler
    from world_model.config import SamplerConfig
    from world_model.errors import UserError

    world = make_tiny_world(tmp_path / "world", reward_bias=0.45)  # outputs about the thresholds
    data = _relabelled_copy(real_episodes_dir, tmp_path / "scored", [[8, 30], [17]])
    select = _relabelled_copy(real_episodes_dir, tmp_path / "select", [[12], [25, 33]])
    with pytest.raises(UserError, match="other episodes"):
        RewardCheckConfig(data=str(data), select_data=str(data)).validate()
    with pytest.raises(UserError, match="needs --select-data"):
        RewardCheckConfig(data=str(data), save_threshold=True).validate()
    from world_model.checkpoint import save_sampler
    save_sampler(world, SamplerConfig(steps=1), {"why": "kept"})
    cfg = RewardCheckConfig(data=str(data), select_data=str(select), checkpoint=str(world),
                            out=str(tmp_path / "report"), context=5, horizon=10, batch=4,
                            choose_by="teacher_forced", save_threshold=True)
    report = run_reward_check(cfg)
    chosen = report["chosen_threshold"]
    assert chosen in [r["threshold"] for r in report["select"]["teacher_forced"]]
    assert report["at_chosen"]["teacher_forced"]["real_events"] == 5  # 2 + 1 + 2 in the scored split
    # every scored event far enough from its episode's start is imagined from k steps before
    assert {k: row["events"] for k, row in report["imminent"].items()} == {
        "1": 5, "2": 5, "4": 5, "8": 3}  # frame 8 (twice) has no 5 context frames 8 steps before
    found = list(report["imminent"]["1"]["found"].values())
    assert found == sorted(found, reverse=True)
    assert load_reward_threshold(world) == chosen
    for path in (world / "sampler.json", tmp_path / "report" / "reward_check.json"):
        assert "NaN" not in path.read_text()  # strict JSON: undefined scores are null
    assert load_sampler(world) == SamplerConfig(steps=1).validate()  # the sampler is kept
    # the env counts a reward event where the head's output reaches the saved threshold
    worlds = BatchedWorlds(2, world)
    assert worlds.reward_threshold == chosen
    worlds.reset_rows([0, 1])
    result = worlds.step(np.array([0, 1]))
    np.testing.assert_array_equal(result.reward, (result.reward_raw >= chosen).astype(np.float32))
    assert BatchedWorlds(1, world, reward_threshold=0.9).reward_threshold == 0.9
    with pytest.raises(UserError, match="reward_threshold"):
        BatchedWorlds(1, world, reward_threshold=1.5)
    # a world without sampler.json counts events at 0.5
    bare = tmp_path / "bare"
    shutil.copytree(world, bare)
    (bare / "sampler.json").unlink()
    assert load_reward_threshold(bare) == 0.5


def test_the_threshold_falls_back_to_the_other_reading_when_open_loop_finds_no_event():
    from world_model.evaluation.reward_check import choose, curve

    real = np.zeros((1, 30), bool)
    real[0, 10] = True
    hit = np.zeros((1, 30), np.float32)
    hit[0, 10] = 0.6
    miss = np.zeros((1, 30), np.float32)
    miss[0, 25] = 0.6  # its only event is far from the real one
    select = {"teacher_forced": curve(hit, real, 0), "open_loop": curve(miss, real, 2)}
    assert choose(select, "open_loop")[1] == "teacher_forced"
    assert choose(select, "teacher_forced")[1] == "teacher_forced"
    assert choose({"teacher_forced": select["open_loop"], "open_loop": select["open_loop"]},
                  "open_loop") == (None, None)
