"""A trained model ready to sample: the process, the EMA network and the data normaliser."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion.data.normalize import Normalizer
from diffusion.processes import GaussianProcess
from diffusion.samplers import SampleResult, sample
from diffusion.training.config import TrainConfig
from diffusion.training.loop import TrainResult


@dataclass
class TrainedModel:
    """A model ready to sample: process, EMA network and the data normaliser."""

    config: TrainConfig
    process: GaussianProcess
    model: torch.nn.Module
    normalizer: Normalizer
    dim: int

    @classmethod
    def from_result(cls, result: TrainResult) -> TrainedModel:
        """The EMA network of a finished training run, ready to sample."""
        return cls(
            config=result.config, process=result.process, model=result.ema,
            normalizer=result.normalizer, dim=result.data.shape[1],
        )  # fmt: skip

    def denoiser(self, device: torch.device | str = "cpu", **cond: torch.Tensor):
        """The network on `device`, in eval mode, seen through the process."""
        return self.process.denoiser(self.model.to(device).eval(), **cond)

    def sample(
        self,
        n: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        grid: str | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        callback=None,
        **options: object,
    ) -> SampleResult:
        """n samples in data space (the callback still sees the normalised state); settings
        left out are the run's own."""
        result = sample(
            self.denoiser(device),
            (n, self.dim),
            sampler=sampler or self.config.sampler,
            steps=steps or self.config.sample_steps,
            grid=grid or self.config.sample_grid,
            generator=generator,
            device=device,
            callback=callback,
            **options,
        )
        x = self.normalizer.denormalize(result.x)
        return SampleResult(x=x, nfe=result.nfe, times=result.times)
