"""N learned worlds stepped by ONE batched call of the rollout engine, behind two vector APIs.

:class:`~rad_env.worlds.BatchedWorlds` holds the engine state of ``N`` rows and does every reset,
step and observation. Two faces put the RL conventions on top of it, and nothing else:

* :class:`RADVecEnv` - a stable-baselines3 ``VecEnv``: finished rows reset at once (a new real
  context), the last imagined frame goes to ``infos[i]["terminal_observation"]`` and
  ``infos[i]["TimeLimit.truncated"]`` says whether the episode was cut by the time limit.
  ``PPO("CnnPolicy", RADVecEnv(8, ...))`` trains with no adapter.
* :class:`RADVectorEnv` - a Gymnasium ``VectorEnv``, what ``gymnasium.make_vec(
  "rad_env:RAD-MemoryMaze-v0", num_envs=N)`` returns. Autoreset follows Gymnasium 1.x:
  ``"next_step"`` by default (a row that ended is reset by the *next* ``step`` call, which returns
  its first observation with reward 0), ``"same_step"`` (reset at once; the last observation and
  info in ``infos["final_obs"]``/``infos["final_info"]``) or ``"disabled"`` (reset rows yourself
  with ``reset(options={"reset_mask": mask})``).

Both take the options of :class:`~rad_env.config.EnvConfig` (``config=`` or keyword arguments:
contexts, device, steps, dtype, max_steps, ...) and expose ``get_state()``/``set_state()`` for all
rows. The episode length is decided by the core alone (``max_steps``); no Gymnasium ``TimeLimit``
is involved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rad_env.config import EnvConfig
from rad_env.sharded import make_worlds
from rad_env.worlds import WorldSnapshot
from world_model.errors import UserError

try:  # stable-baselines3 is the optional extra `rl`; only RADVecEnv needs it
    from stable_baselines3.common.vec_env import VecEnv as _SB3VecEnv
except ImportError:  # pragma: no cover - exercised only without the extra
    _SB3VecEnv = None

logger = logging.getLogger(__name__)

__all__ = ["RADVecEnv", "RADVectorEnv"]


def _seed_list(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """Gymnasium's convention: an int seeds row ``i`` with ``seed + i``; a list gives one per row."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise UserError(f"{len(seeds)} seeds for {n} environments")
    return seeds


# -- stable-baselines3 ----------------------------------------------------------------------------

class RADVecEnv(_SB3VecEnv if _SB3VecEnv is not None else object):  # type: ignore[misc]
    """The learned world as a stable-baselines3 ``VecEnv`` of ``num_envs`` rows.

    Args:
        num_envs: N, worlds stepped together.
        render_mode: ``"rgb_array"`` (``get_images()`` returns every row's frame) or None.
        config, **options: the env's options (:class:`~rad_env.config.EnvConfig`).

    Seeds (``seed(s)``: row ``i`` gets ``s + i``) and options (``set_options``, the same as
    :meth:`RADEnv.reset`'s) apply to the next ``reset()``, as in SB3. All rows share this one
    object: ``get_attr``/``set_attr`` read and write its attributes, ``env_method`` calls its
    method once and returns the result for every requested row.
    """

    def __init__(self, num_envs: int = 1, checkpoint: str | None = None, *,
                 render_mode: str | None = None, config: EnvConfig | None = None,
                 **options: Any) -> None:
        if _SB3VecEnv is None:
            raise UserError("RADVecEnv needs stable-baselines3: pip install 'rad-env[rl]'")
        if render_mode not in (None, "rgb_array"):
            raise UserError(f"render_mode={render_mode!r}: expected 'rgb_array' or None")
        self.worlds = make_worlds(num_envs, checkpoint, config, **options)
        self.render_mode = render_mode
        super().__init__(num_envs, self.worlds.observation_space, self.worlds.action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self.worlds.seed_row(i, seed)
        plain = [i for i in range(self.num_envs) if not self._options[i]]
        if plain:
            self.worlds.reset_rows(plain)
        for i in range(self.num_envs):
            if self._options[i]:
                self.worlds.reset_rows([i], self._options[i])
        self.reset_infos = [self.worlds.reset_info(i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self.worlds.obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise UserError("step_wait() called without step_async(actions)")
        result = self.worlds.step(self._actions)
        self._actions = None
        dones = result.terminated | result.truncated
        infos = [result.info(i) for i in range(self.num_envs)]
        obs = result.obs.copy()
        done_rows = np.flatnonzero(dones).tolist()
        for i in done_rows:
            infos[i]["terminal_observation"] = result.obs[i].copy()
            infos[i]["TimeLimit.truncated"] = bool(result.truncated[i] and not result.terminated[i])
        if done_rows:
            self.worlds.reset_rows(done_rows)
            for i in done_rows:
                obs[i] = self.worlds.obs[i]
                self.reset_infos[i] = self.worlds.reset_info(i)
        return obs, result.reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.worlds.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.worlds.obs.copy())

    def _rows(self, indices: None | int | Iterable[int]) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: None | int | Iterable[int] = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._rows(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Iterable[int] = None) -> None:
        if sorted(self._rows(indices)) != list(range(self.num_envs)):
            raise UserError("RADVecEnv rows share one object: set_attr applies to all rows")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any,
                   indices: None | int | Iterable[int] = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._rows(indices)]

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper],
                       indices: None | int | Iterable[int] = None) -> list[bool]:
        return [False for _ in self._rows(indices)]

    def get_state(self) -> WorldSnapshot:
        """A snapshot of every row (see :meth:`BatchedWorlds.snapshot`)."""
        return self.worlds.snapshot()

    def set_state(self, snapshot: WorldSnapshot) -> None:
        self.worlds.restore(snapshot)


