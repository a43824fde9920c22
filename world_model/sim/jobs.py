"""The one driver of resumable runs that write one episode file per item.

``rad collect`` (Memory Maze and the other envs), ``rad make-evalset`` and ``rad convert-minerl``
all do the same: fix a list of output files, keep those already finished in the output directory
(:class:`~world_model.sim.output_dir.OutputDir`: a lock, the run's settings in a manifest, no stale
temporary files), make the missing ones here or in worker processes (:mod:`world_model.sim.pool`),
each written atomically, and report progress. Only the job differs: an :class:`EpisodeJob`
subclass whose :meth:`~EpisodeJob.make` returns the episode's arrays. :func:`progress_bar` is the
matching tqdm bar for the CLIs (library code only logs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_model.data.format import write_episode
from world_model.sim.output_dir import OutputDir
from world_model.sim.pool import JobResult, Progress, Setup, run_jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeJob:
    """Make one episode and write it atomically to ``path``: the base of every job here.

    Subclasses are frozen dataclasses (picklable: they are sent to worker processes) that add
    their arguments after ``index`` and ``path`` and implement :meth:`make`.
    """

    index: int
    path: str

    def make(self, notes: list[str]) -> dict[str, np.ndarray]:
        """The episode's arrays (``image (T+1, H, W, 3) uint8``, ``reward (T+1,)``, ...).
        Warnings go to ``notes``; the parent process logs them (workers have no log setup)."""
        raise NotImplementedError

    def __call__(self) -> JobResult:
        start = time.perf_counter()
        notes: list[str] = []
        episode = self.make(notes)
        write_episode(self.path, episode)
        return JobResult(self.index, self.path, len(episode["image"]),
                         float(np.asarray(episode["reward"]).sum()), time.perf_counter() - start,
                         tuple(notes))


@dataclass(frozen=True)
class Workers:
    """Where jobs run: ``count`` processes (1: this one); ``setup`` and ``init`` as in
    :func:`~world_model.sim.pool.run_jobs`."""

    count: int = 1
    setup: Setup = contextlib.nullcontext
    init: Callable[[], None] | None = None


def run_missing(out: str | os.PathLike, manifest: str, settings: Mapping[str, Any],
                paths: Sequence[Path], job: Callable[[int, Path], EpisodeJob], *,
                workers: Workers = Workers(), frames: int | None = None,
                progress: Callable[[Progress], None] | None = None,
                what: str = "episodes", logger: logging.Logger = log) -> list[Path]:
    """Make every file of ``paths`` that ``out`` does not hold yet; returns ``paths``.

    Args:
        out: the output directory, created if missing.
        manifest: file name of the run's settings in ``out``; a resumed run must have the same
            ``settings`` (:class:`UserError` otherwise).
        paths: every file the run makes, in index order (``i`` is its position).
        job: ``job(i, paths[i])``, the job making a missing file (called here, before any runs).
        workers: where the jobs run.
        frames: a kept file must have this many frames (:class:`UserError` otherwise); None: any.
        progress: called once before any job runs, then after each finished file.
        what: the files' name in log messages ("episodes", "trajectories").
        logger: where the run and the jobs' notes are logged (the caller's module logger).

    An interrupt (KeyboardInterrupt, SIGTERM) loses at most the files in flight and leaves no
    temporary file; a corrupt kept file raises :class:`DataError` naming it.
    """
    paths = list(paths)
    total = len(paths)
    with OutputDir(out, manifest, settings) as out_dir:
        todo = [job(i, p) for i, p in enumerate(paths) if not out_dir.has_episode(p, frames)]
        done = total - len(todo)
        logger.info("%s: %d of %d %s present; making %d with %d worker(s)", out, done, total,
                    what, len(todo), workers.count)
        if progress is not None:
            progress(Progress(done, total))

        def on_result(result: JobResult) -> None:
            nonlocal done
            done += 1
            for note in result.notes:
                logger.warning(note)
            logger.debug("%s: %d frames, reward %.0f, %.1f s", result.path, result.frames,
                         result.reward, result.seconds)
            if progress is not None:
                progress(Progress(done, total, result))

        run_jobs(todo, workers=workers.count, setup=workers.setup, worker_init=workers.init,
                 on_result=on_result)
    return paths


@contextlib.contextmanager
def progress_bar(desc: str, unit: str,
                 postfix: Callable[[JobResult, float], str] | None = None
                 ) -> Iterator[Callable[[Progress], None]]:
    """For CLIs: a ``progress`` callback for :func:`run_missing` drawing a tqdm bar (made on the
    first report, starting at the files already present; closed on exit). ``postfix(result,
    frames_per_second)`` is shown after each finished file."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def report(p: Progress) -> None:
        if p.result is None:
            state.update(bar=tqdm(total=p.total, initial=p.done, unit=unit, desc=desc,
                                  dynamic_ncols=True), frames=0, start=time.perf_counter())
            return
        state["frames"] += p.result.frames
        if postfix is not None:
            rate = state["frames"] / max(time.perf_counter() - state["start"], 1e-9)
            state["bar"].set_postfix_str(postfix(p.result, rate), refresh=False)
        state["bar"].update(1)

    try:
        yield report
    finally:
        if "bar" in state:
            state["bar"].close()
