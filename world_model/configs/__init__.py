"""Named run configurations shipped with the package (``rad train --config NAME``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".json"))


def preset_path(name: str) -> Path | None:
    candidate = resources.files(__name__) / f"{name}.json"
    return Path(str(candidate)) if candidate.is_file() else None
