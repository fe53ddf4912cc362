"""The identities of docs/theory/05-design-space.md: conversions between prediction targets,
schedules, time grids, EDM's preconditioning and the orders of accuracy of the samplers.

Everything runs in float64 against closed forms; the sampler checks feed the exact score of
a single Gaussian (or of a single point), whose probability-flow ODE is solved in closed form.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle
from diffusion.parametrize import TARGETS, prediction_from, score_from_eps, target_from
from diffusion.processes import DDPM, EDM, VP
from diffusion.processes.schedules import cosine_betas, make_betas
from diffusion.samplers import ddim, dpm_solver_pp, euler, heun
from diffusion.samplers.grids import make_grid

F64 = torch.float64
S = 0.5  # std of the single-Gaussian data used for the sampler checks


def random_path(seed: int, n: int = 512, d: int = 3):
    """x0, eps and random per-sample alpha, sigma, alpha', sigma' (most pairs not VP)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    eps = torch.randn(n, d, generator=g, dtype=F64)
    alpha = 0.05 + 2.95 * torch.rand(n, 1, generator=g, dtype=F64)
    sigma = 0.05 + 4.95 * torch.rand(n, 1, generator=g, dtype=F64)
    d_alpha = -3 * torch.rand(n, 1, generator=g, dtype=F64)
    d_sigma = 0.1 + 3 * torch.rand(n, 1, generator=g, dtype=F64)
    return x0, eps, alpha, sigma, d_alpha, d_sigma


