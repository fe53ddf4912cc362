"""Probability-flow likelihoods: with the exact oracle they must equal the closed-form density."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from diffusion.data.mixture import GaussianMixture
from diffusion.data.normalize import Normalizer
from diffusion.measure.likelihood import (
    Likelihood,
    exact_nll,
    pf_ode_nll,
    prior_log_prob,
    start_time,
    velocity,
)
from diffusion.measure.oracle import Oracle
from diffusion.processes import PROCESSES
from diffusion.training.config import TrainConfig
from diffusion.workflows.exact import exact_model

F64 = torch.float64


def config(process: str) -> TrainConfig:
    return TrainConfig(process=process, dataset="gaussians").validate()


def mixture_2d() -> GaussianMixture:
    """Two correlated components, off-centre and not unit scale (the normaliser matters)."""
    return GaussianMixture.full(
        torch.tensor([0.3, 0.7]), torch.tensor([[-1.0, 2.5], [2.0, 1.5]]),
        torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.05], [-0.05, 0.4]]]),
    )  # fmt: skip


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    return mixture_2d().sample(200, torch.Generator().manual_seed(0)).double()


def reference_nll(m: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    law = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=m.weights),
        torch.distributions.MultivariateNormal(m.means, covariance_matrix=m.covariances()),
    )
    return -law.log_prob(x)


def test_exact_nll_matches_torch_distributions(points):
    m = mixture_2d()
    torch.testing.assert_close(exact_nll(m, points), reference_nll(m, points))
    assert exact_nll(m, points.float()).dtype == F64


@pytest.mark.parametrize("process", ["edm", "vp", "flow"])
def test_pf_ode_nll_with_oracle_equals_exact_nll(process, points):
    m = mixture_2d()
    result = pf_ode_nll(exact_model(m, config(process)), points)
    exact = exact_nll(m, points)
    assert result.nll.shape == (200,) and result.nll.dtype == F64
    assert abs(result.mean - float(exact.mean())) < 0.01
    assert float((result.nll - exact).abs().max()) < 0.05
    assert result.divergence == "exact" and result.dim == 2 and result.evaluations > 6
    assert (result.rtol, result.atol) == (1e-5, 1e-5)


def test_hutchinson_is_unbiased_and_reproducible(points):
    m = mixture_2d()
    model = exact_model(m, config("vp"))
    a = pf_ode_nll(
        model, points, divergence="hutchinson", generator=torch.Generator().manual_seed(3)
    )
    b = pf_ode_nll(
        model, points, divergence="hutchinson", generator=torch.Generator().manual_seed(3)
    )
    exact = exact_nll(m, points)
    assert a.divergence == "hutchinson"
    assert torch.equal(a.nll, b.nll)
    assert abs(a.mean - float(exact.mean())) < 0.1
    # a stochastic estimate: per point it differs from the exact divergence's answer
    assert float((a.nll - exact).abs().max()) > 1e-3


def standard_gaussian_case() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """N(0, I) in 2D, 50 points, and the closed form -log p(x) = |x|^2 / 2 + log(2 pi)."""
    m = GaussianMixture.isotropic(torch.ones(1), torch.zeros(1, 2), torch.ones(1))
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    return m, x, 0.5 * x.pow(2).sum(1) + math.log(2 * math.pi)


@pytest.mark.parametrize("process", ["vp", "ddpm", "edm"])
def test_standard_gaussian_closed_form(process):
    m, x, closed = standard_gaussian_case()
    result = pf_ode_nll(exact_model(m, config(process)), x)
    # edm's prior N(0, 80^2) stands for N(0, 1 + 80^2): ~1e-3 nats at |x| ~ 4
    torch.testing.assert_close(result.nll, closed, atol=3e-3, rtol=0)
    assert abs(result.mean - float(closed.mean())) < 5e-4


@pytest.mark.parametrize("process", ["flow", "subvp"])
def test_standard_gaussian_closed_form_when_alpha_shrinks(process):
    m, x, closed = standard_gaussian_case()
    result = pf_ode_nll(exact_model(m, config(process)), x)
    torch.testing.assert_close(result.nll, closed, atol=3e-3, rtol=0)


def test_scaled_gaussian_includes_log_jacobian():
    # N(mu, diag(s^2)): -log p = sum ((x - mu) / s)^2 / 2 + log s + log(2 pi) / 2
    mu, s = torch.tensor([3.0, -1.0], dtype=F64), torch.tensor([4.0, 0.25], dtype=F64)
    m = GaussianMixture.full(torch.ones(1), mu[None], torch.diag(s**2)[None])
    x = mu + s * torch.randn(50, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    closed = (0.5 * ((x - mu) / s) ** 2 + s.log() + 0.5 * math.log(2 * math.pi)).sum(1)
    result = pf_ode_nll(exact_model(m, config("vp")), x)
    torch.testing.assert_close(result.nll, closed, atol=2e-3, rtol=0)


def test_nll_does_not_depend_on_normaliser(points):
    # the data-space density is the same whichever scaling the model works in (centred: the
    # prior N(0, sigma(1)^2 I) ignores alpha(1) times the data mean, 0.0066 for vp)
    m = mixture_2d()
    scale = (m.std() * torch.tensor([2.0, 0.5], dtype=F64)).float()
    other = Normalizer(shift=m.mean().float(), scale=scale)
    a = pf_ode_nll(exact_model(m, config("vp")), points[:50])
    b = pf_ode_nll(exact_model(m, config("vp"), other), points[:50])
    torch.testing.assert_close(a.nll, b.nll, atol=5e-3, rtol=0)
    torch.testing.assert_close(b.nll, exact_nll(m, points[:50]), atol=5e-3, rtol=0)


def test_batches_give_the_same_answer(points):
    model = exact_model(mixture_2d(), config("vp"))
    whole = pf_ode_nll(model, points[:30])
    split = pf_ode_nll(model, points[:30], batch_size=7)
    torch.testing.assert_close(split.nll, whole.nll, atol=2e-3, rtol=0)
    assert split.evaluations > whole.evaluations  # five solves instead of one


def test_bad_arguments_raise():
    model = exact_model(mixture_2d(), config("vp"))
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="unknown divergence"):
        pf_ode_nll(model, x, divergence="trace")
    poisson = SimpleNamespace(process=PROCESSES["poisson"]())
    with pytest.raises(ValueError, match="Gaussian path"):
        pf_ode_nll(poisson, x)
    with pytest.raises(ValueError):
        pf_ode_nll(model, x, rtol=0.0)


def test_likelihood_summary_statistics():
    nll = torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=F64)
    result = Likelihood(nll=nll, dim=3, evaluations=10, divergence="exact", rtol=1e-5, atol=1e-5)
    assert result.mean == pytest.approx(3.0)
    assert result.stderr == pytest.approx(float(nll.std()) / 2)
    assert result.bits_per_dim == pytest.approx(3.0 / (3 * math.log(2)))
    single = Likelihood(nll=nll[:1], dim=2, evaluations=1, divergence="exact", rtol=1, atol=1)
    assert single.stderr == 0.0
    assert single.bits_per_dim == pytest.approx(1.0 / (2 * math.log(2)))


def test_bits_per_dim_of_a_run(points):
    result = pf_ode_nll(exact_model(mixture_2d(), config("vp")), points[:20])
    assert result.bits_per_dim == pytest.approx(result.mean / (2 * math.log(2)))


@pytest.mark.parametrize("process", ["edm", "flow", "vp", "ve"])
def test_prior_log_prob_is_isotropic_gaussian(process):
    p = PROCESSES[process]()
    sigma = float(p.sigma(torch.tensor(1.0, dtype=F64)))
    x = sigma * torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref = torch.distributions.MultivariateNormal(
        torch.zeros(3, dtype=F64), covariance_matrix=sigma**2 * torch.eye(3, dtype=F64)
    ).log_prob(x)
    torch.testing.assert_close(prior_log_prob(p, x), ref)


@pytest.mark.parametrize("process", ["edm", "vp", "flow"])
def test_velocity_equals_oracle_velocity_target(process):
    m = mixture_2d().affine(torch.tensor([0.5, 2.0]), torch.tensor([1.5, 0.8]))
    p = PROCESSES[process]()
    oracle = Oracle(m, p)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in (0.3, 0.8):
        v = velocity(oracle.denoiser(), x, t)
        torch.testing.assert_close(v, oracle.target("velocity", x, torch.tensor(t, dtype=F64)))


@pytest.mark.parametrize("process", ["edm", "vp", "flow", "ddpm"])
def test_start_time_is_where_noise_is_one_thousandth(process):
    p = PROCESSES[process]()
    t0 = torch.tensor(start_time(p), dtype=F64)
    assert float(p.sigma(t0) / p.alpha(t0)) == pytest.approx(1e-3, rel=1e-6)
