"""Checkpoints: a run directory holds ``config.json`` + ``model.safetensors`` (the EMA weights used
for inference), ``vae/`` when latents come from a VAE, ``train_state.pt`` for resuming
(plain tensors and numbers only, loadable with ``torch.load(weights_only=True)``) and, optionally,
``sampler.json``: the sampler the world was measured best with (its DDIM steps, eta and rho, and
the figures behind the choice), which the env uses unless told otherwise, and the threshold on
the reward head's output that counts as a reward event (``"reward"``: chosen by
``rad reward-check --save-threshold``; 0.5 without one); ``reward/``, a reward model
(``rad train-reward``) the world reads rewards from before it draws a frame.

Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from world_model.config import RunConfig, SamplerConfig
from world_model.devices import resolve_device
from world_model.errors import CheckpointError, UserError
from world_model.io import atomic_write_dir, atomic_write_text
from world_model.weights import load_state_into, save_weights
from world_model.world import World, build_world

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_STATE_FILE = "train_state.pt"
VAE_DIR = "vae"
SAMPLER_FILE = "sampler.json"
REWARD_DIR = "reward"


def save_world(run_dir: str | Path, config: RunConfig, model: nn.Module,
               vae_source: str | Path | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and copy the VAE into ``vae/``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if vae_source is not None and Path(vae_source).resolve() != (run_dir / VAE_DIR).resolve():
        atomic_write_dir(run_dir / VAE_DIR,
                         lambda tmp: shutil.copytree(vae_source, tmp, dirs_exist_ok=True))
    save_weights(run_dir / WEIGHTS_FILE, model.state_dict())
    config.save(run_dir / CONFIG_FILE)
    return run_dir


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> World:
    """Rebuild a trained world from its directory alone (``device``: see
    :func:`world_model.devices.resolve_device`).

    Raises:
        CheckpointError: missing files, an incompatible config version, or weights that do not
            match the config; the message names the file and the mismatch.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such checkpoint directory")
    config = RunConfig.load(run_dir / CONFIG_FILE)
    vae_dir = None
    if config.latent.kind == "vae":
        vae_dir = run_dir / VAE_DIR
        if not vae_dir.is_dir():
            raise CheckpointError(f"{vae_dir}: missing (config.json says latents come from a VAE)")
    try:
        world = build_world(config, vae_path=vae_dir)
    except UserError as exc:
        raise CheckpointError(f"{run_dir}: {exc}") from exc
    load_state_into(world.model, run_dir / WEIGHTS_FILE)
    world.model.eval().requires_grad_(False)
    if (run_dir / REWARD_DIR).is_dir():
        world.reward_model = load_world_reward_model(run_dir / REWARD_DIR, config)
    return world.to(resolve_device(device))


def load_world_reward_model(path: Path, config: RunConfig) -> nn.Module:
    """The reward model in ``path``, checked to read the latents of the world ``config`` builds.

    Raises:
        CheckpointError: not a reward model, or one made for other latents or actions (named).
    """
    from world_model.network.reward_model import load_reward_model

    reward = load_reward_model(path)
    if reward.cfg.gamma > 0:
        raise CheckpointError(
            f"{path}: a reward-to-go model (gamma {reward.cfg.gamma}), which planners read "
            f"beyond their horizon (`python -m agents.plan --value`); a world's {REWARD_DIR}/ "
            f"must hold a step reward model (`rad train-reward` without --gamma)")
    check_reward_model_fits(path, reward, config)
    return reward


def check_reward_model_fits(path: Path, reward: nn.Module, config: RunConfig) -> None:
    """Refuse a reward (or reward-to-go) model made for other latents or actions than the
    world ``config`` builds (CheckpointError naming both)."""
    m, r = config.model, reward.cfg
    if config.latent.kind != "vae" or (r.latent_channels, r.latent_size, r.num_actions) != (
            m.latent_channels, m.latent_size, m.num_actions):
        raise CheckpointError(
            f"{path}: a reward model for {r.latent_channels}x{r.latent_size}x{r.latent_size} "
            f"latents and {r.num_actions} actions, but the world has {config.latent.kind!r} "
            f"latents of {m.latent_channels}x{m.latent_size}x{m.latent_size} and "
            f"{m.num_actions} actions; retrain it with `rad train-reward --world` this world")


#: Reward-head output at or above which a step counts as a reward event, without ``sampler.json``.
DEFAULT_REWARD_THRESHOLD = 0.5


def _read_sampler_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid sampler file ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a valid sampler file (not a JSON object)")
    return data


def _update_sampler_file(run_dir: str | Path, **sections: Any) -> Path:
    """Replace top-level ``sections`` of ``sampler.json``, keeping the others."""
    path = Path(run_dir) / SAMPLER_FILE
    data = _read_sampler_file(path) if path.is_file() else {}
    data.update(sections)
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def save_sampler(run_dir: str | Path, sampler: SamplerConfig,
                 measured: dict[str, Any] | None = None) -> Path:
    """Write ``sampler.json``'s sampler: ``sampler`` as the world's default, with the figures
    behind it (a reward threshold already in the file is kept)."""
    return _update_sampler_file(run_dir, sampler=asdict(sampler), measured=measured or {})


def save_reward_threshold(run_dir: str | Path, threshold: float,
                          measured: dict[str, Any] | None = None) -> Path:
    """Write the world's reward threshold into ``sampler.json`` (the sampler is kept)."""
    if not 0.0 < float(threshold) < 1.0:
        raise UserError(f"reward threshold {threshold!r}: expected a number in (0, 1)")
    return _update_sampler_file(run_dir, reward={"threshold": float(threshold),
                                                 "measured": measured or {}})


def load_reward_threshold(run_dir: str | Path) -> float:
    """The world's reward threshold from ``sampler.json``; :data:`DEFAULT_REWARD_THRESHOLD`
    without one.

    Raises:
        CheckpointError: an unreadable file or a threshold outside (0, 1).
    """
    path = Path(run_dir) / SAMPLER_FILE
    if not path.is_file():
        return DEFAULT_REWARD_THRESHOLD
    reward = _read_sampler_file(path).get("reward")
    if reward is None:
        return DEFAULT_REWARD_THRESHOLD
    value = reward.get("threshold") if isinstance(reward, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise CheckpointError(f"{path}: reward.threshold {value!r} is not a number in (0, 1)")
    return float(value)


def load_sampler(run_dir: str | Path) -> SamplerConfig | None:
    """The world's recommended sampler from ``sampler.json``; None when the file (or its
    ``sampler`` section) is absent.

    Raises:
        CheckpointError: an unreadable file or unknown fields (named).
    """
    path = Path(run_dir) / SAMPLER_FILE
    if not path.is_file():
        return None
    data = _read_sampler_file(path)
    if "sampler" not in data:  # a file holding only the reward threshold
        return None
    try:
        raw = data["sampler"]
        known = {f.name for f in fields(SamplerConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; expected some of {sorted(known)}")
        return SamplerConfig(**raw).validate()
    except (OSError, ValueError, KeyError, TypeError, UserError) as exc:
        raise CheckpointError(f"{path}: not a valid sampler file ({exc})") from exc
