"""UniPC (Zhao et al. 2023): step-by-step equality with diffusers' UniPCMultistepScheduler,
the measured order of convergence with the exact score, and its relation to DPM-Solver++.

Mutations tried (each reverted): with (k - 1)! instead of k! on the right-hand side of
`_weights` (a wrong weight for UniP-3 and UniC-2/3), `test_matches_diffusers_step_by_step`
fails for every order >= 2, first at step 2 with max |difference| 0.037 against 1e-5 x 20.8
(bh2, order 2, float32; over whole runs up to 5e-3 of the state scale at order 2 and 1e-2 at
order 3); with the exact one-D weight instead of the authors' rho = 1/2 in `_update`, it
fails for every order and table (3e-3 to 8e-2 of the state scale).
"""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
from test_dpm_solver_3m import mixture, prior_draw

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle
from diffusion.processes import DDPM, VP, FlowMatching
from diffusion.samplers import dpm_solver_pp
from diffusion.samplers.grids import make_grid
from diffusion.samplers.unipc import unipc

F64 = torch.float64

# diffusers' `np.array(tensor)` calls warn under NumPy 2 (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# -- 1. diffusers' UniPCMultistepScheduler -----------------------------------------------------
def diffusers_states(order: int, variant: str, steps: int, table: str) -> list[torch.Tensor]:
    """Diffusers' state after each `step` (its predictor's, as ours reaches the callback) on
    the DDPM with T = 1000 linear betas, trailing timesteps, fed `fake_eps`. Its `set_timesteps`
    casts its sigmas to float32 whatever `alphas_cumprod` is, so "float64" swaps our float64
    sigma / alpha = sqrt((1 - alpha_bar) / alpha_bar) in after it, then it computes in float64."""
    diffusers = pytest.importorskip("diffusers")
    from test_diffusers_equivalence import T, fake_eps, ours_t, prior

    scheduler = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=T, beta_schedule="linear", solver_order=order, solver_type=variant,
        predict_x0=True, timestep_spacing="trailing", lower_order_final=True,
        final_sigmas_type="zero",
    )  # fmt: skip
    scheduler.set_timesteps(steps)
    dtype = torch.float32
    if table == "float64":
        alpha_bar = DDPM(T, "linear").alpha_bar[scheduler.timesteps + 1]  # our step k + 1
        ratio = ((1 - alpha_bar) / alpha_bar).sqrt()
        scheduler.sigmas = torch.cat([ratio, torch.zeros(1, dtype=F64)])
        dtype = F64
    y, states = prior(dtype=dtype), []
    for k in scheduler.timesteps:
        y = scheduler.step(fake_eps(y, ours_t(k)), k, y).prev_sample
        states.append(y)
    return states


@pytest.mark.parametrize("table", ["float32", "float64"])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize(("order", "steps"), [(1, 10), (2, 10), (3, 6), (3, 20)])
def test_matches_diffusers_step_by_step(order, variant, steps, table):
    """Warm-up steps, the corrector after each evaluation (UniC-1 with rho = 1/2, UniC-2/3
    solved), UniP-2 with rho = 1/2, UniP-3 solved, lower orders at the end and the first-order
    step to sigma = 0. Measured: at most 5.3e-7 x the state scale with diffusers' float32
    sigmas, 1.3e-15 with ours swapped in."""
    from test_diffusers_equivalence import (
        EXACT,
        TOL,
        FakeDenoiser,
        T,
        assert_states_close,
        prior,
        trajectory,
    )

    theirs = diffusers_states(order, variant, steps, table)
    process = DDPM(T, "linear")
    dtype = torch.float32 if table == "float32" else F64
    times = process.time_grid(steps)
    if variant == "bh1":
        # Diffusers' step to sigma = 0 is x0_hat + alpha_s B(h) * 0 with B(h) = -h = -inf
        # for bh1: NaN (diffusers 0.42). Without that term it is x0_hat at its last state.
        assert bool(theirs[-1].isnan().all())
        theirs[-1] = FakeDenoiser(process)(theirs[-2], times[-2]).x0
    ours = trajectory(unipc, process, prior(dtype=dtype), times, order=order, variant=variant)
    assert_states_close(ours, theirs, TOL if table == "float32" else EXACT)


def test_unip_2_is_dpm_solver_pp_2m():
    """Without the corrector, UniP-2 with B(h) = 1 - e^-h is DPM-Solver++(2M): the weight 1/2
    on D = (x0_prev - x0_t) / r is 2M's 1 / (2r) (Lu et al. 2022, Algorithm 2)."""
    from test_diffusers_equivalence import T, prior, trajectory

    process = DDPM(T, "linear")
    times = process.time_grid(10)
    ours = trajectory(unipc, process, prior(), times, order=2, corrector=False)
    theirs = trajectory(dpm_solver_pp, process, prior(), times, order=2)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    corrected = trajectory(unipc, process, prior(), times, order=2)
    assert (corrected[-1] - theirs[-1]).abs().max() > 1e-3  # the corrector changes the result


