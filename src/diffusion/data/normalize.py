"""Standardisation of data to zero mean and unit variance per dimension, and back; for images,
the pixels' range mapped to [-1, 1] and back.

Diffusion priors are N(0, I): training on standardised data makes one recipe work for a
user's point cloud at any scale. Images keep one affine map for every pixel instead (per-pixel
statistics would blow up the always-black border of the digits), [low, high] -> [-1, 1], as
Ho et al. 2020 (Sec. 3.3) scale pixels. The map is stored with the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion.data.errors import DataError


@dataclass(frozen=True)
class Normalizer:
    """x_normalised = (x - shift) / scale, per dimension."""

    shift: torch.Tensor  # (d,)
    scale: torch.Tensor  # (d,)

    @classmethod
    def fit(cls, x: torch.Tensor) -> Normalizer:
        """Mean and standard deviation of x (n, d); a constant column keeps scale 1."""
        shift = x.mean(dim=0)
        scale = x.std(dim=0)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
        return cls(shift=shift, scale=scale)

    @classmethod
    def for_range(cls, low: float, high: float, dim: int) -> Normalizer:
        """The map of [low, high] onto [-1, 1], in every one of `dim` coordinates."""
        shift = torch.full((dim,), (low + high) / 2, dtype=torch.float32)
        scale = torch.full((dim,), (high - low) / 2, dtype=torch.float32)
        return cls(shift=shift, scale=scale)

    @classmethod
    def for_dataset(cls, dataset, x: torch.Tensor) -> Normalizer:
        """For an image set, its pixel range onto [-1, 1]; for points, `fit(x)`."""
        if dataset.value_range is not None:
            return cls.for_range(*dataset.value_range, x.shape[1])
        return cls.fit(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.shift.shape[-1]
        if x.ndim == 0 or x.shape[-1] != dim:  # e.g. a run's data file, now of another shape
            raise DataError(f"data of shape {tuple(x.shape)} do not fit a model of dimension {dim}")
        return (x - self.shift.to(x)) / self.scale.to(x)

    def denormalize(self, x: torch.Tensor, *, clip: bool = False) -> torch.Tensor:
        """Back to the data's units; `clip` first clips to [-1, 1] (an image's pixel range)."""
        if clip:
            x = x.clamp(-1, 1)
        return x * self.scale.to(x) + self.shift.to(x)
