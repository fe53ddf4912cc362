"""What every section shares: the quality score, timed training with a quality curve, the
machine description, and a timer."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion.data import Dataset
from diffusion.measure.metrics import SlicedWassersteinRatio
from diffusion.samplers import sample
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
from diffusion.utils import make_generator

N_SAMPLES = 10_000  # points per scored sample set (as `diffusion evaluate`)
SCORE_SEED = 123  # the data draws and directions of every scorer
SAMPLE_SEED = 1000  # sample set i is drawn from seed SAMPLE_SEED + i


def machine() -> dict[str, object]:
    """The machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


class Scorer:
    """The sliced-Wasserstein ratio to the data floor, median over `sets` sample sets.

    One scorer per data set: its data draws, directions and floor are fixed, so every row
    scored by it is comparable (see `diffusion.measure.metrics.SlicedWassersteinRatio`).
    """

    def __init__(self, dataset: Dataset, sets: int = 2, n: int = N_SAMPLES) -> None:
        self.sets, self.n = sets, n
        self.ratio = SlicedWassersteinRatio(dataset.sample, n, make_generator(SCORE_SEED))

    def __call__(self, draw: Callable[[int, torch.Generator], torch.Tensor]) -> float:
        """`draw(n, generator)` returns n samples in data space."""
        values = []
        for i in range(self.sets):
            x = draw(self.n, make_generator(SAMPLE_SEED + i)).cpu()
            values.append(self.ratio(x) if torch.isfinite(x).all() else float("inf"))
        return statistics.median(values)


def model_draw(trainer: Trainer, model: torch.nn.Module, sampler: str, steps: int, grid: str):
    """A `draw` for Scorer: samples of `model` (a trainer's network) in data space, with the
    run's sample_order where `sampler` is the run's own (`sample` alone would give a named
    sampler its own order)."""
    options = trainer.config.sampler_options(sampler)

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        x = sample(
            trainer.process.denoiser(model),
            (n, trainer.dim),
            sampler=sampler,
            steps=steps,
            grid=grid,
            generator=generator,
            device=trainer.device,
            **options,
        ).x
        return trainer.normalizer.denormalize(x)

    return draw


@dataclass
class Curve:
    """Quality against training time: (step, training seconds, ratio) at each evaluation."""

    points: list[tuple[int, float, float]]

    def time_to(self, bar: float) -> float | None:
        """Training seconds at the first evaluation with ratio <= bar (None: never)."""
        return next((s for _, s, r in self.points if r <= bar), None)

    def to_json(self) -> list[list[float]]:
        return [[step, round(s, 2), round(r, 3)] for step, s, r in self.points]


def train_with_curve(
    config: TrainConfig, scorer: Scorer, evaluations: int = 10, dataset: Dataset | None = None
) -> tuple[Trainer, Curve]:
    """Train `config` and score its EMA model (default sampler) `evaluations` times, evenly
    spaced in steps. The clock runs only inside the training loop (its GIF frames included,
    as in `diffusion train`); scoring is not counted."""
    trainer = Trainer(config, dataset)
    every = max(1, config.train_steps // evaluations)
    points = []
    while trainer.step < config.train_steps:
        trainer.run(progress=False, until=min(config.train_steps, trainer.step + every))
        draw = model_draw(
            trainer, trainer.ema, config.sampler, config.sample_steps, config.sample_grid
        )
        points.append((trainer.step, trainer.seconds, scorer(draw)))
    return trainer, Curve(points)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
