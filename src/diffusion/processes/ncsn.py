"""NCSN: noise-conditional score networks (Song & Ermon 2019), the score-based ancestor.

L noise levels in a geometric sequence sigma_L = sigma_min < ... < sigma_1 = sigma_max;
the network learns the score of the data blurred at each level (denoising score matching
weighted by lambda(sigma) = sigma^2, Eq. 6), and samples come from annealed Langevin
dynamics through the levels (Algorithm 1; `diffusion.samplers.annealed_langevin`).

Here it is the VE path (alpha = 1) restricted to L discrete times: level l (1..L, from the
least noisy) sits at t = l / L with sigma(l / L) = sigma_min (sigma_max / sigma_min)^((l-1)/(L-1)),
and sigma(0) = 0. The default target "eps" is the sigma^2-weighted score loss with the score
parametrised as s = -eps / sigma (NCSNv2's s(x, sigma) = s(x) / sigma, Song & Ermon 2020,
Technique 3); "score" trains the raw score with the same weight.
"""

from __future__ import annotations

import math

import torch

from diffusion.processes.base import random_level_times
from diffusion.processes.sde import VE


class NCSN(VE):
    """L geometric noise levels, trained level by level, sampled by annealed Langevin."""

    default_prediction = "eps"
    default_sampler = "langevin"  # one step per level (not VE's few-step setting)
    default_sample_grid = "uniform"
    default_sample_order = None
    other_sample_steps = None
    settings = {"sigma_min": "sigma_min", "sigma_max": "sigma_max"}  # noqa: RUF012

    def __init__(
        self,
        # 0.05, not VE's 0.01: Langevin steps of size 0.2 sigma^2 at levels far below the
        # data's own spread do not equilibrate in 100 steps, and left moons too thick (SW
        # ratio 1.37 on moons with 0.01, 1.13 with 0.05; benchmarks/families.py).
        sigma_min: float = 0.05,
        sigma_max: float = 10.0,
        levels: int = 10,
        prediction: str | None = None,
    ) -> None:
        super().__init__(sigma_min, sigma_max, prediction)
        if not (isinstance(levels, int) and levels >= 2):
            raise ValueError(f"NCSN needs at least 2 noise levels, got {levels}")
        self.levels = levels
        self.default_sample_steps = levels  # one step per noise level

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        exponent = (t * self.levels - 1) / (self.levels - 1)
        level = self.sigma_min * (self.sigma_max / self.sigma_min) ** exponent
        return torch.where(t > 0, level, torch.zeros_like(level))

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        rate = math.log(self.sigma_max / self.sigma_min) * self.levels / (self.levels - 1)
        return self.sigma(t) * rate

    def noise_levels(self) -> torch.Tensor:
        """sigma_1 > ... > sigma_L (float64)."""
        return self.sigma(self.level_times().flip(0))

    def level_times(self) -> torch.Tensor:
        """The times l / L of the levels, l = 1..L (float64, increasing)."""
        return torch.arange(1, self.levels + 1, dtype=torch.float64) / self.levels

    def sample_time(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """A uniformly drawn level per point (Song & Ermon 2019, Eq. 6), as its time l / L."""
        return random_level_times(self.levels, n, generator, device)

    def time_grid(self, steps: int | None = None) -> torch.Tensor:
        """`steps` of the L levels, evenly spread from the noisiest (t = 1) down, then t = 0."""
        steps = self.levels if steps is None else int(steps)
        if not 1 <= steps <= self.levels:
            raise ValueError(
                f"sampling steps must be in 1..{self.levels} for this NCSN, got {steps}"
            )
        index = torch.linspace(self.levels, 1, steps, dtype=torch.float64).round()
        return torch.cat([index / self.levels, torch.zeros(1, dtype=torch.float64)])
