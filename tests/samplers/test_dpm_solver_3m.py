"""DPM-Solver++(3M): a step integrates a quadratic x0_hat exactly; the method is third order
with the exact score, where the published update (half the x0'' weight, as in diffusers'
DPMSolverMultistepScheduler with solver_order=3) falls back to second order; with that
weight patched in, our sampler reproduces diffusers' scheduler step by step."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

import diffusion.samplers.dpm_solver as dpm
from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle
from diffusion.processes import VP
from diffusion.samplers import dpm_solver_pp
from diffusion.samplers.grids import make_grid

F64 = torch.float64
TAYLOR = dpm._taylor_integral  # ours, before any test patches the module


def published(x0, lam, earlier, h):
    """The published 3M update: `_taylor_integral` with half its x0'' term (phi_3 D2 of
    DPM-Solver's code, with D2 = f[lambda, lambda_1, lambda_2] h^2)."""
    (x2, lam2), (x1, lam1) = earlier
    r0, r1 = (lam - lam1) / h, (lam1 - lam2) / h
    second = ((x0 - x1) / r0 - (x1 - x2) / r1) / (r0 + r1)
    phi3 = (h * h / 2 - h + 1 - math.exp(-h)) / (h * h)
    return TAYLOR(x0, lam, earlier, h) - phi3 * second


def quadratic(lam: float) -> torch.Tensor:
    return torch.tensor([1.0 + 0.7 * lam - 1.3 * lam**2], dtype=F64)


def test_a_3m_step_is_exact_for_a_quadratic_x0():
    lam, h, earlier = (
        0.3,
        0.4,
        [(quadratic(0.3 - 0.85), 0.3 - 0.85), (quadratic(0.3 - 0.35), -0.05)],
    )
    tau = torch.linspace(0, h, 200_001, dtype=F64)
    values = torch.exp(tau - h) * (1.0 + 0.7 * (lam + tau) - 1.3 * (lam + tau) ** 2)
    exact = float(torch.trapezoid(values, tau))
    ours = float(dpm._taylor_integral(quadratic(lam), lam, earlier, h))
    assert ours == pytest.approx(exact, abs=1e-9)  # measured: 2e-16 off (trapezoid: 1e-12)
    assert abs(float(published(quadratic(lam), lam, earlier, h)) - exact) > 1e-2  # 0.0126


def mixture() -> GaussianMixture:
    """The 2-D mixture whose exact field the convergence tests of the multistep solvers use
    (here, `test_deis`, `test_unipc`)."""
    return GaussianMixture.isotropic(
        torch.tensor([0.3, 0.7], dtype=F64), torch.tensor([[-1.5, 0.0], [1.0, 0.5]], dtype=F64),
        torch.tensor([0.4, 0.6], dtype=F64),
    )  # fmt: skip


def prior_draw(process, n: int = 500) -> torch.Tensor:
    """n prior draws of the 2-D problem, seed 0."""
    return process.prior((n, 2), generator=torch.Generator().manual_seed(0)).double()


@functools.cache
def problem():
    """The exact VP field of `mixture`, 500 prior draws, and their 1,280-step 3M solution on
    the log-SNR grid (the reference)."""
    process = VP()
    denoiser = Oracle(mixture(), process).denoiser()
    x1 = prior_draw(process)
    reference = dpm_solver_pp(denoiser, x1.clone(), make_grid(process, 1280, "logsnr"), order=3)
    return process, denoiser, x1, reference


def errors(order: int, steps: list[int], patch=None, monkeypatch=None) -> list[float]:
    """Mean distance to the reference of `problem` at each number of steps."""
    process, denoiser, x1, reference = problem()
    if patch is not None:
        monkeypatch.setattr(dpm, "_taylor_integral", patch)
    found = []
    for k in steps:
        x = dpm_solver_pp(denoiser, x1.clone(), make_grid(process, k, "logsnr"), order=order)
        found.append(float((x - reference).norm(dim=1).mean()))
    return found


def slopes(found: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in itertools.pairwise(found)]


def test_3m_is_third_order_where_the_published_weight_is_second(monkeypatch):
    # measured (errors at 20, 40, 80 steps): 3M 5.8e-3, 6.7e-4, 7.2e-5 (slopes 3.1, 3.2);
    # 2M 2.0e-2, 4.3e-3, 1.0e-3 (2.2, 2.1); published 3M 5.9e-3, 1.2e-3, 2.8e-4 (2.3, 2.1)
    steps = [20, 40, 80]
    third, second = errors(3, steps), errors(2, steps)
    assert min(slopes(third)) > 2.8 and max(slopes(second)) < 2.4
    assert third[-1] < second[-1] / 10
    half = errors(3, steps, published, monkeypatch)
    assert slopes(half)[-1] < 2.4 and third[-1] < half[-1] / 3


def test_with_the_published_weight_our_3m_is_diffusers_3m(monkeypatch):
    diffusers = pytest.importorskip("diffusers")
    from test_diffusers_equivalence import (
        TOL,
        assert_states_close,
        fake_eps,
        ours_t,
        prior,
        trajectory,
    )
    from test_diffusers_equivalence import T as STEPS

    from diffusion.processes import DDPM

    steps = 20  # from 15 steps on, diffusers takes third-order steps up to the last one
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=STEPS, beta_schedule="linear", algorithm_type="dpmsolver++",
        solver_order=3, solver_type="midpoint", timestep_spacing="trailing",
        lower_order_final=True, final_sigmas_type="zero",
    )  # fmt: skip
    scheduler.set_timesteps(steps)
    y, theirs = prior(dtype=torch.float32), []
    for k in scheduler.timesteps:
        y = scheduler.step(fake_eps(y, ours_t(k)), k, y).prev_sample
        theirs.append(y)
    process = DDPM(STEPS, "linear")
    monkeypatch.setattr(dpm, "_taylor_integral", published)
    ours = trajectory(dpm_solver_pp, process, prior(dtype=torch.float32),
                      process.time_grid(steps), order=3)  # fmt: skip
    assert_states_close(ours, theirs, TOL)
