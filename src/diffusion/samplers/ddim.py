"""Denoising diffusion implicit models (Song, Meng & Ermon 2021)."""

from __future__ import annotations

import math

import torch

from diffusion.samplers.base import Callback, SamplerStep, noise_like, walk


def ddim(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM sampling, Eq. 12 of Song et al. 2021, on any decreasing time grid.

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z, where c = eta times the
    posterior standard deviation (Eq. 16). eta = 0 is deterministic; eta = 1 has the
    variance of ancestral sampling.

    Args:
        denoiser: a `diffusion.parametrize.Denoiser`.
        x: samples from the prior at times[0], shape (B, ...).
        times: decreasing grid ending at 0.
        eta: amount of fresh noise per step, >= 0.
        generator: source of the added noise (unused when eta = 0).
        callback: called with a `SamplerStep` after each step.

    Returns:
        The samples at t = 0.
    """
    if not (eta >= 0 and math.isfinite(eta)):
        raise ValueError(f"DDIM eta must be a finite number >= 0, got {eta}")
    for i, t, s, c in walk(denoiser.process, times):
        pred = denoiser(x, t)
        c_noise = eta * math.sqrt(max(c.posterior_variance, 0.0))  # Eq. 16 of Song et al. 2021.
        direction = math.sqrt(max(c.sigma_s**2 - c_noise**2, 0.0))
        x = c.alpha_s * pred.x0 + direction * pred.eps
        if c_noise > 0 and s > 0:
            x = x + c_noise * noise_like(x, generator)
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x
