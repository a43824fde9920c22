"""Quality against sampling steps: the evaluation protocol at several DDIM step counts, with the
imagined frames/s of each beside it, so a world's default steps can be read off the knee.

For every step count: ``rad eval``'s protocol (``world_model.evaluation.protocol.evaluate``) on
the given trajectories, and the median time of a batched ``RolloutEngine.step`` at ``--batch``
rows (one thread unless told otherwise), in this one process.

    python benchmarks/steps_curve.py --checkpoint RUN --data data/maze9-eval --out reports/steps \\
        --steps 1 2 3 4 6 10 20 --max-trajectories 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def engine_fps(checkpoint: str, steps: int, batch: int, frames: int = 6) -> float:
    """Median imagined frames/s of ``batch`` rows stepped together after an 8-frame context."""
    import torch

    from world_model.checkpoint import load
    from world_model.config import SamplerConfig
    from world_model.engine.rollout import RolloutEngine

    world = load(checkpoint)
    engine = RolloutEngine(world, SamplerConfig(steps=steps))
    size = world.config.latent.frame_size
    g = torch.Generator().manual_seed(0)
    context = torch.randint(0, 256, (batch, 8, size, size, 3), dtype=torch.uint8, generator=g)
    n = world.config.model.num_actions
    state = engine.start(context, torch.randint(0, n, (batch, 8), generator=g), seeds=0)
    actions = torch.randint(0, n, (batch,), generator=g)
    engine.step(state, actions)  # warm-up
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        engine.step(state, actions)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="evaluation trajectories (rad make-evalset)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4, 6, 10, 20])
    p.add_argument("--max-trajectories", type=int, default=24)
    p.add_argument("--batch", type=int, default=32, help="rows for the frames/s figure")
    p.add_argument("--eval-batch", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--horizon", type=int, default=None)
    args = p.parse_args()

    import torch

    from world_model.evaluation.protocol import EvalSettings, evaluate

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for k in args.steps:
        settings = EvalSettings(steps=k, batch=args.eval_batch, max_trajectories=args.max_trajectories,
                                horizon=args.horizon, videos=2)
        report = evaluate([args.checkpoint], args.data, out / f"steps_{k}", settings)
        floor, row = report.rows[0], report.rows[1]
        fps = engine_fps(args.checkpoint, k, args.batch)
        rows.append({"steps": k, "psnr": row.psnr, "ssim": row.ssim,
                     "return_psnr": row.return_psnr, "return_ssim": row.return_ssim,
                     "frames_per_s": fps, "floor_return_psnr": floor.return_psnr,
                     "floor_return_ssim": floor.return_ssim})
        print(f"steps {k:>3}: PSNR {row.psnr:.2f} SSIM {row.ssim:.3f} | return PSNR "
              f"{row.return_psnr:.2f} SSIM {row.return_ssim:.3f} | {fps:.1f} frames/s at batch "
              f"{args.batch} | floor return {floor.return_psnr:.2f} / {floor.return_ssim:.3f}",
              flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steps_curve.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out / 'steps_curve.json'}")


if __name__ == "__main__":
    main()
