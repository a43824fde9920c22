"""Read the memory: linear probes from a world's recurrent memory to what the agent cannot see.

Real held-out episodes (with Memory Maze's global observables, as ``rad collect`` records them)
are teacher-forced through the world (``RolloutEngine.observe``: every real frame and action).
At every ``every``-th frame ``t`` (frames ``every - 1, 2 every - 1, ...``) two kinds of feature
are read from the engine state, one vector per layer:

* ``memory`` (worlds with memory): ``RolloutEngine.flushed_memory``, the memory state after
  frames ``0..t`` (the frames still in the attention window written into a copy), each of the
  layer's state tensors ``(B, N, *f)`` averaged over the N tokens of a frame and flattened, then
  concatenated (LSTM: ``[h, c]``, ``2 * memory_hidden`` values).
* ``window`` (every world, and the only one of a memory-less Diffusion Forcing baseline): the
  cached temporal keys and values of the frames in the next frame's attention window (the last
  ``W - 1`` frames, frame ``t`` included; pre-RoPE, so they do not depend on a frame's position in
  the window), each ``(B, N, heads, P, head_dim)`` averaged over the N tokens and the P cached
  frames, heads kept: ``[keys, values]``, ``2 * width`` values. Zeros where the window is empty
  (chunk mode right after a chunk closes).

Targets at the same frames, what the current view does not show:

* ``targets_vec``: the agent-centric positions of all k objects, flattened ``(2k,)``;
  scored by R^2 on held-out episodes (pooled over the 2k outputs, around the test mean).
* ``layout``: the maze cells of a ``layout_window x layout_window`` window around the agent's
  cell, world-aligned (rows north, columns east, as ``maze_layout``; not rotated with the
  heading), 1 free / 0 wall, cells outside the maze walls, the centre cell (always free) left out;
  scored by the accuracy of the probe's output thresholded at 0.5.

The probe is ridge regression (closed form, float64) on standardized features (training mean and
std), minimising ``mean ||y - x w - b||^2 + ridge * ||w||^2``. It is fitted on the first
``train_episodes`` episode files (sorted) and scored on the next ``test_episodes``; the ridge
strength is fixed by ``--ridge`` or chosen from :data:`world_model.evaluation.ridge_probe.RIDGE_GRID` per target and feature on the
last fifth of the training episodes (at least one), then refitted on all of them. Trivial
baselines: the training mean (R^2) and the per-cell training majority (accuracy).

    rad probe --checkpoint runs/rad --baseline runs/df --data data/maze9-heldout \\
        --out reports/probes

writes ``probes.json`` and ``probes.md`` (a markdown table) to ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_model.errors import CheckpointError, UserError
from world_model.evaluation.ridge_probe import (  # noqa: F401 (the probe maths, re-exported)
    RIDGE_GRID,
    RidgeProbe,
    _flat,
    accuracy,
    choose_ridge,
    fit_ridge,
    probe_feature,
    r2_score,
    trivial_scores,
)

logger = logging.getLogger(__name__)

#: Episode keys the probes read (the global observables besides the frames and actions).
PROBE_KEYS = ("image", "action", "targets_vec", "maze_layout", "agent_pos")
EXTRA_OBS = ("targets_vec", "maze_layout", "agent_pos")


@dataclass(frozen=True)
class ProbeConfig:
    """Every field is an option of ``rad probe``."""

    checkpoint: str | None = None
    """World run directory; None: the world shipped with rad_env."""
    baseline: str | None = None
    """A second world (e.g. the memory-less Diffusion Forcing twin) probed on the same episodes."""
    data: str = "data/maze9-heldout"
    """Directory of real episode files with the global observables (not the worlds' training data)."""
    out: str = "reports/probes"
    """Report directory (probes.json, probes.md)."""
    train_episodes: int = 16
    """The first this many episode files (sorted) fit the probes."""
    test_episodes: int = 8
    """The next this many score them."""
    frames: int = 0
    """Frames per episode (0: all; every episode is trimmed to the shortest)."""
    every: int = 10
    """Probe every this many frames (frames every-1, 2*every-1, ...)."""
    ridge: float | None = None
    """Ridge strength; None: chosen from RIDGE_GRID on held-back training episodes."""
    layout_window: int = 5
    """Side of the (odd, world-aligned) layout window around the agent's cell."""
    device: str = "cpu"
    """Device of the world model (cpu, cuda, auto)."""
    dtype: str = "float32"
    """Compute dtype of the network passes (bfloat16 on a GPU is faster)."""
    seed: int = 0
    """Seeds the world's sampling noise."""

    def validate(self) -> ProbeConfig:
        if self.train_episodes < 1 or self.test_episodes < 1:
            raise UserError(f"--train-episodes and --test-episodes must be >= 1, got "
                            f"{self.train_episodes} and {self.test_episodes}")
        if self.ridge is None and self.train_episodes < 2:
            raise UserError("choosing the ridge strength holds back training episodes: give "
                            "--train-episodes >= 2, or a fixed --ridge")
        if self.ridge is not None and self.ridge < 0:
            raise UserError(f"--ridge must be >= 0, got {self.ridge}")
        if self.every < 1 or self.frames < 0:
            raise UserError(f"--every must be >= 1 and --frames >= 0, got {self.every}, {self.frames}")
        if self.layout_window < 3 or self.layout_window % 2 == 0:
            raise UserError(f"--layout-window must be odd and >= 3, got {self.layout_window}")
        return self


# -- episodes and targets ------------------------------------------------------------------------
@dataclass
class ProbeEpisodes:
    """B episodes trimmed to one length T, side by side."""

    names: list[str]
    frames: np.ndarray
    """``(B, T, H, W, 3)`` uint8."""
    actions: np.ndarray
    """``(B, T)`` int64; ``actions[:, i]`` led to ``frames[:, i]``."""
    targets_vec: np.ndarray
    """``(B, T, k, 2)`` float: agent-centric positions of all k objects."""
    maze_layout: np.ndarray
    """``(B, T, n, n)`` uint8: 1 free, 0 wall; row 0 is the bottom row."""
    agent_pos: np.ndarray
    """``(B, T, 2)`` float ``(x, y)`` in cell units."""


def read_probe_episodes(paths: list[Path], frames: int = 0) -> ProbeEpisodes:
    """Read ``paths`` and trim them to the shortest (and to ``frames`` when > 0).

    Raises:
        UserError: a file without the global observables, or episodes of different maze sizes.
    """
    from world_model.data.format import action_indices, read_episode

    eps = []
    for path in paths:
        ep = read_episode(path)
        missing = [k for k in PROBE_KEYS if k not in ep]
        if missing:
            raise UserError(
                f"{path}: missing key(s) {missing}; the probes need Memory Maze's global "
                f"observables ({', '.join(EXTRA_OBS)}), as `rad collect --env memory-maze-9x9` "
                f"records them")
        eps.append(ep)
    for key in ("targets_vec", "maze_layout"):
        shapes = {tuple(ep[key].shape[1:]) for ep in eps}
        if len(shapes) > 1:
            raise UserError(f"{key}: the episodes disagree on its shape {sorted(shapes)} "
                            f"(mazes of one size only)")
    T = min(len(ep["image"]) for ep in eps)
    if frames:
        T = min(T, frames)

    def stack(key: str) -> np.ndarray:
        return np.stack([ep[key][:T] for ep in eps])

    return ProbeEpisodes([Path(p).name for p in paths], stack("image"),
                         np.stack([action_indices(ep["action"])[:T] for ep in eps]),
                         stack("targets_vec").astype(np.float64), stack("maze_layout"),
                         stack("agent_pos").astype(np.float64))


def layout_targets(maze_layout: np.ndarray, agent_pos: np.ndarray, size: int) -> np.ndarray:
    """The maze around the agent: ``maze_layout (..., n, n)``, ``agent_pos (..., 2)`` ->
    ``(..., size * size - 1)`` float 0/1.

    The ``size x size`` cells centred on the agent's cell ``(floor(y), floor(x))``, world-aligned,
    row-major from the lowest row (``layout[row + dr, col + dc]`` for ``dr, dc`` in
    ``-size//2 .. size//2``), the centre left out; cells outside the maze count as walls (0).
    """
    n_rows, n_cols = maze_layout.shape[-2:]
    lead = maze_layout.shape[:-2]
    layout = maze_layout.reshape(-1, n_rows, n_cols)
    pos = agent_pos.reshape(-1, 2)
    h = size // 2
    padded = np.pad(layout, ((0, 0), (h, h), (h, h)), constant_values=0)
    row = np.clip(np.floor(pos[:, 1]).astype(np.int64), 0, n_rows - 1)
    col = np.clip(np.floor(pos[:, 0]).astype(np.int64), 0, n_cols - 1)
    d = np.arange(size)
    rows = (row[:, None] + d)[:, :, None]  # padded coordinates: cell (row + dr) is row + h + dr
    cols = (col[:, None] + d)[:, None, :]
    win = padded[np.arange(len(layout))[:, None, None], rows, cols].reshape(len(layout), -1)
    keep = np.arange(size * size) != (size * size) // 2
    return win[:, keep].astype(np.float64).reshape(*lead, size * size - 1)


# -- features ------------------------------------------------------------------------------------
def memory_features(memory: list) -> list:
    """Per layer the memory state pooled: tensors ``(B, N, *f)`` -> one ``(B, sum prod f)``
    float32 tensor (mean over the N tokens, flattened, the layer's tensors concatenated)."""
    import torch

    return [torch.cat([s.float().mean(1).flatten(1) for s in layer], dim=1) for layer in memory]


def window_features(engine, state) -> list:
    """Per layer the cached keys and values of the next frame's window pooled: ``(B, 2 * width)``
    float32 (``[keys, values]``, each averaged over the N tokens and the cached frames, heads
    kept; zeros when the window holds no frame). Every row must be at the same frame index."""
    import torch

    from world_model.network.windows import window_start

    t = state.frame_index
    if not bool((t == t[0]).all()):
        raise UserError("window_features: every row must be at the same frame")
    T = int(t[0])
    start = int(window_start(t[:1], engine.window, engine.mode)[0])
    ring = engine.slots if engine.mode == "frame" else engine.window
    slots = [f % ring for f in range(start, T)]
    out = []
    for k, v in zip(state.keys, state.values):
        B = k.shape[0]
        if not slots:
            out.append(torch.zeros(B, 2 * k.shape[2] * k.shape[4], device=k.device))
            continue
        idx = torch.tensor(slots, device=k.device)
        pooled = [x.index_select(3, idx).float().mean(dim=(1, 3)).flatten(1) for x in (k, v)]
        out.append(torch.cat(pooled, dim=1))  # (B, heads * hd) each
    return out


def extract_features(engine, frames: np.ndarray, actions: np.ndarray, every: int,
                     seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """Teacher-force ``frames (B, T, H, W, 3)`` uint8 under ``actions (B, T)`` and read the
    features at frames ``every - 1, 2 every - 1, ...`` (S of them).

    Returns:
        ``{"memory/<layer>": (B, S, D), "window/<layer>": (B, S, 2 * width)}`` float32; the
        ``memory`` entries only for a world with memory, the ``window`` ones only when its window
        caches frames (W > 1).
    """
    import torch
    from tqdm.auto import tqdm

    B, T = actions.shape
    times = list(range(every - 1, T, every))
    state = engine.init_state(B, seeds=seed)
    feats: dict[str, list[np.ndarray]] = {}
    for t in tqdm(range(T), desc="teacher-forcing", unit="frame", disable=not progress):
        engine.observe(state, torch.from_numpy(np.ascontiguousarray(frames[:, t])),
                       torch.from_numpy(actions[:, t]))
        if t not in times:
            continue
        named = []
        if engine.model.has_memory:
            named += [(f"memory/{i}", f) for i, f in
                      enumerate(memory_features(engine.flushed_memory(state)))]
        if engine.slots > 0:
            named += [(f"window/{i}", f) for i, f in enumerate(window_features(engine, state))]
        for name, f in named:
            feats.setdefault(name, []).append(f.cpu().numpy())
    return {name: np.stack(v, axis=1) for name, v in feats.items()}


# -- the report ----------------------------------------------------------------------------------
def probe_world(run_dir: Path, cfg: ProbeConfig, episodes: ProbeEpisodes, n_train: int,
                targets: dict[str, np.ndarray], progress: bool = True) -> dict[str, Any]:
    """Every feature of one world, fitted on the first ``n_train`` rows of ``episodes`` and
    scored on the rest. ``targets``: ``{name: (B, S, O)}``."""
    import torch

    from world_model.loading import load_engine

    # (the probes read features of real frames fed in: the sampler is never run)
    engine = load_engine(run_dir, device=cfg.device, dtype=cfg.dtype)
    with torch.inference_mode():
        feats = extract_features(engine, episodes.frames, episodes.actions, cfg.every, cfg.seed,
                                 progress)
    S = next(iter(targets.values())).shape[1]
    n_val = max(1, n_train // 5)
    held_back = np.zeros((n_train, S), bool)
    held_back[n_train - n_val:] = True
    held_back = held_back.reshape(-1)
    train_y = {k: _flat(v[:n_train]) for k, v in targets.items()}
    test_y = {k: _flat(v[n_train:]) for k, v in targets.items()}
    rows = []
    for name, f in feats.items():
        kind, layer = name.split("/")
        row = probe_feature(_flat(f[:n_train]), train_y, _flat(f[n_train:]), test_y, held_back,
                            cfg.ridge)
        rows.append({"feature": kind, "layer": int(layer), **row})
    m = engine.world.config.model
    return {"run": str(run_dir), "memory": m.memory, "mode": m.mode, "window": m.window,
            "depth": m.depth, "features": rows}


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a markdown table, one row per world, feature and layer."""
    c, s = report["config"], report["samples"]
    summary = (f"{s['train_episodes']} training episodes ({s['train']} samples), "
               f"{s['test_episodes']} test episodes ({s['test']} samples), {s['frames']} frames "
               f"each, probed every {c['every']} frames. Targets: `targets_vec` "
               f"({s['targets_vec_dims']} values, R^2) and the {c['layout_window']}x"
               f"{c['layout_window']} world-aligned layout window around the agent "
               f"({s['layout_cells']} cells, accuracy at 0.5).")
    header = ("| world | memory | feature | layer | dims | targets_vec R^2 (test) "
              "| layout acc (test) | ridge (vec / layout) |")
    trivial = (f"| trivial | - | training mean / majority | - | - "
               f"| {report['trivial']['targets_vec']:.3f} | {report['trivial']['layout']:.3f} | - |")
    lines = ["# Linear probes of the memory (held-out episodes)", "", summary, "", header,
             "|---|---|---|---|---|---|---|---|", trivial]
    for label, w in report["worlds"].items():
        for r in w["features"]:
            lines.append(
                f"| {label} | {w['memory']} | {r['feature']} | {r['layer']} | {r['dims']} "
                f"| {r['targets_vec']['test']:.3f} | {r['layout']['test']:.3f} "
                f"| {r['targets_vec']['ridge']:g} / {r['layout']['ridge']:g} |")
    return "\n".join(lines) + "\n"


def run_probes(cfg: ProbeConfig, progress: bool = True) -> dict[str, Any]:
    """Probe the world (and the baseline) and write ``out/probes.json`` and ``out/probes.md``."""
    from world_model.data.format import list_episodes
    from world_model.io import atomic_write_text
    from world_model.loading import SHIPPED_WORLD

    cfg.validate()
    if cfg.checkpoint is None and not (SHIPPED_WORLD / "config.json").is_file():
        raise CheckpointError(f"no --checkpoint given and the shipped world {SHIPPED_WORLD} is not "
                              f"installed (no config.json there): pass --checkpoint RUN_DIR")
    runs = {"world": SHIPPED_WORLD if cfg.checkpoint is None else Path(cfg.checkpoint)}
    if cfg.baseline is not None:
        runs["baseline"] = Path(cfg.baseline)
    paths = list_episodes(cfg.data)
    need = cfg.train_episodes + cfg.test_episodes
    if len(paths) < need:
        raise UserError(f"{cfg.data}: {len(paths)} episode file(s), the probes need "
                        f"--train-episodes + --test-episodes = {need}")
    episodes = read_probe_episodes(paths[:need], cfg.frames)
    T = episodes.actions.shape[1]
    times = np.arange(cfg.every - 1, T, cfg.every)
    n_val = max(1, cfg.train_episodes // 5) if cfg.ridge is None else 0
    if len(times) < 2 or len(times) * (cfg.train_episodes - n_val) < 2:
        raise UserError(f"{T} frames probed every {cfg.every}: {len(times)} sample(s) per "
                        f"episode, too few to fit a probe (more --frames or a smaller --every)")
    targets = {"targets_vec": episodes.targets_vec[:, times].reshape(need, len(times), -1),
               "layout": layout_targets(episodes.maze_layout[:, times], episodes.agent_pos[:, times],
                                        cfg.layout_window)}
    n = cfg.train_episodes
    report: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "episodes": {"train": episodes.names[:n], "test": episodes.names[n:]},
        "samples": {"train_episodes": n, "test_episodes": cfg.test_episodes, "frames": int(T),
                    "train": n * len(times), "test": cfg.test_episodes * len(times),
                    "targets_vec_dims": int(targets["targets_vec"].shape[-1]),
                    "layout_cells": int(targets["layout"].shape[-1])},
        "trivial": trivial_scores(targets, n),
        "worlds": {},
    }
    for label, run_dir in runs.items():
        report["worlds"][label] = probe_world(run_dir, cfg, episodes, n, targets, progress)
    out = Path(cfg.out)
    atomic_write_text(out / "probes.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "probes.md", markdown_table(report))
    return report
