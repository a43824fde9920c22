"""The resumable-run driver (world_model.sim.jobs) and the atomic directory write (world_model.io),
with a stand-in job: no simulator."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from world_model.data.format import read_episode
from world_model.errors import UserError
from world_model.io import atomic_write_dir
from world_model.sim.jobs import EpisodeJob, Workers, run_missing

MANIFEST = "rad-test.json"


@dataclass(frozen=True)
class _FrameJob(EpisodeJob):
    """An episode of ``frames`` frames whose pixels are its index."""

    frames: int = 3
    note: str = ""

    def make(self, notes: list[str]) -> dict[str, np.ndarray]:
        if self.note:
            notes.append(self.note)
        return {"image": np.full((self.frames, 8, 8, 3), self.index, np.uint8),
                "action": np.eye(4, dtype=np.float32)[np.zeros(self.frames, int)],
                "reward": np.ones(self.frames, np.float32)}


def _run(out: Path, n: int, made: list[int], seed: int = 0, note: str = "", **kw) -> list[Path]:
    """Files ``out/ep_{i}.npz``, i < n; ``made`` gets the indices of the jobs made; job 0 notes
    ``note``."""
    def job(i: int, p: Path) -> _FrameJob:
        made.append(i)
        return _FrameJob(i, str(p), note=note if i == 0 else "")

    return run_missing(out, MANIFEST, {"seed": seed}, [out / f"ep_{i}.npz" for i in range(n)],
                       job, **kw)


def test_only_missing_files_are_made_and_the_manifest_holds_the_settings(tmp_path):
    made: list[int] = []
    reports = []
    paths = _run(tmp_path, 2, made, progress=reports.append)
    assert made == [0, 1] and [p.name for p in paths] == ["ep_0.npz", "ep_1.npz"]
    assert json.loads((tmp_path / MANIFEST).read_text()) == {"seed": 0}
    assert [(r.done, r.total) for r in reports] == [(0, 2), (1, 2), (2, 2)]
    assert reports[-1].result.frames == 3 and reports[-1].result.reward == 3.0
    made.clear()
    paths = _run(tmp_path, 4, made, frames=3)
    assert made == [2, 3] and all(p.is_file() for p in paths)
    assert int(read_episode(paths[3])["image"][0, 0, 0, 0]) == 3
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_resume_with_other_settings_or_lengths_is_refused(tmp_path):
    _run(tmp_path, 1, [])
    with pytest.raises(UserError, match="other settings"):
        _run(tmp_path, 1, [], seed=1)
    with pytest.raises(UserError, match="has 3 frames"):
        _run(tmp_path, 1, [], frames=5)


def test_job_notes_are_logged_as_warnings_by_the_callers_logger(tmp_path, caplog):
    logger = logging.getLogger("world_model.sim.some_caller")
    with caplog.at_level(logging.WARNING):
        _run(tmp_path, 1, [], note="attempt 0 rejected", logger=logger)
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelno == logging.WARNING] == [
        ("world_model.sim.some_caller", "attempt 0 rejected")]


def test_jobs_run_in_worker_processes_write_the_same_files(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    _run(here, 3, [])
    _run(there, 3, [], workers=Workers(2))
    for name in ("ep_0.npz", "ep_1.npz", "ep_2.npz"):
        a, b = read_episode(here / name), read_episode(there / name)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_atomic_write_dir_replaces_a_directory_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "vae"
    atomic_write_dir(target, lambda d: (d / "a.txt").write_text("one"))
    atomic_write_dir(target, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]

    def fail(d: Path) -> None:
        (d / "half.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_dir(target, fail)
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]
