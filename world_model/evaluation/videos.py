"""Videos of real and imagined frames: bordered panels side by side, written as GIF or MP4.

Borders say what a frame is: grey for real frames, green for the real context a model was given,
red for generated frames.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from world_model.errors import UserError


def side_by_side(real: np.ndarray, generated: Sequence[np.ndarray], context_frames: int,
                 scale: int = 2) -> np.ndarray:
    """Video frames ``(T, H', W', 3)`` uint8: the real trajectory, then each generated one.

    Generated panels show the real context first. A border marks each panel: grey for real frames,
    green for context, red for generated frames.
    """
    T = len(real)
    panels = [_border(real, np.full(T, 1))]
    panels += [imagined_panel(real[:context_frames], g, scale=1)[:T] for g in generated]
    video = np.concatenate(panels, axis=2)
    return video.repeat(scale, axis=1).repeat(scale, axis=2)


def imagined_panel(context: np.ndarray, generated: np.ndarray, scale: int = 2) -> np.ndarray:
    """Context frames (green border) then generated ones (red border): ``(T, H', W', 3)`` uint8."""
    full = np.concatenate([context, generated], axis=0)
    kind = np.where(np.arange(len(full)) < len(context), 2, 3)
    return _border(full, kind).repeat(scale, axis=1).repeat(scale, axis=2)


_COLOURS = {1: (128, 128, 128), 2: (0, 200, 0), 3: (220, 0, 0)}


def _border(frames: np.ndarray, kind: np.ndarray, width: int = 2) -> np.ndarray:
    T, H, W, _ = frames.shape
    out = np.zeros((T, H + 2 * width, W + 2 * width, 3), dtype=np.uint8)
    for t in range(T):
        out[t] = _COLOURS[int(kind[t])]
    out[:, width:width + H, width:width + W] = frames
    return out


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """Write ``frames (T, H, W, 3) uint8`` as a GIF (looping) or, with imageio-ffmpeg, an MP4."""
    import imageio.v3 as iio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, frames, duration=1000.0 / fps, loop=0)
    else:
        iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)
    return path


def check_video_path(path: str | os.PathLike) -> Path:
    """``path`` if a video can be written there (.gif always; .mp4 with imageio-ffmpeg)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UserError(f"{path}: writing MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); "
                        f"a .gif needs nothing")
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"{path}: video must end in .gif or .mp4")
    return path
