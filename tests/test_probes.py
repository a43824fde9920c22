"""Linear probes of the memory (world_model.evaluation.probes): targets, the ridge probe, features,
the CLI (``rad probe``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from world_model.cli import main as rad
from world_model.errors import UserError
from world_model.evaluation.probes import (
    ProbeConfig,
    extract_features,
    fit_ridge,
    layout_targets,
    memory_features,
    r2_score,
    read_probe_episodes,
    run_probes,
)


@pytest.fixture(scope="module")
def tiny_none_world(tmp_path_factory):
    """The tiny preset with memory 'none' (the Diffusion Forcing baseline), random weights."""
    import torch
    from model_utils import randomize_zeros

    from world_model.checkpoint import save_world
    from world_model.configs import resolve_config
    from world_model.world import build_world

    config = resolve_config("tiny", ["model.memory=none"])
    torch.manual_seed(1)
    world = build_world(config)
    randomize_zeros(world.model)
    return save_world(tmp_path_factory.mktemp("worlds") / "tiny-none", config, world.model)


def test_layout_targets_read_the_world_aligned_window_around_the_agent():
    layout = np.zeros((4, 4), np.uint8)
    layout[1, 1] = layout[1, 2] = layout[2, 1] = layout[0, 1] = 1  # (row, col); row 0 at the bottom
    pos = np.array([1.5, 1.2])  # (x, y): cell (row 1, col 1)
    got = layout_targets(layout, pos, 3)
    # rows 0..2 x cols 0..2 around (1, 1), row-major, centre left out
    want = np.array([0, 1, 0,
                     0, 1,
                     0, 1, 0], np.float64)
    np.testing.assert_array_equal(got, want)
    corner = layout_targets(layout, np.array([0.1, 0.1]), 3)  # cell (0, 0): the outside is wall
    np.testing.assert_array_equal(corner, [0, 0, 0, 0, 1, 0, 0, 1])
    batched = layout_targets(np.stack([layout, layout])[None], np.stack([pos, [0.1, 0.1]])[None], 3)
    assert batched.shape == (1, 2, 8)
    np.testing.assert_array_equal(batched[0, 1], corner)


def test_ridge_recovers_a_planted_linear_signal_and_finds_nothing_in_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20)) * rng.uniform(0.1, 10, size=20) + 3.0  # unstandardized
    w = rng.normal(size=(20, 4))
    y = x @ w + 0.1 * rng.normal(size=(600, 4)) + 5.0
    probe = fit_ridge(x[:400], y[:400], 1e-3)
    assert r2_score(probe.predict(x[400:]), y[400:]) > 0.9
    noise = rng.normal(size=(600, 4))
    probe = fit_ridge(x[:400], noise[:400], 1e-3)
    assert abs(r2_score(probe.predict(x[400:]), noise[400:])) < 0.1
    # more features than samples: the dual solution is the primal one
    wide = rng.normal(size=(15, 40))
    target = rng.normal(size=(15, 2))
    dual = fit_ridge(wide, target, 0.5)
    z = (wide - wide.mean(0)) / wide.std(0)
    primal = np.linalg.solve(z.T @ z + 0.5 * 15 * np.eye(40), z.T @ (target - target.mean(0)))
    np.testing.assert_allclose(dual.weight, primal, atol=1e-8)
    # a constant feature is ignored, not divided by zero
    flat = np.concatenate([x[:400], np.ones((400, 1))], axis=1)
    assert np.isfinite(fit_ridge(flat, y[:400], 1e-3).predict(flat)).all()


@pytest.mark.parametrize("memory", ["lstm", "none"])
def test_features_have_the_documented_shapes(memory, tiny_world, tiny_none_world, real_episodes_dir):
    import torch

    from world_model.checkpoint import load
    from world_model.data.format import list_episodes
    from world_model.engine.rollout import RolloutEngine

    world = load(tiny_world if memory == "lstm" else tiny_none_world)
    cfg = world.config.model
    engine = RolloutEngine(world)
    eps = read_probe_episodes(list_episodes(real_episodes_dir), frames=9)
    feats = extract_features(engine, eps.frames, eps.actions, every=3, progress=False)
    S = 3  # frames 2, 5, 8
    window = {f"window/{i}": (3, S, 2 * cfg.width) for i in range(cfg.depth)}
    if memory == "lstm":
        mem = {f"memory/{i}": (3, S, 2 * cfg.memory_hidden) for i in range(cfg.depth)}
        assert {k: v.shape for k, v in feats.items()} == {**mem, **window}
        # the last probe is the memory after all 9 frames, pooled over the tokens
        state = engine.start(torch.from_numpy(eps.frames), torch.from_numpy(eps.actions))
        flushed = memory_features(engine.flushed_memory(state))
        for i in range(cfg.depth):
            np.testing.assert_allclose(feats[f"memory/{i}"][:, -1], flushed[i].numpy(), atol=1e-5)
        assert not np.allclose(feats["memory/0"][:, 0], feats["memory/0"][:, -1])
    else:
        assert {k: v.shape for k, v in feats.items()} == window
    assert all(np.isfinite(v).all() for v in feats.values())
    assert not np.allclose(feats["window/0"][:, 1], feats["window/0"][:, 2])


def test_the_cli_probes_the_world_and_its_memoryless_twin(tiny_world, tiny_none_world,
                                                           real_episodes_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    rc = rad(["probe", "--checkpoint", str(tiny_world), "--baseline", str(tiny_none_world),
               "--data", str(real_episodes_dir), "--out", str(out), "--train-episodes", "2",
               "--test-episodes", "1", "--frames", "16", "--every", "2"])
    assert rc == 0
    report = json.loads((out / "probes.json").read_text())
    assert report["samples"] == {"train_episodes": 2, "test_episodes": 1, "frames": 16,
                                 "train": 16, "test": 8, "targets_vec_dims": 6, "layout_cells": 24}
    world, base = report["worlds"]["world"], report["worlds"]["baseline"]
    assert [(r["feature"], r["layer"]) for r in world["features"]] == [
        ("memory", 0), ("memory", 1), ("window", 0), ("window", 1)]
    assert [(r["feature"], r["layer"]) for r in base["features"]] == [("window", 0), ("window", 1)]
    assert base["memory"] == "none" and world["memory"] == "lstm"
    for row in world["features"] + base["features"]:
        assert row["targets_vec"]["ridge"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
        assert np.isfinite(row["targets_vec"]["test"])
        assert 0.0 <= row["layout"]["test"] <= 1.0
    assert 0.0 <= report["trivial"]["layout"] <= 1.0
    table = (out / "probes.md").read_text()
    assert table.count("\n| world | lstm | ") == 4 and table.count("\n| baseline | none | window") == 2
    assert "| trivial |" in table and "| trivial |" in capsys.readouterr().out
    # a fixed ridge strength is used as given
    fixed = run_probes(ProbeConfig(checkpoint=str(tiny_world), data=str(real_episodes_dir),
                                   out=str(tmp_path / "fixed"), train_episodes=1, test_episodes=1,
                                   frames=8, every=2, ridge=0.5), progress=False)
    assert {r["layout"]["ridge"] for r in fixed["worlds"]["world"]["features"]} == {0.5}


def test_bad_input_is_a_clear_user_error(tiny_world, real_episodes_dir, tmp_path, capsys):
    from world_model.data.format import list_episodes, read_episode, write_episode

    base = {"checkpoint": str(tiny_world), "out": str(tmp_path / "out"), "frames": 8, "every": 2}
    with pytest.raises(UserError, match=r"3 episode file\(s\).*= 4"):
        run_probes(ProbeConfig(data=str(real_episodes_dir), train_episodes=3, test_episodes=1,
                               **base), progress=False)
    bad = tmp_path / "no-extra-obs"
    bad.mkdir()
    paths = list_episodes(real_episodes_dir)
    for p in paths[1:]:
        shutil.copy(p, bad / p.name)
    ep = read_episode(paths[0])
    del ep["maze_layout"]
    write_episode(bad / paths[0].name, ep)
    with pytest.raises(UserError, match=rf"{paths[0].name}: missing key\(s\) \['maze_layout'\]"):
        run_probes(ProbeConfig(data=str(bad), train_episodes=2, test_episodes=1, **base),
                   progress=False)
    with pytest.raises(UserError, match="--train-episodes >= 2, or a fixed --ridge"):
        run_probes(ProbeConfig(data=str(real_episodes_dir), train_episodes=1, test_episodes=1,
                               **base), progress=False)
    assert rad(["probe", "--checkpoint", str(tiny_world), "--data", str(bad), "--out", str(tmp_path),
                 "--train-episodes", "2", "--test-episodes", "1"]) == 2
    assert "missing key(s) ['maze_layout']" in capsys.readouterr().err
    assert not (tmp_path / "out" / "probes.json").exists()


def test_without_a_checkpoint_the_missing_shipped_world_is_named(monkeypatch, tmp_path):
    import world_model.loading
    from world_model.errors import CheckpointError

    monkeypatch.setattr(world_model.loading, "SHIPPED_WORLD", tmp_path / "memory-maze-9x9")
    with pytest.raises(CheckpointError, match=r"shipped world .*memory-maze-9x9 is not installed"):
        run_probes(ProbeConfig(data=str(tmp_path), out=str(tmp_path / "out")), progress=False)
