"""``rad convert-minerl``: trajectories of the MineRL (v0) data set -> episode files.

The data set (``minerl.data.download``; ``MINERL_DATA_ROOT/<task>/<trajectory>/``) stores one
directory per trajectory:

* ``recording.mp4`` - the POV video, 64x64 RGB;
* ``rendered.npz`` - the trajectory's arrays by flattened name: ``action$forward``,
  ``action$back``, ``action$left``, ``action$right``, ``action$jump``, ``action$sneak``,
  ``action$sprint``, ``action$attack`` ``(N,)`` 0/1, ``action$camera`` ``(N, 2)`` pitch/yaw
  degrees, ``reward`` ``(N,)``, ``observation$...``;
* ``metadata.json`` (optional here) - ``true_video_frame_count`` among others.

There are ``N`` actions and rewards for ``N + 1`` states: the last ``N + 1`` frames of the video
(earlier frames, if any, precede the start of the experiment), action ``t`` leading from frame
``t`` to frame ``t + 1``. A converted file holds ``image (N+1, S, S, 3) uint8`` (each frame resized
to ``S``), one-hot ``action (N+1, 8)`` with ``action[0] = 0`` and ``action[t]`` the discretised
action ``t - 1`` (:mod:`world_model.sim.minerl_actions`, the same mapping the ``MineRL-Navigate-v0``
env uses), ``reward (N+1,)`` with ``reward[0] = 0``, and the scalars ``env_id`` and
``num_actions``. A video shorter than ``N + 1`` frames keeps the steps it has frames for (logged).

Videos are decoded by imageio's ffmpeg plugin (``imageio-ffmpeg``, whose ffmpeg binary ships in
its wheel; the ``[envs]`` extra). Files are ``OUT/<trajectory>.npz``, written atomically; a
re-run converts only the trajectories not yet in ``OUT`` (settings in ``rad-convert-minerl.json``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from world_model.data.format import one_hot_actions
from world_model.errors import BackendError, DataError, UserError
from world_model.sim import minerl_actions as A
from world_model.sim.frames import resize_frame
from world_model.sim.jobs import EpisodeJob, Workers, run_missing
from world_model.sim.pool import Progress

logger = logging.getLogger(__name__)

VIDEO, ARRAYS, METADATA = "recording.mp4", "rendered.npz", "metadata.json"
ACTION_PREFIX = "action$"


def find_trajectories(src: str | os.PathLike) -> list[Path]:
    """Every trajectory directory (holding ``recording.mp4`` and ``rendered.npz``) at or under
    ``src``, sorted."""
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"{src}: no such directory (expected MineRL trajectories: directories "
                        f"with {VIDEO} and {ARRAYS})")
    found = {p.parent for p in src.rglob(ARRAYS) if (p.parent / VIDEO).is_file()}
    return sorted(found)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Every frame of an mp4, ``(F, H, W, 3) uint8``, decoded by imageio's ffmpeg plugin."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise BackendError("reading MineRL videos needs imageio-ffmpeg (its wheel ships an ffmpeg "
                           "binary): pip install 'rad-env[envs]' or pip install imageio-ffmpeg")
    import imageio.v3 as iio

    try:
        frames = [np.asarray(f)[..., :3] for f in iio.imiter(path, plugin="FFMPEG")]
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode the video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise DataError(f"{path}: the video has no frames")
    return np.stack(frames).astype(np.uint8, copy=False)


def _arrays(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The action arrays (keys without the ``action$`` prefix) and ``reward`` of rendered.npz."""
    wanted = ("forward", "jump", "attack", "camera")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*[ACTION_PREFIX + w for w in wanted], "reward")
                       if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing {missing} (has {sorted(data.files)})")
            actions = {w: np.asarray(data[ACTION_PREFIX + w]) for w in wanted}
            reward = np.asarray(data["reward"], dtype=np.float64).reshape(-1)
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    return actions, reward


def convert_trajectory(directory: str | os.PathLike, size: int = 64,
                       angle: float = A.DEFAULT_ANGLE,
                       env_id: str = "minerl-navigate") -> dict[str, np.ndarray]:
    """One MineRL trajectory directory -> the arrays of its episode file (module docstring)."""
    directory = Path(directory)
    actions, reward = _arrays(directory / ARRAYS)
    steps = len(reward)
    frames = read_video(directory / VIDEO)
    meta_file = directory / METADATA
    if meta_file.is_file():
        try:
            declared = int(json.loads(meta_file.read_text()).get("true_video_frame_count", 0))
        except (OSError, ValueError) as exc:
            raise DataError(f"{meta_file}: unreadable ({exc})") from exc
        if declared and declared < len(frames):
            frames = frames[:declared]
    if len(frames) > steps + 1:
        frames = frames[len(frames) - (steps + 1):]  # frames before the experiment started
    elif len(frames) < steps + 1:
        logger.warning("%s: %d video frames for %d steps: keeping the first %d steps", directory,
                       len(frames), steps, len(frames) - 1)
    T = len(frames) - 1
    index = A.discretize({k: (v[:T] if k != "camera" else np.reshape(v, (-1, 2))[:T])
                          for k, v in actions.items()}, angle)
    if len(index) != T:
        raise DataError(f"{directory / ARRAYS}: {len(index)} actions for {T} steps")
    return {"image": np.stack([resize_frame(f, size) for f in frames]),
            "action": one_hot_actions(index, A.NUM_ACTIONS),
            "reward": np.concatenate([[0.0], reward[:T]]).astype(np.float32),
            "num_actions": np.int64(A.NUM_ACTIONS), "env_id": np.array(env_id)}


@dataclass(frozen=True)
class ConvertJob(EpisodeJob):
    """Convert and write one trajectory (the directory ``source``)."""

    source: str
    size: int
    angle: float
    env_id: str

    def make(self, notes: list[str]) -> dict[str, np.ndarray]:
        return convert_trajectory(self.source, self.size, self.angle, self.env_id)


def convert_minerl(src: str | os.PathLike, out: str | os.PathLike, *, size: int = 64,
                   angle: float = A.DEFAULT_ANGLE, env_id: str = "minerl-navigate",
                   workers: int = 1, progress: Callable[[Progress], None] | None = None
                   ) -> list[Path]:
    """Convert every MineRL trajectory under ``src`` into ``out/<trajectory>.npz``.

    Trajectories already converted in ``out`` are kept (a re-run resumes); an interrupt loses
    at most the files in flight. Returns the paths of all converted files, sorted.

    Raises:
        UserError: ``src`` holds no trajectory, or ``out`` holds a run with other settings.
        DataError: a trajectory's files are unreadable (naming it).
    """
    trajectories = find_trajectories(src)
    if not trajectories:
        raise UserError(f"{src}: no MineRL trajectory (a directory with {VIDEO} and {ARRAYS})")
    if size < 8 or workers < 1 or not 0 < angle <= 180:
        raise UserError(f"need --size >= 8, --workers >= 1, 0 < --angle <= 180; got {size}, "
                        f"{workers}, {angle}")
    names = [t.name for t in trajectories]
    if len(set(names)) != len(names):
        raise UserError(f"{src}: trajectory directories with the same name: convert each task's "
                        f"directory into its own --out")
    settings = {"env": env_id, "size": size, "angle": angle, "actions": list(A.ACTION_NAMES)}
    return run_missing(
        out, "rad-convert-minerl.json", settings,
        [Path(out) / f"{t.name}.npz" for t in trajectories],
        lambda i, p: ConvertJob(i, str(p), str(trajectories[i]), size, angle, env_id),
        workers=Workers(workers), progress=progress, what="trajectories", logger=logger)
