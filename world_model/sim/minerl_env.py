"""MineRL (0.4.4, Minecraft) as a Gymnasium 1.x environment with discrete actions:
``MineRL-Navigate-v0``.

MineRL speaks the old gym API: ``env.seed(s)`` then ``obs = env.reset()``, ``obs, reward, done,
info = env.step(action)``, with an observation dict whose ``pov`` is the first-person view
``(64, 64, 3) uint8`` and a dict action (:mod:`world_model.sim.minerl_actions`). This class puts
the Gymnasium API on top:

* observation: ``pov`` resized to ``size x size`` (``Box(0, 255, (64, 64, 3), uint8)``);
* actions: ``Discrete(8)`` (noop, forward, turn_left, turn_right, look_up, look_down,
  jump_forward, attack; the mapping to MineRL's dict is in :mod:`world_model.sim.minerl_actions`);
* ``reset(seed=s)`` seeds MineRL's world generator with a seed drawn from the env's RNG seeded by
  ``s`` (``env.seed`` before ``env.reset``), so seeded resets are reproducible, and unseeded resets
  after one follow the same sequence;
* ``truncated=True`` after ``max_steps`` steps (MineRL's own limit for Navigate is 6000 steps);
  an episode MineRL ends earlier (Navigate: the goal reached) is ``terminated``.

MineRL itself (``pip install minerl==0.4.4``) builds Minecraft with Gradle when it is installed,
which downloads its toolchain from the internet, and runs it on a Java 8 JDK: without it, making
this env raises one :class:`~world_model.errors.BackendError` saying so. ``make_env`` replaces
MineRL by any factory of an env with the same interface (the tests use a small fake).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any, ClassVar, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from world_model.errors import BackendError, UserError
from world_model.sim import minerl_actions as A
from world_model.sim.frames import resize_frame

logger = logging.getLogger(__name__)

#: Episode lengths of the MineRL 0.4.4 tasks this project knows (MineRL's own time limits).
EPISODE_STEPS = {"MineRLNavigate-v0": 6000, "MineRLNavigateDense-v0": 6000,
                 "MineRLNavigateExtreme-v0": 6000, "MineRLNavigateExtremeDense-v0": 6000,
                 "MineRLTreechop-v0": 8000}
INSTALL_HELP = ("MineRL is not installed. MineRL environments need minerl 0.4.4 "
                "(pip install 'rad-env[minerl]', i.e. minerl==0.4.4), which builds Minecraft with "
                "Gradle at install time (internet access needed) and runs it on a Java 8 JDK "
                "(e.g. apt-get install openjdk-8-jdk, with JAVA_HOME pointing at it; newer Java "
                "versions do not work). MineRL data can be converted without it: "
                "rad convert-minerl SRC --out DIR")


def make_minerl(env_id: str) -> Any:
    """The real MineRL env ``env_id`` (old gym API). Raises the one clear BackendError without it."""
    if importlib.util.find_spec("minerl") is None:
        raise BackendError(INSTALL_HELP)
    try:
        import gym
        import minerl  # noqa: F401 - registers the MineRL envs with gym
    except Exception as exc:  # a broken install: say what failed
        raise BackendError(f"{INSTALL_HELP}\n(importing minerl failed: {type(exc).__name__}: "
                           f"{exc})") from exc
    return gym.make(env_id)


class MineRLEnv(gymnasium.Env):
    """A MineRL task behind the Gymnasium API with the discrete action set.

    Args:
        env_id: the MineRL task (``"MineRLNavigate-v0"``).
        size: side of the square observation (MineRL's ``pov`` is resized to it).
        angle: degrees of one turn or look action.
        max_steps: episode length (default: MineRL's own for ``env_id``, 6000 for Navigate).
        render_mode: ``"rgb_array"`` (``render()`` returns the last observation) or None.
        make_env: ``make_env(env_id)`` -> an env with MineRL's interface (default: MineRL).

    Raises:
        BackendError: MineRL is not installed (with ``make_env=None``), naming what to install.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    action_names = A.ACTION_NAMES

    def __init__(self, env_id: str = "MineRLNavigate-v0", size: int = 64,
                 angle: float = A.DEFAULT_ANGLE, max_steps: int | None = None,
                 render_mode: str | None = None,
                 make_env: Callable[[str], Any] | None = None) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise UserError(f"render_mode={render_mode!r}: expected one of "
                            f"{self.metadata['render_modes']} or None")
        self.max_steps = int(max_steps if max_steps is not None else EPISODE_STEPS.get(env_id, 6000))
        if self.max_steps < 1 or not 0 < float(angle) <= 180:
            raise UserError(f"MineRLEnv needs max_steps >= 1 and 0 < angle <= 180, got "
                            f"{max_steps}, {angle}")
        self.env_id, self.size, self.angle = env_id, int(size), float(angle)
        self.render_mode = render_mode
        self._env = (make_env or make_minerl)(env_id)
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = spaces.Discrete(A.NUM_ACTIONS)
        noop = getattr(self._env.action_space, "noop", None)
        self._noop = dict(noop()) if callable(noop) else A.noop_action()
        self._obs: np.ndarray | None = None
        self._over = True
        self.episode_step = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        world_seed = int(self.np_random.integers(2**31 - 1))
        self._env.seed(world_seed)
        obs = self._env.reset()
        self._over, self.episode_step = False, 0
        return self._observe(obs), {"world_seed": world_seed}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._over:
            raise ResetNeeded("MineRLEnv.step() called before reset() or after the episode "
                              "ended; call reset() first")
        index = int(np.asarray(action).reshape(()))
        obs, reward, done, info = self._env.step(A.to_minerl(index, self.angle, self._noop))
        self.episode_step += 1
        truncated = self.episode_step >= self.max_steps or bool(
            done and (info or {}).get("TimeLimit.truncated", False))
        terminated = bool(done) and not truncated
        self._over = terminated or truncated
        return self._observe(obs), float(reward), terminated, truncated, dict(info or {})

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._obs is None:
            raise ResetNeeded("MineRLEnv.render() called before reset()")
        return self._obs.copy()

    def close(self) -> None:
        if self._env is not None:
            try:
                self._env.close()
            except Exception as exc:  # noqa: BLE001 - closing must not mask the caller's error
                logger.debug("closing MineRL failed: %s", exc)
        self._over = True

    def _observe(self, obs: Any) -> np.ndarray:
        if not isinstance(obs, dict) or "pov" not in obs:
            raise UserError(f"{self.env_id}: the observation has no 'pov' image "
                            f"(got {type(obs).__name__})")
        self._obs = resize_frame(obs["pov"], self.size)
        return self._obs.copy()
