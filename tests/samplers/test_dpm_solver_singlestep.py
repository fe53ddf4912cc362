"""Singlestep DPM-Solver (Lu et al. 2022a) and DPM-Solver++ (2022b), orders 1-3: step by step it
is diffusers' DPMSolverSinglestepScheduler (with diffusers' u2 for order 3); one step is exact
for predictions polynomial in lambda of low degree and otherwise has the local error the
papers state; with the exact score it converges with order 1, 2, 3; a budget of N evaluations
is spent as the papers do.

Mutation checks (each reverted): r2 = 1/2 instead of 2/3 fails the six order-3 diffusers runs
(their evaluation times move), the exactness test of order 3 (the defect on a quadratic is
then O(h^3)) and both convergence tests; dropping the factor r2 / r1 in u2 fails the u2
exactness test and both convergence tests; adding 0.1 h^2 to order 2's weight phi1 / 2 (still
second order) fails all twelve diffusers runs and the order-2 defect test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_dpm_solver_3m import mixture, prior_draw

import diffusion.samplers.dpm_solver_singlestep as dss
from diffusion.measure.oracle import Oracle
from diffusion.parametrize import Prediction
from diffusion.processes import VP, FlowMatching
from diffusion.samplers import dpm_solver_pp, singlestep_dpm_solver, singlestep_plan
from diffusion.samplers.grids import make_grid

F64 = torch.float64
# VP's sigma / alpha at t = 1 is 152: above this the grids start evenly in lambda at t = 1
# (below it, e.g. EDM's 80 by default, their first step is a fixed jump to sigma_max).
TOP = 1e3


class Recording:
    """A denoiser that records every (x, t) it is asked about."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.process, self.calls = denoiser, denoiser.process, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        self.calls.append((x.clone(), float(t)))
        return self.denoiser(x, t)


# -- 1. diffusers' DPMSolverSinglestepScheduler ----------------------------------------------
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:.*dpmsolver.*:FutureWarning")
@pytest.mark.parametrize("steps", [10, 11, 12])
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("algorithm", ["dpmsolver++", "dpmsolver"])
def test_matches_diffusers_step_by_step(algorithm, order, steps, monkeypatch):
    """Whole runs of DPMSolverSinglestepScheduler (solver_type="midpoint", lower_order_final)
    on a grid even in lambda, so that the grid times inside each of its steps are our
    r = 1/2 and r = 1/3, 2/3: its per-step orders (`order_list`, e.g. 1, 2, 3, 1, 2, 3, 1, 2, 1)
    become our steps of orders 3, 3, 2, 1 on the grid cut at their ends. Diffusers evaluates
    the network at every time of its grid, we at our steps' starts and intermediate points:
    both see the same (x, t) at each evaluation, and end at the same state. Diffusers' own
    tables play no part: its sigmas (sigma / alpha) are set to our grid's, in float64.
    "dpmsolver++" (data prediction) ends at sigma = 0 with a first-order step on both sides;
    "dpmsolver" (noise prediction) refuses sigma = 0, so both grids end at t = 1e-3.
    For order 3 diffusers' second intermediate state u2 is a DPM-Solver-2 step (see the
    module docstring); with that patched in, the states agree to 1.1e-15 of their scale
    (measured; asserted to 1e-10). Without it our order-3 runs end elsewhere; order 2 needs
    no patch."""
    diffusers = pytest.importorskip("diffusers")
    from test_diffusers_equivalence import FakeDenoiser, assert_match, fake_eps, prior

    process = VP()
    noise = algorithm == "dpmsolver"
    fine = make_grid(process, steps + noise, "logsnr", sigma_max=TOP)[: steps + 1]
    scheduler = diffusers.DPMSolverSinglestepScheduler(
        solver_order=order, algorithm_type=algorithm, solver_type="midpoint",
        lower_order_final=True, final_sigmas_type="sigma_min" if noise else "zero",
    )  # fmt: skip
    scheduler.set_timesteps(steps)
    scheduler.sigmas = process.sigma_ratio(fine)  # its sigma is our sigma / alpha
    y, theirs = prior(), []
    for j, k in enumerate(scheduler.timesteps):
        theirs.append((y, fine[j].item()))
        y = scheduler.step(fake_eps(y, fine[j].item()), k, y).prev_sample
    # its steps: each run 1, 2, ..., k of order_list is one of our steps of order k
    starts = [j for j, k in enumerate(scheduler.order_list) if k == 1] + [steps]
    orders = tuple(b - a for a, b in itertools.pairwise(starts))
    assert sum(orders) == steps and max(orders) == order
    prediction = "noise" if noise else "data"
    papers = singlestep_dpm_solver(FakeDenoiser(process), prior(), fine[starts], orders=orders,
                                   prediction=prediction)  # fmt: skip
    if order == 3:
        monkeypatch.setattr(dss, "_third_order_inner", dss._second_order)
    denoiser = Recording(FakeDenoiser(process))
    ours = singlestep_dpm_solver(denoiser, prior(), fine[starts], orders=orders,
                                 prediction=prediction)  # fmt: skip
    assert len(denoiser.calls) == steps
    for i, ((x, t), (x_d, t_d)) in enumerate(zip(denoiser.calls, theirs, strict=True)):
        assert t == pytest.approx(t_d, rel=1e-12, abs=1e-15), i
        assert_match(x, x_d, 1e-10, f"evaluation {i}")
    assert_match(ours, y, 1e-10, "end")
    if order == 2:  # no patch: the same run
        assert_match(papers, y, 1e-10, "end")
    else:  # measured 5e-2 to 1.1e-1 of the scale (90 to 160): the fake network is not smooth
        assert float((papers - y).abs().max()) > 1e-2 * float(y.abs().max())


