"""A Crafter exploration policy for ``rad collect --env crafter --policy examples/crafter_explore.py:explore``.

Sticky random actions biased towards moving: with probability 0.6 the previous action is
repeated; otherwise a move (left, right, up, down) with probability 0.6, else one of noop, do and
the four place actions. Sleeping (which darkens the view for long stretches) and crafting (which
needs materials a random agent rarely has) are never chosen. The agent wanders farther than a
uniformly random one (about 2.5x the distinct tiles in 200 steps), so episodes show more of the
world and come back to places seen earlier. Any factory ``f(action_space, rng) -> policy`` with
``policy(frame) -> int`` can be given to ``--policy`` the same way (docs/envs.md).
"""

from __future__ import annotations

import numpy as np

MOVES = (1, 2, 3, 4)        # move_left, move_right, move_up, move_down
OTHERS = (0, 5, 7, 8, 9, 10)  # noop, do, place_stone, place_table, place_furnace, place_plant


def explore(action_space, rng: np.random.Generator, repeat: float = 0.6, move: float = 0.6):
    """The policy factory (see the module docstring)."""
    last = [0]

    def policy(frame: np.ndarray) -> int:
        if rng.random() >= repeat:
            last[0] = int(rng.choice(MOVES if rng.random() < move else OTHERS))
        return last[0]

    return policy
