"""Toy 2D data sets: a registry of samplers `(n, generator=None, **options) -> (n, 2) float32`.

Every set is drawn with torch's random functions from the given generator only (None means
torch's default generator), so a seeded generator gives reproducible draws and continuing to use
it gives fresh ones. Points are generated on the generator's device. All sets are scaled to
coordinates within about [-2, 2] and per-coordinate standard deviations of about 0.4 to 1.2.

Sources: scikit-learn's `make_swiss_roll`, `make_moons` and `make_circles`
(sklearn/datasets/_samples_generator.py) and the toy sets of FFJORD (Grathwohl et al. 2019,
github.com/rtqichen/ffjord, lib/toy_data.py), rescaled as each docstring says.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch

from diffusion.data.errors import DataError, check_sample_size

ToySampler = Callable[..., torch.Tensor]

# FFJORD's "8gaussians" puts std-0.5 clusters on a radius-4 circle and divides by 1.414; we halve
# that once more so the set fits [-2, 2]: radius sqrt(2), std 0.5 / (2 * 1.414) ~ 0.177.
EIGHT_GAUSSIANS_RADIUS = math.sqrt(2.0)
EIGHT_GAUSSIANS_STD = 0.5 / (2 * 1.414)


# --- option checks (each raises DataError naming the option) ---


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"option {name} must be a finite number, got {value!r}")
    return float(value)


def _nonnegative(name: str, value: object) -> float:
    number = _real(name, value)
    if number < 0:
        raise DataError(f"option {name} must be >= 0, got {value!r}")
    return number


def _positive(name: str, value: object) -> float:
    number = _real(name, value)
    if number <= 0:
        raise DataError(f"option {name} must be > 0, got {value!r}")
    return number


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"option {name} must be an integer >= 1, got {value!r}")
    return value


# --- random draws from the given generator, on its device ---


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=_device(generator))


def _normal(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=_device(generator))


def _choice(k: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n independent uniform draws from {0, ..., k-1}, shape (n,)."""
    return torch.randint(k, (n,), generator=generator, device=_device(generator))


# --- the data sets ---


def swissroll(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.1
) -> torch.Tensor:
    """The (x, z) plane of scikit-learn's `make_swiss_roll(n, noise=noise)`, divided by 10.

    Same formula as sklearn: t = 1.5 pi (1 + 2u), u ~ U(0, 1); (x, y, z) = (t cos t, 21 v,
    t sin t) + noise * N(0, I_3). y is independent of (x, z) and dropped, so it is not drawn.
    Range about [-0.95, 1.26] x [-1.11, 1.42].
    """
    n, noise = check_sample_size(n), _nonnegative("noise", noise)
    t = 1.5 * math.pi * (1 + 2 * _uniform((n,), generator))  # (n,)
    xz = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)  # (n, 2)
    return (xz + noise * _normal((n, 2), generator)) / 10


def circle_centres(n_clusters: int, radius: float = 1.0) -> torch.Tensor:
    """(n_clusters, 2) points evenly on a circle, the first at angle 0: the `gaussians` means."""
    angle = 2 * math.pi * torch.arange(n_clusters, dtype=torch.float64) / n_clusters
    return (radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)).float()


def gaussians(
    n: int,
    generator: torch.Generator | None = None,
    *,
    n_clusters: int = 8,
    std: float = 0.1,
    radius: float = 1.0,
) -> torch.Tensor:
    """Equal-weight mixture of isotropic Gaussians (std `std`) centred at `circle_centres`."""
    return labelled_gaussians(n, generator, n_clusters=n_clusters, std=std, radius=radius)[0]


