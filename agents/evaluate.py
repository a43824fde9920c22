"""Score a policy in the REAL Memory Maze (or any Gymnasium env with the same spaces).

A policy trained in imagination moves to the real env unchanged: same ``(64, 64, 3) uint8``
observations, same ``Discrete(6)`` actions, same 1000-step episodes.

    python -m agents.evaluate --model runs/ppo/model.zip --episodes 3
    python -m agents.evaluate --random --episodes 3 --max-steps 200
    python -m agents.evaluate --scripted --episodes 3   # the data collector's exploration policy
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from world_model.errors import RadError

logger = logging.getLogger(__name__)

#: A policy: observation ``(64, 64, 3) uint8`` (a dict with the global observables too, for
#: ``extra_obs`` envs) -> action index. One with a ``reset()`` method has it called before each
#: episode.
Policy = Callable[[Any], int]


@dataclass(frozen=True)
class EvalResult:
    """Returns and lengths of the evaluated episodes."""

    returns: list[float]
    lengths: list[int]

    @property
    def mean_return(self) -> float:
        return statistics.fmean(self.returns)

    @property
    def std_return(self) -> float:
        return statistics.pstdev(self.returns)


def policy_from_model(model: Any, deterministic: bool = True) -> Policy:
    """A stable-baselines3 model (``model.predict``) as a :data:`Policy`."""

    def act(obs: np.ndarray) -> int:
        action, _ = model.predict(obs, deterministic=deterministic)
        return int(np.asarray(action).reshape(()))

    return act


def random_policy(num_actions: int = 6, seed: int = 0) -> Policy:
    """Uniformly random actions (the baseline: about 0 reward per episode in Memory Maze 9x9)."""
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(num_actions))


class ScriptedPolicy:
    """The data collector's scripted exploration (:class:`world_model.sim.policies.ExplorationPolicy`:
    shortest paths to random free cells, 25% random actions): it reads the maze's global
    observables, so it runs in ``MemoryMaze-*-ExtraObs-v0`` (``evaluate_in_real(extra_obs=True)``).
    The reference an agent that only sees pixels has to beat: it wanders, it does not seek targets."""

    needs_extra_obs = True

    def __init__(self, seed: int = 0, noise: float = 0.25, num_actions: int = 6) -> None:
        from world_model.sim.policies import ExplorationConfig, ExplorationPolicy

        self.policy = ExplorationPolicy(np.random.default_rng(seed),
                                        ExplorationConfig(noise=noise, num_actions=num_actions))

    def reset(self) -> None:
        self.policy.reset()

    def __call__(self, obs: Any) -> int:
        return self.policy.act(obs)


def evaluate(policy: Policy, env: Any, episodes: int = 3, seed: int = 0) -> EvalResult:
    """Run ``episodes`` episodes of ``env`` (episode ``k`` reset with ``seed + k``); a policy
    with a ``reset()`` (a recurrent one's state, the scripted one's goal) has it called first."""
    returns, lengths = [], []
    for k in range(episodes):
        if hasattr(policy, "reset"):
            policy.reset()
        obs, _ = env.reset(seed=seed + k)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        logger.info("episode %d: return %.1f in %d steps", k, total, steps)
    return EvalResult(returns, lengths)


def evaluate_in_real(policy: Policy, episodes: int = 3, seed: int = 0,
                     max_steps: int | None = None, size: str = "9x9",
                     extra_obs: bool | None = None) -> EvalResult:
    """Score ``policy`` in the real Memory Maze ``size`` (``max_steps`` shortens episodes) on the
    mazes of seeds ``seed, seed + 1, ...``; ``extra_obs``: observations with the global
    observables (default: what the policy says it needs, ``needs_extra_obs``)."""
    import gymnasium

    if extra_obs is None:
        extra_obs = bool(getattr(policy, "needs_extra_obs", False))
    kwargs = {} if max_steps is None else {"max_steps": max_steps}
    suffix = "-ExtraObs" if extra_obs else ""
    env = gymnasium.make(f"rad_env:MemoryMaze-{size}{suffix}-v0", **kwargs)
    try:
        return evaluate(policy, env, episodes, seed)
    finally:
        env.close()


def build_parser() -> argparse.ArgumentParser:
    from agents.ppo import ALGOS

    parser = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", help="a stable-baselines3 model.zip (agents.ppo's model.zip)")
    who.add_argument("--random", action="store_true", help="uniformly random actions")
    who.add_argument("--scripted", action="store_true",
                     help="the data collector's scripted exploration (reads the global observables)")
    parser.add_argument("--algo", default="ppo", choices=tuple(ALGOS),
                        help="the algorithm that saved --model (recurrent-ppo carries its LSTM "
                             "state through each episode) (default: %(default)s)")
    parser.add_argument("--stochastic", action="store_true",
                        help="--model acts with sampled actions instead of the most likely one")
    parser.add_argument("--episodes", type=int, default=3,
                        help="real episodes to score (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="episode k is the maze of seed SEED + k; also seeds --random and "
                             "--scripted (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, help="shorter real episodes (default: 1000)")
    parser.add_argument("--size", default="9x9", help="maze size (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.model:
            from stable_baselines3.common.utils import set_random_seed

            from agents.ppo import ModelPolicy, load_model

            set_random_seed(args.seed)  # --stochastic: the same actions on every run
            policy: Policy = ModelPolicy(load_model(args.model, args.algo),
                                         deterministic=not args.stochastic)
        elif args.scripted:
            policy = ScriptedPolicy(seed=args.seed)
        else:
            policy = random_policy(seed=args.seed)
        result = evaluate_in_real(policy, args.episodes, args.seed, args.max_steps, args.size)
    except RadError as exc:  # errors meant for the user: no traceback
        print(f"agents.evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"real Memory Maze {args.size}: return {result.mean_return:.2f} +- "
          f"{result.std_return:.2f} over {args.episodes} episode(s) of {result.lengths} steps; "
          f"returns {result.returns}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
