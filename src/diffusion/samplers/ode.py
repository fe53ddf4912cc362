"""Probability-flow ODE samplers: Euler, Heun (EDM Algorithm 2) and adaptive Runge-Kutta.

Every Gaussian path x_t = alpha x0 + sigma eps has the probability-flow ODE (Song et al. 2021,
Eq. 13) whose solution keeps the marginals. It is integrated in one of two variables:

- ``"sigma"``: the scaled state y = x / alpha against the noise level tau = sigma / alpha,
  where the ODE reads dy/dtau = E[eps | x] (Karras et al. 2022, Eq. 4 with s(t) = alpha).
  Trajectories are nearly straight in these coordinates; this is EDM's choice, and Euler in
  it is exactly DDIM with eta = 0 (Song et al. 2021, Sec. 4.3). It needs alpha > 0.
- ``"t"``: the state x against the process's own time, dx/dt = alpha' x0_hat + sigma' eps_hat
  (the flow-matching velocity, Lipman et al. 2023). Used where alpha(1) = 0 (flow matching).

The default picks "sigma" when alpha > 0 at the first time of the grid, else "t".
"""

from __future__ import annotations

import math

import torch

from diffusion.samplers.base import Callback, SamplerStep, alpha_at_start, noise_like, walk

VARIABLES = ("sigma", "t")


def choose_variable(process, times: torch.Tensor, variable: str | None) -> str:
    """The integration variable: as asked, or "sigma" unless alpha vanishes at the start."""
    start_alpha = alpha_at_start(process, times)
    if variable is None:
        return "sigma" if start_alpha > 0 else "t"
    if variable not in VARIABLES:
        raise ValueError(f"unknown ODE variable {variable!r}; choose one of: sigma, t")
    if variable == "sigma" and start_alpha <= 0:
        raise ValueError(
            "the ODE variable sigma / alpha is infinite where alpha = 0 (t = 1 of this "
            "process); use variable='t'"
        )
    return variable


def _slope(denoiser, x: torch.Tensor, t: torch.Tensor, variable: str):
    """The ODE's right-hand side at (x, t) in the chosen variable, and the x0 estimate."""
    pred = denoiser(x, t)
    if variable == "sigma":
        return pred.eps, pred.x0  # dy/dtau
    process = denoiser.process
    tt = torch.as_tensor(t, dtype=torch.float64).reshape(())
    d_alpha, d_sigma = float(process.d_alpha(tt)), float(process.d_sigma(tt))
    return d_alpha * pred.x0 + d_sigma * pred.eps, pred.x0  # dx/dt


def _ends(c, t, s, variable: str):
    """(scale_t, scale_s, tau_t, tau_s): x = scale * y and the variable at both ends."""
    if variable == "sigma":
        return c.alpha_t, c.alpha_s, c.sigma_t / c.alpha_t, c.sigma_s / c.alpha_s
    return 1.0, 1.0, float(t), float(s)


def euler(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    variable: str | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 with
    first-order steps). One network evaluation per step."""
    variable = choose_variable(denoiser.process, times, variable)
    for i, t, s, c in walk(denoiser.process, times):
        a_t, a_s, tau_t, tau_s = _ends(c, t, s, variable)
        slope, x0 = _slope(denoiser, x, t, variable)
        x = a_s * (x / a_t + (tau_s - tau_t) * slope)
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=x0))
    return x


def heun(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    variable: str | None = None,
    churn: float = 0.0,
    churn_min: float = 0.0,
    churn_max: float = math.inf,
    churn_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 2).

    Each step takes an Euler step, evaluates the slope at its end and averages the two; the
    last step (to sigma = 0) stays first order, so K steps cost 2K - 1 evaluations. With
    churn = S_churn > 0, each step whose noise level lies in [churn_min, churn_max] first
    raises it by the factor 1 + gamma, gamma = min(S_churn / K, sqrt(2) - 1), adding fresh
    noise of scale churn_noise = S_noise (Algorithm 2, lines 4-6); this needs the "sigma"
    variable.
    """
    process = denoiser.process
    variable = choose_variable(process, times, variable)
    if not (churn >= 0 and math.isfinite(churn)):
        raise ValueError(f"churn must be a finite number >= 0, got {churn}")
    if churn > 0 and variable != "sigma":
        raise ValueError("stochastic churn needs the 'sigma' ODE variable")
    steps = len(times) - 1
    for i, t, s, c in walk(process, times):
        a_t, a_s, tau_t, tau_s = _ends(c, t, s, variable)
        y = x / a_t
        gamma = min(churn / steps, math.sqrt(2) - 1) if churn_min <= tau_t <= churn_max else 0.0
        if gamma > 0:  # move up to the higher noise level tau_hat, at time t_hat
            t_hat = process.time_at_sigma_ratio(tau_t * (1 + gamma))
            tau_hat = float(process.sigma_ratio(torch.tensor(t_hat, dtype=torch.float64)))
            extra = math.sqrt(max(tau_hat**2 - tau_t**2, 0.0)) * churn_noise
            y = y + extra * noise_like(y, generator)
            a_hat = float(process.alpha(torch.tensor(t_hat, dtype=torch.float64)))
            t, tau_t, a_t = torch.tensor(t_hat, dtype=times.dtype), tau_hat, a_hat
        slope, x0 = _slope(denoiser, a_t * y, t, variable)
        y_next = y + (tau_s - tau_t) * slope
        if s > 0:  # second-order correction (skipped on the final step, Algorithm 2 line 9)
            slope_s, _ = _slope(denoiser, a_s * y_next, s, variable)
            y_next = y + (tau_s - tau_t) * 0.5 * (slope + slope_s)
        x = a_s * y_next
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=x0))
    return x


