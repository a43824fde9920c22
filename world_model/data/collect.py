"""Collect Memory Maze trajectories with the scripted exploration policy, in parallel, resumably.

Episode ``i`` of a run is fully determined by ``episode_seed(seed, i)``: it seeds the simulator
(a fresh ``dm_env`` task per episode, first maze of that task) and the policy's generator, and is
stored in the file as the scalar ``seed``. Files are ``OUT/ep_{i:06d}.npz``, written atomically,
so re-running the same command keeps finished episodes and collects only the missing ones.

:func:`collect` is the API (``rad collect`` is its CLI). :class:`EpisodeRecorder`,
:class:`OutputDir` and :func:`run_jobs` are shared with :mod:`world_model.data.evalset`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from world_model.data import fast_maze
from world_model.data.format import GLOBAL_KEYS, episode_length, one_hot_actions, write_episode
from world_model.data.memory_maze import NUM_ACTIONS, SIZES, make_dm_env, parse_size
from world_model.data.policies import ExplorationConfig, ExplorationPolicy
from world_model.errors import DataError, UserError

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

_COLLECT_TAG = 0x636F6C6C  # "coll": keeps collection seeds apart from evaluation-set seeds


def episode_seed(seed: int, index: int) -> int:
    """Simulator and policy seed of episode ``index`` of a run with base ``seed``: an int in
    ``[0, 2**32)``, the range ``numpy.random.RandomState`` accepts."""
    return int(np.random.SeedSequence([seed, index, _COLLECT_TAG]).generate_state(1)[0])


def episode_path(out: str | os.PathLike, index: int) -> Path:
    """``OUT/ep_{index:06d}.npz``."""
    return Path(out) / f"ep_{index:06d}.npz"


# ---------------------------------------------------------------------------------------------
# Recording


class EpisodeRecorder:
    """Accumulates dm_env observations into the official episode layout (data-format.md).

    :meth:`episode` gives ``image`` ``(T+1, 64, 64, 3)`` uint8, ``action`` ``(T+1, 6)`` float32
    one-hot with an all-zero first row, ``reward`` ``(T+1,)`` float32 with ``reward[0] = 0``, and
    every global observable with a leading ``T+1`` axis in the simulator's dtype (float64;
    ``maze_layout`` uint8).
    """

    KEYS = ("image", *GLOBAL_KEYS)

    def __init__(self, first_obs: Mapping[str, np.ndarray]) -> None:
        missing = [k for k in self.KEYS if k not in first_obs]
        if missing:
            raise ValueError(f"observation lacks {missing}: build the env with "
                             "global_observables=True, image_only_obs=False")
        self._frames: dict[str, list[np.ndarray]] = {k: [] for k in self.KEYS}
        self._actions: list[int] = []
        self._rewards: list[float] = [0.0]
        self._add_obs(first_obs)

    def __len__(self) -> int:
        """Frames recorded so far (T+1)."""
        return len(self._rewards)

    def add(self, action: int, reward: float | None, obs: Mapping[str, np.ndarray]) -> None:
        """Record one step: the action taken, the reward it earned, the observation it led to."""
        self._actions.append(int(action))
        self._rewards.append(float(reward or 0.0))
        self._add_obs(obs)

    def _add_obs(self, obs: Mapping[str, np.ndarray]) -> None:
        for key, frames in self._frames.items():
            frames.append(np.array(obs[key], copy=True))  # the simulator may reuse its buffers

    def column(self, key: str) -> np.ndarray:
        """One observation key stacked over time, ``(T+1, ...)``."""
        return np.stack(self._frames[key])

    def episode(self, **scalars: int) -> dict[str, np.ndarray]:
        """The episode for :func:`~world_model.data.format.write_episode`; ``scalars`` (``seed``,
        ``context_frames``, ``outbound_frames``) are stored as int64 scalars."""
        ep = {k: np.stack(v) for k, v in self._frames.items()}
        ep["action"] = one_hot_actions(np.array(self._actions, dtype=np.int64), NUM_ACTIONS)
        ep["reward"] = np.array(self._rewards, dtype=np.float32)
        ep.update({k: np.int64(v) for k, v in scalars.items()})
        return ep


def collect_episode(size: str, seed: int, steps: int, noise: float) -> dict[str, np.ndarray]:
    """One exploration episode in memory: ``make_dm_env(size, seed)``, its first maze, ``steps``
    steps of :class:`ExplorationPolicy` driven by ``np.random.default_rng(seed)``. The same
    arguments give the same arrays."""
    env = make_dm_env(size, seed=seed, global_observables=True, image_only_obs=False)
    try:
        policy = ExplorationPolicy(np.random.default_rng(seed), ExplorationConfig(noise=noise))
        obs = env.reset().observation
        rec = EpisodeRecorder(obs)
        for _ in range(steps):
            action = policy.act(obs)
            ts = env.step(action)
            obs = ts.observation
            rec.add(action, ts.reward, obs)
            if ts.last():
                break
    finally:
        env.close()
    if len(rec) != steps + 1:
        raise RuntimeError(f"episode with seed {seed} ended after {len(rec) - 1} of {steps} steps")
    return rec.episode(seed=seed)


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
class CollectJob:
    """Collect and write one episode (picklable: sent to worker processes)."""

    index: int
    path: str
    size: str
    seed: int
    steps: int
    noise: float

    def __call__(self) -> JobResult:
        start = time.perf_counter()
        ep = collect_episode(self.size, self.seed, self.steps, self.noise)
        write_episode(self.path, ep)
        return JobResult(self.index, self.path, len(ep["image"]), float(ep["reward"].sum()),
                         time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Output directory: one writer at a time, settings fixed, no stale temporary files


class OutputDir:
    """Context manager guarding an output directory for a resumable run.

    On entry: creates ``root``, takes an exclusive lock (``.rad.lock``; a second writer gets a
    :class:`UserError`), checks ``manifest`` (a JSON file of the run's settings) against
    ``settings`` or writes it, and deletes stale temporary files (``.*.tmp``) that an
    earlier, killed run left. On exit it deletes temporary files again and releases the lock.
    """

    def __init__(self, root: str | os.PathLike, manifest: str, settings: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = self.root / manifest
        self.settings = dict(settings)
        self._lock_fd: int | None = None

    def __enter__(self) -> Self:
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".rad.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.root}: another process is writing to this directory") from None
        self._lock_fd = fd
        try:
            self._check_manifest()
            self.remove_temporary_files()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove_temporary_files()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _check_manifest(self) -> None:
        if self.manifest.exists():
            try:
                old = json.loads(self.manifest.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"{self.manifest}: unreadable ({exc}); delete it to continue") from exc
            diff = {k: (old.get(k), v) for k, v in self.settings.items() if old.get(k) != v}
            if diff:
                details = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise UserError(f"{self.root} holds a run with other settings ({details}); "
                                "use the same settings to resume or another --out")
        else:
            self.manifest.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")

    def remove_temporary_files(self) -> int:
        """Delete ``.*.tmp`` files (partial writes of killed runs); returns how many."""
        stale = list(self.root.glob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info("%s: removed %d stale temporary file(s)", self.root, len(stale))
        return len(stale)

    def has_episode(self, path: str | os.PathLike, frames: int | None = None) -> bool:
        """Whether ``path`` is a finished episode (of ``frames`` frames when given).

        Raises :class:`DataError` for a corrupt file and :class:`UserError` for a wrong length.
        """
        path = Path(path)
        if not path.exists():
            return False
        try:
            n = episode_length(path)
        except DataError as exc:
            raise DataError(f"{exc}; delete it and re-run to collect it again") from exc
        if frames is not None and n != frames:
            raise UserError(f"{path} has {n} frames but this run makes {frames}; "
                            "use the same --steps or another --out")
        return True


# ---------------------------------------------------------------------------------------------
# Running jobs in this process or in worker processes


@dataclass(frozen=True)
class Progress:
    """Progress report: ``done`` of ``total`` files exist; ``result`` is the job just finished
    (``None`` for the first report, made before any job runs)."""

    done: int
    total: int
    result: JobResult | None = None


def quiet_simulator_logs() -> None:
    """Hide dm_control/absl/PyOpenGL start-up chatter below ERROR (e.g. "Cannot set velocity on
    Entity with no free joint", printed at every reset)."""
    for name in ("absl", "OpenGL"):
        logging.getLogger(name).setLevel(logging.ERROR)


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


def _worker_main(tasks: Any, results: Any, fast: bool) -> None:
    """Worker process: run jobs from ``tasks`` until a ``None``; report to ``results``.

    Ctrl-C is left to the parent, which stops workers with SIGTERM; SIGTERM (or the parent
    dying) interrupts the job in flight, whose atomic write then leaves no file behind.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    quiet_simulator_logs()
    try:
        if fast:
            fast_maze.patch_target_contacts()
        while (job := tasks.get()) is not None:
            try:
                results.put(("ok", job()))
            except Exception as exc:  # noqa: BLE001 -- any failure goes to the parent, which raises it
                try:
                    pickle.dumps(exc)
                except Exception:  # noqa: BLE001 -- unpicklable: send its text instead
                    exc = RuntimeError(f"{type(exc).__name__}: {exc}")
                results.put(("error", (exc, traceback.format_exc())))
                return
    except KeyboardInterrupt:
        return


def run_jobs(jobs: Sequence[Callable[[], JobResult]], *, workers: int = 1, fast: bool = True,
             on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Run picklable zero-argument ``jobs``, each returning a :class:`JobResult`.

    ``workers == 1`` runs them here; more runs them in that many ``spawn`` processes. ``fast``
    selects the vectorised target-contact check (:mod:`world_model.data.fast_maze`) where they
    run (here, the previous choice is restored afterwards). Ctrl-C or SIGTERM stops every job in
    flight and re-raises :class:`KeyboardInterrupt`; a failed job stops the run and its
    exception is re-raised here.
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
            with fast_maze.fast_target_contacts(fast):
                for job in jobs:
                    report(job())
        else:
            _run_in_processes(jobs, min(workers, len(jobs)), fast, report)
    return results


def _run_in_processes(jobs: Sequence[Callable[[], JobResult]], workers: int, fast: bool,
                      report: Callable[[JobResult], None]) -> None:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for job in jobs:
        tasks.put(job)
    for _ in range(workers):
        tasks.put(None)
    procs = [ctx.Process(target=_worker_main, args=(tasks, results, fast), daemon=True,
                         name=f"rad-worker-{i}") for i in range(workers)]
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


# ---------------------------------------------------------------------------------------------


def collect(out: str | os.PathLike, episodes: int, *, env: str = "memory-maze-9x9",
            steps: int = 1000, workers: int = 1, seed: int = 0, noise: float = 0.25,
            fast: bool = True, progress: Callable[[Progress], None] | None = None) -> list[Path]:
    """Collect ``episodes`` exploration episodes of ``steps`` steps each into ``out``.

    Episodes already in ``out`` (from an earlier, possibly interrupted run with the same
    settings) are kept; only missing indices are collected. An interrupt (KeyboardInterrupt,
    SIGTERM) loses at most the episodes in flight and leaves no temporary file.

    Args:
        out: output directory, created if missing; holds ``ep_{i:06d}.npz`` and
            ``rad-collect.json`` (the run's settings, checked on resume).
        episodes: total number of episodes wanted in ``out``.
        env: ``"memory-maze-9x9"`` (or 11x11, 13x13, 15x15).
        steps: actions per episode (files hold ``steps + 1`` frames); at most the size's episode
            length (1000 for 9x9).
        workers: processes collecting in parallel; 1 runs in this process.
        seed: base seed; episode ``i`` uses ``episode_seed(seed, i)``.
        noise: probability of a uniformly random action at each step.
        fast: vectorised target-contact check (:mod:`world_model.data.fast_maze`), same frames.
        progress: called here once before collecting and after each finished episode.

    Returns:
        The paths of all ``episodes`` files, in index order.
    """
    try:
        size = parse_size(env)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    if not 1 <= steps <= SIZES[size]:
        raise UserError(f"--steps must be in [1, {SIZES[size]}] for memory-maze-{size}, got {steps}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if not 0.0 <= noise <= 1.0:
        raise UserError(f"--noise must be a probability in [0, 1], got {noise}")

    settings = {"env": f"memory-maze-{size}", "steps": steps, "seed": seed, "noise": noise,
                "policy": "navigate-to-random-cells"}
    paths = [episode_path(out, i) for i in range(episodes)]
    with OutputDir(out, "rad-collect.json", settings) as out_dir:
        todo = [CollectJob(i, str(p), size, episode_seed(seed, i), steps, noise)
                for i, p in enumerate(paths) if not out_dir.has_episode(p, steps + 1)]
        done = episodes - len(todo)
        log.info("%s: %d of %d episodes present; collecting %d with %d worker(s)",
                 out, done, episodes, len(todo), workers)
        if progress is not None:
            progress(Progress(done, episodes))

        def on_result(result: JobResult) -> None:
            nonlocal done
            done += 1
            log.debug("episode %d: %d frames, reward %.0f, %.1f s", result.index, result.frames,
                      result.reward, result.seconds)
            if progress is not None:
                progress(Progress(done, episodes, result))

        run_jobs(todo, workers=workers, fast=fast, on_result=on_result)
    return paths
