"""The process interface: what every diffusion technique gives.

A technique (a) gives the noise variance at a time, (b) defines a training loss for data x0
at a time t, and (c) samples new data. Time is continuous, t in [0, 1], with t = 0 the data
and t = 1 the noise. A Gaussian path writes the marginal as

    x_t = alpha(t) * x0 + sigma(t) * noise,    noise ~ N(0, I).

The forward process says what noise is added; the time grid and the sampler (in
`diffusion.samplers`) say how we walk back. The process never owns the network: `loss` and
`sample` take it as an argument, and the network always sees ``(x_t, t)`` with t of shape (B,).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffusion.parametrize import Denoiser, check_target, target_from
from diffusion.utils import expand_like


@dataclass(frozen=True)
class SampleResult:
    """Samples and what they cost."""

    x: torch.Tensor  # (n, ...) samples at t = 0
    nfe: int  # network evaluations used
    times: torch.Tensor  # (K+1,) the time grid walked, from 1 down to 0


class GaussianProcess(ABC):
    """A forward process with Gaussian marginals x_t = alpha(t) x0 + sigma(t) noise."""

    #: what the network predicts: "eps", "x0" or "v" (see `diffusion.parametrize`).
    prediction: str = "eps"
    #: the sampler `sample` uses when none is named.
    default_sampler: str = "ancestral"

    def __init__(self, prediction: str = "eps") -> None:
        self.prediction = check_target(prediction)

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal coefficient alpha(t), elementwise in t."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise standard deviation sigma(t), elementwise in t."""

    @abstractmethod
    def sample_time(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Training times (n,) drawn from the process's training distribution."""

    @abstractmethod
    def time_grid(self, steps: int | None = None) -> torch.Tensor:
        """A decreasing grid of `steps` + 1 times from the terminal time down to 0."""

    def variance(self, t: torch.Tensor) -> torch.Tensor:
        """The noise variance sigma(t)^2 of the marginal at time t."""
        return self.sigma(t) ** 2

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha(t)^2 / sigma(t)^2 (Kingma et al. 2021, Eq. 2)."""
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def marginal(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = alpha(t) x0 + sigma(t) noise, with t of shape (B,)."""
        return expand_like(self.alpha(t), x0) * x0 + expand_like(self.sigma(t), x0) * noise

    def prior(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A draw from the prior at the terminal time: N(0, sigma(1)^2 I)."""
        noise = torch.randn(shape, generator=generator, device=device)
        return self.sigma(torch.ones((), dtype=torch.float64)).item() * noise

    def loss(
        self,
        model: torch.nn.Module,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean squared error on the prediction target (the "simple" loss of Ho et al. 2020, Eq. 14).

        Args:
            model: network called as ``model(x_t, t)`` with t of shape (B,).
            x0: clean data (B, ...).
            t: times (B,); drawn from `sample_time` when None.
            generator: source of the time and noise draws.

        Returns:
            The scalar loss, averaged over the batch and the data dimensions.
        """
        if t is None:
            t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.marginal(x0, t, noise)
        alpha = expand_like(self.alpha(t), x0)
        sigma = expand_like(self.sigma(t), x0)
        target = target_from(self.prediction, x0, noise, alpha, sigma)
        return F.mse_loss(model(x_t, t.to(x0.dtype)), target)

    def denoiser(self, model: torch.nn.Module) -> Denoiser:
        """The network seen through this process (predictions as x0 and eps)."""
        return Denoiser(model, self, self.prediction)

    def sample(
        self,
        model: torch.nn.Module,
        shape: tuple[int, ...],
        *,
        sampler: str | None = None,
        steps: int | None = None,
        times: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        callback: Callable | None = None,
        **options: object,
    ) -> SampleResult:
        """Draw samples of any shape by walking a time grid back from the prior.

        Args:
            model: the trained network (put it in eval mode first).
            shape: output shape, e.g. (n, d) for n points in d dimensions.
            sampler: a name from `diffusion.samplers.SAMPLERS`; the process default when None.
            steps: number of sampling steps (ignored when `times` is given).
            times: an explicit decreasing time grid ending at 0 (e.g. a subsequence of steps).
            generator: source of the prior and sampler noise.
            device: where to sample.
            callback: called with a `diffusion.samplers.SamplerStep` after every step.
            options: sampler options (e.g. ``eta`` for DDIM, ``variance`` for ancestral).

        Returns:
            A `SampleResult` with the samples, the NFE and the grid used.
        """
        from diffusion.samplers import get_sampler

        run = get_sampler(sampler or self.default_sampler)
        grid = self.time_grid(steps) if times is None else self.check_grid(times)
        x = self.prior(shape, generator=generator, device=device)
        denoiser = self.denoiser(model)
        x = run(denoiser, x, grid.to(device), generator=generator, callback=callback, **options)
        return SampleResult(x=x, nfe=denoiser.nfe, times=grid)

    def check_grid(self, times: torch.Tensor) -> torch.Tensor:
        """Validate a user time grid: 1-D, strictly decreasing, from t = 1 down to t = 0."""
        times = torch.as_tensor(times, dtype=torch.float64)
        if times.ndim != 1 or times.numel() < 2:
            raise ValueError("a time grid needs at least two times, e.g. [1.0, 0.0]")
        if not bool((times[1:] < times[:-1]).all()):
            raise ValueError(
                "a time grid must be strictly decreasing (t = 1 is noise, t = 0 is data)"
            )
        if times[0] != 1 or times[-1] != 0:
            raise ValueError(
                "a time grid must start at t = 1 (where the prior is) and end at t = 0"
            )
        return times
