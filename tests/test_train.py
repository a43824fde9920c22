"""Training: every memory and mode learns, checkpoints round-trip, resume is exact, DDP runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_utils import MEMORIES, MODES, tiny_config

from world_model.checkpoint import load, save_world
from world_model.config import DiffusionConfig, LatentConfig, RunConfig, TrainConfig
from world_model.data.format import action_indices, list_episodes, read_episode
from world_model.diffusion.schedule import Diffusion
from world_model.errors import CheckpointError
from world_model.latents import PixelCodec
from world_model.network.model import RADModel
from world_model.training.objective import Batch, WorldModelObjective
from world_model.training.run import TrainOptions, train

#: The tiny model on 64x64 pixel latents (real frames), twice as wide.
PIXEL_MODEL = {"latent_size": 64, "patch_size": 16, "width": 64}


def real_clip(directory: Path, T: int = 8) -> Batch:
    ep = read_episode(list_episodes(directory)[0], ("image", "action", "reward"))
    return Batch(torch.from_numpy(ep["image"][None, 10:10 + T]),
                 torch.from_numpy(action_indices(ep["action"])[None, 10:10 + T]),
                 torch.from_numpy(ep["reward"][None, 10:10 + T].astype(np.float32)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", MEMORIES)
def test_each_memory_and_mode_overfits_a_tiny_real_sequence(real_episodes_dir, memory, mode):
    torch.manual_seed(0)
    model = RADModel(tiny_config(memory, mode, **PIXEL_MODEL))
    objective = WorldModelObjective(model, Diffusion(DiffusionConfig(clean_prob=0.0)), PixelCodec())
    batch = real_clip(real_episodes_dir)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at_fixed_noise():  # the levels and noise it is trained on: pure overfitting
        return objective(batch, torch.Generator().manual_seed(0))[1]["loss/diffusion"].item()

    start = loss_at_fixed_noise()
    for _ in range(100):
        loss, _ = objective(batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = loss_at_fixed_noise()
    assert end < 0.5 * start, (start, end)


def tiny_run_config(**train_over) -> RunConfig:
    train_cfg = {"seq_len": 6, "batch_size": 2, "steps": 6, "warmup_steps": 2, "log_every": 1, "val_every": 3,
                     "checkpoint_every": 3, "val_batches": 1, "num_workers": 0, "val_fraction": 0.34, "seed": 3}
    train_cfg.update(train_over)
    return RunConfig(model=tiny_config(**PIXEL_MODEL), latent=LatentConfig("pixels"),
                     train=TrainConfig(**train_cfg))


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, real_episodes_dir):
    torch.manual_seed(0)
    config = tiny_run_config()
    model = RADModel(config.model).eval()
    for p in model.parameters():  # non-zero outputs
        torch.nn.init.normal_(p, std=0.05)
    save_world(tmp_path / "run", config, model)
    world = load(tmp_path / "run")
    batch = real_clip(real_episodes_dir)
    z = PixelCodec().encode(batch.frames)
    levels = torch.full(batch.actions.shape, 500)
    with torch.no_grad():
        a = model(z, levels, batch.actions, model.prefetch(z, batch.actions)[0]).prediction
        b = world.model(z, levels, batch.actions, world.model.prefetch(z, batch.actions)[0]).prediction
    assert a.abs().max() > 0
    assert torch.equal(a, b)
    assert world.config == config


def test_loading_a_bad_checkpoint_names_the_file_and_the_problem(tmp_path):
    config = tiny_run_config()
    run = save_world(tmp_path / "run", config, RADModel(config.model))
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load(tmp_path / "nope")
    data = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(CheckpointError, match="config.json.*version 99"):
        load(run)
    width = data["model"]["width"]
    data["model"]["width"] = 2 * width
    (run / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*do not match.*shape mismatch"):
        load(run)
    data["model"]["width"] = width
    (run / "config.json").write_text(json.dumps(data))
    (run / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        load(run)
    (run / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load(run)
    (run / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load(run)


def _weights(run_dir):
    state = torch.load(run_dir / "train_state.pt", weights_only=True)
    return state["step"], state["model"], state["optimizer"]


def test_resume_continues_the_same_run_exactly(tmp_path, real_episodes_dir):
    opts = TrainOptions(device="cpu", wandb="disabled", progress=False)
    train(tiny_run_config(steps=6), real_episodes_dir, tmp_path / "straight", opts)
    # the "killed" run stopped after its checkpoint at step 3, then resumes to 6
    train(tiny_run_config(steps=3), real_episodes_dir, tmp_path / "resumed", opts)
    train(tiny_run_config(steps=6), real_episodes_dir, tmp_path / "resumed",
          TrainOptions(device="cpu", wandb="disabled", progress=False, resume=True))
    step_a, model_a, _ = _weights(tmp_path / "straight")
    step_b, model_b, _ = _weights(tmp_path / "resumed")
    assert step_a == step_b == 6
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").open()
             if "loss/total" in line]
    assert steps == list(range(1, 7))  # no duplicated or missing log lines across the resume
    world = load(tmp_path / "resumed")
    assert world.config.train.steps == 6


def test_a_run_directory_in_the_old_train_state_layout_resumes_exactly(tmp_path, real_episodes_dir):
    opts = TrainOptions(device="cpu", wandb="disabled", progress=False)
    train(tiny_run_config(steps=6), real_episodes_dir, tmp_path / "straight", opts)
    train(tiny_run_config(steps=3), real_episodes_dir, tmp_path / "old", opts)
    # the layout rad train wrote before world_model/training/run_dir.py: no format_version or
    # kind, and per rank the global torch RNG and the objective's generator under 'generator'
    path = tmp_path / "old" / "train_state.pt"
    state = torch.load(path, weights_only=True)
    old = {k: state[k] for k in ("step", "nonfinite", "cpu_seconds", "model", "optimizer", "ema")}
    old["rng"] = [{"torch": r["torch"], "generator": r["generators"]["objective"]}
                  for r in state["rng"]]
    torch.save(old, path)
    train(tiny_run_config(steps=6), real_episodes_dir, tmp_path / "old",
          TrainOptions(device="cpu", wandb="disabled", progress=False, resume=True))
    step_a, model_a, _ = _weights(tmp_path / "straight")
    step_b, model_b, _ = _weights(tmp_path / "old")
    assert step_a == step_b == 6
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
    assert torch.load(path, weights_only=True)["format_version"] == 2  # rewritten in the new one


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path, real_episodes_dir):
    opts = TrainOptions(device="cpu", wandb="disabled", progress=False)
    train(tiny_run_config(steps=3), real_episodes_dir, tmp_path / "run", opts)
    with pytest.raises(Exception, match="--resume"):
        train(tiny_run_config(steps=3), real_episodes_dir, tmp_path / "run", opts)


def _long_cli_run(tmp_path, data, checkpoint_every: int) -> tuple[list[str], dict, Path]:
    """A ``rad train`` command line of 400 tiny steps (meant to be stopped), its env and --out."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": dataclasses.asdict(tiny_config(**PIXEL_MODEL)), "train": {
        "seq_len": 6, "batch_size": 2, "steps": 400, "checkpoint_every": checkpoint_every,
        "log_every": 1, "val_every": 1000, "num_workers": 0, "val_fraction": 0.34}}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "world_model.cli", "train", "--data", str(data),
           "--config", str(cfg), "--out", str(out), "--no-progress", "--device", "cpu"]
    return cmd, {**os.environ, "WANDB_MODE": "disabled"}, out


