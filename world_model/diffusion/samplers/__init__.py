"""Samplers behind one interface (:class:`Sampler`): DDIM (default) and Heun.

``make_sampler(diffusion, SamplerConfig(kind=...))`` builds the one a world's sampler config names.
"""

from __future__ import annotations

from world_model.config import SamplerConfig
from world_model.diffusion.samplers.base import Denoise, Sampler, randn_rows, sampling_levels
from world_model.diffusion.samplers.ddim import DDIMSampler
from world_model.diffusion.samplers.heun import HeunSampler
from world_model.diffusion.schedule import Diffusion, ValueRange

#: ``SamplerConfig.kind`` -> sampler class.
SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "heun": HeunSampler}


def make_sampler(diffusion: Diffusion, config: SamplerConfig | None = None,
                 value_range: ValueRange | None = None) -> Sampler:
    """The sampler ``config.kind`` names, over ``diffusion``'s levels."""
    config = (config or SamplerConfig()).validate(diffusion.num_levels)
    return SAMPLERS[config.kind](diffusion, config, value_range)


__all__ = ["SAMPLERS", "DDIMSampler", "Denoise", "HeunSampler", "Sampler", "make_sampler",
           "randn_rows", "sampling_levels"]
