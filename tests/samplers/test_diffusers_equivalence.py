"""Our schedules and samplers against Hugging Face `diffusers`, where both implement the same thing.

A fake network whose eps output is a fixed, deterministic, nonlinear function of (x, t) is fed
to both sides: our samplers see it through `FakeDenoiser`, a diffusers scheduler gets the very
same eps as ``model_output`` in ``step(model_output, timestep, sample)``. Equal schedules and
equal update rules then give equal states, step by step. Diffusers keeps its tables in float32
(``alphas_cumprod``, ``sigmas``; ours are float64), so states agree to ~1e-5 of their scale;
where a scheduler computes in the sample's dtype (DDPM, DDIM) the tests also swap our float64
``alpha_bar`` into it, and then the states agree to ~1e-12: the update rules are the same.

Conventions mapped here:

- Discrete steps (DDPM, DDIM, DPM-Solver++): diffusers' integer timestep k = 0..T-1 has
  ``alphas_cumprod[k] = prod_{i <= k} (1 - beta_{i+1})``, so ``alphas_cumprod[0] = 1 - beta_1``;
  our table has ``alpha_bar[0] = 1`` and ``alpha_bar[k + 1] = alphas_cumprod[k]``. Diffusers'
  timestep k is our step k + 1, i.e. our time t = (k + 1) / T, and its "previous timestep -1"
  (``final_alpha_cumprod = 1`` with ``set_alpha_to_one=True``; sigma = 0 with
  ``final_sigmas_type="zero"``) is our t = 0. With ``timestep_spacing="trailing"`` diffusers'
  timesteps are exactly our `DDPM.time_grid` steps minus one (checked below).
- Euler and Heun (``EulerDiscreteScheduler``, ``HeunDiscreteScheduler``): diffusers integrates
  the variance-exploding state y = x / alpha against sigma = sqrt((1 - ab) / ab) = sigma / alpha,
  and ``scale_model_input`` hands the network y / sqrt(sigma^2 + 1) = alpha y = x. That is our
  "sigma" ODE variable, so x_ours = y_diffusers / sqrt(sigma^2 + 1). Diffusers' Karras sigmas
  are not at integer timesteps (it interpolates log sigma), while our DDPM grids round times
  to steps, so our times are built from diffusers' sigmas with `time_at_sigma_ratio` and passed
  to the sampler functions directly (our "karras" grid gives the same times, rounded).
- EDM (``EDMEulerScheduler``): alpha = 1, so states are identical; its ``step`` takes our x0
  estimate as ``pred_original_sample`` (its own preconditioning assumes sigma_data = 0.5).
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.parametrize import Prediction
from diffusion.processes import DDPM, EDM
from diffusion.processes.schedules import make_betas
from diffusion.samplers import ancestral, ddim, dpm_solver_pp, euler, heun
from diffusion.samplers.grids import make_grid

diffusers = pytest.importorskip("diffusers")

# diffusers' `np.array(tensor)` calls warn under NumPy 2 (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

F64 = torch.float64
T = 1000
SHAPE = (6, 4)
TOL = 1e-5  # diffusers' float32 tables, relative to the state's scale
EXACT = 1e-12  # our float64 table swapped into diffusers
TABLES = ["float32", "float64"]  # diffusers' own table, or ours swapped in


def _weights() -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(SHAPE[1], SHAPE[1], generator=g, dtype=F64) / math.sqrt(SHAPE[1])


W = _weights()


def fake_eps(x: torch.Tensor, t: float) -> torch.Tensor:
    """The shared "network": a fixed nonlinear function of the state x (what our denoiser and
    diffusers' scaled model input both are) and our time t."""
    t = float(t)
    x64 = x.to(F64)
    return (0.6 * torch.tanh(x64 @ W) + 0.2 * x64 + 0.1 * math.sin(7 * t) + 0.05 * t).to(x.dtype)


class FakeDenoiser:
    """What a sampler expects: `denoiser(x, t)` -> Prediction, with `.process` and `.nfe`."""

    def __init__(self, process) -> None:
        self.process = process
        self.nfe = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        self.nfe += 1
        tt = torch.as_tensor(t, dtype=F64).reshape(())
        alpha, sigma = float(self.process.alpha(tt)), float(self.process.sigma(tt))
        eps = fake_eps(x, float(tt))
        return Prediction(x0=(x - sigma * eps) / alpha, eps=eps)


def prior(seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ours_t(k, steps: int = T) -> float:
    """Our time of diffusers' integer timestep k (its alphas_cumprod[k] is our alpha_bar[k+1])."""
    return (int(k) + 1) / steps


def with_table(scheduler, process: DDPM, table: str):
    """The scheduler as shipped ("float32") or with our float64 alpha_bar[1:] swapped in."""
    if table == "float64":
        scheduler.alphas_cumprod = process.alpha_bar[1:].clone()
    return scheduler


def trajectory(sampler, process, x, times, **options) -> list[torch.Tensor]:
    """The states after every step of one of our samplers."""
    states = []
    sampler(FakeDenoiser(process), x, times, callback=lambda step: states.append(step.x), **options)
    return states


def assert_match(ours: torch.Tensor, theirs: torch.Tensor, tol: float, what: str = "") -> None:
    """max |ours - theirs| <= tol * max(1, max |theirs|)."""
    assert ours.shape == theirs.shape
    scale = max(1.0, float(theirs.abs().max()))
    error = float((ours.to(F64) - theirs.to(F64)).abs().max())
    assert error <= tol * scale, f"{what}: max |difference| {error:.3g} > {tol:g} x {scale:.3g}"


def assert_states_close(ours: list[torch.Tensor], theirs: list[torch.Tensor], tol: float) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert_match(a, b, tol, f"step {i}")


# -- 1. schedules and grids ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("linear", "linear"),
        ("cosine", "squaredcos_cap_v2"),  # Nichol & Dhariwal 2021, max_beta 0.999 on both sides
        ("quadratic", "scaled_linear"),
        ("sigmoid", "sigmoid"),
    ],
)
def test_beta_schedules_match(ours, theirs):
    """Same betas (ours float64, diffusers float32) and alpha_bar[k + 1] = alphas_cumprod[k]."""
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=theirs)
    betas = make_betas(ours, T)
    torch.testing.assert_close(betas.float(), scheduler.betas, rtol=1e-6, atol=1e-9)
    alpha_bar = torch.cat([torch.ones(1, dtype=F64), torch.cumprod(1 - betas, 0)])
    torch.testing.assert_close(
        alpha_bar[1:].float(), scheduler.alphas_cumprod, rtol=2e-5, atol=1e-8
    )


