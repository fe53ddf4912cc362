"""Score SDEs of Song et al. 2021: variance preserving (VP), sub-VP and variance exploding (VE).

Each is a Gaussian path x_t = alpha(t) x0 + sigma(t) eps (Song et al. 2021, Eq. 29-34 and
App. B). Their drift f(t) and squared diffusion g(t)^2, and so the reverse SDE and the
probability-flow ODE, follow from alpha and sigma (`GaussianProcess.drift`,
`GaussianProcess.diffusion_squared`). DDPM with T steps and betas beta_i is the VP SDE
discretised with beta(t) = T beta_{tT} (Song et al. 2021, Sec. 3.4 and App. B).
"""

from __future__ import annotations

import math

import torch

from diffusion.processes.base import GaussianProcess
from diffusion.processes.continuous import ContinuousProcess


def _check_range(name: str, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(f"{name} needs 0 < min < max, got {low} and {high}")


class VP(ContinuousProcess):
    """Variance preserving SDE: dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear in t.

    alpha(t) = exp(-t^2 (beta_max - beta_min) / 4 - t beta_min / 2) (Song et al. 2021, Eq. 33),
    sigma(t) = sqrt(1 - alpha(t)^2).
    """

    # Few-step default (docs/performance.md, "Few-step defaults"): DEIS-3 on the Karras grid
    # reached the accurate solve's SW ratio (within 10%) at 15 evaluations with the exact
    # score of a random mixture, and on the trained swiss roll; DPM-Solver++ took 50.
    default_sampler = "deis"
    default_sample_steps = 15
    default_sample_grid = "karras"
    default_sample_order = 3
    other_sample_steps = 50
    scale_input = False  # alpha^2 + sigma^2 = 1
    settings = {"train_times": "train_times"}  # noqa: RUF012

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        prediction: str | None = None,
        train_times: str = "uniform",
    ) -> None:
        super().__init__(prediction, train_times)
        _check_range("beta", beta_min, beta_max)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.log_alpha(t).exp()

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(2 * self.log_alpha(t))).clamp_min(0).sqrt()

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return 0.5 * self.beta(t) * self.alpha(t) ** 2 / self.sigma(t)

    def d_variance(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma^2/dt = -2 alpha alpha' (sigma^2 = 1 - alpha^2), finite at t = 0."""
        t = torch.as_tensor(t)
        return -2 * self.alpha(t) * self.d_alpha(t)


class SubVP(VP):
    """Sub-VP SDE (Song et al. 2021, Eq. 34): the VP alpha(t), sigma(t) = 1 - alpha(t)^2.

    Its variance stays below the VP one at every t, which gave better likelihoods.
    """

    scale_input = True  # alpha^2 + sigma^2 < 1 in between

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(2 * self.log_alpha(t))

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return self.beta(t) * self.alpha(t) ** 2

    def d_variance(self, t: torch.Tensor) -> torch.Tensor:
        """2 sigma sigma', the general form (not VP's -2 alpha alpha': here sigma = 1 - alpha^2)."""
        return GaussianProcess.d_variance(self, torch.as_tensor(t))


class VE(ContinuousProcess):
    """Variance exploding SDE: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t for
    t > 0 (Song et al. 2021, Eq. 30-31), and sigma(0) = 0: the grid's last step denoises.

    sigma_max should be about the largest distance between data points (Song & Ermon 2020,
    Technique 1); the data are standardised, so 10 covers the toy sets. Image runs measure it
    on their training images when it is left unset (`sigma_max_from_data`).
    """

    # Few-step default, as VP's (docs/performance.md): Heun took 50 steps (99 evaluations).
    default_sampler = "deis"
    default_sample_steps = 15
    default_sample_grid = "karras"
    default_sample_order = 3
    other_sample_steps = 50
    sigma_max_from_data = True
    settings = {"sigma_min": "sigma_min", "sigma_max": "sigma_max", "train_times": "train_times"}  # noqa: RUF012

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 10.0,
        prediction: str | None = None,
        train_times: str = "uniform",
    ) -> None:
        super().__init__(prediction, train_times)
        _check_range("sigma", sigma_min, sigma_max)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_min = 0.0  # sigma(t) >= sigma_min > 0 for every t > 0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        level = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return torch.where(t > 0, level, torch.zeros_like(level))

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(torch.as_tensor(t))

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t) * math.log(self.sigma_max / self.sigma_min)
