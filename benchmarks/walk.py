"""Which project files one frame and one training batch pass through (docs/architecture.md's walks).

    python benchmarks/walk.py frame [--checkpoint RUN]     # RADEnv.step -> pixels (default: shipped world)
    python benchmarks/walk.py batch [--data DIR]           # rad train (tiny preset) -> optimizer.step()

``frame``: after two warm-up steps, every project file whose code runs during one ``env.step`` (a
``sys.setprofile`` trace), in the order the step first reaches it. ``batch``: the entry of ``rad
train --config tiny`` (CLI, command, run), then the same trace over the trainer's draw of its
first batch and ``train_step`` (forward, backward, ``optimizer.step()``, EMA).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("world_model", "rad_env", "agents")


def trace(fn: Callable[[], object]) -> list[str]:
    """The project files whose functions run during ``fn()``, in first-call order."""
    seen: dict[str, None] = {}

    def profiler(frame, event, arg):
        if event == "call":
            path = Path(frame.f_code.co_filename)
            try:
                rel = path.resolve().relative_to(ROOT)
            except ValueError:
                return
            if rel.parts[0] in PACKAGES:
                seen.setdefault(str(rel), None)

    sys.setprofile(profiler)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return list(seen)


def walk_frame(checkpoint: str | None) -> list[str]:
    from rad_env.env import RADEnv

    env = RADEnv(checkpoint)
    env.reset(seed=0)
    env.step(1)
    env.step(2)
    return trace(lambda: env.step(1))


class _Traced(Exception):
    """Stops the run once the first batch has been traced."""


def walk_batch(data: str | None) -> list[str]:
    """``rad train``'s entry (CLI, command, run) and then every file from the trainer's draw of
    the first batch to its ``optimizer.step()`` (and EMA update)."""
    from world_model.cli import main
    from world_model.training.trainer import Trainer

    if data is None:
        raise SystemExit("--data DIR: episode files to train on (e.g. rad collect --episodes 2)")
    files: list[str] = []

    def first_step(self, batches, steps, callbacks=()):
        files.extend(trace(lambda: self.train_step(next(batches))))
        raise _Traced

    Trainer.fit = first_step
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "--data", data, "--config", "tiny", "--steps", "1", "--out",
                f"{tmp}/run", "--no-progress", "--set", "train.batch_size=2",
                "--set", "train.num_workers=0"]
        try:
            main(argv)
        except _Traced:
            pass
    entry = ["world_model/cli.py", "world_model/commands/train.py", "world_model/training/run.py"]
    return entry + [f for f in files if f not in entry]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("walk", choices=("frame", "batch"))
    p.add_argument("--checkpoint", help="world for the frame walk (default: the shipped world)")
    p.add_argument("--data", help="episode files for the batch walk")
    args = p.parse_args()
    files = walk_frame(args.checkpoint) if args.walk == "frame" else walk_batch(args.data)
    for i, f in enumerate(files, 1):
        print(f"{i:2d} {f}")
    print(f"{len(files)} files")


if __name__ == "__main__":
    main()
