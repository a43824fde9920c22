"""A world: the network, its diffusion process, its frame codec and the config that built them.

:func:`build_world` is the one place a world is put together from a :class:`RunConfig`: training
builds a fresh one, :func:`world_model.checkpoint.load` builds one and loads its weights, tests
and benchmarks wrap a model they made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from world_model.config import RunConfig
from world_model.diffusion.schedule import Diffusion
from world_model.errors import UserError
from world_model.latents import latent_mismatch, make_codec
from world_model.network.model import RADModel


@dataclass
class World:
    """A world model: the network, its objective, its frame codec and its config."""

    config: RunConfig
    model: RADModel
    diffusion: Diffusion
    codec: nn.Module
    reward_model: nn.Module | None = None
    """The world's :class:`~world_model.network.reward_model.RewardModel` (``reward/`` of its
    directory): the engine reads rewards from it, before the frame is drawn. None: from the
    network's reward head, on the drawn frame."""

    def to(self, device) -> World:
        self.model.to(device)
        self.codec.to(device)
        if self.reward_model is not None:
            self.reward_model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def build_world(config: RunConfig, model: RADModel | None = None,
                vae_path: str | Path | None = None) -> World:
    """The world ``config`` describes.

    Args:
        config: the run config (``config.model`` shapes the network, ``config.latent`` the codec).
        model: the network to use (its config must be ``config.model``); None builds a freshly
            initialised ``RADModel``.
        vae_path: the AutoencoderKL directory for ``latent.kind == 'vae'`` (default:
            ``config.latent.vae_path``).
    Raises:
        UserError: the codec's latents do not fit the model (channels or size), or ``model``
            was built from another config.
    """
    if model is not None and model.cfg != config.model:
        raise UserError("build_world: the model was built from another ModelConfig than "
                        "config.model")
    codec = make_codec(config.latent.kind, vae_path or config.latent.vae_path)
    mismatch = latent_mismatch(codec, config.model.latent_channels, config.model.latent_size,
                               config.latent.frame_size)
    if mismatch:
        raise UserError(f"latent.kind={config.latent.kind!r}: {mismatch}; fix the config")
    if model is None:  # after the codec: the order in which the RNG initialises weights
        model = RADModel(config.model, config.diffusion.num_levels)
    return World(config, model, Diffusion(config.diffusion), codec)
