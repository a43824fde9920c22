"""The ``train_state.pt`` file every trainer resumes from: one format, its RNG states, old layouts.

A train state is a flat dict of plain tensors, numbers and strings, written with ``torch.save``
and read with ``torch.load(weights_only=True)`` (nothing is unpickled)::

    format_version  2
    kind            the trainer that wrote it: 'world', 'vae', 'idm' or 'reward'
    step, nonfinite, cpu_seconds, model, optimizer[, ema]   Trainer.state_dict()
    rng             one dict per DDP rank (index = rank), see capture_rng:
                      torch      global CPU generator state      (uint8 tensor)
                      cuda       the run device's CUDA state     (uint8 tensor; CUDA runs only)
                      python     {'version', 'state' (625,) int64, 'gauss_next'}
                      numpy      {'state' (624,) int64, 'pos', 'has_gauss', 'cached_gaussian'}
                      generators {name: state}  the trainer's own torch.Generators

Files written before this format are upgraded on read (:func:`upgrade`):

- the world trainer's (no ``format_version``; ``rng`` a list of per-rank
  ``{'torch', 'generator'[, 'cuda']}``, its one generator the objective's noise);
- the VAE trainer's (``format_version`` 1; ``torch_rng`` and, where CUDA was present,
  ``cuda_rng``: every device's CUDA state);
- the IDM trainer's (no ``format_version``, no RNG state at all).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_model.errors import CheckpointError

FORMAT_VERSION = 2
TRAIN_STATE_FILE = "train_state.pt"
KINDS = ("world", "vae", "idm", "reward")
#: The name the world trainer gives its objective's noise generator (legacy files: 'generator').
WORLD_GENERATOR = "objective"


def capture_rng(device: torch.device,
                generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """This process's random state: python, numpy, torch (and CUDA on a CUDA ``device``), and
    the named ``generators``; plain CPU tensors and numbers only."""
    version, mt, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"state": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device,
                generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Set what :func:`capture_rng` captured (the parts an old file lacks are left as they are)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if "cuda_all" in state and torch.cuda.is_available():  # VAE files of format 1
        torch.cuda.set_rng_state_all(state["cuda_all"])
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()),
                         py["gauss_next"]))
    if "numpy" in state:
        npy = state["numpy"]
        np.random.set_state(("MT19937", npy["state"].numpy().astype(np.uint32), npy["pos"],
                             npy["has_gauss"], npy["cached_gaussian"]))
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved:
            raise CheckpointError(f"the train state holds no state of the '{name}' generator "
                                  f"(it has {sorted(saved)})")
        generator.set_state(saved[name])


def pack(kind: str, trainer_state: Mapping[str, Any], rngs: list[dict[str, Any]]) -> dict[str, Any]:
    """The train state to save: :meth:`Trainer.state_dict` and every rank's RNG, by ``kind``."""
    assert kind in KINDS, kind
    return {"format_version": FORMAT_VERSION, "kind": kind, **trainer_state, "rng": list(rngs)}


def upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` in the current format, whichever trainer and version wrote it."""
    version = state.get("format_version")
    if version == FORMAT_VERSION:
        return state
    if version is not None and version != 1:
        raise CheckpointError(f"train state format_version {version}; this version of rad reads "
                              f"up to {FORMAT_VERSION}")
    rest = {k: v for k, v in state.items()
            if k not in ("format_version", "rng", "torch_rng", "cuda_rng")}
    if version == 1:  # rad train-vae: the global torch RNG (and every CUDA device's)
        rng: dict[str, Any] = {"torch": state["torch_rng"]}
        if "cuda_rng" in state:
            rng["cuda_all"] = state["cuda_rng"]
        return pack("vae", rest, [rng])
    if "rng" in state:  # rad train: per rank, the global torch RNG and the objective's generator
        return pack("world", rest, [
            {"torch": r["torch"], "generators": {WORLD_GENERATOR: r["generator"]},
             **({"cuda": r["cuda"]} if "cuda" in r else {})} for r in state["rng"]])
    return pack("idm", rest, [])  # rad train-idm kept no RNG (its steps draw none)


def read_train_state(path: Path, kind: str) -> dict[str, Any]:
    """Load ``path`` (``weights_only=True``), upgraded to the current format.

    Raises:
        CheckpointError: unreadable, of a newer format, or written by another trainer.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have no common base class
        raise CheckpointError(f"{path}: cannot resume, unreadable train state ({exc})") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: cannot resume, not a train state")
    try:
        state = upgrade(state)
    except KeyError as exc:
        raise CheckpointError(f"{path}: cannot resume, incomplete train state (no {exc})") from exc
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if state["kind"] != kind:
        raise CheckpointError(f"{path}: the train state of a '{state['kind']}' run, not of a "
                              f"'{kind}' run; choose another --out")
    return state
