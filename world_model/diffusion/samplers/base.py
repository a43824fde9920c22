"""What every sampler is: a level sequence ``K -> ... -> 0`` and a loop over a denoise function.

A sampler knows the schedule (:class:`~world_model.diffusion.schedule.Diffusion`), never the
network: the caller hands :meth:`Sampler.sample` a ``denoise(x, level) -> output`` function (the
rollout engine's single-frame pass against its cached context and memory) and gets the clean
sample back. A new sampler is one file beside this one: subclass :class:`Sampler`, implement
:meth:`Sampler.step`, add it to :data:`world_model.diffusion.samplers.SAMPLERS`.

Noise (the initial sample and, for stochastic samplers, each step's) is drawn by the caller with
:func:`randn_rows`: one ``torch.Generator`` per batch row, so a row's samples depend on its own
seed only, not on the batch it shares.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from world_model.config import SamplerConfig
from world_model.diffusion.schedule import Diffusion, ValueRange

#: ``denoise(x (B, ...), level) -> network output (B, ...)`` (v, eps or x0 as the world predicts).
Denoise = Callable[[Tensor, int], Tensor]


def randn_rows(generators: Sequence[torch.Generator], shape: tuple[int, ...],
               device: torch.device | str | None = None) -> Tensor:
    """Standard normal noise ``(B, *shape)`` float32, row ``b`` drawn from ``generators[b]``.

    The generators live on the CPU, so the same seeds give the same noise on every device; the
    result is moved to ``device``.
    """
    rows = [torch.randn(shape, generator=g) for g in generators]
    return torch.stack(rows).to(device)


def sampling_levels(num_levels: int, steps: int, rho: float) -> Tensor:
    """``(steps + 1,)`` int64 levels ``K (1 - i / steps) ** rho``, rounded, strictly decreasing
    from ``K`` to ``0`` (possible since ``steps <= K``)."""
    frac = torch.linspace(1, 0, steps + 1, dtype=torch.float64) ** rho
    levels = (frac * num_levels).round().long().tolist()
    for i in range(len(levels) - 2, -1, -1):
        levels[i] = max(levels[i], levels[i + 1] + 1)
    levels[0] = num_levels
    return torch.tensor(levels, dtype=torch.long)


class Sampler:
    """A level sequence and one update rule.

    Attributes:
        levels: ``(steps + 1,)`` int64, strictly decreasing from ``K`` to ``0``; step ``i`` goes
            from ``levels[i]`` to ``levels[i + 1]``.
        clip_range: predicted x0 is clamped to it (``config.clip`` and a codec with a range).
    """

    #: Network passes per step (Heun: 2 but on the last step).
    passes_per_step = 1

    def __init__(self, diffusion: Diffusion, config: SamplerConfig | None = None,
                 value_range: ValueRange | None = None) -> None:
        config = (config or SamplerConfig()).validate(diffusion.num_levels)
        self.diffusion, self.config = diffusion, config
        self.clip_range = value_range if config.clip else None
        self.levels = sampling_levels(diffusion.num_levels, config.steps, config.rho)
        self._coefficients: dict[int, tuple[float, float]] = {}

    @property
    def steps(self) -> int:
        return self.config.steps

    @property
    def needs_noise(self) -> bool:
        """Whether :meth:`step` needs fresh noise (stochastic samplers)."""
        return False

    def pairs(self) -> list[tuple[int, int]]:
        """``[(level, next_level), ...]`` for every step, from ``K`` down to ``0``."""
        return list(itertools.pairwise(self.levels.tolist()))

    def coefficients(self, level: int) -> tuple[float, float]:
        """``alpha, sigma`` of ``level`` as Python floats, computed once."""
        if level not in self._coefficients:
            a, s = self.diffusion.coefficients(torch.tensor(level))
            self._coefficients[level] = (float(a), float(s))
        return self._coefficients[level]

    def x0_eps(self, x: Tensor, output: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """The network's output for ``x`` at ``level`` -> predicted ``(x0, eps)``, float32."""
        return self.diffusion.x0_eps(x, output, level, self.clip_range)

    def step(self, x: Tensor, denoise: Denoise, level: int, next_level: int,
             noise: Tensor | None = None) -> Tensor:
        """One update of ``x (B, ...)`` from ``level`` to ``next_level < level`` (float32);
        ``next_level = 0`` returns the predicted clean sample."""
        raise NotImplementedError

    def sample(self, denoise: Denoise, x: Tensor,
               noise: Callable[[], Tensor] | None = None) -> Tensor:
        """Run the whole chain from pure noise ``x (B, ...)`` at level ``K`` to level 0.

        Args:
            denoise: the network's output for a sample at a level.
            x: the initial noise (standard normal).
            noise: draws fresh standard normal noise like ``x``; needed when
                :attr:`needs_noise`.
        Returns:
            ``(B, ...)`` float32 clean sample.
        """
        if self.needs_noise and noise is None:
            raise ValueError(f"{type(self).__name__} with eta > 0 needs a noise source")
        x = x.float()
        for level, next_level in self.pairs():
            if not 0 <= next_level < level:
                raise ValueError(f"a sampler step must lower the level, got {level} -> {next_level}")
            fresh = noise() if self.needs_noise and next_level > 0 else None
            x = self.step(x, denoise, level, next_level, fresh)
        return x
