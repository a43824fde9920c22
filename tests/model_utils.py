"""Tiny model configurations shared by the model, training and rollout tests."""

from __future__ import annotations

import torch

from world_model.config import ModelConfig
from world_model.model import RADModel

MEMORIES = ("lstm", "mamba2", "ttt", "none")
MODES = ("frame", "chunk")


def tiny_config(memory: str = "lstm", mode: str = "frame", **over) -> ModelConfig:
    base = {"latent_channels": 3, "latent_size": 8, "patch_size": 2, "width": 32, "depth": 2, "heads": 2,
                "window": 3, "mode": mode, "memory": memory, "memory_hidden": 16, "memory_action_dim": 8,
                "mamba_state": 4, "mamba_heads": 2, "ttt_heads": 2}
    base.update(over)
    return ModelConfig(**base)


def tiny_model(memory: str = "lstm", mode: str = "frame", seed: int = 0, randomize: bool = True,
               **over) -> RADModel:
    """A tiny RAD model. ``randomize`` re-draws the zero-initialised (adaLN-Zero) weights so every
    path through the network carries signal, as it does after training."""
    torch.manual_seed(seed)
    model = RADModel(tiny_config(memory, mode, **over))
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                if p.abs().sum() == 0:
                    p.normal_(std=0.2)
    return model.eval()
