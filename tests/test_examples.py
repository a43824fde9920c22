"""Every script under examples/ runs as a newcomer would run it, at tiny size.

Each runs in its own process from the repository root (as ``python examples/NAME.py ...``) and
must exit 0 and print or write what its docstring promises. Worlds are the tests' tiny random
world (``conftest.tiny_world``) except where an example's point is the shipped world, which is
used when the package has one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rad_env.worlds import SHIPPED_WORLD

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_example_is_covered():
    covered = {"collect_data.py", "gym_env.py", "imagine.py", "load_data.py",
               "plan_in_imagination.py", "ppo_in_imagination.py", "real_memory_maze.py",
               "crafter_explore.py", "reward_before_the_frame.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == covered


def test_collect_data(tmp_path):
    out = run_example("collect_data.py", cwd=tmp_path)
    assert out.count("seed=") == 2 and "image" in out


def test_load_data(real_episodes_dir, tmp_path):
    out = run_example("load_data.py", real_episodes_dir, "--seq-len", "8", "--batch-size", "2",
                      "--batches", "1", "--val-fraction", "0", cwd=tmp_path)
    assert "batch 0:" in out and "(2, 8" in out


def test_real_memory_maze(tmp_path):
    run_example("real_memory_maze.py", "--steps", "3", cwd=tmp_path)


def test_gym_env_on_a_world(tiny_world, tmp_path):
    run_example("gym_env.py", "--checkpoint", tiny_world, "--steps", "1", "--out", "frames",
                cwd=tmp_path)
    assert (tmp_path / "frames" / "run.gif").is_file()
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 21


@pytest.mark.skipif(not (SHIPPED_WORLD / "config.json").is_file(), reason="no shipped world")
def test_gym_env_on_the_shipped_world(tmp_path):
    run_example("gym_env.py", "--steps", "1", "--out", "frames", cwd=tmp_path)
    assert (tmp_path / "frames" / "run.gif").is_file()


@pytest.mark.skipif(not (SHIPPED_WORLD / "reward" / "config.json").is_file(),
                    reason="the shipped world has no reward model")
def test_reward_before_the_frame_on_the_shipped_world(tmp_path):
    out = run_example("reward_before_the_frame.py", "--steps", "5", cwd=tmp_path)
    assert "5 real steps: real return" in out


def test_imagine_untrained_demo(tmp_path):
    run_example("imagine.py", "--frames", "2", "--steps", "1", "--context-frames", "4",
                "--out", "imagined.gif", cwd=tmp_path)
    assert (tmp_path / "imagined.gif").stat().st_size > 0


def test_plan_in_imagination(tiny_world, tmp_path):
    out = run_example("plan_in_imagination.py", "--checkpoint", tiny_world, "--steps", "2",
                      "--candidates", "4", "--horizon", "2", cwd=tmp_path)
    assert "in 2 real steps" in out  # one MPC episode of the asked length, its real return


def test_plan_with_a_value_beyond_the_horizon_on_the_shipped_world(tmp_path):
    from world_model.network.reward_model import RewardModel, RewardModelConfig, save_reward_model

    torch.manual_seed(0)  # an untrained reward-to-go model for the shipped world's 8x16x16 latents
    save_reward_model(tmp_path / "value", RewardModel(RewardModelConfig(width=8, gamma=0.9)))
    out = run_example("plan_in_imagination.py", "--steps", "2", "--candidates", "2",
                      "--horizon", "2", "--value", str(tmp_path / "value"), cwd=tmp_path)
    assert "in 2 real steps" in out


def test_ppo_in_imagination_tiny(tmp_path):
    out = run_example("ppo_in_imagination.py", "--tiny-world", cwd=tmp_path)
    assert "PPO:" in out


def test_crafter_policy_factory():
    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from crafter_explore import explore
    finally:
        sys.path.remove(str(EXAMPLES))
    policy = explore(None, np.random.default_rng(0))
    actions = [policy(np.zeros((64, 64, 3), np.uint8)) for _ in range(50)]
    assert all(0 <= a < 17 for a in actions) and len(set(actions)) > 1
