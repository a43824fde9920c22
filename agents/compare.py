"""RL in imagination, scored in reality: the same algorithm trained in the world and in the real maze.

For every algorithm (``--algos``: ppo, recurrent-ppo) and every seed (``--seeds``) it trains one
run in the learned world (``env=imagination``) and one on the real Memory Maze 9x9
(``env=real``), both for ``--timesteps`` env steps with the same hyperparameters
(:mod:`agents.ppo`), and scores each in the REAL maze with :func:`agents.evaluate.evaluate`:
``--episodes`` episodes of ``--max-steps`` steps on the mazes of seeds ``eval_seed + k``, the same
mazes for every cell. A uniformly random policy is scored on the same mazes, once per seed.

    python -m agents.compare --checkpoint runs/rad --timesteps 100000 --episodes 3 --out reports/compare

``OUT/table.md`` and ``OUT/table.json`` hold one row per (algorithm, training env) and the random
policy: the mean ± std over seeds of each seed's mean real return, beside the training env's
steps/s and the wall time per cell. Both files are rewritten (to a temporary file, then renamed)
after every cell, so a run that is cut off keeps what it finished; running the same command again
skips the cells already scored, and a training run already finished in ``OUT/runs/`` (its
model.zip beside an equal ppo_config.json) is scored without training it again. Two runs may
share one ``--out`` at the same time (e.g. ``--envs imagination`` and ``--envs real`` on two
cores): each re-reads the table before a cell and merges its cells into it under a file lock.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.ppo import ALGOS, ENVS, REAL_SIZE, PPOConfig
from world_model.errors import RadError, UserError
from world_model.io import atomic_write_text

logger = logging.getLogger(__name__)

RANDOM = "random"
TABLE_JSON = "table.json"
TABLE_MD = "table.md"
TABLE_LOCK = ".table.lock"
#: Options that do not change what a cell measures: a table may mix them.
_NOT_SETTINGS = ("algos", "envs", "seeds", "out", "world_device", "world_compile",
                 "world_processes", "policy_device")


@dataclass(frozen=True)
class CompareConfig:
    """Every field is a command-line option of ``python -m agents.compare``."""

    checkpoint: str | None = None
    """World run directory for the imagination runs; None: the shipped world."""
    algos: tuple[str, ...] = ("ppo", "recurrent-ppo")
    """Algorithms to compare (ppo, recurrent-ppo)."""
    envs: tuple[str, ...] = ENVS
    """Training envs (imagination, real)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One training run per seed (and one random-policy score)."""
    timesteps: int = 100_000
    """Env steps per training run, imagined or real."""
    episodes: int = 3
    """Real episodes to score each policy on."""
    max_steps: int | None = None
    """Steps per real scoring episode; None: the full 1000."""
    eval_seed: int = 1000
    """Scoring episode k is the real maze of seed eval_seed + k (the same for every cell)."""
    stochastic: bool = False
    """Score with sampled actions instead of the most likely one."""
    num_envs: int = 8
    """Worlds (or real envs) stepped together for each PPO run."""
    n_steps: int = 128
    """PPO steps per env between updates."""
    batch_size: int = 256
    """PPO minibatch size."""
    n_epochs: int = 4
    """PPO epochs over each rollout buffer."""
    learning_rate: float = 2.5e-4
    """PPO learning rate (Adam)."""
    gamma: float = 0.99
    """Discount factor."""
    ent_coef: float = 0.01
    """PPO entropy bonus coefficient."""
    sampling_steps: int | None = None
    """DDIM steps per imagined frame; None: the world's own."""
    episode_steps: int = 1000
    """Training episode length, imagined and real."""
    world_device: str = "cpu"
    """Device of the world model (cpu, cuda, auto)."""
    world_compile: bool = False
    """``torch.compile`` the world's frame pass for the imagination runs (faster, same settings)."""
    world_processes: int = 1
    """Worker processes the imagined worlds' rows are split across (rad_env ``processes``)."""
    policy_device: str = "auto"
    """Device of the PPO networks."""
    out: str = "runs/compare"
    """Directory for table.md, table.json and runs/ (one training run per cell)."""

    def validate(self) -> CompareConfig:
        for name, values, allowed in (("algos", self.algos, ALGOS), ("envs", self.envs, ENVS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values or len(set(values)) != len(values):
                raise UserError(f"compare: --{name} {' '.join(map(str, values))}: expected distinct "
                                f"values among {list(allowed)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"compare: --seeds {self.seeds}: expected at least one, all distinct")
        for name in ("timesteps", "episodes"):
            if getattr(self, name) < 1:
                raise UserError(f"compare: --{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"compare: --max-steps must be >= 1, got {self.max_steps}")
        self.ppo_config(self.algos[0], self.envs[0], self.seeds[0]).validate()
        return self

    def settings(self) -> dict[str, Any]:
        """What every cell of one table shares."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_SETTINGS}

    def ppo_config(self, algo: str, env: str, seed: int) -> PPOConfig:
        return PPOConfig(
            algo=algo, env=env, checkpoint=self.checkpoint, num_envs=self.num_envs,
            total_timesteps=self.timesteps, sampling_steps=self.sampling_steps,
            episode_steps=self.episode_steps, world_device=self.world_device,
            world_compile=self.world_compile, world_processes=self.world_processes,
            policy_device=self.policy_device, n_steps=self.n_steps, batch_size=self.batch_size,
            n_epochs=self.n_epochs, learning_rate=self.learning_rate, gamma=self.gamma,
            ent_coef=self.ent_coef, seed=seed,
            out=str(Path(self.out) / "runs" / f"{algo}-{env}-seed{seed}"))


def cell_key(algo: str, env: str | None, seed: int) -> str:
    return f"{RANDOM}/seed{seed}" if algo == RANDOM else f"{algo}/{env}/seed{seed}"


def cells_of(cfg: CompareConfig) -> list[tuple[str, str | None, int]]:
    """(algo, env, seed) of every cell, seed by seed, so a cut-off run has every row early."""
    cells = []
    for seed in cfg.seeds:
        cells.append((RANDOM, None, seed))
        cells += [(algo, env, seed) for algo in cfg.algos for env in cfg.envs]
    return cells


def load_table(cfg: CompareConfig) -> dict[str, Any]:
    """``OUT/table.json`` if it was made with the same settings, else a new, empty table."""
    path = Path(cfg.out) / TABLE_JSON
    if not path.is_file():
        return {"settings": cfg.settings(), "cells": {}}
    table = json.loads(path.read_text())
    saved = table.get("settings", {})
    if saved != cfg.settings():
        differ = sorted(k for k in set(saved) | set(cfg.settings())
                        if saved.get(k) != cfg.settings().get(k))
        raise UserError(f"{path} was made with other settings ({', '.join(differ)} differ: "
                        f"{ {k: saved.get(k) for k in differ} }); use another --out or remove it")
    return table


def score(policy: Any, cfg: CompareConfig) -> Any:
    """``policy`` scored in the real maze by :func:`agents.evaluate.evaluate`; a recurrent
    policy's state is reset at every episode start."""
    import gymnasium
    import torch

    from agents.evaluate import evaluate

    torch.manual_seed(cfg.eval_seed)  # sampled actions (--stochastic) are reproducible
    kwargs = {} if cfg.max_steps is None else {"max_steps": cfg.max_steps}
    env = gymnasium.make(f"rad_env:MemoryMaze-{REAL_SIZE}-v0", **kwargs)
    try:
        return evaluate(policy, env, cfg.episodes, cfg.eval_seed)
    finally:
        env.close()


def run_cell(cfg: CompareConfig, algo: str, env: str | None, seed: int) -> dict[str, Any]:
    """Train (unless random or already trained) and score one cell."""
    from agents.evaluate import random_policy
    from agents.ppo import (
        MODEL_FILE,
        ModelPolicy,
        finished_run,
        load_model,
        read_train_stats,
        train_ppo,
    )

    start = time.perf_counter()
    cell: dict[str, Any] = {"algo": algo, "env": env, "seed": seed}
    if algo == RANDOM:
        policy: Any = random_policy(seed=seed)
        cell.update(train_steps=0, train_wall_s=0.0, train_steps_per_s=None)
    else:
        ppo_cfg = cfg.ppo_config(algo, env, seed)
        if finished_run(ppo_cfg):
            logger.info("%s: trained run found in %s; scoring it", cell_key(algo, env, seed),
                        ppo_cfg.out)
            model = load_model(Path(ppo_cfg.out) / MODEL_FILE, algo)
        else:
            model = train_ppo(ppo_cfg)
        stats = read_train_stats(ppo_cfg.out)
        cell.update(train_steps=stats.get("steps"), train_wall_s=stats.get("wall_s"),
                    train_steps_per_s=stats.get("steps_per_s"),
                    train_mean_return=stats.get("train_mean_return"), run=ppo_cfg.out)
        policy = ModelPolicy(model, deterministic=not cfg.stochastic)
    t = time.perf_counter()
    result = score(policy, cfg)
    cell.update(returns=result.returns, lengths=result.lengths, mean_return=result.mean_return,
                eval_wall_s=time.perf_counter() - t, wall_s=time.perf_counter() - start)
    return cell


def summarize(cfg: CompareConfig, cells: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (algorithm, training env) and the random policy, over every seed scored.

    Rows come from the cells, not from ``cfg``'s grid: a table filled by several commands (other
    ``--algos``, ``--envs`` or ``--seeds``, or two runs at once) shows all of them.
    """
    rows = []
    for algo, env in [(RANDOM, None)] + [(a, e) for a in ALGOS for e in ENVS]:
        done = sorted((c for c in cells.values() if c["algo"] == algo and c["env"] == env),
                      key=lambda c: c["seed"])
        if not done:
            continue
        means = [c["mean_return"] for c in done]
        speeds = [c["train_steps_per_s"] for c in done if c.get("train_steps_per_s")]
        rows.append({
            "policy": algo, "trained_in": env, "seeds": [c["seed"] for c in done],
            "seed_means": means, "mean": statistics.fmean(means),
            "std": statistics.stdev(means) if len(means) > 1 else 0.0,
            "train_steps_per_s": statistics.fmean(speeds) if speeds else None,
            "train_wall_s": statistics.fmean(c["train_wall_s"] or 0.0 for c in done),
            "wall_s": statistics.fmean(c["wall_s"] for c in done),
        })
    return rows


def render_markdown(cfg: CompareConfig, table: dict[str, Any]) -> str:
    steps = cfg.max_steps or 1000
    world = cfg.checkpoint or "the shipped world"
    lines = [
        "# RL in imagination, scored in reality", "",
        "Reproduce (the commands that filled this table):", "",
        *[f"    {c}" for c in _commands(table) or ["python -m agents.compare"]], "",
        (f"World: {world}. Each training run: {cfg.timesteps} env steps ({cfg.num_envs} envs, "
         f"n_steps {cfg.n_steps}, batch {cfg.batch_size}, {cfg.n_epochs} epochs, lr "
         f"{cfg.learning_rate}, ent_coef {cfg.ent_coef}, training episodes of {cfg.episode_steps} "
         f"steps). Scored in the real Memory Maze {REAL_SIZE}: {cfg.episodes} episode(s) of {steps} "
         f"steps on the mazes of seeds {cfg.eval_seed}..{cfg.eval_seed + cfg.episodes - 1}, "
         f"{'sampled' if cfg.stochastic else 'most likely'} actions. Real return: mean ± std "
         f"(sample std) over seeds of each seed's mean return."), "",
        ("| policy | trained in | seeds | real return | per seed | train env steps/s | "
         "train wall / cell | wall / cell |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        speed = row["train_steps_per_s"]
        train = "-" if row["policy"] == RANDOM else f"{row['train_wall_s']:.0f} s"
        lines.append(
            f"| {row['policy']} | {row['trained_in'] or '-'} | {len(row['seeds'])} | "
            f"{row['mean']:.2f} ± {row['std']:.2f} | "
            f"{', '.join(f'{m:.2f}' for m in row['seed_means'])} | "
            f"{'-' if speed is None else f'{speed:.1f}'} | {train} | "
            f"{row['wall_s']:.0f} s |")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _table_lock(cfg: CompareConfig):
    """Exclusive lock on ``OUT/.table.lock`` while a run reads, merges and writes the table."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / TABLE_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _commands(table: dict[str, Any]) -> list[str]:
    """The commands that filled ``table`` (tables before 2026-12-07 kept one, as ``command``)."""
    return list(table.get("commands") or ([table["command"]] if table.get("command") else []))


def _merge_from_disk(cfg: CompareConfig, table: dict[str, Any]) -> None:
    """Add the cells (and commands) another run sharing ``OUT`` has written since ``table`` was
    read."""
    disk = load_table(cfg)
    for key, cell in disk["cells"].items():
        table["cells"].setdefault(key, cell)
    theirs, mine = _commands(disk), _commands(table)
    table.pop("command", None)
    table["commands"] = [*theirs, *(c for c in mine if c not in theirs)]


def save_table(cfg: CompareConfig, table: dict[str, Any]) -> None:
    """Merge ``table`` with what is on disk and rewrite table.json and table.md atomically."""
    out = Path(cfg.out)
    with _table_lock(cfg):
        _merge_from_disk(cfg, table)
        table["rows"] = summarize(cfg, table["cells"])
        atomic_write_text(out / TABLE_JSON, json.dumps(table, indent=2) + "\n")
        atomic_write_text(out / TABLE_MD, render_markdown(cfg, table))


def run_compare(cfg: CompareConfig, command: str | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Run every cell not yet in ``OUT/table.json``; returns the table (settings, cells, rows)."""
    from tqdm import tqdm

    from world_model.sim.fast_maze import patch_target_contacts

    cfg.validate()
    if "imagination" in cfg.envs:
        from rad_env.worlds import resolve_checkpoint

        resolve_checkpoint(cfg.checkpoint)  # no shipped world: say so before training anything
    table = load_table(cfg)
    if command and command not in _commands(table):
        table["commands"] = [*_commands(table), command]
    patch_target_contacts()  # same frames and rewards, ~3x faster real steps (training and scoring)
    cells = cells_of(cfg)
    with tqdm(total=len(cells), desc="compare", unit="cell", disable=not progress) as bar:
        for algo, env, seed in cells:
            key = cell_key(algo, env, seed)
            bar.set_postfix_str(key)
            with _table_lock(cfg):
                _merge_from_disk(cfg, table)  # a run sharing OUT may have scored it meanwhile
            if key not in table["cells"]:
                table["cells"][key] = run_cell(cfg, algo, env, seed)
                save_table(cfg, table)
                logger.info("%s: real return %.2f (%.0f s)", key,
                            table["cells"][key]["mean_return"], table["cells"][key]["wall_s"])
            bar.update(1)
    save_table(cfg, table)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from world_model.options import add_options

    return add_options(parser, CompareConfig, choices={"algos": ALGOS, "envs": ENVS})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
    cfg = CompareConfig(**values)
    try:
        table = run_compare(cfg, command=shlex.join(["python", "-m", "agents.compare", *argv]))
    except RadError as exc:  # errors meant for the user: no traceback
        print(f"agents.compare: error: {exc}", file=sys.stderr)
        return 2
    print(render_markdown(cfg, table), end="")
    print(f"written: {Path(cfg.out) / TABLE_MD}, {Path(cfg.out) / TABLE_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
