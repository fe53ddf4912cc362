"""What a `TrainConfig` names, built: the process, the network, the training points, the device.

Every process-specific setting is read from the process class's own `settings` (config field
-> constructor argument), so nothing here branches on a process's name.
"""

from __future__ import annotations

import hashlib
import math

import torch

from diffusion.data import Dataset
from diffusion.errors import ConfigError
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
    side = shape[1] if len(shape) == 3 else 0  # the image side, for the U-Nets' defaults
    if config.model == "diffusers-unet":
        from diffusion.models.diffusers_unet import build_diffusers_unet

        try:
            return build_diffusers_unet(
                shape, steps=config.diffusion_steps, channels=config.unet_channels,
                mults=unet_mults(config, side), blocks=config.unet_blocks,
                attention=unet_attention(config, side), dropout=config.dropout,
                classes=config.classes or 0, seed=seed,
            )  # fmt: skip
        except ImportError as exc:
            raise ValueError(str(exc)) from None
    if config.model == "unet":
        return UNet(
            shape, channels=config.unet_channels, mults=unet_mults(config, side),
            blocks=config.unet_blocks, attention=unet_attention(config, side),
            dropout=config.dropout, embedding_scale=float(config.diffusion_steps), seed=seed,
            classes=config.classes or 0,
        )  # fmt: skip
    return TimeMLP(
        math.prod(shape),
        width=config.width,
        depth=config.depth,
        embedding="sinusoidal",
        embedding_scale=float(config.diffusion_steps),
        seed=seed,
        classes=config.classes or 0,
    )


def training_points(
    config: TrainConfig, dataset: Dataset
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed training set and its labels (None for an unconditional run): a file's rows,
    or `n_train` draws from a generated set (with their classes: the same points)."""
    conditional = wants_labels(config, dataset)
    if dataset.points is not None:
        return dataset.points, dataset.labels if conditional else None
    generator = stream(config.seed, "data")
    if conditional:
        return dataset.labelled(config.n_train, generator)
    return dataset.sample(config.n_train, generator), None


def wants_labels(config: TrainConfig, dataset: Dataset) -> bool:
    """Whether the run trains on the data's labels (`labels`: auto, on, off); ConfigError
    for labels on without any."""
    has = dataset.labels is not None or dataset.labelled is not None
    if config.labels == "on" and not has:
        raise ConfigError(f"labels is on but the data set {dataset.name} has no class labels")
    return has and config.labels != "off"


def resolve_classes(
    config: TrainConfig, dataset: Dataset, conditional: bool, labels: torch.Tensor | None = None
) -> None:
    """Set `classes` from the data (0 for an unconditional run); ConfigError when a given
    value does not match the data's classes, or one of the run's `labels` lies beyond them."""
    found = len(dataset.classes) if conditional else 0
    if labels is not None and labels.numel() and int(labels.max()) >= found:
        raise ConfigError(f"label {int(labels.max())} is beyond the data's {found} classes")
    if config.classes is None:
        config.classes = found
    elif config.classes != found:
        raise ConfigError(f"classes is {config.classes} but the data have "
                          f"{found or 'no'} classes (labels {config.labels})")  # fmt: skip


def data_digest(points: torch.Tensor) -> str:
    """sha256 of the training points, so a resume can tell that the data changed."""
    x = points.detach().cpu().to(torch.float32).contiguous()
    return hashlib.sha256(x.numpy().tobytes() + str(tuple(x.shape)).encode()).hexdigest()
