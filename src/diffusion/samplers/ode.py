"""Probability-flow ODE samplers: Euler, Heun (EDM Algorithms 1 and 2) and adaptive Runge-Kutta.

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
from diffusion.samplers.odeint import dopri5

VARIABLES = ("sigma", "t")
#: Heun skips its correction on a step that starts above this sigma / alpha (see `heun`).
HEUN_MAX_SIGMA = 1000.0


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
    return flow_velocity(denoiser.process, pred, t), pred.x0  # dx/dt


def flow_velocity(process, pred, t) -> torch.Tensor:
    """The probability-flow velocity dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat at one time."""
    tt = torch.as_tensor(t, dtype=torch.float64).reshape(())
    d_alpha, d_sigma = float(process.d_alpha(tt)), float(process.d_sigma(tt))
    return d_alpha * pred.x0 + d_sigma * pred.eps


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
    """Heun's second-order method (Karras et al. 2022, Algorithm 1; Algorithm 2 with churn).

    Each step takes an Euler step, evaluates the slope at its end and averages the two; the
    last step (to sigma = 0) stays first order, so K steps cost 2K - 1 evaluations, and as
    does a step that starts above sigma / alpha = `HEUN_MAX_SIGMA` (one evaluation fewer). With
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
        # Second-order correction (Algorithm 2, line 9), skipped on the final step and on a
        # step that starts above HEUN_MAX_SIGMA: from there the step spans noise levels of
        # several regimes, and averaging the end slope over it (almost all of it lies high,
        # where the Euler slope holds) is far worse than Euler. DDPM's cosine schedule
        # starts at sigma / alpha ~ 2e4 (EDM's 80 and VP's 152 keep the correction).
        if s > 0 and (variable != "sigma" or tau_t <= HEUN_MAX_SIGMA):
            slope_s, _ = _slope(denoiser, a_s * y_next, s, variable)
            y_next = y + (tau_s - tau_t) * 0.5 * (slope + slope_s)
        x = a_s * y_next
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=x0))
    return x


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
    process = denoiser.process
    t0 = float(times[0])
    t_end = float(times[-2]) if len(times) > 2 else min(1e-3, t0 / 2)
    last_x0 = [None]  # the x0 estimate of the latest slope evaluation, for the callback
    index = [0]

    def slope(t: float, x: torch.Tensor) -> torch.Tensor:
        k, last_x0[0] = _slope(denoiser, x, torch.tensor(t, dtype=times.dtype), "t")
        return k

    def on_step(t: float, s: float, x: torch.Tensor) -> None:
        if callback is not None:  # the last slope was evaluated at (s, x): first same as last
            callback(SamplerStep(index=index[0], t=t, s=s, x=x, x0=last_x0[0]))
        index[0] += 1

    solution = dopri5(slope, x, t0, t_end, rtol=rtol, atol=atol, max_step=max_step,
                      max_steps=max_steps, on_step=on_step)  # fmt: skip
    x, t, index = solution.y, t_end, index[0]
    # Final denoising step to t = 0.
    pred = denoiser(x, torch.tensor(t, dtype=times.dtype))
    alpha0 = float(process.alpha(torch.zeros((), dtype=torch.float64)))
    x_final = alpha0 * pred.x0
    if callback is not None:
        callback(SamplerStep(index=index, t=t, s=0.0, x=x_final, x0=pred.x0))
    return x_final
