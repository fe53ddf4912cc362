"""Ancestral sampling: draw x_s from the Gaussian posterior q(x_s | x_t, x0 = x0_hat)."""

from __future__ import annotations

import math

import torch

from diffusion.samplers.base import Callback, SamplerStep, noise_like, walk

VARIANCES = ("posterior", "beta")


def ancestral(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    variance: str = "posterior",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral sampling, Algorithm 2 of Ho et al. 2020, on any decreasing time grid.

    Each step t -> s uses the posterior mean of q(x_s | x_t, x0) with x0 replaced by the
    denoiser's estimate (Eq. 7 of Ho et al. 2020, written for any pair of times as in
    Kingma et al. 2021, Eq. 32-33), so skipping steps (a subsequence of timesteps) is exact.

    Args:
        denoiser: a `diffusion.parametrize.Denoiser`.
        x: samples from the prior at times[0], shape (B, ...).
        times: decreasing grid ending at 0.
        variance: "posterior" for the posterior variance beta_tilde (the lower bound of Ho
            et al. 2020, Sec. 3.2) or "beta" for the forward variance beta_t (the upper bound).
        generator: source of the added noise.
        callback: called with a `SamplerStep` after each step.

    Returns:
        The samples at t = 0.
    """
    if variance not in VARIANCES:
        raise ValueError(
            f"unknown ancestral variance {variance!r}; choose one of: {', '.join(VARIANCES)}"
        )
    for i, t, s, c in walk(denoiser.process, times):
        pred = denoiser(x, t)
        # Posterior mean: (alpha_{t|s} sigma_s^2 / sigma_t^2) x_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x0.
        alpha_ts = c.alpha_t / c.alpha_s
        mean = (alpha_ts * c.sigma_s**2 / c.sigma_t**2) * x + (
            c.alpha_s * c.transition_variance / c.sigma_t**2
        ) * pred.x0
        if s > 0:
            var = c.posterior_variance if variance == "posterior" else c.transition_variance
            x = mean + math.sqrt(max(var, 0.0)) * noise_like(x, generator)
        else:
            x = mean  # The last step (s = 0) adds no noise: z = 0 at t = 1 in Algorithm 2 of Ho et al.
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x
