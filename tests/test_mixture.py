"""Gaussian mixtures: constructors, moments, affine maps, sampling, files, and toy data sets."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffusion.data import TOY_DATASETS, DataError, get_dataset, load_mixture
from diffusion.data.mixture import GaussianMixture, mixture_from_dict
from diffusion.data.toy import EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD, toy_mixture
from diffusion.measure.likelihood import exact_nll

F64 = torch.float64


def reference_log_prob(weights, means, covariances, x) -> torch.Tensor:
    """log sum_k w_k N(x; m_k, C_k) by torch.distributions, float64 (independent reference)."""
    weights = torch.as_tensor(weights, dtype=F64)
    components = torch.distributions.MultivariateNormal(
        torch.as_tensor(means, dtype=F64), covariance_matrix=torch.as_tensor(covariances, dtype=F64)
    )
    law = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=weights / weights.sum()), components
    )
    return law.log_prob(torch.as_tensor(x, dtype=F64))


def full_mixture() -> GaussianMixture:
    """Three correlated components in 2D, unequal weights."""
    weights = torch.tensor([1.0, 2.0, 3.0])
    means = torch.tensor([[-2.0, 1.0], [1.0, 1.5], [0.5, -2.0]])
    covariances = torch.tensor(
        [[[0.5, 0.3], [0.3, 0.4]], [[0.2, -0.1], [-0.1, 0.3]], [[1.0, 0.0], [0.0, 0.05]]]
    )
    return GaussianMixture.full(weights, means, covariances)


def iso_mixture() -> GaussianMixture:
    return GaussianMixture.isotropic(
        torch.tensor([0.25, 0.75]),
        torch.tensor([[1.0, -1.0], [-2.0, 0.5]]),
        torch.tensor([0.3, 0.7]),
    )


# --- constructors and moments ----------------------------------------------------------------


def test_isotropic_constructor_normalises_weights_and_stores_variances():
    m = GaussianMixture.isotropic(
        torch.tensor([1.0, 3.0]), torch.zeros(2, 3), torch.tensor([2.0, 0.5])
    )
    assert m.axes is None
    assert (m.n_components, m.dim) == (2, 3)
    torch.testing.assert_close(m.weights, torch.tensor([0.25, 0.75], dtype=F64))
    torch.testing.assert_close(m.eigenvalues, torch.tensor([[4.0] * 3, [0.25] * 3], dtype=F64))
    expected = torch.stack([4.0 * torch.eye(3, dtype=F64), 0.25 * torch.eye(3, dtype=F64)])
    torch.testing.assert_close(m.covariances(), expected)
    assert m.means.dtype == m.weights.dtype == m.eigenvalues.dtype == F64


def test_full_constructor_reconstructs_covariances():
    covariances = torch.tensor(
        [[[0.5, 0.3], [0.3, 0.4]], [[0.2, -0.1], [-0.1, 0.3]], [[1.0, 0.0], [0.0, 0.05]]], dtype=F64
    )
    m = full_mixture()
    assert m.axes is not None and m.axes.shape == (3, 2, 2)
    torch.testing.assert_close(m.covariances(), covariances)
    torch.testing.assert_close(m.weights, torch.tensor([1.0, 2.0, 3.0], dtype=F64) / 6)
    # axes orthonormal, eigenvalues those of each covariance
    eye = torch.eye(2, dtype=F64).expand(3, 2, 2)
    torch.testing.assert_close(m.axes.transpose(1, 2) @ m.axes, eye)
    torch.testing.assert_close(m.eigenvalues, torch.linalg.eigvalsh(covariances))


def test_points_is_equal_weight_zero_variance():
    pts = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    m = GaussianMixture.points(pts)
    torch.testing.assert_close(m.weights, torch.full((5,), 0.2, dtype=F64))
    torch.testing.assert_close(m.means, pts.double())
    assert bool((m.eigenvalues == 0).all())
    torch.testing.assert_close(m.mean(), pts.double().mean(0))
    torch.testing.assert_close(m.std(), pts.double().std(0, unbiased=False))


@pytest.mark.parametrize("make", [full_mixture, iso_mixture])
def test_mean_and_std_match_hand_computation(make):
    m = make()
    w, mu, cov = m.weights, m.means, m.covariances()
    mean = sum(w[k] * mu[k] for k in range(len(w)))
    # law of total covariance
    total = sum(w[k] * (cov[k] + torch.outer(mu[k] - mean, mu[k] - mean)) for k in range(len(w)))
    torch.testing.assert_close(m.mean(), mean)
    torch.testing.assert_close(m.std(), total.diagonal().sqrt())


def test_mean_and_std_known_values():
    # 0.5 N(-1, 0.25) + 0.5 N(3, 1) in 1D: mean 1, variance 0.625 + 4 = 4.625
    m = GaussianMixture.isotropic(
        torch.ones(2), torch.tensor([[-1.0], [3.0]]), torch.tensor([0.5, 1.0])
    )
    torch.testing.assert_close(m.mean(), torch.tensor([1.0], dtype=F64))
    torch.testing.assert_close(m.std(), torch.tensor([math.sqrt(4.625)], dtype=F64))


# --- affine --------------------------------------------------------------------------------


AFFINES = [
    (iso_mixture, [0.5, -0.25], [2.0, 2.0]),  # isotropic kept isotropic
    (iso_mixture, [0.5, -0.25], [2.0, 0.5]),  # isotropic made anisotropic
    (full_mixture, [-1.0, 3.0], [0.7, 1.3]),
]


@pytest.mark.parametrize(("make", "shift", "scale"), AFFINES)
def test_affine_moments_and_covariances(make, shift, scale):
    m = make()
    shift, scale = torch.tensor(shift, dtype=F64), torch.tensor(scale, dtype=F64)
    a = m.affine(shift, scale)
    torch.testing.assert_close(a.mean(), (m.mean() - shift) / scale)
    torch.testing.assert_close(a.std(), m.std() / scale)
    torch.testing.assert_close(a.covariances(), m.covariances() / torch.outer(scale, scale))
    torch.testing.assert_close(a.weights, m.weights)
    if make is iso_mixture and bool((scale == scale[0]).all()):
        assert a.axes is None


@pytest.mark.parametrize(("make", "shift", "scale"), AFFINES)
def test_affine_log_density_changes_by_log_jacobian(make, shift, scale):
    m = make()
    shift, scale = torch.tensor(shift, dtype=F64), torch.tensor(scale, dtype=F64)
    a = m.affine(shift, scale)
    y = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = shift + scale * y
    # p_Y(y) = p_X(x) |dx/dy| = p_X(x) prod(scale)
    torch.testing.assert_close(-exact_nll(a, y), -exact_nll(m, x) + scale.log().sum())
    ref = reference_log_prob(m.weights, m.means, m.covariances(), x)
    torch.testing.assert_close(-exact_nll(m, x), ref)


def test_affine_of_samples_matches_affine_mixture():
    m = full_mixture()
    shift, scale = torch.tensor([-1.0, 3.0]), torch.tensor([0.7, 1.3])
    a = m.affine(shift, scale)
    y = (m.sample(200_000, torch.Generator().manual_seed(2)).double() - shift) / scale
    n = y.shape[0]
    se = y.std(0) / math.sqrt(n)
    assert bool(((y.mean(0) - a.mean()).abs() < 5 * se).all())
    # std of a sample std ~ std * sqrt((kurtosis - 1) / 4n); 5% of a per-mille is ample
    torch.testing.assert_close(y.std(0), a.std(), rtol=1e-2, atol=0)


# --- sampling ------------------------------------------------------------------------------


def _check_moments(m: GaussianMixture, x: torch.Tensor, k: float = 5.0) -> None:
    """Empirical mean and covariance of x within k standard errors of the mixture's."""
    x = x.double()
    n = x.shape[0]
    mean = m.mean()
    centred = x - mean
    se_mean = centred.std(0) / math.sqrt(n)
    assert bool(((x.mean(0) - mean).abs() < k * se_mean).all()), (x.mean(0), mean, se_mean)
    products = centred[:, :, None] * centred[:, None, :]  # (n, D, D), mean is the covariance
    se_cov = products.std(0) / math.sqrt(n)
    w, mu, cov = m.weights, m.means, m.covariances()
    between = (w[:, None, None] * (mu - mean)[:, :, None] * (mu - mean)[:, None, :]).sum(0)
    exact = (w[:, None, None] * cov).sum(0) + between
    diff = (products.mean(0) - exact).abs()
    assert bool((diff < k * se_cov).all()), (products.mean(0), exact, se_cov)


