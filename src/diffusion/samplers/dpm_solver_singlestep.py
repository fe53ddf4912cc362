"""DPM-Solver, singlestep, of order 1, 2 or 3: DPM-Solver-1/2/3 on the noise prediction (Lu et
al. 2022a, "DPM-Solver: A fast ODE solver for diffusion probabilistic model sampling in around
10 steps", NeurIPS, Algorithms 1 and 2) and DPM-Solver++(1S/2S/3S) on the data prediction (Lu
et al. 2022b, "DPM-Solver++: Fast solver for guided sampling of diffusion probabilistic
models", Algorithm 1; its third-order singlestep form is the data-prediction twin of
DPM-Solver-3, as in the authors' code).

Both integrate the probability-flow ODE in the half log-SNR lambda = log(alpha / sigma) with
the linear part solved exactly (variation of constants; 2022b, Eq. 9 for x0_hat). From t to s,
with h = lambda_s - lambda_t:

    data:  x_s = (sigma_s / sigma_t) x_t + alpha_s int_0^h e^(tau - h) x0_hat(lambda_t + tau) dtau,
    noise: x_s = (alpha_s / alpha_t) x_t - sigma_s int_0^h e^(h - tau) eps_hat(lambda_t + tau) dtau.

Write f for the integrated prediction and, for one step t -> s, scale = sigma_s / sigma_t,
weight = alpha_s, phi1 = 1 - e^-h, phi2 = (e^-h - 1) / h + 1 (data), or scale = alpha_s /
alpha_t, weight = -sigma_s, phi1 = e^h - 1, phi2 = (e^h - 1) / h - 1 (noise), so that the
integral of f_t + tau f' is weight (phi1 f_t + h phi2 f'). A *singlestep* method evaluates
f again inside the step, at points s_m with lambda = lambda_t + r_m h, from intermediate
states u_m (the papers' equations, in this notation):

- order 1 (DPM-Solver-1, which is DDIM, 2022a Sec. 3):  x_s = scale x_t + weight phi1 f_t.
- order 2 (DPM-Solver-2, 2022a Alg. 1; DPM-Solver++(2S), 2022b Alg. 1), r1 = 1/2:
  u1 = the order-1 step to s_1, then x_s = scale x_t + weight phi1 (f_t + (f(u1) - f_t) / (2 r1)).
- order 3 (DPM-Solver-3, 2022a Alg. 2, and its data twin DPM-Solver++(3S)), r1 = 1/3, r2 = 2/3:
  u1 = the order-1 step to s_1;
  u2 = scale_2 x_t + weight_2 (phi1(r2 h) f_t + (r2 / r1) phi2(r2 h) (f(u1) - f_t)), t -> s_2;
  x_s = scale x_t + weight (phi1 f_t + phi2 (f(u2) - f_t) / r2).

So a step of order k costs k network evaluations, all inside the step (no history: the grid
may be anything). The r's are those of the papers; the intermediate times are found from the
process (`time_at_sigma_ratio(e^-lambda)`), and the actual lambda there is used.

**Exactness.** With f a polynomial in lambda (independent of x), order 1 is exact for a
constant, order 2 too (its midpoint weight phi1 / 2 stands in for phi2: on f = lambda -
lambda_t it is off by weight h^3 / 12), and order 3 is exact for a linear f (it has no f''
term; r2 = 2/3 makes its error on a quadratic O(h^4), not O(h^3)). So not "exact below degree
k" as a multistep step of order k is, but each step has local error O(h^(k+1)) and the method
has order k (`tests/samplers/test_dpm_solver_singlestep.py` checks all of these).

**Ends at infinite lambda.** A step to sigma = 0 (t = 0) or from alpha = 0 (flow matching at
t = 1) has h infinite: it is taken at order 1 in its limit, DDIM's x_s = alpha_s x0_hat +
sigma_s eps_hat (alpha_s x0_hat at t = 0, as the multistep solver's last step), one evaluation.
So on a grid of K intervals ending at t = 0 (and starting where alpha > 0), `order` 3 costs
3 (K - 1) + 1 evaluations, `order` 2 costs 2 (K - 1) + 1.

**A budget of N evaluations.** `singlestep_plan` follows the papers' recipe (2022a,
"DPM-Solver-fast"; the authors' `get_orders_and_timesteps_for_singlestep_solver`): steps of
order 3 and a lower-order remainder, with the last step (to t = 0) of order 1: orders
[3, ..., 3, 2, 1] (N = 0 mod 3), [3, ..., 3, 1] (N = 1), [3, ..., 3, 1, 1] (N = 2; the papers'
[3, ..., 3, 2] would end in a step of order 2 to t = 0, which is taken at order 1; diffusers'
`get_order_list` with a final sigma of 0 does the same). The steps are cut from a fine grid
of N intervals (`make_grid`, any kind), a step of order k spanning k of them; on the logsnr
grid the fine times inside a step are then its r = 1/2 or 1/3, 2/3 points.

**Diffusers.** `DPMSolverSinglestepScheduler` takes every time of its grid as an evaluation
point: a step of order k spans k grid intervals and its intermediate points are the grid times
inside it (so r1 = 1/2 and r1, r2 = 1/3, 2/3 only on a grid even in lambda), with per-step
orders [1, 2, 3, 1, 2, 3, ...] of its own `get_order_list`. Its orders 1 and 2 are the updates
above. Its order 3 ("midpoint") ends with the same update, but computes u2 by a DPM-Solver-2
step from t through u1 (weight phi1(r2 h) / 2 where Alg. 2 has phi2(r2 h)): another
second-order u2, so the step is still third order, but not the paper's (it misses a linear f
at s_2). The tests run our sampler with diffusers' u2 patched in against whole runs of the
scheduler, on a grid even in lambda cut where its steps start, and show that ours differs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from diffusion.samplers.base import Callback, SamplerStep, walk
from diffusion.samplers.dpm_solver import _half_log_snr
from diffusion.samplers.grids import make_grid

ORDERS = (1, 2, 3)
PREDICTIONS = ("data", "noise")  # DPM-Solver++ (x0_hat) or DPM-Solver (eps_hat)
#: where a step of each order evaluates the network, as fractions r of its lambda width h
#: (2022a: Alg. 1 with r1 = 1/2, Alg. 2 with r1 = 1/3, r2 = 2/3).
FRACTIONS = {1: (), 2: (1 / 2,), 3: (1 / 3, 2 / 3)}


@dataclass(frozen=True)
class SinglestepPlan:
    """A grid and the order of each of its steps: what `singlestep_plan` returns."""

    times: torch.Tensor  # (K + 1,) decreasing, from 1 to 0
    orders: tuple[int, ...]  # (K,) the order of each step

    @property
    def nfe(self) -> int:
        """Network evaluations of `singlestep_dpm_solver(..., times, orders=orders)`."""
        return sum(self.orders)


@dataclass(frozen=True)
class _Point:
    """One evaluation point: its time, alpha, sigma and lambda."""

    t: float
    alpha: float
    sigma: float
    lam: float


def singlestep_plan(process, nfe: int, order: int = 3, kind: str = "logsnr") -> SinglestepPlan:
    """Spend `nfe` network evaluations: steps of `order` and a remainder, the last of order 1
    (see the module docstring), cut from the `kind` grid of `nfe` intervals (each step spans
    as many of its intervals as its order). Pass both to the sampler:
    ``singlestep_dpm_solver(denoiser, x, plan.times, orders=plan.orders)``."""
    _check(order, "data")
    if int(nfe) != nfe or nfe < 1:
        raise ValueError(f"the evaluation budget must be a positive integer, got {nfe}")
    quotient, remainder = divmod(int(nfe) - 1, order)
    orders = (order,) * quotient + ((remainder,) if remainder else ()) + (1,)
    fine = make_grid(process, int(nfe), kind)
    return SinglestepPlan(times=fine[[0, *itertools.accumulate(orders)]], orders=orders)


def singlestep_dpm_solver(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    order: int = 3,
    orders: tuple[int, ...] | None = None,
    prediction: str = "data",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Singlestep DPM-Solver (`prediction` "noise", Lu et al. 2022a) or DPM-Solver++ ("data",
    2022b): each interval of `times` is one step of `order` (1, 2 or 3), which evaluates the
    network `order` times; a step to t = 0 (or from alpha = 0) is of order 1 (see the module
    docstring). NFE = steps x order, less order - 1 for each such step: 3 (K - 1) + 1 on a
    usual grid of K steps ending at 0 with the default order 3. For a budget of N evaluations
    use `singlestep_plan`.

    Args:
        denoiser: a `diffusion.parametrize.Denoiser`.
        x: samples from the prior at times[0], shape (B, ...).
        times: decreasing grid, normally ending at 0.
        order: the order of every step, 1, 2 or 3.
        orders: the order of each step instead (one per interval of `times`), e.g. from
            `singlestep_plan`.
        prediction: integrate the data prediction x0_hat ("data", DPM-Solver++) or the noise
            prediction eps_hat ("noise", DPM-Solver).
        generator: unused (the sampler is deterministic); part of the common signature.
        callback: called with a `SamplerStep` after each step (x0: the estimate at its start).

    Returns:
        The samples at times[-1].
    """
    _check(order, prediction)
    steps = len(times) - 1
    plan = (order,) * steps if orders is None else tuple(orders)
    if len(plan) != steps or any(k not in ORDERS for k in plan):
        raise ValueError(f"orders must give 1, 2 or 3 for each of the {steps} steps, got {orders}")
    process = denoiser.process

    def field(y: torch.Tensor, point: _Point) -> torch.Tensor:
        pred = denoiser(y, times.new_tensor(point.t))
        return pred.x0 if prediction == "data" else pred.eps

    for i, t, s, c in walk(process, times):
        start = _Point(float(t), c.alpha_t, c.sigma_t, _half_log_snr(c.alpha_t, c.sigma_t))
        end = _Point(float(s), c.alpha_s, c.sigma_s, _half_log_snr(c.alpha_s, c.sigma_s))
        pred = denoiser(x, t)
        h = end.lam - start.lam
        if math.isinf(h):  # the limit of the order-1 step (DDIM)
            x_next = c.alpha_s * pred.x0 + c.sigma_s * pred.eps
        else:
            f = pred.x0 if prediction == "data" else pred.eps
            inner = [_point_at(process, start.lam + r * h) for r in FRACTIONS[plan[i]]]
            if plan[i] == 1:
                x_next = _first_order(x, f, start, end, prediction)
            elif plan[i] == 2:
                (p1,) = inner
                f1 = field(_first_order(x, f, start, p1, prediction), p1)
                x_next = _second_order(x, f, f1, start, p1, end, prediction)
            else:
                p1, p2 = inner
                f1 = field(_first_order(x, f, start, p1, prediction), p1)
                f2 = field(_third_order_inner(x, f, f1, start, p1, p2, prediction), p2)
                x_next = _third_order(x, f, f2, start, p2, end, prediction)
        x = x_next
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x


