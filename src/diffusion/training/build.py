"""What a `TrainConfig` names, built: the process, the network, the training points, the device.

Every process-specific setting is read from the process class's own `settings` (config field
-> constructor argument), so nothing here branches on a process's name.
"""

from __future__ import annotations

import hashlib

import torch

from diffusion.data import Dataset
from diffusion.models import TimeMLP
from diffusion.processes import PROCESSES, GaussianProcess
from diffusion.streams import stream, stream_seed
from diffusion.training.config import TrainConfig
from diffusion.utils import default_device


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when present, else CPU."""
    return default_device() if name == "auto" else torch.device(name)


def build_process(config: TrainConfig) -> GaussianProcess:
    """The forward process named by the config, with the settings its class takes."""
    cls = PROCESSES[config.process]
    options = {
        argument: getattr(config, setting)
        for setting, argument in cls.settings.items()
        if getattr(config, setting) is not None
    }
    if len(cls.couplings) > 1:
        options["coupling"] = config.coupling
    return cls(prediction=config.prediction, **options)


def build_model(config: TrainConfig, dim: int, seed: int | None = None) -> TimeMLP:
    """The network, initialised from `seed` (default: the run's "model" stream) without
    touching the global RNG."""
    return TimeMLP(
        dim,
        width=config.width,
        depth=config.depth,
        embedding="sinusoidal",
        embedding_scale=float(config.diffusion_steps),
        seed=stream_seed(config.seed, "model") if seed is None else seed,
    )


def training_points(config: TrainConfig, dataset: Dataset) -> torch.Tensor:
    """The fixed training set: a file's rows, or `n_train` draws from a toy set."""
    if dataset.points is not None:
        return dataset.points
    return dataset.sample(config.n_train, stream(config.seed, "data"))


def data_digest(points: torch.Tensor) -> str:
    """sha256 of the training points, so a resume can tell that the data changed."""
    x = points.detach().cpu().to(torch.float32).contiguous()
    return hashlib.sha256(x.numpy().tobytes() + str(tuple(x.shape)).encode()).hexdigest()
