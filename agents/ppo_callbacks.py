"""The callbacks of a PPO training run (:func:`agents.ppo.train_ppo`): the periodic save of the run
in progress, and its progress bar and metrics (``metrics.jsonl``, wandb offline by default)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from agents.ppo import PPOConfig


def checkpointer(every: int, save: Callable[[Any], None]) -> Any:
    """A stable-baselines3 callback that calls ``save(model)`` between two rollouts (after an
    update, before the next collection) every ``every`` env steps."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpointer(BaseCallback):
        def _on_training_start(self) -> None:
            self.last = self.num_timesteps

        def _on_rollout_start(self) -> None:
            if self.num_timesteps - self.last >= every:
                save(self.model)
                self.last = self.num_timesteps

        def _on_step(self) -> bool:
            return True

    return Checkpointer()


def monitor(cfg: PPOConfig, metrics: Path, done: int, wall_before: float, start: float) -> Any:
    """A stable-baselines3 callback that shows a progress bar over env steps (from ``done``, the
    steps of a resumed run) and logs one line per rollout (steps, wall time, steps/s, mean return
    and length of the last 100 finished episodes) to ``metrics`` and wandb (``cfg.wandb``, or
    ``WANDB_MODE``); ``wall_before`` is the wall time of the run before ``start``."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    from world_model.training.logger import RunLogger

    class Monitor(BaseCallback):
        def _on_training_start(self) -> None:
            metrics.parent.mkdir(parents=True, exist_ok=True)
            self.run_logger = RunLogger(
                metrics, os.environ.get("WANDB_MODE", cfg.wandb),
                {"project": "rad-env", "name": f"{cfg.algo}-{cfg.env}-seed{cfg.seed}",
                 "dir": str(metrics.parent), "config": dataclasses.asdict(cfg)}, start_step=done)
            self.bar = tqdm(total=cfg.total_timesteps, initial=done, unit="step",
                            desc=f"{cfg.algo} in {cfg.env}", disable=not cfg.progress)
            self.last = self.num_timesteps

        def _on_step(self) -> bool:
            self.bar.update(self.num_timesteps - self.last)
            self.last = self.num_timesteps
            return True

        def _on_rollout_end(self) -> None:
            wall = wall_before + time.perf_counter() - start
            values = {"wall_s": wall,
                      "steps_per_s": (self.num_timesteps - done) / max(wall - wall_before, 1e-9)}
            episodes = list(self.model.ep_info_buffer)
            if episodes:
                values["ep_return_mean"] = float(np.mean([e["r"] for e in episodes]))
                values["ep_len_mean"] = float(np.mean([e["l"] for e in episodes]))
                self.bar.set_postfix(ret=f"{values['ep_return_mean']:.2f}", refresh=False)
            self.run_logger.log(int(self.num_timesteps), values)

        def _on_training_end(self) -> None:
            self.bar.close()
            self.run_logger.close()

    return Monitor()
