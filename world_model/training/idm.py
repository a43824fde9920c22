"""``rad train-idm``: train the inverse-dynamics judge on real transitions.

Pairs ``(image[t], image[t + 1])`` with the label ``action[t + 1]`` (the action that led to
``image[t + 1]``) are drawn from real episode files held in memory (up to ``max_episodes`` of the
training split; the split is the world trainer's, by file name, so the IDM's held-out files are
the worlds' too). Which pairs a step draws is a pure function of ``(seed, step)``, and
``train_state.pt`` (:class:`~world_model.training.run_dir.RunDir`, written at every validation)
holds the trainer's state and RNG states, so ``--resume`` continues exactly. The loop is the
generic :class:`~world_model.training.trainer.Trainer`; the result is an IDM directory
(:mod:`world_model.evaluation.idm`) with ``idm.json``: validation accuracy, per-class accuracy,
confusion matrix and the majority-class rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_model.data.dataset import split_episodes
from world_model.data.format import list_episodes
from world_model.data.store import EpisodeStore
from world_model.devices import resolve_device
from world_model.errors import DataError
from world_model.evaluation.idm import IDMConfig, InverseDynamicsModel, save_idm
from world_model.training.idm_config import IDMTrainConfig
from world_model.training.run_dir import RunDir, check_resume_shape, write_train_config
from world_model.training.trainer import Trainer

logger = logging.getLogger(__name__)



class IDMObjective(nn.Module):
    """``forward((frames, next_frames, actions)) -> (cross-entropy, logs)``."""

    def __init__(self, model: InverseDynamicsModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        frames, nxt, actions = batch
        logits = self.model(frames, nxt)
        target = actions.to(logits.device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(-1) == target).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": acc.detach()}


@torch.no_grad()
def score(model: InverseDynamicsModel, frames: Tensor, nxt: Tensor, actions: Tensor,
          num_actions: int, batch: int = 512) -> dict:
    """Accuracy, per-class accuracy, confusion matrix (rows: true) and majority-class rate."""
    model.eval()
    pred = torch.cat([model(frames[i:i + batch], nxt[i:i + batch]).argmax(-1).cpu()
                      for i in range(0, len(frames), batch)])
    conf = np.zeros((num_actions, num_actions), dtype=np.int64)
    np.add.at(conf, (actions.numpy(), pred.numpy()), 1)
    support = conf.sum(1)
    return {"accuracy": float(np.trace(conf) / conf.sum()),
            "majority": float(support.max() / support.sum()),
            "per_class": [float(conf[i, i] / support[i]) if support[i] else None
                          for i in range(num_actions)],
            "support": support.tolist(), "confusion": conf.tolist(), "pairs": int(conf.sum())}


def train_idm(data_dir: str | Path, out_dir: str | Path, config: IDMTrainConfig | None = None,
              on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Train an IDM on the real episodes under ``data_dir`` into ``out_dir``; returns the
    validation scores (:func:`score`) with ``step``.

    Raises:
        DataError: fewer than two usable episode files. UserError: a non-empty ``out_dir``
        without ``resume``. CheckpointError: a resume state that does not fit.
    """
    config = config or IDMTrainConfig()
    out = Path(out_dir)
    paths = list_episodes(data_dir)
    if len(paths) < 2:
        raise DataError(f"{data_dir}: the IDM needs at least 2 real episode files (one held out), "
                        f"found {len(paths)}; collect them with `rad collect`")
    train_paths, val_paths = split_episodes(paths, config.val_fraction, data_dir)
    device = resolve_device(config.device)
    run_dir = RunDir(out, "idm", resume=config.resume, require_empty=True, device=device)
    train = EpisodeStore.load(train_paths[:config.max_episodes], what="IDM training episodes")
    val = EpisodeStore.load(val_paths, train.frame_size, what="IDM held-out episodes")
    num_actions = max(train.num_actions, val.num_actions)
    logger.info("IDM data: %d training and %d held-out episodes of %dx%d frames, %d actions",
                len(train.frames), len(val.frames), train.frame_size, train.frame_size,
                num_actions)
    torch.manual_seed(config.seed)
    model = InverseDynamicsModel(IDMConfig(num_actions=num_actions,
                                           frame_size=train.frame_size)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    trainer = Trainer(model, IDMObjective(model), optimizer, lr=config.lr,
                      warmup_steps=config.warmup_steps, grad_clip=1.0, max_nonfinite=1,
                      advice="lower --lr", device=device)
    if run_dir.resuming:
        check_resume_shape(out, "idm", model.cfg, "IDM shape or data")
        run_dir.restore(run_dir.read_state(), trainer)
    run_dir.create()
    write_train_config(out, config, "idm", model.cfg)
    held_out = [torch.from_numpy(x) for x in
                val.draw_transitions(np.random.default_rng([config.seed, 1 << 20]), config.val_pairs)]
    scores: dict = {}

    def batches(start: int) -> Iterator:
        step = start
        while True:
            rng = np.random.default_rng([config.seed, step])
            yield tuple(torch.from_numpy(x) for x in train.draw_transitions(rng, config.batch_size))
            step += 1

    def after_step(trainer: Trainer, _batch, logs: dict[str, float] | None, last: bool) -> None:
        nonlocal scores
        logs = dict(logs or {})
        if last or (config.val_every and trainer.step % config.val_every == 0):
            scores = score(model, *held_out, num_actions)
            logs["val_accuracy"] = scores["accuracy"]
            logger.info("step %d: held-out accuracy %.3f (majority class %.3f)", trainer.step,
                        scores["accuracy"], scores["majority"])
            run_dir.save(trainer)
        if on_step is not None:
            on_step(trainer.step, logs)

    trainer.fit(batches(trainer.step), config.steps, [after_step])
    if not scores:  # nothing left to train: score what was resumed
        scores = score(model, *held_out, num_actions)
    scores = {"step": trainer.step, "data": str(data_dir), "train_episodes": len(train.frames),
              "val_episodes": len(val.frames), **scores}
    save_idm(out, model.cpu(), scores)
    return scores
