"""The image metrics of a run's samples: the Fréchet ratio in the data set's own classifier
features and the memorisation ratio (`diffusion.measure.images`), with the classifier cached.

The classifier depends only on the data set's training images and labels, so it is trained
once per data set and cached by their digest: in memory for the process, and on disk under
``$DIFFUSION_CACHE`` (default ``~/.cache/diffusion-toolkit``) as a checksummed safetensors file
(never a pickle). A cache that cannot be written is skipped, not an error.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from diffusion.data import Dataset
from diffusion.data.normalize import Normalizer
from diffusion.errors import CheckpointError
from diffusion.io.tensorfile import read_tensor_file, write_tensor_file
from diffusion.measure.images import (
    FIT_STEPS,
    FeatureNet,
    fit_feature_net,
    frechet_ratio,
    memorisation_ratio,
)

#: labelled images drawn to train the classifier of a generated set (the shapes).
GENERATED_FIT_IMAGES = 20_000
#: the classifier's own seed: a property of the data set, not of a run.
FIT_SEED = 0
_MEMORY: dict[str, FeatureNet] = {}


def cache_dir() -> Path:
    """Where classifiers are cached: $DIFFUSION_CACHE, else ~/.cache/diffusion-toolkit."""
    return Path(os.environ.get("DIFFUSION_CACHE") or Path.home() / ".cache" / "diffusion-toolkit")


def to_unit_range(x: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """(n, C*H*W) rows in data units -> (n, C, H, W) pixels in [-1, 1], by the map training
    uses (`Normalizer.for_range`)."""
    normalizer = Normalizer.for_range(*dataset.value_range, dataset.dim)
    return normalizer.normalize(x).reshape(-1, *dataset.shape)


def _training_images(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images and labels the classifier of `dataset` learns from (rows, data units)."""
    if dataset.labelled is not None:
        return dataset.labelled(GENERATED_FIT_IMAGES, torch.Generator().manual_seed(FIT_SEED))
    return dataset.points, dataset.labels


def feature_net(dataset: Dataset) -> FeatureNet:
    """The data set's classifier: from the cache, or trained now (and cached)."""
    rows, labels = _training_images(dataset)
    images = to_unit_range(rows, dataset).float()
    h = hashlib.sha256(images.numpy().tobytes() + str(tuple(images.shape)).encode())
    if labels is not None:
        h.update(labels.numpy().tobytes())
    h.update(f"{FIT_STEPS}:{FIT_SEED}".encode())
    key = h.hexdigest()[:32]
    if key in _MEMORY:
        return _MEMORY[key]
    classes = int(labels.max()) + 1 if labels is not None else 1
    path = cache_dir() / f"features-{key}.safetensors"
    net = FeatureNet(images.shape[1], classes, seed=FIT_SEED)
    try:
        tensors, _ = read_tensor_file(path)
        net.load_state_dict(tensors, strict=True)
        net.eval().requires_grad_(False)
    except (CheckpointError, RuntimeError, OSError):  # absent or unusable: train it
        net = fit_feature_net(images, labels, seed=FIT_SEED)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tensor_file(path, dict(net.state_dict()), {"kind": "feature-net", "key": key})
        except OSError:
            pass  # a read-only home: train again next time
    _MEMORY[key] = net
    return net


def image_metrics(
    samples: torch.Tensor,
    dataset: Dataset,
    generator: torch.Generator,
    train: torch.Tensor | None = None,
) -> dict:
    """{"frechet": ..., "memorisation": ...} for samples (n, C*H*W) in data units.

    The memorisation ratio needs the training images and held-out ones: a finite set's own
    split, or for a generated set its `train` images (the run's draws) against fresh draws.

    Samples of a quantised data set (the digits' 17 grey levels, uint8 arrays) are rounded to
    its levels first, as the real images are and as FID scores samples written as 8-bit
    images: otherwise the score would count the off-level values no picture of them shows.
    """
    net = feature_net(dataset)
    if dataset.quantised:
        samples = samples.round()
    fake = to_unit_range(samples, dataset)
    if dataset.points is not None:
        pool = dataset.points if dataset.held_out is None else torch.cat(
            [dataset.points, dataset.held_out]
        )  # fmt: skip
    else:
        pool = dataset.sample(2 * samples.shape[0], generator)
    metrics = {"frechet": frechet_ratio(net, fake, to_unit_range(pool, dataset), generator)}
    if dataset.points is not None and dataset.held_out is not None:
        metrics["memorisation"] = memorisation_ratio(samples, dataset.points, dataset.held_out)
    elif dataset.points is None and train is not None:
        fresh = dataset.sample(samples.shape[0], generator)
        metrics["memorisation"] = memorisation_ratio(samples, train, fresh)
    return {name: ratio.to_dict() for name, ratio in metrics.items()}
