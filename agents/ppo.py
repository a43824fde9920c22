"""PPO in imagination: stable-baselines3 PPO trained inside the learned world, batched.

The policy sees what it would see in the real Memory Maze (``(64, 64, 3) uint8`` frames,
``Discrete(6)`` actions), so the trained agent is scored in the real env unchanged
(:mod:`agents.evaluate`). All ``num_envs`` worlds advance in one batched engine call per step
(:class:`rad_env.vector.RADVecEnv`); every episode starts from real frames.

    python -m agents.ppo --checkpoint runs/rad --num-envs 8 --total-timesteps 100000 --out runs/ppo
    python -m agents.evaluate --model runs/ppo/model.zip --episodes 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from world_model.errors import RadError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PPOConfig:
    """PPO in imagination. Every field is a command-line option of ``python -m agents.ppo``."""

    checkpoint: str | None = None
    """World run directory (config.json + model.safetensors + contexts.npz); None: shipped world."""
    num_envs: int = 8
    """Worlds stepped together in one batched engine call."""
    total_timesteps: int = 100_000
    """Environment steps to train for (over all worlds)."""
    sampling_steps: int | None = None
    """DDIM steps per imagined frame; None: the world's own (its sampler.json)."""
    episode_steps: int = 1000
    """Imagined episode length (the real Memory Maze 9x9: 1000)."""
    world_device: str = "cpu"
    """Device of the world model (cpu, cuda, auto)."""
    policy_device: str = "auto"
    """Device of the PPO networks."""
    n_steps: int = 128
    """Steps per world between updates (rollout buffer: n_steps * num_envs)."""
    batch_size: int = 256
    """Minibatch size; at most n_steps * num_envs."""
    n_epochs: int = 4
    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    ent_coef: float = 0.01
    seed: int = 0
    """Seeds the worlds (row i: seed + i) and PPO."""
    out: str = "runs/ppo-imagination"
    """Directory for model.zip and ppo_config.json."""

    def validate(self) -> PPOConfig:
        from world_model.errors import UserError

        if min(self.num_envs, self.total_timesteps, self.n_steps, self.batch_size,
               self.sampling_steps or 1, self.episode_steps, self.n_epochs) < 1:
            raise UserError(f"PPOConfig: counts must be >= 1: {self}")
        if self.batch_size > self.n_steps * self.num_envs:
            raise UserError(f"batch_size={self.batch_size} exceeds the rollout buffer "
                            f"n_steps * num_envs = {self.n_steps * self.num_envs}")
        return self


def make_imagined_vec_env(cfg: PPOConfig) -> Any:
    """``VecMonitor(RADVecEnv(...))``: the batched learned world with episode statistics."""
    from stable_baselines3.common.vec_env import VecMonitor

    from rad_env.vector import RADVecEnv

    env = RADVecEnv(cfg.num_envs, cfg.checkpoint, steps=cfg.sampling_steps,
                    max_steps=cfg.episode_steps, device=cfg.world_device)
    env.seed(cfg.seed)
    return VecMonitor(env)


def train_ppo(cfg: PPOConfig, callback: Any = None) -> Any:
    """Train ``PPO("CnnPolicy")`` in imagination; saves ``out/model.zip`` and the config.

    Returns:
        The trained ``stable_baselines3.PPO``.
    """
    from stable_baselines3 import PPO

    cfg.validate()
    env = make_imagined_vec_env(cfg)
    model = PPO("CnnPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                ent_coef=cfg.ent_coef, seed=cfg.seed, device=cfg.policy_device, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=cfg.total_timesteps, callback=callback)
    elapsed = time.perf_counter() - start
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.zip")
    (out / "ppo_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    episodes = list(model.ep_info_buffer)
    logger.info("PPO: %d steps in %.1f s (%.1f steps/s), %d finished episodes, mean return %s; "
                "saved %s", model.num_timesteps, elapsed, model.num_timesteps / elapsed,
                len(episodes),
                f"{sum(e['r'] for e in episodes) / len(episodes):.2f}" if episodes else "n/a",
                out / "model.zip")
    env.close()
    return model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.ppo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(PPOConfig):
        kind = type(f.default) if f.default is not None else (int if "int" in str(f.type) else str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default,
                            help=f"(default: {f.default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = PPOConfig(**vars(args))
    try:
        model = train_ppo(cfg)
    except RadError as exc:  # errors meant for the user: no traceback
        print(f"agents.ppo: error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {model.num_timesteps} steps in imagination; model: {Path(cfg.out) / 'model.zip'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
