"""Trust the world's reward: precision and recall of its reward events against real rewards.

Example:
  rad reward-check --checkpoint runs/rad --data data/maze9-heldout --out reports/reward
  rad reward-check --checkpoint runs/rad --data data/maze9-heldout \
      --select-data data/maze9-select --save-threshold   # choose the env's threshold elsewhere

Reads held-out real episodes twice: teacher-forced (every real frame fed to the world) and open
loop (the world imagines ``horizon`` frames from ``context`` real ones under the recorded actions).
Prints precision / recall / F1 per threshold and writes reward_check.json to --out; with
--select-data, the threshold chosen on those other episodes and the scores at it (written into the
world's sampler.json with --save-threshold). The method is
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
        print(f"  {tf['threshold']:<7g} | {tf['precision']:.2f} / {tf['recall']:.2f} / "
              f"{tf['f1']:.2f}         | {ol['precision']:.2f} / {ol['recall']:.2f} / {ol['f1']:.2f}")
    print(f"best teacher-forced threshold on these episodes: {report['best_threshold']}")
    th = report.get("chosen_threshold") or 0.5
    for k, row in report["imminent"].items():
        print(f"imminent events imagined from {k} step(s) before: {row['found'][str(th)]} of "
              f"{row['events']} read >= {th:g} (median reading {row['median_reading']:.3f})")
    if "select" in report and report["chosen_threshold"] is None:
        print(f"no threshold chosen: no reading finds a real reward event on {cfg.select_data}")
        return 1
    if "select" in report:
        sel = report["select"]
        print(f"threshold chosen on {cfg.select_data} ({sel['episodes']} episodes, best "
              f"{report['chosen_by']} F1): {report['chosen_threshold']:g}; scored here:")
        for name, row in report["at_chosen"].items():
            print(f"  {name}: precision {row['precision']:.2f} recall {row['recall']:.2f} "
                  f"F1 {row['f1']:.2f} ({row['predicted_events']} predicted, "
                  f"{row['real_events']} real events)")
        if cfg.save_threshold:
            print("written into the world's sampler.json")
    print(f"report: {cfg.out}/reward_check.json")
    return 0