@pytest.mark.parametrize(
    ("ours", "theirs"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]
)
def test_ddpm_process_matches_alphas_cumprod(ours, theirs):
    """`DDPM` itself: alpha(t)^2 at t = (k + 1) / T is diffusers' alphas_cumprod[k], and
    sigma(t) / alpha(t) there is the Euler schedulers' sigma of timestep k."""
    process = DDPM(T, ours)
    scheduler = diffusers.EulerDiscreteScheduler(num_train_timesteps=T, beta_schedule=theirs)
    t = torch.arange(1, T + 1, dtype=F64) / T
    torch.testing.assert_close(
        (process.alpha(t) ** 2).float(), scheduler.alphas_cumprod, rtol=2e-5, atol=1e-8
    )
    # Near t = 0, 1 - alphas_cumprod is ~4e-5 (cosine) and float32 keeps ~3 of its digits.
    theirs_sigma = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod).sqrt()
    torch.testing.assert_close(process.sigma_ratio(t).float(), theirs_sigma, rtol=2e-3, atol=0)
    torch.testing.assert_close(
        process.sigma_ratio(t[10:]).float(), theirs_sigma[10:], rtol=1e-4, atol=0
    )


def test_zero_terminal_snr_rescale_matches():
    """Lin et al. 2024, Algorithm 1, on both sides (the last alpha_bar becomes 0). Diffusers
    rescales in float32, where 1 - alpha_bar[k] / alpha_bar[k - 1] loses the small betas'
    digits (errors up to 5e-7), so its alphas_cumprod is compared, and its rescaling function
    itself is compared in float64."""
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule="linear", rescale_betas_zero_snr=True
    )
    betas = make_betas("linear", T, zero_terminal_snr=True)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert alpha_bar[-1] == 0 and scheduler.alphas_cumprod[-1] == 0
    torch.testing.assert_close(alpha_bar.float(), scheduler.alphas_cumprod, rtol=1e-5, atol=1e-6)
    rescale = diffusers.schedulers.scheduling_ddim.rescale_zero_terminal_snr
    reference = rescale(torch.linspace(1e-4, 0.02, T, dtype=F64))
    torch.testing.assert_close(betas, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 16, 20, 50, 64, 100, 333, 1000])
