"""DDIM sampling of one frame, as a plain object in the diffusers spirit.

:class:`DDIMSampler` decides the level sequence ``K -> ... -> 0`` for a number of steps
(:class:`~world_model.config.SamplerConfig`) and performs one update ``x_k -> x_k'`` in float32
from the network output: it turns the output into the predicted ``(x0, eps)`` under the world's
parameterisation (``DiffusionConfig.prediction``), as diffusers' schedulers do, with the
schedule's coefficients of its levels looked up once. It knows nothing about the network, the
cache or the memory: the rollout engine calls the network and hands the output here.

Noise (the initial frame and, for ``eta > 0``, the stochastic part of each update) is drawn with
:func:`randn_rows` from one ``torch.Generator`` per batch row, so a row's samples depend on its own
seed only, not on the batch it shares.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from world_model.config import SamplerConfig
from world_model.diffusion.schedule import Diffusion


def randn_rows(generators: Sequence[torch.Generator], shape: tuple[int, ...],
               device: torch.device | str | None = None) -> Tensor:
    """Standard normal noise ``(B, *shape)`` float32, row ``b`` drawn from ``generators[b]``.

    The generators live on the CPU, so the same seeds give the same noise on every device; the
    result is moved to ``device``.
    """
    rows = [torch.randn(shape, generator=g) for g in generators]
    return torch.stack(rows).to(device)


class DDIMSampler:
    """DDIM (Song et al., 2021) over the integer levels of a :class:`Diffusion`.

    Attributes:
        levels: ``(steps + 1,)`` int64, strictly decreasing from ``K`` to ``0``; step ``i`` goes
            from ``levels[i]`` to ``levels[i + 1]``.
    """

    def __init__(self, diffusion: Diffusion, config: SamplerConfig | None = None,
                 value_range: tuple[float, float] | None = None) -> None:
        config = (config or SamplerConfig()).validate(diffusion.num_levels)
        self.diffusion = diffusion
        self.config = config
        #: Predicted x0 is clipped to this range (``config.clip`` and a codec with a range).
        self.clip_range = value_range if config.clip else None
        self.prediction = diffusion.cfg.prediction
        K = diffusion.num_levels
        # K (1 - i/steps)^rho, rounded, then made strictly decreasing (possible: steps <= K).
        frac = torch.linspace(1, 0, config.steps + 1, dtype=torch.float64) ** config.rho
        levels = (frac * K).round().long().tolist()
        for i in range(len(levels) - 2, -1, -1):
            levels[i] = max(levels[i], levels[i + 1] + 1)
        levels[0] = K
        self.levels = torch.tensor(levels, dtype=torch.long)
        self._coefficients: dict[int, tuple[Tensor, Tensor]] = {}
        for level in self.levels.tolist():
            self.coefficients(level)

    def coefficients(self, level: int) -> tuple[Tensor, Tensor]:
        """``alpha, sigma`` of ``level`` as float32 scalars (0-dim, on the CPU), computed once."""
        if level not in self._coefficients:
            a, s = self.diffusion.coefficients(torch.tensor(level))
            self._coefficients[level] = (a, s)
        return self._coefficients[level]

    def to_x0_eps(self, x: Tensor, output: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """The network's ``output`` for ``x (B, ...)`` at ``level`` -> the predicted
        ``(x0, eps)``, computed in float32."""
        x, output = x.float(), output.float()
        a, s = (c.to(x.device) for c in self.coefficients(level))
        if self.prediction == "v":
            x0, eps = a * x - s * output, s * x + a * output
        elif self.prediction == "eps":
            x0, eps = (x - s * output) / a.clamp(min=1e-4), output
        else:
            w_x, w_out = self.diffusion.skip_weights(a, s)
            x0 = w_x * x + w_out * output
            eps = (x - a * x0) / s.clamp(min=1e-4)
        if self.clip_range is not None:  # keep x0 in range, and the eps that explains x with it
            x0 = x0.clamp(*self.clip_range)
            eps = (x - a * x0) / s.clamp(min=1e-4)
        return x0, eps

    @property
    def steps(self) -> int:
        return self.config.steps

    def pairs(self) -> list[tuple[int, int]]:
        """``[(level, next_level), ...]`` for every step, from ``K`` down to ``0``."""
        lv = self.levels.tolist()
        return list(itertools.pairwise(lv))

    @property
    def needs_noise(self) -> bool:
        return self.config.eta > 0

    def step(self, x: Tensor, output: Tensor, level: int, next_level: int,
             noise: Tensor | None = None) -> Tensor:
        """One DDIM update, computed in float32.

        Args:
            x: ``(B, ...)`` the sample at ``level``.
            output: ``(B, ...)`` the network's prediction for ``x`` (v, eps or x0 as configured).
            level, next_level: ``next_level < level``; ``next_level = 0`` returns the predicted x0.
            noise: ``(B, ...)`` standard normal noise; required when ``eta > 0`` and
                ``next_level > 0``, ignored otherwise.
        Returns:
            ``(B, ...)`` float32 sample at ``next_level``.
        """
        if not 0 <= next_level < level:
            raise ValueError(f"DDIM step must lower the level, got {level} -> {next_level}")
        x0, eps = self.to_x0_eps(x, output, level)
        if next_level == 0:
            return x0
        a, s = (c.item() for c in self.coefficients(level))
        a_next, s_next = (c.item() for c in self.coefficients(next_level))
        eta = self.config.eta
        sigma = 0.0
        if eta > 0 and s > 0 and a_next > 0:
            # sigma^2 = eta^2 (s'^2 / s^2) (1 - a^2 / a'^2): the DDPM posterior std scaled by eta.
            sigma = eta * (s_next / s) * max(1.0 - (a * a) / (a_next * a_next), 0.0) ** 0.5
        direction = max(s_next * s_next - sigma * sigma, 0.0) ** 0.5
        out = a_next * x0 + direction * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("eta > 0: DDIM step needs noise")
            out = out + sigma * noise.float()
        return out
