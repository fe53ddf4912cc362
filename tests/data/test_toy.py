"""Toy 2D data sets: shapes, seeding, scale, and known answers of each distribution."""

import math

import pytest
import torch

from diffusion.data import (
    TOY_DATASETS,
    DataError,
    available_datasets,
    get_dataset,
    toy_options,
)
from diffusion.data.toy import EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD

NAMES = sorted(TOY_DATASETS)


def draw(name: str, n: int, seed: int = 0, **options) -> torch.Tensor:
    return get_dataset(name, **options).sample(n, torch.Generator().manual_seed(seed))


def wrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles mapped into [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


# --- every set ---


def test_registry_lists_the_eight_sets():
    expected = [
        "checkerboard",
        "circles",
        "eight_gaussians",
        "gaussians",
        "moons",
        "pinwheel",
        "swissroll",
        "two_spirals",
    ]
    assert sorted(TOY_DATASETS) == expected
    assert available_datasets() == sorted([*expected, "digits", "shapes", "shapes32"])


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_finite(name):
    dataset = get_dataset(name)
    assert dataset.name == name and dataset.dim == 2 and dataset.points is None
    x = dataset.sample(1000, torch.Generator().manual_seed(0))
    assert x.shape == (1000, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert dataset.sample(1, None).shape == (1, 2)  # the default generator works too


@pytest.mark.parametrize("name", NAMES)
def test_seeded_reproducibility_and_fresh_draws(name):
    assert torch.equal(draw(name, 500, seed=1), draw(name, 500, seed=1))
    assert not torch.equal(draw(name, 500, seed=1), draw(name, 500, seed=2))
    generator = torch.Generator().manual_seed(3)
    sample = TOY_DATASETS[name]
    first, second = sample(500, generator), sample(500, generator)
    assert not torch.equal(first, second)  # continuing the generator gives fresh points
    generator.manual_seed(3)  # re-seeding replays the first draw
    assert torch.equal(sample(500, generator), first)


@pytest.mark.parametrize("name", NAMES)
def test_scale_is_about_unit(name):
    x = draw(name, 20000)
    assert x.abs().max() <= 2.5
    std = x.std(dim=0)
    assert ((std > 0.4) & (std < 1.2)).all(), std


# Closed-form per-coordinate standard deviations of each set under its defaults (derivations
# inline); a wrong radius, noise, shift or mixing weight moves them by more than the tolerance.
CLOSED_FORM_STD = {
    # Uniform on [-2, 2] in each coordinate: sqrt(16 / 12).
    "checkerboard": (math.sqrt(16 / 12), math.sqrt(16 / 12)),
    # Radius 1 or 0.5 with prob 1/2, uniform angle: E x^2 = (1 + 0.25) / 4, plus noise 0.05^2.
    "circles": (math.sqrt(1.25 / 4 + 0.05**2),) * 2,
    # Unit circle, 8 equal clusters: E x^2 = 1 / 2, plus std 0.1^2.
    "gaussians": (math.sqrt(0.5 + 0.1**2),) * 2,
    # Radius sqrt(2): E x^2 = 1, plus std^2.
    "eight_gaussians": (math.sqrt(1 + EIGHT_GAUSSIANS_STD**2),) * 2,
    # x: within-moon var 1/2 (cos of U(0, pi)), moon means -0.5 and 0.5, noise 0.05.
    # y: within var 1/2 - 4/pi^2 (sin of U(0, pi)), moon means +-(2/pi - 1/4), noise 0.05.
    "moons": (
        math.sqrt(0.5 + 0.25 + 0.05**2),
        math.sqrt(0.5 - 4 / math.pi**2 + (2 / math.pi - 0.25) ** 2 + 0.05**2),
    ),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORM_STD))
def test_closed_form_mean_and_std(name):
    x = draw(name, 40000).double()
    assert torch.allclose(x.mean(dim=0), torch.zeros(2, dtype=torch.float64), atol=0.02)
    expected = torch.tensor(CLOSED_FORM_STD[name], dtype=torch.float64)
    assert torch.allclose(x.std(dim=0), expected, rtol=0.02), (x.std(dim=0), expected)


# --- swissroll: sklearn's make_swiss_roll formula ---


def test_swissroll_matches_sklearn_formula():
    x = draw("swissroll", 20000).double() * 10  # undo our / 10: sklearn's (x, z) columns
    t_low, t_high = 1.5 * math.pi, 4.5 * math.pi
    radius = x.norm(dim=1)  # ~ t, since (x, z) = t (cos t, sin t) + 0.1 noise
    assert radius.min() >= t_low - 0.5 and radius.max() <= t_high + 0.5
    assert abs(radius.mean() - 3 * math.pi) < 0.1  # t ~ U(1.5 pi, 4.5 pi)
    assert abs(radius.std() - 3 * math.pi / math.sqrt(12)) < 0.1
    # The angle of each point is its radius (mod 2 pi): x = t cos t, z = t sin t.
    angle_error = wrap(torch.atan2(x[:, 1], x[:, 0]) - radius).abs()
    assert angle_error.median() < 0.1 and angle_error.max() < 0.6  # radial noise 0.1 / t ~ 0.01
    # E[t cos t] = [t sin t + cos t] / (3 pi) = 6 pi / (3 pi) = 2; E[t sin t] = 2 / (3 pi).
    assert abs(x[:, 0].mean() - 2.0) < 0.15
    assert abs(x[:, 1].mean() - 2 / (3 * math.pi)) < 0.15
    # x-range about [-0.95, 1.26] after dividing by 10.
    assert x[:, 0].min() / 10 > -1.1 and x[:, 0].max() / 10 < 1.32


def test_swissroll_noise_option():
    x = draw("swissroll", 5000, noise=0.0).double() * 10
    radius = x.norm(dim=1)
    angle_error = wrap(torch.atan2(x[:, 1], x[:, 0]) - radius).abs()
    assert angle_error.max() < 1e-4  # exactly on the curve without noise
    assert radius.min() >= 1.5 * math.pi - 1e-4 and radius.max() <= 4.5 * math.pi + 1e-4


# --- gaussians ---


@pytest.mark.parametrize(("n_clusters", "std", "radius"), [(8, 0.1, 1.0), (5, 0.05, 1.5)])
def test_gaussians_recover_centres_weights_and_std(n_clusters, std, radius):
    n = 20000
    x = draw("gaussians", n, n_clusters=n_clusters, std=std, radius=radius).double()
    angle = 2 * math.pi * torch.arange(n_clusters, dtype=torch.float64) / n_clusters
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (K, 2)
    label = torch.cdist(x, centres).argmin(dim=1)
    counts = torch.bincount(label, minlength=n_clusters).double()
    p = 1 / n_clusters
    assert (counts - n * p).abs().max() < 5 * math.sqrt(n * p * (1 - p))
    for k in range(n_clusters):
        cluster = x[label == k]
        assert torch.allclose(
            cluster.mean(dim=0), centres[k], atol=5 * std / math.sqrt(len(cluster)) + 1e-3
        )
        assert torch.allclose(
            cluster.std(dim=0), torch.full((2,), std, dtype=torch.float64), rtol=0.06
        )


def test_eight_gaussians_is_gaussians_with_eight_clusters_radius_sqrt2():
    generator_a, generator_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    a = TOY_DATASETS["eight_gaussians"](300, generator_a)
    b = TOY_DATASETS["gaussians"](
        300, generator_b, n_clusters=8, radius=EIGHT_GAUSSIANS_RADIUS, std=EIGHT_GAUSSIANS_STD
    )
    assert torch.equal(a, b)
    assert abs(EIGHT_GAUSSIANS_RADIUS - math.sqrt(2)) < 1e-12


# --- the other shapes ---


def test_checkerboard_points_lie_on_black_squares():
    n = 16000
    x = draw("checkerboard", n)
    assert (x >= -2).all() and (x < 2).all()
    cell = torch.floor(x).long() + 2  # (n, 2) square indices 0..3
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # black: floor(x) + floor(y) even
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).double()
    black = torch.tensor([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert (counts[~black] == 0).all()
    assert (counts[black] - n / 8).abs().max() < 5 * math.sqrt(n / 8 * 7 / 8)


def test_moons_without_noise_lie_on_two_shifted_half_circles():
    x = draw("moons", 4000, noise=0.0).double()
    upper = x + torch.tensor([0.5, 0.25], dtype=torch.float64)  # unit circle, y >= 0
    lower = x - torch.tensor([0.5, 0.25], dtype=torch.float64)  # unit circle, y <= 0
    on_upper = ((upper.norm(dim=1) - 1).abs() < 1e-5) & (upper[:, 1] >= -1e-6)
    on_lower = ((lower.norm(dim=1) - 1).abs() < 1e-5) & (lower[:, 1] <= 1e-6)
    assert (on_upper | on_lower).all()
    assert abs(on_upper.double().mean() - 0.5) < 0.05


def test_circles_radii_and_factor():
    x = draw("circles", 4000, noise=0.0, factor=0.3).double()
    radius = x.norm(dim=1)
    outer = (radius - 1).abs() < 1e-5
    inner = (radius - 0.3).abs() < 1e-5
    assert (outer | inner).all()
    assert abs(outer.double().mean() - 0.5) < 0.05
    noisy = draw("circles", 20000).double().norm(dim=1)  # radii 1 and 0.5 by default
    assert (
        abs(noisy[noisy > 0.75].mean() - 1) < 0.01 and abs(noisy[noisy < 0.75].mean() - 0.5) < 0.01
    )


def test_pinwheel_arms_follow_ffjord_rotation():
    # Without tangential spread, a point is r (cos a, -sin a) with r = 1 + radial_std z and
    # a = 2 pi k / 5 + rate exp(r) (FFJORD's rotation), so -angle - rate exp(r) is a multiple
    # of 2 pi / 5. radial_std 0.2 keeps r > 0 (5 sigma).
    rate = 0.25
    x = draw("pinwheel", 4000, tangential_std=0.0, radial_std=0.2, rate=rate).double()
    radius = x.norm(dim=1)
    assert abs(radius.mean() - 1) < 0.02 and abs(radius.std() - 0.2) < 0.02
    residual = -torch.atan2(x[:, 1], x[:, 0]) - rate * torch.exp(radius)
    arm_step = 2 * math.pi / 5
    offset = torch.remainder(residual + arm_step / 2, arm_step) - arm_step / 2
    assert offset.abs().max() < 1e-4
    arm = torch.remainder(torch.round(residual / arm_step), 5).long()
    counts = torch.bincount(arm, minlength=5).double()
    assert (counts - 800).abs().max() < 5 * math.sqrt(800 * 0.8)


def test_pinwheel_degenerate_is_five_points():
    x = draw("pinwheel", 1000, radial_std=0.0, tangential_std=0.0).double()
    angle = 2 * math.pi * torch.arange(5, dtype=torch.float64) / 5 + 0.25 * math.e
    expected = torch.stack([torch.cos(angle), -torch.sin(angle)], dim=1)  # (5, 2)
    assert torch.cdist(x, expected).min(dim=1).values.max() < 1e-5


def test_two_spirals_lie_near_the_two_arms():
    # Without gaussian noise, 6 p = +-(t (-cos t, sin t) + jitter), jitter in [0, 0.5]^2.
    x = draw("two_spirals", 3000, noise=0.0).double() * 6
    t = torch.linspace(0, 3 * math.pi, 6001, dtype=torch.float64)  # arc steps < 0.015
    arm = torch.stack([-t * torch.cos(t), t * torch.sin(t)], dim=1)  # (T, 2)
    d1, i1 = torch.cdist(x, arm).min(dim=1)
    d2, i2 = torch.cdist(x, -arm).min(dim=1)
    assert torch.minimum(d1, d2).max() <= 0.5 * math.sqrt(2) + 0.01
    assert abs((d1 < d2).double().mean() - 0.5) < 0.05
    # t = 3 pi sqrt(u) has mean 2 pi.
    nearest_t = torch.where(d1 < d2, t[i1], t[i2])
    assert abs(nearest_t.mean() - 2 * math.pi) < 0.15


# --- get_dataset errors and options ---


def test_toy_options_lists_defaults():
    assert toy_options("swissroll") == {"noise": 0.1}
    assert toy_options("gaussians") == {"n_clusters": 8, "std": 0.1, "radius": 1.0}
    assert toy_options("checkerboard") == {}
    assert set(toy_options("pinwheel")) == {"n_arms", "radial_std", "tangential_std", "rate"}


def test_unknown_name_lists_choices_on_one_line():
    with pytest.raises(DataError) as info:
        get_dataset("foo")
    message = str(info.value)
    assert "\n" not in message
    assert "unknown dataset 'foo'" in message
    assert all(name in message for name in NAMES)
    assert ".npy/.csv" in message


def test_unknown_option_is_named():
    with pytest.raises(DataError, match="n_clusters") as info:
        get_dataset("swissroll", n_clusters=3)
    assert "noise" in str(info.value)  # says what it does accept
    with pytest.raises(DataError, match="no options"):
        get_dataset("checkerboard", noise=0.1)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("gaussians", {"n_clusters": 0}),
        ("gaussians", {"n_clusters": 2.5}),
        ("gaussians", {"std": -0.1}),
        ("swissroll", {"noise": float("nan")}),
        ("circles", {"factor": 1.5}),
        ("pinwheel", {"n_arms": True}),
        ("moons", {"noise": "small"}),
    ],
)
def test_invalid_option_values_fail_at_construction(name, options):
    (option,) = options
    with pytest.raises(DataError, match=option) as info:
        get_dataset(name, **options)
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_sample_size(n):
    with pytest.raises(DataError, match="positive integer"):
        get_dataset("moons").sample(n, torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="positive integer"):
        TOY_DATASETS["checkerboard"](n)
