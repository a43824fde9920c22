"""`rad collect`: official file layout, recorded seeds that reproduce, resumable after a kill."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("memory_maze") is None or importlib.util.find_spec("dm_control") is None:
    pytest.skip("the Memory Maze simulator is not installed (pip install 'rad-env[maze]')",
                allow_module_level=True)

from world_model.data.format import GLOBAL_KEYS, list_episodes, read_episode
from world_model.errors import UserError
from world_model.sim.collect import collect, collect_episode, episode_seed
from world_model.sim.output_dir import OutputDir, episode_path
from world_model.sim.pool import JobResult, run_jobs

STEPS, SEED = 30, 7


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("collect")
    return collect(out, 2, steps=STEPS, seed=SEED, workers=1)


def test_files_follow_the_official_layout_key_by_key(collected):
    n = STEPS + 1
    assert [p.name for p in collected] == ["ep_000000.npz", "ep_000001.npz"]
    assert list_episodes(collected[0].parent) == collected
    for path in collected:
        ep = read_episode(path)
        assert set(ep) == {"image", "action", "reward", *GLOBAL_KEYS, "seed"}
        expected = {
            "image": ((n, 64, 64, 3), np.uint8), "action": ((n, 6), np.float32),
            "reward": ((n,), np.float32), "maze_layout": ((n, 9, 9), np.uint8),
            "agent_pos": ((n, 2), np.float64), "agent_dir": ((n, 2), np.float64),
            "targets_pos": ((n, 3, 2), np.float64), "targets_vec": ((n, 3, 2), np.float64),
            "target_pos": ((n, 2), np.float64), "target_vec": ((n, 2), np.float64),
            "target_color": ((n, 3), np.float64), "seed": ((), np.int64),
        }
        for key, (shape, dtype) in expected.items():
            assert ep[key].shape == shape and ep[key].dtype == dtype, key
        action = ep["action"]
        assert np.all(action[0] == 0), "action[0] is all zeros (no action led to image[0])"
        assert np.all(np.isin(action, (0.0, 1.0))) and np.all(action[1:].sum(axis=1) == 1)
        assert ep["reward"][0] == 0
        assert set(np.unique(ep["maze_layout"])) <= {0, 1}
        assert np.all(ep["maze_layout"] == ep["maze_layout"][0]), "one maze per episode"
        assert np.allclose(np.linalg.norm(ep["agent_dir"], axis=1), 1.0, atol=1e-6)
        border = ep["image"][:, 0, 32]  # target colour drawn as the image border, as officially
        assert np.allclose(border, ep["target_color"] * 255 * 0.7, atol=1)


def test_recorded_seed_reproduces_the_episode(collected):
    ep = read_episode(collected[1])
    assert int(ep["seed"]) == episode_seed(SEED, 1)
    again = collect_episode("9x9", int(ep["seed"]), STEPS, noise=0.25)
    for key in ("image", "action", "reward", "agent_pos"):
        assert np.array_equal(again[key], ep[key]), key


def test_episodes_get_distinct_seeds_and_mazes(collected):
    a, b = (read_episode(p) for p in collected)
    assert int(a["seed"]) != int(b["seed"])
    assert not np.array_equal(a["image"], b["image"])
    assert len({episode_seed(SEED, i) for i in range(1000)}) == 1000


def test_rerun_keeps_finished_episodes_and_only_adds_missing_ones(collected):
    out = collected[0].parent
    before = {p: p.stat().st_mtime_ns for p in collected}
    events = []
    paths = collect(out, 2, steps=STEPS, seed=SEED, progress=events.append)
    assert paths == collected
    assert {p: p.stat().st_mtime_ns for p in collected} == before, "never rewritten"
    assert [(e.done, e.total, e.result) for e in events] == [(2, 2, None)]


def test_settings_must_match_to_resume(collected):
    out = collected[0].parent
    with pytest.raises(UserError, match="noise"):
        collect(out, 3, steps=STEPS, seed=SEED, noise=0.5)
    with pytest.raises(UserError, match="seed"):
        collect(out, 3, steps=STEPS, seed=SEED + 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "--steps"), ({"steps": 1001}, "--steps"), ({"noise": 1.5}, "--noise"),
    ({"episodes": 0}, "--episodes"), ({"workers": 0}, "--workers"),
    ({"env": "memory-maze-8x8"}, "size"),
])
def test_bad_arguments_are_user_errors(tmp_path, kwargs, match):
    args = {"episodes": 1, **kwargs}
    with pytest.raises(UserError, match=match):
        collect(tmp_path / "out", args.pop("episodes"), **args)


def test_output_dir_removes_stale_temporary_files_and_refuses_a_second_writer(tmp_path):
    stale = tmp_path / ".ep_000003.abcd.npz.tmp"
    stale.write_bytes(b"partial")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    with OutputDir(tmp_path, "rad-collect.json", {"seed": 1}):
        assert not stale.exists() and keep.exists()
        second = OutputDir(tmp_path, "rad-collect.json", {"seed": 1})
        with pytest.raises(UserError, match="another process"):
            second.__enter__()


@dataclass(frozen=True)
class _Job:
    """A stand-in job for the worker machinery: no simulator."""

    index: int
    fail: bool = False

    def __call__(self) -> JobResult:
        if self.fail:
            raise UserError(f"job {self.index} failed on purpose")
        return JobResult(self.index, f"job{self.index}", 1, 0.0, 0.0, notes=(f"pid {os.getpid()}",))


def test_worker_processes_run_every_job_once_and_report_it_here():
    seen = []
    results = run_jobs([_Job(i) for i in range(6)], workers=2, on_result=seen.append)
    assert sorted(r.index for r in results) == list(range(6)) and seen == results
    assert str(os.getpid()) not in {r.notes[0] for r in results}, "ran in other processes"


def test_a_failing_job_in_a_worker_is_raised_here_with_its_type():
    jobs = [_Job(0), _Job(1, fail=True), *(_Job(i) for i in range(2, 200))]
    with pytest.raises(UserError, match="job 1 failed on purpose"):
        run_jobs(jobs, workers=2)


def _rad(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from world_model.cli import main; sys.exit(main())",
            *args]


def test_killed_collection_resumes_without_corrupt_or_duplicate_files(tmp_path):
    out = tmp_path / "data"
    args = ("collect", "--episodes", "3", "--steps", "20", "--seed", "3", "--out", str(out))
    cmd = _rad(*args, "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("ep_*.npz")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0, "killed before the end: must not report success"
    assert "Traceback" not in err, err
    assert not list(out.glob(".*.tmp")), "no temporary files left behind"
    first = sorted(out.glob("ep_*.npz"))
    assert 1 <= len(first) < 3
    stamps = {p: p.stat().st_mtime_ns for p in first}
    for p in first:
        assert read_episode(p)["image"].shape[0] == 21

    # the worker count is not part of a run's settings: resume in-process
    done = subprocess.run(_rad(*args, "--workers", "1"), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    files = sorted(out.glob("*.npz"))
    assert [p.name for p in files] == [episode_path(out, i).name for i in range(3)]
    assert {p: p.stat().st_mtime_ns for p in first} == stamps, "finished episodes never rewritten"
    for i, p in enumerate(files):
        ep = read_episode(p)
        assert ep["image"].shape[0] == 21 and int(ep["seed"]) == episode_seed(3, i)
    assert sorted(os.listdir(out)) == sorted([".rad.lock", "rad-collect.json",
                                              *(p.name for p in files)])
