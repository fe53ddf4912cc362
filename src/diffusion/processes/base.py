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

import torch
import torch.nn.functional as F

from diffusion.parametrize import Denoiser, check_target, target_from
from diffusion.processes.coupling import couple
from diffusion.utils import expand_like


class GaussianProcess(ABC):
    """A forward process with Gaussian marginals x_t = alpha(t) x0 + sigma(t) noise."""

    # What is particular to a process, stated once: `TrainConfig`, the CLI and `sample` all
    # read these attributes (nothing else branches on a process's name).

    #: what the network predicts unless told: "eps", "x0", "v", "velocity" or "score"
    #: (`diffusion.parametrize`). v is well conditioned at both ends of every path here.
    default_prediction: str = "v"
    #: the sampler `diffusion.samplers.sample` uses when none is named, with its steps, time
    #: grid and order (for the samplers that take one): the family's measured setting
    #: (`sampling_defaults`; docs/performance.md, "Few-step defaults").
    default_sampler: str = "heun"
    default_sample_steps: int = 50
    default_sample_grid: str = "uniform"
    default_sample_order: int | None = None
    #: steps for any other sampler named without steps (None: `default_sample_steps`).
    other_sample_steps: int | None = None
    #: True when every marginal is Gaussian (samplers that need Gaussian posteriors check it).
    gaussian: bool = True
    #: False where the SDE drift alpha'/alpha is infinite at t = 1 (flow matching's path).
    finite_drift: bool = True
    #: how training pairs data with noise (`diffusion.processes.coupling`); anything but
    #: "independent" leaves x_t given x0 non-Gaussian, so only the ODE is learned.
    coupling: str = "independent"
    #: the couplings this process can train with, the first its default.
    couplings: tuple[str, ...] = ("independent",)
    #: the number of discrete steps T of a discrete-time process; None when time is continuous.
    discrete_steps: int | None = None
    #: scale the network input by c_in = 1 / sqrt(alpha^2 + sigma^2) (False where it is 1).
    scale_input: bool = True
    #: True where sigma_max should be the largest distance between training examples (Song &
    #: Ermon 2020, Technique 1): on images, a run leaving sigma_max unset measures it.
    sigma_max_from_data: bool = False
    #: the `TrainConfig` settings this process takes, each mapped to its constructor argument
    #: (prediction and coupling besides, which every process takes).
    settings: dict[str, str] = {}  # noqa: RUF012 (read-only, overridden per class)

    def __init__(self, prediction: str | None = None) -> None:
        self.prediction = check_target(prediction or self.default_prediction)

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

    def sampling_defaults(self, sampler: str | None = None) -> tuple[str, int, str, dict]:
        """(sampler, steps, grid, options) for settings left out: with no sampler named, the
        default sampler with its steps, grid and order, measured together; a sampler named
        (the default one too) on `other_sample_steps` of the uniform grid, with its own
        options, so that naming a sampler gives that sampler as it is."""
        if sampler is None:
            order = self.default_sample_order
            options = {} if order is None else {"order": order}
            return (
                self.default_sampler,
                self.default_sample_steps,
                self.default_sample_grid,
                options,
            )
        return sampler, self.other_sample_steps or self.default_sample_steps, "uniform", {}

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha / dt (by automatic differentiation unless a process writes it out)."""
        return _derivative(self.alpha, t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma / dt (by automatic differentiation unless a process writes it out)."""
        return _derivative(self.sigma, t)

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple:
        """(alpha, sigma, d_alpha, d_sigma) at t (B,), shaped to broadcast against `like`;
        the derivatives are None unless the prediction target needs them."""
        alpha = expand_like(self.alpha(t), like)
        sigma = expand_like(self.sigma(t), like)
        if self.prediction != "velocity":
            return alpha, sigma, None, None
        return alpha, sigma, expand_like(self.d_alpha(t), like), expand_like(self.d_sigma(t), like)

    def drift(self, t: torch.Tensor) -> torch.Tensor:
        """f(t) of the forward SDE dx = f(t) x dt + g(t) dw with these marginals:
        f = alpha' / alpha (Kingma et al. 2021, App. A; Song et al. 2021, Eq. 5)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.d_alpha(t) / self.alpha(t)

    def d_variance(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma^2 / dt: 2 sigma sigma' unless a process writes it out (VP and DDPM do,
        since their sigma' is infinite at t = 0 while sigma^2 has a finite slope there)."""
        return 2 * self.sigma(t) * self.d_sigma(t)

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        """g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2 (VP: beta(t); VE: d sigma^2 / dt)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.d_variance(t) - 2 * self.drift(t) * self.sigma(t) ** 2

    def model_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network sees: x_t scaled to unit variance, c_in = 1 / sqrt(alpha^2 + sigma^2)
        for standardised data (Karras et al. 2022, Table 1, with sigma_data = 1)."""
        if not self.scale_input:
            return x_t
        return x_t * expand_like((self.alpha(t) ** 2 + self.sigma(t) ** 2).rsqrt(), x_t)

    def sigma_ratio(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t) / alpha(t): the noise level of the equivalent variance-exploding process
        (x_t / alpha = x0 + (sigma / alpha) eps); increasing in t, infinite where alpha = 0."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma(t) / self.alpha(t)

    def time_at_sigma_ratio(self, ratio: float) -> float:
        """The time t in [0, 1] where sigma(t) / alpha(t) = ratio (bisection; clamped)."""
        lo, hi = 0.0, 1.0
        if ratio <= self.sigma_ratio(torch.tensor(lo)).item():
            return lo
        if ratio >= self.sigma_ratio(torch.tensor(hi)).item():
            return hi
        for _ in range(60):  # 2^-60: below float64 resolution on [0, 1]
            mid = 0.5 * (lo + hi)
            if self.sigma_ratio(torch.tensor(mid, dtype=torch.float64)).item() < ratio:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def variance(self, t: torch.Tensor) -> torch.Tensor:
        """The noise variance sigma(t)^2 of the marginal at time t."""
        return self.sigma(t) ** 2

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha(t)^2 / sigma(t)^2 (Kingma et al. 2021, Eq. 2)."""
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def marginal(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = alpha(t) x0 + sigma(t) noise, with t of shape (B,)."""
        return expand_like(self.alpha(t), x0) * x0 + expand_like(self.sigma(t), x0) * noise

    def noise(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The noise of the path, x_t = alpha x0 + sigma noise: standard normal here."""
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def prior(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A draw from the prior at the terminal time: sigma(1) noise (N(0, sigma(1)^2 I) for a
        Gaussian path)."""
        noise = self.noise(shape, generator=generator, device=device)
        return self.sigma(torch.ones((), dtype=torch.float64)).item() * noise

    def loss(
        self,
        model: torch.nn.Module,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        cond: dict[str, torch.Tensor] | None = None,
        groups: torch.Tensor | None = None,
        shard: slice | None = None,
    ) -> torch.Tensor:
        """Mean squared error on the prediction target (the "simple" loss of Ho et al. 2020, Eq. 14).

        Args:
            model: network called as ``model(x_t, t, **cond)`` with t of shape (B,).
            x0: clean data (B, ...).
            t: times (B,); drawn from `sample_time` when None.
            generator: source of the time and noise draws.
            cond: conditioning passed to the network as keyword arguments (e.g. class labels).
            groups: (B,) classes within which a coupling pairs data and noise (`couple`).
            shard: the rows of the batch this process trains on, when several do
                (`diffusion.training.distributed`): times, noise and coupling are drawn for
                the whole batch, as one process would draw them, and only these rows reach
                the network, so the draws do not depend on the number of processes.

        Returns:
            The scalar loss, averaged over the batch (or the shard) and the data dimensions.
        """
        if t is None:
            t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        noise = self.noise(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        noise = couple(self.coupling, x0, noise, generator, groups)
        x_t = self.marginal(x0, t, noise)
        coefficients = self.coefficients(t, x0)
        target = target_from(self.prediction, x0, noise, *coefficients)
        sigma = coefficients[1]
        if shard is not None:
            x_t, t, target, sigma = x_t[shard], t[shard], target[shard], sigma[shard]
            cond = {name: value[shard] for name, value in (cond or {}).items()}
        output = model(self.model_input(x_t, t), t.to(x0.dtype), **(cond or {}))
        return self.target_loss(output, target, sigma)

    def target_loss(
        self, output: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        """The mean squared error between a prediction of this process's target and the true
        target; a score is weighted by sigma^2 (Song & Ermon 2019, Eq. 6, lambda = sigma^2)."""
        if self.prediction == "score":
            return F.mse_loss(sigma * output, sigma * target)
        return F.mse_loss(output, target)

    def denoiser(self, model: torch.nn.Module, **cond: torch.Tensor) -> Denoiser:
        """The network seen through this process (predictions as x0 and eps); `cond` is passed
        to every call of the network."""
        return Denoiser(model, self, self.prediction, cond)


def random_level_times(
    count: int, n: int, generator: torch.Generator | None, device: torch.device | None
) -> torch.Tensor:
    """n times k / count with k uniform in 1..count (float32): one discrete level per point."""
    k = torch.randint(1, count + 1, (n,), generator=generator, device=device)
    return k.to(torch.float32) / count


def _derivative(fn: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    """Elementwise d fn / dt by autograd, in float64, returned in t's dtype."""
    t = torch.as_tensor(t)
    with torch.enable_grad():
        u = t.detach().to(torch.float64).requires_grad_(True)
        value = fn(u)
        if not value.requires_grad:  # a constant
            return torch.zeros_like(u).to(t.dtype if t.is_floating_point() else torch.float64)
        (grad,) = torch.autograd.grad(value.sum(), u)
    return grad.to(t.dtype if t.is_floating_point() else torch.float64)
