"""N learned worlds split across worker processes (``EnvConfig.processes``), one engine each.

On a CPU a frame of the shipped world is a dozen network passes over 16 tokens: many small
kernels, which two torch threads in one process share badly. :class:`ShardedWorlds` splits the
rows into ``processes`` contiguous shards; each worker process holds a
:class:`~rad_env.worlds.BatchedWorlds` of its shard with ``cpu_count // processes`` torch threads,
and every call goes to the shards at once (each steps its rows while the others do). The vector
faces (``RADVecEnv``, ``RADVectorEnv``) take it through :func:`make_worlds` and see the same
interface as ``BatchedWorlds``: row ``i`` of the whole is row ``i - start`` of its shard, its
seeds and contexts are the same, and its frames equal the unsharded ones up to the rounding of
a smaller batch (``tests/test_rad_vector.py``). What stays in the workers: the engine (there is
no ``.engine`` here; benchmarks that patch it use one process).

Workers are started with the ``spawn`` method (a forked torch can hang), load the world
themselves, and exit with the parent (daemon processes; :meth:`ShardedWorlds.close`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rad_env.config import EnvConfig
from rad_env.worlds import BatchedWorlds, StepResult, WorldSnapshot
from world_model.devices import resolve_device
from world_model.engine.checks import check_actions
from world_model.errors import UserError

__all__ = ["ROWS_PER_PROCESS", "ShardedSnapshot", "ShardedWorlds", "choose_processes",
           "make_worlds"]

ROWS_PER_PROCESS = 8
"""``processes="auto"`` gives each worker process at least this many rows. Measured on the 2-core
Zen 4 (docs/env.md, ``bench_env.py --processes 1 2 --rounds``): two processes beat one at 16, 32
and 64 rows in most rounds and lose at 8 rows (4 each), in every round."""


def choose_processes(config: EnvConfig, num_envs: int) -> int:
    """The worker processes for ``num_envs`` rows: ``config.processes`` when it is a number; for
    ``"auto"``, ``min(cores, num_envs // ROWS_PER_PROCESS)`` (at least 1) when the engine runs
    eager on a CPU, else 1 (a GPU is one device; the compiled engine measured slower in two
    processes than in one)."""
    if config.processes != "auto":
        return int(config.processes)
    if config.compile or resolve_device(config.device).type != "cpu":
        return 1
    return max(1, min(_cpus(), int(num_envs) // ROWS_PER_PROCESS))


def make_worlds(num_envs: int, checkpoint: Any, config: EnvConfig | None = None,
                **options: Any) -> BatchedWorlds | ShardedWorlds:
    """The core of a vector face: :class:`BatchedWorlds` in this process, or
    :class:`ShardedWorlds` when ``processes`` (``config`` or ``options``; see
    :func:`choose_processes`) comes to more than 1."""
    cfg = EnvConfig.from_kwargs(config, **options)
    processes = choose_processes(cfg, num_envs)
    if processes > 1 and int(num_envs) > 1:
        return ShardedWorlds(num_envs, checkpoint, config=dataclasses.replace(cfg, processes=processes))
    return BatchedWorlds(num_envs, checkpoint, config=dataclasses.replace(cfg, processes=1))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _serve(conn, num_envs: int, checkpoint: Any, config: EnvConfig, threads: int) -> None:
    """A worker: one ``BatchedWorlds`` of ``num_envs`` rows, answering ``(method, args)`` with
    ``("ok", value)`` or ``("error", exception)`` until ``close``."""
    import torch

    torch.set_num_threads(threads)
    try:
        worlds = BatchedWorlds(num_envs, checkpoint, config=config)
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("error", exc))
        return
    conn.send(("ok", {name: getattr(worlds, name) for name in _COPIED}))
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the parent is gone
            break
        if method == "close":
            worlds.close()
            conn.send(("ok", None))
            break
        try:
            value = getattr(worlds, method)(*args)
            if method == "reset_rows":  # the new first frames and infos come back with it
                value = (worlds.obs.copy(), {j: worlds.reset_info(j) for j in args[0]})
            elif method == "restore":
                value = worlds.obs.copy()
            conn.send(("ok", value))
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            conn.send(("error", exc))


#: Attributes of a shard's ``BatchedWorlds`` the whole exposes as its own (equal in every shard).
_COPIED = ("run_dir", "env_id", "real_env", "reward_mode", "reward_threshold", "max_steps",
           "sampling_steps", "frame_size", "num_actions", "observation_space", "action_space")


@dataclass
class ShardedSnapshot:
    """Every shard's :class:`~rad_env.worlds.WorldSnapshot`, in row order (what
    :meth:`ShardedWorlds.snapshot` returns and :meth:`ShardedWorlds.restore` takes)."""

    parts: list[WorldSnapshot]
    reset_infos: dict[int, dict[str, Any]]
    """Every row's info after its last reset, as :meth:`ShardedWorlds.reset_info` gives it."""
    extra: dict[str, Any] = field(default_factory=dict)