# -- parametrisations --------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_conversion_round_trips_and_stays_on_the_path(target: str) -> None:
    # Any network output, consistent or not, is turned into a pair (x0_hat, eps_hat) with
    # x_t = alpha x0_hat + sigma eps_hat, and the target of that pair is the output again.
    x0, eps, alpha, sigma, d_alpha, d_sigma = random_path(0)
    coefficients = (alpha, sigma, d_alpha, d_sigma)
    x_t = alpha * x0 + sigma * eps
    output = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    pred = prediction_from(target, output, x_t, *coefficients)
    torch.testing.assert_close(alpha * pred.x0 + sigma * pred.eps, x_t, rtol=1e-12, atol=1e-12)
    again = target_from(target, pred.x0, pred.eps, *coefficients)
    torch.testing.assert_close(again, output, rtol=1e-10, atol=1e-10)
    # ... and the true target of a consistent pair gives back the true x0 and eps.
    truth = prediction_from(target, target_from(target, x0, eps, *coefficients), x_t, *coefficients)
    torch.testing.assert_close(truth.x0, x0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(truth.eps, eps, rtol=1e-10, atol=1e-10)


def test_conversions_agree_with_the_formulas_of_the_note() -> None:
    x0, eps, alpha, sigma, d_alpha, d_sigma = random_path(2)
    x = alpha * x0 + sigma * eps
    targets = {name: target_from(name, x0, eps, alpha, sigma, d_alpha, d_sigma) for name in TARGETS}
    r = (alpha**2 + sigma**2).sqrt()
    close = dict(rtol=1e-10, atol=1e-10)
    # eps <-> x0 through x_t.
    torch.testing.assert_close(targets["eps"], (x - alpha * targets["x0"]) / sigma, **close)
    # score = -eps / sigma.
    torch.testing.assert_close(targets["score"], -targets["eps"] / sigma, **close)
    torch.testing.assert_close(score_from_eps(targets["eps"], sigma), targets["score"], **close)
    # v -> (x0, eps): x0 = (alpha x - sigma r v) / r^2, eps = (sigma x + alpha r v) / r^2.
    v = targets["v"]
    torch.testing.assert_close((alpha * x - sigma * r * v) / r**2, targets["x0"], **close)
    torch.testing.assert_close((sigma * x + alpha * r * v) / r**2, targets["eps"], **close)
    # velocity = (alpha'/alpha) x - sigma (sigma' - sigma alpha'/alpha) score = f x - g^2/2 score.
    half_g2 = sigma * (d_sigma - sigma * d_alpha / alpha)
    torch.testing.assert_close(
        targets["velocity"], d_alpha / alpha * x - half_g2 * targets["score"], **close
    )
    # An error delta in x0_hat (eps_hat on the same line x) moves each target by a fixed
    # multiple of delta: every loss is the x0 loss with a weight depending on t alone.
    delta = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    x0_hat = x0 + delta
    eps_hat = (x - alpha * x0_hat) / sigma
    factors = {
        "x0": torch.ones_like(alpha),
        "eps": -alpha / sigma,
        "v": -r / sigma,
        "score": alpha / sigma**2,
        "velocity": d_alpha - d_sigma * alpha / sigma,
    }
    for name, factor in factors.items():
        moved = target_from(name, x0_hat, eps_hat, alpha, sigma, d_alpha, d_sigma)
        torch.testing.assert_close(moved - targets[name], factor * delta, **close)


def test_tweedie_links_the_exact_denoiser_and_the_exact_score() -> None:
    # E[x0 | x_t] = (x_t + sigma^2 grad log p_t) / alpha (Efron 2011), for a mixture under VP:
    # the oracle computes the score and the denoiser by separate formulas.
    mixture = GaussianMixture.full(
        torch.tensor([0.3, 0.7]), torch.tensor([[-1.0, 0.5], [1.0, -0.5]]),
        torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]]),
    )  # fmt: skip
    process = VP()
    oracle = Oracle(mixture, process)
    x = 2 * torch.randn(200, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    for t in (0.05, 0.3, 0.7, 0.95):
        tt = torch.tensor(t, dtype=F64)
        alpha, sigma = process.alpha(tt), process.sigma(tt)
        exact = oracle.exact(x, t)
        tweedie = (x + sigma**2 * exact.score) / alpha
        torch.testing.assert_close(exact.x0, tweedie, rtol=1e-9, atol=1e-9)


# -- schedules ---------------------------------------------------------------------------------


def test_cosine_schedule_is_eq_17_until_its_clipped_last_step() -> None:
    T, s = 1000, 0.008
    alpha_bar = torch.cumprod(1 - cosine_betas(T), dim=0)  # steps 1..T
    k = torch.arange(T + 1, dtype=F64)
    f = torch.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2
    expected = f[1:] / f[0]  # Nichol & Dhariwal 2021, Eq. 17
    torch.testing.assert_close(alpha_bar[:-1], expected[:-1], rtol=1e-10, atol=1e-15)
    assert expected[-1].item() < 1e-30 < alpha_bar[-1].item()  # the clip at 0.999 keeps > 0


def test_zero_terminal_snr_shifts_and_scales_sqrt_alpha_bar() -> None:
    betas = make_betas("linear", 1000)
    root = torch.cumprod(1 - betas, 0).sqrt()
    assert root[-1].item() == pytest.approx(math.sqrt(4.036e-5), rel=1e-3)  # SNR_T ~ 4e-5
    rescaled = make_betas("linear", 1000, zero_terminal_snr=True)
    new_root = torch.cumprod(1 - rescaled, 0).sqrt()
    # Lin et al. 2024, Algorithm 1: new = (root - root_T) root_1 / (root_1 - root_T).
    expected = (root - root[-1]) * root[0] / (root[0] - root[-1])
    torch.testing.assert_close(new_root, expected, rtol=1e-9, atol=1e-12)
    assert new_root[0].item() == pytest.approx(root[0].item(), rel=1e-12)
    process = DDPM(1000, "linear", zero_terminal_snr=True, prediction="v")
    assert process.snr(torch.ones((), dtype=F64)).item() < 1e-20
    assert process.snr(torch.tensor(0.999, dtype=F64)).item() > 0


# -- time grids --------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [5, 18])
def test_karras_grid_is_edm_own_grid(steps: int) -> None:
    # sigma = sigma_max t^rho, so even steps in sigma^(1/rho) (Karras et al. 2022, Eq. 5) are
    # even steps in t: EDM's uniform grid is the Karras grid.
    process = EDM()
    grid = make_grid(process, steps, "karras")
    torch.testing.assert_close(grid, process.time_grid(steps), rtol=0, atol=1e-12)
    i = torch.arange(steps, dtype=F64) / (steps - 1)
    rho, top, bottom = 7.0, 80.0, 0.002
    eq5 = (top ** (1 / rho) + i * (bottom ** (1 / rho) - top ** (1 / rho))) ** rho
    torch.testing.assert_close(process.sigma(grid[:-1]), eq5, rtol=1e-10, atol=0)
    assert grid[-1].item() == 0.0


def test_logsnr_grid_is_evenly_spaced_in_log_snr() -> None:
    process = VP()  # sigma / alpha = 152 at t = 1 > 80: the grid jumps from t = 1 to sigma 80
    grid = make_grid(process, 12, "logsnr")
    log_ratio = process.sigma_ratio(grid[1:-1]).log()  # log(sigma / alpha) = -lambda
    gaps = log_ratio[:-1] - log_ratio[1:]
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-8, atol=0)
    assert log_ratio[0].exp().item() == pytest.approx(80.0, rel=1e-9)
    assert (grid[0].item(), grid[-1].item()) == (1.0, 0.0)


# -- EDM preconditioning -----------------------------------------------------------------------

SIGMAS = torch.tensor([0.002, 0.05, 0.3, 1.0, 4.0, 80.0], dtype=F64)


