"""Load a few training batches from a directory of episode files and print what they hold.

    python examples/load_data.py DIR [--seq-len 32] [--batch-size 8] [--batches 3] [--workers 2]

DIR holds episode .npz files: the official Memory Maze offline data set extracted unchanged, or
the output of `rad collect`. See docs/data-format.md.
"""

from __future__ import annotations

import argparse
import logging
import time

from world_model.data.dataset import make_dataloaders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="directory of episode .npz files")
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    train, val = make_dataloaders(args.data, seq_len=args.seq_len, batch_size=args.batch_size,
                                  val_fraction=args.val_fraction, num_workers=args.workers,
                                  seed=args.seed)
    files = train.dataset.files
    print(f"train: {len(files)} files, {train.dataset.num_windows} windows of {args.seq_len} frames; "
          f"val: {0 if val is None else len(val.dataset.files)} files")
    start = time.perf_counter()
    for step, batch in zip(range(args.batches), train):
        shapes = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in batch.items()}
        print(f"batch {step}: {shapes}")
        first = files[int(batch["episode"][0])].path.name
        print(f"  row 0: {first} frames {int(batch['start'][0])}..{int(batch['start'][0]) + args.seq_len - 1}, "
              f"actions {batch['actions'][0, :8].tolist()}..., reward sum {float(batch['rewards'].sum()):.1f}")
    print(f"{args.batches} batches in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
