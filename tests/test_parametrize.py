"""Known answers for the eps / x0 / v conversions, the score, and the denoiser view."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion.parametrize import (
    TARGETS,
    Denoiser,
    check_target,
    prediction_from,
    score_from_eps,
    target_from,
)
from diffusion.processes import DDPM


def random_path(seed: int, shape=(256, 3)):
    """Random x0, eps and per-sample (alpha, sigma), most of them not variance preserving."""
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=generator, dtype=torch.float64)
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    # alpha in [0.05, 3], sigma in [0.05, 5]: alpha^2 + sigma^2 ranges far from 1 (VE-like,
    # EDM-like and flow-matching-like pairs as well as VP ones).
    alpha = 0.05 + 2.95 * torch.rand(shape[0], 1, generator=generator, dtype=torch.float64)
    sigma = 0.05 + 4.95 * torch.rand(shape[0], 1, generator=generator, dtype=torch.float64)
    return x0, eps, alpha, sigma


@pytest.mark.parametrize("target", TARGETS)
def test_target_then_prediction_recovers_x0_and_eps(target: str) -> None:
    x0, eps, alpha, sigma = random_path(0)
    assert bool(((alpha**2 + sigma**2 - 1).abs() > 0.1).float().mean() > 0.9)  # mostly non-VP
    x_t = alpha * x0 + sigma * eps
    generator = torch.Generator().manual_seed(9)
    d_alpha = -3 * torch.rand(alpha.shape, generator=generator, dtype=torch.float64)
    d_sigma = 0.1 + 3 * torch.rand(alpha.shape, generator=generator, dtype=torch.float64)
    output = target_from(target, x0, eps, alpha, sigma, d_alpha, d_sigma)
    pred = prediction_from(target, output, x_t, alpha, sigma, d_alpha, d_sigma)
    torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-10)


def test_targets_have_their_textbook_values() -> None:
    x0, eps, alpha, sigma = random_path(1)
    assert torch.equal(target_from("eps", x0, eps, alpha, sigma), eps)
    assert torch.equal(target_from("x0", x0, eps, alpha, sigma), x0)
    # v = (alpha eps - sigma x0) / sqrt(alpha^2 + sigma^2) (Salimans & Ho 2022, Sec. 4, r = 1).
    r = (alpha**2 + sigma**2).sqrt()
    torch.testing.assert_close(
        target_from("v", x0, eps, alpha, sigma), (alpha * eps - sigma * x0) / r, rtol=0, atol=1e-14
    )
    # velocity = alpha' x0 + sigma' eps; for flow matching (alpha = 1 - t, sigma = t): eps - x0.
    one = torch.ones_like(alpha)
    torch.testing.assert_close(
        target_from("velocity", x0, eps, alpha, sigma, -one, one), eps - x0, rtol=0, atol=0
    )
    torch.testing.assert_close(target_from("score", x0, eps, alpha, sigma), -eps / sigma)


def test_vp_v_is_the_angular_velocity() -> None:
    # With alpha = cos(phi), sigma = sin(phi): v = d x_phi / d phi (Salimans & Ho 2022, Eq. 8).
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(10, 2, generator=generator, dtype=torch.float64)
    eps = torch.randn(10, 2, generator=generator, dtype=torch.float64)
    phi = torch.linspace(0.1, 1.4, 10, dtype=torch.float64)[:, None]
    h = 1e-6

    def path(angle: torch.Tensor) -> torch.Tensor:
        return torch.cos(angle) * x0 + torch.sin(angle) * eps

    derivative = (path(phi + h) - path(phi - h)) / (2 * h)  # central difference, error ~h^2
    v = target_from("v", x0, eps, torch.cos(phi), torch.sin(phi))
    torch.testing.assert_close(v, derivative, rtol=0, atol=1e-8)


@pytest.mark.parametrize("bad", ["noise", "epsilon", ""])
def test_unknown_targets_raise(bad: str) -> None:
    x0, eps, alpha, sigma = random_path(3, shape=(2, 2))
    with pytest.raises(ValueError, match="unknown prediction target"):
        check_target(bad)
    with pytest.raises(ValueError, match="unknown prediction target"):
        target_from(bad, x0, eps, alpha, sigma)
    with pytest.raises(ValueError, match="unknown prediction target"):
        prediction_from(bad, x0, x0, alpha, sigma)


def posterior_mean_x0_by_quadrature(x_t: torch.Tensor, alpha, sigma, mu, s) -> torch.Tensor:
    """E[x0 | x_t] for x0 ~ N(mu, s^2), x_t | x0 ~ N(alpha x0, sigma^2), by a trapezoid integral."""
    grid = torch.linspace(mu - 12 * s, mu + 12 * s, 20001, dtype=torch.float64)  # (G,)
    log_w = -0.5 * ((grid - mu) / s) ** 2 - 0.5 * ((x_t[:, None] - alpha * grid) / sigma) ** 2
    w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values)  # (N, G)
    return torch.trapezoid(w * grid, grid, dim=1) / torch.trapezoid(w, grid, dim=1)


@pytest.mark.parametrize(("alpha", "sigma"), [(0.9, 0.3), (0.4, 0.95), (1.0, 2.5), (0.3, 0.2)])
def test_score_from_exact_eps_is_the_gaussian_score(alpha: float, sigma: float) -> None:
    mu, s = 0.7, 1.3
    x_t = torch.linspace(-4, 4, 41, dtype=torch.float64)
    # E[eps | x_t] from the exact posterior mean of x0 (numerical integration, no formula).
    x0_mean = posterior_mean_x0_by_quadrature(x_t, alpha, sigma, mu, s)
    eps_mean = (x_t - alpha * x0_mean) / sigma
    score = score_from_eps(eps_mean, torch.tensor(sigma, dtype=torch.float64))
    # x_t ~ N(alpha mu, alpha^2 s^2 + sigma^2): its score is -(x - alpha mu) / variance.
    analytic = -(x_t - alpha * mu) / (alpha**2 * s**2 + sigma**2)
    torch.testing.assert_close(score, analytic, rtol=1e-8, atol=1e-10)
    # ...which is also the gradient of the log density (autograd).
    x = x_t.clone().requires_grad_(True)
    var = alpha**2 * s**2 + sigma**2
    log_p = -0.5 * ((x - alpha * mu) ** 2 / var).sum()
    (grad,) = torch.autograd.grad(log_p, x)
    torch.testing.assert_close(score, grad, rtol=1e-8, atol=1e-10)


class Recorder(nn.Module):
    """Returns a fixed output and records the (x, t) it was called with."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x, t))
        return self.output


