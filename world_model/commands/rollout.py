"""Imagine the continuation of a real trajectory and save it as a video.

Examples:
  rad rollout --checkpoint runs/rad-lstm --context data/eval/ep_000000.npz --out imagined.gif
  rad rollout --checkpoint runs/rad-lstm --context ep.npz --context-frames 40 \\
      --actions "1,1,1,2,2,1,1" --out turn.gif

The first --context-frames real frames (default: the file's context_frames) are the context. With
the recorded actions (the default) the model re-imagines the rest of the
trajectory, shown side by side with the real one (grey border: real; green: context; red:
imagined). With --actions "a,b,..." it follows those actions instead (0 noop, 1 forward, 2 left,
3 right, 4 forward-left, 5 forward-right for Memory Maze). GIF needs nothing; MP4 needs
imageio-ffmpeg.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RolloutSettings:
    """Every field is an option of ``rad rollout``."""

    checkpoint: str = ""
    """World run directory (config.json + model.safetensors)."""
    context: str = ""
    """A real episode file (.npz) whose first frames are the context."""
    out: str = ""
    """Output video, .gif (needs nothing) or .mp4 (needs imageio-ffmpeg)."""
    context_frames: int | None = None
    """Real frames given as context (default: the file's context_frames)."""
    actions: str | None = None
    """Comma-separated action indices to follow, e.g. "1,1,2" (default: the file's recorded
    actions after the context)."""
    frames: int | None = None
    """Frames to imagine (default: all the recorded actions that follow)."""
    steps: int | None = None
    """Sampler steps per frame (default: the world's sampler.json, else 10)."""
    eta: float | None = None
    """DDIM eta (default: the world's sampler.json, else 0)."""
    sampler: Literal["ddim", "heun"] | None = None
    """Sampler kind (default: the world's sampler.json, else ddim)."""
    seed: int = 0
    """Sampling seed."""
    device: str = "auto"
    """auto (CUDA if present), cpu, cuda, ..."""
    fps: int = 8
    """Video frame rate."""
    scale: int = 2
    """Pixel upscaling of the video."""
    progress: bool = True
    """Show a progress bar."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.options import add_options

    add_options(p, RolloutSettings, required=("checkpoint", "context", "out"))


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


def main(namespace: argparse.Namespace) -> int:
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
    from world_model.loading import load_engine
    from world_model.options import from_args

    args = from_args(RolloutSettings, namespace)
    check_video_path(args.out)

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
    for a in tqdm(actions, unit="frame", desc="rad rollout", disable=not args.progress):
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
