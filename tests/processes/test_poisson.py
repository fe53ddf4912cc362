"""PFGM++ (Xu et al. 2023): the kernel, the D -> infinity limit, and what it refuses."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.processes import EDM, PoissonFlow
from diffusion.samplers import sample
from diffusion.training.config import ConfigError, TrainConfig


def radii(process: PoissonFlow, n: int, dim: int, seed: int) -> torch.Tensor:
    noise = process.noise(
        (n, dim), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    return noise.norm(dim=1)


@pytest.mark.parametrize(("augment_dim", "dim"), [(1, 2), (4, 2), (16, 3)])
def test_kernel_radius_follows_xu_et_al(augment_dim, dim):
    """With r = sigma sqrt(D) and sigma = 1, R^2 / r^2 = b / (1 - b) with b ~ Beta(N/2, D/2)
    (Xu et al. 2023, App. B): compare the median of b against a direct Beta sample."""
    process = PoissonFlow(augment_dim=augment_dim)
    r2 = radii(process, 100_000, dim, 0) ** 2 / augment_dim
    b = r2 / (1 + r2)
    beta = torch.distributions.Beta(dim / 2, augment_dim / 2)
    torch.manual_seed(1)  # only for this reference sample
    reference = beta.sample((100_000,)).double()
    for q in (0.1, 0.5, 0.9):
        assert b.quantile(q).item() == pytest.approx(reference.quantile(q).item(), rel=0.02)


def test_kernel_is_student_t_with_d_degrees_of_freedom():
    process = PoissonFlow(augment_dim=6)
    noise = process.noise((200_000, 2), generator=torch.Generator().manual_seed(2))
    # Student-t variance D / (D - 2) per coordinate; Gaussian tails are far lighter.
    assert noise.var(0).tolist() == pytest.approx([1.5, 1.5], rel=0.03)
    heavy = (noise.norm(dim=1) > 4).float().mean().item()
    gaussian = math.exp(-(4**2) / 2)  # P(||z|| > 4) for a 2-D standard normal
    assert heavy > 10 * gaussian


def test_large_d_approaches_the_gaussian_edm_kernel():
    """Xu et al. 2023, Prop. 3.1: D -> infinity recovers the Gaussian (EDM) kernel."""
    n, dim = 50_000, 2
    gaussian = torch.randn(n, dim, generator=torch.Generator().manual_seed(3)).norm(dim=1)
    gaps = []
    for augment_dim in (2, 16, 128, 1024):
        r = radii(PoissonFlow(augment_dim=augment_dim), n, dim, 4).float()
        gaps.append(abs(r.quantile(0.99).item() - gaussian.quantile(0.99).item()))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.03 < gaps[0]


def test_same_schedule_as_edm_and_gaussian_only_samplers_are_refused():
    process, edm = PoissonFlow(), EDM()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(process.sigma(t), edm.sigma(t)) and not process.gaussian
    for sampler in ("ancestral", "euler-maruyama", "pc", "langevin"):
        with pytest.raises(ValueError, match="Gaussian"):
            sample(process.denoiser(lambda x, t: x), (4, 2), sampler=sampler, steps=3)
    with pytest.raises(ValueError, match="Gaussian"):
        sample(process.denoiser(lambda x, t: x), (4, 2), sampler="heun", steps=3, churn=5.0)
    with pytest.raises(ConfigError, match="Gaussian"):
        TrainConfig(process="poisson", sampler="ancestral").validate()
    with pytest.raises(ConfigError, match="augment_dim"):
        TrainConfig(process="edm", augment_dim=8).validate()


def test_training_loss_uses_the_heavy_tailed_noise():
    """x_t = x0 + sigma * noise with the Student-t noise: at a fixed t the loss of a model that
    predicts v from the true noise is exactly zero."""
    process = PoissonFlow(augment_dim=3)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    t = torch.full((64,), 0.7)
    seen = {}

    class Cheat(torch.nn.Module):
        def forward(self, x_in, t_in):
            seen["x"] = x_in
            return torch.zeros_like(x_in)

    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    process.loss(Cheat(), x0, t, generator=g1)
    noise = process.noise(x0.shape, generator=g2)
    sigma = process.sigma(t)[:, None]
    expected = (x0 + sigma * noise) / (1 + sigma**2).sqrt()  # c_in x_t
    torch.testing.assert_close(seen["x"], expected)