def test_trailing_timesteps_are_our_grid(steps):
    """Diffusers' "trailing" timesteps + 1 are our DDPM grid's steps (without the final 0)."""
    for cls in (diffusers.DDIMScheduler, diffusers.DDPMScheduler):
        scheduler = cls(num_train_timesteps=T, timestep_spacing="trailing")
        scheduler.set_timesteps(steps)
        ours = (DDPM(T, "linear").time_grid(steps) * T).round().long()
        assert ours[-1] == 0
        assert torch.equal(ours[:-1] - 1, scheduler.timesteps)


@pytest.mark.parametrize("steps", [2, 10, 18, 32])
def test_edm_grid_matches_edm_euler_sigmas(steps):
    """Our EDM grid (Karras et al. 2022, Eq. 5, then 0) is EDMEulerScheduler's sigma list; so
    is our "karras" grid on EDM."""
    process = EDM()
    scheduler = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    scheduler.set_timesteps(steps)
    for times in (process.time_grid(steps), make_grid(process, steps, "karras")):
        torch.testing.assert_close(
            process.sigma(times).float(), scheduler.sigmas, rtol=1e-6, atol=1e-7
        )


# -- 2. DDIM ---------------------------------------------------------------------------------
def ddim_scheduler(schedule: str = "linear"):
    return diffusers.DDIMScheduler(
        num_train_timesteps=T,
        beta_schedule=schedule,
        timestep_spacing="trailing",
        set_alpha_to_one=True,  # the step from the last timestep lands on alpha_bar = 1: t = 0
        clip_sample=False,
    )


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    ("ours", "theirs"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]
)
def test_ddim_single_steps_match(ours, theirs, table):
    """One DDIM step (eta = 0) from t to s, for every step of a 10-step trailing grid,
    including the first (from t = 1) and the final one (to t = 0, alpha_bar = 1). The cosine
    alphas_cumprod[999] = 2.4e-9 carries a 1.3e-5 relative error in float32 (a beta clipped at
    0.999), which the x0 estimate at t = 1 inherits: that case gets 3e-5."""
    process = DDPM(T, ours)
    tol = EXACT if table == "float64" else 3e-5 if ours == "cosine" else TOL
    scheduler = with_table(ddim_scheduler(theirs), process, table)
    scheduler.set_timesteps(10)
    times = process.time_grid(10)
    for i, k in enumerate(scheduler.timesteps):
        assert ours_t(k) == pytest.approx(float(times[i]), abs=1e-12)
        x = prior(i)
        theirs_x = scheduler.step(fake_eps(x, ours_t(k)), k, x, eta=0.0).prev_sample
        ours_x = ddim(FakeDenoiser(process), x, times[i : i + 2])
        assert_match(ours_x, theirs_x, tol, f"step {i}")


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_trajectory_matches(eta, table):
    """A whole 10-step trailing DDIM run; with eta > 0 both draw the same noise from equal
    generators (one draw per step; diffusers' last draw is multiplied by a zero std)."""
    process = DDPM(T, "linear")
    scheduler = with_table(ddim_scheduler(), process, table)
    scheduler.set_timesteps(10)
    x = prior()
    g = torch.Generator().manual_seed(7)
    theirs, y = [], x
    for k in scheduler.timesteps:
        y = scheduler.step(fake_eps(y, ours_t(k)), k, y, eta=eta, generator=g).prev_sample
        theirs.append(y)
    g = torch.Generator().manual_seed(7)
    ours = trajectory(ddim, process, x, process.time_grid(10), eta=eta, generator=g)
    assert_states_close(ours, theirs, TOL if table == "float32" else EXACT)


