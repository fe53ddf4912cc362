"""DPM-Solver++ multistep: second order (2M, Lu et al. 2022, "DPM-Solver++: Fast solver for
guided sampling of diffusion probabilistic models", Algorithm 2) and third order (3M).

It integrates the probability-flow ODE in the half log-SNR lambda = log(alpha / sigma) with
the data prediction x0_hat, solving the linear part exactly (Lu et al. 2022, Eq. 9):

    x_s = (sigma_s / sigma_t) x_t + alpha_s int_0^h e^(tau - h) x0_hat(lambda_t + tau) dtau,

with h = lambda_s - lambda_t. 2M: x0_hat is replaced by D = (1 + 1/(2r)) x0_hat_t -
1/(2r) x0_hat_prev, r = h_prev / h, and the integral is -expm1(-h) D. 3M: x0_hat is
replaced by its Taylor polynomial at lambda_t to second order, x0 + tau x0' + tau^2/2 x0'',
with the derivatives from the quadratic through the last three outputs (divided differences
on the uneven lambda grid), and the integral taken exactly:

    int_0^h e^(tau - h) (1, tau, tau^2 / 2) dtau = (1 - e^-h, h - 1 + e^-h, h^2/2 - h + 1 - e^-h).

So a step is exact whenever x0_hat is quadratic in lambda (tests). The published 3M update
(DPM-Solver's code, diffusers' DPMSolverMultistepScheduler with solver_order=3) weights
the x0'' term by half of this; `tests/samplers/test_dpm_solver_3m.py` shows that it then
misses the quadratic and measures both orders of convergence with the exact score.
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
    order: int = 2,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (`order` 2) or (3M) (`order` 3) on any decreasing grid; one network
    evaluation per step.

    A multistep method starts with lower orders: the first step is first order, the second
    (for 3M) second order. The last step (to t = 0, where lambda is infinite) is first
    order, as in diffusers' DPMSolverMultistepScheduler with final_sigmas_type="zero" (the
    tests check 2M step by step against it).
    """
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3, got {order}")
    steps = len(times) - 1
    history: list[tuple[torch.Tensor, float]] = []  # (x0_hat, lambda) of earlier steps, newest last
    for i, t, s, c in walk(denoiser.process, times):
        pred = denoiser(x, t)
        lam_t, lam_s = _half_log_snr(c.alpha_t, c.sigma_t), _half_log_snr(c.alpha_s, c.sigma_s)
        h = lam_s - lam_t
        usable = 0 if i == steps - 1 or math.isinf(h) else len(history)
        usable = min(usable, order - 1, *(k for k, (_, lam) in enumerate(reversed(history))
                                          if math.isinf(lam)))  # fmt: skip
        ratio = c.sigma_s / c.sigma_t
        if usable == 0:
            x = ratio * x - c.alpha_s * math.expm1(-h) * pred.x0
        elif usable == 1:  # 2M, and the second step of 3M (as DPM-Solver++ starts it)
            (x0_prev, lam_prev) = history[-1]
            r = (lam_t - lam_prev) / h
            d = (1 + 0.5 / r) * pred.x0 - (0.5 / r) * x0_prev
            x = ratio * x - c.alpha_s * math.expm1(-h) * d
        else:
            x = ratio * x + c.alpha_s * _taylor_integral(pred.x0, lam_t, history[-usable:], h)
        history.append((pred.x0, lam_t))
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x


def _taylor_integral(x0: torch.Tensor, lam: float, earlier, h: float) -> torch.Tensor:
    """int_0^h e^(tau - h) P(tau) dtau for P the Taylor polynomial at lambda of the quadratic
    through (lam, x0) and the two `earlier` (x0_hat, lambda) pairs (divided differences, in
    units of h)."""
    e = math.exp(-h)
    phi = (-math.expm1(-h), (h - 1 + e) / h, (h * h / 2 - h + 1 - e) / (h * h))
    (x2, lam2), (x1, lam1) = earlier
    r0, r1 = (lam - lam1) / h, (lam1 - lam2) / h
    first0, first1 = (x0 - x1) / r0, (x1 - x2) / r1  # divided differences, in units of h
    second = (first0 - first1) / (r0 + r1)  # f[lam, lam1, lam2] h^2 = x0'' h^2 / 2
    slope = first0 + r0 * second  # h x0'(lambda) of the quadratic
    return phi[0] * x0 + phi[1] * slope + 2 * phi[2] * second