def _check(order, prediction: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown DPM-Solver prediction {prediction!r}; choose data or noise")


def _point_at(process, lam: float) -> _Point:
    """The point of the process where lambda = `lam` (the time by bisection; its own lambda)."""
    t = process.time_at_sigma_ratio(math.exp(-lam))
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = float(process.alpha(tt)), float(process.sigma(tt))
    return _Point(t, alpha, sigma, _half_log_snr(alpha, sigma))


def _phis(start: _Point, end: _Point, prediction: str) -> tuple[float, float, float, float]:
    """(scale, weight, phi1, phi2) of the step start -> end: the exact solution for a linear
    f = f_t + tau f' is scale x_t + weight (phi1 f_t + h phi2 f') (module docstring)."""
    h = end.lam - start.lam
    if prediction == "data":  # 2022b, Eq. 9
        return end.sigma / start.sigma, end.alpha, -math.expm1(-h), math.expm1(-h) / h + 1
    return end.alpha / start.alpha, -end.sigma, math.expm1(h), math.expm1(h) / h - 1  # 2022a


def _first_order(x, f, start: _Point, end: _Point, prediction: str) -> torch.Tensor:
    """DPM-Solver-1 (2022a) / DPM-Solver++(1): x_s = scale x_t + weight phi1 f_t."""
    scale, weight, phi1, _ = _phis(start, end, prediction)
    return scale * x + (weight * phi1) * f


def _second_order(x, f, f1, start: _Point, mid: _Point, end: _Point, prediction: str):
    """DPM-Solver-2 (2022a, Alg. 1) / DPM-Solver++(2S) (2022b, Alg. 1): f1 evaluated at `mid`
    (lambda_t + r1 h); x_s = scale x_t + weight phi1 (f_t + (f1 - f_t) / (2 r1))."""
    scale, weight, phi1, _ = _phis(start, end, prediction)
    r1 = (mid.lam - start.lam) / (end.lam - start.lam)
    return scale * x + (weight * phi1) * (f + (f1 - f) / (2 * r1))


def _third_order_inner(x, f, f1, start: _Point, p1: _Point, p2: _Point, prediction: str):
    """u2 of DPM-Solver-3 (2022a, Alg. 2): the step t -> s_2 with f1 evaluated at s_1,
    u2 = scale_2 x_t + weight_2 (phi1(r2 h) f_t + (r2 / r1) phi2(r2 h) (f1 - f_t)); exact for
    a linear f (diffusers takes `_second_order(x, f, f1, start, p1, p2)` here)."""
    scale, weight, phi1, phi2 = _phis(start, p2, prediction)
    ratio = (p2.lam - start.lam) / (p1.lam - start.lam)  # r2 / r1
    return scale * x + weight * (phi1 * f + (ratio * phi2) * (f1 - f))


def _third_order(x, f, f2, start: _Point, p2: _Point, end: _Point, prediction: str):
    """The last update of DPM-Solver-3 (2022a, Alg. 2): f2 evaluated at s_2 = lambda_t + r2 h,
    x_s = scale x_t + weight (phi1 f_t + phi2 (f2 - f_t) / r2)."""
    scale, weight, phi1, phi2 = _phis(start, end, prediction)
    r2 = (p2.lam - start.lam) / (end.lam - start.lam)
    return scale * x + weight * (phi1 * f + (phi2 / r2) * (f2 - f))
