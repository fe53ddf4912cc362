"""DPM-Solver++(2M): the multistep second-order solver of Lu et al. 2022 ("DPM-Solver++:
Fast solver for guided sampling of diffusion probabilistic models"), Algorithm 2.

It integrates the probability-flow ODE in the half log-SNR lambda = log(alpha / sigma) with
the data prediction x0_hat, solving the linear part exactly:

    x_s = (sigma_s / sigma_t) x_t - alpha_s expm1(-h) D,   h = lambda_s - lambda_t,

with D = x0_hat for the first-order step and, from the second step on,
D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev with r = h_prev / h.
"""

from __future__ import annotations

import math

import torch

from diffusion.samplers.base import Callback, SamplerStep, walk


def _half_log_snr(alpha: float, sigma: float) -> float:
    if alpha <= 0:
        return -math.inf
    if sigma <= 0:
        return math.inf
    return math.log(alpha / sigma)


def dpm_solver_pp(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) on any decreasing grid; one network evaluation per step.

    The first step and the last one (to t = 0, where lambda is infinite, so r = 0) are first
    order, as in diffusers' DPMSolverMultistepScheduler with final_sigmas_type="zero" (the
    tests check step-by-step equality with it).
    """
    steps = len(times) - 1
    x0_prev, h_prev = None, None
    for i, t, s, c in walk(denoiser.process, times):
        pred = denoiser(x, t)
        lam_t, lam_s = _half_log_snr(c.alpha_t, c.sigma_t), _half_log_snr(c.alpha_s, c.sigma_s)
        h = lam_s - lam_t
        last = i == steps - 1
        first_order = x0_prev is None or last or math.isinf(h) or math.isinf(h_prev)
        if first_order:
            d = pred.x0
        else:
            r = h_prev / h
            d = (1 + 0.5 / r) * pred.x0 - (0.5 / r) * x0_prev
        ratio = c.sigma_s / c.sigma_t
        x = ratio * x - c.alpha_s * math.expm1(-h) * d
        x0_prev, h_prev = pred.x0, h
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x