# -- 2. one step: exact for polynomial predictions of low degree -------------------------------
def polynomial_step(order: int, prediction: str, coefficients, lam_t: float, h: float):
    """One step lambda_t -> lambda_t + h on VP by a network whose x0_hat ("data") or eps_hat
    ("noise") is P(lambda - lambda_t) = sum_k c_k (lambda - lambda_t)^k, whatever x is; and
    the exact solution (the integral by 40-point Gauss-Legendre, exact here to rounding)."""
    process = VP()

    def p(lam):
        return sum(c * (lam - lam_t) ** k for k, c in enumerate(coefficients))

    def denoiser(x, t):
        tt = torch.as_tensor(t, dtype=F64)
        alpha, sigma = float(process.alpha(tt)), float(process.sigma(tt))
        f = torch.full_like(x, p(math.log(alpha / sigma)))
        if prediction == "data":
            return Prediction(x0=f, eps=(x - alpha * f) / sigma)
        return Prediction(x0=(x - sigma * f) / alpha, eps=f)

    denoiser.process = process
    ends = (lam_t, lam_t + h)
    times = torch.tensor([process.time_at_sigma_ratio(math.exp(-lam)) for lam in ends], dtype=F64)
    (a_t, a_s), (s_t, s_s) = process.alpha(times).tolist(), process.sigma(times).tolist()
    h = math.log(a_s / s_s) - math.log(a_t / s_t)  # the actual width
    x = torch.tensor([0.7, -1.2], dtype=F64)
    ours = singlestep_dpm_solver(denoiser, x.clone(), times, order=order, prediction=prediction)
    nodes, weights = np.polynomial.legendre.leggauss(40)
    tau = (nodes + 1) * h / 2
    kernel = np.exp(tau - h) if prediction == "data" else np.exp(h - tau)
    integral = float(np.sum(weights * kernel * p(lam_t + tau)) * h / 2)
    if prediction == "data":
        exact = (s_s / s_t) * x + a_s * integral
    else:
        exact = (a_s / a_t) * x - s_s * integral
    weight = a_s if prediction == "data" else s_s  # alpha_s or sigma_s, as in the integral
    return float((ours - exact).abs().max()), h, weight


