"""Trust the world's reward: precision and recall of its reward events against real rewards.

Example:
  rad reward-check --checkpoint runs/rad --data data/maze9-heldout --out reports/reward

Reads held-out real episodes twice: teacher-forced (every real frame fed to the world) and open
loop (the world imagines ``horizon`` frames from ``context`` real ones under the recorded actions).
Prints precision / recall / F1 per threshold and writes reward_check.json to --out; the method is
in world_model/evaluation/reward_check.py and docs/agents.md.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from world_model.evaluation.reward_check import RewardCheckConfig
    from world_model.options import add_options

    add_options(p, RewardCheckConfig)


def main(args: argparse.Namespace) -> int:
    from world_model.evaluation.reward_check import RewardCheckConfig, run_reward_check
    from world_model.options import from_args

    cfg = from_args(RewardCheckConfig, args)
    report = run_reward_check(cfg)
    print(f"{report['episodes']} episodes of {report['frames']} frames; "
          f"{report['open_loop_segments']} open-loop segments")
    print("threshold | teacher-forced P / R / F1 | open loop P / R / F1")
    for tf, ol in zip(report["teacher_forced"], report["open_loop"]):
        print(f"  {tf['threshold']:.2f}    | {tf['precision']:.2f} / {tf['recall']:.2f} / "
              f"{tf['f1']:.2f}         | {ol['precision']:.2f} / {ol['recall']:.2f} / {ol['f1']:.2f}")
    print(f"best teacher-forced threshold: {report['best_threshold']}; report: {cfg.out}")
    return 0