@pytest.mark.parametrize("make", [full_mixture, iso_mixture])
def test_sample_moments_match_mixture(make):
    m = make()
    x = m.sample(400_000, torch.Generator().manual_seed(3))
    assert x.shape == (400_000, 2) and x.dtype == torch.float32
    _check_moments(m, x)


def test_sample_component_fractions_and_conditional_covariance():
    # well separated components: each draw can be attributed to its component
    means = torch.tensor([[-20.0, 0.0], [20.0, 0.0], [0.0, 30.0]])
    covs = torch.tensor(
        [[[1.0, 0.8], [0.8, 1.0]], [[0.25, 0.0], [0.0, 4.0]], [[2.0, -1.0], [-1.0, 1.0]]]
    )
    m = GaussianMixture.full(torch.tensor([0.2, 0.3, 0.5]), means, covs)
    x = m.sample(60_000, torch.Generator().manual_seed(4)).double()
    label = torch.cdist(x, means.double()).argmin(1)
    fractions = torch.bincount(label, minlength=3).double() / x.shape[0]
    # binomial standard error at most 0.0021
    torch.testing.assert_close(
        fractions, torch.tensor([0.2, 0.3, 0.5], dtype=F64), atol=0.01, rtol=0
    )
    for k in range(3):
        cov = torch.cov(x[label == k].T)
        torch.testing.assert_close(cov, covs[k].double(), atol=0.08, rtol=0.04)