def test_edm_preconditioning_gives_unit_variance_input_and_target() -> None:
    process = EDM()
    process.sigma_data = 0.5  # any data std: the formulas of Table 1 carry sigma_data
    sd = process.sigma_data
    c_in, c_skip, c_out = process.c_in(SIGMAS), process.c_skip(SIGMAS), process.c_out(SIGMAS)
    # Closed form, for data of variance sd^2 and x = x0 + sigma n:
    # Var(c_in x) = c_in^2 (sd^2 + sigma^2) and Var(x0 - c x) = (1 - c)^2 sd^2 + c^2 sigma^2.
    torch.testing.assert_close(c_in**2 * (sd**2 + SIGMAS**2), torch.ones_like(SIGMAS))

    def target_variance(c: torch.Tensor) -> torch.Tensor:
        return ((1 - c) ** 2 * sd**2 + c**2 * SIGMAS**2) / c_out**2

    torch.testing.assert_close(target_variance(c_skip), torch.ones_like(SIGMAS))
    # c_skip minimises the variance of the target (then c_out^2 is that minimum).
    for nudge in (0.9, 1.1):
        assert bool((target_variance(c_skip * nudge) > 1).all())
    assert process.c_noise(torch.tensor(1.0, dtype=F64)).item() == 0.0  # ln(sigma) / 4

    # Monte Carlo with non-Gaussian data of std sd (Rademacher +-sd): still unit variance.
    g = torch.Generator().manual_seed(4)
    n = 200_000
    x0 = sd * (2 * torch.randint(0, 2, (n,), generator=g).to(F64) - 1)
    noise = torch.randn(n, generator=g, dtype=F64)
    for i, sigma in enumerate(SIGMAS):
        x = x0 + sigma * noise
        net_input = c_in[i] * x
        net_target = (x0 - c_skip[i] * x) / c_out[i]
        assert net_input.var().item() == pytest.approx(1.0, abs=0.015)
        assert net_target.var().item() == pytest.approx(1.0, abs=0.015)


def test_edm_loss_weight_and_the_v_target() -> None:
    process = EDM()  # sigma_data = 1: the code's data are standardised
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(len(SIGMAS), 3, generator=g, dtype=F64)
    eps = torch.randn(len(SIGMAS), 3, generator=g, dtype=F64)
    s = SIGMAS[:, None]
    x = x0 + s * eps
    c_skip, c_out = process.c_skip(s), process.c_out(s)
    f_target = (x0 - c_skip * x) / c_out  # Karras et al. 2022, Eq. 8
    # The code's v target is -F_target, and its input scaling is c_in.
    v = target_from("v", x0, eps, torch.ones_like(s), s)
    torch.testing.assert_close(v, -f_target, rtol=1e-10, atol=1e-10)
    t = process.time_of_sigma(SIGMAS)
    torch.testing.assert_close(process.model_input(x, t), process.c_in(s) * x)
    # lambda(sigma) |D - x0|^2 = |F - F_target|^2 for any F, with lambda = 1 / c_out^2.
    f = torch.randn(x.shape, generator=g, dtype=F64)
    denoised = c_skip * x + c_out * f  # Eq. 7
    weight = (s**2 + 1) / s**2  # Table 1's lambda(sigma) for sigma_data = 1
    torch.testing.assert_close(weight, 1 / c_out**2)
    torch.testing.assert_close(weight * (denoised - x0) ** 2, (f - f_target) ** 2)


# -- samplers: orders of accuracy ----------------------------------------------------------------


def single_gaussian(process) -> Oracle:
    """The exact score of data N(0, S^2 I) in 2-D."""
    mixture = GaussianMixture.isotropic(torch.ones(1), torch.zeros(1, 2), torch.tensor([S]))
    return Oracle(mixture, process)


def exact_flow(process, x1: torch.Tensor, t_end: float) -> torch.Tensor:
    """The PF-ODE for N(0, S^2 I) keeps x_t / sqrt(alpha^2 S^2 + sigma^2) fixed."""

    def var(t: float) -> float:
        t = torch.tensor(t, dtype=F64)
        return (process.alpha(t) ** 2 * S**2 + process.sigma(t) ** 2).item()

    return x1 * math.sqrt(var(t_end) / var(1.0))


