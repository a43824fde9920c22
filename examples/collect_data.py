"""Collect two short Memory Maze episodes into a temporary directory and print their contents.

Run: python examples/collect_data.py   (needs the simulator: pip install 'rad-env[maze]')
"""

from __future__ import annotations

import logging
import tempfile

from world_model.data.format import read_episode
from world_model.sim.collect import collect
from world_model.sim.memory_maze import quiet_simulator_logs


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_simulator_logs()
    with tempfile.TemporaryDirectory() as out:
        paths = collect(out, episodes=2, steps=50, seed=0, noise=0.25)
        for path in paths:
            episode = read_episode(path)
            print(path.name, f"seed={int(episode['seed'])}",
                  f"reward={episode['reward'].sum():.0f}")
            for key, value in episode.items():
                print(f"  {key:13s} {value.shape!s:18s} {value.dtype}")


if __name__ == "__main__":
    main()
