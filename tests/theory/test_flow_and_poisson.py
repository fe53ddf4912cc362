"""The identities of docs/theory/06-flow-and-poisson.md: the flow-matching velocity and its
losses, and the PFGM++ perturbation kernel that `PoissonFlow.noise` draws from."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle
from diffusion.processes import FlowMatching, PoissonFlow
from diffusion.samplers import euler

F64 = torch.float64


def mixture() -> GaussianMixture:
    return GaussianMixture.full(
        torch.tensor([0.4, 0.6]), torch.tensor([[-1.0, 0.5], [1.5, -0.5]]),
        torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]]]),
    )  # fmt: skip


TIMES = (0.05, 0.3, 0.6, 0.9)


# -- flow matching: the marginal velocity ------------------------------------------------------


def test_marginal_velocity_is_the_score_converted() -> None:
    # u = f x - g^2/2 score with f = alpha'/alpha, g^2 = 2 sigma sigma' - 2 f sigma^2 (the
    # PF-ODE of Song et al. 2021, Eq. 13); on the linear path u = -(x + t score) / (1 - t).
    # The oracle's velocity goes through E[x0 | x] and E[eps | x] instead.
    process = FlowMatching()
    oracle = Oracle(mixture(), process)
    x = 2 * torch.randn(300, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in TIMES:
        tt = torch.tensor(t, dtype=F64)
        exact = oracle.exact(x, t)
        velocity = oracle.target("velocity", x, t)
        from_score = process.drift(tt) * x - 0.5 * process.diffusion_squared(tt) * exact.score
        torch.testing.assert_close(velocity, from_score, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(velocity, -(x + t * exact.score) / (1 - t), rtol=1e-9, atol=1e-9)
        # and the denoiser is one Euler step to t = 0: x0_hat = x - t u.
        torch.testing.assert_close(exact.x0, x - t * velocity, rtol=1e-9, atol=1e-9)


def test_marginal_velocity_solves_the_continuity_equation() -> None:
    # d/dt log p_t + div u + u . grad log p_t = 0 (Lipman et al. 2023, Theorem 1), by central
    # differences in t and in x on the exact log-density and velocity.
    process = FlowMatching()
    oracle = Oracle(mixture(), process)
    x = 1.5 * torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    h = 1e-5
    for t in TIMES:
        dlogp_dt = (oracle.log_prob(x, t + h) - oracle.log_prob(x, t - h)) / (2 * h)
        divergence = torch.zeros(x.shape[0], dtype=F64)
        for i in range(2):
            step = torch.zeros(2, dtype=F64)
            step[i] = h
            plus = oracle.target("velocity", x + step, t)[:, i]
            minus = oracle.target("velocity", x - step, t)[:, i]
            divergence += (plus - minus) / (2 * h)
        u, score = oracle.target("velocity", x, t), oracle.score(x, t)
        residual = dlogp_dt + divergence + (u * score).sum(1)
        assert residual.abs().max().item() < 1e-5
        assert dlogp_dt.abs().max().item() > 0.1  # the density does move


class Field(nn.Module):
    """A candidate velocity field seen as a network: it undoes the process's input scaling."""

    def __init__(self, process, field) -> None:
        super().__init__()
        self.process, self.field = process, field

    def forward(self, inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale = (self.process.alpha(t) ** 2 + self.process.sigma(t) ** 2).sqrt()[:, None]
        return self.field(inp * scale, t)


def test_conditional_and_marginal_losses_differ_by_a_constant() -> None:
    # L_CFM(v) = L_FM(v) + E|(eps - x0) - u(x_t)|^2 for every v (Lipman et al. 2023,
    # Theorem 2): the differences between two candidate fields agree under both losses.
    process = FlowMatching(coupling="independent")  # the theorem is about independent pairs
    oracle = Oracle(mixture(), process)
    n = 20_000
    g = torch.Generator().manual_seed(2)
    x0 = mixture().sample(n, g).double()
    t = torch.rand(n, generator=g, dtype=F64)
    seed = 3
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    x_t = process.marginal(x0, t, eps)
    conditional = eps - x0  # the velocity of each straight path
    marginal = oracle.target("velocity", x_t, t)
    fields = {
        "a": lambda x, t: -x,
        "b": lambda x, t: torch.sin(2 * x) + t[:, None],
    }
    cfm, fm = {}, {}
    for name, field in fields.items():
        v = field(x_t, t)
        cfm[name] = (v - conditional).pow(2).sum(1)  # per sample
        fm[name] = (v - marginal).pow(2).sum(1)
    gap = (cfm["a"] - cfm["b"]) - (fm["a"] - fm["b"])  # mean 0: E[cross term] = 0
    stderr = gap.std().item() / math.sqrt(n)
    assert abs(gap.mean().item()) < 4 * stderr
    assert abs((cfm["a"] - cfm["b"]).mean().item()) > 30 * stderr  # the fields do differ
    constant = (marginal - conditional).pow(2).sum(1).mean().item()  # L_CFM of u itself
    for name in fields:
        assert (cfm[name] - fm[name]).mean().item() == pytest.approx(constant, abs=5 * stderr)
    assert constant > 1.0  # the conditional loss never reaches 0
    # The code's loss is L_CFM (a mean over the data dimensions too, hence / 2).
    for name, field in fields.items():
        loss = process.loss(
            Field(process, field), x0, t, generator=torch.Generator().manual_seed(seed)
        )
        assert loss.item() == pytest.approx(cfm[name].mean().item() / 2, rel=1e-12)


def test_one_euler_step_is_exact_for_a_single_point() -> None:
    # For one data point m, u(x, t) = (x - m) / t points along the straight line to m, so a
    # single Euler step from t = 1 lands on m: the paths are straight.
    m = torch.tensor([[0.5, -2.0]], dtype=F64)
    oracle = Oracle.points(m, FlowMatching())
    x1 = torch.randn(20, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    out = euler(oracle.denoiser(), x1, torch.tensor([1.0, 0.0], dtype=F64), variable="t")
    torch.testing.assert_close(out, m.expand_as(out), rtol=0, atol=1e-12)


# -- Poisson flow: the PFGM++ kernel -------------------------------------------------------------


def radii(augment_dim: int, n: int, seed: int, dim: int = 2) -> torch.Tensor:
    """Sorted |noise| of n draws of `PoissonFlow.noise` in `dim` dimensions (sigma = 1)."""
    noise = PoissonFlow(augment_dim=augment_dim).noise(
        (n, dim), generator=torch.Generator().manual_seed(seed), dtype=F64
    )
    return noise.norm(dim=1).sort().values


def ks(sorted_sample: torch.Tensor, cdf: torch.Tensor) -> float:
    """Kolmogorov-Smirnov statistic of a sorted sample against its CDF values."""
    n = sorted_sample.numel()
    upper = torch.arange(1, n + 1, dtype=F64) / n
    return max((upper - cdf).abs().max().item(), (upper - 1 / n - cdf).abs().max().item())


def kernel_cdf(radius: torch.Tensor, augment_dim: int) -> torch.Tensor:
    """P(R <= radius) under p_r(x | y) ∝ (|x - y|^2 + r^2)^(-(N + D)/2), N = 2, r^2 = D."""
    return 1 - (1 + radius**2 / augment_dim) ** (-augment_dim / 2)


def gaussian_cdf(radius: torch.Tensor) -> torch.Tensor:
    """P(R <= radius) for N(0, I) in 2-D (Rayleigh)."""
    return 1 - torch.exp(-(radius**2) / 2)


N_RADII = 20_000
CRITICAL = 1.95 / math.sqrt(N_RADII)  # the 0.1% critical value of the KS statistic


@pytest.mark.parametrize("augment_dim", [1, 4, 16, 64])
def test_noise_radius_follows_the_pfgmpp_kernel(augment_dim: int) -> None:
    radius = radii(augment_dim, N_RADII, seed=augment_dim)
    assert ks(radius, kernel_cdf(radius, augment_dim)) < CRITICAL


def test_large_d_approaches_the_gaussian_kernel() -> None:
    # sup |P_D(R <= x) - P_inf(R <= x)| ~ 4 e^-2 / D (from (1 + x^2/D)^(-D/2) =
    # exp(-x^2/2 + x^4 / (4D) + ...), largest at x^2 = 4); the code's noise follows it.
    grid = torch.linspace(0, 12, 120_001, dtype=F64)
    previous = 1.0
    for augment_dim in (1, 4, 16, 64):
        gap = (kernel_cdf(grid, augment_dim) - gaussian_cdf(grid)).abs().max().item()
        if augment_dim >= 16:
            assert gap * augment_dim == pytest.approx(4 * math.exp(-2), rel=0.06)
        radius = radii(augment_dim, N_RADII, seed=100 + augment_dim)
        measured = ks(radius, gaussian_cdf(radius))
        assert abs(measured - gap) < CRITICAL
        assert measured < previous
        previous = measured
    # Per coordinate, the Student-t variance D / (D - 2) tends to 1.
    noise = PoissonFlow(augment_dim=12).noise(
        (100_000, 2), generator=torch.Generator().manual_seed(5), dtype=F64
    )
    assert noise.var(0).tolist() == pytest.approx([1.2, 1.2], rel=0.03)