# -- Gymnasium ------------------------------------------------------------------------------------

class RADVectorEnv(VectorEnv):
    """The learned world as a Gymnasium ``VectorEnv`` (``gymnasium.make_vec``'s vector entry point).

    Args:
        num_envs: N, worlds stepped together.
        autoreset_mode: ``"next_step"`` (default), ``"same_step"`` or ``"disabled"``.
        render_mode: ``"rgb_array"`` (``render()`` returns a tuple of N frames) or None.
        config, **options: the env's options (:class:`~rad_env.config.EnvConfig`).

    ``reset(seed=s)`` seeds row ``i`` with ``s + i`` (or one seed per row from a list);
    ``options`` are those of :meth:`RADEnv.reset`, plus ``"reset_mask"``: ``(N,)`` bool, the rows
    to reset (the others keep going).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, checkpoint: str | None = None, *,
                 autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
                 render_mode: str | None = None, config: EnvConfig | None = None,
                 **options: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise UserError(f"render_mode={render_mode!r}: expected 'rgb_array' or None")
        modes = {**{m.value: m for m in AutoresetMode}, **{m.name.lower(): m for m in AutoresetMode}}
        if autoreset_mode not in modes and not isinstance(autoreset_mode, AutoresetMode):
            raise UserError(f"autoreset_mode={autoreset_mode!r}: expected one of {list(modes)}")
        self.autoreset_mode = AutoresetMode(modes.get(autoreset_mode, autoreset_mode))
        self.worlds = make_worlds(num_envs, checkpoint, config, **options)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.metadata = dict(self.metadata, autoreset_mode=self.autoreset_mode)
        self.single_observation_space = self.worlds.observation_space
        self.single_action_space = self.worlds.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            rows = list(range(self.num_envs))
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise UserError(f"options['reset_mask'] must be ({self.num_envs},) bool with at "
                                f"least one True, got {mask.shape} {mask.dtype}")
            rows = np.flatnonzero(mask).tolist()
        seeds = _seed_list(seed, self.num_envs)
        for i in rows:
            if seeds[i] is not None:
                self.worlds.seed_row(i, seeds[i])
        super().reset(seed=int(seed) if isinstance(seed, (int, np.integer)) else None)
        self.worlds.reset_rows(rows, options or None)
        self._autoreset[rows] = False
        return self.worlds.obs.copy(), self._infos(rows, self.worlds.reset_info)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        if self.autoreset_mode == AutoresetMode.DISABLED and self._autoreset.any():
            raise UserError(f"rows {np.flatnonzero(self._autoreset).tolist()} ended and "
                            f"autoreset_mode is 'disabled': reset them with "
                            f"reset(options={{'reset_mask': mask}}) before stepping")
        result = self.worlds.step(actions)
        obs, reward = result.obs.copy(), result.reward.astype(np.float64)
        terminated, truncated = result.terminated.copy(), result.truncated.copy()
        infos = self._infos(range(self.num_envs), result.info)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP and self._autoreset.any():
            rows = np.flatnonzero(self._autoreset).tolist()
            self.worlds.reset_rows(rows)
            obs[rows] = self.worlds.obs[rows]
            reward[rows], terminated[rows], truncated[rows] = 0.0, False, False
            infos = self._merge(infos, rows, self.worlds.reset_info)
        ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            rows = np.flatnonzero(ended).tolist()
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in rows:
                final_obs[i] = obs[i].copy()
            final_info = self._infos(rows, result.info)
            self.worlds.reset_rows(rows)
            obs[rows] = self.worlds.obs[rows]
            infos = self._merge(infos, rows, self.worlds.reset_info)
            infos.update(final_obs=final_obs, _final_obs=ended.copy(),
                         final_info=final_info, _final_info=ended.copy())
        self._autoreset = ended if self.autoreset_mode != AutoresetMode.SAME_STEP else \
            np.zeros(self.num_envs, dtype=bool)
        return obs, reward, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(self.worlds.obs.copy())

    def close_extras(self, **kwargs: Any) -> None:
        self.worlds.close()

    def get_state(self) -> WorldSnapshot:
        """A snapshot of every row, the autoreset flags included."""
        snapshot = self.worlds.snapshot()
        snapshot.extra["autoreset"] = self._autoreset.copy()
        return snapshot

    def set_state(self, snapshot: WorldSnapshot) -> None:
        self.worlds.restore(snapshot)
        self._autoreset = snapshot.extra.get("autoreset", np.zeros(self.num_envs, bool)).copy()

    # -- infos as Gymnasium batches them: a (N,) array per key plus a "_key" mask ---------------
    def _infos(self, rows: Iterable[int], info_of) -> dict[str, Any]:
        return self._merge({}, list(rows), info_of)

    def _merge(self, infos: dict[str, Any], rows: list[int], info_of) -> dict[str, Any]:
        for i in rows:
            for key, value in info_of(i).items():
                if key not in infos:
                    dtype = object if isinstance(value, str) else type(value)
                    infos[key] = np.zeros(self.num_envs, dtype=dtype)
                    infos[f"_{key}"] = np.zeros(self.num_envs, dtype=bool)
                infos[key][i] = value
                infos[f"_{key}"][i] = True
        return infos

