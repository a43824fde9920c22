"""The run directory every trainer shares: opened new or resumed, checkpointed in order, RNG exact."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch
from torch import nn

from world_model.errors import CheckpointError, UserError
from world_model.training.run_dir import RunDir
from world_model.training.train_state import (
    FORMAT_VERSION,
    TRAIN_STATE_FILE,
    capture_rng,
    restore_rng,
    upgrade,
)
from world_model.training.trainer import Trainer

CPU = torch.device("cpu")


def _draws(generator: torch.Generator) -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(())),
            float(torch.rand((), generator=generator)))


def _trainer(seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    objective = lambda batch: (model(batch).square().mean(), {})
    return Trainer(model, objective, torch.optim.AdamW(model.parameters(), lr=1e-2), lr=1e-2,
                   ema_decay=0.9)


def test_rng_states_round_trip_exactly_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    g = torch.Generator().manual_seed(4)
    random.gauss(0, 1), np.random.randn()  # cached Gaussians are part of the state too
    torch.save(capture_rng(CPU, {"noise": g}), tmp_path / "rng.pt")
    expected = _draws(g)
    saved = torch.load(tmp_path / "rng.pt", weights_only=True)
    restore_rng(saved, CPU, {"noise": g})
    assert _draws(g) == expected


def test_restoring_a_generator_the_state_lacks_is_an_error():
    state = capture_rng(CPU)
    with pytest.raises(CheckpointError, match="'noise' generator"):
        restore_rng(state, CPU, {"noise": torch.Generator()})


def test_a_directory_holding_a_run_is_refused_without_resume(tmp_path):
    run = RunDir(tmp_path / "run", "idm", resume=False)
    assert not run.resuming
    run.create()
    run.save(_trainer())
    with pytest.raises(UserError, match="already holds a run.*--resume"):
        RunDir(tmp_path / "run", "idm", resume=False)
    assert RunDir(tmp_path / "run", "idm", resume=True).resuming


def test_require_empty_refuses_any_non_empty_directory_without_resume(tmp_path):
    (tmp_path / "out").mkdir()
    RunDir(tmp_path / "out", "vae", resume=False, require_empty=True)  # empty: fine
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty.*--resume"):
        RunDir(tmp_path / "out", "vae", resume=False, require_empty=True)
    RunDir(tmp_path / "out", "world", resume=False)  # the world trainer only refuses a run


def test_resume_where_there_is_no_train_state_starts_a_new_run(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run = RunDir(tmp_path / "new", "world", resume=True)
    assert not run.resuming
    assert "starting a new run" in caplog.text


def test_save_writes_the_model_first_and_the_train_state_last(tmp_path):
    run = RunDir(tmp_path / "run", "world", resume=False)
    seen = []
    run.save(_trainer(), write_model=lambda: seen.append(run.state_file.exists()))
    assert seen == [False] and run.state_file.is_file()


def test_resume_restores_the_trainer_and_the_rng(tmp_path):
    trainer = _trainer()
    trainer.fit(iter(torch.randn(4, 2, 3)), 2)
    g = torch.Generator().manual_seed(7)
    run = RunDir(tmp_path / "run", "vae", resume=False)
    run.save(trainer, {"noise": g})
    expected = _draws(g)
    trainer.fit(iter(torch.randn(4, 2, 3)), 4)  # moves on

    resumed = _trainer(seed=1)  # other initial weights
    again = RunDir(tmp_path / "run", "vae", resume=True)
    state = again.read_state()
    assert state["format_version"] == FORMAT_VERSION and state["kind"] == "vae"
    assert again.restore(state, resumed, {"noise": g}) == 2
    assert _draws(g) == expected
    saved = torch.load(run.state_file, weights_only=True)
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, saved["model"][k])
        assert torch.equal(resumed.ema.model.state_dict()[k], saved["ema"][k])


def test_a_train_state_of_another_trainer_or_a_newer_format_is_refused(tmp_path):
    run = RunDir(tmp_path / "run", "vae", resume=False)
    run.save(_trainer())
    with pytest.raises(CheckpointError, match="'vae' run, not of a 'world' run"):
        RunDir(tmp_path / "run", "world", resume=True).read_state()
    state = torch.load(run.state_file, weights_only=True)
    torch.save({**state, "format_version": FORMAT_VERSION + 1}, run.state_file)
    with pytest.raises(CheckpointError, match="format_version"):
        RunDir(tmp_path / "run", "vae", resume=True).read_state()
    run.state_file.write_bytes(b"not a train state")
    with pytest.raises(CheckpointError, match="unreadable"):
        RunDir(tmp_path / "run", "vae", resume=True).read_state()


def test_a_train_state_that_does_not_fit_the_trainer_names_the_file(tmp_path):
    run = RunDir(tmp_path / "run", "idm", resume=False)
    run.save(_trainer())
    torch.manual_seed(0)
    other = nn.Linear(5, 1)
    trainer = Trainer(other, lambda b: (other(b).sum(), {}),
                      torch.optim.AdamW(other.parameters()), lr=1e-3)
    with pytest.raises(CheckpointError, match=f"{TRAIN_STATE_FILE}.*incompatible"):
        run.restore(run.read_state(), trainer)


def test_the_old_layouts_of_the_three_trainers_are_upgraded():
    trainer_state = _trainer().state_dict()
    torch_rng, gen = torch.get_rng_state(), torch.Generator().get_state()
    world = upgrade({**trainer_state, "rng": [{"torch": torch_rng, "generator": gen}] * 2})
    assert world["kind"] == "world" and len(world["rng"]) == 2
    assert torch.equal(world["rng"][1]["generators"]["objective"], gen)
    vae = upgrade({"format_version": 1, **trainer_state, "torch_rng": torch_rng})
    assert vae["kind"] == "vae" and torch.equal(vae["rng"][0]["torch"], torch_rng)
    idm = upgrade(dict(trainer_state))
    assert idm["kind"] == "idm" and idm["rng"] == [] and idm["step"] == trainer_state["step"]


def test_a_signal_stops_fit_after_the_step_under_way_as_its_last_step():
    import os
    import signal

    trainer = _trainer()
    seen: list[tuple[int, bool]] = []

    def callback(trainer, batch, logs, last):
        seen.append((trainer.step, last))
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 2's callbacks

    before = signal.getsignal(signal.SIGINT)
    batches = iter(torch.randn(3) for _ in range(100))
    trainer.fit(batches, steps=10, callbacks=[callback])
    assert trainer.step == 3 and seen == [(1, False), (2, False), (3, True)]
    assert trainer.stop_requested and signal.getsignal(signal.SIGINT) is before
