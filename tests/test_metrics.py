"""Known answers for the sample distances in diffusion.measure.metrics."""

from __future__ import annotations

import functools
import itertools
import json
import math
import statistics

import pytest
import torch

from diffusion.measure import metrics
from diffusion.measure.metrics import (
    compare_to_data,
    energy_distance,
    median_bandwidths,
    mmd,
    random_directions,
    sliced_wasserstein,
)
from diffusion.utils import make_generator


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Run these many small float64 ops on one thread, then restore the setting.

    Results do not depend on it; speed does: on a shared 2-core machine every OpenMP parallel
    region waits for a descheduled worker, and this file took 60 s instead of 6 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _normal_abs_mean(mu: float, var: float) -> float:
    """E|Z| for Z ~ N(mu, var) (folded normal mean)."""
    sd = math.sqrt(var)
    phi = 0.5 * (1.0 + math.erf(-mu / sd / math.sqrt(2.0)))  # Phi(-mu / sd)
    return sd * math.sqrt(2.0 / math.pi) * math.exp(-(mu**2) / (2.0 * var)) + mu * (1 - 2 * phi)


def _gaussian_mmd2(shift: float, bandwidth: float) -> float:
    """MMD^2 between N(0,1) and N(shift,1) in 1-D under exp(-r^2 / (2 s^2)).

    E exp(-Z^2 / (2 s^2)) for Z ~ N(mu, v) is sqrt(s^2 / (s^2 + v)) exp(-mu^2 / (2 (s^2 + v))),
    and X - X', X - Y are N(0, 2), N(-shift, 2).
    """
    s2 = bandwidth**2
    scale = math.sqrt(s2 / (s2 + 2.0))
    return 2.0 * scale * (1.0 - math.exp(-(shift**2) / (2.0 * (s2 + 2.0))))


def _anisotropic_data(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator) * torch.tensor([1.0, 0.3])


# ---------------------------------------------------------------- sliced Wasserstein


@pytest.mark.parametrize("shift", [1.5, -0.7])
def test_sliced_wasserstein_1d_gaussians_is_shift(shift: float) -> None:
    g = make_generator(0)
    x = torch.randn(20000, generator=g)
    y = torch.randn(20000, generator=g) + shift
    assert sliced_wasserstein(x, y) == pytest.approx(abs(shift), abs=0.04)


def test_sliced_wasserstein_of_shifted_copy_is_exact_given_directions() -> None:
    # Projections onto u differ by the constant u.s, so W2^2 = (u.s)^2 exactly per direction.
    g = make_generator(1)
    x = torch.randn(300, 2, generator=g)
    s = torch.tensor([0.6, -1.3], dtype=torch.float64)
    directions = random_directions(2, 64, make_generator(2))
    expected = math.sqrt((directions @ s).square().mean().item())
    got = sliced_wasserstein(x, x + s, directions=directions)
    assert got == pytest.approx(expected, rel=1e-10)
    # Same directions when drawn from an equally seeded generator.
    assert sliced_wasserstein(x, x + s, 64, make_generator(2)) == pytest.approx(got, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_sliced_wasserstein_of_shift_matches_expectation_over_directions(dim: int) -> None:
    # E_u[(u.s)^2] = |s|^2 / dim for u uniform on the sphere, so SW2 -> |s| / sqrt(dim).
    g = make_generator(3)
    x = torch.randn(200, dim, generator=g)
    s = torch.linspace(0.5, 1.5, dim)
    got = sliced_wasserstein(x, x + s, n_projections=20000, generator=g)
    assert got == pytest.approx(s.norm().item() / math.sqrt(dim), rel=0.02)


def test_sliced_wasserstein_identical_and_permuted() -> None:
    g = make_generator(4)
    x = torch.randn(500, 3, generator=g)
    y = torch.randn(400, 3, generator=g) + 0.2
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x[torch.randperm(500, generator=g)]) == pytest.approx(0, abs=1e-12)
    base = sliced_wasserstein(x, y, generator=make_generator(5))
    assert base > 0.05
    permuted = sliced_wasserstein(
        x[torch.randperm(500, generator=g)], y.flip(0), generator=make_generator(5)
    )
    assert permuted == pytest.approx(base, rel=1e-12)


def test_sliced_wasserstein_unequal_sizes() -> None:
    # Quantile functions of {0, 1} and {0, 0.5, 1} differ by 0.5 on [1/3, 2/3): W2^2 = 1/12.
    got = sliced_wasserstein(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5, 0.0]))
    assert got == pytest.approx(math.sqrt(1.0 / 12.0), rel=1e-12)
    # Every point repeated twice is the same empirical measure.
    x = torch.randn(37, 2, generator=make_generator(6))
    assert sliced_wasserstein(x, torch.cat([x, x.flip(0)])) == pytest.approx(0.0, abs=1e-12)
    # Unequal sizes of two Gaussians at distance 1 still give ~1.
    g = make_generator(7)
    a, b = torch.randn(20000, generator=g), torch.randn(13001, generator=g) + 1.0
    assert sliced_wasserstein(a, b) == pytest.approx(1.0, abs=0.04)