def test_sample_is_reproducible_from_generator():
    m = full_mixture()
    a = m.sample(1000, torch.Generator().manual_seed(7))
    b = m.sample(1000, torch.Generator().manual_seed(7))
    c = m.sample(1000, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_sample_rejects_bad_sizes(n):
    with pytest.raises(DataError):
        full_mixture().sample(n)


def test_sample_of_point_set_returns_the_points():
    pts = torch.tensor([[0.0, 1.0], [2.0, 3.0], [-1.0, 5.0]])
    x = GaussianMixture.points(pts).sample(300, torch.Generator().manual_seed(0))
    assert bool((torch.cdist(x, pts).min(1).values == 0).all())
    assert torch.bincount(torch.cdist(x, pts).argmin(1), minlength=3).min() > 60


# --- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [full_mixture, iso_mixture])
def test_to_json_round_trips(make, tmp_path):
    m = make()
    spec = m.to_json()
    assert ("stds" in spec) == (m.axes is None)
    assert ("covariances" in spec) == (m.axes is not None)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(spec))
    back = load_mixture(path)
    torch.testing.assert_close(back.weights, m.weights)
    torch.testing.assert_close(back.means, m.means)
    torch.testing.assert_close(back.covariances(), m.covariances())
    assert (back.axes is None) == (m.axes is None)


def test_load_isotropic_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"weights": [1, 3], "means": [[0, 1, 2], [3, 4, 5]], "stds": [0.5, 2]}')
    m = load_mixture(path)
    torch.testing.assert_close(m.weights, torch.tensor([0.25, 0.75], dtype=F64))
    torch.testing.assert_close(m.covariances()[1], 4 * torch.eye(3, dtype=F64))
    assert m.dim == 3


def test_load_full_file_with_bom(tmp_path):
    path = tmp_path / "m.json"
    spec = {"weights": [1], "means": [[1, 2]], "covariances": [[[2, 0.5], [0.5, 1]]]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(spec).encode())
    m = load_mixture(path)
    torch.testing.assert_close(m.covariances()[0], torch.tensor([[2, 0.5], [0.5, 1]], dtype=F64))


