"""Gaussian mixtures: data sets whose every noised marginal is known in closed form.

A mixture sum_k w_k N(m_k, C_k) stays a mixture under any Gaussian path x_t = alpha x0 +
sigma noise: component k becomes N(alpha m_k, alpha^2 C_k + sigma^2 I). `diffusion.measure.oracle`
uses that to give exact densities, scores and denoisers; this module holds the mixture itself,
reads it from a JSON file and draws from it.

A file is one JSON object, in any dimension D with K components:

    {"weights": [w_1, ..., w_K], "means": [[...D numbers...], ...],
     "stds": [s_1, ..., s_K]}                        # isotropic: C_k = s_k^2 I
    {"weights": [...], "means": [...], "covariances": [[[...D...], ...D rows], ...]}  # full

Either may add "classes": [c_1, ..., c_K], the class (0, 1, ...) of each component, so that a
class can be several components (every class from 0 to the largest must have one). Without
it, each component is its own class.

Weights must be positive; they are divided by their sum. Each covariance must be symmetric
and positive definite. Means and spreads must stay within a norm of `MAX_NORM` (1e18: distances
between points are computed in float32), and every coordinate must vary. Every component is stored by the eigendecomposition C_k = U_k diag(
lambda_k) U_k^T (float64), so each noised covariance is U_k diag(alpha^2 lambda_k + sigma^2)
U_k^T and no matrix is factorised again at sampling time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion.data.errors import DataError, check_sample_size, user_path
from diffusion.data.files import MAX_DIM, MAX_NORM
from diffusion.data.labels import MAX_CLASSES

#: Most components a file may describe (in at most MAX_DIM dimensions, as every data set):
#: beyond this the exact quantities cost more memory per point than a toy tool should ask for.
MAX_COMPONENTS = 100_000
_KEYS = {"weights", "means", "stds", "covariances", "classes"}
# Relative asymmetry tolerated in a covariance read from text (rounding of printed numbers).
_SYMMETRY_TOLERANCE = 1e-8


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is not a bool
class GaussianMixture:
    """sum_k weights[k] N(means[k], U_k diag(eigenvalues[k]) U_k^T), all float64 on the CPU.

    Attributes:
        weights: (K,) positive, summing to 1.
        means: (K, D).
        eigenvalues: (K, D) >= 0, the variances along each component's axes.
        axes: (K, D, D) orthonormal columns U_k, or None when every component is aligned
            with the coordinate axes (U_k = I; `eigenvalues` are then the per-coordinate
            variances, constant along each row for isotropic components).
    """

    weights: torch.Tensor
    means: torch.Tensor
    eigenvalues: torch.Tensor
    axes: torch.Tensor | None = None
    classes: torch.Tensor | None = None  # (K,) the class of each component; None: its index

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_classes(self) -> int:
        """How many classes the components form (each its own class unless grouped)."""
        return self.n_components if self.classes is None else int(self.classes.max()) + 1

    def class_mixture(self, c: int) -> GaussianMixture:
        """p(x | class c): the sub-mixture of the class's components."""
        if self.classes is None:
            return self.select([c])
        return self.select(torch.nonzero(self.classes == c).flatten().tolist())

    def with_classes(self, classes: torch.Tensor | None) -> GaussianMixture:
        """The same mixture with its components grouped into `classes` (K,)."""
        return dataclasses.replace(self, classes=classes)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def isotropic(
        cls, weights: torch.Tensor, means: torch.Tensor, stds: torch.Tensor
    ) -> GaussianMixture:
        """Components N(means[k], stds[k]^2 I); stds may be 0 (a point mass, e.g. a data set)."""
        means = torch.as_tensor(means, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        variances = torch.as_tensor(stds, dtype=torch.float64).reshape(-1, 1) ** 2  # (K, 1)
        return cls(weights / weights.sum(), means, variances.expand_as(means).clone())

    @classmethod
    def full(
        cls, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor
    ) -> GaussianMixture:
        """Components N(means[k], covariances[k]) with symmetric positive definite covariances."""
        covariances = torch.as_tensor(covariances, dtype=torch.float64)
        covariances = (covariances + covariances.transpose(1, 2)) / 2
        eigenvalues, axes = torch.linalg.eigh(covariances)  # (K, D), (K, D, D)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        return cls(weights / weights.sum(), means, eigenvalues.clamp_min(0), axes)

    @classmethod
    def points(cls, points: torch.Tensor) -> GaussianMixture:
        """The empirical distribution of a finite set: equal weights, zero variance."""
        points = torch.as_tensor(points, dtype=torch.float64).cpu()
        n = points.shape[0]
        return cls.isotropic(torch.ones(n), points, torch.zeros(n))

    def covariances(self) -> torch.Tensor:
        """(K, D, D) component covariances."""
        if self.axes is None:
            return torch.diag_embed(self.eigenvalues)
        return self.axes @ torch.diag_embed(self.eigenvalues) @ self.axes.transpose(1, 2)

    def mean(self) -> torch.Tensor:
        """(D,) mean of the mixture."""
        return self.weights @ self.means

    def std(self) -> torch.Tensor:
        """(D,) per-coordinate standard deviation: within-component plus between-component."""
        within = (self.weights[:, None] * self.covariances().diagonal(dim1=1, dim2=2)).sum(0)
        between = self.weights @ (self.means - self.mean()) ** 2
        return (within + between).sqrt()

    def affine(self, shift: torch.Tensor, scale: torch.Tensor) -> GaussianMixture:
        """The mixture of (x - shift) / scale (per coordinate), e.g. in a model's coordinates."""
        shift = torch.as_tensor(shift, dtype=torch.float64).cpu()
        scale = torch.as_tensor(scale, dtype=torch.float64).cpu()
        means = (self.means - shift) / scale
        if self.axes is None:  # axis-aligned components stay axis-aligned
            moved = GaussianMixture(self.weights, means, self.eigenvalues / scale**2)
        else:  # S^-1 C S^-1 with S = diag(scale), re-diagonalised.
            moved = GaussianMixture.full(
                self.weights, means, self.covariances() / torch.outer(scale, scale)
            )
        return moved.with_classes(self.classes)

    def select(self, components: list[int]) -> GaussianMixture:
        """The sub-mixture of the given components, weights renormalised: the law of one class
        when classes are components (p(x | c) of a labelled mixture)."""
        index = torch.as_tensor(components, dtype=torch.long)
        if not index.numel() or int(index.min()) < 0 or int(index.max()) >= self.n_components:
            raise ValueError(f"components must be in 0..{self.n_components - 1}, got {components}")
        weights = self.weights[index]
        axes = None if self.axes is None else self.axes[index]
        return GaussianMixture(weights / weights.sum(), self.means[index],
                               self.eigenvalues[index], axes)  # fmt: skip

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n independent draws, (n, D) float32, from `generator` only (on its device)."""
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample` with each draw's class (n,): its component, or the component's class when
        they are grouped; the same points from the same draws."""
        n = check_sample_size(n)
        device = generator.device if generator is not None else torch.device("cpu")
        label = torch.multinomial(
            self.weights.to(device), n, replacement=True, generator=generator
        )  # (n,)
        z = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        z = z * self.eigenvalues.to(device)[label].sqrt()  # (n, D) along the component axes
        if self.axes is not None:
            z = (self.axes.to(device)[label] @ z[:, :, None]).squeeze(2)
        points = (self.means.to(device)[label] + z).to(torch.float32)
        if self.classes is not None:
            label = self.classes.to(device)[label]
        return points, label

    def to_json(self) -> dict[str, list]:
        """The file form (`covariances` unless every component is isotropic)."""
        out: dict[str, list] = {"weights": self.weights.tolist(), "means": self.means.tolist()}
        if self.axes is None and bool((self.eigenvalues == self.eigenvalues[:, :1]).all()):
            out["stds"] = self.eigenvalues[:, 0].sqrt().tolist()
        else:
            out["covariances"] = self.covariances().tolist()
        if self.classes is not None:
            out["classes"] = self.classes.tolist()
        return out


# --- reading a file ---------------------------------------------------------------------


def _numbers(path: Path, key: str, value: object, depth: int) -> torch.Tensor:
    """A nested list of finite numbers of the given depth, as float64, or DataError."""

    def check(item: object, level: int) -> None:
        if level == 0:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise DataError(f"{path}: {key} must hold numbers, found {item!r}")
            try:
                finite = math.isfinite(item)
            except OverflowError:  # an integer too large for a float
                finite = False
            if not finite:
                raise DataError(f"{path}: {key} holds a non-finite or huge value")
            return
        if not isinstance(item, list) or not item:
            raise DataError(f"{path}: {key} must be a non-empty list nested {depth} deep")
        for sub in item:
            check(sub, level - 1)

    check(value, depth)
    try:
        return torch.tensor(value, dtype=torch.float64)
    except (ValueError, TypeError):  # ragged rows
        raise DataError(f"{path}: {key} has rows of different lengths") from None


def mixture_from_dict(spec: object, path: str | Path = "mixture") -> GaussianMixture:
    """Validate a mixture description (see the module docstring) and build it.

    Raises:
        DataError: one line naming the file and the problem.
    """
    path = Path(path)
    if not isinstance(spec, dict):
        raise DataError(f"{path}: a mixture file must hold one JSON object")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise DataError(
            f"{path}: unknown key {', '.join(map(repr, unknown))}; "
            "a mixture has weights, means and either stds or covariances"
        )
    for key in ("weights", "means"):
        if key not in spec:
            raise DataError(f"{path}: missing {key!r}")
    if ("stds" in spec) == ("covariances" in spec):
        raise DataError(f"{path}: give exactly one of 'stds' (isotropic) or 'covariances'")
    weights = _numbers(path, "weights", spec["weights"], 1)
    means = _numbers(path, "means", spec["means"], 2)
    k, d = means.shape
    if k > MAX_COMPONENTS or d > MAX_DIM:
        raise DataError(
            f"{path}: {k} components in {d} dimensions is too large "
            f"(at most {MAX_COMPONENTS} components and {MAX_DIM} dimensions)"
        )
    if weights.shape != (k,):
        raise DataError(f"{path}: {len(weights)} weights for {k} means")
    if bool((weights <= 0).any()):
        raise DataError(f"{path}: weights must be positive")
    if not math.isfinite(float(weights.sum())):
        raise DataError(f"{path}: weights sum to more than 1.8e308 (float64 overflows); "
                        "scale them down (only their ratios matter)")  # fmt: skip
    _check_size(path, "a mean", torch.linalg.vector_norm(means, dim=1))
    if "stds" in spec:
        stds = _numbers(path, "stds", spec["stds"], 1)
        if stds.shape != (k,):
            raise DataError(f"{path}: {len(stds)} stds for {k} means")
        if bool((stds <= 0).any()):
            raise DataError(f"{path}: stds must be positive")
        _check_size(path, "a component's spread", stds * math.sqrt(d))
        mixture = _spread(path, GaussianMixture.isotropic(weights, means, stds))
        return mixture.with_classes(_classes(path, spec.get("classes"), k))
    covariances = _numbers(path, "covariances", spec["covariances"], 3)
    if covariances.shape != (k, d, d):
        raise DataError(
            f"{path}: covariances have shape {tuple(covariances.shape)}, expected ({k}, {d}, {d})"
        )
    spread = covariances.diagonal(dim1=1, dim2=2).abs().sum(1).sqrt()  # (K,)
    _check_size(path, "a component's spread", spread)
    asymmetry = (covariances - covariances.transpose(1, 2)).abs().amax(dim=(1, 2))
    size = covariances.abs().amax(dim=(1, 2)).clamp_min(1e-300)
    bad = torch.nonzero(asymmetry > _SYMMETRY_TOLERANCE * size).flatten()
    if bad.numel():
        raise DataError(f"{path}: covariance {int(bad[0])} is not symmetric")
    smallest = torch.linalg.eigvalsh(covariances)[:, 0]  # (K,)
    bad = torch.nonzero(smallest <= 1e-12 * size).flatten()
    if bad.numel():
        raise DataError(
            f"{path}: covariance {int(bad[0])} is not positive definite "
            f"(smallest eigenvalue {float(smallest[bad[0]]):.3g})"
        )
    mixture = _spread(path, GaussianMixture.full(weights, means, covariances))
    return mixture.with_classes(_classes(path, spec.get("classes"), k))


def _classes(path: Path, value: object, k: int) -> torch.Tensor | None:
    """The "classes" of a mixture file, (K,) long, or None; DataError when they do not fit."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(c, int | float) and not isinstance(c, bool) and float(c).is_integer()
        for c in value
    ):
        raise DataError(f"{path}: classes must be a list of whole numbers, one per component")
    if len(value) != k:
        raise DataError(f"{path}: {len(value)} classes for {k} components")
    classes = torch.tensor([int(c) for c in value], dtype=torch.long)
    if int(classes.min()) < 0:
        raise DataError(f"{path}: classes must be 0 or more, got {int(classes.min())}")
    top = int(classes.max())
    if top >= MAX_CLASSES:
        raise DataError(f"{path}: at most {MAX_CLASSES} classes, got class {top}")
    missing = sorted(set(range(top + 1)) - set(classes.tolist()))
    if missing:
        raise DataError(f"{path}: class {missing[0]} has no component (classes must run "
                        f"from 0 to {top})")  # fmt: skip
    return classes


def _check_size(path: Path, what: str, norms: torch.Tensor) -> None:
    """DataError when a norm exceeds MAX_NORM (points would overflow float32 distances)."""
    largest = float(norms.max())
    if largest > MAX_NORM:
        raise DataError(
            f"{path}: values too large: {what} has norm {largest:.3g}, and distances between "
            f"points overflow float32 beyond a norm of {MAX_NORM:.0e}; rescale the mixture"
        )


def _spread(path: Path, mixture: GaussianMixture) -> GaussianMixture:
    """`mixture`, or DataError when a coordinate does not vary in float32 (nothing to learn
    along it; the exact oracle would divide by its zero spread)."""
    still = torch.nonzero(mixture.std().float() == 0).flatten()
    if still.numel() == mixture.dim:
        raise DataError(f"{path}: every point is the same (the components share one mean and "
                        "their spread is below float32's precision): nothing to learn")  # fmt: skip
    if still.numel():
        raise DataError(f"{path}: coordinate {int(still[0])} does not vary (its spread is below "
                        "float32's precision): nothing to learn along it")  # fmt: skip
    return mixture


def load_mixture(path: str | os.PathLike[str]) -> GaussianMixture:
    """Read a mixture from a JSON file (see the module docstring).

    Raises:
        DataError: one line naming the file and the problem.
    """
    path = user_path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read as text ({' '.join(str(error).split())})") from None
    try:
        # Integers as floats: a 5,000-digit one becomes inf (refused, naming the key) rather
        # than hitting Python's limit on integer digits.
        spec = json.loads(text, parse_int=float)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: is nested too deeply to be a mixture") from None
    except ValueError as error:  # anything else the parser refuses
        raise DataError(f"{path}: is not valid JSON ({' '.join(str(error).split())})") from None
    return mixture_from_dict(spec, path)