def errors(sampler, process, grids: list[torch.Tensor]) -> list[float]:
    """Max error at the last grid time, from one prior draw, for each grid."""
    oracle = single_gaussian(process)
    x1 = process.sigma(torch.ones((), dtype=F64)).item() * torch.randn(
        64, 2, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    out = []
    for times in grids:
        x = sampler(oracle.denoiser(), x1.clone(), times)
        out.append((x - exact_flow(process, x1, times[-1].item())).abs().max().item())
    return out


def slope(steps: list[int], errs: list[float]) -> float:
    """The least-squares slope of log(error) against log(1 / steps): the order."""
    u = torch.tensor(steps, dtype=F64).log()
    e = torch.tensor(errs, dtype=F64).log()
    u = u - u.mean()
    return -float((u * (e - e.mean())).sum() / (u * u).sum())


# Grids from t = 1 down to sigma = 0.02 (not to 0, where the last step of every sampler
# is a first-order denoising step). Measured orders: euler 0.97, heun 2.05.
STEPS = [16, 32, 64, 128]


@pytest.mark.parametrize(("name", "order"), [("euler", 1.0), ("heun", 2.0)])
def test_order_of_euler_and_heun(name: str, order: float) -> None:
    process = EDM()
    t_end = process.time_of_sigma(torch.tensor(0.02, dtype=F64)).item()
    grids = [torch.linspace(1, t_end, k + 1, dtype=F64) for k in STEPS]
    errs = errors({"euler": euler, "heun": heun}[name], process, grids)
    assert errs[0] > 1e-4  # a real discretisation error, far above rounding
    assert slope(STEPS, errs) == pytest.approx(order, abs=0.12)


def log_snr_grid(process, steps: int, t_end: float) -> torch.Tensor:
    """Times evenly spaced in lambda = log(alpha / sigma) from t = 1 to t_end."""
    ends = [process.sigma_ratio(torch.tensor(t, dtype=F64)).log().item() for t in (1.0, t_end)]
    levels = torch.linspace(ends[0], ends[1], steps + 1, dtype=F64).exp()
    times = torch.tensor([process.time_at_sigma_ratio(float(r)) for r in levels], dtype=F64)
    times[0] = 1.0
    return times


def test_dpm_solver_is_second_order_in_log_snr() -> None:
    # Measured: 6.2e-3, 1.6e-3, 4.0e-4 at 32, 64, 128 steps (order 1.97).
    process = EDM()
    t_end = process.time_of_sigma(torch.tensor(0.02, dtype=F64)).item()
    steps = [32, 64, 128]
    errs = errors(dpm_solver_pp, process, [log_snr_grid(process, k, t_end) for k in steps])
    assert errs[0] > 1e-4
    assert slope(steps, errs) == pytest.approx(2.0, abs=0.15)


def test_ddim_is_euler_in_the_scaled_variables() -> None:
    # Euler on dy/dtau = E[eps | x] with y = x / alpha, tau = sigma / alpha, written out here,
    # against the code's DDIM (eta = 0), with the exact score of a mixture on a Karras grid.
    mixture = GaussianMixture.isotropic(
        torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([0.3, 0.2])
    )
    process = VP()
    oracle = Oracle(mixture, process)
    times = make_grid(process, 10, "karras")
    x1 = torch.randn(100, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    x = x1.clone()
    for t, s in itertools.pairwise(times):
        a_t, a_s = process.alpha(t).item(), process.alpha(s).item()
        tau_t, tau_s = process.sigma(t).item() / a_t, process.sigma(s).item() / a_s
        y = x / a_t + (tau_s - tau_t) * oracle.exact(x, t).eps  # one Euler step in (y, tau)
        x = a_s * y
    torch.testing.assert_close(ddim(oracle.denoiser(), x1.clone(), times), x, rtol=0, atol=1e-10)


def test_ddim_and_dpm_solver_are_exact_for_a_single_point() -> None:
    # For data = one point m, E[x0 | x_t] = m and E[eps | x_t] = (x_t - alpha m) / sigma is
    # constant along the exact path x_t = alpha m + sigma eps: one step of either is exact.
    m = torch.tensor([[0.7, -1.2]], dtype=F64)
    process = VP()
    oracle = Oracle.points(m, process)
    eps = torch.randn(50, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    times = torch.tensor([1.0, 0.6, 0.25, 0.0], dtype=F64)
    x1 = process.alpha(times[0]).item() * m + process.sigma(times[0]).item() * eps
    for sampler in (ddim, dpm_solver_pp):
        seen = []
        out = sampler(oracle.denoiser(), x1.clone(), times, callback=seen.append)
        for step in seen:
            s = torch.tensor(step.s, dtype=F64)
            on_path = process.alpha(s).item() * m + process.sigma(s).item() * eps
            torch.testing.assert_close(step.x, on_path, rtol=0, atol=1e-12)
        torch.testing.assert_close(out, m.expand_as(out), rtol=0, atol=1e-12)
    # Not automatic: Euler in the process's own time t leaves the path.
    out_t = euler(oracle.denoiser(), x1.clone(), times, variable="t")
    assert (out_t - m).abs().max().item() > 0.05