# -- 3. ancestral ----------------------------------------------------------------------------
def ddpm_scheduler(variance_type: str):
    return diffusers.DDPMScheduler(
        num_train_timesteps=T,
        timestep_spacing="trailing",
        variance_type=variance_type,
        clip_sample=False,
    )


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    ("variance", "variance_type"), [("posterior", "fixed_small"), ("beta", "fixed_large")]
)
def test_ancestral_single_steps_match(variance, variance_type, table):
    """One ancestral step t -> s equals DDPMScheduler.step with the same noise draw (equal
    seeds), so the posterior mean (Ho et al. 2020, Eq. 7, for any pair of steps) and its std
    (beta_tilde or beta) agree, for the steps of a 10-step trailing grid before the last."""
    process = DDPM(T, "linear")
    scheduler = with_table(ddpm_scheduler(variance_type), process, table)
    scheduler.set_timesteps(10)
    times = process.time_grid(10)
    for i, k in enumerate(scheduler.timesteps[:-1]):
        x = prior(i)
        eps = fake_eps(x, ours_t(k))
        g = torch.Generator().manual_seed(100 + i)
        theirs_x = scheduler.step(eps, k, x, generator=g).prev_sample
        g = torch.Generator().manual_seed(100 + i)
        denoiser = FakeDenoiser(process)
        ours_x = ancestral(denoiser, x, times[i : i + 2], variance=variance, generator=g)
        assert_match(ours_x, theirs_x, TOL if table == "float32" else EXACT, f"step {i}")


@pytest.mark.parametrize("table", TABLES)
def test_ancestral_full_chain_matches(table):
    """Algorithm 2 of Ho et al. 2020 over all T steps (T = 100 here) with equal generators;
    both add no noise on the last step (diffusers' timestep 0, our step 1 -> 0). With diffusers'
    float32 table, 1 - alphas_cumprod near t = 0 (about 1e-3) keeps only ~4 digits, so the
    last steps agree to ~1e-5 relative and the tolerance there is 1e-4."""
    steps = 100
    process = DDPM(steps, "linear")  # betas 1e-3 .. 0.2 (1e-4 .. 0.02 scaled by 1000 / T)
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=steps, beta_start=1e-3, beta_end=0.2, clip_sample=False
    )  # no set_timesteps: every timestep 99..0, each one's previous timestep is k - 1
    scheduler = with_table(scheduler, process, table)
    x = prior()
    g = torch.Generator().manual_seed(3)
    theirs, y = [], x
    for k in scheduler.timesteps:
        y = scheduler.step(fake_eps(y, ours_t(k, steps)), k, y, generator=g).prev_sample
        theirs.append(y)
    g = torch.Generator().manual_seed(3)
    ours = trajectory(ancestral, process, x, process.time_grid(), generator=g)
    assert_states_close(ours, theirs, 1e-4 if table == "float32" else EXACT)


def test_ancestral_trailing_run_matches_but_for_the_last_noise():
    """A 10-step trailing run. With the posterior variance all states agree (diffusers adds
    noise of std sqrt(1e-20) on its last step, timestep 99 > 0). With the beta variance
    diffusers adds noise of std sqrt(1 - alphas_cumprod[99]) on the step to t = 0 (its test is
    `t > 0` on the integer timestep, written for the full chain); Algorithm 2 adds none there,
    so ours is diffusers' last state without that draw."""
    process = DDPM(T, "linear")
    for variance, variance_type in (("posterior", "fixed_small"), ("beta", "fixed_large")):
        scheduler = ddpm_scheduler(variance_type)
        scheduler.set_timesteps(10)
        x = prior()
        g = torch.Generator().manual_seed(5)
        theirs, y = [], x
        for k in scheduler.timesteps:
            if k == scheduler.timesteps[-1]:
                copy = torch.Generator().set_state(g.get_state())
                last_noise = torch.randn(SHAPE, generator=copy, dtype=F64)
            y = scheduler.step(fake_eps(y, ours_t(k)), k, y, generator=g).prev_sample
            theirs.append(y)
        g = torch.Generator().manual_seed(5)
        times = process.time_grid(10)
        ours = trajectory(ancestral, process, x, times, variance=variance, generator=g)
        assert_states_close(ours[:-1], theirs[:-1], TOL)
        if variance == "beta":
            std = math.sqrt(1 - float(scheduler.alphas_cumprod[scheduler.timesteps[-1]]))
            assert std > 0.01
            theirs[-1] = theirs[-1] - std * last_noise
        assert_match(ours[-1], theirs[-1], TOL, "last step")


# -- 4. DPM-Solver++(2M) ---------------------------------------------------------------------
def dpm_run(process, steps: int) -> list[torch.Tensor]:
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        timestep_spacing="trailing",
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    scheduler.set_timesteps(steps)
    grid_steps = (process.time_grid(steps)[:-1] * T).round().long()
    assert torch.equal(scheduler.timesteps + 1, grid_steps)
    y, states = prior(dtype=torch.float32), []
    for k in scheduler.timesteps:
        y = scheduler.step(fake_eps(y, ours_t(k)), k, y).prev_sample
        states.append(y)
    return states


