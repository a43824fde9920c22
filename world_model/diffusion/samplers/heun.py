"""Heun's second-order method on the probability-flow ODE (Karras et al., 2022, Alg. 1).

In the variables ``y = x / alpha`` and ``t = sigma / alpha`` the deterministic sampler is the ODE
``dy/dt = eps(y, t)``; DDIM at ``eta = 0`` is its Euler step. Heun corrects each Euler step with
the slope at its end (a second network pass), except the last step to ``t = 0``, which stays
Euler as in EDM, and a first step from pure noise (``alpha = 0``, ``t`` infinite, where the slope
average is undefined). About twice the passes of DDIM for the same steps: compare at equal
passes.
"""

from __future__ import annotations

from torch import Tensor

from world_model.diffusion.samplers.base import Denoise, Sampler


class HeunSampler(Sampler):
    """Deterministic second-order sampler (``eta`` must be 0)."""

    passes_per_step = 2

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.config.eta != 0:
            from world_model.errors import UserError

            raise UserError(f"the Heun sampler is deterministic: eta must be 0, got {self.config.eta}")

    def step(self, x: Tensor, denoise: Denoise, level: int, next_level: int,
             noise: Tensor | None = None) -> Tensor:
        x0, eps = self.x0_eps(x, denoise(x, level), level)
        if next_level == 0:
            return x0
        a, s = self.coefficients(level)
        a_next, s_next = self.coefficients(next_level)
        x_euler = a_next * x0 + s_next * eps  # the Euler (= DDIM) step: y' = x0 + t' eps
        if a < 1e-4:  # from pure noise: no finite t to average the slopes over
            return x_euler
        t, t_next = s / a, s_next / a_next
        _, eps_next = self.x0_eps(x_euler, denoise(x_euler, next_level), next_level)
        # y' = y + (t' - t) (eps + eps') / 2 = (Euler y') + (t' - t) (eps' - eps) / 2
        return x_euler + a_next * (t_next - t) * 0.5 * (eps_next - eps)
