"""PPO in imagination: stable-baselines3 PPO trained inside the learned world, batched.

The policy sees what it would see in the real Memory Maze (``(64, 64, 3) uint8`` frames,
``Discrete(6)`` actions), so the trained agent is scored in the real env unchanged
(:mod:`agents.evaluate`). All ``num_envs`` worlds advance in one batched engine call per step
(:class:`rad_env.vector.RADVecEnv`); every episode starts from real frames.

``--algo recurrent-ppo`` trains sb3-contrib's ``RecurrentPPO("CnnLstmPolicy")`` instead (a policy
with memory, which Memory Maze rewards). ``--env real`` trains the same algorithm with the same
hyperparameters on the REAL Memory Maze 9x9 (``num_envs`` simulators in a ``DummyVecEnv``, the
vectorised contact check installed, episodes of ``episode_steps``): the baseline that imagination
is compared against (:mod:`agents.compare`).

    python -m agents.ppo --checkpoint runs/rad --num-envs 8 --total-timesteps 100000 --out runs/ppo
    python -m agents.evaluate --model runs/ppo/model.zip --episodes 3
    python -m agents.ppo --algo recurrent-ppo --env real --total-timesteps 100000 --out runs/rppo-real
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_model.errors import RadError
from world_model.io import atomic_write, atomic_write_text
from world_model.options import from_args

logger = logging.getLogger(__name__)

#: ``--algo`` values and the stable-baselines3 policy each trains.
ALGOS = {"ppo": "CnnPolicy", "recurrent-ppo": "CnnLstmPolicy"}
#: ``--env`` values: the learned world, or the real Memory Maze it imitates.
ENVS = ("imagination", "real")
#: The real maze of ``--env real`` (the one the shipped world imitates).
REAL_SIZE = "9x9"
MODEL_FILE = "model.zip"
CONFIG_FILE = "ppo_config.json"
#: Steps, wall time and steps/s of the training run (written before the config, which marks a
#: finished run).
STATS_FILE = "train_stats.json"
#: A run in progress: the model (optimizer included) after its last update, and its steps, wall
#: time and config; the same command resumes from them.
PARTIAL_MODEL = "partial.zip"
PARTIAL_STATE = "partial.json"
#: PPOConfig fields that do not change what a run trains (a resumed or finished run may differ).
_NOT_SETTINGS = ("checkpoint_every", "world_compile", "world_processes", "progress", "wandb")
#: One line per rollout in the run directory: steps, wall time, speed, recent episode returns.
METRICS_FILE = "metrics.jsonl"
WANDB_MODES = ("offline", "online", "disabled")


@dataclass(frozen=True)
class PPOConfig:
    """PPO in imagination. Every field is a command-line option of ``python -m agents.ppo``."""

    algo: str = "ppo"
    """ppo (PPO, CnnPolicy) or recurrent-ppo (sb3-contrib RecurrentPPO, CnnLstmPolicy)."""
    env: str = "imagination"
    """imagination (the learned world, RADVecEnv) or real (the real Memory Maze 9x9)."""
    checkpoint: str | None = None
    """World run directory (config.json + model.safetensors + contexts.npz); None: shipped world."""
    num_envs: int = 8
    """Worlds stepped together in one batched engine call."""
    total_timesteps: int = 100_000
    """Environment steps to train for (over all worlds)."""
    sampling_steps: int | None = None
    """DDIM steps per imagined frame; None: the world's own (its sampler.json)."""
    episode_steps: int = 1000
    """Episode length, imagined or real (the real Memory Maze 9x9: 1000)."""
    world_device: str = "cpu"
    """Device of the world model (cpu, cuda, auto); unused with --env real."""
    world_compile: bool = False
    """``torch.compile`` the world's frame pass (rad_env ``compile=True``: about 1.5x the imagined
    steps/s at batch 32 on CPU, docs/env.md); unused with --env real."""
    world_processes: int = 1
    """Worker processes the imagined worlds' rows are split across (rad_env ``processes``: one
    engine each, cpu_count // processes threads; docs/env.md); unused with --env real."""
    policy_device: str = "auto"
    """Device of the PPO networks."""
    n_steps: int = 128
    """Steps per world between updates (rollout buffer: n_steps * num_envs)."""
    batch_size: int = 256
    """Minibatch size; at most n_steps * num_envs."""
    n_epochs: int = 4
    """Epochs over each rollout buffer."""
    learning_rate: float = 2.5e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    seed: int = 0
    """Seeds the envs (row i: seed + i) and PPO."""
    out: str = "runs/ppo-imagination"
    """Directory for model.zip, ppo_config.json and train_stats.json."""
    checkpoint_every: int = 16384
    """Env steps between saves of the run in progress (partial.zip, between two rollouts); the
    same command resumes a run that was cut off from its last save."""
    progress: bool = True
    """Show a progress bar (env steps, steps/s, mean return of the last 100 episodes)."""
    wandb: str = "offline"
    """wandb mode of the run's metrics (offline: no account, nothing sent; online; disabled);
    they go to out/metrics.jsonl in every mode."""

    def validate(self) -> PPOConfig:
        from world_model.errors import UserError

        if self.algo not in ALGOS:
            raise UserError(f"PPOConfig: algo={self.algo!r}: expected one of {list(ALGOS)}")
        if self.env not in ENVS:
            raise UserError(f"PPOConfig: env={self.env!r}: expected one of {list(ENVS)}")
        if min(self.num_envs, self.total_timesteps, self.n_steps, self.batch_size,
               self.sampling_steps or 1, self.episode_steps, self.n_epochs,
               self.checkpoint_every) < 1:
            raise UserError(f"PPOConfig: counts must be >= 1: {self}")
        if self.wandb not in WANDB_MODES:
            raise UserError(f"PPOConfig: wandb={self.wandb!r}: expected one of {list(WANDB_MODES)}")
        if self.batch_size > self.n_steps * self.num_envs:
            raise UserError(f"batch_size={self.batch_size} exceeds the rollout buffer "
                            f"n_steps * num_envs = {self.n_steps * self.num_envs}")
        return self


