"""benchmarks/soak_env.py: a vector env of the tiny world soaked for a few hundred frames."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from world_model.engine.rollout import StepInfo

pytest.importorskip("stable_baselines3")


@pytest.fixture(scope="module")
def soak_env():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soak_env.py"
    spec = importlib.util.spec_from_file_location("soak_env", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_soak_reports_blocks_rss_resets_and_a_summary(soak_env, tiny_world, tmp_path, capsys):
    out = tmp_path / "soak.json"
    code = soak_env.main(["--checkpoint", str(tiny_world), "--frames", "200", "--envs", "4",
                          "--every", "10", "--steps", "2", "--max-steps", "12",
                          "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    summary = json.loads(out.read_text())
    assert summary["frames"] == 200 and len(summary["blocks"]) == 5
    assert [b["frames"] for b in summary["blocks"]] == [40, 80, 120, 160, 200]
    assert all(b["frames_per_s"] > 0 and b["peak_rss_mib"] > 0 for b in summary["blocks"])
    assert summary["episodes_finished"] == 4 * (50 // 12)  # every row auto-reset every 12 steps
    assert summary["non_finite"] == {"frame": 0, "reward": 0, "termination": 0}
    steady = [b["frames_per_s"] for b in summary["blocks"][1:]]
    assert summary["median_frames_per_s"] == pytest.approx(float(np.median(steady)))
    assert summary["rss_growth_mib"] == pytest.approx(
        summary["blocks"][-1]["peak_rss_mib"] - summary["blocks"][0]["peak_rss_mib"])
    assert len([line for line in text.splitlines() if line.strip()[:1].isdigit()]) == 5
    assert "summary: 200 frames" in text and "non-finite: none" in text


def test_a_non_finite_frame_or_reward_is_counted_with_its_step_and_row(soak_env):
    latents = torch.zeros(3, 2, 4, 4)
    latents[2, 0, 1, 1] = float("nan")
    replies = iter([StepInfo(torch.zeros(3, 2, 4, 4), torch.zeros(3), torch.zeros(3)),
                    StepInfo(latents, torch.tensor([0.0, float("inf"), 0.0]), torch.zeros(3))])
    engine = SimpleNamespace(step_latents=lambda state, actions: next(replies))
    watch = soak_env.FiniteWatch(engine)
    engine.step_latents(None, None)
    assert watch.total == 0 and watch.first == {}
    engine.step_latents(None, None)
    assert watch.counts == {"frame": 1, "reward": 1, "termination": 0}
    assert watch.first == {"frame": (1, 2), "reward": (1, 1)}


def test_soaking_a_missing_world_is_a_clear_error(soak_env, tmp_path, capsys):
    assert soak_env.main(["--checkpoint", str(tmp_path / "nope"), "--frames", "10"]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


class _OracleIDM:
    """A judge that reads the action from the next frame's first pixel (frames carry it)."""

    def encode(self, frames):
        return frames[:, 0, 0, :1].long()

    def logits(self, maps, next_maps):
        return torch.nn.functional.one_hot(next_maps[:, 0], 6).float()


def test_the_judge_counts_transitions_within_episodes_and_the_drift_band(soak_env):
    watch = soak_env.IDMWatch(_OracleIDM())
    frames = lambda values: np.array(values, np.uint8)[:, None, None, None] * np.ones(
        (1, 4, 4, 3), np.uint8)
    watch.observe(frames([0, 0, 0]), None, None)  # the reset: no transition yet
    watch.observe(frames([2, 5, 1]), np.array([2, 5, 3]), np.array([False, False, True]))
    watch.observe(frames([4, 4, 4]), np.array([4, 1, 4]), np.array([False, False, False]))
    assert watch.take() == (4, 5)  # row 2's first pair crossed a reset; row 1 misjudged once
    assert watch.take() == (0, 0)
    assert watch.episodes == {0: [0, 0]}  # row 2's first episode ended before any pair
    watch.observe(frames([3, 3, 3]), np.array([3, 3, 3]), np.array([True, True, False]))
    assert watch.episodes == {0: [3, 4]}  # rows 0 and 1 finished their first episodes
    assert soak_env.fidelity_drift(watch.episodes) is None  # one episode number only
    drift = soak_env.fidelity_drift({0: [200, 400], 2: [180, 400]})
    assert drift["difference"] == pytest.approx(-0.05)
    assert drift["two_se"] == pytest.approx(2 * np.sqrt(0.475 * 0.525 * 2 / 400))
    assert drift["within_noise"]  # 0.05 < 0.0706
    assert not soak_env.fidelity_drift({0: [200, 400], 1: [120, 400]})["within_noise"]
    late = soak_env.fidelity_drift({0: [200, 400], 1: [190, 390], 2: [60, 100]})
    assert late["last_episode"] == 1  # episode 2: a few early-ended (short, young) episodes
