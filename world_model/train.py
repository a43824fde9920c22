"""Training loop for RAD world models (diffusion forcing with hidden-state pre-fetch).

Generic over the objective (``forward(batch) -> (loss, logs)``): EMA weights, gradient clipping,
a non-finite-loss guard, periodic validation, atomic checkpoints (``config.json`` +
``model.safetensors`` with the EMA weights, and ``train_state.pt`` for resuming), exact resume
(step, optimiser, RNG, data position), wandb logging (offline by default) plus ``metrics.jsonl``,
and DistributedDataParallel under ``torchrun``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from world_model import distributed as D
from world_model.checkpoint import CONFIG_FILE, TRAIN_STATE_FILE, WEIGHTS_FILE, save_world
from world_model.config import RunConfig
from world_model.diffusion import Diffusion
from world_model.errors import RadError, UserError
from world_model.io import atomic_write
from world_model.latents import latent_mismatch, make_codec
from world_model.model import RADModel
from world_model.objective import Batch, WorldModelObjective

logger = logging.getLogger(__name__)


class TrainingError(RadError):
    """Training cannot continue (e.g. the loss stays non-finite)."""


@dataclass(frozen=True)
class TrainOptions:
    """How to run (not what to train: that is the RunConfig)."""

    device: str = "auto"
    wandb: str = "offline"
    """wandb mode: 'offline' (default, no account), 'online' or 'disabled'."""
    resume: bool = False
    progress: bool = True
    run_name: str | None = None
    compile: bool = False
    """Run the training pass through ``torch.compile`` (measured here: 1.5x faster steps on the
    CPU after a compilation of several minutes at the first step; pays on long runs only)."""
    keep_every: int = 0
    """Also keep a copy of the EMA world every this many steps in ``RUN/steps/NNNNNN/``
    (config.json + model.safetensors, no train state), so any step can be evaluated or shipped
    later (0: never)."""
    budget_minutes: float | None = None
    """Stop (with a checkpoint) once the run has used this much CPU time in all, resumed parts
    included (``time.process_time`` of the training process: all its threads, not the data
    workers). Lets recipes be compared at equal CPU budget however loaded the machine is."""


def build_world_parts(config: RunConfig, device: torch.device):
    """Model, diffusion and codec for a run config (the codec from ``config.latent``)."""
    codec = make_codec(config.latent.kind, config.latent.vae_path).to(device)
    mismatch = latent_mismatch(codec, config.model.latent_channels, config.model.latent_size,
                               config.latent.frame_size)
    if mismatch:
        raise UserError(f"latent.kind={config.latent.kind!r}: {mismatch}; fix the config")
    model = RADModel(config.model, config.diffusion.num_levels).to(device)
    return model, Diffusion(config.diffusion), codec


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


def _lr_at(step: int, cfg) -> float:
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """One training run in ``run_dir``. ``run()`` trains to ``config.train.steps``."""

    def __init__(self, config: RunConfig, data_dir: str | Path, run_dir: str | Path,
                 options: TrainOptions = TrainOptions()) -> None:
        self.config, self.options = config, options
        self.data_dir, self.run_dir = Path(data_dir), Path(run_dir)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = D.pick_device(options.device, local_rank)
        self.dist = D.init_distributed(self.device)
        tc = config.train
        torch.manual_seed(tc.seed + self.dist.rank)
        self.model, self.diffusion, self.codec = build_world_parts(config, self.device)
        self.objective = WorldModelObjective(self.model, self.diffusion, self.codec, tc.detach_every,
                                             tc.precision)
        if options.compile:
            self.objective.denoise_pass = torch.compile(self.objective.denoise_pass)
        self.ema = EMA(self.model, tc.ema_decay)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr,
                                           weight_decay=tc.weight_decay, betas=(0.9, 0.99))
        self.generator = torch.Generator(device=self.device).manual_seed(tc.seed * 1000 + self.dist.rank)
        self.step = 0
        self.nonfinite = 0
        self.cpu_seconds = 0.0  # CPU time of this run so far, resumed parts included
        self._prepare_run_dir()
        self.ddp = (DistributedDataParallel(self.objective, device_ids=None if self.device.type == "cpu"
                                            else [self.device.index])
                    if self.dist.enabled else self.objective)

    # -- run directory -----------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        state_file = self.run_dir / TRAIN_STATE_FILE
        if state_file.exists():
            if not self.options.resume:
                raise UserError(f"{self.run_dir} already holds a run ({TRAIN_STATE_FILE}); "
                                "pass --resume to continue it or choose another --out")
            saved = RunConfig.load(self.run_dir / CONFIG_FILE)
            if saved.model != self.config.model or saved.diffusion != self.config.diffusion:
                raise UserError(f"{self.run_dir}: the model/diffusion config differs from the run "
                                "being resumed; resume with the same --config")
            self._load_train_state(state_file)
        elif self.options.resume:
            logger.warning("%s has no %s: starting a new run", self.run_dir, TRAIN_STATE_FILE)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        D.barrier(self.dist)

    def _load_train_state(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"{path}: cannot resume, unreadable train state ({exc})") from exc
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.nonfinite = int(state.get("nonfinite", 0))
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
        rng = state["rng"][self.dist.rank] if self.dist.rank < len(state["rng"]) else state["rng"][0]
        _set_rng_state(rng, self.generator, self.device)
        logger.info("resumed %s at step %d", self.run_dir, self.step)

    def save_checkpoint(self) -> None:
        """Atomically write the EMA world (config.json + model.safetensors) and the train state."""
        rngs = [_rng_state(self.generator, self.device)]
        if self.dist.enabled:  # every rank's RNG, so each resumes its own stream
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, {k: v.cpu() for k, v in rngs[0].items()})
            rngs = gathered
        if not self.dist.is_main:
            return
        state = {
            "step": self.step,
            "nonfinite": self.nonfinite,
            "cpu_seconds": self.cpu_seconds,
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rngs,
        }
        # The world first, the train state last: a run directory with a train state always holds
        # a complete world, whenever the process is killed.
        save_world(self.run_dir, self.config, self.ema.model, vae_source=self._vae_source())
        atomic_write(self.run_dir / TRAIN_STATE_FILE, lambda tmp: torch.save(state, tmp))

    def _vae_source(self) -> str | None:
        return self.config.latent.vae_path if self.config.latent.kind == "vae" else None

    def keep_world(self) -> Path:
        """Copy the EMA world as it is now into ``RUN/steps/<step>/`` (main process only)."""
        path = self.run_dir / "steps" / f"{self.step:06d}"
        if self.dist.is_main:
            save_world(path, self.config, self.ema.model, vae_source=self._vae_source())
            meta = {"step": self.step, "cpu_minutes": self.cpu_seconds / 60.0}
            atomic_write(path / "train_info.json",
                         lambda tmp: Path(tmp).write_text(json.dumps(meta) + "\n"))
        return path

    # -- data ---------------------------------------------------------------------------------------
    def _loaders(self):
        from world_model.data.dataset import make_dataloaders

        tc = self.config.train
        return make_dataloaders(
            self.data_dir, seq_len=tc.seq_len, batch_size=tc.batch_size,
            val_fraction=tc.val_fraction, num_workers=tc.num_workers, seed=tc.seed,
            rank=self.dist.rank, world_size=self.dist.world_size, start_step=self.step,
            val_batches=tc.val_batches,
        )

    # -- loop ---------------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float] | None:
        """One optimisation step; returns logs, or None when a non-finite loss was skipped."""
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(self.step, self.config.train)
        self.model.train()
        loss, logs = self.ddp(batch, self.generator)
        finite = D.all_true(bool(torch.isfinite(loss).item()), self.dist, self.device)
        if not finite:
            self.nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            logger.warning("step %d: non-finite loss skipped (%d in a row)", self.step, self.nonfinite)
            if self.nonfinite >= self.config.train.max_nonfinite:
                raise TrainingError(
                    f"the loss was non-finite for {self.nonfinite} consecutive steps at step "
                    f"{self.step}; lower train.lr or check the data (last good checkpoint is in "
                    f"{self.run_dir})")
            return None
        self.nonfinite = 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        out = {k: float(v) for k, v in logs.items()}
        out["grad_norm"] = float(grad_norm)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        return out

    @torch.no_grad()
    def validate(self, val_loader) -> dict[str, float]:
        """Mean losses of the EMA model over ``val_batches`` batches at fixed noise (seeded)."""
        objective = WorldModelObjective(self.ema.model, self.diffusion, self.codec,
                                        precision=self.config.train.precision)
        g = torch.Generator(device=self.device).manual_seed(12345)
        totals: dict[str, float] = {}
        n = 0
        for i, raw in enumerate(val_loader):
            if i >= self.config.train.val_batches:
                break
            _, logs = objective(Batch.from_dict(raw, self.device), g)
            for k, v in logs.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            n += 1
        return {f"val/{k.split('/', 1)[-1]}": v / max(n, 1) for k, v in totals.items()}

    def run(self) -> dict[str, float]:
        tc = self.config.train
        train_loader, val_loader = self._loaders()
        logger_ = MetricsLogger(self.run_dir, self.config, self.options, self.dist.is_main, self.step)
        from tqdm.auto import tqdm

        bar = tqdm(total=tc.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.options.progress and self.dist.is_main), dynamic_ncols=True)
        it: Iterator = iter(train_loader)
        last: dict[str, float] = {}
        t0, frames = time.perf_counter(), 0
        budget = None if self.options.budget_minutes is None else 60.0 * self.options.budget_minutes
        cpu_mark = time.process_time()
        try:
            while self.step < tc.steps:
                if budget is not None and self.cpu_seconds >= budget:
                    logger.info("CPU budget of %.1f min reached at step %d",
                                self.options.budget_minutes, self.step)
                    break
                batch = Batch.from_dict(next(it), self.device)
                logs = self.train_step(batch)
                self.step += 1
                now = time.process_time()
                self.cpu_seconds += now - cpu_mark
                cpu_mark = now
                out_of_budget = budget is not None and self.cpu_seconds >= budget
                frames += batch.frames.shape[0] * batch.frames.shape[1] * self.dist.world_size
                bar.update(1)
                last_step = self.step == tc.steps or out_of_budget
                if logs is not None and (self.step % tc.log_every == 0 or last_step):
                    dt = time.perf_counter() - t0
                    logs["frames_per_s"] = frames / max(dt, 1e-9)
                    logs["cpu_minutes"] = self.cpu_seconds / 60.0
                    t0, frames = time.perf_counter(), 0
                    last.update(logs)
                    logger_.log(self.step, logs)
                    bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
                if val_loader is not None and (self.step % tc.val_every == 0 or last_step):
                    val = self.validate(val_loader)
                    last.update(val)
                    logger_.log(self.step, val)
                if self.step % tc.checkpoint_every == 0 or last_step:
                    self.save_checkpoint()
                if self.options.keep_every and self.step % self.options.keep_every == 0:
                    self.keep_world()
                cpu_mark = time.process_time()  # validation and checkpoints are not budget
        finally:
            bar.close()
            logger_.close()
        D.shutdown(self.dist)
        last["step"] = float(self.step)
        last["cpu_minutes"] = self.cpu_seconds / 60.0
        return last


class MetricsLogger:
    """``metrics.jsonl`` in the run directory (truncated to the resumed step) plus wandb."""

    def __init__(self, run_dir: Path, config: RunConfig, options: TrainOptions, main: bool,
                 start_step: int) -> None:
        self.main = main
        self.path = run_dir / "metrics.jsonl"
        self.wandb = None
        if not main:
            return
        if self.path.exists():  # drop lines logged after the checkpoint we resume from
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))
        mode = os.environ.get("WANDB_MODE", options.wandb)
        if mode != "disabled":
            try:
                import wandb

                self.wandb = wandb.init(project="rad-env", dir=str(run_dir), mode=mode,
                                        name=options.run_name or run_dir.name,
                                        config=config.to_dict(), resume="allow")
            except Exception as exc:
                raise UserError(f"wandb could not start in mode {mode!r} ({exc}); "
                                "use --wandb offline or --wandb disabled") from exc

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.main:
            return
        clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def train(config: RunConfig, data_dir: str | Path, run_dir: str | Path,
          options: TrainOptions = TrainOptions()) -> dict[str, float]:
    """Train (or resume) a RAD world model; returns the last logged metrics."""
    return Trainer(config, data_dir, run_dir, options).run()


__all__ = [
    "EMA",
    "WEIGHTS_FILE",
    "TrainOptions",
    "Trainer",
    "TrainingError",
    "build_world_parts",
    "train",
]
