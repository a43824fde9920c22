"""Frames from any pixel environment: an RGB ``uint8`` image, resized to the world's square size.

The one place frames of a real environment other than Memory Maze are made fit for a world:
:func:`rgb_frame` checks what the environment gave (an observation or a ``render()``),
:func:`resize_frame` makes it ``(size, size, 3) uint8``. Resizing uses Pillow's area-averaging
filter (``Image.BOX``) when shrinking and bilinear interpolation when growing; a non-square frame
is stretched to the square (no cropping: nothing of the view is lost).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from world_model.errors import UserError


def is_rgb_image(shape: tuple[int, ...], dtype: Any) -> bool:
    """Whether an array of ``shape`` and ``dtype`` is an RGB frame ``(H, W, 3) uint8``."""
    return len(shape) == 3 and shape[-1] == 3 and np.dtype(dtype) == np.uint8


def rgb_frame(image: Any, what: str = "frame") -> np.ndarray:
    """``image`` as a ``(H, W, 3) uint8`` array (an RGBA frame loses its alpha channel).

    Raises:
        UserError: naming ``what``, its shape and dtype, when it is not an RGB(A) uint8 image.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 4 and array.dtype == np.uint8:
        array = array[..., :3]
    if not is_rgb_image(array.shape, array.dtype):
        raise UserError(f"{what} must be an RGB image (H, W, 3) uint8, got "
                        f"{array.shape} {array.dtype}")
    return array


def resize_frame(image: Any, size: int) -> np.ndarray:
    """An RGB frame ``(H, W, 3) uint8`` -> ``(size, size, 3) uint8`` (a fresh array).

    A frame already ``size x size`` is copied unchanged.
    """
    frame = rgb_frame(image)
    if frame.shape[:2] == (size, size):
        return frame.copy()
    from PIL import Image

    shrink = frame.shape[0] >= size and frame.shape[1] >= size
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = Image.fromarray(np.ascontiguousarray(frame)).resize((size, size), resample)
    return np.asarray(out, dtype=np.uint8).copy()
