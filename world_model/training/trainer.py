"""The generic training loop: one trainer for every objective ``forward(batch) -> (loss, logs)``.

As DIAMOND's trainer serves its denoiser, reward model and actor-critic, :class:`Trainer` serves
the world model (:mod:`world_model.training.run`) and the VAE (:mod:`world_model.training.vae`).
It owns what every run needs: the learning-rate warm-up, the optimiser step with gradient
clipping, an optional EMA of the weights, a guard against non-finite losses (skipped, and an error
after ``max_nonfinite`` in a row, agreed on by every DDP rank), an optional CPU-time budget, and
the train state that makes a resumed run continue exactly, and a clean stop: a SIGINT (Ctrl-C) or
SIGTERM during :meth:`Trainer.fit` ends the loop after the step under way, whose callbacks run as
the last step's (so the run saves its checkpoint and exits, resumable to the step); a second
signal interrupts at once. What differs between runs (data, validation, checkpoint files,
logging) is passed in as callbacks, called after every step.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from world_model.errors import RadError
from world_model.training.distributed import DistInfo, all_true

logger = logging.getLogger(__name__)

#: ``objective(batch) -> (loss, logs)``: a scalar loss to minimise and detached values to log.
Objective = Callable[[Any], tuple[Tensor, dict[str, Any]]]
#: ``callback(trainer, batch, logs, last)`` after every step; ``logs`` is None for a skipped
#: (non-finite) step, ``last`` is True after the final step of this call of :meth:`Trainer.fit`.
Callback = Callable[["Trainer", Any, "dict[str, float] | None", bool], None]


class TrainingError(RadError):
    """Training cannot continue (e.g. the loss stays non-finite)."""


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up from ``lr / warmup_steps`` at step 0 to ``lr`` at ``warmup_steps``, then
    constant."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return lr


class EMA:
    """Exponential moving average of a model's parameters (buffers copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm start
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1 - d)


class Trainer:
    """Optimises ``model`` through ``objective``, step by step.

    Args:
        model: the module whose parameters ``optimizer`` updates (and the EMA follows).
        objective: ``objective(batch) -> (loss, logs)`` (possibly DDP-wrapped, with its
            random generator bound).
        optimizer: over ``model``'s parameters; its learning rate is set every step.
        lr, warmup_steps: the learning rate after :func:`warmup_lr`'s warm-up.
        grad_clip: clip the global gradient norm to this (0: no clipping).
        ema_decay: keep an :class:`EMA` of ``model`` with this decay (None: no EMA).
        max_nonfinite: a non-finite loss skips the step; this many in a row is a
            :class:`TrainingError` (1: the first one is), whose message ends with ``advice``.
        budget_seconds: stop :meth:`fit` once the run (resumed parts included) has used this
            much CPU time in its steps (``time.process_time``; callbacks are not counted).
        dist: the DDP process group (the non-finite decision is taken by all ranks together).
    """

    def __init__(self, model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, *,
                 lr: float, warmup_steps: int = 0, grad_clip: float = 0.0,
                 ema_decay: float | None = None, max_nonfinite: int = 1,
                 advice: str = "lower the learning rate", budget_seconds: float | None = None,
                 dist: DistInfo | None = None, device: torch.device | None = None) -> None:
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.lr, self.warmup_steps, self.grad_clip = lr, warmup_steps, grad_clip
        self.ema = EMA(model, ema_decay) if ema_decay is not None else None
        self.max_nonfinite, self.advice = max_nonfinite, advice
        self.budget_seconds = budget_seconds
        self.dist = dist or DistInfo()
        self.device = device or torch.device("cpu")
        self.step = 0
        """Optimiser steps taken (skipped non-finite steps included)."""
        self.nonfinite = 0
        """Non-finite losses in a row."""
        self.cpu_seconds = 0.0
        """CPU time of the steps so far, resumed parts included."""
        self.stop_requested = False
        """Set by SIGINT/SIGTERM during :meth:`fit` (or by the caller): stop after this step."""

    # -- one step -------------------------------------------------------------------------------
    def train_step(self, batch: Any) -> dict[str, float] | None:
        """One optimisation step; returns the logs (floats, with ``grad_norm`` and ``lr``), or
        None when a non-finite loss was skipped. Does not advance :attr:`step`."""
        for group in self.optimizer.param_groups:
            group["lr"] = warmup_lr(self.step, self.lr, self.warmup_steps)
        self.model.train()
        loss, logs = self.objective(batch)
        if not all_true(bool(torch.isfinite(loss).item()), self.dist, self.device):
            self.nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            logger.warning("step %d: non-finite loss skipped (%d in a row)", self.step,
                           self.nonfinite)
            if self.nonfinite >= self.max_nonfinite:
                raise TrainingError(f"the loss was non-finite ({float(loss)}) for "
                                    f"{self.nonfinite} consecutive step(s) at step {self.step}; "
                                    f"{self.advice}")
            return None
        self.nonfinite = 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        out = {k: float(v) for k, v in logs.items()}
        if self.grad_clip > 0:
            out["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(),
                                                              self.grad_clip))
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        return out

    # -- the loop -------------------------------------------------------------------------------
    def out_of_budget(self) -> bool:
        return self.budget_seconds is not None and self.cpu_seconds >= self.budget_seconds

    def fit(self, batches: Iterator, steps: int, callbacks: Sequence[Callback] = ()) -> None:
        """Train until :attr:`step` reaches ``steps`` (or the CPU budget is spent), drawing one
        batch per step from ``batches`` (never one more), then calling every callback."""
        mark = time.process_time()
        with self._stop_on_signals():
            while self.step < steps:
                if self.out_of_budget():
                    logger.info("CPU budget of %.1f min reached at step %d",
                                self.budget_seconds / 60.0, self.step)
                    break
                batch = next(batches)
                logs = self.train_step(batch)
                self.step += 1
                now = time.process_time()
                self.cpu_seconds += now - mark
                # every rank stops together (without DDP: this process's own request)
                stop = not all_true(not self.stop_requested, self.dist, self.device)
                last = self.step == steps or self.out_of_budget() or stop
                for callback in callbacks:
                    callback(self, batch, logs, last)
                if stop:
                    logger.info("stopped on request at step %d (checkpoint written; resume with "
                                "--resume)", self.step)
                    break
                mark = time.process_time()  # validation and checkpoints are not budget

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """While :meth:`fit` runs: the first SIGINT/SIGTERM asks for a stop after the current
        step, a second one raises ``KeyboardInterrupt`` at once. Only in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def request_stop(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            logger.warning("%s: stopping after step %d, once its checkpoint is written (signal "
                           "again to stop at once)", signal.Signals(signum).name, self.step + 1)

        for s in previous:
            signal.signal(s, request_stop)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- train state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Step, counters, weights (and EMA), optimiser: plain tensors and numbers for
        ``torch.save`` / ``torch.load(weights_only=True)``. Random generators are the run
        directory's (:mod:`world_model.training.run_dir`)."""
        state: dict[str, Any] = {
            "step": self.step,
            "nonfinite": self.nonfinite,
            "cpu_seconds": self.cpu_seconds,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = {k: v.detach().cpu() for k, v in self.ema.model.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (counters missing from older files are 0)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.nonfinite = int(state.get("nonfinite", 0))
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
