"""The tests' one helper module: tiny models, tiny engines and the tiny saved world.

``tiny_config``/``tiny_model``: 8x8 latents, window 3, depth 2, every memory and mode (fast unit
tests of the network and the engine). ``save_tiny_world``: the ``tiny`` preset (64x64 pixel
latents, the configuration the examples use) with random weights and a bank of real clips, as
``conftest.py``'s ``tiny_world`` fixture serves it to the env, vector-env and evaluation tests.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rad_env.bank import BANK_FILE, make_context_bank
from world_model.checkpoint import save_world
from world_model.config import (
    DiffusionConfig,
    LatentConfig,
    ModelConfig,
    RunConfig,
    SamplerConfig,
)
from world_model.configs import resolve_config
from world_model.engine.rollout import RolloutEngine
from world_model.network.model import RADModel
from world_model.world import build_world

MEMORIES = ("lstm", "mamba2", "ttt", "none")
MODES = ("frame", "chunk")
#: The tiny world's context clips (frames) and the DDIM steps the env tests sample with.
CONTEXT = 8
STEPS = 2


def tiny_config(memory: str = "lstm", mode: str = "frame", **over) -> ModelConfig:
    base = {"latent_channels": 3, "latent_size": 8, "patch_size": 2, "width": 32, "depth": 2, "heads": 2,
                "window": 3, "mode": mode, "memory": memory, "memory_hidden": 16, "memory_action_dim": 8,
                "mamba_state": 4, "mamba_heads": 2, "ttt_heads": 2}
    base.update(over)
    return ModelConfig(**base)


def randomize_zeros(model: RADModel, std: float = 0.2) -> RADModel:
    """Re-draw the zero-initialised (adaLN-Zero) weights so every path through the network
    carries signal, as it does after training."""
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=std)
    return model


def tiny_model(memory: str = "lstm", mode: str = "frame", seed: int = 0, randomize: bool = True,
               **over) -> RADModel:
    """A tiny RAD model (see :func:`randomize_zeros` for ``randomize``)."""
    torch.manual_seed(seed)
    model = RADModel(tiny_config(memory, mode, **over))
    if randomize:
        randomize_zeros(model)
    return model.eval()


def tiny_engine(model: RADModel, diffusion: DiffusionConfig | None = None, steps: int = 3,
                eta: float = 0.0) -> RolloutEngine:
    """The rollout engine of ``model`` as a world on pixel latents of its size."""
    config = RunConfig(model=model.cfg, diffusion=diffusion or DiffusionConfig(),
                       latent=LatentConfig(frame_size=model.cfg.latent_size))
    return RolloutEngine(build_world(config, model), SamplerConfig(steps=steps, eta=eta))


def save_tiny_world(run_dir: Path, episodes: Path, termination_bias: float = -20.0,
                    reward_bias: float | None = None) -> Path:
    """The ``tiny`` preset with random weights (zero-initialised ones re-drawn), saved in
    ``run_dir`` with a bank of 6 real clips of :data:`CONTEXT` frames from ``episodes`` (2 with 16
    real follow-up frames). ``termination_bias`` sets the termination logit's bias: -20 never
    ends an episode (like Memory Maze), +20 always; ``reward_bias`` (None: the drawn one) shifts
    the reward head's output."""
    config = resolve_config("tiny")
    torch.manual_seed(0)
    world = build_world(config)
    randomize_zeros(world.model)
    with torch.no_grad():
        world.model.head.bias[1] = termination_bias
        if reward_bias is not None:
            world.model.head.bias[0] = reward_bias
    save_world(run_dir, config, world.model)
    make_context_bank(episodes, run_dir / BANK_FILE, clips=6, context_len=CONTEXT, follow_len=16,
                      follow_clips=2, seed=0)
    return run_dir