def test_rad_train_cli_resumes_after_being_killed(tmp_path, real_episodes_dir):
    cmd, env, out = _long_cli_run(tmp_path, real_episodes_dir, checkpoint_every=2)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if (out / "train_state.pt").exists():
                break
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
    finally:
        proc.wait()
    killed_at = torch.load(out / "train_state.pt", weights_only=True)["step"]
    assert 2 <= killed_at < 400
    load(out)  # the checkpoint left behind by the killed run is complete
    done = subprocess.run(cmd + ["--resume", "--steps", str(killed_at + 2)], env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert torch.load(out / "train_state.pt", weights_only=True)["step"] == killed_at + 2


def test_rad_train_stops_cleanly_on_sigterm_with_nothing_lost(tmp_path, real_episodes_dir):
    import signal

    # no checkpoint is due before step 1000: the only one is the one the stop writes
    cmd, env, out = _long_cli_run(tmp_path, real_episodes_dir, checkpoint_every=1000)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        for _ in range(3000):  # until a few steps are logged (no checkpoint is due before 1000)
            metrics = out / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count("loss/total") >= 2:
                break
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "stopping after step" in err and "stopped on request" in err
    stopped_at = torch.load(out / "train_state.pt", weights_only=True)["step"]
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()
              if "loss/total" in line]
    assert 2 <= stopped_at < 400 and logged[-1] == stopped_at  # the last step is saved
    load(out)


def test_two_process_gloo_ddp_run_completes(tmp_path, real_episodes_dir):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": dataclasses.asdict(tiny_config(**PIXEL_MODEL)), "train": {
        "seq_len": 6, "batch_size": 1, "steps": 3, "checkpoint_every": 3, "log_every": 1,
        "val_every": 3, "val_batches": 1, "num_workers": 0, "val_fraction": 0.34}}))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "world_model.cli", "train", "--data",
           str(real_episodes_dir), "--config", str(cfg), "--out", str(tmp_path / "ddp"),
           "--no-progress", "--device", "cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "ddp" / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and len(state["rng"]) == 2
    load(tmp_path / "ddp")


