"""Data sets: toy 2D distributions and small images by name, and a user's point cloud (.npy or
.csv), Gaussian mixture (.json), image array (.npy of 3 or 4 dimensions) or image folder."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from diffusion.data.errors import DataError, user_path
from diffusion.data.files import SUFFIXES, load_point_table, load_points, resample
from diffusion.data.images import (
    Images,
    is_image_array,
    load_digits,
    load_image_array,
    load_image_folder,
)
from diffusion.data.labels import labels_from_text, labels_path, load_labels
from diffusion.data.mixture import GaussianMixture, load_mixture
from diffusion.data.shapes import SHAPES, draw_shapes
from diffusion.data.toy import TOY_DATASETS, TOY_LABELLED, toy_mixture, toy_options

__all__ = [
    "IMAGE_ARRAY",
    "IMAGE_DATASETS",
    "TOY_DATASETS",
    "DataError",
    "Dataset",
    "GaussianMixture",
    "available_datasets",
    "get_dataset",
    "image_dataset",
    "is_image_dataset",
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
        value_range: for images, the (low, high) range of the pixels, which training maps to
            [-1, 1] and samples are clipped to; None for points (standardised instead).
        held_out: real examples kept out of `points` (a finite image set's held-out split,
            `HELD_OUT_SHARE` of it), for the memorisation ratio; else None.
        quantised: whether the values lie on integer levels (the digits' 17 grey levels, uint8
            pixels), which likelihoods dequantise.
        labelled: labelled(n, generator) -> ((n, d) examples, (n,) labels), for a generated
            set whose examples have classes (the shapes, the toy mixtures, the moons): the
            same examples as `sample` from the same generator, with their classes; else None.
        classes: the names of the classes, label k naming classes[k]; () for a set without
            labels.
    """

    name: str
    dim: int
    sample: Callable[[int, torch.Generator | None], torch.Tensor]
    points: torch.Tensor | None = None
    mixture: GaussianMixture | None = None
    shape: tuple[int, ...] = ()
    labels: torch.Tensor | None = None
    value_range: tuple[float, float] | None = None
    held_out: torch.Tensor | None = None
    quantised: bool = False
    labelled: Callable[[int, torch.Generator | None], tuple[torch.Tensor, torch.Tensor]] | None = (
        None
    )
    classes: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        """Whether one example is an image (C, H, W)."""
        return len(self.shape) == 3

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
        if (self.labels is not None or self.labelled is not None) and not self.classes:
            raise ValueError("a labelled data set needs its class names")


#: image sets by name: scikit-learn's 8 x 8 digits, generated shapes of 16 x 16 and 32 x 32.
IMAGE_DATASETS = ("digits", "shapes", "shapes32")
#: the name a run records for images given as an in-memory array (`diffusion.train(array)`).
IMAGE_ARRAY = "<image array>"


def available_datasets() -> list[str]:
    """The names `get_dataset` accepts besides file paths, sorted."""
    return sorted([*TOY_DATASETS, *IMAGE_DATASETS])


def is_image_dataset(spec: str | os.PathLike[str]) -> bool:
    """Whether `spec` names an image set (by name, a folder, or a .npy of 3 or 4 dimensions),
    decided without loading it; False for anything unusable (get_dataset reports that)."""
    spec = os.fspath(spec)
    if spec in IMAGE_DATASETS or spec == IMAGE_ARRAY:
        return True
    if spec in TOY_DATASETS:
        return False
    try:
        path = user_path(spec)
        return path.is_dir() or is_image_array(path)
    except (DataError, OSError):
        return False


#: the share of a finite image set held out of training, to measure memorisation against;
#: at most HELD_OUT_MAX images, and none from a set of fewer than HELD_OUT_MIN_SET.
HELD_OUT_SHARE, HELD_OUT_MAX, HELD_OUT_MIN_SET = 0.15, 1000, 20


