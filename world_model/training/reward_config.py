"""Options of ``rad train-reward`` (:func:`world_model.training.reward_model.train_reward_model`),
torch-free so that the command line is built from them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from world_model.errors import require


@dataclass(frozen=True)
class RewardTrainConfig:
    """Options of :func:`train_reward_model` (each one a ``rad train-reward`` flag)."""

    frames: int = 2
    """Context latents the model reads before each step (``RewardModelConfig.frames``)."""
    width: int = 64
    """Width of the model's first convolution (``RewardModelConfig.width``)."""
    gamma: float = 0.0
    """0: predict the step's own reward event. > 0: predict the reward-to-go ``min(1, sum_k
    gamma^k reward_{t+k})`` instead, a value beyond a planner's horizon (``agents.plan
    --value``); batches are then drawn uniformly (``positive_fraction`` unused, no prior shift)."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 256
    """Steps (context, action, reward) per optimiser step."""
    positive_fraction: float = 0.25
    """Share of every batch drawn from the reward events (they are rare: Memory Maze about 3 in
    1000 steps); the output is corrected back to the data's own event rate when saved."""
    lr: float = 1e-3
    """AdamW learning rate after a linear warm-up of ``warmup_steps``."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_episodes: int = 1000
    """Training episode files read (the first by name; their latents are cached beside the data)."""
    val_fraction: float = 0.05
    """Files held out by name (the world trainer's split)."""
    val_every: int = 500
    """Held-out scores (and the train state) every this many steps (0: only at the end)."""
    seed: int = 0
    """Seeds the steps drawn and the weight initialisation."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), or any torch device string."""
    resume: bool = False
    """Continue the run in OUT (a new run when OUT holds no train state)."""

    def __post_init__(self) -> None:
        need = lambda ok, msg: require(ok, msg, "invalid train-reward option")
        need(self.frames >= 1 and self.width >= 1, "frames and width must be >= 1")
        need(self.steps >= 1 and self.batch_size >= 2, "steps >= 1 and batch_size >= 2")
        need(0 < self.positive_fraction < 1,
             f"positive_fraction must be in (0, 1), got {self.positive_fraction}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0.0 <= self.gamma < 1.0, f"gamma must be in [0, 1), got {self.gamma}")
        need(self.max_episodes >= 1, "max_episodes must be >= 1")
        need(0 < self.val_fraction < 1, "val_fraction must be in (0, 1)")
        need(self.val_every >= 0, "val_every must be >= 0")