def test_init_from_warm_starts_a_new_run_from_a_world(tmp_path, real_episodes_dir):
    from world_model.training.run import WorldRun

    opts = TrainOptions(device="cpu", wandb="disabled", progress=False)
    train(tiny_run_config(steps=3), real_episodes_dir, tmp_path / "first", opts)
    source = load(tmp_path / "first").model.state_dict()
    warm = TrainOptions(device="cpu", wandb="disabled", progress=False,
                        init_from=str(tmp_path / "first"))
    run = WorldRun(tiny_run_config(steps=2), real_episodes_dir, tmp_path / "second", warm)
    assert run.trainer.step == 0  # a new run: fresh optimiser, its own warm-up
    for k, v in run.trainer.model.state_dict().items():
        assert torch.equal(v, source[k]), k
    for k, v in run.trainer.ema.model.state_dict().items():
        assert torch.equal(v, source[k]), k
    run.run()
    info = json.loads((tmp_path / "second" / "train_info.json").read_text())
    assert info["step"] == 2 and info["campaign_steps"] == 5  # 3 steps before the warm start
    assert info["campaign_cpu_minutes"] > info["cpu_minutes"] > 0
    assert json.loads((tmp_path / "second" / "init_from.json").read_text())["init_from"] == str(
        (tmp_path / "first").resolve())


def test_init_from_refuses_a_world_of_another_shape(tmp_path, real_episodes_dir):
    opts = TrainOptions(device="cpu", wandb="disabled", progress=False)
    train(tiny_run_config(steps=1), real_episodes_dir, tmp_path / "first", opts)
    other = tiny_run_config(steps=1)
    other = dataclasses.replace(other, model=dataclasses.replace(other.model, depth=other.model.depth + 1))
    with pytest.raises(Exception, match="depth"):
        train(other, real_episodes_dir, tmp_path / "second",
              TrainOptions(device="cpu", wandb="disabled", progress=False,
                           init_from=str(tmp_path / "first")))
    with pytest.raises(Exception, match="not a world directory"):
        train(tiny_run_config(steps=1), real_episodes_dir, tmp_path / "third",
              TrainOptions(device="cpu", wandb="disabled", progress=False,
                           init_from=str(tmp_path / "nothing")))


def test_a_carried_chunk_starts_its_memory_where_the_last_one_ended():
    torch.manual_seed(0)
    model = RADModel(tiny_config("lstm", "frame"))
    objective = WorldModelObjective(model, Diffusion(DiffusionConfig()), PixelCodec())
    cfg = model.cfg
    z = torch.randn(2, 12, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    a = torch.randint(0, cfg.num_actions, (2, 12))
    rewards = torch.zeros(2, 6)
    for k, part in enumerate((slice(0, 6), slice(6, 12))):
        objective(Batch(None, a[:, part], rewards, latents=z[:, part],
                        chunk=torch.full((2,), k)))
    _, whole = model.prefetch(z, a)  # the memory after all 12 frames, in one pass
    for carried, expect in zip(objective.carry, whole):
        for s, e in zip(carried, expect):
            assert not s.requires_grad  # truncated: no graph across chunks
            torch.testing.assert_close(s, e, atol=1e-5, rtol=1e-5)
    objective(Batch(None, a[:, :6], rewards, latents=z[:, :6], chunk=torch.zeros(2, dtype=torch.long)))
    _, first = model.prefetch(z[:, :6], a[:, :6])  # chunk 0 starts again from zeros
    torch.testing.assert_close(objective.carry[0][0], first[0][0], atol=1e-5, rtol=1e-5)


def test_a_run_with_carried_chunks_resumes_exactly(tmp_path, real_episodes_dir):
    opts = TrainOptions(device="cpu", wandb="disabled", progress=False)
    cfg = (lambda steps: tiny_run_config(steps=steps, carry_chunks=2))
    train(cfg(6), real_episodes_dir, tmp_path / "straight", opts)
    train(cfg(3), real_episodes_dir, tmp_path / "resumed", opts)  # stops inside a stretch
    state = torch.load(tmp_path / "resumed" / "train_state.pt", weights_only=True)
    assert state["rank_state"][0]["carry"][0][0].shape[0] == cfg(3).train.batch_size
    train(cfg(6), real_episodes_dir, tmp_path / "resumed", dataclasses.replace(opts, resume=True))
    _, model_a, _ = _weights(tmp_path / "straight")
    _, model_b, _ = _weights(tmp_path / "resumed")
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
