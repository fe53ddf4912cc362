"""Note 1, "Why the score": the identities of docs/theory/01-why-the-score.md, checked in float64.

- The score of an unnormalised density is the score of the normalised one (Z drops out).
- The oracle's exact score is the gradient of the oracle's exact log-density.
- The gradient of an energy-based model's log-likelihood is "positive phase minus negative
  phase" (Hinton 2002), with the negative phase an expectation under the model.
- Hyvärinen's integration by parts (Hyvärinen 2005, Theorem 1):
  E_p[|s|^2 / 2 + div s] = E_p[|s - grad log p|^2] / 2 - E_p[|grad log p|^2] / 2.
"""

from __future__ import annotations

import math

import pytest
import torch
from theory_helpers import F64, data_log_prob, data_score, mixture_2d

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle
from diffusion.processes import VE, VP, FlowMatching


def mixture_1d() -> GaussianMixture:
    return GaussianMixture.isotropic(
        torch.tensor([0.6, 0.4]), torch.tensor([[-1.0], [1.5]]), torch.tensor([0.5, 0.3])
    )


def grid_2d(half_width: float, n: int) -> tuple[torch.Tensor, float]:
    """(n*n, 2) grid points on [-w, w]^2 and the area of one cell (midpoint rule)."""
    h = 2 * half_width / n
    axis = -half_width + h * (torch.arange(n, dtype=F64) + 0.5)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1), h * h


# --- the score does not see the normalising constant ----------------------------------------


def unnormalised_log_density(m: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """-E(x): the mixture written by hand without any 2 pi factor and times e^5, so its integral
    Z = e^5 (2 pi)^(D/2) is "unknown" to whoever only has E."""
    prec = torch.linalg.inv(m.covariances())  # (K, D, D)
    diff = x[:, None, :] - m.means[None]  # (B, K, D)
    quad = torch.einsum("bkd,kde,bke->bk", diff, prec, diff)
    logdet = torch.logdet(m.covariances())
    return torch.logsumexp(m.weights.log() - 0.5 * quad - 0.5 * logdet, dim=1) + 5.0


def test_score_of_unnormalised_density_is_the_normalised_score() -> None:
    m = mixture_2d()
    oracle = Oracle(m)
    x = (m.sample(64, torch.Generator().manual_seed(0)).double() * 1.5).requires_grad_(True)
    log_unnorm = unnormalised_log_density(m, x)
    (score,) = torch.autograd.grad(log_unnorm.sum(), x)
    # grad log(p~ / Z) = grad log p~: the oracle's normalised score, computed independently.
    torch.testing.assert_close(score, data_score(oracle, x.detach()), rtol=1e-10, atol=1e-12)
    # The two log-densities differ by one constant, log Z, here known in closed form...
    log_z = log_unnorm.detach() - data_log_prob(oracle, x.detach())
    expected = 5.0 + math.log(2 * math.pi)
    torch.testing.assert_close(log_z, torch.full_like(log_z, expected), rtol=0, atol=1e-10)
    # ...and by brute-force quadrature, the route that costs n^D evaluations in D dimensions.
    grid, cell = grid_2d(7.0, 700)
    z_quadrature = unnormalised_log_density(m, grid).exp().sum() * cell
    assert math.log(z_quadrature) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("make", "t"), [(VP, 0.3), (VP, 0.9), (VE, 0.5), (FlowMatching, 0.6)])
def test_oracle_score_is_the_gradient_of_its_log_density(make, t: float) -> None:
    oracle = Oracle(mixture_2d(), make())
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * 2
    x.requires_grad_(True)
    (autograd,) = torch.autograd.grad(oracle.log_prob(x, t).sum(), x)
    torch.testing.assert_close(oracle.score(x.detach(), t), autograd, rtol=1e-9, atol=1e-11)


# --- energy-based models: positive phase minus negative phase --------------------------------