def held_out_split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) indices of a finite set of n examples: a fixed permutation (seed 0,
    not the run's seed), so every run on the same set trains on the same images."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    count = 0 if n < HELD_OUT_MIN_SET else min(HELD_OUT_MAX, round(HELD_OUT_SHARE * n))
    return order[count:].sort().values, order[:count].sort().values


def image_dataset(name: str, images: Images) -> Dataset:
    """A finite image set: its images flattened to rows, a held-out split kept aside, fresh
    draws by bootstrap from the rest."""
    n = images.pixels.shape[0]
    rows = images.pixels.reshape(n, -1)  # (N, C*H*W)
    train, held = held_out_split(n)
    points = rows[train]
    labels = images.labels[train] if images.labels is not None else None
    return Dataset(
        name=name, dim=points.shape[1], sample=partial(resample, points), points=points,
        shape=tuple(images.pixels.shape[1:]), labels=labels, value_range=images.value_range,
        held_out=rows[held] if held.numel() else None, quantised=images.quantised,
        classes=images.classes if labels is not None else (),
    )  # fmt: skip


def _labelled_shapes(
    n: int, generator: torch.Generator | None = None, *, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = draw_shapes(n, generator, size)
    return images.reshape(n, -1), labels  # (n, size*size), (n,)


def _draw_flat_shapes(
    n: int, generator: torch.Generator | None = None, *, size: int
) -> torch.Tensor:
    return _labelled_shapes(n, generator, size=size)[0]


def _named_image_dataset(name: str) -> Dataset:
    if name == "digits":
        return image_dataset(name, load_digits())
    size = 32 if name == "shapes32" else 16
    return Dataset(
        name=name, dim=size * size, sample=partial(_draw_flat_shapes, size=size),
        shape=(1, size, size), value_range=(0.0, 1.0),
        labelled=partial(_labelled_shapes, size=size), classes=SHAPES,
    )  # fmt: skip


def _looks_like_path(spec: str) -> bool:
    separators = {os.sep, os.altsep, "/"} - {None}
    return (
        spec.lower().endswith(SUFFIXES)
        or any(s in spec for s in separators)
        or Path(spec).suffix != ""
        or _is_file(spec)
        or _is_dir(spec)
    )


def _is_dir(spec: str) -> bool:
    try:
        return user_path(spec).is_dir()
    except DataError:
        return False


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
    labelled, classes = None, ()
    if name in TOY_LABELLED:
        draw, names = TOY_LABELLED[name]
        labelled, classes = partial(draw, **options), names(**options)
    return Dataset(name=name, dim=2, sample=sample, mixture=toy_mixture(name, **options),
                   labelled=labelled, classes=classes)  # fmt: skip


def get_dataset(spec: str | os.PathLike[str], **options: object) -> Dataset:
    """A toy or image data set by name, or a data set from a file or folder.

    Args:
        spec: a name from `available_datasets()`, a path to a .npy/.csv point cloud, a
            path to a .json Gaussian mixture (`diffusion.data.mixture`), a .npy image array of
            3 or 4 dimensions or a folder of PNG/JPEG images (`diffusion.data.images`). Anything ending in
            .npy/.csv/.json, with a path separator or a file extension, or an existing file is
            taken as a path.
        **options: options of the toy set (see `toy_options(name)`); files take none.

    Returns:
        A `Dataset`; `dataset.sample(n, generator)` gives (n, d) float32 points (images
        flattened: reshape to (n, *dataset.shape)).

    Raises:
        DataError: unknown name, unknown or invalid option, or a bad file (one-line message).
    """
    spec = os.fspath(spec)
    if spec in TOY_DATASETS:  # a registry name wins over a file of the same name
        return _toy_dataset(spec, options)
    if spec in IMAGE_DATASETS:
        if options:
            raise DataError(f"{spec}: takes no options, got {', '.join(options)}")
        return _named_image_dataset(spec)
    if _looks_like_path(spec):
        if options:
            raise DataError(f"{spec}: a file data set takes no options, got {', '.join(options)}")
        path = user_path(spec)
        if path.is_dir():
            return image_dataset(spec, load_image_folder(path))
        if is_image_array(path):
            images = load_image_array(path)
            found = load_labels(path, images.pixels.shape[0])
            if found is not None:
                images = dataclasses.replace(images, labels=found[0], classes=found[1])
            return image_dataset(spec, images)
        if spec.lower().endswith(".json"):
            mixture = load_mixture(spec)
            named = "component" if mixture.classes is None else "class"
            classes = tuple(f"{named} {k}" for k in range(mixture.n_classes))
            return Dataset(name=spec, dim=mixture.dim, sample=mixture.sample, mixture=mixture,
                           labelled=mixture.sample_labelled, classes=classes)  # fmt: skip
        points, column = load_point_table(spec)
        sample = partial(resample, points)
        labels, classes = load_labels(path, points.shape[0]) or (None, ())
        if column is not None:
            if labels is not None:
                raise DataError(f"{spec}: has a label column and a labels file "
                                f"({labels_path(path).name}); keep one")  # fmt: skip
            labels, classes = labels_from_text(column, spec, path.name)
        return Dataset(name=spec, dim=points.shape[1], sample=sample, points=points,
                       labels=labels, classes=classes)  # fmt: skip
    raise DataError(
        f"unknown dataset {spec!r}; choose one of: {', '.join(available_datasets())} "
        "or give a path to a .npy/.csv point cloud, a .json Gaussian mixture, a .npy image "
        "array or a folder of images"
    )
