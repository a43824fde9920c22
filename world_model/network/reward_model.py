"""A reward model that reads a step's reward BEFORE the world draws the frame it leads to.

Why a separate model: the world's own reward head reads the frame a step led to. In Memory Maze
the frame after a touch shows the NEXT target's colour, drawn at random, which a world imagining
from its context never draws, so in imagination the head has nothing to read (docs/agents.md,
"Reward in imagination"). This model instead reads the last ``frames`` clean latents of the
context and the action, ``p(reward_t > 0 | latents t-K .. t-1, action_t)``: what a planner needs,
and the same question from real frames (teacher forced) as from imagined ones.

Input ``latents (B, K, C, h, w)`` float (the world's VAE latents; rows with fewer than ``K``
frames so far are left-padded with zeros, as in training at an episode's start) and
``actions (B,)`` int64. Output: ``(B, A)`` logits, one per action (``forward``), so a planner
reads every action's reward from one pass; :meth:`RewardModel.logit` gathers the taken action's.

With ``gamma > 0`` the same network answers a planner's other question, the **reward-to-go**:
``min(1, sum_k gamma^k reward_{t+k})`` from step ``t`` on, under the policy that collected the
data (``rad train-reward --gamma``). A planner adds it beyond its horizon (``agents.plan
--value``), so a plan that ends near a target is worth more than one that ends far from it; a
world's ``reward/`` must hold a step model (``gamma = 0``).

A reward model directory holds ``config.json`` (:class:`RewardModelConfig` with
``"kind": "rad-reward"``) and ``model.safetensors``; ``reward.json`` the figures it was measured
with. A world directory that holds one in ``reward/`` gets it from
:func:`world_model.checkpoint.load`, and the rollout engine reads rewards from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from world_model.errors import UserError, require
from world_model.weights import ModelKind

#: How a reward model directory is saved (:mod:`world_model.weights`).
REWARD = ModelKind("rad-reward", 1, "a reward model", "rad train-reward", "reward.json")


@dataclass(frozen=True)
class RewardModelConfig:
    """The shape of a reward model."""

    latent_channels: int = 8
    """Channels C of the world's latents."""
    latent_size: int = 16
    """Side h = w of the world's latents; must divide by 4."""
    num_actions: int = 6
    """Size of the discrete action set (one logit each)."""
    frames: int = 2
    """K: context latents read (the last K frames before the step)."""
    width: int = 64
    """Channels of the first convolution (the two strided ones have twice as many)."""
    hidden: int = 256
    """Width of the hidden layer before the per-action logits."""
    gamma: float = 0.0
    """0: the output is the probability of the step's own reward event. > 0: it is the
    reward-to-go ``min(1, sum_k gamma^k reward_{t+k})`` (a value for planners, see above)."""

    def __post_init__(self) -> None:
        need = lambda ok, msg: require(ok, msg, "invalid RewardModelConfig")
        need(self.latent_channels >= 1, f"latent_channels must be >= 1, got {self.latent_channels}")
        need(self.latent_size >= 4 and self.latent_size % 4 == 0,
             f"latent_size must be a multiple of 4, got {self.latent_size}")
        need(self.num_actions >= 1, f"num_actions must be >= 1, got {self.num_actions}")
        need(self.frames >= 1, f"frames must be >= 1, got {self.frames}")
        need(self.width >= 1 and self.hidden >= 1, "width and hidden must be >= 1")
        need(0.0 <= self.gamma < 1.0, f"gamma must be in [0, 1), got {self.gamma}")


class RewardModel(nn.Module):
    """``(latents (B, K, C, h, w), ...) -> (B, A)`` reward logits; see the module docstring."""

    def __init__(self, cfg: RewardModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, C, K = cfg.width, cfg.latent_channels, cfg.frames
        self.encoder = nn.Sequential(
            nn.Conv2d(K * C, w, 3, padding=1), nn.GroupNorm(8 if w % 8 == 0 else 1, w), nn.GELU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1), nn.GELU(),
            nn.Flatten())
        side = cfg.latent_size // 4
        self.head = nn.Sequential(nn.Linear(2 * w * side * side, cfg.hidden), nn.GELU(),
                                  nn.Linear(cfg.hidden, cfg.num_actions))

    def forward(self, latents: Tensor) -> Tensor:
        """``latents (B, K, C, h, w)`` -> ``(B, A)`` logits of ``reward > 0`` for each action."""
        cfg = self.cfg
        shape = (cfg.frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
        if latents.dim() != 5 or tuple(latents.shape[1:]) != shape:
            raise UserError(f"reward model: latents must be (B, {', '.join(map(str, shape))}), "
                            f"got {tuple(latents.shape)}")
        x = latents.flatten(1, 2).to(self.head[0].weight.dtype)
        return self.head(self.encoder(x))

    def logit(self, latents: Tensor, actions: Tensor) -> Tensor:
        """``(B,)`` logit of the taken ``actions (B,)`` int64."""
        return self(latents).gather(1, actions.long().view(-1, 1)).squeeze(1)


def save_reward_model(path: str | Path, model: RewardModel, measured: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and ``reward.json`` with ``measured``)."""
    from world_model.weights import save_tagged

    return save_tagged(path, REWARD, model, model.cfg, measured)


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """Load a reward model directory written by :func:`save_reward_model` (``rad train-reward``).

    Raises:
        CheckpointError: a missing or foreign directory, another version, or weights that do
            not fit the config (each named).
    """
    from world_model.weights import load_tagged

    return load_tagged(path, REWARD, RewardModelConfig, RewardModel, device)
