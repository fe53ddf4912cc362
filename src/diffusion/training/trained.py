"""A trained model ready to sample: the process, the EMA network and the data normaliser."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion.data.normalize import Normalizer
from diffusion.processes import GaussianProcess
from diffusion.processes.guidance import GuidedDenoiser
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
    shape: tuple[int, ...] = ()  # one example: (dim,) for points (the default), (C, H, W)

    def __post_init__(self) -> None:
        if not self.shape:
            self.shape = (self.dim,)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def value_range(self) -> tuple[float, float]:
        """The pixel range of an image run: what [-1, 1] maps back to."""
        shift, scale = float(self.normalizer.shift[0]), float(self.normalizer.scale[0])
        return shift - scale, shift + scale

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """Samples (n, dim) of the model into data space: images are clipped to [-1, 1] (the
        pixel range) first."""
        return self.normalizer.denormalize(x, clip=self.is_image)

    @classmethod
    def from_result(cls, result: TrainResult) -> TrainedModel:
        """The EMA network of a finished training run, ready to sample."""
        return cls(
            config=result.config, process=result.process, model=result.ema,
            normalizer=result.normalizer, dim=result.data.shape[1],
            shape=tuple(result.dataset.shape),
        )  # fmt: skip

    @property
    def classes(self) -> int:
        """The number of classes of a conditional run; 0 for an unconditional one."""
        return self.config.classes or 0

    def denoiser(
        self,
        device: torch.device | str = "cpu",
        *,
        label: torch.Tensor | None = None,
        guidance: float = 1.0,
        interval: tuple[float, float] | None = None,
    ):
        """The network on `device`, in eval mode, seen through the process: unconditional when
        `label` is None, else for classes `label` (B,) with guidance scale w = `guidance`
        (`diffusion.processes.guidance`)."""
        model = self.model.to(device).eval()
        if label is None:
            return self.process.denoiser(model)
        if not self.classes:
            raise ValueError("this run is not conditional (it was trained without labels): "
                             "it cannot sample a class")  # fmt: skip
        return GuidedDenoiser(model, self.process, self.process.prediction, label.to(device),
                              guidance, self.classes, interval)  # fmt: skip

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
        label: torch.Tensor | None = None,
        guidance: float = 1.0,
        interval: tuple[float, float] | None = None,
        **options: object,
    ) -> SampleResult:
        """n samples in data space, (n, dim) (images flattened: reshape to (n, *shape)); the
        callback still sees the normalised state; settings left out are the run's own.
        `label` (n,): the class of each sample, with guidance scale `guidance` over the noise
        levels `interval` (see `denoiser`); None: unconditional."""
        result = sample(
            self.denoiser(device, label=label, guidance=guidance, interval=interval),
            (n, self.dim),
            sampler=sampler or self.config.sampler,
            steps=steps or self.config.sample_steps,
            grid=grid or self.config.sample_grid,
            generator=generator,
            device=device,
            callback=callback,
            **options,
        )
        x = self.to_data(result.x)
        return SampleResult(x=x, nfe=result.nfe, times=result.times)
