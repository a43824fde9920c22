"""``rad train-reward``: train the reward model (:mod:`world_model.network.reward_model`) on real
episodes, in the latent space of a world's VAE.

A sample is one step ``t >= 1`` of a real episode: the ``K`` clean latents before it (zeros before
the episode's first frame), the action that led to frame ``t`` and the label ``reward[t] > 0``.
Reward events are rare, so every batch draws ``positive_fraction`` of its steps from the events
and the rest from all steps; the saved model's last bias is shifted by the log-odds between the
data's event rate and the batches' (the exact prior correction of a logistic output), so its
probability is the data's. Latents come from the cache beside the data
(:mod:`world_model.training.latent_cache`, encoded on first use). Which steps a batch draws is a
pure function of ``(seed, step)``; ``train_state.pt``
(:class:`~world_model.training.run_dir.RunDir`, written at every validation) makes ``--resume``
exact.

With ``gamma > 0`` (``--gamma``) the target is the reward-to-go ``min(1, sum_k gamma^k
reward_{t+k})`` (:func:`reward_to_go`) under soft-label cross-entropy, whose minimiser is the
target's mean; batches are drawn uniformly and no shift is applied.

Held-out scores (the world trainer's split, every step of every held-out episode): average
precision, the best F1 and its threshold, precision and recall at 0.5, and the event rate; for
a reward-to-go model also the mean squared error and R^2 of its output against the target, and
the ranking of the steps whose target is at least 0.5.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_model.data.checks import index_episodes
from world_model.data.dataset import split_episodes
from world_model.data.format import list_episodes
from world_model.devices import resolve_device
from world_model.errors import DataError, UserError
from world_model.network.reward_model import RewardModel, RewardModelConfig, save_reward_model
from world_model.training.latent_cache import LatentEpisodes, encode_data
from world_model.training.reward_config import RewardTrainConfig
from world_model.training.run_dir import RunDir, check_resume_shape, write_train_config
from world_model.training.trainer import Trainer

logger = logging.getLogger(__name__)



def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``min(1, sum_{k >= 0} gamma^k rewards[t + k])`` for every ``t`` of one episode's
    ``rewards (T,)`` (float32; the rewards themselves when ``gamma`` is 0)."""
    out = np.zeros(len(rewards), np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return np.minimum(out, 1.0).astype(np.float32)


class RewardSteps:
    """Every step of some episodes' cached latents, ready to be drawn: ``context(idx)`` is
    ``(n, K, C, h, w)`` float32, ``actions[idx]``, ``labels[idx]`` (reward event) and
    ``targets[idx]`` (the event, or the reward-to-go when ``gamma > 0``) the step's."""

    def __init__(self, episodes: LatentEpisodes, frames: int, gamma: float = 0.0) -> None:
        K = frames
        parts, rows, steps, offsets = [], [], [], []
        offset = 0
        for i, lat in enumerate(episodes.latents):
            T = len(lat)
            parts += [np.zeros((K, *lat.shape[1:]), np.float16), lat]
            offsets.append(offset)
            rows.append(np.full(T - 1, i))
            steps.append(np.arange(1, T))
            offset += K + T
        self.padded = np.concatenate(parts)  # episode i's frame t at offsets[i] + K + t
        self.frames = K
        rows, steps = np.concatenate(rows), np.concatenate(steps)
        self.start = np.asarray(offsets)[rows] + steps  # first context row of each step
        self.actions = np.concatenate([a[1:] for a in episodes.actions]).astype(np.int64)
        self.labels = np.concatenate([r[1:] for r in episodes.rewards]) > 0
        self.gamma = float(gamma)
        self.targets = (np.concatenate([reward_to_go((r > 0).astype(np.float32), gamma)[1:]
                                        for r in episodes.rewards])
                        if gamma > 0 else self.labels.astype(np.float32))
        self.positives = np.flatnonzero(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def event_rate(self) -> float:
        return float(self.labels.mean())

    def context(self, idx: np.ndarray) -> np.ndarray:
        take = self.start[idx][:, None] + np.arange(self.frames)
        return self.padded[take].astype(np.float32)

    def draw(self, rng: np.random.Generator, batch: int, positive_fraction: float):
        """``batch`` steps: ``positive_fraction`` of them reward events, the rest drawn from all
        steps (all of them drawn uniformly for a reward-to-go target)."""
        n_pos = round(batch * positive_fraction) if len(self.positives) and not self.gamma else 0
        idx = np.concatenate([rng.choice(self.positives, n_pos),
                              rng.integers(0, len(self), batch - n_pos)])
        return (torch.from_numpy(self.context(idx)), torch.from_numpy(self.actions[idx]),
                torch.from_numpy(self.targets[idx]))


class RewardObjective(nn.Module):
    """``forward((context, actions, labels)) -> (binary cross-entropy, logs)``."""

    def __init__(self, model: RewardModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        context, actions, labels = batch
        logit = self.model.logit(context, actions.to(context.device))
        target = labels.to(logit.device)
        loss = F.binary_cross_entropy_with_logits(logit, target)
        acc = ((logit > 0) == (target >= 0.5)).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": acc.detach()}


def prior_shift(event_rate: float, positive_fraction: float) -> float:
    """Log-odds to add to a logit trained on batches with ``positive_fraction`` of drawn events
    (plus the rest drawn from all steps) so that it predicts at the data's ``event_rate``."""
    batch_rate = positive_fraction + (1 - positive_fraction) * event_rate
    rate = min(max(event_rate, 1e-6), 1 - 1e-6)
    return math.log(rate / (1 - rate)) - math.log(batch_rate / (1 - batch_rate))


@torch.no_grad()
def score(model: RewardModel, steps: RewardSteps, shift: float, device: torch.device,
          batch: int = 1024) -> dict:
    """Held-out scores of every step of ``steps`` at the corrected output (see module doc)."""
    model.eval()
    probs = []
    for b in range(0, len(steps), batch):
        idx = np.arange(b, min(b + batch, len(steps)))
        logit = model.logit(torch.from_numpy(steps.context(idx)).to(device),
                            torch.from_numpy(steps.actions[idx]).to(device))
        probs.append(torch.sigmoid(logit.float() + shift).cpu())
    model.train()
    prob = torch.cat(probs).numpy()
    if steps.gamma > 0:  # a reward-to-go: how well it fits, and how it ranks the near steps
        err = float(np.mean((prob - steps.targets) ** 2))
        var = float(np.var(steps.targets))
        return {"steps": len(steps), "events": int(steps.labels.sum()),
                "event_rate": steps.event_rate, "gamma": steps.gamma, "mse": err,
                "r2": 1.0 - err / var if var > 0 else None,
                **ranking(prob, steps.targets >= 0.5)}
    return {"steps": len(steps), "events": int(steps.labels.sum()),
            "event_rate": steps.event_rate, **ranking(prob, steps.labels)}


def ranking(prob: np.ndarray, labels: np.ndarray) -> dict:
    """Average precision, best F1 (and its threshold), precision and recall at 0.5."""
    out: dict = {"average_precision": None, "best_f1": None, "best_threshold": None,
                 "precision_at_0.5": None, "recall_at_0.5": None}
    n_pos = int(labels.sum())
    if n_pos == 0:
        return out
    order = np.argsort(-prob, kind="stable")
    hits = labels[order].astype(np.float64)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_pos
    out["average_precision"] = float((precision * hits).sum() / n_pos)
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f1))
    out["best_f1"], out["best_threshold"] = float(f1[best]), float(prob[order][best])
    pred = prob >= 0.5
    if pred.any():
        out["precision_at_0.5"] = float((pred & labels).sum() / pred.sum())
    out["recall_at_0.5"] = float((pred & labels).sum() / n_pos)
    return out


def load_world_latents(world: str | Path) -> tuple[Path, RewardModelConfig]:
    """The VAE directory of the world in ``world`` and the latent shape its reward model needs."""
    from world_model.config import RunConfig

    world = Path(world)
    config = RunConfig.load(world / "config.json")
    if config.latent.kind != "vae":
        raise UserError(f"{world}: a {config.latent.kind!r} world; the reward model reads the "
                        f"latents of a world's VAE (latent.kind 'vae')")
    m = config.model
    return world / "vae", RewardModelConfig(latent_channels=m.latent_channels,
                                            latent_size=m.latent_size, num_actions=m.num_actions)


def train_reward_model(data_dir: str | Path, world: str | Path, out_dir: str | Path,
                       config: RewardTrainConfig | None = None,
                       on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Train a reward model for ``world`` (a world directory with ``vae/``) on the real episodes
    under ``data_dir`` into ``out_dir``; returns the held-out scores with ``step``.

    Raises:
        DataError: fewer than two usable episode files, or no reward event in the training
        episodes. UserError: a non-empty ``out_dir`` without ``resume``; a world without a VAE.
        CheckpointError: a resume state that does not fit.
    """
    config = config or RewardTrainConfig()
    out = Path(out_dir)
    vae_dir, shape = load_world_latents(world)
    shape = dataclasses.replace(shape, frames=config.frames, width=config.width,
                                gamma=config.gamma)
    paths = list_episodes(data_dir)
    if len(paths) < 2:
        raise DataError(f"{data_dir}: the reward model needs at least 2 real episode files (one "
                        f"held out), found {len(paths)}; collect them with `rad collect`")
    train_paths, val_paths = split_episodes(paths, config.val_fraction, data_dir)
    device = resolve_device(config.device)
    run_dir = RunDir(out, "reward", resume=config.resume, require_empty=True, device=device)
    files = index_episodes(train_paths[:config.max_episodes] + val_paths, 2, frame_size=None,
                           refuse_empty=f"{data_dir} (reward model episodes)")
    cache = encode_data(data_dir, vae_dir, paths=[f.path for f in files])
    held = {p.resolve() for p in val_paths}
    train_files = [f for f in files if f.path.resolve() not in held]
    val_files = [f for f in files if f.path.resolve() in held]
    if not train_files:
        raise DataError(f"{data_dir}: no usable training episode file")
    train = RewardSteps(LatentEpisodes(cache, data_dir, train_files), config.frames, config.gamma)
    val = (RewardSteps(LatentEpisodes(cache, data_dir, val_files), config.frames, config.gamma)
           if val_files else None)
    if len(train.positives) == 0:
        raise DataError(f"{data_dir}: no reward event in the {len(train_files)} training "
                        f"episodes; the reward model has nothing to learn")
    shift = prior_shift(train.event_rate, config.positive_fraction) if not config.gamma else 0.0
    logger.info("reward data: %d training steps (%d events, rate %.4f), %d held-out steps "
                "(%d events)", len(train), len(train.positives), train.event_rate,
                0 if val is None else len(val), 0 if val is None else int(val.labels.sum()))
    torch.manual_seed(config.seed)
    model = RewardModel(shape).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    trainer = Trainer(model, RewardObjective(model), optimizer, lr=config.lr,
                      warmup_steps=config.warmup_steps, grad_clip=1.0, max_nonfinite=1,
                      advice="lower --lr", device=device)
    if run_dir.resuming:
        check_resume_shape(out, "reward_model", model.cfg, "reward model shape")
        run_dir.restore(run_dir.read_state(), trainer)
    run_dir.create()
    write_train_config(out, config, "reward_model", model.cfg)
    scores: dict = {}

    def batches(start: int) -> Iterator:
        step = start
        while True:
            yield train.draw(np.random.default_rng([config.seed, step]), config.batch_size,
                             config.positive_fraction)
            step += 1

    def after_step(trainer: Trainer, _batch, logs: dict[str, float] | None, last: bool) -> None:
        nonlocal scores
        logs = dict(logs or {})
        if last or (config.val_every and trainer.step % config.val_every == 0):
            scores = score(model, val, shift, device) if val is not None else {}
            logs["val_ap"] = scores.get("average_precision") or 0.0
            logger.info("step %d: held-out average precision %s, best F1 %s", trainer.step,
                        scores.get("average_precision"), scores.get("best_f1"))
            run_dir.save(trainer)
        if on_step is not None:
            on_step(trainer.step, logs)

    trainer.fit(batches(trainer.step), config.steps, [after_step])
    if not scores and val is not None:  # nothing left to train: score what was resumed
        scores = score(model, val, shift, device)
    scores = {"step": trainer.step, "data": str(data_dir), "world": str(world),
              "train_episodes": len(train_files), "val_episodes": len(val_files),
              "train_event_rate": train.event_rate, "prior_shift": shift, **scores}
    saved = copy.deepcopy(model).cpu()
    with torch.no_grad():
        saved.head[-1].bias += shift
    save_reward_model(out, saved, scores)
    return scores
