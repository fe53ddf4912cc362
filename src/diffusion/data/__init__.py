"""Data sets: toy 2D distributions by name, and a user's point cloud from a .npy or .csv file."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from diffusion.data.errors import DataError, user_path
from diffusion.data.files import SUFFIXES, load_points, resample
from diffusion.data.mixture import GaussianMixture, load_mixture
from diffusion.data.toy import TOY_DATASETS, toy_mixture, toy_options

__all__ = [
    "TOY_DATASETS",
    "DataError",
    "Dataset",
    "GaussianMixture",
    "available_datasets",
    "get_dataset",
    "load_mixture",
    "load_points",
    "resample",
    "toy_options",
]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is not a bool
class Dataset:
    """A data set to draw training points from.

    Attributes:
        name: the registry name, or the path for a file-backed set.
        dim: data dimension d.
        sample: sample(n, generator=None) -> (n, d) float32 fresh draws; for a file-backed set
            these are bootstrap resamples of `points` (rows drawn with replacement).
        points: the full (N, d) point cloud of a file-backed set, else None.
        mixture: the exact law of a Gaussian-mixture set (a .json file, `gaussians`,
            `eight_gaussians`), else None; `diffusion.measure.oracle` turns it into exact scores.
        shape: the shape of one example: (d,) for points (the default), (C, H, W) for images;
            `dim` is the number of its entries.
        labels: (N,) integer class of each row of `points`, for a set that has them, else None.
    """

    name: str
    dim: int
    sample: Callable[[int, torch.Generator | None], torch.Tensor]
    points: torch.Tensor | None = None
    mixture: GaussianMixture | None = None
    shape: tuple[int, ...] = ()
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.shape:  # points: one example is a vector of dim numbers
            object.__setattr__(self, "shape", (self.dim,))
        if math.prod(self.shape) != self.dim:
            raise ValueError(f"a data set of shape {self.shape} has {math.prod(self.shape)} "
                             f"entries per example, not dim = {self.dim}")  # fmt: skip
        if self.labels is not None and (
            self.points is None or self.labels.shape != (self.points.shape[0],)
        ):
            raise ValueError("labels need one entry per row of points")


def available_datasets() -> list[str]:
    """The names `get_dataset` accepts besides file paths, sorted."""
    return sorted(TOY_DATASETS)


def _looks_like_path(spec: str) -> bool:
    separators = {os.sep, os.altsep, "/"} - {None}
    return (
        spec.lower().endswith(SUFFIXES)
        or any(s in spec for s in separators)
        or Path(spec).suffix != ""
        or _is_file(spec)
    )


def _is_file(spec: str) -> bool:
    """Whether `spec` names an existing file; False for a name no file can have."""
    try:
        return user_path(spec).is_file()
    except DataError:
        return False


def _toy_dataset(name: str, options: dict[str, object]) -> Dataset:
    accepted = toy_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(
            f"{name}: unknown option {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'no options'}"
        )
    sample = partial(TOY_DATASETS[name], **options)
    try:  # a one-point draw from a private generator checks the option values now
        sample(1, torch.Generator().manual_seed(0))
    except DataError as error:
        raise DataError(f"{name}: {error}") from None
    return Dataset(name=name, dim=2, sample=sample, mixture=toy_mixture(name, **options))


def get_dataset(spec: str | os.PathLike[str], **options: object) -> Dataset:
    """A toy data set by name, or a point cloud from a file.

    Args:
        spec: a name from `available_datasets()`, a path to a .npy/.csv point cloud, or a
            path to a .json Gaussian mixture (`diffusion.data.mixture`). Anything ending in
            .npy/.csv/.json, with a path separator or a file extension, or an existing file is
            taken as a path.
        **options: options of the toy set (see `toy_options(name)`); files take none.

    Returns:
        A `Dataset`; `dataset.sample(n, generator)` gives (n, d) float32 points.

    Raises:
        DataError: unknown name, unknown or invalid option, or a bad file (one-line message).
    """
    spec = os.fspath(spec)
    if spec in TOY_DATASETS:  # a registry name wins over a file of the same name
        return _toy_dataset(spec, options)
    if _looks_like_path(spec):
        if options:
            raise DataError(f"{spec}: a file data set takes no options, got {', '.join(options)}")
        if spec.lower().endswith(".json"):
            mixture = load_mixture(spec)
            return Dataset(name=spec, dim=mixture.dim, sample=mixture.sample, mixture=mixture)
        points = load_points(spec)
        sample = partial(resample, points)
        return Dataset(name=spec, dim=points.shape[1], sample=sample, points=points)
    raise DataError(
        f"unknown dataset {spec!r}; choose one of: {', '.join(available_datasets())} "
        "or give a path to a .npy/.csv point cloud or a .json Gaussian mixture"
    )
