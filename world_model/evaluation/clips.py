"""The context-then-predict protocol on plain held-out episodes (Crafter, MineRL, any pixel env).

Memory Maze has the paper's outbound-and-return trajectories (:mod:`world_model.evaluation.
protocol`); other environments have no scripted way back, so ``rad eval --protocol predict``
scores frame prediction on ordinary held-out episodes (``rad collect`` files of the same env,
never trained on):

1. **Clip.** From every episode of at least ``C + P`` frames, one clip of ``C + P`` consecutive
   frames: the first ``C`` are context, the model generates the ``P`` after them from the
   recorded actions alone. Which clip (``clip``): ``"revisits"`` (default) the one with the most
   revisit frames (below; the earliest among equals), chosen from the recorded positions only,
   never from pixels or any model's output; ``"start"`` the episode's first frames.
2. **Score.** PSNR, SSIM (and LPIPS where available) of every generated frame against the real
   one, with the repeat-the-last-context-frame floor, as in the maze protocol.
3. **Revisits.** A generated frame ``i`` is a *revisit* when the agent stands where it stood at
   some context frame (``agent_pos`` equal: a Crafter tile) and has not stood there in any of the
   ``H - 1`` frames before ``i`` (``H`` the attention horizon, as in the maze protocol): the view
   of that place reaches the prediction only through the memory, or through generated frames
   that kept it. These frames are the "revisit" columns (the maze protocol's "return" part). A
   file without ``agent_pos`` has no revisit frames.

Nothing of the clip is stored: it is a function of the file, ``C``, ``P``, ``clip`` and ``H``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from world_model.data.checks import DEFAULT_FRAME_SIZE, index_episodes, warn_episode
from world_model.data.format import action_indices, list_episodes, read_episode
from world_model.errors import DataError, UserError

CLIP_CHOICES = ("revisits", "start")


@dataclass
class Trajectory:
    """One evaluation trajectory."""

    name: str
    frames: np.ndarray
    """``(T, H, W, 3)`` uint8, all frames."""
    actions: np.ndarray
    """``(T,)`` int64, ``actions[i]`` led to frame ``i``."""
    context_frames: int
    outbound_frames: int
    positions: np.ndarray | None
    """``(T, 2)`` agent positions, or None."""

    @property
    def generated(self) -> int:
        return len(self.frames) - self.context_frames


def revisit_mask(positions: np.ndarray | None, context: int, horizon: int) -> np.ndarray:
    """``(T - context,)`` bool: which frames after the first ``context`` are revisits (module
    docstring), for ``positions (T, 2)`` (None: none are)."""
    if positions is None:
        return np.zeros(0, bool)
    T = len(positions)
    same = (positions[:, None, :] == positions[None, :, :]).all(-1)  # (T, T)
    out = np.zeros(T - context, bool)
    for i in range(context, T):
        recent = same[i, max(0, i - horizon + 1):i].any()
        out[i - context] = same[i, :context].any() and not recent
    return out


def _best_start(positions: np.ndarray | None, length: int, context: int, horizon: int) -> int:
    if positions is None:
        return 0
    counts = [revisit_mask(positions[s:s + length], context, horizon).sum()
              for s in range(len(positions) - length + 1)]
    return int(np.argmax(counts))  # the first of the largest


def prediction_trajectories(data: str | os.PathLike, context: int, predict: int, horizon: int,
                            clip: str = "revisits", max_trajectories: int | None = None, *,
                            frame_size: int | None = DEFAULT_FRAME_SIZE,
                            num_actions: int | None = None) -> list[Trajectory]:
    """One clip of ``context + predict`` frames per episode file under ``data`` (sorted), as
    :class:`Trajectory` objects with ``context_frames = outbound_frames = context`` (files
    shorter than the clip are skipped with a warning naming them).

    Raises:
        UserError: a bad ``context``, ``predict`` or ``clip``.
        DataError: no usable episode; naming every file and why.
    """
    if context < 1 or predict < 1:
        raise UserError(f"--context-frames and --predict-frames must be >= 1, got {context}, "
                        f"{predict}")
    if clip not in CLIP_CHOICES:
        raise UserError(f"--clip {clip!r}: expected one of {CLIP_CHOICES}")
    length = context + predict
    files = index_episodes(list_episodes(data), length, frame_size=frame_size,
                           num_actions=num_actions,
                           refuse_empty=f"{data} (held-out episodes of at least {length} frames)")
    out = []
    for entry in files:
        if max_trajectories is not None and len(out) >= max_trajectories:
            break
        try:
            ep = read_episode(entry.path)
        except DataError as exc:
            warn_episode(f"skipping held-out episode {exc}")
            continue
        pos = ep.get("agent_pos")
        pos = None if pos is None else np.asarray(pos, dtype=np.float64)
        s = _best_start(pos, length, context, horizon) if clip == "revisits" else 0
        out.append(Trajectory(f"{entry.path.stem}@{s}", ep["image"][s:s + length],
                              action_indices(ep["action"])[s:s + length], context, context,
                              None if pos is None else pos[s:s + length]))
    if not out:
        raise DataError(f"{data}: no usable held-out episode")
    return out