def labelled_gaussians(
    n: int,
    generator: torch.Generator | None = None,
    *,
    n_clusters: int = 8,
    std: float = 0.1,
    radius: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`gaussians` with each point's component (n,): the same points from the same draws."""
    n, n_clusters = check_sample_size(n), _count("n_clusters", n_clusters)
    std, radius = _nonnegative("std", std), _positive("radius", radius)
    centres = circle_centres(n_clusters, radius).to(_device(generator))  # (K, 2)
    label = _choice(n_clusters, n, generator)  # (n,)
    return centres[label] + std * _normal((n, 2), generator), label


def eight_gaussians(
    n: int, generator: torch.Generator | None = None, *, std: float = EIGHT_GAUSSIANS_STD
) -> torch.Tensor:
    """FFJORD's "8gaussians" halved: 8 clusters on a circle of radius sqrt(2), std ~0.177.

    Equal to `gaussians(n, generator, n_clusters=8, radius=sqrt(2), std=std)`.
    """
    return gaussians(n, generator, n_clusters=8, std=std, radius=EIGHT_GAUSSIANS_RADIUS)


def moons(n: int, generator: torch.Generator | None = None, *, noise: float = 0.05) -> torch.Tensor:
    """scikit-learn's `make_moons` shifted by (-0.5, -0.25): range ~[-1.5, 1.5] x [-0.75, 0.75].

    Upper moon (cos a, sin a), lower moon (1 - cos a, 0.5 - sin a), plus noise * N(0, I).
    sklearn spaces a evenly on [0, pi] and splits n in halves; fresh draws take a ~ U(0, pi) and
    each moon with probability 1/2.
    """
    return labelled_moons(n, generator, noise=noise)[0]


def labelled_moons(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """`moons` with each point's moon (n,): 0 upper, 1 lower; the same points."""
    n, noise = check_sample_size(n), _nonnegative("noise", noise)
    label = _choice(2, n, generator)  # (n,) 0: upper moon, 1: lower moon
    lower = label.float()
    angle = math.pi * _uniform((n,), generator)
    sign = 1 - 2 * lower
    x = lower + sign * torch.cos(angle) - 0.5
    y = 0.5 * lower + sign * torch.sin(angle) - 0.25
    return torch.stack([x, y], dim=1) + noise * _normal((n, 2), generator), label


def circles(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.05, factor: float = 0.5
) -> torch.Tensor:
    """Two concentric circles of radii 1 and `factor` (as sklearn's `make_circles`), plus noise.

    Each circle gets probability 1/2 and angles are U(0, 2 pi) (sklearn uses even spacing).
    """
    return labelled_circles(n, generator, noise=noise, factor=factor)[0]


def labelled_circles(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.05, factor: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """`circles` with each point's circle (n,): 0 outer, 1 inner; the same points."""
    n, noise, factor = check_sample_size(n), _nonnegative("noise", noise), _real("factor", factor)
    if not 0 < factor < 1:
        raise DataError(f"option factor must be in (0, 1), got {factor!r}")
    label = _choice(2, n, generator)  # (n,) 1: inner
    angle = 2 * math.pi * _uniform((n,), generator)
    radius = 1 - (1 - factor) * label.float()
    points = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return points + noise * _normal((n, 2), generator), label


def checkerboard(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 black squares of a 4x4 board on [-2, 2]^2: floor(x) + floor(y) even.

    FFJORD's "checkerboard" without its final factor 2.
    """
    return labelled_checkerboard(n, generator)[0]


def labelled_checkerboard(
    n: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`checkerboard` with each point's square (n,), 0 to 7: 2 * column + row // 2, columns
    and rows counted from the bottom left; the same points. (Every point lies on a black
    square, so the square, not the colour, is what tells points apart.)"""
    n = check_sample_size(n)
    x = 4 * _uniform((n,), generator) - 2
    y = _uniform((n,), generator) - 2 * _choice(2, n, generator) + torch.floor(x) % 2
    column = (torch.floor(x) + 2).clamp(0, 3)
    row = (torch.floor(y) + 2).clamp(0, 3)
    return torch.stack([x, y], dim=1), (
        2 * column + torch.div(row, 2, rounding_mode="floor")
    ).long()


def pinwheel(
    n: int,
    generator: torch.Generator | None = None,
    *,
    n_arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    rate: float = 0.25,
) -> torch.Tensor:
    """FFJORD's "pinwheel" without its final factor 2: arms at radius ~1, within about [-2, 2].

    A point (1 + radial_std * z1, tangential_std * z2) is rotated by -(2 pi k / n_arms +
    rate * exp(1 + radial_std * z1)) for a uniform arm k, so arms bend more as they go out.
    """
    return labelled_pinwheel(n, generator, n_arms=n_arms, radial_std=radial_std,
                             tangential_std=tangential_std, rate=rate)[0]  # fmt: skip


def labelled_pinwheel(
    n: int,
    generator: torch.Generator | None = None,
    *,
    n_arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    rate: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pinwheel` with each point's arm (n,); the same points."""
    n, n_arms = check_sample_size(n), _count("n_arms", n_arms)
    radial_std = _nonnegative("radial_std", radial_std)
    tangential_std = _nonnegative("tangential_std", tangential_std)
    rate = _real("rate", rate)
    arm = _choice(n_arms, n, generator)  # (n,)
    std = torch.tensor([radial_std, tangential_std], device=_device(generator))
    features = _normal((n, 2), generator) * std  # (n, 2)
    features[:, 0] += 1
    angle = 2 * math.pi * arm / n_arms + rate * torch.exp(features[:, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    # FFJORD's einsum("ti,tij->tj", features, [[cos, -sin], [sin, cos]]).
    x = features[:, 0] * cos + features[:, 1] * sin
    y = -features[:, 0] * sin + features[:, 1] * cos
    return torch.stack([x, y], dim=1), arm


def two_spirals(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.05
) -> torch.Tensor:
    """FFJORD's "2spirals" halved: two interleaved arms of 1.5 turns, within about [-1.9, 1.9].

    On arm 1, t = 3 pi sqrt(u) and p = (-t cos t + U(0, 0.5), t sin t + U(0, 0.5)) (FFJORD's
    uniform jitter); arm 2 is -p; each arm has probability 1/2; output p / 6 + noise * N(0, I).
    """
    return labelled_two_spirals(n, generator, noise=noise)[0]


def labelled_two_spirals(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """`two_spirals` with each point's arm (n,): 0 arm 1, 1 arm 2; the same points."""
    n, noise = check_sample_size(n), _nonnegative("noise", noise)
    label = _choice(2, n, generator)  # (n,)
    sign = 1 - 2 * label.float()  # +1: arm 1, -1: arm 2
    t = 3 * math.pi * torch.sqrt(_uniform((n,), generator))  # 540 degrees, as in FFJORD
    jitter = 0.5 * _uniform((n, 2), generator)
    arm = torch.stack([-t * torch.cos(t), t * torch.sin(t)], dim=1) + jitter  # (n, 2)
    return sign[:, None] * arm / 6 + noise * _normal((n, 2), generator), label


TOY_DATASETS: dict[str, ToySampler] = {
    "checkerboard": checkerboard,
    "circles": circles,
    "eight_gaussians": eight_gaussians,
    "gaussians": gaussians,
    "moons": moons,
    "pinwheel": pinwheel,
    "swissroll": swissroll,
    "two_spirals": two_spirals,
}


def _labelled_eight_gaussians(
    n: int, generator: torch.Generator | None = None, *, std: float = EIGHT_GAUSSIANS_STD
) -> tuple[torch.Tensor, torch.Tensor]:
    return labelled_gaussians(n, generator, n_clusters=8, std=std, radius=EIGHT_GAUSSIANS_RADIUS)


#: the toy sets whose points have classes: name -> (labelled draw, class names from options).
#: Each labelled draw gives the same points as the set's own draw, from the same random draws.
TOY_LABELLED: dict[str, tuple[Callable[..., tuple[torch.Tensor, torch.Tensor]],
                              Callable[..., tuple[str, ...]]]] = {
    "gaussians": (labelled_gaussians, lambda n_clusters=8, **_: tuple(
        f"component {k}" for k in range(n_clusters))),
    "eight_gaussians": (_labelled_eight_gaussians,
                        lambda **_: tuple(f"component {k}" for k in range(8))),
    "moons": (labelled_moons, lambda **_: ("upper", "lower")),
    "checkerboard": (labelled_checkerboard, lambda **_: tuple(
        f"square {k}" for k in range(8))),
    "circles": (labelled_circles, lambda **_: ("outer", "inner")),
    "two_spirals": (labelled_two_spirals, lambda **_: ("arm 1", "arm 2")),
    "pinwheel": (labelled_pinwheel, lambda n_arms=5, **_: tuple(
        f"arm {k}" for k in range(n_arms))),
}  # fmt: skip


def toy_options(name: str) -> dict[str, Any]:
    """The options of toy set `name` with their defaults, e.g. {'noise': 0.1} for swissroll."""
    parameters = inspect.signature(TOY_DATASETS[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def toy_mixture(name: str, **options: Any):
    """The `GaussianMixture` that toy set `name` draws from, or None if it is not a mixture.

    `gaussians` and `eight_gaussians` are mixtures (their draws come from the functions above,
    so the random streams stay as they are; this gives their exact law).
    """
    from diffusion.data.mixture import GaussianMixture

    if name == "eight_gaussians":
        return toy_mixture(
            "gaussians", n_clusters=8, radius=EIGHT_GAUSSIANS_RADIUS,
            std=options.get("std", EIGHT_GAUSSIANS_STD),
        )  # fmt: skip
    if name != "gaussians":
        return None
    settings = {**toy_options("gaussians"), **options}
    k = settings["n_clusters"]
    means = circle_centres(k, settings["radius"]).double()
    return GaussianMixture.isotropic(torch.ones(k), means, torch.full((k,), settings["std"]))