# Dormand & Prince 1980, RK5(4)7M: nodes, coefficients, 5th-order and error weights.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def rk45(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    max_step: float = 0.1,
    max_steps: int = 10_000,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Adaptive Dormand-Prince RK5(4) on dx/dt (the "t" variable), as in Song et al. 2021's
    likelihood and ODE sampling (there with scipy's RK45).

    Integrates from times[0] to the last positive time of the grid with steps chosen so the
    local error stays below atol + rtol |x| (RMS over all elements), then takes one final
    denoising step to t = 0 (x = alpha(0) x0_hat). The grid's other times are not used: the
    solver decides the number of evaluations (7 per accepted or rejected step, 6 with FSAL).
    Steps are at most `max_step` long in t: near t = 0 the velocity of VP-type paths changes
    fast (sigma' ~ 1/sigma), and an unbounded step can leap over that region with an error
    estimate that misses it.
    """
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got {rtol} and {atol}")
    process = denoiser.process
    t0 = float(times[0])
    t_end = float(times[-2]) if len(times) > 2 else min(1e-3, t0 / 2)
    t, h = t0, -(t0 - t_end) / 20
    k1, x0 = _slope(denoiser, x, torch.tensor(t0, dtype=times.dtype), "t")
    index = 0
    for _ in range(max_steps):
        if t <= t_end:
            break
        h = min(max(h, t_end - t, -max_step), -1e-12)  # h < 0: not past t_end, not too long
        t_next = t + h
        if t_next - t_end < 1e-9:  # land exactly on t_end rather than a sliver above it
            t_next, h = t_end, t_end - t
        ks = [k1]
        for j in range(1, 7):
            xj = x + h * sum(a * k for a, k in zip(_A[j], ks, strict=False) if a)
            kj, x0j = _slope(denoiser, xj, torch.tensor(t + _C[j] * h, dtype=times.dtype), "t")
            ks.append(kj)
        x_new = x + h * sum(b * k for b, k in zip(_B, ks, strict=True) if b)
        error = h * sum(e * k for e, k in zip(_E, ks, strict=True) if e)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        norm = float((error / scale).pow(2).mean().sqrt())
        if norm <= 1:  # accept; the last stage is the next step's first (FSAL)
            t_prev, t = t, t_next
            x, k1, x0 = x_new, ks[-1], x0j
            if callback is not None:
                callback(SamplerStep(index=index, t=t_prev, s=t, x=x, x0=x0))
            index += 1
        factor = 0.9 * norm ** (-1 / 5) if norm > 0 else 5.0
        h *= min(5.0, max(0.2, factor))
    else:
        raise RuntimeError(f"rk45 did not reach t = {t_end} in {max_steps} steps")
    # Final denoising step to t = 0.
    pred = denoiser(x, torch.tensor(t, dtype=times.dtype))
    alpha0 = float(process.alpha(torch.zeros((), dtype=torch.float64)))
    x_final = alpha0 * pred.x0
    if callback is not None:
        callback(SamplerStep(index=index, t=t, s=0.0, x=x_final, x0=pred.x0))
    return x_final
