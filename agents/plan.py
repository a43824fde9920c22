"""Model-predictive control in the REAL Memory Maze with a planner in the learned world: the
command line of :func:`agents.mpc.run_mpc` (and, with ``--out``, of :mod:`agents.mpc_report`).

Every ``replan_every`` real steps: plan in the world from its current state
(:class:`agents.planning.Planner`), then act in the real env with the first actions of the plan,
feeding each real frame back into the world (``RolloutEngine.observe``) so that it stays grounded
in what really happened. Reports each episode's real return and the planning time per decision.

    python -m agents.plan --checkpoint runs/rad --episodes 2 --max-steps 200 --method cem
    python -m agents.plan --episodes 1 --max-steps 40 --candidates 8 --horizon 4   # shipped world
    python -m agents.plan --episodes 8 --out reports/mpc   # resumable, with random and scripted

With ``--out`` every episode is saved as it ends and a uniformly random policy and the data
collector's scripted exploration are scored on the same mazes.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import statistics
import sys

from agents.mpc import MPCConfig, run_mpc
from agents.planning import PlannerConfig
from world_model.errors import RadError
from world_model.options import from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from world_model.options import add_options

    add_options(parser, MPCConfig)
    return add_options(parser, PlannerConfig, skip=("seed",))  # one seed: MPCConfig.seed


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mpc = from_args(MPCConfig, args)
    planner = from_args(PlannerConfig, args, skip=("seed",))
    try:
        if mpc.out is not None:
            from agents.mpc_report import run_report

            command = shlex.join(["python", "-m", "agents.plan",
                                  *(argv if argv is not None else sys.argv[1:])])
            print(run_report(mpc, planner.validate(), command))
            return 0
        results = run_mpc(mpc, planner.validate())
    except RadError as exc:  # errors meant for the user: no traceback
        print(f"agents.plan: error: {exc}", file=sys.stderr)
        return 2
    for i, r in enumerate(results):
        print(f"episode {i}: real return {r.real_return:.1f} in {r.steps} steps; "
              f"{len(r.plan_seconds)} plans, median {statistics.median(r.plan_seconds):.2f} s "
              f"per plan")
    returns = [r.real_return for r in results]
    print(f"mean real return {statistics.fmean(returns):.2f} over {len(returns)} episode(s) "
          f"({planner.method}, H={planner.horizon}, N={planner.candidates})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
