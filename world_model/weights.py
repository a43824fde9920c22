"""Weights files: a module's state dict as safetensors, written atomically, read back with an error
that names the file and every mismatch. Shared by worlds, VAEs, the IDM and the reward model;
nothing unpickles. Small models (the IDM judge, the reward model) are saved as a kind-tagged
``config.json`` beside their weights (:class:`ModelKind`, :func:`save_tagged`,
:func:`load_tagged`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from world_model.errors import CheckpointError, UserError
from world_model.io import atomic_write, atomic_write_text


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def load_state_into(module: nn.Module, path: Path) -> None:
    """Load safetensors weights with an error naming the file and every mismatch."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing weights file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({exc})") from exc
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s), e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"shape mismatch: {shapes[:3]}")
        raise CheckpointError(f"{path}: weights do not match config.json: " + "; ".join(parts))
    module.load_state_dict(state)


# -- small models saved as a kind-tagged config.json + model.safetensors -------------------------
@dataclass(frozen=True)
class ModelKind:
    """How one kind of small model (the IDM judge, the reward model) is saved: ``config.json``
    holds ``kind``, ``version`` and its config dataclass's fields, ``model.safetensors`` its
    weights, ``measured_file`` what its trainer measured."""

    kind: str
    """The ``kind`` tag in config.json (e.g. ``"rad-idm"``)."""
    version: int
    """The format version this code reads and writes."""
    what: str
    """Its name in errors (``"an inverse-dynamics model"``)."""
    made_by: str
    """The command that writes it, named in errors (``"rad train-idm"``)."""
    measured_file: str
    """File beside the weights with the trainer's scores (``"idm.json"``)."""
    strict: bool = True
    """Refuse config fields the dataclass does not have (else ignore them)."""


CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


def save_tagged(path: str | Path, kind: ModelKind, model: nn.Module, config: Any,
                measured: dict | None = None) -> Path:
    """Write ``config.json`` (``kind``, ``version``, the fields of ``config``) and
    ``model.safetensors`` (and ``kind.measured_file`` with ``measured``) into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_weights(path / WEIGHTS_FILE, model.state_dict())
    body = {"kind": kind.kind, "version": kind.version, **dataclasses.asdict(config)}
    atomic_write_text(path / CONFIG_FILE, json.dumps(body, indent=2) + "\n")
    if measured is not None:
        atomic_write_text(path / kind.measured_file, json.dumps(measured, indent=2) + "\n")
    return path


def load_tagged_config(path: str | Path, kind: ModelKind, cls: type[T]) -> T:
    """The config dataclass ``cls`` of the ``kind`` directory ``path``.

    Raises:
        CheckpointError: no config.json, invalid JSON, another kind (a world checkpoint is named
            as such), another version, unknown fields (``kind.strict``) or values the config
            refuses; each named with the file.
    """
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: not {kind.what} directory (no {CONFIG_FILE}); train one "
                              f"with `{kind.made_by}`")
    try:
        raw = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("kind") != kind.kind:
        found = "a world checkpoint" if isinstance(raw, dict) and "model" in raw else "not one"
        raise CheckpointError(f"{path}: {found}, not {kind.what} (`{kind.made_by}` writes those)")
    if raw.get("version") != kind.version:
        raise CheckpointError(f"{cfg_file}: {kind.what} format version {raw.get('version')!r} is "
                              f"not supported (this rad-env reads {kind.version})")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known - {"kind", "version"})
    if unknown and kind.strict:
        raise CheckpointError(f"{cfg_file}: unknown field(s) {unknown}")
    try:
        return cls(**{k: v for k, v in raw.items() if k in known})
    except (TypeError, UserError) as exc:
        raise CheckpointError(f"{cfg_file}: {exc}") from exc


def load_tagged(path: str | Path, kind: ModelKind, cls: type, build: Callable[[Any], M],
                device: str | torch.device = "cpu") -> M:
    """The model of the ``kind`` directory ``path``: its config (:func:`load_tagged_config`),
    ``build(config)``, its weights (:func:`load_state_into`), in eval mode without gradients on
    ``device``."""
    model = build(load_tagged_config(path, kind, cls))
    load_state_into(model, Path(path) / WEIGHTS_FILE)
    return model.eval().requires_grad_(False).to(device)