GOOD = {"weights": [1, 1], "means": [[0, 0], [1, 1]], "stds": [1, 1]}
GOOD_FULL = {"weights": [1], "means": [[0, 0]], "covariances": [[[1, 0], [0, 1]]]}


def _with(base: dict, **changes) -> dict:
    spec = {**base, **changes}
    return {k: v for k, v in spec.items() if v is not None}


BAD_SPECS = [
    (_with(GOOD, extra=1), "unknown key 'extra'"),
    (_with(GOOD, weights=None), "missing 'weights'"),
    (_with(GOOD, means=None), "missing 'means'"),
    (_with(GOOD, covariances=[[[1, 0], [0, 1]]] * 2), "exactly one"),
    (_with(GOOD, stds=None), "exactly one"),
    (_with(GOOD, weights=["a", 1]), "must hold numbers"),
    (_with(GOOD, weights=[True, 1]), "must hold numbers"),
    (_with(GOOD, weights=[None, 1]), "must hold numbers"),
    (_with(GOOD, means=[0, 0]), "nested 2 deep"),
    (_with(GOOD, means=[]), "non-empty"),
    (_with(GOOD, means=[[0, 0], []]), "non-empty"),
    (_with(GOOD, means=[[0, 0], [1, 1, 1]]), "different lengths"),
    (_with(GOOD, means=[[0, 10**400], [1, 1]]), "huge"),
    (_with(GOOD, weights=[1]), "1 weights for 2 means"),
    (_with(GOOD, stds=[1, 1, 1]), "3 stds for 2 means"),
    (_with(GOOD, weights=[1, 0]), "weights must be positive"),
    (_with(GOOD, weights=[1, -1]), "weights must be positive"),
    (_with(GOOD, stds=[1, 0]), "stds must be positive"),
    (_with(GOOD, stds=[-1, 1]), "stds must be positive"),
    (_with(GOOD_FULL, covariances=[[1, 0], [0, 1]]), "nested 3 deep"),
    (_with(GOOD_FULL, covariances=[[[1, 0, 0], [0, 1, 0], [0, 0, 1]]]), "expected (1, 2, 2)"),
    (_with(GOOD_FULL, covariances=[[[1, 0], [0, 1]]] * 2), "expected (1, 2, 2)"),
    (_with(GOOD_FULL, covariances=[[[1, 0.5], [0.4, 1]]]), "covariance 0 is not symmetric"),
    (_with(GOOD_FULL, covariances=[[[1, 2], [2, 1]]]), "not positive definite"),
    (_with(GOOD_FULL, covariances=[[[1, 1], [1, 1]]]), "not positive definite"),
    (_with(GOOD_FULL, covariances=[[[0, 0], [0, 0]]]), "not positive definite"),
    ([GOOD], "one JSON object"),
    ("text", "one JSON object"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_mixture_spec_is_one_line_data_error(spec, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(DataError) as info:
        load_mixture(path)
    text = str(info.value)
    assert message in text
    assert "\n" not in text and str(path) in text
    with pytest.raises(DataError, match="mixture"):
        mixture_from_dict(spec)  # same check without a file: named "mixture"


BAD_TEXTS = [
    ('{"weights": [1], "means": [[NaN, 0]], "stds": [1]}', "non-finite"),
    ('{"weights": [1], "means": [[0, 0]], "stds": [Infinity]}', "non-finite"),
    ('{"weights": [1e400], "means": [[0, 0]], "stds": [1]}', "non-finite"),
    ('{"weights": [1], "means": [[0, 0]], "stds": [1]', "not valid JSON"),
    ("", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TEXTS)
def test_bad_mixture_text_is_one_line_data_error(text, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        load_mixture(path)
    assert "\n" not in str(info.value)


def test_non_utf8_missing_and_directory(tmp_path):
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage\xc3")
    with pytest.raises(DataError, match="cannot read as text"):
        load_mixture(binary)
    with pytest.raises(DataError, match="no such file"):
        load_mixture(tmp_path / "missing.json")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(DataError, match="is not a file"):
        load_mixture(folder)


def test_too_many_dimensions_refused(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"weights": [1], "means": [[0] * 4097], "stds": [1]}))
    with pytest.raises(DataError, match="too large"):
        load_mixture(path)


def test_tiny_asymmetry_from_printing_is_accepted():
    spec = {"weights": [1], "means": [[0, 0]], "covariances": [[[1, 0.3], [0.3 + 1e-12, 1]]]}
    m = mixture_from_dict(spec)
    torch.testing.assert_close(m.covariances()[0], torch.tensor([[1, 0.3], [0.3, 1]], dtype=F64))


# --- data sets -----------------------------------------------------------------------------


def test_get_dataset_json_carries_mixture(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(full_mixture().to_json()))
    ds = get_dataset(str(path))
    assert ds.dim == 2 and ds.points is None
    torch.testing.assert_close(ds.mixture.covariances(), full_mixture().covariances())
    a = ds.sample(500, torch.Generator().manual_seed(0))
    b = ds.mixture.sample(500, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    with pytest.raises(DataError, match="no options"):
        get_dataset(str(path), std=1.0)


def test_get_dataset_bad_json_is_data_error(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"weights": [1]}')
    with pytest.raises(DataError, match="missing 'means'"):
        get_dataset(str(path))


@pytest.mark.parametrize(
    ("name", "options", "k", "radius", "std"),
    [
        ("gaussians", {}, 8, 1.0, 0.1),
        ("gaussians", {"n_clusters": 3, "std": 0.2, "radius": 4.0}, 3, 4.0, 0.2),
        ("eight_gaussians", {}, 8, EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD),
        ("eight_gaussians", {"std": 0.05}, 8, EIGHT_GAUSSIANS_RADIUS, 0.05),
    ],
)
def test_toy_mixture_is_the_law_sampled(name, options, k, radius, std):
    ds = get_dataset(name, **options)
    m = ds.mixture
    assert m is not None and m.n_components == k and m.axes is None
    torch.testing.assert_close(m.weights, torch.full((k,), 1 / k, dtype=F64))
    angle = 2 * math.pi * torch.arange(k, dtype=F64) / k
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    torch.testing.assert_close(m.means, means, atol=1e-6, rtol=0)  # centres built in float32
    torch.testing.assert_close(m.eigenvalues, torch.full((k, 2), std**2, dtype=F64))
    # the data set's own draws: cluster fractions 1/k, within-cluster std `std`
    x = ds.sample(40_000, torch.Generator().manual_seed(5)).double()
    label = torch.cdist(x, m.means).argmin(1)
    fractions = torch.bincount(label, minlength=k).double() / x.shape[0]
    torch.testing.assert_close(fractions, m.weights, atol=0.012, rtol=0)
    residual = x - m.means[label]
    torch.testing.assert_close(residual.std(0), torch.full((2,), std, dtype=F64), rtol=0.03, atol=0)
    _check_moments(m, x)


def test_toy_mixture_function_matches_dataset():
    assert toy_mixture("moons") is None
    m = toy_mixture("eight_gaussians", std=0.3)
    torch.testing.assert_close(m.eigenvalues, torch.full((8, 2), 0.09, dtype=F64))


@pytest.mark.parametrize("name", sorted(set(TOY_DATASETS) - {"gaussians", "eight_gaussians"}))
def test_other_toy_sets_have_no_mixture(name):
    assert get_dataset(name).mixture is None


def test_affine_of_isotropic_stays_axis_aligned_and_round_trips_through_json():
    iso = GaussianMixture.isotropic(torch.tensor([1.0, 3.0]), torch.tensor([[0.0, 1.0], [2.0, -1.0]]),
                                    torch.tensor([0.5, 0.2]))  # fmt: skip
    scaled = iso.affine(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5]))
    assert scaled.axes is None  # diagonal, no eigendecomposition needed
    want = (
        iso.covariances() / torch.outer(torch.tensor([2.0, 0.5]), torch.tensor([2.0, 0.5])).double()
    )
    torch.testing.assert_close(scaled.covariances(), want)
    back = mixture_from_dict(scaled.to_json())
    assert "covariances" in scaled.to_json()  # not isotropic any more: stds would lose it
    torch.testing.assert_close(back.covariances(), want)
    torch.testing.assert_close(back.means, scaled.means)