# ---------------------------------------------------------------- MMD and energy distance


def _reference_statistic(x, y, kernel, unbiased: bool) -> float:
    """Textbook double loops (Gretton et al. 2012, Eqs. 3 and 5)."""

    def mean(a, b, skip_diagonal: bool) -> float:
        pairs = [
            kernel(a[i], b[j])
            for i, j in itertools.product(range(len(a)), range(len(b)))
            if not (skip_diagonal and i == j)
        ]
        return sum(pairs) / len(pairs)

    return mean(x, x, unbiased) + mean(y, y, unbiased) - 2 * mean(x, y, False)


@pytest.mark.parametrize("unbiased", [True, False])
def test_estimators_match_double_loop_reference(unbiased: bool) -> None:
    g = make_generator(8)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, 3, generator=g, dtype=torch.float64) + 0.3
    bandwidths = (0.5, 2.0)

    def rbf(a, b) -> float:
        r2 = (a - b).square().sum().item()
        return sum(math.exp(-r2 / (2 * s**2)) for s in bandwidths)

    def neg_dist(a, b) -> float:
        return -(a - b).norm().item()

    assert mmd(x, y, bandwidths, unbiased=unbiased) == pytest.approx(
        _reference_statistic(x, y, rbf, unbiased), rel=1e-10
    )
    assert energy_distance(x, y, unbiased=unbiased) == pytest.approx(
        _reference_statistic(x, y, neg_dist, unbiased), rel=1e-10
    )


def test_chunked_paths_agree_with_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    g = make_generator(9)
    x = torch.randn(301, 3, generator=g)
    y = torch.randn(250, 3, generator=g) + 0.5
    full = (
        sliced_wasserstein(x, y, 50, make_generator(1)),
        mmd(x, y, (1.0,)),
        energy_distance(x, y),
    )
    # A few uneven blocks for every statistic.
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 20_000)
    chunked = (
        sliced_wasserstein(x, y, 50, make_generator(1)),
        mmd(x, y, (1.0,)),
        energy_distance(x, y),
    )
    assert chunked == pytest.approx(full, rel=1e-10)


@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_mmd_1d_gaussians_closed_form(shift: float) -> None:
    g = make_generator(10)
    x = torch.randn(4000, generator=g)
    y = torch.randn(4000, generator=g) + shift
    bandwidths = (0.5, 2.0)
    expected = sum(_gaussian_mmd2(shift, s) for s in bandwidths)
    # Sampling noise at n = 4000 is ~5% (1 sd) of the value at shift 1.
    assert mmd(x, y, bandwidths) == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_energy_distance_1d_gaussians_closed_form(shift: float) -> None:
    # X - Y ~ N(-shift, 2) and X - X' ~ N(0, 2).
    expected = 2 * _normal_abs_mean(shift, 2.0) - 2 * _normal_abs_mean(0.0, 2.0)
    g = make_generator(11)
    x = torch.randn(4000, generator=g)
    y = torch.randn(4000, generator=g) + shift
    assert energy_distance(x, y) == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("statistic", [functools.partial(mmd, bandwidths=(1.0,)), energy_distance])
def test_kernel_statistics_are_near_zero_for_same_law_and_grow_with_shift(statistic) -> None:
    g = make_generator(12)
    x = torch.randn(1500, 2, generator=g)
    noise = torch.randn(1500, 2, generator=g)
    values = [statistic(x, noise + torch.tensor([shift, 0.0])) for shift in (0.0, 0.3, 0.6, 1.2)]
    assert abs(values[0]) < 0.1 * values[1]
    assert values[1] < values[2] < values[3]
    assert statistic(x, x[torch.randperm(1500, generator=g)]) == pytest.approx(
        statistic(x, x), abs=1e-12
    )


def test_median_bandwidths_and_subsampling_are_deterministic() -> None:
    x = torch.randn(3000, 2, generator=make_generator(13)) * 2.0
    widths = median_bandwidths(x, generator=make_generator(0))
    # Median distance between two N(0, 4 I) points: 2 * sqrt(2) * sqrt(2 ln 2) ~= 3.33.
    assert widths[2] == pytest.approx(2 * math.sqrt(2) * math.sqrt(2 * math.log(2)), rel=0.05)
    assert widths == pytest.approx(tuple(widths[2] * c for c in (0.25, 0.5, 1, 2, 4)))
    y = x + 1.0
    a = mmd(x, y, max_points=500, generator=make_generator(1))
    b = mmd(x, y, max_points=500, generator=make_generator(1))
    assert a == b and a > 0


