"""Options of ``rad train-idm`` (:func:`world_model.training.idm.train_idm`), torch-free so that
the command line is built from them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from world_model.errors import require


@dataclass(frozen=True)
class IDMTrainConfig:
    """Options of :func:`train_idm` (each one a ``rad train-idm`` flag)."""

    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 64
    """Transitions per step."""
    lr: float = 1e-3
    """AdamW learning rate after a linear warm-up of ``warmup_steps``."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_episodes: int = 48
    """Training episode files held in memory (the first by name; about 12 MB each at 64x64)."""
    val_fraction: float = 0.05
    """Files held out by name (the world trainer's split)."""
    val_pairs: int = 4000
    """Held-out transitions scored at every validation (fixed)."""
    val_every: int = 500
    """Held-out accuracy (and the train state) every this many steps (0: only at the end)."""
    seed: int = 0
    """Seeds the transitions drawn and the weight initialisation."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), or any torch device string."""
    resume: bool = False
    """Continue the run in OUT (a new run when OUT holds no train state)."""

    def __post_init__(self) -> None:
        need = lambda ok, msg: require(ok, msg, "invalid train-idm option")
        need(self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be >= 1")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.max_episodes >= 1, "max_episodes must be >= 1")
        need(0 < self.val_fraction < 1, "val_fraction must be in (0, 1)")
        need(self.val_pairs >= 1 and self.val_every >= 0, "val_pairs >= 1 and val_every >= 0")
