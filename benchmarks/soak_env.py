"""Soak the learned world: a vector env stepped for many imagined frames under random actions.

``RADVecEnv`` (stable-baselines3 semantics: a row that ends is reset at once from a new real
context) of ``--envs`` worlds is stepped with uniformly random actions until ``--frames`` frames
(all rows) are imagined. Every ``--every`` batched steps it prints a block: frames/s of the block,
the process's peak RSS so far (and its current RSS), episodes finished, and the non-finite
outputs found so far; a non-finite frame (its latent before decoding), reward or termination
probability is reported with its step and row the first time it appears. The summary: median
frames/s over the blocks after the first (the first holds the warm-up), RSS growth from the end of
the first block to the end (a leak shows as growth that keeps rising with ``--frames``), episodes
and auto-resets. With ``--idm DIR`` (an inverse-dynamics judge, ``rad train-idm``; the shipped
one by default for the shipped world) every block also reports the judge's accuracy on the
block's imagined transitions (frame, next frame of the same episode, under the action taken): the
world's action fidelity should not decay over the soak, so the summary compares every row's
first finished episode with the last round of episodes as long as it (the same ages of rollout)
against two standard errors of their difference. Exit status 1 when anything was
non-finite.

    python benchmarks/soak_env.py                                   # the shipped world
    python benchmarks/soak_env.py --checkpoint runs/rad --frames 100000 --envs 8 --json soak.json
    python benchmarks/soak_env.py --checkpoint runs/rad --data data/maze9 --max-steps 50

Without a context bank beside the weights (``RUN/contexts.npz``) pass ``--contexts FILE`` or
``--data DIR`` (contexts drawn from the episode files there).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now (MiB), from /proc (the peak where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mib()
    return pages * resource.getpagesize() / 2**20


class FiniteWatch:
    """Wraps the engine's ``step_latents`` and records, per imagined frame, whether its latent
    ``(N, C, h, w)``, reward and termination probability ``(N,)`` are finite."""

    def __init__(self, engine) -> None:
        self.inner, self.step = engine.step_latents, 0
        self.counts = {"frame": 0, "reward": 0, "termination": 0}
        self.first: dict[str, tuple[int, int]] = {}  # kind -> (batched step, row)
        engine.step_latents = self

    def __call__(self, state, actions):
        import torch

        info = self.inner(state, actions)
        rows = {"frame": ~torch.isfinite(info.latent).flatten(1).all(1)}
        if info.reward is not None:
            rows["reward"] = ~torch.isfinite(info.reward)
            rows["termination"] = ~torch.isfinite(info.termination_prob)
        for kind, bad in rows.items():
            bad = bad.cpu().numpy()
            self.counts[kind] += int(bad.sum())
            if bad.any() and kind not in self.first:
                self.first[kind] = (self.step, int(np.flatnonzero(bad)[0]))
        self.step += 1
        return info

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class IDMWatch:
    """Counts how often the judge names the action behind an imagined transition (a row's
    previous observation -> its new one, episodes not crossed): per block, and per finished
    episode of each row by its number (0: every row's first episode), so that episodes of the
    same ages are compared across the soak."""

    def __init__(self, idm) -> None:
        self.idm = idm
        """The judge (``world_model.evaluation.idm.load_idm``): ``encode`` and ``logits``."""
        self.prev_maps = None
        self.right = self.seen = 0
        self.rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # right, seen, episode
        self.episodes: dict[int, list[int]] = {}  # episode number -> [right, seen] of finished ones

    def observe(self, obs: np.ndarray, actions: np.ndarray | None, dones: np.ndarray | None):
        """``obs (N, S, S, 3)`` after ``actions (N,)`` (None: the first reset); ``dones (N,)``
        (a row that is done shows its next episode's first frame)."""
        import torch

        with torch.no_grad():
            maps = self.idm.encode(torch.from_numpy(np.ascontiguousarray(obs)))
            if actions is None or self.prev_maps is None:
                self.rows = tuple(np.zeros(len(obs), np.int64) for _ in range(3))
            else:
                dones = np.asarray(dones, bool)
                guess = self.idm.logits(self.prev_maps, maps).argmax(-1).cpu().numpy()
                ok = (guess == np.asarray(actions)) & ~dones
                right, seen, episode = self.rows
                right += ok
                seen += ~dones
                self.right += int(ok.sum())
                self.seen += int((~dones).sum())
                for row in np.flatnonzero(dones):
                    total = self.episodes.setdefault(int(episode[row]), [0, 0])
                    total[0] += int(right[row])
                    total[1] += int(seen[row])
                    right[row] = seen[row] = 0
                    episode[row] += 1
        self.prev_maps = maps

    def take(self) -> tuple[int, int]:
        """(right, seen) since the last call."""
        out = (self.right, self.seen)
        self.right = self.seen = 0
        return out


def fidelity_drift(episodes: dict[int, list[int]]) -> dict | None:
    """The judge's accuracy over every row's first finished episode and over the last episode
    number whose finished episodes hold at least half as many transitions (so that they cover
    the same ages: a world that ends episodes early leaves a few short ones at the end), their
    difference and two standard errors of it (binomial): ``within_noise`` when the difference is
    inside that band. None before two such episode numbers."""
    first = min(episodes, default=None)
    full = [k for k in episodes if k != first and 2 * episodes[k][1] >= episodes[first][1]]
    if first is None or not full:
        return None
    last = max(full)
    (r1, n1), (r2, n2) = episodes[first], episodes[last]
    p1, p2 = r1 / max(n1, 1), r2 / max(n2, 1)
    pooled = (r1 + r2) / max(n1 + n2, 1)
    band = 2 * float(np.sqrt(pooled * (1 - pooled) * (1 / max(n1, 1) + 1 / max(n2, 1))))
    return {"first_episode": first, "last_episode": last, "first": p1, "last": p2,
            "pairs": [n1, n2], "difference": p2 - p1, "two_se": band,
            "within_noise": abs(p2 - p1) <= band}


def make_env(args: argparse.Namespace):
    from rad_env.vector import RADVecEnv

    # one process: the soak watches this process's memory and patches its engine
    kwargs = {"steps": args.steps, "device": args.device, "dtype": args.dtype, "processes": 1}
    if args.max_steps:
        kwargs["max_steps"] = args.max_steps
    if args.contexts:
        kwargs["contexts"] = args.contexts
    if args.data:
        kwargs.update(context="data", data_dir=args.data)
    return RADVecEnv(args.envs, args.checkpoint, **kwargs)


def soak(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    env = make_env(args)
    worlds = env.worlds
    watch = FiniteWatch(worlds.engine)
    cuda = worlds.engine.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rng = np.random.default_rng(args.seed)
    env.seed(args.seed)
    obs = env.reset()
    judge = None
    if args.idm:
        from world_model.evaluation.idm import load_idm

        judge = IDMWatch(load_idm(args.idm))
    if judge is not None:
        judge.observe(obs, None, None)
    loaded = peak_rss_mib()
    N = args.envs
    total_steps = -(-args.frames // N)  # ceil: at least --frames frames
    print(f"world {worlds.run_dir} on {worlds.engine.device} ({args.dtype}, "
          f"{torch.get_num_threads()} threads): {N} envs, {worlds.sampling_steps} DDIM steps, "
          f"episodes of {worlds.max_steps} steps; {total_steps * N} frames in blocks of "
          f"{args.every} steps ({args.every * N} frames)")
    print(f"{'block':>5} {'frames':>9} {'frames/s':>9} {'peak RSS':>10} {'RSS now':>10} "
          f"{'episodes':>8} {'non-finite':>10}" + (f" {'IDM acc':>8}" if judge else ""))
    blocks, episodes, frames_done, step, reported = [], 0, 0, 0, set()
    start = time.perf_counter()
    while step < total_steps:
        n = min(args.every, total_steps - step)
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            actions = rng.integers(worlds.num_actions, size=N)
            obs, _, dones, _ = env.step(actions)
            episodes += int(dones.sum())
            if judge is not None:
                judge.observe(obs, actions, dones)
        sync()
        elapsed = time.perf_counter() - t0
        step += n
        frames_done += n * N
        block = {"block": len(blocks), "frames": frames_done, "frames_per_s": n * N / elapsed,
                 "peak_rss_mib": peak_rss_mib(), "rss_mib": current_rss_mib(),
                 "episodes": episodes, "non_finite": watch.total}
        if cuda:
            block["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if judge is not None:
            right, seen = judge.take()
            block.update(idm_accuracy=right / max(seen, 1), idm_pairs=seen)
        blocks.append(block)
        print(f"{block['block']:>5} {frames_done:>9} {block['frames_per_s']:>9.2f} "
              f"{block['peak_rss_mib']:>8.1f}Mi {block['rss_mib']:>8.1f}Mi {episodes:>8} "
              f"{watch.total:>10}"
              + (f" {block['idm_accuracy']:>8.3f}" if judge is not None else ""), flush=True)
        for kind, (at, row) in watch.first.items():
            if kind not in reported:  # each kind once, where it first appeared
                print(f"      non-finite {kind} first at batched step {at}, row {row}")
                reported.add(kind)
    env.close()
    steady = [b["frames_per_s"] for b in blocks[1:]] or [blocks[0]["frames_per_s"]]
    summary = {
        "checkpoint": str(worlds.run_dir), "device": str(worlds.engine.device),
        "dtype": args.dtype, "threads": torch.get_num_threads(), "envs": N,
        "ddim_steps": worlds.sampling_steps, "max_steps": worlds.max_steps,
        "frames": frames_done, "seconds": time.perf_counter() - start,
        "median_frames_per_s": float(np.median(steady)),
        "min_frames_per_s": float(np.min(steady)), "max_frames_per_s": float(np.max(steady)),
        "rss_after_load_mib": loaded, "peak_rss_first_block_mib": blocks[0]["peak_rss_mib"],
        "peak_rss_end_mib": blocks[-1]["peak_rss_mib"],
        "rss_growth_mib": blocks[-1]["peak_rss_mib"] - blocks[0]["peak_rss_mib"],
        "episodes_finished": episodes, "non_finite": dict(watch.counts),
        "first_non_finite": {k: {"step": at, "row": row} for k, (at, row) in watch.first.items()},
        "blocks": blocks,
    }
    if judge is not None:
        summary["idm"] = str(args.idm)
        summary["idm_by_episode"] = {k: {"right": r, "pairs": n}
                                     for k, (r, n) in sorted(judge.episodes.items())}
        summary["idm_drift"] = fidelity_drift(judge.episodes)
    return summary


def print_summary(s: dict) -> None:
    bad = sum(s["non_finite"].values())
    over = "block 0 (the only one)" if len(s["blocks"]) == 1 else f"blocks 1-{len(s['blocks']) - 1}"
    print(f"summary: {s['frames']} frames in {s['seconds']:.1f} s; median "
          f"{s['median_frames_per_s']:.2f} frames/s over {over} (min {s['min_frames_per_s']:.2f}, max "
          f"{s['max_frames_per_s']:.2f}); peak RSS {s['peak_rss_first_block_mib']:.1f} MiB after "
          f"block 0, {s['peak_rss_end_mib']:.1f} MiB at the end (growth "
          f"{s['rss_growth_mib']:+.1f} MiB); {s['episodes_finished']} episodes finished and "
          f"reset; non-finite: "
          + (", ".join(f"{n} {kind}s" for kind, n in s["non_finite"].items() if n) if bad
             else "none"))
    if "idm" in s:
        d = s["idm_drift"]
        if d is None:
            print(f"judge ({s['idm']}): fewer than two full rounds of episodes finished, no "
                  f"drift to compare (a longer soak, or --max-steps)")
        else:
            print(f"judge ({s['idm']}): action named right in {d['first']:.3f} of the imagined "
                  f"transitions of every row's episode {d['first_episode']}, {d['last']:.3f} in "
                  f"episode {d['last_episode']} ({d['pairs'][0]} and {d['pairs'][1]} pairs; "
                  f"difference {d['difference']:+.3f}, two standard errors {d['two_se']:.3f}: "
                  f"{'within noise' if d['within_noise'] else 'OUTSIDE noise'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", metavar="RUN",
                        help="world run directory (default: the shipped world)")
    parser.add_argument("--frames", type=int, default=100_000,
                        help="imagined frames, all envs together (default: %(default)s)")
    parser.add_argument("--envs", type=int, default=8, help="vector env rows (default: 8)")
    parser.add_argument("--every", type=int, default=50,
                        help="batched steps per reported block (default: 50)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the env's)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="episode length (default: the world's); short ones exercise resets")
    parser.add_argument("--contexts", metavar="FILE", help="a context bank instead of RUN's")
    parser.add_argument("--data", metavar="DIR", help="draw contexts from these episode files")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: cpu)")
    parser.add_argument("--dtype", default="auto",
                        help="auto (bfloat16 where native, else float32), float32, bfloat16, float16")
    parser.add_argument("--idm", metavar="DIR", default=None,
                        help="inverse-dynamics judge for the per-block action fidelity (default: "
                             "the shipped one for the shipped world; 'none' to skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the summary and blocks here")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.envs < 1 or args.every < 1:
        parser.error("--frames, --envs and --every must be >= 1")

    from rad_env.worlds import SHIPPED_WORLD, world_sampler
    from world_model.loading import shipped_weights

    SHIPPED_IDM = shipped_weights("memory-maze-9x9-idm")
    from world_model.errors import RadError

    try:
        args.steps = world_sampler(args.checkpoint or SHIPPED_WORLD, args.steps).steps
        if args.idm is None and args.checkpoint is None and SHIPPED_IDM.is_dir():
            args.idm = str(SHIPPED_IDM)
        if args.idm == "none":
            args.idm = None
        summary = soak(args)
    except RadError as exc:
        hint = "" if args.checkpoint else " (pass --checkpoint RUN to soak a world you trained)"
        if "context bank" in str(exc):
            hint += " (soak_env.py: --contexts FILE, or --data DIR to draw contexts from episodes)"
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"results: {args.json}")
    return 1 if sum(summary["non_finite"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
