"""DDIM (Song et al., 2021): the default sampler, deterministic at ``eta = 0``."""

from __future__ import annotations

from torch import Tensor

from world_model.diffusion.samplers.base import Denoise, Sampler


class DDIMSampler(Sampler):
    """DDIM over the integer levels of a :class:`~world_model.diffusion.schedule.Diffusion`;
    ``config.eta`` scales the DDPM posterior noise (0: deterministic)."""

    @property
    def needs_noise(self) -> bool:
        return self.config.eta > 0

    def step(self, x: Tensor, denoise: Denoise, level: int, next_level: int,
             noise: Tensor | None = None) -> Tensor:
        return self.update(x, denoise(x, level), level, next_level, noise)

    def update(self, x: Tensor, output: Tensor, level: int, next_level: int,
               noise: Tensor | None = None) -> Tensor:
        """The DDIM update from the network's ``output`` for ``x`` at ``level`` (float32)."""
        if not 0 <= next_level < level:
            raise ValueError(f"DDIM step must lower the level, got {level} -> {next_level}")
        x0, eps = self.x0_eps(x, output, level)
        if next_level == 0:
            return x0
        a, s = self.coefficients(level)
        a_next, s_next = self.coefficients(next_level)
        sigma = 0.0
        if self.config.eta > 0 and s > 0 and a_next > 0:
            # sigma^2 = eta^2 (s'^2 / s^2) (1 - a^2 / a'^2): the DDPM posterior std scaled by eta.
            sigma = self.config.eta * (s_next / s) * max(1.0 - (a * a) / (a_next * a_next), 0.0) ** 0.5
        out = a_next * x0 + max(s_next * s_next - sigma * sigma, 0.0) ** 0.5 * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("eta > 0: DDIM step needs noise")
            out = out + sigma * noise.float()
        return out
