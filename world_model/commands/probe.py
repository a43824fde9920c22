"""Read the memory: linear probes from a world's recurrent memory to what the agent cannot see.

Example:
  rad probe --checkpoint runs/rad --baseline runs/df --data data/maze9-heldout --out reports/probes

Teacher-forces real held-out episodes (recorded with Memory Maze's global observables, as
``rad collect`` does) through the world and fits ridge probes from its memory state and its
attention window to the unseen targets and the maze layout around the agent, beside the trivial
floor and the memory-less baseline. Writes probes.json and probes.md to --out; the method is in
world_model/evaluation/probes.py and docs/agents.md.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.evaluation.probes import ProbeConfig
    from world_model.options import add_options

    add_options(p, ProbeConfig)


def main(args: argparse.Namespace) -> int:
    from world_model.evaluation.probes import ProbeConfig, markdown_table, run_probes
    from world_model.options import from_args

    cfg = from_args(ProbeConfig, args)
    report = run_probes(cfg)
    print(markdown_table(report), end="")
    print(f"report: {cfg.out}/probes.json, {cfg.out}/probes.md")
    return 0
