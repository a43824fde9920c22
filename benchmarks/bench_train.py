"""Training throughput: hidden-state pre-fetch vs a naive frame-wise sliding-window trainer.

Both train the same model on the same batch of real frames (T frames, window W):

* prefetch: one window-1 pass over the T clean frames writes every memory state (one recurrent
  scan per layer), then ONE parallel windowed pass gives the diffusion loss for all T frames.
* naive:    for every frame i, the network is run on its whole window (frames i-W+1..i) and the
  memory is stepped frame by frame; the loss of frame i comes from its own window pass, which is
  backpropagated at once (the memory states are detached: holding every window's graph for full
  backprop does not fit in 24 GB at T=100, so the naive baseline is given the cheaper variant and
  the measured speed-up is a lower bound).

Each scheme runs in its own subprocess so peak memory (max RSS) is its own. Reports median step
time, frames/s, the ratio, peak memory, and for the pre-fetch scheme the share of time spent in the
pre-fetch. Also frames/s of the pre-fetch scheme for each memory type.

``--precisions float32,bfloat16`` instead times full optimisation steps of the real training
objective (``WorldModelObjective``: the config's context mode, prediction and loss) in each compute
dtype, with the preset's T and batch unless given, and skips the naive comparison:

    python benchmarks/bench_train.py --data DIR [--T 100 --W 20 --steps 3 --config cpu-small]
    python benchmarks/bench_train.py --data DIR --config cpu-small --precisions float32,bfloat16
    python benchmarks/bench_train.py --data DIR --config cpu-small --precisions float32,bfloat16 \
        --vae VAE --set model.latent_channels=8 --set model.latent_size=16 --set model.patch_size=2

``--precisions`` may include ``auto`` (what ``rad train`` uses by default: bfloat16 where the CPU
or GPU computes it natively).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def one_run(args) -> dict:
    import resource

    import torch

    from world_model.configs import resolve_config
    from world_model.data.dataset import make_dataloaders
    from world_model.devices import resolve_precision
    from world_model.network.windows import read_index
    from world_model.training.objective import Batch, WorldModelObjective
    from world_model.world import build_world

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    over = [f"model.memory={args.memory}", f"model.mode={args.mode}", *args.set]
    if args.vae:
        over += ["latent.kind=vae", f"latent.vae_path={json.dumps(args.vae)}"]
    if args.W:
        over.append(f"model.window={args.W}")
    cfg = resolve_config(args.config, over)
    world = build_world(cfg)
    model, diffusion, codec = world.model, world.diffusion, world.codec
    T = args.T or cfg.train.seq_len
    batch_size = args.batch or cfg.train.batch_size
    loader, _ = make_dataloaders(args.data, seq_len=T, batch_size=batch_size, val_fraction=0.0,
                                 num_workers=0, seed=0)
    batch = Batch.from_dict(next(iter(loader)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    W = cfg.model.window
    g = torch.Generator().manual_seed(0)

    def prefetch_step():
        z = codec.encode(batch.frames)
        levels = diffusion.sample_levels(z.shape[:2], g)
        noise = torch.randn(z.shape, generator=g)
        t0 = time.perf_counter()
        reads, _ = model.prefetch(z, batch.actions)
        t_pre = time.perf_counter() - t0
        out = model(diffusion.add_noise(z, levels, noise), levels, batch.actions, reads)
        loss = diffusion.loss(out.prediction, z, noise, levels)
        return loss, t_pre

    def naive_step():
        # Per frame: the window pass and its backward at once (so at most one window's graph is
        # alive: keeping all T graphs for one backward exceeds 24 GB at T=100). The memory is
        # stepped frame by frame without gradient (truncated BPTT). This baseline does less work
        # than the pre-fetch scheme, which also backpropagates through every memory write, so the
        # measured speed-up is a lower bound.
        z = codec.encode(batch.frames)
        levels = diffusion.sample_levels(z.shape[:2], g).clamp(min=1)
        noise = torch.randn(z.shape, generator=g)
        x = diffusion.add_noise(z, levels, noise)
        target = diffusion.target(z, noise, levels)
        starts = read_index(T, W, cfg.model.mode)
        history = [model.init_memory(z.shape[0])]
        total = 0.0
        for i in range(T):
            s = int(starts[i])
            reads = None
            if model.has_memory:  # frame j of the window reads the state before its own window
                idx = [int(starts[j]) for j in range(s, i + 1)]
                reads = [tuple(torch.stack([history[k][layer][n] for k in idx], dim=2)
                               for n in range(len(history[0][layer])))
                         for layer in range(len(model.blocks))]
            out = model(x[:, s:i + 1], levels[:, s:i + 1], batch.actions[:, s:i + 1], reads)
            loss = (out.prediction[:, -1] - target[:, i]).pow(2).mean() / T
            loss.backward()
            total += float(loss)
            with torch.no_grad():
                history.append(model.write_frame(z[:, i], batch.actions[:, i], history[-1]))
        return None, 0.0

    precision = resolve_precision(args.precision)
    objective = WorldModelObjective(model, diffusion, codec, precision=precision)
    if args.vae and args.scheme == "objective":  # as rad train does: latents from the cache
        with torch.no_grad():
            batch = Batch(None, batch.actions, batch.rewards, batch.terminals,
                          codec.encode(batch.frames))

    def objective_step():
        loss, _ = objective(batch, g)
        return loss, 0.0

    step = {"prefetch": prefetch_step, "naive": naive_step, "objective": objective_step}[args.scheme]
    times, pre = [], []
    for i in range(args.steps + 1):  # first step is warm-up
        t0 = time.perf_counter()
        opt.zero_grad()
        loss, t_pre = step()
        if loss is not None:
            loss.backward()
        opt.step()
        if i > 0:
            times.append(time.perf_counter() - t0)
            pre.append(t_pre)
    med = statistics.median(times)
    return {"scheme": args.scheme, "memory": args.memory, "mode": args.mode, "T": T, "W": W,
            "precision": precision, "asked": args.precision, "batch": batch_size, "step_s": med,
            "frames_per_s": batch_size * T / med, "loss": float(loss) if loss is not None else None,
            "prefetch_share": statistics.median(pre) / med,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spawn(args, **over) -> dict:
    argv = [sys.executable, __file__, "--one"]
    for k, v in {**vars(args), **over}.items():
        if k in ("one", "memories", "precisions", "set") or (k == "vae" and not v):
            continue
        argv += [f"--{k}", str(v)]
    for item in args.set:
        argv += ["--set", item]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--config", default="cpu-small")
    p.add_argument("--T", type=int, default=0, help="frames per sample (0: 100, or the preset's "
                   "seq_len with --precisions)")
    p.add_argument("--W", type=int, default=0, help="window (0: 20, or the preset's with --precisions)")
    p.add_argument("--batch", type=int, default=0, help="batch (0: 1, or the preset's with --precisions)")
    p.add_argument("--set", action="append", default=[], help="config override, as rad train --set")
    p.add_argument("--precision", default="float32", help="auto, float32 or bfloat16")
    p.add_argument("--vae", default="", help="a VAE directory: latents instead of pixels (the "
                   "objective scheme takes them precomputed, as training from the latent cache)")
    p.add_argument("--precisions", default="",
                   help="e.g. float32,bfloat16: time the real objective in each compute dtype")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory", default="lstm")
    p.add_argument("--mode", default="frame")
    p.add_argument("--scheme", default="prefetch")
    p.add_argument("--memories", default="lstm,mamba2,ttt,none",
                   help="memory types for the per-memory frames/s table ('' to skip)")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(args)))
        return
    if args.precisions:
        rows = [spawn(args, scheme="objective", precision=p) for p in args.precisions.split(",")]
        print(f"training objective of {args.config} {' '.join(args.set)}, {args.steps} timed steps "
              f"(median), {args.threads} threads")
        for r in rows:
            print(f"  {r['asked']}->{r['precision']:>9}: T={r['T']} batch {r['batch']}: {r['step_s']:.3f} s/step  "
                  f"{r['frames_per_s']:.1f} frames/s  peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"  speed-up of {rows[-1]['precision']} over {rows[0]['precision']}: "
              f"{rows[0]['step_s'] / rows[-1]['step_s']:.2f}x")
        return
    args.T, args.W, args.batch = args.T or 100, args.W or 20, args.batch or 1
    pre = spawn(args, scheme="prefetch")
    naive = spawn(args, scheme="naive")
    print(f"model preset {args.config}, T={args.T}, W={args.W}, batch {args.batch}, memory "
          f"{args.memory}, {args.steps} timed steps (median), {args.threads} threads")
    for r in (pre, naive):
        print(f"  {r['scheme']:>8}: {r['step_s']:.3f} s/step  {r['frames_per_s']:.1f} frames/s  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"  speed-up of pre-fetch over naive: {naive['step_s'] / pre['step_s']:.1f}x; "
          f"pre-fetch share of the step: {100 * pre['prefetch_share']:.0f}%")
    if args.memories:
        print("pre-fetch scheme per memory type:")
        for mem in args.memories.split(","):
            r = spawn(args, scheme="prefetch", memory=mem)
            print(f"  {mem:>7}: {r['frames_per_s']:.1f} frames/s, {r['step_s']:.3f} s/step, "
                  f"pre-fetch {100 * r['prefetch_share']:.0f}%, peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
