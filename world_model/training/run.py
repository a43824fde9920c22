"""``rad train``: a RAD world trained into a run directory (diffusion forcing with pre-fetch).

:func:`train` builds the world from its :class:`~world_model.config.RunConfig`
(:func:`~world_model.world.build_world`), the data loaders and the objective, and runs the generic
:class:`~world_model.training.trainer.Trainer` with the callbacks of a world run: logging
(``metrics.jsonl`` and wandb, offline by default), periodic validation of the EMA weights,
atomic checkpoints (``config.json`` + ``model.safetensors`` with the EMA weights, then
``train_state.pt`` for resuming), copies of chosen steps, a CPU budget. Resuming continues
exactly (step, weights, optimiser, every rank's RNG, data position); under ``torchrun`` the
objective runs in DistributedDataParallel.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from world_model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_world
from world_model.config import RunConfig
from world_model.data.spec import read_data_spec
from world_model.devices import resolve_device, resolve_precision
from world_model.errors import UserError
from world_model.io import atomic_write_text
from world_model.network.memory import map_memory
from world_model.training import distributed as D
from world_model.training.logger import RunLogger
from world_model.training.objective import Batch, WorldModelObjective
from world_model.training.run_dir import RunDir
from world_model.training.train_state import WORLD_GENERATOR
from world_model.training.trainer import Trainer
from world_model.weights import load_state_into
from world_model.world import build_world

#: Written into a warm-started run directory: the world it started from.
INIT_FROM_FILE = "init_from.json"
#: Beside every saved EMA world: its step and CPU minutes, this run's and the campaign's.
TRAIN_INFO_FILE = "train_info.json"

logger = logging.getLogger(__name__)


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
    actions_from_data: bool = True
    """Size the world's action set to the data (``model.num_actions`` = the files' action count);
    False keeps the config's, which must then be at least the data's."""
    init_from: str | None = None
    """Warm start: a new run (no train state in the run directory yet) starts from the weights of
    this world directory (config.json + model.safetensors, e.g. a shipped world), with a fresh
    optimiser and the config's warm-up. Its model config must equal the run's. Ignored when the
    run directory already holds a run to resume."""


def fit_to_data(config: RunConfig, data_dir: str | Path, actions_from_data: bool = True
                ) -> RunConfig:
    """``config`` sized to the episode files under ``data_dir`` (:mod:`world_model.data.spec`):
    ``model.num_actions`` their action count (with ``actions_from_data``; else it must be at least
    that) and ``train.env_id`` the environment they record, when they record one."""
    spec = read_data_spec(data_dir)
    model, train = config.model, config.train
    if actions_from_data and model.num_actions != spec.num_actions:
        logger.info("%s: %d actions (%s): model.num_actions = %d", data_dir, spec.num_actions,
                    spec.env_id or "env not recorded", spec.num_actions)
        model = dataclasses.replace(model, num_actions=spec.num_actions)
    elif model.num_actions < spec.num_actions:
        raise UserError(f"model.num_actions={model.num_actions} but the episode files under "
                        f"{data_dir} have {spec.num_actions} actions")
    if spec.env_id is not None and spec.env_id != train.env_id:
        train = dataclasses.replace(train, env_id=spec.env_id)
    return dataclasses.replace(config, model=model, train=train)


class WorldRun:
    """One world training run in ``run_dir``. :meth:`run` trains to ``config.train.steps``.

    Built in the order that needs no late binding: the world, its weights (resumed or warm
    started), then the objective (compiled with ``--compile``) wrapped in DDP (which broadcasts
    the weights it finds), then the :class:`Trainer` over it; the train state is restored last.
    """

    def __init__(self, config: RunConfig, data_dir: str | Path, run_dir: str | Path,
                 options: TrainOptions = TrainOptions()) -> None:
        self.data_dir, self.run_dir = Path(data_dir), Path(run_dir)
        self.config = fit_to_data(config, self.data_dir, options.actions_from_data)
        self.options = options
        self._source_info: dict[str, Any] | None = None
        self._init_source: str | None = None
        config = self.config
        self.device = resolve_device(options.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = D.init_distributed(self.device)
        self.dir = RunDir(self.run_dir, "world", resume=options.resume, device=self.device,
                          dist=self.dist)
        tc = config.train
        torch.manual_seed(tc.seed + self.dist.rank)
        self.world = build_world(config)
        logger.info("compute precision: %s (train.precision=%s)",
                    resolve_precision(tc.precision, self.device), tc.precision)
        self.world.to(self.device)
        model = self.world.model
        state = self._load_weights()  # before DDP broadcasts them (and the EMA copies them)
        self.objective = self._objective(model, compile=options.compile)
        self.ddp = (DistributedDataParallel(self.objective, device_ids=None if self.device.type ==
                                            "cpu" else [self.device.index])
                    if self.dist.enabled else self.objective)
        self.generator = torch.Generator(device=self.device).manual_seed(tc.seed * 1000 + self.dist.rank)
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                      betas=(0.9, 0.99))
        budget = None if options.budget_minutes is None else 60.0 * options.budget_minutes
        self.trainer = Trainer(
            model, functools.partial(self.ddp, generator=self.generator), optimizer, lr=tc.lr,
            warmup_steps=tc.warmup_steps, grad_clip=tc.grad_clip, ema_decay=tc.ema_decay,
            max_nonfinite=tc.max_nonfinite, budget_seconds=budget, dist=self.dist,
            device=self.device,
            advice=f"lower train.lr or check the data (last good checkpoint is in {self.run_dir})")
        if state is not None:
            self.dir.restore(state, self.trainer, {WORLD_GENERATOR: self.generator})
            carry = self.dir.rank_state(state).get("carry")  # carry_chunks > 1: exact resume
            if carry is not None:
                self.objective.carry = map_memory(carry, lambda s: s.to(self.device))
        self.dir.create()
        if self.dist.is_main and self._init_source is not None and not self.dir.resuming:
            atomic_write_text(self.run_dir / INIT_FROM_FILE, json.dumps(
                {"init_from": self._init_source, "source_train_info": self._source_info},
                indent=2) + "\n")

    def _objective(self, model, compile: bool = False) -> WorldModelObjective:
        tc = self.config.train
        return WorldModelObjective(model, self.world.diffusion, self.world.codec, tc.detach_every,
                                   resolve_precision(tc.precision, self.device),
                                   tc.reward_loss_weight, tc.termination_loss_weight, compile)

    # -- run directory -----------------------------------------------------------------------------
    def _load_weights(self) -> dict[str, Any] | None:
        """The model's starting weights: the saved run's (returns its train state, to restore
        once the trainer exists), or ``--init-from``'s for a new run (returns None)."""
        if not self.dir.resuming:
            if self.options.init_from is not None:
                self._warm_start(Path(self.options.init_from))
            return None
        saved = RunConfig.load(self.run_dir / CONFIG_FILE)
        if saved.model != self.config.model or saved.diffusion != self.config.diffusion:
            raise UserError(f"{self.run_dir}: the model/diffusion config differs from the run "
                            "being resumed; resume with the same --config")
        state = self.dir.read_state()
        self.world.model.load_state_dict(state["model"])
        if (self.run_dir / INIT_FROM_FILE).is_file():
            saved_init = json.loads((self.run_dir / INIT_FROM_FILE).read_text())
            self._source_info = saved_init.get("source_train_info")
            self._init_source = saved_init.get("init_from")
        return state

    def _warm_start(self, world_dir: Path) -> None:
        """Load ``world_dir``'s weights into the model (fresh optimiser, step 0; the trainer's EMA
        starts as a copy of them)."""
        if not (world_dir / CONFIG_FILE).is_file():
            raise UserError(f"--init-from {world_dir}: not a world directory (no {CONFIG_FILE})")
        source = RunConfig.load(world_dir / CONFIG_FILE)
        if source.model != self.config.model:
            diff = {f.name: (getattr(source.model, f.name), getattr(self.config.model, f.name))
                    for f in dataclasses.fields(source.model)
                    if getattr(source.model, f.name) != getattr(self.config.model, f.name)}
            raise UserError(f"--init-from {world_dir}: its model config differs from this run's "
                            f"(field: (world, run)) {diff}; train with --config "
                            f"{world_dir / CONFIG_FILE}")
        if source.latent.kind != self.config.latent.kind:
            raise UserError(f"--init-from {world_dir}: latents '{source.latent.kind}' there, "
                            f"'{self.config.latent.kind}' here")
        load_state_into(self.world.model, world_dir / WEIGHTS_FILE)
        info = world_dir / TRAIN_INFO_FILE
        self._source_info = json.loads(info.read_text()) if info.is_file() else None
        self._init_source = str(world_dir.resolve())
        logger.info("warm start from %s (fresh optimiser, %d warm-up steps)", world_dir,
                    self.config.train.warmup_steps)

    def save_checkpoint(self) -> None:
        """Atomically write the EMA world (config.json + model.safetensors, train_info.json), then
        the train state (every rank must call it: the RNG states are gathered)."""
        def write_world() -> None:
            save_world(self.run_dir, self.config, self.trainer.ema.model,
                       vae_source=self._vae_source())
            atomic_write_text(self.run_dir / TRAIN_INFO_FILE, json.dumps(self.train_info()) + "\n")

        carry = self.objective.carry
        self.dir.save(self.trainer, {WORLD_GENERATOR: self.generator}, write_world,
                      rank_state=None if carry is None else {"carry": carry})

    def train_info(self) -> dict[str, Any]:
        """Where the EMA world stands: this run's step and CPU minutes, and the campaign's
        (warm-started runs add the steps and CPU minutes of the world they started from)."""
        src = self._source_info or {}
        minutes = self.trainer.cpu_seconds / 60.0
        return {"step": self.trainer.step, "cpu_minutes": minutes,
                "campaign_steps": int(src.get("campaign_steps", src.get("step", 0))) + self.trainer.step,
                "campaign_cpu_minutes": float(src.get("campaign_cpu_minutes",
                                                      src.get("cpu_minutes", 0.0))) + minutes,
                "init_from": self._init_source}

    def _vae_source(self) -> str | None:
        return self.config.latent.vae_path if self.config.latent.kind == "vae" else None

    def keep_world(self) -> Path:
        """Copy the EMA world as it is now into ``RUN/steps/<step>/`` (main process only)."""
        path = self.dir.snapshot_dir(self.trainer.step)
        if self.dist.is_main:
            save_world(path, self.config, self.trainer.ema.model, vae_source=self._vae_source())
            atomic_write_text(path / TRAIN_INFO_FILE, json.dumps(self.train_info()) + "\n")
        return path

    # -- validation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, val_loader) -> dict[str, float]:
        """Mean losses of the EMA model over ``val_batches`` batches at fixed noise (seeded)."""
        objective = self._objective(self.trainer.ema.model)
        objective.detach_every = 0
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

    def _loaders(self):
        """Train and validation loaders: frames, or cached latents for a VAE world (the data set
        is encoded once, here, where it is not cached yet)."""
        from tqdm.auto import tqdm

        from world_model.data.dataset import make_dataloaders
        from world_model.training.latent_cache import make_latent_loaders

        tc = self.config.train
        common = {"seq_len": tc.seq_len, "batch_size": tc.batch_size,
                  "val_fraction": tc.val_fraction, "seed": tc.seed, "rank": self.dist.rank,
                  "world_size": self.dist.world_size, "start_step": self.trainer.step,
                  "val_batches": tc.val_batches, "frame_size": self.config.latent.frame_size,
                  "num_actions": self.config.model.num_actions, "chunks": tc.carry_chunks}
        if self.config.latent.kind != "vae":
            return make_dataloaders(self.data_dir, num_workers=tc.num_workers, **common)
        bar = tqdm(desc="encode latents", unit="episode", dynamic_ncols=True,
                   disable=not (self.options.progress and self.dist.is_main))

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            return make_latent_loaders(self.data_dir, self.config.latent.vae_path,
                                       progress=progress, **common)
        finally:
            bar.close()

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """Train to ``config.train.steps``; returns the last logged metrics (with ``step`` and
        ``cpu_minutes``)."""
        from tqdm.auto import tqdm

        tc, trainer = self.config.train, self.trainer
        train_loader, val_loader = self._loaders()
        log = RunLogger(self.run_dir / "metrics.jsonl",
                        os.environ.get("WANDB_MODE", self.options.wandb),
                        {"project": "rad-env", "dir": str(self.run_dir),
                         "name": self.options.run_name or self.run_dir.name,
                         "config": self.config.to_dict(), "resume": "allow"},
                        start_step=trainer.step, main=self.dist.is_main)
        bar = tqdm(total=tc.steps, initial=trainer.step, desc="train", unit="step",
                   disable=not (self.options.progress and self.dist.is_main), dynamic_ncols=True)
        last: dict[str, float] = {}
        since = {"t0": time.perf_counter(), "frames": 0}

        def after_step(trainer: Trainer, batch: Batch, logs: dict[str, float] | None,
                       last_step: bool) -> None:
            step = trainer.step
            since["frames"] += batch.shape[0] * batch.shape[1] * self.dist.world_size
            bar.update(1)
            if logs is not None and (step % tc.log_every == 0 or last_step):
                logs["frames_per_s"] = since["frames"] / max(time.perf_counter() - since["t0"], 1e-9)
                logs["cpu_minutes"] = trainer.cpu_seconds / 60.0
                since.update(t0=time.perf_counter(), frames=0)
                last.update(logs)
                log.log(step, logs)
                bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
            if val_loader is not None and (step % tc.val_every == 0 or last_step):
                val = self.validate(val_loader)
                last.update(val)
                log.log(step, val)
            if step % tc.checkpoint_every == 0 or last_step:
                self.save_checkpoint()
            if self.options.keep_every and step % self.options.keep_every == 0:
                self.keep_world()

        batches = (Batch.from_dict(raw, self.device) for raw in train_loader)
        try:
            trainer.fit(batches, tc.steps, [after_step])
        finally:
            bar.close()
            log.close()
        D.shutdown(self.dist)
        last["step"] = float(trainer.step)
        last["cpu_minutes"] = trainer.cpu_seconds / 60.0
        return last


def train(config: RunConfig, data_dir: str | Path, run_dir: str | Path,
          options: TrainOptions = TrainOptions()) -> dict[str, float]:
    """Train (or resume) a RAD world model; returns the last logged metrics."""
    return WorldRun(config, data_dir, run_dir, options).run()
