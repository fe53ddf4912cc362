"""DEIS (Zhang & Chen 2023) in the log-rho closed form: step by step it is diffusers'
DEISMultistepScheduler; with the exact score it converges with order 1, 2, 3; order 1 is DDIM.

Mutation checks (test 1 must fail on a broken update; both reverted): flipping the sign of
L_j' in the antiderivative Q_j = L_j - L_j' + L_j'' of `_weights` leaves order 1 alone but
fails orders 2 and 3 (both tables) at their first second-order step by 2.47 on a state
scale of 11.2 (10 steps) and 0.92 on 5.0 (20 steps), 2e4 times the 1e-5 tolerance; the
convergence test fails too. Dropping lower_order_final fails the 10-step runs of orders 2
and 3 on their last steps by 0.91 (order 2) and 0.29 (order 3) on a scale of 140.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from test_dpm_solver_3m import mixture, prior_draw, problem

from diffusion.measure.oracle import Oracle
from diffusion.processes import DDPM, VP, FlowMatching
from diffusion.samplers import ddim
from diffusion.samplers.deis import deis
from diffusion.samplers.grids import make_grid

F64 = torch.float64


# -- 1. diffusers' DEISMultistepScheduler ----------------------------------------------------
# diffusers' `np.log` of tensors warns under NumPy 2 (not ours to fix).
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning")
@pytest.mark.parametrize("table", ["float32", "float64"])
@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_matches_diffusers_step_by_step(order, steps, table):
    """Whole trailing runs of DEISMultistepScheduler (algorithm_type="deis",
    solver_type="logrho", lower_order_final=True: at 10 steps the last two steps drop to
    orders 1 and 2, at 20 steps they do not). Its last sigma is that of its timestep 0 (our
    t = 1 / T), not 0, so our grid ends there too. With diffusers' own float32 tables the
    states agree to 2e-6 of their scale (measured); "float64" swaps our alpha_bar in and, as
    `set_timesteps` casts the sigmas it derives to float32, also sets its sigmas to the same
    formula in float64: then they agree to 5e-15 (measured), so the update rules are equal."""
    diffusers = pytest.importorskip("diffusers")
    from test_diffusers_equivalence import (
        EXACT,
        TOL,
        T,
        assert_states_close,
        fake_eps,
        ours_t,
        prior,
        trajectory,
        with_table,
    )

    process = DDPM(T, "linear")
    scheduler = diffusers.DEISMultistepScheduler(
        num_train_timesteps=T, beta_schedule="linear", solver_order=order,
        algorithm_type="deis", solver_type="logrho", lower_order_final=True,
        timestep_spacing="trailing",
    )  # fmt: skip
    scheduler = with_table(scheduler, process, table)
    scheduler.set_timesteps(steps)
    times = process.time_grid(steps).clone()
    assert torch.equal(scheduler.timesteps + 1, (times[:-1] * T).round().long())
    times[-1] = 1 / T  # diffusers' final sigma: its timestep 0
    # rtol 1e-4: at timestep 0, 1 - alphas_cumprod = 1e-4 keeps ~4 digits in float32.
    torch.testing.assert_close(
        scheduler.sigmas, process.sigma_ratio(times).float(), rtol=1e-4, atol=0
    )
    dtype = torch.float32 if table == "float32" else F64
    if table == "float64":
        ab = scheduler.alphas_cumprod  # ours now, float64
        sigmas = ((1 - ab) / ab).sqrt()
        scheduler.sigmas = torch.cat([sigmas[scheduler.timesteps], sigmas[:1]])
    y, theirs = prior(dtype=dtype), []
    for k in scheduler.timesteps:
        y = scheduler.step(fake_eps(y, ours_t(k)), k, y).prev_sample
        theirs.append(y)
    ours = trajectory(deis, process, prior(dtype=dtype), times, order=order)
    assert_states_close(ours, theirs, TOL if table == "float32" else EXACT)


# -- 2. order of convergence with the exact score ---------------------------------------------
def test_orders_of_convergence_with_the_exact_score():
    """Mean distance to a 1,280-step DPM-Solver++(3M) solution of the same probability-flow ODE
    (an independent solver; both take the same first-order last step from the smallest noise
    level to t = 0, so it cancels) on the log-SNR grid, 500 prior draws of a 2-D mixture on VP.
    Measured (errors at 20, 40, 80 steps; slopes):
    order 1: 1.3e-1, 6.2e-2, 3.0e-2 (1.07, 1.04); order 2: 2.6e-2, 6.3e-3, 1.6e-3 (2.02, 2.01);
    order 3: 5.2e-3, 6.5e-4, 7.5e-5 (3.01, 3.11). The reference is `test_dpm_solver_3m`'s
    (the same mixture and draws, 1,280 steps), computed once per session."""
    process, denoiser, x1, reference = problem()
    slopes = {}
    for order in (1, 2, 3):
        found = []
        for k in (20, 40, 80):
            x = deis(denoiser, x1.clone(), make_grid(process, k, "logsnr"), order=order)
            found.append(float((x - reference).norm(dim=1).mean()))
        slopes[order] = [math.log2(a / b) for a, b in itertools.pairwise(found)]
    for order, measured in slopes.items():
        assert all(order - 0.2 < m < order + 0.4 for m in measured), (order, measured)


# -- 3. order 1 is DDIM ----------------------------------------------------------------------
@pytest.mark.parametrize("process", [VP(), DDPM(1000, "linear"), FlowMatching()],
                         ids=["vp", "ddpm", "flow"])  # fmt: skip
def test_order_one_is_ddim(process):
    """The first-order exponential integrator for eps is DDIM with eta = 0 (shown in Zhang &
    Chen 2023): y_s = y_t + (rho_s - rho_t) eps, here through the general weights. Flow matching starts at alpha = 0 (rho
    infinite), where DEIS takes DDIM's limit; its higher orders must stay finite there."""
    denoiser = Oracle(mixture(), process).denoiser()
    x1 = prior_draw(process, 64)
    for kind in ("uniform", "logsnr"):
        times = make_grid(process, 10, kind)
        ours = deis(denoiser, x1.clone(), times, order=1)
        theirs = ddim(denoiser, x1.clone(), times)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        for order in (2, 3):
            assert torch.isfinite(deis(denoiser, x1.clone(), times, order=order)).all()


# -- 4. bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [0, 4, 2.5])
def test_rejects_orders_outside_one_to_three(order):
    process = VP()
    with pytest.raises(ValueError, match=r"^DEIS order must be 1, 2 or 3, got .+$"):
        deis(Oracle(mixture(), process).denoiser(), prior_draw(process, 4),
             make_grid(process, 5), order=order)  # fmt: skip
