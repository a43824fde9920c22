"""Named run configurations shipped with the package (``rad train --config NAME``), and the one
reader of a preset name or JSON file plus ``--set section.field=value`` overrides
(:func:`resolve_config`: ``rad train``, the benchmarks)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from world_model.config import CONFIG_VERSION, RunConfig
from world_model.errors import CheckpointError, UserError


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".json"))


def preset_path(name: str) -> Path | None:
    candidate = resources.files(__name__) / f"{name}.json"
    return Path(str(candidate)) if candidate.is_file() else None


def load_config_file(path: str | Path) -> RunConfig:
    """A user's config file (JSON) with any subset of the sections and fields; the rest default."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    data.setdefault("version", CONFIG_VERSION)
    try:
        return RunConfig.from_dict(data, str(path))
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc


SECTIONS = ("model", "diffusion", "latent", "train")


def resolve_config(name_or_path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """A preset name (``world_model/configs/*.json``: tiny, cpu-small, gpu-base) or a JSON file,
    with ``section.field=value`` overrides applied in order (values are JSON; a bare word is a
    string: ``model.memory=none``)."""
    path = Path(name_or_path) if Path(name_or_path).exists() else preset_path(str(name_or_path))
    if path is None:
        raise UserError(f"--config {str(name_or_path)!r}: no such file or preset "
                        f"(presets: {', '.join(preset_names())})")
    data = load_config_file(path).to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in SECTIONS:
            raise UserError(f"--set {item!r}: expected SECTION.FIELD=VALUE with SECTION one of "
                            f"{', '.join(SECTIONS)}")
        if name not in data[section]:
            raise UserError(f"--set {item!r}: {section} has no field {name!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # bare strings: model.memory=none
        data[section][name] = value
    try:
        return RunConfig.from_dict(data, "config")
    except Exception as exc:
        raise UserError(str(exc)) from exc
