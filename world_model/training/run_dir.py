"""A trainer's run directory: opened new or resumed, checkpointed atomically, resumed exactly.

One class for ``rad train``, ``rad train-vae`` and ``rad train-idm``; each trainer keeps only
what is its own (its config checks, its model files, its logs). :class:`RunDir`:

- **opens** the directory: a directory holding a run (``train_state.pt``) is refused without
  ``--resume`` (with ``require_empty``, any non-empty directory is), and ``--resume`` where there
  is no train state starts a new run (with a warning);
- **saves** a checkpoint: the trainer's model files first (its ``write_model``, e.g.
  ``config.json`` + ``model.safetensors`` written atomically with :mod:`world_model.io`), the
  train state last, so a directory with a train state always holds a complete model whenever the
  process is killed. The train state (:mod:`.train_state`) holds the :class:`Trainer`'s state
  and every DDP rank's RNG states (python, numpy, torch, CUDA and the trainer's generators);
- **resumes**: reads the train state (``weights_only=True``, older layouts upgraded) and restores
  the trainer and this rank's RNG, so the run continues with the same step and the same draws;
- names the directories of kept snapshots (``steps/NNNNNN/``).

Under DDP every rank reads the state, :meth:`RunDir.save` must be called on every rank (the RNG
states are gathered) and only the main process writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from world_model.errors import CheckpointError, UserError
from world_model.io import atomic_write, atomic_write_text
from world_model.training import distributed as D
from world_model.training.distributed import DistInfo
from world_model.training.train_state import (
    TRAIN_STATE_FILE,
    capture_rng,
    pack,
    read_train_state,
    restore_rng,
)

if TYPE_CHECKING:
    from world_model.training.trainer import Trainer

logger = logging.getLogger(__name__)

#: Kept snapshots: ``RUN/steps/<step, 6 digits>/``.
SNAPSHOT_DIR = "steps"


class RunDir:
    """The run directory ``path`` of a ``kind`` trainer ('world', 'vae', 'idm' or 'reward').

    Args:
        path: the directory (created by :meth:`create`, not here).
        kind: the trainer, recorded in the train state and checked on resume.
        resume: ``--resume``: continue the run in ``path`` if it holds one.
        require_empty: refuse any non-empty ``path`` without ``resume`` (not only one holding a
            train state).
        device: the run's device (its CUDA RNG is saved).
        dist: the DDP process group.

    Raises:
        UserError: ``path`` holds a run (or, with ``require_empty``, anything) and ``resume`` is
            not set.
    """

    def __init__(self, path: str | Path, kind: str, *, resume: bool, require_empty: bool = False,
                 device: torch.device | None = None, dist: DistInfo | None = None) -> None:
        self.path, self.kind = Path(path), kind
        self.device = device or torch.device("cpu")
        self.dist = dist or DistInfo()
        has_state = self.state_file.is_file()
        if not resume:
            if require_empty and self.path.exists() and any(self.path.iterdir()):
                raise UserError(f"{self.path}: exists and is not empty; pass --resume to continue "
                                "it or choose another --out")
            if has_state:
                raise UserError(f"{self.path} already holds a run ({TRAIN_STATE_FILE}); pass "
                                "--resume to continue it or choose another --out")
        elif not has_state:
            logger.warning("%s has no %s: starting a new run", self.path, TRAIN_STATE_FILE)
        self.resuming = resume and has_state
        """Whether this run continues the one saved in the directory."""

    @property
    def state_file(self) -> Path:
        return self.path / TRAIN_STATE_FILE

    def create(self) -> Path:
        """Make the directory (main process only; every rank waits for it)."""
        if self.dist.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
        D.barrier(self.dist)
        return self.path

    # -- resume ------------------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        """The saved train state (current format, checked to be this kind of run's).

        Raises:
            CheckpointError: unreadable, of a newer format, or another trainer's.
        """
        return read_train_state(self.state_file, self.kind)

    def restore(self, state: Mapping[str, Any], trainer: Trainer,
                generators: Mapping[str, torch.Generator] | None = None) -> int:
        """Load ``state`` (:meth:`read_state`) into ``trainer`` and set this rank's RNG states
        and ``generators``; returns the step the run continues from.

        Raises:
            CheckpointError: a state that does not fit the trainer's model or optimiser.
        """
        try:
            trainer.load_state_dict(dict(state))
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.state_file}: unreadable or incompatible training state "
                                  f"({exc})") from exc
        rngs = state["rng"]
        if rngs:  # each rank its own stream (a run resumed on more ranks: rank 0's for the new)
            rank = self.dist.rank if self.dist.rank < len(rngs) else 0
            restore_rng(rngs[rank], self.device, generators)
        logger.info("resumed %s at step %d", self.path, trainer.step)
        return trainer.step

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self, trainer: Trainer, generators: Mapping[str, torch.Generator] | None = None,
             write_model: Callable[[], None] | None = None,
             rank_state: Mapping[str, Any] | None = None) -> None:
        """Write the checkpoint: ``write_model()`` (the model files, main process), then the train
        state (the trainer's, every rank's RNG and ``rank_state``: tensors, lists, numbers),
        atomically. Call it on every rank."""
        rngs = [capture_rng(self.device, generators)]
        ranks = [_to_cpu(dict(rank_state or {}))]
        if self.dist.enabled:  # every rank's RNG, so each resumes its own stream
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, _to_cpu(rngs[0]))
            rngs = gathered
            gathered = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, ranks[0])
            ranks = gathered
        if not self.dist.is_main:
            return
        if write_model is not None:
            write_model()
        state = pack(self.kind, trainer.state_dict(), rngs)
        if any(ranks):
            state["rank_state"] = ranks
        atomic_write(self.state_file, lambda tmp: torch.save(state, tmp))

    def rank_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """This rank's ``rank_state`` as :meth:`save` wrote it (empty when none was saved)."""
        ranks = state.get("rank_state") or []
        if not ranks:
            return {}
        return dict(ranks[self.dist.rank if self.dist.rank < len(ranks) else 0])

    def snapshot_dir(self, step: int) -> Path:
        """Where a copy of the model at ``step`` is kept: ``RUN/steps/NNNNNN/``."""
        return self.path / SNAPSHOT_DIR / f"{step:06d}"


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


#: The options of a small model's run and the model's shape (IDM, reward model), beside its state.
TRAIN_CONFIG_FILE = "train_config.json"


def write_train_config(out: Path, config: Any, key: str, shape: Any) -> None:
    """Write ``train_config.json``: the trainer's ``config`` under ``"train"`` and the model's
    ``shape`` (a config dataclass) under ``key``, for :func:`check_resume_shape`."""
    atomic_write_text(out / TRAIN_CONFIG_FILE, json.dumps(
        {"train": dataclasses.asdict(config), key: dataclasses.asdict(shape)}, indent=2))


def check_resume_shape(out: Path, key: str, shape: Any, what: str) -> None:
    """Refuse ``--resume`` of the run in ``out`` when the model ``shape`` saved under ``key`` of
    its ``train_config.json`` is not ``shape`` (``what`` names the model in the error).

    Raises:
        CheckpointError: the file is missing or unreadable.
        UserError: another shape.
    """
    path = out / TRAIN_CONFIG_FILE
    try:
        saved = json.loads(path.read_text())[key]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot check that --resume matches ({exc})") from exc
    if saved != json.loads(json.dumps(dataclasses.asdict(shape))):
        raise UserError(f"{out}: --resume with another {what} (saved {saved})")
