"""The inverse-dynamics judge and the lockstep protocol: what they measure and how they fail."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from world_model import cli
from world_model.errors import CheckpointError, UserError
from world_model.evaluation.fidelity import REAL, REPEAT, frechet_distance, lockstep_report
from world_model.evaluation.idm import (
    IDMConfig,
    InverseDynamicsModel,
    judge,
    load_idm,
    save_idm,
)
from world_model.training.idm import IDMTrainConfig, train_idm


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 3))
    b = rng.normal(0.0, 2.0, size=(20000, 3)) + np.array([1.0, 0.0, 0.0])
    # |mu|^2 + tr(I + 4I - 2 * 2I) = 1 + 3 * (1 + 4 - 4) = 4
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_judge_predicts_one_action_per_transition_and_features_per_frame():
    idm = InverseDynamicsModel(IDMConfig(num_actions=6, frame_size=64))
    frames = torch.randint(0, 256, (7, 64, 64, 3), dtype=torch.uint8)
    actions, feats = judge(idm, frames, batch=3)  # batches that do not divide the length
    assert actions.shape == (6,) and feats.shape == (7, idm.cfg.feature_dim)
    full, _ = judge(idm, frames, batch=64)
    assert torch.equal(actions, full)
    with pytest.raises(UserError, match="uint8"):
        idm.features(frames.float())


def test_idm_directory_round_trip_and_refusals(tmp_path, tiny_world):
    idm = InverseDynamicsModel(IDMConfig(num_actions=6))
    save_idm(tmp_path / "idm", idm, {"accuracy": 0.5})
    back = load_idm(tmp_path / "idm")
    for (k, v), (k2, v2) in zip(idm.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(CheckpointError, match="a world checkpoint"):
        load_idm(tiny_world)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_idm(tmp_path / "nowhere")
    (tmp_path / "idm" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_idm(tmp_path / "idm")


def test_train_idm_learns_real_transitions_and_resumes_exactly(real_episodes_dir, tmp_path):
    cfg = IDMTrainConfig(steps=30, batch_size=16, val_pairs=64, val_every=15, val_fraction=0.34,
                         device="cpu")
    scores = train_idm(real_episodes_dir, tmp_path / "a", cfg)
    assert scores["step"] == 30 and 0.0 <= scores["accuracy"] <= 1.0
    assert sum(scores["support"]) == 64 and json.loads((tmp_path / "a" / "idm.json").read_text())
    load_idm(tmp_path / "a")
    # half, then resumed to the end: the same weights as one run
    train_idm(real_episodes_dir, tmp_path / "b", IDMTrainConfig(**{**cfg.__dict__, "steps": 15}))
    train_idm(real_episodes_dir, tmp_path / "b", IDMTrainConfig(**{**cfg.__dict__, "resume": True}))
    a, b = load_idm(tmp_path / "a"), load_idm(tmp_path / "b")
    for v, w in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6)
    with pytest.raises(UserError, match="not empty"):
        train_idm(real_episodes_dir, tmp_path / "a", cfg)


def test_an_idm_run_in_the_old_train_state_layout_resumes_exactly(real_episodes_dir, tmp_path):
    cfg = IDMTrainConfig(steps=6, batch_size=8, val_pairs=16, val_every=3, val_fraction=0.34,
                         device="cpu")
    train_idm(real_episodes_dir, tmp_path / "straight", cfg)
    train_idm(real_episodes_dir, tmp_path / "old", IDMTrainConfig(**{**cfg.__dict__, "steps": 3}))
    # the layout rad train-idm wrote before world_model/training/run_dir.py: the trainer's alone
    path = tmp_path / "old" / "train_state.pt"
    state = torch.load(path, weights_only=True)
    torch.save({k: state[k] for k in ("step", "nonfinite", "cpu_seconds", "model", "optimizer")},
               path)
    train_idm(real_episodes_dir, tmp_path / "old", IDMTrainConfig(**{**cfg.__dict__, "resume": True}))
    a, b = load_idm(tmp_path / "straight"), load_idm(tmp_path / "old")
    for v, w in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(v, w)


def test_cli_options_are_the_train_config_fields():
    from world_model.options import from_args

    args = cli.build_parser().parse_args(["train-idm", "--data", "d", "--out", "o"])
    assert from_args(IDMTrainConfig, args) == IDMTrainConfig()
    args = cli.build_parser().parse_args(["train-idm", "--data", "d", "--out", "o", "--steps", "7",
                                          "--resume"])
    assert from_args(IDMTrainConfig, args) == IDMTrainConfig(steps=7, resume=True)


class _Oracle(InverseDynamicsModel):
    """Names the action from a pixel the test paints: a perfect judge of a fake world."""

    def logits(self, maps, next_maps):
        code = next_maps[:, 0, 0, 0]
        return torch.nn.functional.one_hot(code.round().long().clamp(0, 5), 6).float()

    def encode(self, frames):
        return frames.float().permute(0, 3, 1, 2)[:, :, :16, :16] / 40.0


def _painted(actions: np.ndarray, rng) -> np.ndarray:
    frames = rng.integers(0, 256, (len(actions), 64, 64, 3)).astype(np.uint8)
    frames[:, 0, 0, 0] = actions * 40  # the oracle reads the action here
    return frames


def test_lockstep_report_scores_a_perfect_world_at_one_and_repeating_at_the_floor():
    rng = np.random.default_rng(0)
    idm = _Oracle(IDMConfig())
    C, P = 4, 30
    actions = [rng.integers(0, 6, C + P) for _ in range(6)]
    reals = [_painted(a, rng) for a in actions]
    worlds = {"perfect": [r[C:] for r in reals],
              "wrong": [_painted((a[C:] + 1) % 6, rng) for a in actions]}
    report = lockstep_report(idm, reals, actions, C, worlds)
    assert [r.steps for r in report.rows if r.name == REAL] == ["1-20", "21-30"]
    for lo, hi in ((1, 20), (21, 30)):
        steps = f"{lo}-{hi}"
        assert report.get("perfect", steps).fidelity == pytest.approx(1.0)
        assert report.get("perfect", steps).psnr == pytest.approx(100.0)
        assert report.get("wrong", steps).fidelity == pytest.approx(0.0)
        # repeating the last context frame: the judge names that frame's painted action
        share = np.mean([(a[C + lo - 1:C + hi] == reals[e][C - 1, 0, 0, 0] // 40).mean()
                         for e, a in enumerate(actions)])
        assert report.get(REPEAT, steps).accuracy == pytest.approx(share)
    assert "action fidelity" in report.table()


def test_rad_eval_lockstep_end_to_end(tiny_world, real_episodes_dir, tmp_path):
    idm = tmp_path / "idm"
    save_idm(idm, InverseDynamicsModel(IDMConfig()))
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "world_model.cli", "eval", "--protocol", "lockstep", "--idm",
         str(idm), "--checkpoint", str(tiny_world), "--data", str(real_episodes_dir),
         "--context-frames", "8", "--predict-frames", "25", "--steps", "2", "--out", str(out),
         "--no-progress"], check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| tiny-lstm | 21-25 |" in done.stdout
    data = json.loads((out / "lockstep.json").read_text())
    assert data["episodes"] == 3 and data["predict"] == 25
    assert data["settings"]["samplers"]["tiny-lstm"]["steps"] == 2
    assert (out / "lockstep.png").stat().st_size > 0
    missing = subprocess.run(
        [sys.executable, "-m", "world_model.cli", "eval", "--protocol", "lockstep",
         "--checkpoint", str(tiny_world), "--data", str(real_episodes_dir), "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "--idm" in missing.stderr


def test_rad_eval_scores_the_engine_it_is_asked_for(tiny_world):
    """``rad eval --compile`` / ``--dtype`` reach the engine the worlds are scored with."""
    from world_model.checkpoint import load
    from world_model.evaluation.protocol import engine_for_settings
    from world_model.evaluation.settings import EvalSettings

    world = load(tiny_world)
    eager = engine_for_settings(world, tiny_world, EvalSettings(steps=2, dtype="float32"))
    compiled = engine_for_settings(world, tiny_world, EvalSettings(steps=2, compile=True))
    assert not eager.compiled and compiled.compiled and compiled.static_context
    assert eager.sampler.steps == compiled.sampler.steps == 2