@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_pp_matches(steps):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) over a whole trailing run: first-order
    first step, second order in between, first-order last step to sigma = 0 (diffusers computes
    in float32)."""
    process = DDPM(T, "linear")
    theirs = dpm_run(process, steps)
    x = prior(dtype=torch.float32)
    times = process.time_grid(steps)
    ours = trajectory(dpm_solver_pp, process, x, times)
    assert_states_close(ours, theirs, TOL)


# -- 5. Euler and Heun on Karras sigmas --------------------------------------------------------
def karras_scheduler(kind: str, steps: int):
    cls = {"euler": diffusers.EulerDiscreteScheduler, "heun": diffusers.HeunDiscreteScheduler}
    scheduler = cls[kind](  # Heun's default betas are Stable Diffusion's: give Ho et al.'s
        num_train_timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        use_karras_sigmas=True,
    )
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("kind", ["euler", "heun"])
@pytest.mark.parametrize("steps", [5, 12])
def test_karras_euler_heun_match(kind, steps):
    """Euler (Karras et al. 2022, Alg. 1) and Heun (Alg. 2; the last step first order, so
    2K - 1 evaluations on both sides) on diffusers' Karras sigmas from sigma(t = 1) = 157 down
    to sigma(1 / T) = 0.01, then 0. Diffusers' state is y = x / alpha = x sqrt(sigma^2 + 1)."""
    process = DDPM(T, "linear")
    scheduler = karras_scheduler(kind, steps)
    sigmas = scheduler.sigmas.unique_consecutive()  # Heun repeats every inner sigma
    levels = [process.time_at_sigma_ratio(float(s)) for s in sigmas[:-1]]
    times = torch.tensor([*levels, 0.0], dtype=F64)
    # Our "karras" grid asks for the same levels; it differs only by rounding times to steps.
    top = float(process.sigma_ratio(torch.tensor(1.0)))  # > 80: lift the cap (no jump)
    grid = make_grid(process, steps, "karras", sigma_max=2 * top, sigma_min=1e-6)
    assert torch.equal(grid * T, (times * T).round())
    x = prior(dtype=torch.float32)
    y = x * math.sqrt(float(sigmas[0]) ** 2 + 1)
    theirs, nfe = [], 0
    for k in scheduler.timesteps:
        model_input = scheduler.scale_model_input(y, k)  # our x at this evaluation's sigma
        sigma = float(scheduler.sigmas[scheduler.step_index])
        eps = fake_eps(model_input, process.time_at_sigma_ratio(sigma))
        nfe += 1
        y = scheduler.step(eps, k, y).prev_sample
        if kind == "euler" or scheduler.state_in_first_order:  # a whole step is done
            sigma_next = float(scheduler.sigmas[scheduler.step_index])
            theirs.append(y / math.sqrt(sigma_next**2 + 1))
    if kind == "heun":  # its last evaluation is a pending Euler step to sigma = 0: the result
        theirs.append(y)
    denoiser = FakeDenoiser(process)
    ours = []
    sampler = {"euler": euler, "heun": heun}[kind]
    sampler(denoiser, x, times, callback=lambda step: ours.append(step.x))
    assert nfe == denoiser.nfe == (steps if kind == "euler" else 2 * steps - 1)
    assert_states_close(ours, theirs, TOL)


def test_edm_euler_matches():
    """Euler on our EDM process (alpha = 1, sigma = 80 t^7) and its default grid equals
    EDMEulerScheduler; our x0 estimate is passed as its `pred_original_sample`."""
    process = EDM()
    steps = 18
    scheduler = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    scheduler.set_timesteps(steps)
    times = process.time_grid(steps)
    x = 80 * prior(dtype=torch.float32)
    theirs, y = [], x
    for i, k in enumerate(scheduler.timesteps):
        scheduler.scale_model_input(y, k)  # sets the step index (its result is not needed)
        sigma = float(scheduler.sigmas[i])
        eps = fake_eps(y, float(times[i]))
        y = scheduler.step(eps, k, y, pred_original_sample=y - sigma * eps).prev_sample
        theirs.append(y)
    ours = trajectory(euler, process, x, times)
    assert_states_close(ours, theirs, TOL)
