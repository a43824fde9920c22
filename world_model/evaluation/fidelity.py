"""What an RL user asks of a world: does it follow the actions, and does it stay real?

The lockstep protocol (``rad eval --protocol lockstep``): every world starts from the first
``C`` real frames of each held-out episode and is stepped with the episode's own recorded actions
for ``P`` frames (open loop: it never sees a real frame again). An inverse-dynamics model trained
on real transitions only (:mod:`world_model.evaluation.idm`) judges the result, per bucket of
steps after the context (``1-20``, ``21-100``, ``101-300``; step ``j`` is the frame ``C - 1 + j``):

* **action fidelity** = the IDM's accuracy on the imagined transitions of the bucket (the first
  one from the last real context frame) divided by its accuracy on the real transitions of the
  same steps. Repeating the last frame shows no motion: its accuracy (the IDM's answer for a pair
  of identical frames, against the recorded actions) is the floor.
* **realism** = the Frechet distance between IDM-encoder features of imagined and real frames of
  the bucket. The episodes are split into two halves A and B (alternating); a world's figure is
  ``(FD(imagined A, real B) + FD(imagined B, real A)) / 2``, so it compares same-sized sets of
  different episodes, exactly as the **real-vs-real floor** ``FD(real A, real B)`` does. The
  repeat-last-frame row is computed as a world's.
* PSNR and SSIM against the real frames, with the repeat-last-frame floor.

A picture shows real and imagined frames at steps 1, 5, 20, 50, 100, 300 for every world.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from world_model.evaluation import metrics
from world_model.evaluation.idm import InverseDynamicsModel, judge

#: Buckets of steps after the context, inclusive: ``(first, last)``.
BUCKETS: tuple[tuple[int, int], ...] = ((1, 20), (21, 100), (101, 300))
#: Steps shown in the picture.
PICTURE_STEPS = (1, 5, 20, 50, 100, 300)
REPEAT = "repeat last frame"
REAL = "real (other half)"


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a (N, D)`` and ``b (M, D)``:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        return math.nan
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s_a @ s_b)
    if np.iscomplexobj(root):
        root = root.real
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2.0 * root))
    return max(value, 0.0)


@dataclass
class Judged:
    """One sequence of ``P`` frames after the context as the IDM sees it."""

    correct: np.ndarray
    """``(P,)`` bool: the IDM names the recorded action of step ``j`` (index ``j - 1``)."""
    features: np.ndarray
    """``(P, D)`` float: IDM features of the frames of steps ``1..P``."""


def judge_sequence(idm: InverseDynamicsModel, last_context: np.ndarray, frames: np.ndarray,
                   actions: np.ndarray) -> Judged:
    """``last_context (S, S, 3)``, ``frames (P, S, S, 3)`` uint8 (steps 1..P), ``actions (P,)``
    the recorded actions that led to them."""
    seq = torch.from_numpy(np.concatenate([last_context[None], frames]))
    pred, feats = judge(idm, seq)
    return Judged(pred.numpy() == actions, feats[1:].numpy())


@dataclass
class BucketRow:
    """One world (or floor) in one bucket."""

    name: str
    steps: str
    accuracy: float | None = None
    fidelity: float | None = None
    frechet: float | None = None
    psnr: float | None = None
    ssim: float | None = None


@dataclass
class LockstepReport:
    rows: list[BucketRow]
    episodes: int
    context: int
    predict: int
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        lines = ["| world | steps | IDM accuracy | action fidelity | Frechet (realism) | PSNR | SSIM |",
                 "|---|---|---|---|---|---|---|"]
        fmt = (lambda v, f: "-" if v is None or (isinstance(v, float) and math.isnan(v))
               else format(v, f))
        for r in self.rows:
            lines.append(f"| {r.name} | {r.steps} | {fmt(r.accuracy, '.3f')} | "
                         f"{fmt(r.fidelity, '.2f')} | {fmt(r.frechet, '.3g')} | "
                         f"{fmt(r.psnr, '.2f')} | {fmt(r.ssim, '.3f')} |")
        return "\n".join(lines) + "\n"

    def get(self, name: str, steps: str) -> BucketRow:
        return next(r for r in self.rows if r.name == name and r.steps == steps)


def _buckets(predict: int) -> list[tuple[int, int]]:
    return [(lo, min(hi, predict)) for lo, hi in BUCKETS if lo <= predict]


def _halves_fd(imag: list[np.ndarray], real: list[np.ndarray]) -> float:
    """Mean of FD(imagined A, real B) and FD(imagined B, real A) over alternating episodes."""
    cat = (lambda xs, h: np.concatenate(xs[h::2]) if xs[h::2] else np.zeros((0, 1)))
    return float(np.mean([frechet_distance(cat(imag, 0), cat(real, 1)),
                          frechet_distance(cat(imag, 1), cat(real, 0))]))


def lockstep_report(idm: InverseDynamicsModel, reals: Sequence[np.ndarray],
                    actions: Sequence[np.ndarray], context: int,
                    worlds: dict[str, Sequence[np.ndarray]], settings: dict | None = None,
                    ) -> LockstepReport:
    """Score every world's imagined frames against the real ones.

    Args:
        reals: per episode ``(C + P, S, S, 3) uint8``, the real frames.
        actions: per episode ``(C + P,)`` int64, ``actions[i]`` led to frame ``i``.
        context: ``C``, the real frames each world started from.
        worlds: name -> per episode ``(P, S, S, 3) uint8``, the imagined frames.
    """
    P = len(reals[0]) - context
    last = [r[context - 1] for r in reals]
    labels = [a[context:] for a in actions]
    truth = [r[context:] for r in reals]
    judged = {"real": [judge_sequence(idm, lc, t, lab) for lc, t, lab in zip(last, truth, labels)]}
    repeat = [np.repeat(lc[None], P, axis=0) for lc in last]
    judged[REPEAT] = [judge_sequence(idm, lc, rp, lab) for lc, rp, lab in zip(last, repeat, labels)]
    frames = {REPEAT: repeat, **worlds}
    for name, imagined in worlds.items():
        judged[name] = [judge_sequence(idm, lc, im, lab)
                        for lc, im, lab in zip(last, imagined, labels)]
    rows: list[BucketRow] = []
    for lo, hi in _buckets(P):
        span = slice(lo - 1, hi)
        steps = f"{lo}-{hi}"
        real_acc = float(np.mean([j.correct[span].mean() for j in judged["real"]]))
        real_feats = [j.features[span] for j in judged["real"]]
        rows.append(BucketRow(REAL, steps, real_acc, 1.0,
                              frechet_distance(np.concatenate(real_feats[0::2]),
                                               np.concatenate(real_feats[1::2]))))
        for name, seqs in frames.items():
            acc = float(np.mean([j.correct[span].mean() for j in judged[name]]))
            pairs = [(t[span], f[span]) for t, f in zip(truth, seqs)]
            rows.append(BucketRow(
                name, steps, acc, acc / real_acc if real_acc > 0 else None,
                _halves_fd([j.features[span] for j in judged[name]], real_feats),
                float(np.mean([metrics.psnr(t, f).mean() for t, f in pairs])),
                float(np.mean([metrics.ssim(t, f).mean() for t, f in pairs]))))
    return LockstepReport(rows, len(reals), context, P, settings or {})


def write_lockstep(out: Path, report: LockstepReport, reals: Sequence[np.ndarray],
                   worlds: dict[str, Sequence[np.ndarray]], pictures: int = 3) -> None:
    """``out/lockstep.md``, ``out/lockstep.json`` and ``out/lockstep.png`` (real vs imagined at
    :data:`PICTURE_STEPS` for the first ``pictures`` episodes)."""
    from world_model.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    head = (f"Lockstep: {report.episodes} held-out episodes, {report.context} real context "
            f"frames, {report.predict} imagined under the recorded actions.\n\n")
    atomic_write_text(out / "lockstep.md", head + report.table())
    atomic_write_text(out / "lockstep.json", json.dumps(
        {"episodes": report.episodes, "context": report.context, "predict": report.predict,
         "settings": report.settings, "rows": [asdict(r) for r in report.rows]}, indent=1) + "\n")
    picture(out / "lockstep.png", reals, worlds, report.context, pictures)


def picture(path: Path, reals: Sequence[np.ndarray], worlds: dict[str, Sequence[np.ndarray]],
            context: int, episodes: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = len(reals[0]) - context
    steps = [s for s in PICTURE_STEPS if s <= P]
    names = ["real", *worlds]
    episodes = min(episodes, len(reals))
    fig, axes = plt.subplots(episodes * len(names), len(steps), squeeze=False,
                             figsize=(1.3 * len(steps) + 1.2, 1.3 * episodes * len(names)))
    for e in range(episodes):
        for n, name in enumerate(names):
            row = e * len(names) + n
            seq = reals[e][context:] if name == "real" else worlds[name][e]
            for c, s in enumerate(steps):
                ax = axes[row, c]
                ax.imshow(seq[s - 1])
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"step {s}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"ep {e}\n{name}"[:28], fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)
