"""The engine's low-precision path against the autocast-only one, in one process.

Two engines of the same world in bf16: ``cast once`` (the engine as it ships: linear layers cast
to bf16 once, the VAE decoder under autocast, ``world_model/engine/precision.py``) and
``autocast only`` (the float32 network autocast on every call, the decoder in float32: the engine
before that change). Both start from the same real context clips of the world's bank and imagine
``--frames`` frames under the same random actions and seeds, interleaved for ``--rounds`` rounds;
it prints each round's median time per batched step (the first two steps left out), the ratio of
the medians, and how far the decoded frames of the two are apart (their latents are the same bit
for bit).

    python benchmarks/bench_precision.py --batch 32 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def rollout(engine, frames, actions, plan) -> tuple[float, torch.Tensor]:
    state = engine.start(frames, actions, seeds=0)
    times, out = [], []
    for step in plan:
        t = time.perf_counter()
        obs, _info = engine.step(state, step)
        times.append(time.perf_counter() - t)
        out.append(obs)
    return float(np.median(times[2:] or times)), torch.stack(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a world (default: the shipped one)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=20, help="imagined frames per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the world's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from world_model.loading import SHIPPED_WORLD, load_engine

    path = args.checkpoint or SHIPPED_WORLD
    cast = load_engine(path, steps=args.steps, dtype="bfloat16")
    plain = load_engine(path, steps=args.steps, dtype="bfloat16")
    plain.model = plain.world.model  # float32 weights: autocast casts them on every call
    plain.decode = plain.codec.decode  # the decoder outside autocast: float32
    bank = np.load(f"{path}/contexts.npz")
    clips = bank["frames"][np.arange(args.batch) % len(bank["frames"])]
    frames = torch.from_numpy(np.ascontiguousarray(clips))
    actions = torch.from_numpy(bank["actions"][np.arange(args.batch) % len(bank["frames"])])
    plan = torch.randint(0, 6, (args.frames, args.batch), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"autocast only": [], "cast once": []}
    for _ in range(args.rounds):
        t, old = rollout(plain, frames, actions, plan)
        times["autocast only"].append(t)
        t, new = rollout(cast, frames, actions, plan)
        times["cast once"].append(t)
    for name, ts in times.items():
        print(f"{name:>13}: ms per batched step {', '.join(f'{x * 1000:.1f}' for x in ts)}")
    ratio = np.median(times["autocast only"]) / np.median(times["cast once"])
    diff = (old.float() - new.float()).abs()
    psnr = 10 * torch.log10(255.0 ** 2 / (diff ** 2).mean().clamp_min(1e-12))
    print(f"batch {args.batch}, {args.threads} thread(s): cast once {ratio:.3f}x autocast only "
          f"(median of rounds); frames apart by mean {diff.mean():.3f} / max {diff.max():.0f} "
          f"uint8 levels, {(diff > 0).float().mean():.1%} of pixels, PSNR {psnr:.1f} dB")


if __name__ == "__main__":
    main()
