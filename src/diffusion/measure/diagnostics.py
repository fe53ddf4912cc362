"""Where is a trained model wrong? Measurements against an exact reference.

The reference is the exact oracle of the data law when the data set is a Gaussian mixture
(`diffusion.measure.oracle`), else the exact oracle of the training set's empirical law (every
training point a zero-variance component: the denoiser of a model that memorises). All
functions work in the process's (standardised) coordinates unless they say otherwise.

The reference is the field of the Gaussian path, where noise is independent of the data, and
the measurements draw noise that way. A network trained with a coupling (minibatch optimal
transport) learned another, straighter field with the same end points: against this
reference its error includes that difference, which is not a failure to learn.

- `error_by_time`: the training loss of the model and of the reference (the irreducible part)
  and the model's noise-prediction error against the reference, per time bin with its
  log-SNR: which noise levels the network has not learned.
- `nfe_curve`: sample quality against NFE for the model and for the reference with the same
  sampler and grid. The reference's curve is discretisation error alone; the gap to the
  model's is what learning left (Karras et al. 2022 separate the two the same way).
- `prior_mismatch`: KL(q_1 || prior) between the terminal marginal and the prior sampling
  starts from, by Monte Carlo with the exact log q_1, and its closed-form upper bound
  sum_k w_k KL(N_k || prior) (convexity of KL).
- `memorisation`: distances of samples to their nearest training point, beside fresh data's.
- `density_grid` and `field_frames`: the model's density (probability-flow likelihood) and
  its score field at several noise levels over a 2-D grid, beside the reference's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import torch

from diffusion.data import Dataset, GaussianMixture
from diffusion.measure.likelihood import pf_ode_nll, prior_log_prob, standard_error
from diffusion.streams import stream
from diffusion.utils import make_generator


@dataclass(frozen=True)
class TimeErrors:
    """Per time bin (all lists of equal length)."""

    t: list[float]  # bin centres
    log_snr: list[float]  # log(alpha^2 / sigma^2) at the centres
    model_loss: list[float]  # the process's training loss of the model
    reference_loss: list[float]  # the same loss of the exact reference (the irreducible part)
    eps_error: list[float]  # E ||eps_model - eps_exact||^2 / D


@torch.no_grad()
def error_by_time(trained, exact, x0: torch.Tensor, *, bins: int = 24, seed: int = 0) -> TimeErrors:
    """Loss and noise-prediction error per time bin, on data x0 (n, d) in data coordinates.

    Each bin draws one time per point uniformly inside the bin and fresh noise, independent
    of x0 (never coupled: the reference's path).
    """
    process = trained.process
    z = trained.normalizer.normalize(x0.float())  # (n, d)
    model_denoiser, exact_denoiser = trained.denoiser(), exact.denoiser()
    generator = make_generator(seed)
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    edges[0] = min(1e-3, float(edges[1]) / 2)  # t = 0 has no noise to predict
    out: dict[str, list[float]] = {k: [] for k in TimeErrors.__dataclass_fields__}
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        t = lo + (hi - lo) * torch.rand(z.shape[0], generator=generator, dtype=torch.float64)
        noise = torch.randn(z.shape, generator=generator)
        x_t = process.marginal(z, t.float(), noise)
        preds = [denoiser(x_t, t.float()) for denoiser in (model_denoiser, exact_denoiser)]
        losses = [_target_loss(process, pred, x_t, t, z, noise) for pred in preds]
        centre = torch.tensor((lo + hi) / 2, dtype=torch.float64)
        out["t"].append(float(centre))
        out["log_snr"].append(float(2 * (process.alpha(centre) / process.sigma(centre)).log()))
        out["model_loss"].append(losses[0])
        out["reference_loss"].append(losses[1])
        out["eps_error"].append(float((preds[0].eps - preds[1].eps).pow(2).mean()))
    return TimeErrors(**out)


def _target_loss(process, pred, x_t, t, z, noise) -> float:
    """The process's training loss of a prediction: its target from (x0_hat, eps_hat) against
    the true target from (z, noise)."""
    from diffusion.parametrize import target_from

    coefficients = process.coefficients(t, x_t)
    want = target_from(process.prediction, z, noise, *coefficients)
    got = target_from(process.prediction, pred.x0, pred.eps, *coefficients)
    return float(process.target_loss(got, want, coefficients[1]))


@dataclass(frozen=True)
class NFECurve:
    """SW ratio to the data floor against NFE, for the model and the exact reference."""

    sampler: str
    grid: str
    steps: list[int]
    nfe: list[int]
    model: list[float]
    reference: list[float]


def nfe_curve(
    trained, exact, dataset: Dataset, *, steps: list[int], n: int = 4000,
    seed: int = 1, sampler: str | None = None, grid: str | None = None,
) -> NFECurve:  # fmt: skip
    """Quality against NFE with the run's sampler, for the model and the reference: the SW
    ratio of `compare_to_data`, against one set of data draws and one floor for all."""
    from diffusion.measure.metrics import SlicedWassersteinRatio

    sampler, _, run_grid, _ = trained.sampling(sampler)
    grid = grid or run_grid
    score = SlicedWassersteinRatio(dataset.sample, n, stream(seed, "metrics"))
    rows: dict[str, list] = {"steps": [], "nfe": [], "model": [], "reference": []}
    for k in steps:
        for key, model in (("model", trained), ("reference", exact)):
            generator = stream(seed, "eval")  # the same prior draw for both
            result = model.sample(n, sampler=sampler, steps=k, grid=grid, generator=generator)
            rows[key].append(score(result.x.cpu()))
        rows["steps"].append(k)
        rows["nfe"].append(result.nfe)
    return NFECurve(sampler=sampler, grid=grid, **rows)


@dataclass(frozen=True)
class PriorMismatch:
    """KL(q_1 || prior) in nats: a Monte Carlo estimate and a closed-form upper bound."""

    kl: float
    stderr: float
    upper_bound: float
    n: int


def prior_mismatch(exact, *, n: int = 100_000, seed: int = 0) -> PriorMismatch:
    """How far the terminal marginal q_1 is from the prior N(0, sigma(1)^2 I)."""
    process, mixture = exact.process, exact.oracle.mixture
    generator = make_generator(seed)
    one = torch.ones((), dtype=torch.float64)
    alpha, sigma = float(process.alpha(one)), float(process.sigma(one))
    x0 = mixture.sample(n, generator).double()
    x1 = alpha * x0 + sigma * torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    log_ratio = exact.oracle.log_prob(x1, 1.0) - prior_log_prob(process, x1)  # (n,)
    # KL(N(a m, a^2 C + s^2 I) || N(0, s^2 I)) per component (Gaussian KL in closed form).
    var = alpha**2 * mixture.eigenvalues + sigma**2  # (K, D)
    ratio = var / sigma**2
    mean_sq = (alpha * mixture.means).pow(2).sum(1) / sigma**2
    kl_k = 0.5 * (ratio.sum(1) + mean_sq - mixture.dim - ratio.log().sum(1))
    return PriorMismatch(
        kl=float(log_ratio.mean()), stderr=standard_error(log_ratio),
        upper_bound=float(mixture.weights @ kl_k), n=n,
    )  # fmt: skip


@dataclass(frozen=True)
class Memorisation:
    """Nearest-training-point distances (data coordinates)."""

    samples: torch.Tensor  # (n,) of model samples
    fresh: torch.Tensor  # (n,) of fresh data draws
    median_ratio: float  # median(samples) / median(fresh): << 1 means copying


def nearest_distances(x: torch.Tensor, points: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """(n,) Euclidean distance of each row of x to its nearest row of `points`."""
    points = points.double()
    parts = [torch.cdist(x[i : i + chunk].double(), points).min(1).values
             for i in range(0, x.shape[0], chunk)]  # fmt: skip
    return torch.cat(parts)


def memorisation(samples: torch.Tensor, fresh: torch.Tensor, train: torch.Tensor) -> Memorisation:
    """How close samples sit to the training set, against fresh data's closeness."""
    d_samples = nearest_distances(samples, train)
    d_fresh = nearest_distances(fresh, train)
    ratio = float(d_samples.median() / d_fresh.median().clamp_min(1e-300))
    return Memorisation(samples=d_samples, fresh=d_fresh, median_ratio=ratio)


@dataclass(frozen=True)
class DensityGrid:
    """Densities on a regular 2-D grid in data coordinates."""

    x: torch.Tensor  # (G,) grid coordinates along the first axis
    y: torch.Tensor  # (G,)
    model: torch.Tensor  # (G, G) model density, [iy, ix]
    reference: torch.Tensor  # (G, G) exact density (mixture) or None-like zeros
    has_reference: bool = field(default=True)


def density_grid(
    trained, mixture: GaussianMixture | None, limits, *, size: int = 40, rtol: float = 1e-4
) -> DensityGrid:
    """The model's density exp(-nll) over a size x size grid, beside the mixture's."""
    from diffusion.measure.likelihood import exact_nll

    (x_lo, x_hi), (y_lo, y_hi) = limits
    xs = torch.linspace(x_lo, x_hi, size, dtype=torch.float64)
    ys = torch.linspace(y_lo, y_hi, size, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # (G^2, 2)
    model = pf_ode_nll(trained, points, rtol=rtol, atol=rtol).nll.neg().exp().reshape(size, size)
    if mixture is None:
        return DensityGrid(xs, ys, model, torch.zeros_like(model), has_reference=False)
    exact = exact_nll(mixture, points).neg().exp().reshape(size, size)
    return DensityGrid(xs, ys, model, exact)


@dataclass(frozen=True)
class FieldFrame:
    """The score field at one noise level, on a grid of points (data coordinates)."""

    t: float
    noise: float  # sigma / alpha at t (standardised units)
    points: torch.Tensor  # (G^2, 2)
    model: torch.Tensor  # (G^2, 2) the model's score at the points
    reference: torch.Tensor  # (G^2, 2) the reference's


@torch.no_grad()
def field_frames(trained, exact, limits, *, noise_levels: list[float], size: int = 17):
    """The score grad log p_t (data coordinates) of model and reference over a grid, at the
    times where sigma / alpha takes each of `noise_levels`. The score is read from the
    prediction as (alpha x0_hat - x) / sigma^2, the direction that denoises."""
    process = trained.process
    (x_lo, x_hi), (y_lo, y_hi) = limits
    xs = torch.linspace(x_lo, x_hi, size)
    ys = torch.linspace(y_lo, y_hi, size)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # (G^2, 2) data coordinates
    z = trained.normalizer.normalize(points)
    scale = trained.normalizer.scale
    frames = []
    for level in noise_levels:
        t = process.time_at_sigma_ratio(level)
        tt = torch.tensor(t, dtype=torch.float64)
        alpha, sigma = float(process.alpha(tt)), float(process.sigma(tt))
        scores = []
        for model in (trained, exact):
            pred = model.denoiser()(z, torch.tensor(t))
            scores.append((alpha * pred.x0 - z) / sigma**2 / scale)  # chain rule dz/dx
        noise = sigma / alpha if alpha > 0 else math.inf  # the level reached (may be clamped)
        frames.append(FieldFrame(t, noise, points, scores[0], scores[1]))
    return frames


def summary(errors: TimeErrors) -> dict[str, float]:
    """Where the model is worst: the bin with the largest excess loss, and the median error."""
    excess = [m - r for m, r in zip(errors.model_loss, errors.reference_loss, strict=True)]
    worst = max(range(len(excess)), key=excess.__getitem__)
    return {
        "worst_t": errors.t[worst],
        "worst_log_snr": errors.log_snr[worst],
        "worst_excess_loss": excess[worst],
        "median_eps_error": statistics.median(errors.eps_error),
    }
