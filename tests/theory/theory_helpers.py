"""What several theory tests share: a 2-D mixture with known answers, and its own density."""

from __future__ import annotations

import torch

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle

F64 = torch.float64


def mixture_2d() -> GaussianMixture:
    """Three correlated components in 2-D (the example of docs/exact.md, shrunk to unit scale)."""
    return GaussianMixture.full(
        torch.tensor([0.5, 0.3, 0.2]),
        torch.tensor([[-1.5, 0.0], [1.2, 0.8], [0.4, -1.4]]),
        torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.05, 0.0], [0.0, 0.2]],
                      [[0.2, -0.15], [-0.15, 0.2]]]),
    )  # fmt: skip


def data_log_prob(oracle: Oracle, x: torch.Tensor) -> torch.Tensor:
    """(B,) log p_0(x) of the oracle's mixture itself: alpha = 1, sigma = 0."""
    ones = torch.ones(x.shape[0], dtype=F64)
    return oracle.exact_at(x, ones, 0 * ones).log_prob


def data_score(oracle: Oracle, x: torch.Tensor) -> torch.Tensor:
    """(B, D) grad log p_0(x) of the oracle's mixture itself."""
    ones = torch.ones(x.shape[0], dtype=F64)
    return oracle.exact_at(x, ones, 0 * ones).score


def noised_samples(
    mixture: GaussianMixture, process, t: float, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, x_t), both (n, D) float64: x0 from the mixture, x_t = alpha x0 + sigma noise."""
    x0 = mixture.sample(n, generator).double()
    noise = torch.randn(n, x0.shape[1], generator=generator, dtype=F64)
    return noise, process.marginal(x0, torch.full((n,), t, dtype=F64), noise)
