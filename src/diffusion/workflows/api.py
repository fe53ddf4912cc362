"""The Python API in a few lines: train on a named set or an array, sample, evaluate, load.

    import diffusion

    run = diffusion.train("moons", train_steps=1000)      # or diffusion.train(my_points)
    x = run.sample(5000)                                  # (5000, 2) in the data's units
    print(run.evaluate().sliced_wasserstein.ratio)        # 1.0 is the statistical floor
    run = diffusion.train("moons", out="runs/moons")      # ... writing a run directory
    run = diffusion.load("runs/moons")                    # a run trained by `diffusion train`

Settings are `TrainConfig`'s (`diffusion train --help` lists them); those left out are the
recipe's defaults, the same from Python as from the command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffusion.data import IMAGE_ARRAY, Dataset, get_dataset, image_dataset
from diffusion.data.files import points_from_array, resample
from diffusion.data.images import images_from_array
from diffusion.errors import ConfigError
from diffusion.io.runs import load_model
from diffusion.measure.metrics import MetricsReport
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
from diffusion.training.trained import TrainedModel
from diffusion.utils import default_device, make_generator
from diffusion.workflows.run import evaluate as evaluate_samples
from diffusion.workflows.run import run_training

#: the `dataset` recorded for a run trained on an in-memory array.
ARRAY = "<array>"


@dataclass
class Run:
    """A trained model, where it was written (if anywhere) and what it was trained on."""

    model: TrainedModel
    dir: Path | None = None  # the run directory, when the run was written to disk
    data: Dataset | None = None  # the data trained on (None: load it from the config's name)
    metrics: dict | None = None  # the run's final metrics, when it was written to disk

    @property
    def config(self) -> TrainConfig:
        return self.model.config

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        sampler: str | None = None,
        sample_steps: int | None = None,
        sample_grid: str | None = None,
        device: torch.device | str | None = None,
        **options: object,
    ) -> torch.Tensor:
        """n samples in the data's units on the CPU, (n, d) for points and (n, C, H, W) for
        images; settings left out are the run's.

        `options` are the sampler's own (e.g. ``eta`` for DDIM); `seed` fixes the draw, the
        same as ``diffusion sample --seed``.
        """
        device = device or default_device()
        result = self.model.sample(
            n, sampler=sampler, steps=sample_steps, grid=sample_grid,
            generator=make_generator(seed, device), device=device, **options,
        )  # fmt: skip
        return result.x.cpu().reshape(n, *self.model.shape)

    def evaluate(
        self,
        n: int | None = None,
        *,
        seed: int = 1,
        sampler: str | None = None,
        sample_steps: int | None = None,
        sample_grid: str | None = None,
        **options: object,
    ) -> MetricsReport:
        """Fresh samples against fresh data: each metric's value, statistical floor and ratio
        (1.0 means as close as two draws of the data itself). n: the run's eval_samples."""
        data = self.data or _dataset_of(self.config)
        result = evaluate_samples(
            self.model, data, n=n or self.config.eval_samples, seed=seed, sampler=sampler,
            steps=sample_steps, grid=sample_grid, device=default_device(), **options,
        )  # fmt: skip
        return result.metrics


def train(
    data: str | Path | np.ndarray | torch.Tensor = "swissroll",
    *,
    out: str | Path | None = None,
    progress: bool = True,
    **settings: object,
) -> Run:
    """Train a model, in memory or (with `out`) into a run directory like `diffusion train`.

    Args:
        data: a data set name (`diffusion.data.available_datasets()`), a path to a .npy/.csv
            point cloud or .json mixture, or an (n, d) array of points.
        out: write the run directory here (pictures, metrics, model, checkpoints); None trains
            in memory only.
        progress: show a progress bar.
        **settings: any `TrainConfig` setting, e.g. ``process="edm"``, ``train_steps=500``.

    Returns:
        A `Run`: ``run.sample(n)``, ``run.evaluate()``, ``run.model``.
    """
    if "dataset" in settings:
        raise ConfigError("give the data as the first argument of train, not as dataset=")
    if isinstance(data, np.ndarray | torch.Tensor):
        dataset = array_dataset(data)
        config = TrainConfig.from_dict({**settings, "dataset": dataset.name})
    else:
        config = TrainConfig.from_dict({**settings, "dataset": str(data)})
        dataset = get_dataset(config.dataset)
    if out is not None:
        metrics = run_training(config, out, progress=progress, dataset=dataset)
        return Run(model=load_model(out), dir=Path(out), data=dataset, metrics=metrics)
    result = Trainer(config, dataset).run(progress=progress)
    return Run(model=TrainedModel.from_result(result), data=dataset)


def load(run_dir: str | Path) -> Run:
    """A finished run written by `diffusion train` (or `train(out=...)`)."""
    model = load_model(run_dir)
    metrics_path = Path(run_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return Run(model=model, dir=Path(run_dir), metrics=metrics)


def array_dataset(points: np.ndarray | torch.Tensor) -> Dataset:
    """An in-memory (n, d) point cloud, or images (n, H, W), (n, H, W, C) or (n, C, H, W),
    as a data set: fresh draws are bootstrap resamples."""
    array = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
    array = np.asarray(array)
    if array.ndim in (3, 4):
        return image_dataset(IMAGE_ARRAY, images_from_array(array, "the array"))
    tensor = points_from_array(array, "the array")
    return Dataset(
        name=ARRAY, dim=tensor.shape[1], sample=lambda n, g=None: resample(tensor, n, g),
        points=tensor,
    )  # fmt: skip


def _dataset_of(config: TrainConfig) -> Dataset:
    if config.dataset in (ARRAY, IMAGE_ARRAY):
        raise ConfigError(
            "this run was trained on an in-memory array, which was not saved with it: "
            "evaluate it right after training (run.evaluate()), or train on a file"
        )
    return get_dataset(config.dataset)
