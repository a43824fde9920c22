"""Rollout speed: the cached O(1)-per-frame engine vs recomputing the whole window.

For each batch size B and DDIM step count S, one rollout of B worlds:

* engine:    ``RolloutEngine.step``: S single-frame denoising passes against the KV ring buffer,
             one clean pass, one memory write. Timed per frame at frame ``--early`` (50) and at
             frame ``--late`` (1000) of the same rollout; the ratio shows that the cost does not
             grow with the rollout length. Bytes of world state per row at both points.
* recompute: how Diffusion Forcing and Oasis sample: every denoising step runs ``model.forward``
             on all frames of the window (the clean context frames at level 0 and the noisy new
             frame), with the same memory reads and writes. Timed at frame ``--early`` (its cost
             is bounded by the window too, but is paid ~W times per step).

The rollout is advanced between the timed points by observing random latents (two passes a frame:
the state is the same as after generating them, at a fraction of the cost); a batch of B rows is B
copies of that one world, each row with its own seed. Weights are random (timing only). Medians
over ``--measure`` frames after one warm-up frame; on the CPU the process CPU time (the machine's
cores are shared, so wall time mostly measures the neighbours), on CUDA the synchronised wall time.

    python benchmarks/bench_rollout.py --config cpu-small --window 20 --batch 1 16 --steps 5 20
    python benchmarks/bench_rollout.py --checkpoint runs/rad-lstm --device cuda
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time


def world_for(args):
    import torch

    from world_model.checkpoint import load
    from world_model.configs import resolve_config
    from world_model.world import build_world

    if args.checkpoint:
        return load(args.checkpoint, args.device)
    sets = [] if args.window is None else [f"model.window={args.window}"]
    sets += [f"model.memory={args.memory}", f"model.mode={args.mode}"]
    config = resolve_config(args.config, sets)
    if config.latent.kind != "pixels":
        sys.exit(f"--config {args.config}: use a pixel-latent config or --checkpoint")
    torch.manual_seed(0)
    world = build_world(config)
    world.model.eval().requires_grad_(False)
    return world.to(args.device)


class WindowRecompute:
    """The recompute-the-window sampler on the same model (benchmark baseline).

    Keeps the clean latents, actions and memory reads of the frames in the window; memory
    bookkeeping as in the engine (frame mode: the frame leaving the window is written; chunk mode:
    every frame is written into a running state that becomes the read state at chunk ends).
    """

    def __init__(self, engine, batch: int) -> None:
        self.engine, self.model = engine, engine.model
        self.W, self.mode = engine.window, engine.mode
        self.history: collections.deque = collections.deque(maxlen=max(self.W - 1, 1))
        self.memory = self.model.init_memory(batch, engine.device)
        self.running = self.model.init_memory(batch, engine.device)
        self.t = 0

    def _context(self):
        import torch

        from world_model.network.windows import window_start

        P = self.t - int(window_start(torch.tensor(self.t), self.W, self.mode))
        return list(self.history)[len(self.history) - P:] if P else []

    def append(self, latent, actions) -> None:
        """Make ``latent`` the next clean frame (memory write, history)."""
        read = self.memory
        if self.model.has_memory:
            if self.mode == "chunk":
                self.running = self.model.write_frame(latent, actions, self.running)
                if (self.t + 1) % self.W == 0:
                    self.memory = self.running
            elif self.W == 1:
                self.memory = self.model.write_frame(latent, actions, self.memory)
            elif self.t >= self.W - 1:
                old = self.history[0]
                self.memory = self.model.write_frame(old[0], old[1], self.memory)
        self.history.append((latent, actions, read))
        self.t += 1

    def step(self, actions, generators):
        import torch

        from world_model.diffusion.samplers import randn_rows

        engine, B = self.engine, len(generators)
        ctx = self._context()
        P = len(ctx)
        reads = None
        if self.model.has_memory:  # per frame the state it reads: (B, N, P + 1, *f) per layer
            frames_reads = [c[2] for c in ctx] + [self.memory]
            reads = [tuple(torch.stack([r[layer][j] for r in frames_reads], dim=2)
                           for j in range(len(self.memory[layer])))
                     for layer in range(len(self.memory))]
        acts = torch.stack([c[1] for c in ctx] + [actions], dim=1)
        x = randn_rows(generators, engine.latent_shape, engine.device)
        def denoise(x, level):  # the whole window recomputed for every pass
            seq = torch.stack([c[0] for c in ctx] + [x], dim=1)
            levels = torch.zeros(B, P + 1, dtype=torch.long, device=engine.device)
            levels[:, -1] = level
            return self.model(seq, levels, acts, reads).prediction[:, -1]

        x = engine.sampler.sample(denoise, x, lambda: randn_rows(generators, engine.latent_shape,
                                                                   engine.device))
        self.append(x, actions)
        return x


def timed(fn, sync) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of one call. On a shared CPU machine the CPU time of
    a single-threaded run is the steadier measure; on a GPU, the wall time (synchronised)."""
    sync()
    w, c = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - w, time.process_time() - c


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a trained run directory (default: random weights)")
    p.add_argument("--config", default="cpu-small", help="preset or JSON for random weights")
    p.add_argument("--window", type=int, help="override model.window")
    p.add_argument("--memory", default="lstm")
    p.add_argument("--mode", default="frame")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--steps", type=int, nargs="+", default=[5, 20])
    p.add_argument("--early", type=int, default=50)
    p.add_argument("--late", type=int, default=1000)
    p.add_argument("--measure", type=int, default=5,
                   help="timed frames per point (engine), after one warm-up frame")
    p.add_argument("--measure-recompute", type=int, default=1,
                   help="timed frames (recompute; a warm-up frame first on CUDA only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the 2 cores here are shared)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import torch

    from world_model.config import SamplerConfig
    from world_model.engine.rollout import RolloutEngine

    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    world = world_for(args)
    cfg = world.model.cfg
    print(f"model: {cfg.memory}-{cfg.mode}, W={cfg.window}, depth {cfg.depth}, width {cfg.width}, "
          f"{cfg.tokens_per_frame} tokens/frame, latent {cfg.latent_channels}x{cfg.latent_size}^2; "
          f"device {args.device}, {args.threads} threads", flush=True)
    results = []
    g = torch.Generator().manual_seed(0)
    shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    rand = (lambda B: torch.randn(B, *shape, generator=g).to(args.device))
    acts = (lambda B: torch.randint(0, cfg.num_actions, (B,), generator=g).to(args.device))
    gpu_warmup = 1 if args.device.startswith("cuda") else 0
    with torch.no_grad():
        # One world advanced to each timed frame; a batch of B is B copies of it, each row with
        # its own seed (the cost of a frame does not depend on what the rows show).
        engine = RolloutEngine(world, SamplerConfig(steps=1))
        state = engine.start_latents(rand(1)[:, None], acts(1)[:, None], seeds=0)
        points = {}
        for point in (args.early, args.late):
            t0 = time.perf_counter()
            while int(state.frame_index[0]) < point:
                engine.observe_latents(state, rand(1), acts(1))
            print(f"advanced to frame {point} in {time.perf_counter() - t0:.1f} s", flush=True)
            points[point] = state.clone()
        for B in args.batch:
            for S in args.steps:
                engine = RolloutEngine(world, SamplerConfig(steps=S))
                row = {"batch": B, "steps": S}
                for point, saved in points.items():
                    st = saved.index([0] * B)
                    st.generators = [torch.Generator().manual_seed(i) for i in range(B)]
                    samples = [timed(lambda e=engine, s=st, b=B: e.step(s, acts(b)), sync)
                               for _ in range(args.measure + 1)][1:]
                    row[f"engine_wall_s_at_{point}"], row[f"engine_cpu_s_at_{point}"] = medians(samples)
                    row[f"bytes_per_row_at_{point}"] = st.nbytes()
                    row[f"frame_index_after_{point}"] = int(st.frame_index[0])
                base = WindowRecompute(engine, B)
                for _ in range(args.early):
                    base.append(rand(B), acts(B))
                gens = [torch.Generator().manual_seed(i) for i in range(B)]
                samples = [timed(lambda r=base, b=B, gs=gens: r.step(acts(b), gs), sync)
                           for _ in range(args.measure_recompute + gpu_warmup)][gpu_warmup:]
                row["recompute_wall_s_at_early"], row["recompute_cpu_s_at_early"] = medians(samples)
                key = "cpu" if args.device == "cpu" else "wall"
                e = row[f"engine_{key}_s_at_{args.early}"]
                late = row[f"engine_{key}_s_at_{args.late}"]
                r = row[f"recompute_{key}_s_at_early"]
                row.update(measure=key, late_over_early=late / e, frames_per_s_early=B / e,
                           frames_per_s_late=B / late, speedup_vs_recompute=r / e)
                results.append(row)
                print(f"B={B:3d} S={S:3d} [{key}] engine {1e3 * e:8.1f} ms/frame @{args.early}, "
                      f"{1e3 * late:8.1f} @{args.late} (x{late / e:.2f}); {B / late:6.1f} frames/s; "
                      f"state {row[f'bytes_per_row_at_{args.early}']} / "
                      f"{row[f'bytes_per_row_at_{args.late}']} B/row | recompute "
                      f"{1e3 * r:8.1f} ms/frame: engine x{r / e:.1f} faster "
                      f"(wall: engine {1e3 * row[f'engine_wall_s_at_{args.early}']:.1f}, "
                      f"recompute {1e3 * row['recompute_wall_s_at_early']:.1f} ms)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
