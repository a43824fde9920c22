"""The report of an evaluation (:mod:`world_model.evaluation.protocol`): ``table.json``,
``table.md`` (the paper's Table 1 plus the return part), ``per_frame.json``, ``curves.png``,
``videos/*.gif`` and, on request, the generated frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from world_model.evaluation.videos import side_by_side, write_video
from world_model.io import atomic_write_npz, atomic_write_text

if TYPE_CHECKING:
    from world_model.evaluation.protocol import Row, Scores, Trajectory

#: Name of the floor that every evaluation reports: the last context frame repeated.
BASELINE = "repeat last context frame"


@dataclass
class Report:
    rows: list[Row]
    trajectories: int
    generated_frames: int
    return_frames: int
    horizon: int
    lpips: str
    settings: dict = field(default_factory=dict)


def _fmt(x: float | None, digits: int) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(report: Report) -> str:
    """The table as Markdown (like the paper's Table 1, plus the return part; for the
    ``predict`` protocol the revisit frames, :mod:`world_model.evaluation.clips`)."""
    part = "revisit" if report.settings.get("protocol") == "predict" else "return"
    head = ("| Model | Memory | Mode | W | Horizon | PSNR | SSIM | LPIPS | "
            f"PSNR {part} | SSIM {part} | LPIPS {part} |")
    lines = [head, "|" + "---|" * 11]
    lp = (lambda v: "unavailable" if report.lpips.startswith("unavailable") else _fmt(v, 3))
    for r in report.rows:
        lines.append(f"| {r.name} | {r.memory or '-'} | {r.mode or '-'} | {r.window or '-'} | "
                     f"{r.horizon or '-'} | {_fmt(r.psnr, 2)} | {_fmt(r.ssim, 3)} | {lp(r.lpips)} | "
                     f"{_fmt(r.return_psnr, 2)} | {_fmt(r.return_ssim, 3)} | {lp(r.return_lpips)} |")
    lines.append("")
    where = (f"revisits (a place of the context, not seen in the {report.horizon - 1} frames "
             f"before)" if part == "revisit" else
             f"the return part (matching outbound view >= {report.horizon} frames back)")
    lines.append(f"{report.trajectories} trajectories, {report.generated_frames} generated frames, "
                 f"{report.return_frames} of them {where}. LPIPS: {report.lpips}.")
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: Report, trajs: Sequence[Trajectory],
                 masks: Sequence[np.ndarray], per_frame: dict[str, list[Scores]],
                 videos: dict[str, list[np.ndarray]], fps: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.json", json.dumps(asdict(report), indent=2) + "\n")
    atomic_write_text(out / "table.md", markdown_table(report))
    frames = {name: {t.name: {k: (None if getattr(s, k) is None else getattr(s, k).round(5).tolist())
                              for k in ("psnr", "ssim", "lpips")}
                     for t, s in zip(trajs, scores)} for name, scores in per_frame.items()}
    frames["return_part"] = {t.name: m.tolist() for t, m in zip(trajs, masks)}
    atomic_write_text(out / "per_frame.json", json.dumps(frames) + "\n")
    plot_curves(out / "curves.png", per_frame)
    for k, traj in enumerate(trajs[:max((len(v) for v in videos.values()), default=0)]):
        gens = [v[k] for v in videos.values()]
        write_video(out / "videos" / f"{traj.name}.gif",
                    side_by_side(traj.frames, gens, traj.context_frames), fps)


def plot_curves(path: Path, per_frame: dict[str, list[Scores]]) -> None:
    """Mean PSNR and SSIM against the number of frames since the end of the context."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, scores in per_frame.items():
        for ax, key in zip(axes, ("psnr", "ssim")):
            curves = [getattr(s, key) for s in scores]
            n = max(len(c) for c in curves)
            total, count = np.zeros(n), np.zeros(n)
            for c in curves:
                total[:len(c)] += c
                count[:len(c)] += 1
            ax.plot(np.arange(1, n + 1), total / count, label=name,
                    linestyle="--" if name == BASELINE else "-")
    for ax, label in zip(axes, ("PSNR (dB)", "SSIM")):
        ax.set_xlabel("frames after the context")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Generated vs real frames (mean over trajectories)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_frames(path: Path, trajs: Sequence[Trajectory], generated: Sequence[np.ndarray]) -> None:
    """Every generated frame, one array a trajectory: ``frames/<checkpoint>.npz``."""
    atomic_write_npz(path, {t.name: g for t, g in zip(trajs, generated)})
