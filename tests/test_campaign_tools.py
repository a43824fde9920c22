"""benchmarks/lockstep_mean.py, campaign_curves.py and bench_precision.py: several lockstep reports
as one table, a warm-started run's validation loss on the campaign's step axis, the engine's two
low-precision paths side by side."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def load(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(path: Path, rows: list[tuple[str, str, float, float]]) -> Path:
    path.write_text(json.dumps({"rows": [
        {"name": n, "steps": b, "accuracy": f * 0.8, "fidelity": f, "frechet": d, "psnr": None,
         "ssim": None} for n, b, f, d in rows]}))
    return path


def test_lockstep_mean_prints_mean_and_range_per_world_and_bucket(tmp_path, capsys):
    a = report(tmp_path / "a.json", [("repeat last frame", "1-20", 0.1, 0.05),
                                     ("c17000", "1-20", 0.8, 0.10), ("c17000", "21-100", 0.5, 0.2)])
    b = report(tmp_path / "b.json", [("repeat last frame", "1-20", 0.1, 0.07),
                                     ("c17000", "1-20", 0.9, 0.20), ("c17000", "21-100", 0.7, 0.4)])
    load("lockstep_mean").main([str(a), str(b)])
    out = capsys.readouterr().out
    assert "over 2 reports" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("| c17000"))
    assert "0.85 (0.80-0.90)" in line and "0.60 (0.50-0.70)" in line
    assert "0.150 (0.100-0.200)" in line and "0.300 (0.200-0.400)" in line
    assert line.count("| - ") == 2  # no PSNR in these reports: '-' in both PSNR cells


def test_campaign_curves_places_a_warm_started_run_and_named_snapshots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    curves = load("campaign_curves")
    run = tmp_path / "rad"
    run.mkdir()
    (run / "init_from.json").write_text(json.dumps(
        {"init_from": "w", "source_train_info": {"step": 9000, "campaign_steps": 9000}}))
    (run / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in ({"step": 250, "val/diffusion": 0.07},
                                          {"step": 260, "loss/diffusion": 0.1},
                                          {"step": 500, "val/diffusion": 0.06})) + "\n")
    assert curves.validation(run) == [(9250, 0.07), (9500, 0.06)]
    a = report(tmp_path / "a.json", [("c13000", "1-20", 0.8, 0.1), ("shipped", "1-20", 0.5, 0.5),
                                     ("repeat last frame", "1-20", 0.1, 0.05)])
    points = curves.lockstep_points([a])
    assert dict(points[("fidelity", "1-20")]) == {13000: [0.8], -1: [0.1]}
    out = tmp_path / "curves.png"
    curves.main([str(run), "--lockstep", str(a), "--out", str(out)])
    assert out.stat().st_size > 0 and "fidelity 1-20: 13000 0.8" in capsys.readouterr().out


def test_bench_precision_compares_the_two_engines_on_the_shipped_world(capsys):
    from world_model.loading import SHIPPED_WORLD

    if not (SHIPPED_WORLD / "contexts.npz").is_file():
        pytest.skip("no shipped world")
    load("bench_precision").main(["--batch", "2", "--frames", "3", "--rounds", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "autocast only: ms per batched step" in out and "cast once: ms per batched step" in out
    assert "x autocast only" in out and "PSNR" in out


def test_bench_env_pairs_ratios_with_their_own_simulator_and_steps_from_snapshots(tiny_world, tmp_path):
    import subprocess
    import sys

    import numpy as np

    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_env.py"
    run = subprocess.run([sys.executable, str(script), "--checkpoint", str(tiny_world),
                          "--steps", "1", "--batches", "2", "--frames", "2", "--warmup", "1",
                          "--real-steps", "5", "--dtypes", "float32", "--threads", "1",
                          "--long", "12", "--long-pairs", "2", "--rounds", "2",
                          "--json", str(out)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "median of 2 rounds" in run.stdout
    result = json.loads(out.read_text())
    rounds = result["rounds"]
    assert len(rounds) == 2 and "as_installed" not in rounds[1]["real"]  # measured once
    (row,) = result["imagined"]
    expect = [r["imagined"][0]["frames_per_s"] / r["real"]["fast_contacts"] for r in rounds]
    assert row["ratios"] == pytest.approx(expect)
    assert row["ratio_to_patched"] == pytest.approx(float(np.median(expect)))
    long = result["long"]  # the step after step 10 and after step 12, paired from snapshots
    assert long["steps"] == 12 and long["paired_ratio_median"] > 0
    assert long["ratio_end_over_10"] == pytest.approx(
        long["s_per_step_near_end"] / long["s_per_step_near_10"])