class ShardedWorlds:
    """``num_envs`` rows of a learned world in ``config.processes`` worker processes, behind the
    interface of :class:`~rad_env.worlds.BatchedWorlds` (see the module).

    Raises:
        UserError, CheckpointError: what a worker's ``BatchedWorlds`` raised (a bad option, a
            missing world), in this process.
    """

    def __init__(self, num_envs: int, checkpoint: Any = None, *,
                 config: EnvConfig | None = None, **options: Any) -> None:
        cfg = EnvConfig.from_kwargs(config, **options)
        N = int(num_envs)
        if N < 1:
            raise UserError(f"num_envs must be >= 1, got {num_envs}")
        K = min(choose_processes(cfg, N), N)
        sizes = [N // K + (k < N % K) for k in range(K)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        """Row ``i`` lives in shard ``k`` where ``starts[k] <= i < starts[k + 1]``."""
        self.num_envs, self.config, self.processes = N, cfg, K
        self.threads = max(1, _cpus() // K)
        ctx = multiprocessing.get_context("spawn")
        shard_cfg = dataclasses.replace(cfg, processes=1)
        self._conns, self._procs = [], []
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, size, checkpoint, shard_cfg, self.threads),
                               daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            meta = self._gather()[0]
        except BaseException:
            self.close()
            raise
        for name in _COPIED:
            setattr(self, name, meta[name])
        H = self.frame_size
        self.obs = np.zeros((N, H, H, 3), np.uint8)
        """``(N, H, W, 3)``: every row's last frame (the episode counters, the started and ended
        flags live in the shards, which raise ``ResetNeeded`` before a reset)."""
        self._reset_infos: dict[int, dict[str, Any]] = {}

    # -- talking to the shards -------------------------------------------------------------------
    def _gather(self, shards: list[int] | None = None) -> list[Any]:
        """The replies of ``shards`` (all), in order; the first error is raised here."""
        replies = []
        for k in range(self.processes) if shards is None else shards:
            try:
                replies.append(self._conns[k].recv())
            except EOFError:
                raise UserError(f"learned-env worker {k} (pid {self._procs[k].pid}) died "
                                f"(exit code {self._procs[k].exitcode}); see its output above") from None
        for status, value in replies:
            if status == "error":
                raise value
        return [value for _, value in replies]

    def _call(self, calls: dict[int, tuple[str, tuple]]) -> dict[int, Any]:
        """Send every shard its ``(method, args)`` at once, then collect the answers."""
        if not hasattr(self, "_conns") or not self._conns:
            raise UserError("this learned env is closed")
        for k, call in calls.items():
            self._conns[k].send(call)
        return dict(zip(calls, self._gather(list(calls))))

    def _by_shard(self, rows) -> dict[int, list[int]]:
        """Rows of the whole -> {shard: its local rows}."""
        out: dict[int, list[int]] = {}
        for r in rows:
            r = int(r)
            if not 0 <= r < self.num_envs:
                raise UserError(f"row {r} out of range for {self.num_envs} environments")
            k = int(np.searchsorted(self.starts, r, side="right") - 1)
            out.setdefault(k, []).append(r - int(self.starts[k]))
        return out

    def _slices(self) -> list[slice]:
        return [slice(int(a), int(b)) for a, b in zip(self.starts[:-1], self.starts[1:])]

    # -- rows ------------------------------------------------------------------------------------
    def seed_row(self, row: int, seed: int | np.random.Generator) -> None:
        """As :meth:`BatchedWorlds.seed_row` (a generator is copied into the worker)."""
        ((k, (local,)),) = self._by_shard([row]).items()
        self._call({k: ("seed_row", (local, seed))})

    def reset_rows(self, rows, options: dict[str, Any] | None = None) -> None:
        """As :meth:`BatchedWorlds.reset_rows`: every shard resets its rows at once."""
        groups = self._by_shard(rows)
        replies = self._call({k: ("reset_rows", (local, options)) for k, local in groups.items()})
        for k, (obs, infos) in replies.items():
            start = int(self.starts[k])
            self.obs[start:int(self.starts[k + 1])] = obs
            for j, info in infos.items():
                self._reset_infos[start + j] = info

    def reset_info(self, row: int) -> dict[str, Any]:
        """Row ``row``'s info after its last reset."""
        return dict(self._reset_infos[int(row)])

    # -- frames ----------------------------------------------------------------------------------
    def step(self, actions: Any) -> StepResult:
        """Imagine one frame for every row: ``actions (N,)`` -> the merged :class:`StepResult`."""
        actions = check_actions(actions, (self.num_envs,), self.num_actions).cpu().numpy()
        parts = self._call({k: ("step", (actions[s],)) for k, s in enumerate(self._slices())})
        return self._merge([parts[k] for k in range(self.processes)])

    def observe(self, frames: Any, actions: Any) -> StepResult:
        """Feed real frames ``(N, H, W, 3)`` uint8 reached by ``actions (N,)`` (see
        :meth:`BatchedWorlds.observe`)."""
        frames = np.asarray(frames)
        if frames.shape[:1] != (self.num_envs,):
            raise UserError(f"frames must have {self.num_envs} rows, got shape {frames.shape}")
        actions = check_actions(actions, (self.num_envs,), self.num_actions).cpu().numpy()
        parts = self._call({k: ("observe", (frames[s], actions[s]))
                            for k, s in enumerate(self._slices())})
        return self._merge([parts[k] for k in range(self.processes)])

    def _merge(self, parts: list[StepResult]) -> StepResult:
        cat = {f.name: np.concatenate([getattr(p, f.name) for p in parts])
               for f in dataclasses.fields(StepResult) if f.name not in ("imagined", "sampling_steps")}
        result = StepResult(**cat, imagined=parts[0].imagined, sampling_steps=parts[0].sampling_steps)
        self.obs[:] = result.obs
        return result

    # -- branching -------------------------------------------------------------------------------
    def snapshot(self) -> ShardedSnapshot:
        """Every shard's snapshot (see :meth:`BatchedWorlds.snapshot`)."""
        parts = self._call({k: ("snapshot", ()) for k in range(self.processes)})
        return ShardedSnapshot([parts[k] for k in range(self.processes)], dict(self._reset_infos))

    def restore(self, snapshot: ShardedSnapshot) -> None:
        """Go back to ``snapshot`` (from this object's :meth:`snapshot`; it stays valid)."""
        if not isinstance(snapshot, ShardedSnapshot) or len(snapshot.parts) != self.processes or \
                [p.state.batch_size for p in snapshot.parts] != list(np.diff(self.starts)):
            raise UserError(f"this snapshot was not taken from a learned env of {self.num_envs} "
                            f"environments in {self.processes} processes")
        obs = self._call({k: ("restore", (snapshot.parts[k],)) for k in range(self.processes)})
        for k, s in enumerate(self._slices()):
            self.obs[s] = obs[k]
        self._reset_infos = dict(snapshot.reset_infos)

    def state_bytes(self) -> int:
        """Bytes of engine state per row (shard 0's)."""
        return self._call({0: ("state_bytes", ())})[0]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for conn, proc in zip(getattr(self, "_conns", []), getattr(self, "_procs", [])):
            try:
                if proc.is_alive():
                    conn.send(("close", ()))
                    conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
            conn.close()
        self._conns, self._procs = [], []

    def __del__(self) -> None:  # a forgotten close() must not leave workers behind
        with contextlib.suppress(Exception):  # at interpreter shutdown modules may be gone
            self.close()