def energy(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A double well E(x) = a x^4 / 4 + b x^2 / 2 + c x: Z(theta) has no closed form."""
    return theta[0] * x**4 / 4 + theta[1] * x**2 / 2 + theta[2] * x


def energy_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, 3) dE/dtheta at each x."""
    return torch.stack([x**4 / 4, x**2 / 2, x], dim=1)


def test_energy_model_gradient_is_positive_minus_negative_phase() -> None:
    theta = torch.tensor([0.3, -1.0, 0.4], dtype=F64, requires_grad=True)
    data = mixture_1d().sample(50, torch.Generator().manual_seed(2)).double()[:, 0]
    # Z(theta) by the trapezoid rule on [-9, 9]: exp(-E) < 1e-100 at the ends.
    grid = torch.linspace(-9, 9, 20001, dtype=F64)
    log_z = torch.logsumexp(-energy(theta, grid), 0) + math.log(grid[1] - grid[0])
    log_likelihood = (-energy(theta, data)).mean() - log_z
    (grad,) = torch.autograd.grad(log_likelihood, theta)
    # Positive phase: -E_data[dE/dtheta]; negative phase: E_model[dE/dtheta] (d log Z / dtheta).
    model_density = (-energy(theta, grid) - log_z).exp().detach()
    negative = (model_density[:, None] * energy_grad(grid)).sum(0) * (grid[1] - grid[0])
    positive = energy_grad(data).mean(0)
    torch.testing.assert_close(grad, -positive + negative, rtol=1e-9, atol=1e-12)
    # The negative phase is not small: dropping it (as if Z did not depend on theta) is wrong.
    assert (negative.abs() > 0.1).all()


# --- score matching: Hyvärinen's integration by parts ------------------------------------------


def candidate(x: torch.Tensor, a: float, b: float, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A model score s(x) = a x + b + c tanh(x) (elementwise) and its divergence."""
    th = torch.tanh(x)
    return a * x + b + c * th, (a + c * (1 - th**2)).sum(-1)


@pytest.mark.parametrize(("a", "b", "c"), [(-1.0, 0.0, 0.0), (-0.5, 0.3, 1.2), (0.4, -1.0, -2.0)])
def test_hyvarinen_identity_in_1d_by_quadrature(a: float, b: float, c: float) -> None:
    oracle = Oracle(mixture_1d())
    x = torch.linspace(-10, 10, 40001, dtype=F64)[:, None]  # p < 1e-80 beyond
    dx = 20 / 40000
    p = data_log_prob(oracle, x).exp() * dx  # quadrature weights
    true_score = data_score(oracle, x)[:, 0]
    s, div = candidate(x, a, b, c)
    s = s[:, 0]
    hyvarinen = (p * (0.5 * s**2 + div)).sum()  # needs no true score
    explicit = 0.5 * (p * (s - true_score) ** 2).sum()
    constant = 0.5 * (p * true_score**2).sum()
    assert hyvarinen.item() == pytest.approx((explicit - constant).item(), abs=1e-9)
    # At the true score the objective is smallest: -E|grad log p|^2 / 2 (needs d score/dx).
    xg = x.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(data_score(oracle, xg).sum(), xg)
    at_truth = (p * (0.5 * true_score**2 + slope[:, 0])).sum()
    assert at_truth.item() == pytest.approx(-constant.item(), abs=1e-9)
    assert hyvarinen.item() > at_truth.item() + 1e-3


def test_hyvarinen_identity_in_2d_by_monte_carlo_against_a_gaussian() -> None:
    # p = N(m, C): grad log p = -P (x - m) with P = C^-1. For s(x) = A x + b the objective has
    # the closed form E[|A x + b|^2 / 2 + tr A] = (tr(A C A^T) + |A m + b|^2) / 2 + tr A.
    mean = torch.tensor([0.5, -1.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.4], [0.4, 0.5]], dtype=F64)
    A = torch.tensor([[-0.8, 0.3], [0.1, -1.5]], dtype=F64)
    b = torch.tensor([0.2, 0.7], dtype=F64)
    P = torch.linalg.inv(cov)
    closed = 0.5 * (torch.trace(A @ cov @ A.T) + (A @ mean + b).square().sum()) + torch.trace(A)
    explicit = 0.5 * (torch.trace((A + P) @ cov @ (A + P).T) + (A @ mean + b).square().sum())
    # The identity, in closed form: J_H(s) = J_E(s) - E|grad log p|^2 / 2 = J_E(s) - tr(P) / 2.
    assert closed.item() == pytest.approx((explicit - 0.5 * torch.trace(P)).item(), rel=1e-12)
    # Monte Carlo: n = 400,000 draws; allow 5 standard errors of the mean.
    n = 400_000
    g = torch.Generator().manual_seed(3)
    x = mean + torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
    per_point = 0.5 * (x @ A.T + b).square().sum(1) + torch.trace(A)
    se = per_point.std() / math.sqrt(n)
    assert abs(per_point.mean() - closed) < 5 * se
    # A nonlinear s: both sides by Monte Carlo on the same draws; their per-point difference
    # has mean zero only if the divergence term is there (integration by parts).
    s, div = candidate(x, -0.7, 0.2, 0.9)
    true_score = -(x - mean) @ P.T
    difference = (0.5 * s.square().sum(1) + div) - (
        0.5 * (s - true_score).square().sum(1) - 0.5 * true_score.square().sum(1)
    )
    se = difference.std() / math.sqrt(n)
    assert abs(difference.mean()) < 5 * se
    assert abs((difference - div).mean()) > 50 * se  # without div s the sides disagree
