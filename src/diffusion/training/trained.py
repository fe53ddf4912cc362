"""A trained model ready to sample: the process, the EMA network and the data normaliser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from diffusion.data.normalize import Normalizer
from diffusion.processes import GaussianProcess
from diffusion.processes.guidance import GuidedDenoiser
from diffusion.samplers import SampleResult, sample
from diffusion.samplers.tuning import grid_key
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
    #: grids tuned for this model by `diffusion tune-grid`, by `grid_key` (a run's grids.json)
    tuned_grids: Mapping[str, torch.Tensor] = field(default_factory=dict)

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
        levels `interval` (see `denoiser`); None: unconditional. `grid` "tuned": the grid
        tuned for this sampler, its options and steps (`tuned_grid`)."""
        sampler, run_steps, run_grid, options = self.sampling(sampler, options)
        steps, grid = steps or run_steps, grid or run_grid
        times = self.tuned_grid(sampler, steps, options) if grid == "tuned" else None
        result = sample(
            self.denoiser(device, label=label, guidance=guidance, interval=interval),
            (n, self.dim),
            sampler=sampler,
            steps=steps,
            times=times,
            grid="uniform" if times is not None else grid,
            generator=generator,
            device=device,
            callback=callback,
            **options,
        )
        x = self.to_data(result.x)
        return SampleResult(x=x, nfe=result.nfe, times=result.times)

    def sampling(
        self, sampler: str | None = None, options: dict | None = None
    ) -> tuple[str, int, str, dict]:
        """(sampler, steps, grid, options) for settings left out: the run's own steps, grid
        and order for its own sampler (`sampler` None or the run's); for another sampler what
        the process gives it when named (`process.sampling_defaults`)."""
        if sampler is None or sampler == self.config.sampler:
            sampler = self.config.sampler
            options = self.config.sampler_options(sampler, options)
            return sampler, self.config.sample_steps, self.config.sample_grid, options
        _, steps, grid, _ = self.process.sampling_defaults(sampler)
        return sampler, steps, grid, dict(options or {})

    def tuned_grid(self, sampler: str, steps: int, options: dict | None = None) -> torch.Tensor:
        """The grid tuned for `sampler` with `options` and `steps` (`diffusion tune-grid`);
        ValueError (one line, naming the command that tunes it) when there is none."""
        key = grid_key(sampler, steps, options)
        if key in self.tuned_grids:
            return self.tuned_grids[key]
        run = getattr(self.tuned_grids, "run_dir", None)
        flags = command_flags(options or {})
        where = f"in {run}/grids.json" if run is not None else "for this model"
        command = f"diffusion tune-grid --run {run or 'RUN'} --steps {steps} --sampler {sampler}"
        saved = f" (it has: {'; '.join(self.tuned_grids)})" if len(self.tuned_grids) else ""
        raise ValueError(f"no tuned grid for {sampler} with {steps} steps ({key}) {where}"
                         f"{saved}: tune one with `{command}{flags}`")  # fmt: skip


def command_flags(options: dict) -> str:
    """Sampler options as the command line spells them: " --order 3 --corrector off"."""

    def shown(value: object) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return "".join(f" --{k.replace('_', '-')} {shown(v)}" for k, v in options.items())