# ---------------------------------------------------------------- report against the floor


def test_compare_to_data_ratio_near_one_for_data_and_large_for_mismatch() -> None:
    null_ratios = []
    for seed in range(5):
        g = make_generator(seed)
        report = compare_to_data(_anisotropic_data(400, g), _anisotropic_data, g)
        null_ratios.append([report.sliced_wasserstein.ratio, report.mmd.ratio, report.energy.ratio])
        assert report.n == 400
        if seed > 1:
            continue  # mismatches are far above the floor at every seed; two keep the test fast
        shifted = _anisotropic_data(400, g) + torch.tensor([0.5, 0.0])
        blurred = _anisotropic_data(400, g) + torch.randn(400, 2, generator=g)
        for bad in (shifted, blurred):
            bad_report = compare_to_data(bad, _anisotropic_data, g)
            assert bad_report.sliced_wasserstein.ratio > 2
            assert bad_report.mmd.ratio > 5
            assert bad_report.energy.ratio > 5
    # A single ratio at the floor is noisy (see compare_to_data); its median over seeds is ~1.
    medians = torch.tensor(null_ratios).median(dim=0).values
    assert ((medians > 0.6) & (medians < 1.6)).all(), medians


def test_report_is_deterministic_and_json_friendly() -> None:
    samples = _anisotropic_data(200, make_generator(20))
    a = compare_to_data(samples, _anisotropic_data, make_generator(21), n_floor_repeats=2)
    b = compare_to_data(samples, _anisotropic_data, make_generator(21), n_floor_repeats=2)
    assert a == b
    d = a.to_dict()
    assert set(d) == {"n", "sliced_wasserstein", "mmd", "energy"}
    assert d["mmd"]["ratio"] == pytest.approx(d["mmd"]["value"] / d["mmd"]["floor"])
    assert d["mmd"]["floor"] > 0 and d["energy"]["floor"] > 0  # V-statistics: positive floors
    json.dumps(d, allow_nan=False)


# --- SlicedWassersteinRatio: compare_to_data's SW ratio with the floor computed once ---


def _gaussian_data(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator)


def test_sw_ratio_of_data_is_near_one_and_of_a_shift_is_large():
    score = metrics.SlicedWassersteinRatio(_gaussian_data, 2000, make_generator(0))
    fresh = [score(_gaussian_data(2000, make_generator(100 + i))) for i in range(5)]
    assert 0.7 < sorted(fresh)[2] < 1.4  # the median of 5 draws of the data itself
    shifted = _gaussian_data(2000, make_generator(7)) + torch.tensor([0.5, 0.0])
    assert score(shifted) > 5


def test_sw_ratio_matches_compare_to_data_on_a_clear_mismatch():
    samples = 1.5 * _gaussian_data(1000, make_generator(3))
    score = metrics.SlicedWassersteinRatio(_gaussian_data, 1000, make_generator(1))
    report = metrics.compare_to_data(samples, _gaussian_data, make_generator(2))
    # Same statistic, different data draws: agree to the metric's own spread.
    assert score(samples) == pytest.approx(report.sliced_wasserstein.ratio, rel=0.3)


def test_sw_ratio_equals_the_median_of_sliced_wasserstein_over_the_references():
    score = metrics.SlicedWassersteinRatio(
        _gaussian_data, 700, make_generator(8), n_floor_repeats=5
    )
    x = 1.2 * _gaussian_data(700, make_generator(9))
    distances = [metrics.sliced_wasserstein(x, a, directions=score.directions)
                 for a in score.references]  # fmt: skip
    assert score(x) == pytest.approx(statistics.median(distances) / score.floor, rel=1e-12)


def test_sw_ratio_is_deterministic_and_checks_its_input():
    a = metrics.SlicedWassersteinRatio(_gaussian_data, 500, make_generator(4), n_floor_repeats=3)
    b = metrics.SlicedWassersteinRatio(_gaussian_data, 500, make_generator(4), n_floor_repeats=3)
    x = _gaussian_data(500, make_generator(5))
    assert a(x) == b(x) and a.floor == b.floor > 0
    with pytest.raises(ValueError, match="expected 500 samples"):
        a(x[:10])
    with pytest.raises(ValueError, match="n_floor_repeats"):
        metrics.SlicedWassersteinRatio(_gaussian_data, 10, make_generator(0), n_floor_repeats=0)
