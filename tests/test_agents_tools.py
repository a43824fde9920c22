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
        assert report[reading][0]["threshold"] == 0.05
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
    from world_model.checkpoint import load
    from world_model.commands.real_lockstep import real_and_imagined
    from world_model.config import SamplerConfig
    from world_model.engine.rollout import RolloutEngine

    engine = RolloutEngine(load(tiny_world), SamplerConfig(steps=1))
    real, imagined = real_and_imagined(cfg, 0, engine)
    floor = np.repeat(real[2][None], 4, axis=0)
    np.testing.assert_allclose(result.floor_psnr[0], metrics.psnr(real[3:], floor), rtol=1e-6)
    np.testing.assert_allclose(result.psnr[0], metrics.psnr(real[3:], imagined), rtol=1e-6)