def make_imagined_vec_env(cfg: PPOConfig, seed: int | None = None) -> Any:
    """``VecMonitor(RADVecEnv(...))``: the batched learned world with episode statistics, rows
    seeded from ``seed`` (default ``cfg.seed``)."""
    from stable_baselines3.common.vec_env import VecMonitor

    from rad_env.vector import RADVecEnv

    env = RADVecEnv(cfg.num_envs, cfg.checkpoint, steps=cfg.sampling_steps,
                    max_steps=cfg.episode_steps, device=cfg.world_device,
                    compile=cfg.world_compile, processes=cfg.world_processes)
    env.seed(cfg.seed if seed is None else seed)
    return VecMonitor(env)


def make_real_vec_env(cfg: PPOConfig, seed: int | None = None) -> Any:
    """``VecMonitor(DummyVecEnv)`` of ``num_envs`` real Memory Maze 9x9 simulators (about 1.3 GiB
    each once reset: a warning says so when the machine has less available), episodes of
    ``episode_steps``, with the vectorised target-contact check (same frames and rewards, ~3x
    faster; :mod:`world_model.sim.fast_maze`). Row ``i`` is seeded with ``seed + i`` (default
    ``cfg.seed + i``) on the first reset, later mazes follow from it."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    from world_model.sim.fast_maze import patch_target_contacts
    from world_model.sim.maze_env import MemoryMazeEnv, warn_if_short_of_memory

    patch_target_contacts()
    warn_if_short_of_memory(cfg.num_envs)  # each real task holds ~1.3 GiB once reset
    env = DummyVecEnv([lambda: MemoryMazeEnv(REAL_SIZE, max_steps=cfg.episode_steps)
                       for _ in range(cfg.num_envs)])
    env.seed(cfg.seed if seed is None else seed)
    return VecMonitor(env)


def make_vec_env(cfg: PPOConfig, seed: int | None = None) -> Any:
    """The training env of ``cfg.env``: the learned world or the real maze."""
    make = make_imagined_vec_env if cfg.env == "imagination" else make_real_vec_env
    return make(cfg, seed)


def algo_class(algo: str) -> Any:
    """The stable-baselines3 class of ``algo`` (``PPO`` or sb3-contrib's ``RecurrentPPO``)."""
    from world_model.errors import UserError

    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if algo == "recurrent-ppo":
        try:
            from sb3_contrib import RecurrentPPO
        except ImportError as exc:
            raise UserError("algo='recurrent-ppo' needs sb3-contrib: pip install sb3-contrib") from exc
        return RecurrentPPO
    raise UserError(f"algo={algo!r}: expected one of {list(ALGOS)}")


def load_model(path: str | os.PathLike, algo: str = "ppo", device: str = "cpu") -> Any:
    """A saved ``model.zip`` of ``algo``."""
    return algo_class(algo).load(str(path), device=device)


def _save_model(model: Any, path: str) -> None:
    with open(path, "wb") as f:  # a file object: stable-baselines3 would add ".zip" to some names
        model.save(f)


def finished_run(cfg: PPOConfig) -> bool:
    """Whether ``cfg.out`` holds a finished run of exactly ``cfg`` (model.zip and an equal
    ppo_config.json, which is written last)."""
    out = Path(cfg.out)
    try:
        saved = json.loads((out / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (out / MODEL_FILE).is_file() and _settings(saved) == _settings(dataclasses.asdict(cfg))


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _NOT_SETTINGS}


def partial_run(cfg: PPOConfig) -> dict[str, Any] | None:
    """``partial.json`` of a run of ``cfg`` cut off in ``cfg.out`` (steps, wall_s, config), if
    its model is there too; None otherwise (a partial run of other settings is ignored)."""
    out = Path(cfg.out)
    try:
        state = json.loads((out / PARTIAL_STATE).read_text())
    except (OSError, ValueError):
        return None
    if not (out / PARTIAL_MODEL).is_file():
        return None
    if _settings(state.get("config", {})) != _settings(dataclasses.asdict(cfg)):
        logger.warning("%s holds a partial run of other settings: starting afresh", out)
        return None
    return state


def save_partial(cfg: PPOConfig, model: Any, wall_s: float) -> None:
    """Write the run in progress (model first, then its state, each atomically)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / PARTIAL_MODEL, lambda tmp: _save_model(model, tmp))
    state = {"steps": int(model.num_timesteps), "wall_s": wall_s, "config": dataclasses.asdict(cfg)}
    atomic_write_text(out / PARTIAL_STATE, json.dumps(state, indent=2) + "\n")
    logger.info("%s: %d of %d steps saved (%s)", out, model.num_timesteps, cfg.total_timesteps,
                PARTIAL_MODEL)


def read_train_stats(out: str | os.PathLike) -> dict[str, Any]:
    """``train_stats.json`` of a run directory ({} if there is none)."""
    try:
        return json.loads((Path(out) / STATS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def train_ppo(cfg: PPOConfig, callback: Any = None) -> Any:
    """Train ``cfg.algo`` on ``cfg.env``; saves ``out/model.zip``, ``out/train_stats.json`` and
    (last, as the mark of a finished run) ``out/ppo_config.json``, each written to a temporary
    file and renamed. Every ``checkpoint_every`` steps the run in progress is saved
    (``partial.zip``, ``partial.json``); a run of the same settings found there is resumed from
    it (its optimizer state included; the episodes under way when it was cut off are restarted,
    and the envs and sampling are reseeded with ``seed + steps done``, so a resumed run is not
    bit-identical to an uninterrupted one).

    Returns:
        The trained ``stable_baselines3.PPO`` or ``sb3_contrib.RecurrentPPO``.
    """
    from stable_baselines3.common.callbacks import CallbackList

    from agents.ppo_callbacks import checkpointer, monitor

    cfg.validate()
    cls = algo_class(cfg.algo)
    partial = partial_run(cfg)
    done, wall_before = (0, 0.0) if partial is None else (int(partial["steps"]), partial["wall_s"])
    # a resumed run draws new episodes: its envs and sampling are seeded from the steps done
    env = make_vec_env(cfg, seed=cfg.seed + done)
    try:
        if partial is None:
            model = cls(ALGOS[cfg.algo], env, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                        n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                        ent_coef=cfg.ent_coef, seed=cfg.seed, device=cfg.policy_device, verbose=0)
        else:
            model = cls.load(str(Path(cfg.out) / PARTIAL_MODEL), env=env, device=cfg.policy_device)
            model.set_random_seed(cfg.seed + done)
            logger.info("%s: resuming at step %d of %d", cfg.out, model.num_timesteps,
                        cfg.total_timesteps)
        start = time.perf_counter()
        callbacks = [
            checkpointer(cfg.checkpoint_every, lambda m: save_partial(
                cfg, m, wall_before + time.perf_counter() - start)),
            monitor(cfg, Path(cfg.out) / METRICS_FILE, done, wall_before, start)]
        callbacks += [callback] if callback else []
        model.learn(total_timesteps=max(cfg.total_timesteps - model.num_timesteps, 0),
                    callback=CallbackList(callbacks), reset_num_timesteps=partial is None)
        elapsed = wall_before + time.perf_counter() - start
    finally:
        env.close()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).unlink(missing_ok=True)  # not finished until the new model is in place
    atomic_write(out / MODEL_FILE, lambda tmp: _save_model(model, tmp))
    episodes = list(model.ep_info_buffer)
    mean_return = float(sum(e["r"] for e in episodes) / len(episodes)) if episodes else None
    stats = {"algo": cfg.algo, "env": cfg.env, "steps": int(model.num_timesteps),
             "wall_s": elapsed, "steps_per_s": float(model.num_timesteps / max(elapsed, 1e-9)),
             "episodes": len(episodes), "train_mean_return": mean_return}
    atomic_write_text(out / STATS_FILE, json.dumps(stats, indent=2) + "\n")
    atomic_write_text(out / CONFIG_FILE, json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    for name in (PARTIAL_MODEL, PARTIAL_STATE):
        (out / name).unlink(missing_ok=True)
    logger.info("%s on %s: %d steps in %.1f s (%.1f steps/s), %d finished episodes, mean return "
                "%s; saved %s", cfg.algo, cfg.env, model.num_timesteps, elapsed,
                stats["steps_per_s"], len(episodes),
                "n/a" if mean_return is None else f"{mean_return:.2f}", out / MODEL_FILE)
    return model


class ModelPolicy:
    """A trained model as an :data:`agents.evaluate.Policy` (observation -> action), carrying a
    recurrent policy's LSTM state from step to step. Call :meth:`reset` at every episode start
    (:func:`agents.evaluate.evaluate` does it for every policy with a ``reset``)."""

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic
        self.recurrent = hasattr(model.policy, "lstm_actor")
        self.state: tuple[np.ndarray, ...] | None = None
        self.episode_start = np.ones((1,), dtype=bool)

    def reset(self) -> None:
        self.state = None
        self.episode_start = np.ones((1,), dtype=bool)

    def __call__(self, obs: np.ndarray) -> int:
        if not self.recurrent:
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
        else:
            action, self.state = self.model.predict(obs, state=self.state,
                                                    episode_start=self.episode_start,
                                                    deterministic=self.deterministic)
            self.episode_start = np.zeros((1,), dtype=bool)
        return int(np.asarray(action).reshape(()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.ppo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from world_model.options import add_options

    return add_options(parser, PPOConfig, choices={"algo": ALGOS, "env": ENVS,
                                                     "wandb": WANDB_MODES})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = from_args(PPOConfig, args)
    try:
        model = train_ppo(cfg)
    except RadError as exc:  # errors meant for the user: no traceback
        print(f"agents.ppo: error: {exc}", file=sys.stderr)
        return 2
    where = "in imagination" if cfg.env == "imagination" else f"in the real Memory Maze {REAL_SIZE}"
    print(f"trained {cfg.algo} for {model.num_timesteps} steps {where}; "
          f"model: {Path(cfg.out) / MODEL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