@pytest.mark.parametrize("target", TARGETS)
def test_denoiser_counts_calls_and_converts(target: str) -> None:
    process = DDPM(100, "linear", prediction=target)
    generator = torch.Generator().manual_seed(4)
    x_t = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    output = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    model = Recorder(output)
    denoiser = process.denoiser(model)
    assert isinstance(denoiser, Denoiser) and denoiser.nfe == 0

    # A scalar time is broadcast to (B,); a (B,) time is used as is.
    times = [torch.tensor(0.37, dtype=torch.float64), torch.full((5,), 0.8, dtype=torch.float64)]
    for i, t in enumerate(times, start=1):
        pred = denoiser(x_t, t)
        assert denoiser.nfe == i
        seen_x, seen_t = model.calls[-1]
        assert torch.equal(seen_x, x_t)
        assert seen_t.shape == (5,) and seen_t.dtype == torch.float64
        k = round(float(t.reshape(-1)[0]) * 100)
        alpha = math.sqrt(process.alpha_bar[k].item())
        sigma = math.sqrt(1 - process.alpha_bar[k].item())
        if target == "eps":
            x0, eps = (x_t - sigma * output) / alpha, output
        elif target == "x0":
            x0, eps = output, (x_t - alpha * output) / sigma
        elif target == "v":  # alpha^2 + sigma^2 = 1 for DDPM: x0 = alpha x_t - sigma v, ...
            x0, eps = alpha * x_t - sigma * output, sigma * x_t + alpha * output
        elif target == "score":
            eps = -sigma * output
            x0 = (x_t - sigma * eps) / alpha
        else:  # velocity: the derivatives of the interpolated alpha_bar table, by autograd
            tt = torch.tensor(float(t.reshape(-1)[0]), dtype=torch.float64)
            da, ds = process.d_alpha(tt).item(), process.d_sigma(tt).item()
            det = alpha * ds - sigma * da
            x0, eps = (ds * x_t - sigma * output) / det, (alpha * output - da * x_t) / det
        torch.testing.assert_close(pred.x0, x0, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(pred.eps, eps, rtol=1e-10, atol=1e-12)
        # The two always satisfy x_t = alpha x0 + sigma eps.
        torch.testing.assert_close(alpha * pred.x0 + sigma * pred.eps, x_t, rtol=0, atol=1e-12)
