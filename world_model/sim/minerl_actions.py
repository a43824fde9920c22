"""MineRL's dict actions and the discrete action set of a RAD world of MineRL.

MineRL 0.4.4 (``MineRLNavigate-v0`` and the other v0 tasks) takes a dict action: the keys
``forward, back, left, right, jump, sneak, sprint, attack`` (0/1 each), ``camera`` (a ``(2,)``
float: the change of pitch and yaw in degrees, each in [-180, 180]; positive pitch looks down,
positive yaw turns right) and, in Navigate, ``place`` (``"none"`` or ``"dirt"``). A RAD world has
``Discrete(n)`` actions, so the project uses these 8, with a fixed camera angle ``angle`` (15
degrees by default):

====  ==============  ==========================================
  0   noop            nothing (every key 0, camera (0, 0))
  1   forward         forward=1
  2   turn_left       camera (0, -angle)
  3   turn_right      camera (0, +angle)
  4   look_up         camera (-angle, 0)
  5   look_down       camera (+angle, 0)
  6   jump_forward    forward=1, jump=1
  7   attack          attack=1
====  ==============  ==========================================

The data set records human dict actions; :func:`discretize` maps each to one of the 8 by fixed
rules, in this order: a camera move of at least ``angle / 2`` degrees is a turn (yaw) or a look
(pitch), whichever axis moved more; else ``attack``; else ``forward`` with ``jump`` is
``jump_forward``; else ``forward`` is ``forward``; else ``noop``. ``back``, ``left``, ``right``
(strafing), ``sneak``, ``sprint`` and ``place`` have no discrete action and are dropped. Pure
numpy: nothing here needs MineRL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from world_model.errors import UserError

ACTION_NAMES = ("noop", "forward", "turn_left", "turn_right", "look_up", "look_down",
                "jump_forward", "attack")
NUM_ACTIONS = len(ACTION_NAMES)
#: The binary keys of MineRL 0.4.4's action dict (Navigate adds ``place``, others craft/equip).
BUTTONS = ("forward", "back", "left", "right", "jump", "sneak", "sprint", "attack")
DEFAULT_ANGLE = 15.0
NOOP, FORWARD, TURN_LEFT, TURN_RIGHT, LOOK_UP, LOOK_DOWN, JUMP_FORWARD, ATTACK = range(NUM_ACTIONS)


def noop_action() -> dict[str, Any]:
    """MineRL's no-op dict action over the keys this module uses (every button 0, camera 0)."""
    return {**{k: 0 for k in BUTTONS}, "camera": np.zeros(2, dtype=np.float32)}


def to_minerl(index: int, angle: float = DEFAULT_ANGLE,
              noop: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Discrete action ``index`` -> a MineRL dict action (``noop``: the env's own no-op dict, e.g.
    ``env.action_space.noop()``, so keys this module does not know keep their no-op value)."""
    if not 0 <= int(index) < NUM_ACTIONS:
        raise UserError(f"action {index!r} is outside Discrete({NUM_ACTIONS}) ({ACTION_NAMES})")
    action = {**noop_action(), **(dict(noop) if noop is not None else {})}
    camera = np.zeros(2, dtype=np.float32)  # (pitch, yaw) in degrees
    index = int(index)
    if index in (FORWARD, JUMP_FORWARD):
        action["forward"] = 1
    if index == JUMP_FORWARD:
        action["jump"] = 1
    if index == ATTACK:
        action["attack"] = 1
    if index in (TURN_LEFT, TURN_RIGHT):
        camera[1] = angle if index == TURN_RIGHT else -angle
    if index in (LOOK_UP, LOOK_DOWN):
        camera[0] = angle if index == LOOK_DOWN else -angle
    action["camera"] = camera
    return action


def discretize(actions: Mapping[str, Any], angle: float = DEFAULT_ANGLE) -> np.ndarray:
    """MineRL dict actions -> discrete indices (rules in the module docstring).

    Args:
        actions: ``forward``, ``jump``, ``attack`` ``(N,)`` 0/1 and ``camera`` ``(N, 2)`` float
            (pitch, yaw degrees), one row per step (the data set's ``action$...`` arrays, keys
            without the prefix); other keys are ignored. A single action (scalars and a ``(2,)``
            camera) gives an ``(1,)`` array.
        angle: the discrete camera angle; moves of at least ``angle / 2`` degrees count.
    Returns:
        ``(N,)`` int64 in ``[0, 8)``.
    """
    missing = [k for k in ("forward", "jump", "attack", "camera") if k not in actions]
    if missing:
        raise UserError(f"MineRL actions lack {missing} (have {sorted(actions)})")
    camera = np.asarray(actions["camera"], dtype=np.float64).reshape(-1, 2)
    n = len(camera)

    def button(key: str) -> np.ndarray:
        value = np.asarray(actions[key]).reshape(-1)
        if len(value) != n:
            raise UserError(f"MineRL action {key!r} has {len(value)} steps, camera has {n}")
        return value.astype(np.int64) != 0

    pitch, yaw = camera[:, 0], camera[:, 1]
    moved = np.maximum(np.abs(pitch), np.abs(yaw)) >= angle / 2.0
    turn = moved & (np.abs(yaw) >= np.abs(pitch))
    out = np.full(n, NOOP, dtype=np.int64)
    forward, jump, attack = button("forward"), button("jump"), button("attack")
    out[forward] = FORWARD
    out[forward & jump] = JUMP_FORWARD
    out[attack] = ATTACK
    out[moved & ~turn] = np.where(pitch[moved & ~turn] > 0, LOOK_DOWN, LOOK_UP)
    out[turn] = np.where(yaw[turn] > 0, TURN_RIGHT, TURN_LEFT)
    return out