# -- 2. order of convergence with the exact score ----------------------------------------------
def grid(process, steps: int) -> torch.Tensor:
    """Evenly spaced log-SNR from t = 1 (sigma / alpha = 151 on VP) without the fixed-size
    jump to sigma_max = 80 of the default grid, whose error would not shrink with the steps."""
    return make_grid(process, steps, "logsnr", sigma_max=1e3)


@functools.cache
def problem():
    """The exact VP field of a 2-D mixture (as `test_dpm_solver_3m`), 500 prior draws and
    their 640-step DPM-Solver++(3M) solution (an independent reference: the 1,280-step UniPC-3
    solution is 2e-8 from its 1,280-step one)."""
    process = VP()
    denoiser = Oracle(mixture(), process).denoiser()
    x1 = prior_draw(process)
    reference = dpm_solver_pp(denoiser, x1.clone(), grid(process, 640), order=3)
    return process, denoiser, x1, reference


def errors(steps: list[int], **options) -> list[float]:
    """Mean distance to the reference of `problem` at each number of steps."""
    process, denoiser, x1, reference = problem()
    found = []
    for k in steps:
        x = unipc(denoiser, x1.clone(), grid(process, k), **options)
        found.append(float((x - reference).norm(dim=1).mean()))
    return found


def slopes(found: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in itertools.pairwise(found)]


@pytest.mark.parametrize("variant", ["bh2", pytest.param("bh1", marks=pytest.mark.slow)])
def test_the_corrector_adds_one_order(variant):
    """UniPC-p converges with order p + 1 (the paper's claim for UniC), UniP-p alone with p.
    Measured (errors at 20, 40, 80 steps, bh2; bh1 within a few %, but 2-3x larger at
    UniP-2 and UniPC-1/2 for 20 steps): UniPC-1 4.9e-2, 1.2e-2, 3.1e-3 (slopes 2.0, 2.0);
    UniPC-2 9.4e-3, 1.2e-3, 1.4e-4 (3.0, 3.0); UniPC-3 5.2e-3, 2.4e-4, 1.8e-5 (4.5, 3.7; 3.9
    from 80 to 160 steps); UniP-2 = DPM-Solver++(2M) 2.0e-2, 4.7e-3, 1.1e-3 (2.1, 2.1; bh1
    2.3, 2.1); UniP-3 5.8e-3, 7.4e-4, 8.3e-5 (3.0, 3.2)."""
    steps = [20, 40, 80]
    first, second, third = (errors(steps, order=p, variant=variant) for p in (1, 2, 3))
    assert all(1.8 < s < 2.3 for s in slopes(first))
    assert all(2.8 < s < 3.3 for s in slopes(second))
    assert min(slopes(third)) > 3.4
    plain = errors(steps, order=2, variant=variant, corrector=False)
    assert max(slopes(plain)) < 2.4 and second[-1] < plain[-1] / 5


def test_a_path_from_pure_noise_converges():
    """Flow matching has alpha(1) = 0, so lambda = -inf at t = 1: the first step (the same
    fixed jump to sigma / alpha = 80 on every log-SNR grid) is first order and uncorrected,
    and no later step uses its output in a D. The rest converges as on VP. Measured (errors at
    10, 20, 40 steps against 320 DPM-Solver++(3M) steps; 640 change them by < 1%): UniPC-2
    1.1e-1, 1.5e-2, 1.7e-3 (slopes 2.9, 3.1); UniPC-3 8.3e-2, 8.3e-3, 4.1e-4 (3.3, 4.3)."""
    mixture = GaussianMixture.isotropic(
        torch.tensor([0.3, 0.7]), torch.tensor([[-1.5, 0.0], [1.0, 0.5]]), torch.tensor([0.4, 0.6])
    )
    process = FlowMatching()
    denoiser = Oracle(mixture, process).denoiser()
    x1 = process.prior((500, 2), generator=torch.Generator().manual_seed(0)).double()
    reference = dpm_solver_pp(denoiser, x1.clone(), make_grid(process, 320, "logsnr"), order=3)
    for order, lowest in ((2, 2.6), (3, 3.0)):
        found = [float((unipc(denoiser, x1.clone(), make_grid(process, k, "logsnr"), order=order)
                        - reference).norm(dim=1).mean()) for k in (10, 20, 40)]  # fmt: skip
        assert min(slopes(found)) > lowest


# -- 3. bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"order": 0}, "order must be 1, 2 or 3, got 0"),
        ({"order": 4}, "order must be 1, 2 or 3, got 4"),
        ({"variant": "bh3"}, "unknown UniPC variant 'bh3'; choose one of: bh1, bh2"),
    ],
)
def test_bad_options_are_refused(options, message):
    process = VP()
    denoiser = Oracle(GaussianMixture.points(torch.zeros(1, 2)), process).denoiser()
    with pytest.raises(ValueError, match=message) as error:
        unipc(denoiser, torch.zeros(3, 2, dtype=F64), grid(process, 4), **options)
    assert "\n" not in str(error.value)
