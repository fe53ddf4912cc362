"""Note 4, "The reverse process": the identities of docs/theory/04-reverse-process.md.

- The posterior q(x_s | x_t, x0) in the code is the Bayes product of two Gaussians (Ho et al.
  2020, Eqs. 6-7), for one DDPM step and for any pair of times.
- Its eps form and the weight of each KL term (Ho et al. 2020, Eqs. 10-12); the variational
  bound with the exact denoiser sits at the exact negative log-likelihood.
- eps = -sigma * score (Vincent 2011); Tweedie's formula against a Monte Carlo posterior mean.
- The denoising loss is minimised by E[noise | x_t] = -sigma score, and differs from the
  explicit score-matching loss by a constant (Vincent 2011).
- The probability-flow velocity is f x - g^2 score / 2 (Song et al. 2021, Eq. 13), and solving
  it (or the reverse SDE, Eq. 6) with the exact score carries N(0, I) to the mixture.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from theory_helpers import F64, mixture_2d, noised_samples

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.likelihood import ddpm_bound, exact_nll
from diffusion.measure.oracle import Oracle
from diffusion.parametrize import Prediction, score_from_eps
from diffusion.processes import DDPM, EDM, VE, VP, FlowMatching, SubVP
from diffusion.samplers import ancestral, sample
from diffusion.samplers.base import StepCoefficients
from diffusion.samplers.ode import flow_velocity
from diffusion.training.config import TrainConfig
from diffusion.workflows.exact import exact_model


def coefficients(process, t: float, s: float) -> StepCoefficients:
    tt, ss = torch.tensor(t, dtype=F64), torch.tensor(s, dtype=F64)
    return StepCoefficients(
        alpha_t=process.alpha(tt).item(), sigma_t=process.sigma(tt).item(),
        alpha_s=process.alpha(ss).item(), sigma_s=process.sigma(ss).item(),
    )  # fmt: skip


def bayes_posterior(c: StepCoefficients) -> tuple[float, float, float]:
    """(coefficient of x0, coefficient of x_t, variance) of q(x_s | x_t, x0), by multiplying the
    prior q(x_s | x0) = N(alpha_s x0, sigma_s^2) with the likelihood q(x_t | x_s) =
    N(a x_s, v), a = alpha_t / alpha_s, v = sigma_t^2 - a^2 sigma_s^2: precisions add, and the
    mean is the precision-weighted average."""
    a = c.alpha_t / c.alpha_s
    v = c.sigma_t**2 - a**2 * c.sigma_s**2
    variance = 1 / (1 / c.sigma_s**2 + a**2 / v)
    return variance * c.alpha_s / c.sigma_s**2, variance * a / v, variance


def family(value: object) -> str | None:
    """Test ids: a process by its class name (numbers keep pytest's own ids)."""
    return type(value).__name__ if hasattr(value, "alpha") else None


class FixedX0:
    """A denoiser that always says x0 = `x0` (the eps follows from x_t); counts nothing."""

    def __init__(self, process, x0: torch.Tensor) -> None:
        self.process, self.x0, self.nfe = process, x0, 0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        tt = torch.as_tensor(t, dtype=F64)
        alpha, sigma = self.process.alpha(tt).item(), self.process.sigma(tt).item()
        return Prediction(x0=self.x0, eps=(x_t - alpha * self.x0) / sigma)


# --- the posterior q(x_s | x_t, x0) ---------------------------------------------------------


PAIRS = [
    (DDPM(1000, "linear"), 1, 0),  # the last step, to the data: no noise added
    (DDPM(1000, "linear"), 2, 1),
    (DDPM(1000, "linear"), 500, 499),
    (DDPM(1000, "cosine"), 1000, 999),
    (DDPM(1000, "cosine"), 700, 400),  # a skipped stretch: still exact
    (VP(), 0.8, 0.75),
    (SubVP(), 0.5, 0.2),
    (VE(), 0.9, 0.3),
]


@pytest.mark.parametrize(("process", "k_t", "k_s"), PAIRS, ids=family)
def test_posterior_in_the_code_is_the_bayes_product_of_gaussians(process, k_t, k_s) -> None:
    T = getattr(process, "steps", 1)
    t, s = k_t / T, k_s / T
    c = coefficients(process, t, s)
    on_x0, on_x_t, variance = bayes_posterior(c) if s > 0 else (1 / c.alpha_s, 0.0, 0.0)
    if s > 0:
        assert c.posterior_variance == pytest.approx(variance, rel=1e-10)
    if isinstance(process, DDPM) and k_t == k_s + 1:
        beta = process.betas[k_t - 1].item()
        assert c.transition_variance == pytest.approx(beta, rel=1e-9)  # q(x_t | x_s) is one step
        if s > 0:
            # Eq. 7 of Ho et al. 2020 with alpha_bar_t = alpha_t^2, alpha_bar_{t-1} = alpha_s^2.
            ab_t, ab_s = c.alpha_t**2, c.alpha_s**2
            assert variance == pytest.approx((1 - ab_s) / (1 - ab_t) * beta, rel=1e-9)
            assert on_x0 == pytest.approx(math.sqrt(ab_s) * beta / (1 - ab_t), rel=1e-9)
            assert on_x_t == pytest.approx(math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t), rel=1e-9)
    # The ancestral sampler's step is N(mean, variance) with this mean: rerun its noise.
    x0 = torch.tensor([[0.7, -1.3, 2.0]], dtype=F64)
    x_t = torch.tensor([[0.1, 0.4, -2.5]], dtype=F64)
    grid = torch.tensor([t, s], dtype=F64)
    out = ancestral(FixedX0(process, x0), x_t, grid, generator=torch.Generator().manual_seed(5))
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    expected = on_x0 * x0 + on_x_t * x_t + (math.sqrt(variance) * z if s > 0 else 0)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [2, 100, 900])
def test_posterior_mean_in_eps_form_and_the_kl_weight(k: int) -> None:
    # With x0 = (x_k - sqrt(1 - alpha_bar_k) eps) / sqrt(alpha_bar_k), the posterior mean is
    # (x_k - beta_k / sqrt(1 - alpha_bar_k) eps) / sqrt(1 - beta_k) (Ho et al. 2020, Eq. 11), so
    # the squared gap of two means is beta^2 / ((1 - beta)(1 - alpha_bar)) |eps - eps_hat|^2
    # and the KL between equal-variance Gaussians carries that over 2 sigma^2 (Eq. 12).
    process = DDPM(1000, "cosine")
    c = coefficients(process, k / 1000, (k - 1) / 1000)
    on_x0, on_x_t, variance = bayes_posterior(c)
    beta, ab = process.betas[k - 1].item(), c.alpha_t**2
    g = torch.Generator().manual_seed(k)
    x_k, eps, eps_hat = (torch.randn(8, 2, generator=g, dtype=F64) for _ in range(3))

    def mean_from_eps(e: torch.Tensor) -> torch.Tensor:
        x0 = (x_k - math.sqrt(1 - ab) * e) / math.sqrt(ab)
        return on_x0 * x0 + on_x_t * x_k

    eq11 = (x_k - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
    torch.testing.assert_close(mean_from_eps(eps), eq11, rtol=1e-9, atol=1e-10)
    gap = (mean_from_eps(eps) - mean_from_eps(eps_hat)).square().sum(1)
    weight = beta**2 / ((1 - beta) * (1 - ab))
    torch.testing.assert_close(gap, weight * (eps - eps_hat).square().sum(1), rtol=1e-8, atol=0)
    assert variance > 0


def test_variational_bound_with_the_exact_denoiser_is_the_exact_nll() -> None:
    # -log p(x) <= L_T + sum L_{k-1} + L_0 (Ho et al. 2020, Eq. 5). With the exact E[x0 | x_k]
    # and the forward variance beta_k as reverse variance, the gap is small at T = 250; the
    # posterior variance (too narrow for the reverse kernel of mixture data) makes it larger.
    m = mixture_2d()
    model = exact_model(m, TrainConfig(process="ddpm", dataset="gaussians",
                                       diffusion_steps=250).validate())  # fmt: skip
    x = m.sample(1000, torch.Generator().manual_seed(0)).double()
    exact = exact_nll(m, x)
    gaps = {}
    for variance in ("beta", "posterior"):
        bound = ddpm_bound(model, x, variance=variance, generator=torch.Generator().manual_seed(1))
        gap = bound.nll - exact
        gaps[variance] = (gap.mean().item(), gap.std().item() / math.sqrt(len(gap)))
    mean, se = gaps["beta"]
    assert abs(mean) < 4 * se and se < 0.06, gaps  # measured: 0.009 +- 0.043 nats
    mean, se = gaps["posterior"]
    assert mean > 10 * se, gaps  # measured: 1.15 +- 0.06 nats


# --- eps, score and Tweedie -------------------------------------------------------------------


PROCESS_TIMES = [(DDPM(), 0.3), (VP(), 0.5), (SubVP(), 0.4), (VE(), 0.6), (EDM(), 0.8),
                 (FlowMatching(), 0.7)]  # fmt: skip


@pytest.mark.parametrize(("process", "t"), PROCESS_TIMES, ids=family)
def test_exact_eps_is_minus_sigma_times_the_exact_score(process, t: float) -> None:
    oracle = Oracle(mixture_2d(), process)
    tt = torch.tensor(t, dtype=F64)
    alpha, sigma = process.alpha(tt).item(), process.sigma(tt).item()
    x = (torch.randn(32, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
         * (alpha + sigma)).requires_grad_(True)  # fmt: skip
    (score,) = torch.autograd.grad(oracle.log_prob(x, t).sum(), x)
    x = x.detach()
    # E[eps | x_t] from the posterior mean of x0 (the Gaussian conditioning formula, which
    # never touches the score): x_t = alpha x0 + sigma eps, so E[eps|x_t] = (x_t - alpha E[x0|x_t]) / sigma.
    eps = (x - alpha * oracle.x0(x, t)) / sigma
    torch.testing.assert_close(eps, -sigma * score, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(score_from_eps(eps, sigma), score, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(oracle.target("eps", x, t), eps, rtol=1e-9, atol=1e-10)
    # Tweedie's formula: E[x0 | x_t] = (x_t + sigma^2 score) / alpha.
    torch.testing.assert_close(oracle.x0(x, t), (x + sigma**2 * score) / alpha, rtol=1e-9,
                               atol=1e-10)  # fmt: skip


@pytest.mark.parametrize(("process", "t"), [(VP(), 0.35), (FlowMatching(), 0.5)], ids=family)
def test_tweedie_matches_a_monte_carlo_posterior_mean(process, t: float) -> None:
    # E[x0 | x_t] by self-normalised importance sampling: draw x0 from the data, weight each by
    # the likelihood N(x_t; alpha x0, sigma^2 I). Standard error by the delta method.
    m = mixture_2d()
    oracle = Oracle(m, process)
    tt = torch.tensor(t, dtype=F64)
    alpha, sigma = process.alpha(tt).item(), process.sigma(tt).item()
    n = 400_000
    x0 = m.sample(n, torch.Generator().manual_seed(7)).double()  # (n, 2)
    x_t = torch.tensor([[0.0, 0.0], [-1.0, 0.3], [0.9, 0.6], [0.3, -1.2]], dtype=F64) * alpha
    exact = oracle.exact(x_t, t)
    tweedie = (x_t + sigma**2 * exact.score) / alpha
    for point, expected, x0_hat in zip(x_t, tweedie, exact.x0, strict=True):
        log_w = -0.5 * (point - alpha * x0).square().sum(1) / sigma**2
        w = torch.softmax(log_w, 0)  # (n,) normalised weights
        estimate = w @ x0
        se = torch.sqrt((w[:, None] ** 2 * (x0 - estimate) ** 2).sum(0))
        assert 1 / w.square().sum() > 1000  # enough effective samples for the delta method
        assert ((estimate - expected).abs() < 5 * se).all(), (estimate, expected, se)
        assert ((estimate - x0_hat).abs() < 5 * se).all(), (estimate, x0_hat, se)
        assert ((estimate - point / alpha).abs() > 20 * se).any()  # not the naive x_t / alpha


# --- denoising score matching -------------------------------------------------------------------


def test_noise_given_x_t_is_minus_sigma_times_the_score() -> None:
    # The eps loss E|eps_theta(x_t) - noise|^2 is minimised by E[noise | x_t]; bin x_t into
    # slabs along x and compare the mean noise with the mean of -sigma score in each slab.
    m = mixture_2d()
    process = VP()
    t = 0.3
    oracle = Oracle(m, process)
    n = 200_000
    noise, x_t = noised_samples(m, process, t, n, torch.Generator().manual_seed(8))
    sigma = process.sigma(torch.tensor(t, dtype=F64)).item()
    residual = noise + sigma * oracle.score(x_t, t)  # noise - eps*(x_t)
    wrong = noise + oracle.score(x_t, t)  # as if eps = -score (sigma dropped)
    edges = torch.quantile(x_t[:, 0], torch.linspace(0, 1, 21, dtype=F64))
    slab = torch.bucketize(x_t[:, 0].contiguous(), edges[1:-1])
    worst_wrong = 0.0
    for b in range(20):
        inside = slab == b
        r = residual[inside]
        se = r.std(0) / math.sqrt(r.shape[0])
        assert (r.mean(0).abs() < 5 * se).all(), (b, r.mean(0), se)
        worst_wrong = max(worst_wrong, (wrong[inside].mean(0).abs() / se).max().item())
    assert worst_wrong > 20  # measured 150: the check tells the right relation from a wrong one


def test_denoising_and_explicit_score_matching_differ_by_a_constant() -> None:
    # Vincent 2011: E|s(x_t) - grad log q(x_t | x0)|^2 = E|s(x_t) - grad log p_t(x_t)|^2 + C,
    # with C independent of s. So the difference of the two losses is the same for any s.
    m = mixture_2d()
    process = VP()
    t = 0.4
    oracle = Oracle(m, process)
    n = 400_000
    noise, x_t = noised_samples(m, process, t, n, torch.Generator().manual_seed(9))
    sigma = process.sigma(torch.tensor(t, dtype=F64)).item()
    conditional = -noise / sigma  # grad log q(x_t | x0) = -(x_t - alpha x0) / sigma^2
    marginal = oracle.score(x_t, t)
    models = [lambda x: -x, lambda x: -x / (sigma**2 + 1) + torch.tanh(x), lambda x: 0 * x]
    per_point = [
        (s(x_t) - conditional).square().sum(1) - (s(x_t) - marginal).square().sum(1) for s in models
    ]
    for a, b in itertools.pairwise(per_point):
        d = a - b  # = 2 s_b.(c - m) - 2 s_a.(c - m): mean zero because E[c | x_t] = m
        assert abs(d.mean()) < 5 * d.std() / math.sqrt(n)
    # C = E|grad log q(x_t|x0) - grad log p_t(x_t)|^2 > 0: the DSM loss never reaches zero.
    c = per_point[2]
    assert c.mean() > 10 * c.std() / math.sqrt(n)


# --- the reverse SDE and the probability-flow ODE ---------------------------------------------


@pytest.mark.parametrize(
    ("process", "t"),
    [(VP(), 0.5), (SubVP(), 0.3), (VE(), 0.6), (EDM(), 0.7), (FlowMatching(), 0.4)],
    ids=family,
)
def test_probability_flow_velocity_is_drift_minus_half_g2_score(process, t: float) -> None:
    # Eq. 13 of Song et al. 2021: dx/dt = f(t) x - g(t)^2 score / 2; the samplers write it as
    # alpha' E[x0 | x] + sigma' E[eps | x] (`flow_velocity`).
    oracle = Oracle(mixture_2d(), process)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(10), dtype=F64) * 2
    exact = oracle.exact(x, t)
    velocity = flow_velocity(process, Prediction(x0=exact.x0, eps=exact.eps), t)
    tt = torch.tensor(t, dtype=F64)
    f, g2 = process.drift(tt).item(), process.diffusion_squared(tt).item()
    torch.testing.assert_close(velocity, f * x - 0.5 * g2 * exact.score, rtol=1e-9, atol=1e-10)


def component_of(m: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """(B,) the most likely component of each point: argmax_k w_k N(x; m_k, C_k)."""
    ones = torch.ones(x.shape[0], dtype=F64)
    logits = [
        Oracle(GaussianMixture.full(torch.ones(1), m.means[k : k + 1], m.covariances()[k : k + 1]))
        .exact_at(x, ones, 0 * ones).log_prob + m.weights[k].log()
        for k in range(m.n_components)
    ]  # fmt: skip
    return torch.stack(logits).argmax(0)


@pytest.mark.parametrize(
    ("process", "sampler", "steps"),
    [(VP(), "heun", 25), (EDM(), "heun", 32), (VP(), "euler-maruyama", 100)],
    ids=family,
)
def test_exact_score_carries_the_prior_to_the_mixture(process, sampler: str, steps: int) -> None:
    # Heun on the probability-flow ODE, Euler-Maruyama on the reverse SDE, both fed the exact
    # score: the samples' mean, covariance and component masses are the mixture's within
    # 5 standard errors (measured at n = 100,000: covariance within 1% of the largest variance).
    m = mixture_2d()
    oracle = Oracle(m, process)
    n = 10_000
    result = sample(oracle.denoiser(), (n, 2), sampler=sampler, steps=steps,
                                 generator=torch.Generator().manual_seed(11))  # fmt: skip
    x = result.x.double()
    mean = m.mean()
    spread = m.means - mean
    cov = (m.weights[:, None, None] * (m.covariances() + spread[:, :, None] * spread[:, None, :])
           ).sum(0)  # fmt: skip
    assert ((x.mean(0) - mean).abs() < 5 * (cov.diagonal() / n).sqrt()).all(), x.mean(0)
    centred = x - x.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # (n, 2, 2)
    se = products.std(0) / math.sqrt(n)
    assert ((products.mean(0) - cov).abs() < 5 * se).all(), (products.mean(0), cov, se)
    fractions = torch.bincount(component_of(m, x), minlength=3).double() / n
    reference = m.sample(n, torch.Generator().manual_seed(12)).double()
    expected = torch.bincount(component_of(m, reference), minlength=3).double() / n
    se = (2 * expected * (1 - expected) / n).sqrt()  # two independent samples of size n
    assert ((fractions - expected).abs() < 5 * se).all(), (fractions, expected)
