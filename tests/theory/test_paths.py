"""Note 8: path measures of the reverse SDE. Girsanov's KL against simulated paths, the
continuous-time bound (tight for the exact score, loose by exactly the path KL for a wrong
one), and the discrete DDPM bound converging to it as T grows. Exact oracles throughout."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.likelihood import exact_nll, standard_error
from diffusion.measure.oracle import Oracle
from diffusion.measure.paths import continuous_bound, girsanov_kl, path_kl_monte_carlo
from diffusion.processes import VP

F64 = torch.float64
PROCESS = VP()  # beta from 0.1 to 20: the continuous limit of DDPM's linear schedule
MIXTURE = GaussianMixture.isotropic(
    torch.tensor([0.3, 0.7], dtype=F64),
    torch.tensor([[-1.5, 0.0], [1.0, 0.5]], dtype=F64),
    torch.tensor([0.4, 0.6], dtype=F64),
)
ORACLE = Oracle(MIXTURE, PROCESS)


def score(x: torch.Tensor, t: float) -> torch.Tensor:
    return ORACLE.score(x, t)


def wrong(x: torch.Tensor, t: float) -> torch.Tensor:
    """The exact score plus a known error field, 0.5 tanh(x)."""
    return ORACLE.score(x, t) + 0.5 * torch.tanh(x)


def marginal(t: float, n: int = 20_000) -> torch.Tensor:
    """Exact draws of p_t: data, then the forward kernel."""
    generator = torch.Generator().manual_seed(round(t * 1e6))
    x0 = MIXTURE.sample(n, generator).double()
    tt = torch.tensor(t, dtype=F64)
    noise = torch.randn(x0.shape, generator=generator, dtype=F64)
    return PROCESS.alpha(tt) * x0 + PROCESS.sigma(tt) * noise


def bound_times(k: int = 100) -> torch.Tensor:
    times = torch.linspace(0, 1, k + 1, dtype=F64) ** 2  # dense near t = 0
    times[0] = 1e-5
    return times


def test_girsanov_kl_is_the_kl_of_simulated_paths():
    # 1/2 int g^2 E_{p_t} |delta|^2 dt with exact draws of p_t, against the mean log-ratio of
    # the two Euler-Maruyama chains along 5,000 simulated reverse paths (1,000 steps).
    # Measured: 0.997 against 1.027 +- 0.017.
    quadrature = girsanov_kl(PROCESS, score, wrong, marginal, torch.linspace(0, 1, 201, dtype=F64))
    paths = marginal(1.0, 5000)
    mc, stderr = path_kl_monte_carlo(PROCESS, score, wrong, paths,
                                     torch.linspace(1, 0, 1001, dtype=F64),
                                     torch.Generator().manual_seed(3))  # fmt: skip
    assert 0.9 < quadrature < 1.1
    assert stderr < 0.03
    assert abs(mc - quadrature) < 4 * stderr + 0.02  # 0.02: the chains' step of 1e-3


def test_a_constant_error_gives_a_closed_form_kl():
    # delta = c everywhere: 1/2 |c|^2 int_0^1 beta(t) dt = 1/2 |c|^2 (beta_min + beta_max) / 2
    shift = torch.tensor([0.3, -0.2], dtype=F64)
    kl = girsanov_kl(PROCESS, score, lambda x, t: score(x, t) + shift,
                     lambda t: marginal(t, 100), torch.linspace(0, 1, 2001, dtype=F64))  # fmt: skip
    expected = 0.5 * float(shift.pow(2).sum()) * (0.1 + 20.0) / 2
    assert kl == pytest.approx(expected, rel=1e-6)


def test_continuous_bound_is_tight_for_the_exact_score_and_loose_by_the_path_kl():
    # With the exact score the reverse SDE reproduces the forward process's path measure, so
    # the bound is the NLL (up to the prior's mismatch, ~1e-8 here); with the wrong score it
    # exceeds the NLL, on average, by the Girsanov KL of the two path measures.
    x0 = MIXTURE.sample(300, torch.Generator().manual_seed(0)).double()
    nll = exact_nll(MIXTURE, x0)
    exact = continuous_bound(PROCESS, score, x0, bound_times(), draws=32,
                             generator=torch.Generator().manual_seed(1))  # fmt: skip
    gap = exact - nll
    assert standard_error(gap) < 0.02
    assert abs(float(gap.mean())) < 3 * standard_error(gap)
    loose = continuous_bound(PROCESS, wrong, x0, bound_times(), draws=32,
                             generator=torch.Generator().manual_seed(1))  # fmt: skip
    excess = loose - nll
    kl = girsanov_kl(PROCESS, score, wrong, marginal, torch.linspace(0, 1, 201, dtype=F64))
    assert abs(float(excess.mean()) - kl) < 3 * standard_error(excess) + 0.02


def gaussian_continuous_bound(x0, mean, c, steps: int = 20_000) -> torch.Tensor:
    """The continuous bound for data N(mean, c^2 I) and its exact score, in closed form in t
    (p_t = N(alpha mean, v_t I), v_t = alpha^2 c^2 + sigma^2), integrated on a fine grid."""
    d = x0.shape[1]
    t = torch.linspace(0, 1, steps + 1, dtype=F64)
    alpha, sigma = PROCESS.alpha(t), PROCESS.sigma(t)
    g2, f = PROCESS.diffusion_squared(t), PROCESS.drift(t)
    v = alpha**2 * c**2 + sigma**2
    sq = (x0 - mean).pow(2).sum(1)  # (n,)
    # 1/2 E[2 g^2 div s + g^2 |s|^2 - 2 d f], with div s = -d / v and
    # E|s|^2 = (alpha^2 |x0 - m|^2 + d sigma^2) / v^2 over x_t ~ q(x_t | x0)
    integrand = 0.5 * (-2 * g2[:, None] * d / v[:, None]
                       + g2[:, None] * (alpha[:, None] ** 2 * sq + d * sigma[:, None] ** 2)
                       / v[:, None] ** 2 - 2 * d * f[:, None])  # fmt: skip
    one = torch.ones((), dtype=F64)
    a1, s1 = PROCESS.alpha(one), PROCESS.sigma(one)
    prior = (a1**2 * x0.pow(2).sum(1) + d * s1**2) / (2 * s1**2) + d * torch.log(s1) \
        + 0.5 * d * math.log(2 * math.pi)  # fmt: skip
    return prior + torch.trapezoid(integrand, t, dim=0)


def test_the_ddpm_bound_converges_to_the_continuous_one():
    # Data N(m, c^2 I): DDPM's bound (linear schedule: the VP SDE's beta(t) at T steps) with the
    # exact denoiser, in closed form per point (test_measuring.expected_bound), against the
    # continuous bound in closed form, which is the NLL itself for the exact score.
    from test_measuring import ddpm_model, expected_bound

    mean, c = torch.tensor([1.0, -1.0], dtype=F64), 0.5
    data = GaussianMixture.isotropic(torch.ones(1, dtype=F64), mean[None],
                                     torch.tensor([c], dtype=F64))  # fmt: skip
    x0 = mean + c * torch.randn(4000, 2, generator=torch.Generator().manual_seed(15), dtype=F64)
    nll = 0.5 * ((x0 - mean) / c).pow(2).sum(1) + 2 * math.log(c) + math.log(2 * math.pi)
    continuous = gaussian_continuous_bound(x0, mean, c)
    assert abs(float((continuous - nll).mean())) < 1e-4
    gaps = [float((expected_bound(ddpm_model(data, T, "linear").process.alpha_bar, x0, mean, c)
                   - continuous).mean()) for T in (50, 200, 1000)]  # fmt: skip
    assert 0 < gaps[2] < gaps[1] < gaps[0]
    assert gaps[0] / gaps[2] > 10  # about 1 / T

    # the code's Monte Carlo bound (autograd divergence, draws of x_t) is the closed form
    def gaussian_score(x: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.tensor(t, dtype=F64)
        alpha, sigma = PROCESS.alpha(tt), PROCESS.sigma(tt)
        return -(x - alpha * mean) / (alpha**2 * c**2 + sigma**2)

    some = x0[:300]
    mc = continuous_bound(PROCESS, gaussian_score, some, bound_times(), draws=32,
                          generator=torch.Generator().manual_seed(2))  # fmt: skip
    difference = mc - continuous[:300]
    assert abs(float(difference.mean())) < 3 * standard_error(difference) + 0.01
