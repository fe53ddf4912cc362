"""DEIS, the diffusion exponential integrator sampler (Zhang & Chen 2023, "Fast sampling of
diffusion models with exponential integrator", ICLR), multistep form for the noise prediction.

Dividing x_t = alpha x0 + sigma noise by alpha turns the probability-flow ODE into one with no
linear part (the exponential integrator's change of variables, the paper's rho form on which
its rhoAB- and rhoRK-DEIS are built): with y = x / alpha and rho = sigma / alpha,

    dy / drho = eps_hat(x, t),   so   y_s = y_t + int_{rho_t}^{rho_s} eps_hat drho.

A multistep (Adams–Bashforth) method replaces eps_hat inside the integral by the polynomial
through the last k predictions (eps_j at nodes u_j, j = 0 the current one; the paper's
Lagrange extrapolation P_r and weights C_ij) and integrates it exactly:

    x_s = (alpha_s / alpha_t) x_t + alpha_s sum_j w_j eps_j,
    w_j = int_{rho_t}^{rho_s} L_j(log rho) drho,   L_j(u) = prod_{m != j} (u - u_m) / (u_j - u_m).

**Variant.** The paper's tAB-DEIS extrapolates eps in the time t and computes its weights by
quadrature. This module implements the closed form that diffusers' `DEISMultistepScheduler`
uses (algorithm_type="deis", solver_type="logrho"): the nodes are u = log rho, and with
rho = e^u, integrating by parts k - 1 times gives

    int e^u p(u) du = e^u (p - p' + p'' - ...)(u)   for a polynomial p of degree k - 1,

so w_j = rho_s Q_j(log rho_s) - rho_t Q_j(log rho_t) with Q_j = L_j - L_j' + L_j''. For k = 1,
w_0 = rho_s - rho_t and the step is DDIM (Song et al. 2021, Eq. 12), as the paper shows; for
k >= 2 the two variants differ only in the variable in which eps is a polynomial.
"""

from __future__ import annotations

import math

import torch
from numpy.polynomial import Polynomial

from diffusion.samplers.base import Callback, SamplerStep, walk

# diffusers' lower_order_final: on grids of fewer steps the last step is first order and the
# one before at most second order (extrapolating over few, long steps is unstable).
LOWER_ORDER_FINAL_BELOW = 15
ONE = Polynomial([1.0])


def deis(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    order: int = 2,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DEIS multistep (log-rho closed form, see the module docstring) of `order` 1, 2 or 3 on
    any decreasing grid; one network evaluation per step. Order 1 is DDIM (eta = 0).

    As in diffusers' DEISMultistepScheduler (defaults, lower_order_final=True): step i uses at
    most i + 1 predictions (warm-up), and on grids of fewer than 15 steps the last step is
    first order and the one before at most second order. A step to rho = 0 (sigma_s = 0, the
    usual last step to t = 0) is first order: log rho is -inf there, so the polynomial would
    be extrapolated over an infinite range of log rho (the integral is finite, but its weights
    grow like rho_t / h^2 for node spacing h). Diffusers' DEIS never meets it, since its last sigma is
    that of its timestep 0 (our t = 1 / T); its other multistep solvers stepping to sigma = 0
    (DPMSolverMultistepScheduler, final_sigmas_type="zero") also take a first-order last step.
    Likewise a step from alpha_t = 0 (rho infinite, e.g. flow matching at t = 1) is first order
    and that prediction is never used as a node.

    Args:
        denoiser: a `diffusion.parametrize.Denoiser` (its eps prediction is integrated).
        x: samples from the prior at times[0], shape (B, ...).
        times: decreasing grid, normally ending at 0.
        order: number of predictions in the extrapolation, 1, 2 or 3.
        generator: unused (the sampler is deterministic); part of the common signature.
        callback: called with a `SamplerStep` after each step.

    Returns:
        The samples at times[-1].
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DEIS order must be 1, 2 or 3, got {order}")
    steps = len(times) - 1
    # (eps_hat, log rho) of the earlier steps, newest last
    history: list[tuple[torch.Tensor, float]] = []
    for i, t, s, c in walk(denoiser.process, times):
        pred = denoiser(x, t)
        rho_t = c.sigma_t / c.alpha_t if c.alpha_t > 0 else math.inf
        rho_s = c.sigma_s / c.alpha_s
        k = min(order, len(history) + 1)  # warm-up
        if steps < LOWER_ORDER_FINAL_BELOW:
            k = min(k, steps - i)  # 1 on the last step, at most 2 on the one before
        if rho_s == 0 or math.isinf(rho_t):
            k = 1
        if math.isinf(rho_t):  # x / alpha is infinite: the limit of the first-order step
            x = c.alpha_s * pred.x0 + c.sigma_s * pred.eps
        else:
            log_rho = math.log(rho_t)
            nodes = [(pred.eps, log_rho), *reversed(history[len(history) - (k - 1) :])]
            weights = _weights(rho_t, rho_s, [u for _, u in nodes])
            x = (c.alpha_s / c.alpha_t) * x + c.alpha_s * sum(
                w * eps for w, (eps, _) in zip(weights, nodes, strict=True)
            )
            history = [*history[-1:], (pred.eps, log_rho)]  # order 3 needs two earlier ones
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x


def _weights(rho_t: float, rho_s: float, nodes: list[float]) -> list[float]:
    """w_j = int_{rho_t}^{rho_s} L_j(log rho) drho for the Lagrange basis on `nodes` (log rho),
    exactly: rho Q_j(log rho) is an antiderivative, Q_j = L_j - L_j' + L_j'' - ..., and it
    tends to 0 with rho."""
    weights = []
    for j, u_j in enumerate(nodes):
        others = nodes[:j] + nodes[j + 1 :]
        basis = math.prod((Polynomial([-u, 1.0]) / (u_j - u) for u in others), start=ONE)
        primitive = sum((-1) ** n * basis.deriv(n) for n in range(len(nodes)))
        end = rho_s * primitive(math.log(rho_s)) if rho_s > 0 else 0.0
        weights.append(float(end - rho_t * primitive(math.log(rho_t))))
    return weights
