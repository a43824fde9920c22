"""Where a training run's numbers go: ``metrics.jsonl`` in the run directory and wandb.

wandb runs offline by default (no account, nothing sent); ``'disabled'`` turns it off. A resumed
run truncates ``metrics.jsonl`` to the step it resumes from, so no line is duplicated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from world_model.errors import UserError
from world_model.io import atomic_write_text


class RunLogger:
    """Logs ``{name: float}`` per step (main process only; other ranks log nothing).

    Args:
        jsonl: ``metrics.jsonl`` path, or None for no file.
        wandb_mode: ``'offline'``, ``'online'`` or ``'disabled'``.
        wandb_init: keyword arguments of ``wandb.init`` besides ``mode`` (project, name, ...).
        start_step: lines of ``jsonl`` logged after this step are dropped (resume).
        main: whether this is the process that logs.
    """

    def __init__(self, jsonl: Path | None, wandb_mode: str, wandb_init: dict[str, Any],
                 start_step: int = 0, main: bool = True) -> None:
        self.main, self.path, self.wandb = main, jsonl, None
        if not main:
            return
        if jsonl is not None and jsonl.exists():  # drop lines logged after the resumed step
            kept = [ln for ln in jsonl.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            atomic_write_text(jsonl, "".join(k + "\n" for k in kept))
        if wandb_mode != "disabled":
            try:
                import wandb

                self.wandb = wandb.init(mode=wandb_mode, **wandb_init)
            except Exception as exc:
                raise UserError(f"wandb could not start in mode {wandb_mode!r} ({exc}); "
                                "use --wandb offline or --wandb disabled") from exc

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.main:
            return
        if self.path is not None:
            clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb is not None:
            self.wandb.summary.update(values)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
