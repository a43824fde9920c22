"""Plan in the learned world, act in the REAL Memory Maze (model-predictive control).

    python examples/plan_in_imagination.py                       # the shipped world
    python examples/plan_in_imagination.py --checkpoint runs/rad --steps 200
    python examples/plan_in_imagination.py --value runs/value-g0.98   # a value beyond the horizon

Every 4 real steps, CEM searches 8-step action sequences in the world (16 candidates imagined
together, 2 rounds), the first 4 actions are taken in the real maze, and each real frame is fed
back into the world. Prints the real return and the planning time per decision. With --value (a
reward-to-go model, `rad train-reward --gamma 0.98 --out DIR`), each plan also counts the value
of where it ends, beyond the horizon.
"""

from __future__ import annotations

import argparse
import statistics

from agents.mpc import MPCConfig, run_mpc
from agents.planning import PlannerConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world run directory (default: shipped)")
    p.add_argument("--steps", type=int, default=24, help="real steps")
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--value", default=None, help="reward-to-go model directory (default: none)")
    args = p.parse_args()
    mpc = MPCConfig(checkpoint=args.checkpoint, episodes=1, max_steps=args.steps, replan_every=4,
                    value=args.value)
    planner = PlannerConfig(method="cem", horizon=args.horizon, candidates=args.candidates,
                            iterations=2, elites=min(4, args.candidates))
    (result,) = run_mpc(mpc, planner)
    print(f"real return {result.real_return:.0f} in {result.steps} real steps; "
          f"{len(result.plan_seconds)} plans, {statistics.median(result.plan_seconds):.2f} s each "
          f"(median); the world expected {statistics.fmean(result.predicted_returns):.2f} per plan")


if __name__ == "__main__":
    main()
