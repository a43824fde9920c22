"""Run picklable jobs here or in worker processes, and stop them all on Ctrl-C or SIGTERM.

Generic: nothing here knows a simulator. A job is a zero-argument callable returning a
:class:`JobResult`; what every process needs around its jobs (a patched simulator, quiet logs) is
passed in as ``setup`` and ``worker_init``. Used by the driver of resumable runs,
:mod:`world_model.sim.jobs`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: A zero-argument callable returning a context manager, entered once in every process that runs
#: jobs (this one, or each worker) around all its jobs. Picklable (it is sent to the workers).
Setup = Callable[[], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports back: the file it wrote, how long it took, and ``notes``
    (warnings, logged by the parent process)."""

    index: int
    path: str
    frames: int
    reward: float
    seconds: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    """Progress report: ``done`` of ``total`` files exist; ``result`` is the job just finished
    (``None`` for the first report, made before any job runs)."""

    done: int
    total: int
    result: JobResult | None = None


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt (main thread only), so cleanup code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_worker(signum: int, frame: object) -> None:
    # The worker is about to exit: objects half-built when the signal landed (e.g. a MuJoCo GL
    # context) complain from __del__; their complaints are noise now.
    sys.unraisablehook = lambda unraisable: None
    raise KeyboardInterrupt(f"signal {signum}")


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)  # orphaned: stop like an interrupted worker


def _worker_main(tasks: Any, results: Any, setup: Setup,
                 worker_init: Callable[[], None] | None) -> None:
    """Worker process: run jobs from ``tasks`` until a ``None``; report to ``results``.

    Ctrl-C is left to the parent, which stops workers with SIGTERM; SIGTERM (or the parent
    dying) interrupts the job in flight, whose atomic write then leaves no file behind.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        if worker_init is not None:
            worker_init()
        with setup():
            while (job := tasks.get()) is not None:
                try:
                    results.put(("ok", job()))
                except Exception as exc:  # noqa: BLE001 -- any failure goes to the parent
                    try:
                        pickle.dumps(exc)
                    except Exception:  # noqa: BLE001 -- unpicklable: send its text instead
                        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
                    results.put(("error", (exc, traceback.format_exc())))
                    return
    except KeyboardInterrupt:
        return


def run_jobs(jobs: Sequence[Callable[[], JobResult]], *, workers: int = 1,
             setup: Setup = contextlib.nullcontext,
             worker_init: Callable[[], None] | None = None,
             on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Run picklable zero-argument ``jobs``, each returning a :class:`JobResult`.

    ``workers == 1`` runs them here; more runs them in that many ``spawn`` processes. ``setup()``
    is entered around the jobs wherever they run; ``worker_init()`` runs first in each worker
    process. Ctrl-C or SIGTERM stops every job in flight and re-raises
    :class:`KeyboardInterrupt`; a failed job stops the run and its exception is re-raised here.
    """
    results: list[JobResult] = []

    def report(result: JobResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if not jobs:
        return results
    with _sigterm_as_interrupt():
        if workers <= 1 or len(jobs) == 1:
            with setup():
                for job in jobs:
                    report(job())
        else:
            _run_in_processes(jobs, min(workers, len(jobs)), setup, worker_init, report)
    return results


def _run_in_processes(jobs: Sequence[Callable[[], JobResult]], workers: int, setup: Setup,
                      worker_init: Callable[[], None] | None,
                      report: Callable[[JobResult], None]) -> None:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for job in jobs:
        tasks.put(job)
    for _ in range(workers):
        tasks.put(None)
    procs = [ctx.Process(target=_worker_main, args=(tasks, results, setup, worker_init),
                         daemon=True, name=f"rad-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    remaining = len(jobs)
    try:
        while remaining:
            try:
                kind, payload = results.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"worker {dead[0].name} died (exit code {dead[0].exitcode})")
                if all(p.exitcode is not None for p in procs):
                    raise RuntimeError(f"workers stopped with {remaining} job(s) left")
                continue
            if kind == "error":
                exc, tb = payload
                log.debug("worker traceback:\n%s", tb)
                raise exc
            report(payload)
            remaining -= 1
    finally:
        if remaining:  # jobs left in the pipe must not keep this process from exiting
            tasks.cancel_join_thread()
        for p in procs:
            if remaining:
                p.terminate()  # SIGTERM: interrupts the job in flight, which cleans up
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
