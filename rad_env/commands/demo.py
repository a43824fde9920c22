"""Drive the learned world from a real context and write a video of what it imagines.

Examples:
  rad demo                                  # the shipped world, 300 frames, demo.gif
  rad demo --checkpoint runs/rad --frames 100 --steps 20 --out imagined.gif
  rad demo --clip 3 --seed 1 --device auto

The world starts from real frames of a clip of its context bank (--clip, or one drawn with
--seed among the clips with a real replay). It then follows the clip's recorded real actions,
and random actions beyond them. The video shows the real clip and its replay (left, grey border;
black after the replay ends) beside the imagined run (right; green border: real context, red:
imagined). It prints the imagined frames/s (stepping only) and, against the replay, the PSNR
(mean over frames, as rad eval).
GIF needs nothing; MP4 needs imageio-ffmpeg.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="RUN",
                   help="run directory of the world (default: the world shipped with rad-env)")
    p.add_argument("--contexts", metavar="FILE.npz",
                   help="context bank (default: the checkpoint's contexts.npz)")
    p.add_argument("--clip", type=int, help="bank clip to start from (default: drawn with --seed)")
    p.add_argument("--frames", type=int, default=300, help="frames to imagine (default: 300)")
    p.add_argument("--steps", type=int, help="DDIM steps per frame (default: the env's)")
    p.add_argument("--dtype", default="auto",
                   help="auto (bfloat16 where native, else float32) | float32 | bfloat16 | float16")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto, ... (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="picks the clip, noise, actions (default: 0)")
    p.add_argument("--out", default="demo.gif", metavar="VIDEO", help="output .gif or .mp4")
    p.add_argument("--fps", type=int, default=8, help="video frame rate (default: 8)")
    p.add_argument("--scale", type=int, default=2, help="pixel upscaling of the video (default: 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    from tqdm import tqdm

    from rad_env.env import RADEnv
    from world_model.errors import UserError
    from world_model.evaluation.metrics import psnr
    from world_model.evaluation.videos import check_video_path, side_by_side, write_video

    if args.frames < 1 or args.scale < 1 or args.fps < 1:
        raise UserError("--frames, --scale and --fps must be >= 1")
    check_video_path(args.out)
    env = RADEnv(args.checkpoint, contexts=args.contexts, steps=args.steps, device=args.device,
                 dtype=args.dtype, max_steps=max(args.frames, 1000))
    bank = env.worlds.contexts.bank
    if bank is None:
        raise UserError(f"{env.worlds.run_dir} has no contexts.npz: pass --contexts FILE.npz")
    rng = np.random.default_rng(args.seed)
    replays = bank.follow_actions.shape[0]
    clip = args.clip if args.clip is not None else int(rng.integers(replays or bank.clips))
    env.reset(seed=args.seed, options={"clip": clip})
    follow = bank.follow_actions[clip] if clip < replays else np.zeros(0, np.int64)
    actions = np.concatenate([follow, rng.integers(env.worlds.num_actions, size=args.frames)])
    actions = actions[:args.frames]
    real = (bank.follow_frames[clip][:args.frames] if clip < replays
            else np.zeros((0, *bank.frames.shape[2:]), np.uint8))

    imagined, rewards = [], 0.0
    start = time.perf_counter()
    for a in tqdm(actions, unit="frame", desc="rad demo", disable=args.no_progress):
        obs, reward, terminated, _, _ = env.step(int(a))
        imagined.append(obs)
        rewards += reward
        if terminated:  # Memory Maze never terminates; a trained head rarely says so
            print(f"the termination head ended the episode after {len(imagined)} frames")
            break
    elapsed = time.perf_counter() - start
    env.close()

    context = bank.clip(clip, env.worlds.contexts.context_len).frames
    imagined = np.stack(imagined)
    n = min(len(real), len(imagined))
    # left: the real trajectory (context, then the real replay, black where there is none)
    blank = np.zeros((len(imagined) - n, *context.shape[1:]), np.uint8)
    video = side_by_side(np.concatenate([context, real[:n], blank]), [imagined], len(context),
                         args.scale)
    path = write_video(args.out, video, args.fps)

    print(f"{len(imagined)} frames imagined from real clip {clip} ({len(context)} context "
          f"frames, {env.worlds.sampling_steps} DDIM steps, {env.worlds.engine.device}): "
          f"{len(imagined) / elapsed:.2f} frames/s; predicted reward {rewards:g}")
    if n:
        print(f"first {n} frames follow the recorded real actions: PSNR "
              f"{psnr(real[:n], imagined[:n]).mean():.2f} dB against the real replay "
              f"(mean over frames)")
    else:
        print("this clip has no real replay: random actions, imagined frames only")
    print(f"video: {path}")
    return 0
