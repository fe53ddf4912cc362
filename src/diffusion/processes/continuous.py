"""What the continuous-time Gaussian processes share: a training-time distribution (uniform
unless chosen), uniform grids, and the drift and diffusion of their SDE."""

from __future__ import annotations

import torch

from diffusion.processes.base import GaussianProcess
from diffusion.processes.times import check_train_times, draw_times


class ContinuousProcess(GaussianProcess):
    """A Gaussian path defined for every t in [0, 1] (no discrete steps).

    Args:
        prediction: what the network predicts (`diffusion.parametrize`).
        train_times: the distribution of training times on [0, 1] (`diffusion.processes.times`:
            uniform, low-noise or logit-normal), mapped to [t_min, 1].
    """

    #: training times lie in [t_min, 1]: the network is never asked about t ~ 0, where
    #: sigma -> 0 makes eps- and score-type targets ill-posed (Song et al. 2021, App. C).
    t_min: float = 1e-3
    #: sampling steps when none are given.

    def __init__(self, prediction: str | None = None, train_times: str = "uniform") -> None:
        super().__init__(prediction)
        self.train_times = check_train_times(train_times)

    def sample_time(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        u = draw_times(self.train_times, n, generator=generator, device=device)
        return self.t_min + (1 - self.t_min) * u

    def time_grid(self, steps: int | None = None) -> torch.Tensor:
        """`steps` + 1 evenly spaced times from 1 down to 0."""
        steps = self.default_sample_steps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"sampling steps must be >= 1, got {steps}")
        return torch.linspace(1, 0, steps + 1, dtype=torch.float64)
