"""RAD world model: a diffusion transformer over per-frame latents with recurrent memory.

Importing this package is light (no torch). Heavy pieces load on first use:
``world_model.load(run_dir)`` rebuilds a trained model from its directory.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load": ("world_model.checkpoint", "load"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'world_model' has no attribute {name!r}")
