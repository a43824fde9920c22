"""The diffusion objective: noise schedule, diffusion-forcing levels, parameterisations, loss.

The parameterisation lives here both ways: :meth:`Diffusion.target` (what the network learns to
output) and :meth:`Diffusion.x0_eps` (its output back to the predicted clean frame and noise,
which every sampler in :mod:`world_model.diffusion.samplers` uses).

No parameters. Level ``k`` in ``[0, K]``: ``x_k = alpha_k x0 + sigma_k eps`` with
``alpha_k^2 = alpha_bar[k]``, ``sigma_k^2 = 1 - alpha_bar[k]``; level 0 is the clean frame
(``alpha_bar[0] = 1``) and level K pure noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from world_model.config import DiffusionConfig

#: Where every real latent lies: ``(low, high)`` floats, or tensors broadcasting against a
#: sample's trailing ``(C, h, w)`` (per channel: a VAE's measured range).
ValueRange = tuple[float, float] | tuple[Tensor, Tensor]


class Diffusion:
    """The schedule, the training levels and noise, the target the network learns, the loss."""

    def __init__(self, cfg: DiffusionConfig) -> None:
        self.cfg = cfg
        K = cfg.num_levels
        t = torch.arange(K + 1, dtype=torch.float64) / K
        if cfg.schedule == "cosine":
            s = 0.008
            f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
            alpha_bar = (f / f[0]).clamp(0.0, 1.0)
        elif cfg.schedule == "linear":  # DDPM betas 1e-4 .. 0.02 over K steps
            betas = torch.linspace(1e-4, 0.02, K, dtype=torch.float64)
            alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        else:
            raise ValueError(f"unknown schedule {cfg.schedule!r}")
        alpha_bar[0] = 1.0
        self.alpha_bar = alpha_bar.float()  # (K+1,)
        self._level_cache: dict[int, tuple[Tensor, Tensor]] = {}

    @property
    def num_levels(self) -> int:
        return self.cfg.num_levels

    def coefficients(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha, sigma`` for integer ``levels`` of any shape (float32, same shape)."""
        ab = self.alpha_bar.to(levels.device)[levels.long()]
        return ab.sqrt(), (1 - ab).clamp(min=0).sqrt()

    def sample_levels(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device=None, clean_prob: float | None = None) -> Tensor:
        """Training levels: one independent level per frame on ``1..K``, uniform or logit-normal
        (``cfg.level_sampling``), clean (0) with probability ``clean_prob`` (default
        ``cfg.clean_prob``). Returns int64 of ``shape``."""
        cfg, K = self.cfg, self.num_levels
        if cfg.level_sampling == "logit_normal":
            z = torch.randn(shape, generator=generator, device=device) * cfg.level_std + cfg.level_mean
            levels = (torch.sigmoid(z) * K).ceil().long().clamp(1, K)
        else:
            levels = torch.randint(1, K + 1, shape, generator=generator, device=device)
        p = cfg.clean_prob if clean_prob is None else clean_prob
        if p > 0:
            clean = torch.rand(shape, generator=generator, device=device) < p
            levels = levels.masked_fill(clean, 0)
        return levels

    @staticmethod
    def _expand(c: Tensor, x: Tensor) -> Tensor:
        return c.reshape(*c.shape, *([1] * (x.dim() - c.dim())))

    def add_noise(self, x0: Tensor, levels: Tensor, noise: Tensor) -> Tensor:
        """``x0, noise (B, T, ...)``, ``levels (B, T)`` -> noisy ``x_k``."""
        a, s = self.coefficients(levels)
        return self._expand(a, x0) * x0 + self._expand(s, x0) * noise

    def skip_weights(self, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """x0-prediction: ``(w_x, w_out)`` with ``x0 = w_x * x_t + w_out * output`` for levels of
        coefficients ``a, s`` (``cfg.skip_sigma``; ``(0, 1)`` without skip). Same shapes."""
        d = self.cfg.skip_sigma
        if d <= 0:
            return torch.zeros_like(a), torch.ones_like(a)
        den = s * s + a * a * (d * d)
        return a * (d * d) / den, s * s / den

    def predicted_x0(self, x_t: Tensor, output: Tensor, levels: Tensor) -> Tensor:
        """x0-prediction: the network's ``output`` for ``x_t (B, T, ...)`` at ``levels (B, T)``
        -> the predicted clean frames."""
        w_x, w_out = (self._expand(w, x_t) for w in self.skip_weights(*self.coefficients(levels)))
        return w_x * x_t.float() + w_out * output.float()

    def x0_eps(self, x: Tensor, output: Tensor, level: int,
               clip_range: ValueRange | None = None,
               ) -> tuple[Tensor, Tensor]:
        """The network's ``output`` for ``x (B, ...)`` at the integer ``level`` -> the predicted
        ``(x0, eps)`` in float32 under ``cfg.prediction``; with ``clip_range`` (two floats, or two
        tensors broadcasting against ``x``'s trailing ``(C, h, w)``: per channel) x0 is clamped to it
        and eps recomputed so that ``x = alpha x0 + sigma eps`` still holds."""
        x, output = x.float(), output.float()
        if level not in self._level_cache:  # a sampler asks for the same few levels every frame
            self._level_cache[level] = self.coefficients(torch.tensor(level))
        a, s = (c.to(x.device) for c in self._level_cache[level])
        if self.cfg.prediction == "v":
            x0, eps = a * x - s * output, s * x + a * output
        elif self.cfg.prediction == "eps":
            x0, eps = (x - s * output) / a.clamp(min=1e-4), output
        else:
            w_x, w_out = self.skip_weights(a, s)
            x0 = w_x * x + w_out * output
            eps = (x - a * x0) / s.clamp(min=1e-4)
        if clip_range is not None:
            x0 = x0.clamp(*clip_range)
            eps = (x - a * x0) / s.clamp(min=1e-4)
        return x0, eps

    def target(self, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        """What the network is trained to output under ``cfg.prediction`` (for x0 with a skip,
        the output that makes :meth:`predicted_x0` exact; undefined at level 0)."""
        if self.cfg.prediction == "eps":
            return noise
        a, s = self.coefficients(levels)
        if self.cfg.prediction == "x0":
            w_x, w_out = (self._expand(w, x0) for w in self.skip_weights(a, s))
            x_t = self._expand(a, x0) * x0 + self._expand(s, x0) * noise
            return (x0 - w_x * x_t) / w_out.clamp(min=1e-8)
        return self._expand(a, x0) * noise - self._expand(s, x0) * x0

    def loss(self, output: Tensor, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        """Diffusion loss of ``output (B, T, ...)`` for frames ``x0`` noised with ``noise`` at
        ``levels (B, T)``: the mean over frames with level > 0 (a clean frame has nothing to
        denoise) of the per-frame MSE in ``cfg.loss_space``.

        'v' space: the network's output is turned into the v it implies; the error on v is the x0
        error divided by sigma (for x0-prediction) or the eps error divided by alpha (for
        eps-prediction), so the loss is the native MSE times ``1 / max(sigma, min_sigma)**2``
        (resp. alpha) -- the clamp keeps nearly clean (or nearly pure-noise) levels finite.
        """
        pred = self.cfg.prediction
        if pred == "x0":  # the error of the predicted frame (skip connection included)
            err = self.predicted_x0(self.add_noise(x0, levels, noise), output, levels) - x0.float()
        else:
            err = output.float() - self.target(x0, noise, levels).float()
        per_frame = err.pow(2).flatten(2).mean(-1)  # (B, T)
        if self.cfg.loss_space == "v" and pred != "v":
            a, s = self.coefficients(levels)
            scale = s if pred == "x0" else a
            per_frame = per_frame / scale.clamp(min=self.cfg.v_loss_min_sigma).pow(2)
        weight = (levels > 0).float()
        return (per_frame * weight).sum() / weight.sum().clamp(min=1.0)
