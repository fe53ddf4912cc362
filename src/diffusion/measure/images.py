"""Metrics for images, each with its floor: a Fréchet distance in a small classifier's features,
and a memorisation ratio.

**Fréchet distance (FD).** Fit a Gaussian to the features of two image sets and take the
Fréchet (2-Wasserstein) distance between the Gaussians (Heusel et al. 2017, "GANs trained by a
two time-scale update rule", Eq. 6): |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). FID
uses the features of an Inception network trained on ImageNet, which cannot be downloaded
here and means little for 8 x 8 digits; the features here are those of a small convolutional
classifier the toolkit trains on the data set's own labels (`fit_feature_net`), so this is
*not* FID and its values are not comparable with published FIDs, only with its floor. A set
without labels gets the features of the same network left at its seeded random initialisation
(random features, which still separate image statistics; say so when reporting).

The FD of two finite samples is biased upwards by their size, so its floor is the FD between
two disjoint halves of real images of the same size as the samples compared; the ratio is ~1
when the samples are as close to the data as the data is to itself.

**Memorisation ratio.** The mean distance from each sample to its nearest training image, over
the same mean for held-out real images (Yoon et al. 2023 and Carlini et al. 2023 measure copying
by nearest-neighbour distances the same way). A model that copies its training images scores
near 0; one that generalises as well as fresh data, about 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.models.mlp import seeded

FEATURES = 64  # the classifier's feature width
FIT_STEPS = 600  # classifier training steps (Adam, batch 128): ~10 s for the digits on 2 cores
FLOOR_REPEATS = 25  # random draws whose median FD gives value and floor (each FD takes ~1 ms)


class FeatureNet(nn.Module):
    """A small CNN classifier: three 3x3 convolutions (the last two with stride 2), global
    average pooling to FEATURES numbers (the features), then a linear layer to the classes."""

    def __init__(self, channels: int, classes: int, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.body = nn.Sequential(
                nn.Conv2d(channels, 32, 3, padding=1), nn.SiLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(64, FEATURES, 3, stride=2, padding=1), nn.SiLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )  # fmt: skip
            self.head = nn.Linear(FEATURES, max(classes, 1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) pixels in [-1, 1] -> (n, FEATURES)."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def fit_feature_net(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    seed: int = 0,
    steps: int = FIT_STEPS,
    batch_size: int = 128,
) -> FeatureNet:
    """The feature network for a data set: trained to classify `images` (N, C, H, W) in
    [-1, 1] by `labels` (N,), or left at its random initialisation when there are none."""
    classes = int(labels.max()) + 1 if labels is not None else 1
    net = FeatureNet(images.shape[1], classes, seed=seed)
    if labels is None:
        return net.eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        index = torch.randint(images.shape[0], (batch_size,), generator=generator)
        loss = F.cross_entropy(net(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of `images` the classifier labels correctly."""
    return float((net(images).argmax(1) == labels).double().mean())


@torch.no_grad()
def embed(net: FeatureNet, images: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """(n, FEATURES) float64 features of images (n, C, H, W) in [-1, 1]."""
    parts = [net.features(images[i : i + batch]) for i in range(0, images.shape[0], batch)]
    return torch.cat(parts).double()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (n, F) and b (m, F).

    Tr (S_a S_b)^(1/2) is the sum of the square roots of the eigenvalues of the symmetric
    matrix S_a^(1/2) S_b S_a^(1/2), which has the same eigenvalues as S_a S_b.
    """
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T  # S_a^(1/2)
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle
    return float(distance.clamp(min=0))


@dataclass(frozen=True)
class Ratio:
    """A distance next to its floor: ratio = value / floor."""

    value: float
    floor: float
    ratio: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def frechet_ratio(
    net: FeatureNet,
    samples: torch.Tensor,
    real: torch.Tensor,
    generator: torch.Generator,
    repeats: int = FLOOR_REPEATS,
) -> Ratio:
    """FD of `samples` (n, C, H, W) to real images, next to the FD between two disjoint halves
    of `real` (M, C, H, W), every set of the same size n' = min(n, M // 2); medians over
    `repeats` draws, each a fresh split of the real images and a fresh subset of the samples
    (one FD at n' = 900 varies by about +-20% from draw to draw; the median of 25, by a few
    per cent). Pixels in [-1, 1]."""
    n = min(samples.shape[0], real.shape[0] // 2)
    if n < 2:
        raise ValueError(f"need at least 4 real images and 2 samples, got {real.shape[0]}, "
                         f"{samples.shape[0]}")  # fmt: skip
    fake = embed(net, samples)
    pool = embed(net, real)
    values, floors = [], []
    for _ in range(repeats):
        order = torch.randperm(pool.shape[0], generator=generator)
        half_a, half_b = pool[order[:n]], pool[order[n : 2 * n]]
        subset = torch.randperm(fake.shape[0], generator=generator)[:n]
        values.append(frechet_distance(fake[subset], half_a))
        floors.append(frechet_distance(half_b, half_a))
    value = float(torch.tensor(values).median())
    floor = float(torch.tensor(floors).median())
    return Ratio(value=value, floor=floor, ratio=value / max(floor, 1e-12), n=n)


def nearest_distance(x: torch.Tensor, reference: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """(n,) Euclidean distance from each row of x (n, D) to its nearest row of reference."""
    reference = reference.flatten(1).float()
    out = []
    for i in range(0, x.shape[0], batch):
        chunk = x[i : i + batch].flatten(1).float()
        out.append(torch.cdist(chunk, reference).amin(1))
    return torch.cat(out)


def memorisation_ratio(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor) -> Ratio:
    """Mean distance of samples to their nearest training image over the same for held-out
    real images (both sets cut to the same size); ~0 for a copier, ~1 for fresh data."""
    n = min(samples.shape[0], held_out.shape[0])
    value = float(nearest_distance(samples[:n], train).mean())
    floor = float(nearest_distance(held_out[:n], train).mean())
    return Ratio(value=value, floor=floor, ratio=value / max(floor, 1e-12), n=n)
