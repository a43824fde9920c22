"""The resumable MPC table: the planner's real returns beside random and scripted exploration.

``python -m agents.plan --out DIR`` writes ``DIR/mpc.json`` (every episode: its maze seed, real
return, steps, plans and their times and predicted returns; the baselines' returns on the same
mazes) and ``DIR/table.md`` after every episode, through a temporary file and a rename. Running the
same command again skips the episodes already in the file; a file made with other settings is
refused (use another ``--out``). Decisions per second are plans per second of planning time (the
real steps and the frames fed back are not counted).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

from agents.mpc import EpisodeResult, MPCConfig, run_mpc
from agents.planning import PlannerConfig
from world_model.errors import UserError
from world_model.io import atomic_write_text

RESULTS = "mpc.json"
TABLE = "table.md"
#: MPCConfig fields that do not change what an episode measures.
_NOT_SETTINGS = ("episodes", "out", "baselines")


def settings(mpc: MPCConfig, planner: PlannerConfig) -> dict[str, Any]:
    cfg = {k: v for k, v in dataclasses.asdict(mpc).items()
           if k not in _NOT_SETTINGS and not (k == "value" and v is None)}  # reports made
    # before the value existed resume as they were
    return {"mpc": cfg, "planner": {k: v for k, v in dataclasses.asdict(planner).items()
                                    if k != "seed"}}


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for fewer than two values)."""
    mean = statistics.fmean(values) if values else float("nan")
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def load_results(path: Path, want: dict[str, Any]) -> dict[str, Any]:
    if not path.is_file():
        return {"settings": want, "mpc": {}, "baselines": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable MPC report ({exc}); move it away") from exc
    if data.get("settings") != want:
        raise UserError(f"{path} holds episodes of other settings ({data.get('settings')}); "
                        f"use another --out")
    return data


def table(data: dict[str, Any], command: str) -> str:
    s = data["settings"]
    p, m = s["planner"], s["mpc"]
    header = ("| policy | real return, mean ± std | episodes | returns per maze | decisions/s | "
              "predicted return per plan |")
    rows = [header, "|---|---|---|---|---|---|"]
    episodes = sorted(data["mpc"].values(), key=lambda r: r["maze_seed"])
    if episodes:
        mean, std = spread([r["real_return"] for r in episodes])
        plans = sum(len(r["plan_seconds"]) for r in episodes)
        seconds = sum(sum(r["plan_seconds"]) for r in episodes)
        predicted = statistics.fmean(x for r in episodes for x in r["predicted_returns"])
        per_maze = " ".join(f"{r['real_return']:.0f}" for r in episodes)
        rows.append(f"| MPC in the world ({p['method']}, H={p['horizon']}, N={p['candidates']}, "
                    f"{p['iterations']} it., replan every {m['replan_every']}"
                    f"{', value beyond H' if m.get('value') else ''}) | {mean:.2f} ± "
                    f"{std:.2f} | {len(episodes)} | {per_maze} | {plans / seconds:.2f} | "
                    f"{predicted:.3f} |")
    labels = (("random", "uniformly random"),
              ("scripted", "scripted exploration (reads the maze layout)"))
    for name, label in labels:
        returns = data["baselines"].get(name)
        if returns:
            mean, std = spread(returns)
            rows.append(f"| {label} | {mean:.2f} ± {std:.2f} | {len(returns)} | "
                        f"{' '.join(f'{x:.0f}' for x in returns)} | - | - |")
    return (f"```bash\n{command}\n```\n\nReal Memory Maze 9x9, mazes of seeds {m['seed']}... "
            f"({m['max_steps']} steps per episode):\n\n" + "\n".join(rows) + "\n")


def run_report(mpc: MPCConfig, planner: PlannerConfig, command: str,
               progress: bool = True) -> str:
    """Play the missing episodes of ``mpc.out`` (and score the baselines once); the table."""
    from agents.evaluate import ScriptedPolicy, evaluate_in_real, random_policy

    assert mpc.out is not None
    out = Path(mpc.out)
    path = out / RESULTS
    data = load_results(path, settings(mpc, planner))

    def save() -> None:
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        atomic_write_text(out / TABLE, table(data, command))

    def on_episode(e: int, result: EpisodeResult) -> None:
        data["mpc"][str(e)] = {"maze_seed": mpc.seed + e, "real_return": result.real_return,
                               "steps": result.steps, "plan_seconds": result.plan_seconds,
                               "predicted_returns": result.predicted_returns}
        save()

    done = [int(e) for e in data["mpc"]]
    run_mpc(mpc, planner, progress, skip=done, on_episode=on_episode)
    if mpc.baselines:
        for name, policy in (("random", random_policy(seed=mpc.seed)),
                             ("scripted", ScriptedPolicy(seed=mpc.seed))):
            if len(data["baselines"].get(name, [])) < mpc.episodes:
                result = evaluate_in_real(policy, mpc.episodes, mpc.seed, mpc.max_steps)
                data["baselines"][name] = result.returns
                save()
    save()
    return table(data, command)