@pytest.mark.parametrize("prediction", ["data", "noise"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_step_is_exact_for_low_degree_and_has_local_order_k_plus_one(order, prediction):
    """Order 1 and 2 steps are exact for a constant prediction, order 3 for a linear one (it
    has no f'' term; order 2's midpoint weight phi1 / 2 is not phi2); measured errors <= 9e-16
    at h = 0.8. One degree up, f = (lambda - lambda_t)^d, they miss by weight C h^(k+1) to
    leading order, C = 1/2, 1/12, 1/36 for orders 1, 2, 3 (from the Taylor series of the
    phi's; weight alpha_s or sigma_s): measured defect ratios on halving h = 0.2 are 4.21,
    8.29, 16.7 (data) and 4.08, 8.29, 16.4 (noise), and the defect at h = 0.1 is 0.95 to
    1.05 times weight C h^(k+1)."""
    exact_degree = {1: 0, 2: 0, 3: 1}[order]
    for degree in range(exact_degree + 1):
        coefficients = [0.3, -0.8, 0.5][: degree + 1]
        error, _, _ = polynomial_step(order, prediction, coefficients, -1.0, 0.8)
        assert error < 1e-13, (degree, error)
    top = [0.0] * (exact_degree + 1) + [1.0]  # (lambda - lambda_t)^(exact_degree + 1)
    coarse, _, _ = polynomial_step(order, prediction, top, -1.0, 0.2)
    fine, h, weight = polynomial_step(order, prediction, top, -1.0, 0.1)
    assert 2 ** (order + 1) * 0.9 < coarse / fine < 2 ** (order + 1) * 1.1, coarse / fine
    leading = weight * h ** (order + 1) / {1: 2, 2: 12, 3: 36}[order]
    assert fine == pytest.approx(leading, rel=0.15), fine / leading


def test_the_papers_u2_is_exact_for_a_linear_prediction_and_diffusers_is_not():
    """u2 of Alg. 2 (`_third_order_inner`) integrates a linear f exactly from t to s_2; the
    DPM-Solver-2 step diffusers takes there misses by ~(r2 h)^3 / 12."""
    process = VP()
    lam_t, h = -0.5, 0.9
    points = [dss._point_at(process, lam_t + r * h) for r in (0.0, 1 / 3, 2 / 3)]
    start, p1, p2 = points
    x, f_t = torch.tensor([0.4], dtype=F64), torch.tensor([0.2], dtype=F64)
    slope = 1.7  # f = f_t + slope (lambda - lambda_t)
    f1 = f_t + slope * (p1.lam - start.lam)
    h2 = p2.lam - start.lam
    # data form: (sigma_2 / sigma_t) x + alpha_2 int_0^h2 e^(tau - h2) (f_t + slope tau) dtau
    exact = (p2.sigma / start.sigma) * x + p2.alpha * (
        -math.expm1(-h2) * f_t + slope * (h2 - 1 + math.exp(-h2))
    )
    ours = dss._third_order_inner(x, f_t, f1, start, p1, p2, "data")
    theirs = dss._second_order(x, f_t, f1, start, p1, p2, "data")
    assert float((ours - exact).abs().max()) < 1e-14
    assert float((theirs - exact).abs().max()) > 1e-3  # measured 4.1e-3


# -- 3. order of convergence with the exact score ---------------------------------------------
REFERENCE_STEPS = 640


@pytest.fixture(scope="module")
def problem():
    """The exact VP field of the 2-D mixture of `test_dpm_solver_3m`, 200 prior draws, and
    their 640-step DPM-Solver++(3M) solution (an independent solver; 1.4e-7 from its 1,280-step
    one, measured) on the log-SNR grid that starts evenly at t = 1 (`TOP`)."""
    process = VP()
    denoiser = Oracle(mixture(), process).denoiser()
    x1 = prior_draw(process, 200)
    grid = make_grid(process, REFERENCE_STEPS, "logsnr", sigma_max=TOP)
    return process, denoiser, x1, dpm_solver_pp(denoiser, x1.clone(), grid, order=3)


@pytest.mark.parametrize("prediction", ["data", "noise"])
def test_orders_of_convergence_with_the_exact_score(problem, prediction):
    """Mean distance to the reference at 20, 40, 80 steps (all grids share the last positive
    time, and every solver takes the same first-order last step from it to t = 0, so it
    cancels). Measured errors (slopes): data, order 2: 1.5e-2, 4.0e-3, 1.0e-3 (1.97, 1.98);
    order 3: 5.8e-4, 7.5e-5, 9.4e-6 (2.95, 2.98). Noise, order 2: 1.7e-2, 3.9e-3, 9.2e-4
    (2.15, 2.07); order 3: 3.3e-4, 3.8e-5, 4.7e-6 (3.11, 3.02). Order 1 is DDIM for both
    (`test_order_one_is_ddim`), measured slopes 1.02, 1.00."""
    process, denoiser, x1, reference = problem
    for order in (2, 3):
        found = []
        for k in (20, 40, 80):
            grid = make_grid(process, k, "logsnr", sigma_max=TOP)
            x = singlestep_dpm_solver(denoiser, x1.clone(), grid, order=order,
                                      prediction=prediction)  # fmt: skip
            found.append(float((x - reference).norm(dim=1).mean()))
        slopes = [math.log2(a / b) for a, b in itertools.pairwise(found)]
        assert all(order - 0.15 < m < order + 0.25 for m in slopes), (order, found, slopes)


@pytest.mark.parametrize("process", [VP(), FlowMatching()], ids=["vp", "flow"])
def test_order_one_is_ddim(process):
    """DPM-Solver-1 and DPM-Solver++(1) are both DDIM (Lu et al. 2022a, b); flow matching
    starts at alpha = 0 (lambda = -inf), where every order takes DDIM's limit."""
    from diffusion.samplers import ddim

    denoiser = Oracle(mixture(), process).denoiser()
    x1, times = prior_draw(process, 64), make_grid(process, 10, "uniform")
    theirs = ddim(denoiser, x1.clone(), times)
    for prediction in ("data", "noise"):
        ours = singlestep_dpm_solver(denoiser, x1.clone(), times, order=1, prediction=prediction)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        for order in (2, 3):
            x = singlestep_dpm_solver(denoiser, x1.clone(), times, order=order,
                                      prediction=prediction)  # fmt: skip
            assert torch.isfinite(x).all()


# -- 4. cost, and a budget of N evaluations ---------------------------------------------------
class Counting:
    def __init__(self, process) -> None:
        self.denoiser = Oracle(mixture(), process).denoiser()
        self.process, self.nfe = process, 0

    def __call__(self, x, t):
        self.nfe += 1
        return self.denoiser(x, t)


@pytest.mark.parametrize(("process", "ends"), [(VP(), 1), (FlowMatching(), 2)], ids=["vp", "flow"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_each_step_costs_its_order(process, ends, order):
    """K steps of `order`, but one evaluation for a step to t = 0 and (flow) from alpha = 0."""
    counting, k = Counting(process), 7
    singlestep_dpm_solver(counting, prior_draw(process, 8), make_grid(process, k), order=order)
    assert counting.nfe == order * (k - ends) + ends


@pytest.mark.parametrize(
    ("nfe", "order", "orders"),
    [
        (6, 3, (3, 2, 1)),  # N = 0 mod 3: the papers' [3, ..., 3, 2, 1]
        (7, 3, (3, 3, 1)),  # N = 1 mod 3: [3, ..., 3, 1]
        (8, 3, (3, 3, 1, 1)),  # N = 2 mod 3: the papers' last 2 would step to t = 0
        (12, 3, (3, 3, 3, 2, 1)),
        (5, 2, (2, 2, 1)),
        (6, 2, (2, 2, 1, 1)),
        (3, 1, (1, 1, 1)),
        (1, 3, (1,)),
    ],
)
def test_a_budget_of_n_evaluations(nfe, order, orders):
    process = VP()
    plan = singlestep_plan(process, nfe, order=order)
    assert plan.orders == orders and plan.nfe == nfe
    fine = make_grid(process, nfe, "logsnr")
    assert torch.equal(plan.times, fine[[0, *itertools.accumulate(orders)]])
    counting = Counting(process)
    singlestep_dpm_solver(counting, prior_draw(process, 8), plan.times, orders=plan.orders)
    assert counting.nfe == nfe


# -- 5. bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"order": 4}, r"DPM-Solver order must be 1, 2 or 3, got 4"),
        ({"order": 0}, r"DPM-Solver order must be 1, 2 or 3, got 0"),
        ({"order": 2.5}, r"DPM-Solver order must be 1, 2 or 3, got 2\.5"),
        ({"prediction": "eps"}, r"unknown DPM-Solver prediction 'eps'; choose data or noise"),
        ({"orders": (3, 3)}, r"orders must give 1, 2 or 3 for each of the 5 steps, got \(3, 3\)"),
        ({"orders": (3, 3, 4, 1, 1)}, r"orders must give 1, 2 or 3 for each of the 5 steps, .+"),
    ],
)
def test_bad_options_raise_one_line(options, message):
    process = VP()
    counting = Counting(process)
    with pytest.raises(ValueError, match=rf"^{message}$"):
        singlestep_dpm_solver(counting, prior_draw(process, 4), make_grid(process, 5), **options)
    assert counting.nfe == 0


@pytest.mark.parametrize("nfe", [0, -3, 2.5])
def test_a_bad_budget_raises(nfe):
    with pytest.raises(ValueError, match=r"^the evaluation budget must be a positive integer"):
        singlestep_plan(VP(), nfe)
    with pytest.raises(ValueError, match=r"^DPM-Solver order must be 1, 2 or 3, got 4$"):
        singlestep_plan(VP(), 6, order=4)
