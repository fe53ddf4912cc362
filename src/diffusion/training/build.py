"""What a `TrainConfig` names, built: the process, the network, the training points, the device.

Every process-specific setting is read from the process class's own `settings` (config field
-> constructor argument), so nothing here branches on a process's name.
"""

from __future__ import annotations

import hashlib
import math

import torch

from diffusion.data import Dataset
from diffusion.models import TimeMLP, UNet
from diffusion.processes import PROCESSES, GaussianProcess
from diffusion.streams import stream, stream_seed
from diffusion.training.config import TrainConfig, int_list
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


def unet_mults(config: TrainConfig, side: int) -> tuple[int, ...]:
    """The U-Net's channel multipliers: the config's, else by image side (see its help)."""
    if config.unet_mults is not None:
        return int_list(config.unet_mults)
    return (1, 2) if side <= 8 else (1, 2, 2) if side <= 16 else (1, 2, 2, 2)


def unet_attention(config: TrainConfig, side: int) -> tuple[int, ...]:
    """The sides with self-attention: the config's, else every side from 8 down below `side`."""
    if config.unet_attention is not None:
        return int_list(config.unet_attention)
    return tuple(s for s in (8, 4, 2, 1) if s < side)


#: rows of the training set searched for the largest pairwise distance.
MAX_DISTANCE_ROWS = 4096


def largest_distance(x: torch.Tensor) -> float:
    """The largest Euclidean distance between two rows of x (n, d), over its first
    MAX_DISTANCE_ROWS rows: sigma_max by Song & Ermon 2020, Technique 1."""
    rows = x[:MAX_DISTANCE_ROWS].double()
    return float(torch.cdist(rows, rows).max())


def resolve_data_settings(config: TrainConfig, dataset: Dataset, x: torch.Tensor) -> None:
    """Settings an image run measures on its own normalised training images `x` (n, d), when
    left unset: sigma_max for the processes whose `sigma_max_from_data` says so. Sets them on
    `config` (so the saved config rebuilds the same process)."""
    cls = PROCESSES[config.process]
    if dataset.is_image and cls.sigma_max_from_data and config.sigma_max is None:
        config.sigma_max = round(largest_distance(x), 2)


def build_model(
    config: TrainConfig, shape: int | tuple[int, ...], seed: int | None = None
) -> torch.nn.Module:
    """The network for examples of `shape` ((d,) or d for points, (C, H, W) for images),
    initialised from `seed` (default: the run's "model" stream) without touching the global
    RNG. ValueError when the config's model cannot take that shape."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    seed = stream_seed(config.seed, "model") if seed is None else seed
    if config.model == "unet":
        side = shape[1] if len(shape) == 3 else 0
        return UNet(
            shape, channels=config.unet_channels, mults=unet_mults(config, side),
            blocks=config.unet_blocks, attention=unet_attention(config, side),
            dropout=config.dropout, embedding_scale=float(config.diffusion_steps), seed=seed,
        )  # fmt: skip
    return TimeMLP(
        math.prod(shape),
        width=config.width,
        depth=config.depth,
        embedding="sinusoidal",
        embedding_scale=float(config.diffusion_steps),
        seed=seed,
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
