"""Imagine the continuation of a real trajectory and save it as a video.

Examples:
  rad rollout --checkpoint runs/rad-lstm --context data/eval/ep_000000.npz --out imagined.gif
  rad rollout --checkpoint runs/rad-lstm --context ep.npz --context-frames 40 \\
      --actions "1,1,1,2,2,1,1" --out turn.gif

The first --context-frames real frames (default: the file's context_frames) are the context. With
the recorded actions (the default, --actions-from-file) the model re-imagines the rest of the
trajectory, shown side by side with the real one (grey border: real; green: context; red:
imagined). With --actions "a,b,..." it follows those actions instead (0 noop, 1 forward, 2 left,
3 right, 4 forward-left, 5 forward-right for Memory Maze). GIF needs nothing; MP4 needs
imageio-ffmpeg.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="checkpoint directory")
    p.add_argument("--context", required=True, metavar="FILE.npz", help="a real episode file")
    p.add_argument("--context-frames", type=int,
                   help="real frames given as context (default: the file's context_frames)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--actions", help='comma-separated action indices to follow, e.g. "1,1,2"')
    src.add_argument("--actions-from-file", action="store_true",
                     help="follow the recorded actions after the context (the default)")
    p.add_argument("--frames", type=int, help="frames to imagine (default: all that follow)")
    p.add_argument("--out", required=True, metavar="VIDEO", help="output .gif or .mp4")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps per frame (default: the world's sampler.json, else 10)")
    p.add_argument("--eta", type=float, default=None,
                   help="DDIM eta (default: the world's sampler.json, else 0)")
    p.add_argument("--sampler", choices=("ddim", "heun"), default=None,
                   help="sampler kind (default: the world's sampler.json, else ddim)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    p.add_argument("--fps", type=int, default=8, help="video frame rate (default: 8)")
    p.add_argument("--scale", type=int, default=2, help="pixel upscaling of the video (default: 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_actions(text: str, num_actions: int) -> list[int]:
    from world_model.errors import UserError

    try:
        actions = [int(a) for a in text.replace(" ", "").split(",") if a != ""]
    except ValueError as exc:
        raise UserError(f"--actions {text!r}: expected comma-separated integers") from exc
    if not actions:
        raise UserError("--actions: no actions given")
    bad = [a for a in actions if not 0 <= a < num_actions]
    if bad:
        raise UserError(f"--actions: {bad} outside [0, {num_actions})")
    return actions


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from world_model.data.checks import inspect_episode
    from world_model.data.format import action_indices, read_episode
    from world_model.errors import UserError
    from world_model.evaluation.metrics import psnr, ssim
    from world_model.evaluation.videos import (
        check_video_path,
        imagined_panel,
        side_by_side,
        write_video,
    )

    check_video_path(args.out)
    from world_model.loading import load_engine

    engine = load_engine(args.checkpoint, device=args.device, steps=args.steps, eta=args.eta,
                         kind=args.sampler)
    world = engine.world
    inspect_episode(args.context, frame_size=world.config.latent.frame_size,
                    num_actions=engine.cfg.num_actions)  # the layout check of every reader
    ep = read_episode(args.context)
    frames, recorded = ep["image"], action_indices(ep["action"])
    T = len(frames)
    n_ctx = args.context_frames
    if n_ctx is None:
        if "context_frames" not in ep:
            raise UserError(f"{args.context} has no 'context_frames': pass --context-frames N")
        n_ctx = int(ep["context_frames"])
    if not 1 <= n_ctx <= T:
        raise UserError(f"--context-frames {n_ctx}: the file has {T} frames")
    if args.actions:
        actions = parse_actions(args.actions, engine.cfg.num_actions)[:args.frames]
        real = None
    else:
        available = T - n_ctx
        n = available if args.frames is None else args.frames
        if not 1 <= n <= available:
            raise UserError(f"--frames {n}: {available} recorded actions follow the "
                            f"{n_ctx} context frames (use --actions to go further)")
        actions = recorded[n_ctx:n_ctx + n].tolist()
        real = frames[:n_ctx + n]
    state = engine.start(torch.from_numpy(frames[None, :n_ctx]),
                         torch.from_numpy(recorded[None, :n_ctx]), seeds=[args.seed])
    imagined = []
    for a in tqdm(actions, unit="frame", desc="rad rollout", disable=args.no_progress):
        out, _ = engine.step(state, torch.tensor([a]))
        imagined.append(out[0].cpu().numpy())
    imagined = np.stack(imagined)
    if real is not None:
        video = side_by_side(real, [imagined], n_ctx, args.scale)
        summary = (f"PSNR {psnr(real[n_ctx:], imagined).mean():.2f} dB, "
                   f"SSIM {ssim(real[n_ctx:], imagined).mean():.3f} against the real frames")
    else:
        video = imagined_panel(frames[:n_ctx], imagined, args.scale)
        summary = "actions given on the command line: no real frames to compare"
    path = write_video(args.out, video, args.fps)
    print(f"{len(imagined)} frames imagined after {n_ctx} context frames "
          f"({engine.sampler.steps} {engine.sampler.config.kind} steps); {summary}")
    print(f"video: {path}")
    return 0
