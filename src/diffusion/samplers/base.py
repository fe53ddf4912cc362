"""What every sampler shares: the callback payload and the walk over a time grid.

A sampler is a plain function with one signature::

    sampler(denoiser, x, times, *, generator=None, callback=None, **options) -> x

`denoiser(x_t, t)` returns a `Prediction` (x0 and eps); `denoiser.process` gives alpha(t) and
sigma(t). `times` is a decreasing grid from the terminal time down to 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplerStep:
    """Passed to a sampler's callback after every step (for animations and diagnostics)."""

    index: int  # step number, 0 for the first step
    t: float  # the time just left
    s: float  # the time reached (x is at time s)
    x: torch.Tensor  # (B, ...) the state at time s
    x0: torch.Tensor  # (B, ...) the denoiser's estimate of the data made at time t


Callback = Callable[[SamplerStep], None]


@dataclass(frozen=True)
class StepCoefficients:
    """alpha and sigma at the two ends of one step t -> s (s < t), as float64 scalars."""

    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float

    @property
    def posterior_variance(self) -> float:
        """Variance of q(x_s | x_t, x0) (Eq. 7 of Ho et al. 2020; Kingma et al. 2021, Eq. 33)."""
        return self.transition_variance * self.sigma_s**2 / self.sigma_t**2

    @property
    def transition_variance(self) -> float:
        """Variance of q(x_t | x_s): sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2 (beta_t for one DDPM step)."""
        return self.sigma_t**2 - (self.alpha_t / self.alpha_s) ** 2 * self.sigma_s**2


def walk(
    process, times: torch.Tensor
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, StepCoefficients]]:
    """Yield (index, t, s, coefficients) for each consecutive pair of a decreasing grid."""
    grid = times.to(torch.float64).cpu()
    alphas, sigmas = process.alpha(grid), process.sigma(grid)
    for i in range(len(grid) - 1):
        coef = StepCoefficients(
            alpha_t=alphas[i].item(),
            sigma_t=sigmas[i].item(),
            alpha_s=alphas[i + 1].item(),
            sigma_s=sigmas[i + 1].item(),
        )
        yield i, times[i], times[i + 1], coef


def alpha_at_start(process, times: torch.Tensor) -> float:
    """alpha at the first time of the grid (0 where the path starts from pure noise)."""
    return float(process.alpha(times[:1].to(torch.float64).cpu())[0])


def noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x, from the given generator."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
