"""`diffusion.measure.diagnostics` against known answers: the exact model compared with itself has no
error, a wrong model's excess loss is its noise-prediction error (the Pythagorean identity of
the conditional mean), the prior mismatch of one Gaussian is the Gaussian KL in closed form,
and the exact model's probability-flow density is the mixture's density."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.data import GaussianMixture, get_dataset
from diffusion.data.normalize import Normalizer
from diffusion.measure import diagnostics as dg
from diffusion.training.config import TrainConfig
from diffusion.utils import make_generator
from diffusion.workflows.exact import exact_model, reference

# A 2-D mixture with full, unequal covariances and unequal weights (nothing symmetric).
SKEWED = GaussianMixture.full(
    [1.0, 2.0],
    [[-1.5, 0.5], [1.0, -1.0]],
    [[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 0.6]]],
)


def config(process: str, **values) -> TrainConfig:
    return TrainConfig.from_dict({"dataset": "gaussians", "process": process, **values})


@pytest.fixture(scope="module")
def gaussians():
    return get_dataset("gaussians")


def shifted(mixture: GaussianMixture, by: float = 0.5) -> GaussianMixture:
    return GaussianMixture(mixture.weights, mixture.means + by, mixture.eigenvalues)


# --- reference ------------------------------------------------------------------------------


def test_reference_of_a_mixture_is_its_oracle_in_the_runs_coordinates(gaussians):
    # A normaliser that differs from the mixture's own: the reference must use the run's.
    normalizer = Normalizer(shift=torch.tensor([0.3, -0.2]), scale=torch.tensor([2.0, 0.5]))
    trained = exact_model(SKEWED, config("vp"), normalizer)
    ref, name = reference(trained, gaussians, torch.zeros(3, 2))
    assert name == "exact (mixture)"
    want = gaussians.mixture.affine(trained.normalizer.shift, trained.normalizer.scale)
    torch.testing.assert_close(ref.oracle.mixture.means, want.means)
    torch.testing.assert_close(ref.oracle.mixture.covariances(), want.covariances())
    assert ref.process is trained.process and ref.normalizer is trained.normalizer


def test_reference_without_mixture_is_the_training_sets_memoriser():
    moons = get_dataset("moons")
    assert moons.mixture is None
    train = moons.sample(50, make_generator(0))
    trained = exact_model(SKEWED, config("vp"))
    ref, name = reference(trained, moons, train)
    assert name == "exact (training set)"
    mixture = ref.oracle.mixture
    assert mixture.n_components == 50 and float(mixture.eigenvalues.abs().max()) == 0.0
    z = trained.normalizer.normalize(train).double()
    torch.testing.assert_close(mixture.means, z)
    # At a small noise level the denoiser of a noiseless training point is that point.
    t = torch.full((50,), trained.process.time_at_sigma_ratio(1e-3), dtype=torch.float64)
    alpha = trained.process.alpha(t)[:, None]
    x0 = ref.denoiser()(alpha * z, t).x0
    torch.testing.assert_close(x0, z, atol=1e-6, rtol=0)


# --- error_by_time --------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["vp", "edm", "flow"])
def test_error_by_time_of_the_exact_model_is_zero(gaussians, process):
    exact = exact_model(gaussians.mixture, config(process))
    x0 = gaussians.sample(400, make_generator(1))
    errors = dg.error_by_time(exact, exact, x0, bins=8, seed=2)
    for values in errors.__dict__.values():
        assert len(values) == 8
    assert max(errors.eps_error) < 1e-12
    assert errors.model_loss == errors.reference_loss
    assert all(loss > 0 for loss in errors.reference_loss)  # the irreducible part
    assert all(b > a for a, b in zip(errors.t, errors.t[1:], strict=False))
    assert errors.t[0] > 0 and errors.t[-1] < 1
    assert all(b < a for a, b in zip(errors.log_snr, errors.log_snr[1:], strict=False))
    # log SNR at each bin centre, by the process's own coefficients
    t = torch.tensor(errors.t, dtype=torch.float64)
    want = (exact.process.alpha(t) ** 2 / exact.process.sigma(t) ** 2).log()
    torch.testing.assert_close(torch.tensor(errors.log_snr, dtype=torch.float64), want)


def test_excess_eps_loss_of_a_wrong_model_is_its_eps_error(gaussians):
    """For eps prediction, E||eps_hat - eps||^2 = E||eps* - eps||^2 + E||eps_hat - eps*||^2
    (eps* = E[eps | x_t], the cross term has mean zero): model_loss - reference_loss must
    equal eps_error in every bin up to Monte Carlo noise."""
    cfg = config("vp", prediction="eps")
    exact = exact_model(gaussians.mixture, cfg)
    wrong = exact_model(shifted(gaussians.mixture), cfg, exact.normalizer)
    x0 = gaussians.sample(2000, make_generator(3))
    errors = dg.error_by_time(wrong, exact, x0, bins=12, seed=4)
    excess = [m - r for m, r in zip(errors.model_loss, errors.reference_loss, strict=True)]
    assert max(errors.eps_error) > 0.5  # the shift is visible at high noise
    for e, eps in zip(excess, errors.eps_error, strict=True):
        assert e == pytest.approx(eps, rel=0.15, abs=5e-3)
    assert sum(excess) == pytest.approx(sum(errors.eps_error), rel=0.05)


def test_error_by_time_is_reproducible_by_seed(gaussians):
    cfg = config("vp")
    exact = exact_model(gaussians.mixture, cfg)
    wrong = exact_model(shifted(gaussians.mixture), cfg, exact.normalizer)
    x0 = gaussians.sample(200, make_generator(5))
    a = dg.error_by_time(wrong, exact, x0, bins=4, seed=6)
    b = dg.error_by_time(wrong, exact, x0, bins=4, seed=6)
    c = dg.error_by_time(wrong, exact, x0, bins=4, seed=7)
    assert a == b and a.model_loss != c.model_loss


def test_summary_picks_the_bin_of_largest_excess_loss():
    errors = dg.TimeErrors(
        t=[0.1, 0.5, 0.9], log_snr=[3.0, 0.0, -3.0], model_loss=[1.0, 5.0, 2.0],
        reference_loss=[0.5, 1.0, 1.5], eps_error=[0.1, 0.3, 0.2],
    )  # fmt: skip
    assert dg.summary(errors) == {
        "worst_t": 0.5, "worst_log_snr": 0.0, "worst_excess_loss": 4.0, "median_eps_error": 0.2,
    }  # fmt: skip


# --- nfe_curve ------------------------------------------------------------------------------


def test_nfe_curve_of_the_exact_model(gaussians):
    exact = exact_model(gaussians.mixture, config("edm"))
    curve = dg.nfe_curve(exact, exact, gaussians, steps=[2, 4, 16], n=300, sampler="heun")
    assert (curve.sampler, curve.steps) == ("heun", [2, 4, 16])
    assert curve.nfe == [3, 7, 31]  # Heun: 2 evaluations per step, 1 on the last
    assert curve.model == curve.reference  # same model, sampler, grid and seed
    # Discretisation error only: huge at 2 steps, at the data floor (ratio ~1) at 16.
    assert curve.reference[0] > 10 and curve.reference[-1] < 1.6


def test_nfe_curve_separates_a_wrong_model(gaussians):
    cfg = config("vp")
    exact = exact_model(gaussians.mixture, cfg)
    wrong = exact_model(shifted(gaussians.mixture), cfg, exact.normalizer)
    curve = dg.nfe_curve(wrong, exact, gaussians, steps=[4, 16], n=300)
    assert curve.sampler == "deis" and curve.grid == cfg.sample_grid == "karras"  # vp's default
    assert curve.nfe == [4, 16]
    assert len(curve.model) == len(curve.reference) == 2
    assert curve.reference[-1] < 1.6 and curve.model[-1] > 3 * curve.reference[-1]


# --- prior_mismatch -------------------------------------------------------------------------


def q1_and_prior(exact):
    """q_1 and the prior as torch.distributions, built independently of the oracle."""
    D = torch.distributions
    process, mixture = exact.process, exact.oracle.mixture
    one = torch.ones((), dtype=torch.float64)
    alpha, sigma = process.alpha(one), process.sigma(one)
    cov = alpha**2 * mixture.covariances() + sigma**2 * torch.eye(mixture.dim, dtype=torch.float64)
    q1 = D.MixtureSameFamily(
        D.Categorical(probs=mixture.weights), D.MultivariateNormal(alpha * mixture.means, cov)
    )
    prior = D.MultivariateNormal(
        torch.zeros(mixture.dim, dtype=torch.float64),
        sigma**2 * torch.eye(mixture.dim, dtype=torch.float64),
    )
    return q1, prior


def test_prior_mismatch_of_one_gaussian_is_the_closed_form_kl():
    single = GaussianMixture.full([1.0], [[1.0, -2.0]], [[[2.0, 0.6], [0.6, 0.5]]])
    exact = exact_model(single, config("ve", sigma_max=2.0))
    result = dg.prior_mismatch(exact, n=20_000, seed=1)
    q1, prior = q1_and_prior(exact)
    want = float(torch.distributions.kl_divergence(q1.component_distribution, prior)[0])
    assert want > 0.01
    assert result.upper_bound == pytest.approx(want, rel=1e-9)  # one component: exact
    assert result.n == 20_000 and 0 < result.stderr < 0.1 * want
    assert abs(result.kl - want) < 4 * result.stderr


def test_prior_mismatch_of_a_mixture_matches_quadrature_and_its_bound(gaussians):
    """VE with sigma_max = 2 leaves q_1 visibly non-Gaussian; KL by a 2-D quadrature of
    q_1 log(q_1 / prior) with torch.distributions densities is the reference."""
    exact = exact_model(gaussians.mixture, config("ve", sigma_max=2.0))
    result = dg.prior_mismatch(exact, n=20_000, seed=2)
    q1, prior = q1_and_prior(exact)
    h = 0.1
    axis = torch.arange(-14, 14 + h / 2, h, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_q = q1.log_prob(grid)
    assert float(log_q.exp().sum() * h**2) == pytest.approx(1.0, abs=1e-6)
    want = float((log_q.exp() * (log_q - prior.log_prob(grid))).sum() * h**2)
    assert result.kl > 10 * result.stderr  # clearly positive
    assert abs(result.kl - want) < 4 * result.stderr
    assert result.kl < result.upper_bound  # convexity of KL, by a wide margin here
    assert result.upper_bound > 2 * want


@pytest.mark.parametrize("process", ["vp", "ddpm"])
def test_prior_mismatch_is_tiny_for_a_variance_preserving_default(gaussians, process):
    result = dg.prior_mismatch(exact_model(gaussians.mixture, config(process)), n=5000)
    assert abs(result.kl) < 1e-3 and 0 <= result.upper_bound < 1e-3


def test_prior_mismatch_is_reproducible_by_seed(gaussians):
    exact = exact_model(gaussians.mixture, config("ve", sigma_max=2.0))
    a, b = (dg.prior_mismatch(exact, n=2000, seed=3) for _ in range(2))
    c = dg.prior_mismatch(exact, n=2000, seed=4)
    assert a == b and a.kl != c.kl and a.upper_bound == c.upper_bound


# --- memorisation ---------------------------------------------------------------------------


def test_nearest_distances_match_brute_force():
    gen = make_generator(0)
    x, points = torch.randn(53, 3, generator=gen), torch.randn(31, 3, generator=gen)
    brute = ((x[:, None, :].double() - points[None].double()) ** 2).sum(-1).sqrt().min(1).values
    for chunk in (7, 2048):  # chunks that do and do not divide the rows
        got = dg.nearest_distances(x, points, chunk=chunk)
        assert got.dtype == torch.float64 and got.shape == (53,)
        torch.testing.assert_close(got, brute)
    assert float(dg.nearest_distances(points[:5], points).abs().max()) == 0.0


def test_memorisation_of_copies_and_of_fresh_data(gaussians):
    train = gaussians.sample(1000, make_generator(1))
    fresh = gaussians.sample(1000, make_generator(2))
    other = gaussians.sample(1000, make_generator(3))
    copies = dg.memorisation(train[:500], fresh, train)
    assert copies.median_ratio == 0.0 and float(copies.samples.abs().max()) == 0.0
    torch.testing.assert_close(copies.fresh, dg.nearest_distances(fresh, train))
    honest = dg.memorisation(other, fresh, train)
    assert 0.8 < honest.median_ratio < 1.25
    want = float(honest.samples.median() / honest.fresh.median())
    assert honest.median_ratio == pytest.approx(want)


def test_memorisation_of_the_training_set_oracle_is_copying():
    """Samples of the exact memoriser (the training set's own oracle) sit on training points."""
    moons = get_dataset("moons")
    train = moons.sample(200, make_generator(4))
    trained = exact_model(SKEWED, config("edm"))
    memoriser, _ = reference(trained, moons, train)
    samples = memoriser.sample(200, generator=make_generator(5)).x
    result = dg.memorisation(samples, moons.sample(200, make_generator(6)), train)
    assert result.median_ratio < 0.1


# --- density_grid ---------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["vp", "edm"])
def test_density_grid_of_the_exact_model_is_the_mixture_density(process):
    exact = exact_model(SKEWED, config(process))
    size, (lo, hi) = 25, (-5.0, 5.0)
    grid = dg.density_grid(exact, SKEWED, ((lo, hi), (lo, hi)), size=size)
    assert grid.has_reference and grid.model.shape == grid.reference.shape == (size, size)
    torch.testing.assert_close(grid.x, torch.linspace(lo, hi, size, dtype=torch.float64))
    peak = float(grid.reference.max())
    assert float((grid.model - grid.reference).abs().max()) < 2e-3 * peak
    cell = ((hi - lo) / (size - 1)) ** 2  # the grid covers all the mass
    assert float(grid.model.sum()) * cell == pytest.approx(1.0, abs=1e-3)
    assert float(grid.reference.sum()) * cell == pytest.approx(1.0, abs=1e-3)
    # [iy, ix] layout: the reference is the mixture's density at (x[ix], y[iy])
    iy, ix = 3, 17
    point = torch.tensor([[grid.x[ix], grid.y[iy]]], dtype=torch.float64)
    dists = torch.distributions
    law = dists.MixtureSameFamily(
        dists.Categorical(probs=SKEWED.weights),
        dists.MultivariateNormal(SKEWED.means, SKEWED.covariances()),
    )
    assert float(grid.reference[iy, ix]) == pytest.approx(float(law.log_prob(point).exp()))


def test_density_grid_without_mixture_has_no_reference():
    exact = exact_model(SKEWED, config("vp"))
    grid = dg.density_grid(exact, None, ((-4.0, 4.0), (-3.0, 3.0)), size=6)
    assert not grid.has_reference and float(grid.reference.abs().max()) == 0.0
    assert grid.model.shape == (6, 6) and bool((grid.model > 0).all())
    torch.testing.assert_close(grid.y, torch.linspace(-3.0, 3.0, 6, dtype=torch.float64))


# --- field_frames ---------------------------------------------------------------------------


def test_field_frames_of_the_exact_model_are_the_exact_score():
    cfg = config("vp")
    exact = exact_model(SKEWED, cfg)
    twin = exact_model(SKEWED, cfg)  # another object, the same law
    levels = [3.0, 1.0, 0.2]
    frames = dg.field_frames(twin, exact, ((-3, 3), (-2, 2)), noise_levels=levels, size=9)
    assert [f.noise for f in frames] == pytest.approx(levels, rel=1e-9)
    for frame in frames:
        assert frame.points.shape == frame.model.shape == frame.reference.shape == (81, 2)
        torch.testing.assert_close(frame.model, frame.reference)
        ratio = float(exact.process.sigma_ratio(frame.t))
        assert ratio == pytest.approx(frame.noise, rel=1e-6)
        # grad_x log p_t(z(x)) = score_z / scale, from the oracle's score directly
        z = exact.normalizer.normalize(frame.points).double()
        score = exact.oracle.score(z, frame.t) / exact.normalizer.scale.double()
        torch.testing.assert_close(frame.reference.double(), score, rtol=1e-4, atol=1e-4)
    # the grid: x varies fastest, from the lower-left corner
    torch.testing.assert_close(frames[0].points[:2], torch.tensor([[-3.0, -2.0], [-2.25, -2.0]]))


def test_field_points_toward_the_mean_at_large_noise():
    exact = exact_model(SKEWED, config("vp"))
    mean = SKEWED.mean().float()
    (frame,) = dg.field_frames(exact, exact, ((-4, 4), (-4, 4)), noise_levels=[3.0], size=9)
    away = frame.points - mean
    far = away.norm(dim=1) > 1.0
    cosine = torch.nn.functional.cosine_similarity(frame.reference[far], -away[far], dim=1)
    assert float(cosine.min()) > 0.95


def test_field_frames_separate_a_wrong_model(gaussians):
    cfg = config("vp")
    exact = exact_model(gaussians.mixture, cfg)
    wrong = exact_model(shifted(gaussians.mixture), cfg, exact.normalizer)
    frames = dg.field_frames(wrong, exact, ((-2, 2), (-2, 2)), noise_levels=[1.0], size=5)
    assert float((frames[0].model - frames[0].reference).abs().max()) > 0.1


def test_field_frame_noise_is_the_level_reached_when_clamped(gaussians):
    """VE with sigma_max = 2 never reaches sigma / alpha = 3: the frame sits at t = 1 and says
    the noise it has (2 in standardised units), not the one asked for."""
    exact = exact_model(gaussians.mixture, config("ve", sigma_max=2.0))
    frames = dg.field_frames(exact, exact, ((-2, 2), (-2, 2)), noise_levels=[3.0, 1.0], size=3)
    assert frames[0].t == 1.0 and frames[0].noise == pytest.approx(2.0, rel=1e-9)
    for frame in frames:
        assert float(exact.process.sigma_ratio(frame.t)) == pytest.approx(frame.noise, rel=1e-9)
    assert frames[1].noise == pytest.approx(1.0, rel=1e-9)


def test_prior_mismatch_stderr_is_the_sample_standard_error():
    """stderr = std(log q_1 - log prior) / sqrt(n): halving n widens it by ~sqrt(2)."""
    exact = exact_model(SKEWED, config("ve", sigma_max=2.0))
    big = dg.prior_mismatch(exact, n=16_000, seed=5)
    small = dg.prior_mismatch(exact, n=4_000, seed=6)
    assert small.stderr / big.stderr == pytest.approx(math.sqrt(4), rel=0.15)
