"""The exact oracle of a Gaussian mixture: density, score, denoiser and targets against
independent float64 references (torch.distributions, autograd, Tweedie's formula)."""

from __future__ import annotations

import math

import pytest
import torch

import diffusion.measure.oracle as oracle_module
from diffusion.data.mixture import GaussianMixture
from diffusion.data.normalize import Normalizer
from diffusion.measure.oracle import Oracle, OracleDenoiser
from diffusion.parametrize import TARGETS, target_from
from diffusion.processes import PROCESSES
from diffusion.training.config import TrainConfig
from diffusion.workflows.exact import ExactModel, exact_model

F64 = torch.float64
GAUSSIAN_PROCESSES = sorted(set(PROCESSES) - {"poisson"})
TIMES = (0.0, 0.05, 0.3, 0.7, 1.0)


def random_mixture(dim: int, kind: str, k: int = 3, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.2
    means = 2 * torch.randn(k, dim, generator=g, dtype=F64)
    if kind == "iso":
        stds = 0.2 + torch.rand(k, generator=g, dtype=F64)
        return GaussianMixture.isotropic(weights, means, stds)
    a = torch.randn(k, dim, dim, generator=g, dtype=F64)
    covariances = a @ a.transpose(1, 2) / dim + 0.1 * torch.eye(dim, dtype=F64)
    return GaussianMixture.full(weights, means, covariances)


def noised_reference(m: GaussianMixture, alpha: float, sigma: float):
    """sum_k w_k N(alpha m_k, alpha^2 C_k + sigma^2 I) built by hand with torch.distributions."""
    alpha = torch.as_tensor(alpha, dtype=F64)
    sigma = torch.as_tensor(sigma, dtype=F64)
    eye = torch.eye(m.dim, dtype=F64)
    cov = alpha**2 * m.covariances() + sigma**2 * eye
    return torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=m.weights),
        torch.distributions.MultivariateNormal(alpha * m.means, covariance_matrix=cov),
    )


def coefficients(process, t: float) -> tuple[float, float]:
    tt = torch.tensor(t, dtype=F64)
    return float(process.alpha(tt)), float(process.sigma(tt))


def points_near(m: GaussianMixture, alpha: float, sigma: float, n: int = 16, seed: int = 1):
    """Test points spread over the noised law (and a little beyond)."""
    g = torch.Generator().manual_seed(seed)
    x0 = m.sample(n, g).double()
    return alpha * x0 + (sigma + 0.3) * torch.randn(n, m.dim, generator=g, dtype=F64)


# --- log_prob and score against torch.distributions ----------------------------------------


@pytest.mark.parametrize("name", GAUSSIAN_PROCESSES)
@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("kind", ["iso", "full"])
def test_log_prob_and_score_match_torch_distributions(name, dim, kind):
    m = random_mixture(dim, kind, seed=dim)
    process = PROCESSES[name]()
    oracle = Oracle(m, process)
    for t in TIMES:
        alpha, sigma = coefficients(process, t)
        ref = noised_reference(m, alpha, sigma)
        x = points_near(m, alpha, sigma).requires_grad_(True)
        log_p = ref.log_prob(x)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
        x = x.detach()
        tt = torch.tensor(t, dtype=F64)
        exact = oracle.exact(x, tt)
        torch.testing.assert_close(exact.log_prob, log_p.detach(), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(exact.score, grad, rtol=1e-8, atol=1e-8 / max(sigma, 1e-3))
        torch.testing.assert_close(oracle.log_prob(x, tt), exact.log_prob)
        torch.testing.assert_close(oracle.score(x, tt), exact.score)


@pytest.mark.parametrize("kind", ["iso", "full"])
def test_score_is_gradient_of_oracle_log_prob(kind):
    m = random_mixture(3, kind, seed=11)
    oracle = Oracle(m, PROCESSES["vp"]())
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in (0.1, 0.5):
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(oracle.log_prob(xg, t).sum(), xg)
        torch.testing.assert_close(oracle.score(x, t), grad)


def test_per_point_times_equal_scalar_times():
    m = random_mixture(2, "full", seed=3)
    oracle = Oracle(m, PROCESSES["edm"]())
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=F64)
    batch = oracle.exact(x, t)
    for i in range(6):
        single = oracle.exact(x[i : i + 1], float(t[i]))
        torch.testing.assert_close(batch.log_prob[i : i + 1], single.log_prob)
        torch.testing.assert_close(batch.score[i : i + 1], single.score)
        torch.testing.assert_close(batch.x0[i : i + 1], single.x0)


def test_chunked_batches_equal_one_batch(monkeypatch):
    m = random_mixture(3, "full", k=5, seed=4)
    oracle = Oracle(m, PROCESSES["flow"]())
    x = torch.randn(37, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.linspace(0.05, 0.95, 37, dtype=F64)
    whole = oracle.exact(x, t)
    monkeypatch.setattr(oracle_module, "_CHUNK_ELEMENTS", 5 * 3 * 4)  # 4 points per chunk
    parts = Oracle(m, PROCESSES["flow"]()).exact(x, t)
    torch.testing.assert_close(parts.log_prob, whole.log_prob)
    torch.testing.assert_close(parts.score, whole.score)
    torch.testing.assert_close(parts.x0, whole.x0)


# --- the denoiser: Tweedie, conditioning, limits --------------------------------------------


@pytest.mark.parametrize("name", ["ddpm", "vp", "subvp", "ve", "edm", "flow"])
@pytest.mark.parametrize("kind", ["iso", "full"])
def test_x0_satisfies_tweedie(name, kind):
    m = random_mixture(2, kind, seed=5)
    process = PROCESSES[name]()
    oracle = Oracle(m, process)
    for t in (0.02, 0.3, 0.7, 0.95):
        alpha, sigma = coefficients(process, t)
        if alpha < 1e-3:
            continue
        x = points_near(m, alpha, sigma).requires_grad_(True)
        (score,) = torch.autograd.grad(noised_reference(m, alpha, sigma).log_prob(x).sum(), x)
        tweedie = (x.detach() + sigma**2 * score) / alpha
        x0 = oracle.x0(x.detach(), torch.tensor(t, dtype=F64))
        torch.testing.assert_close(x0, tweedie, rtol=1e-9, atol=1e-9)


def test_x0_of_single_gaussian_is_conditioning_formula():
    # x0 ~ N(mu, C), x = alpha x0 + sigma eps: E[x0|x] = mu + alpha C (alpha^2 C + sigma^2 I)^-1 (x - alpha mu)
    mu = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    c = torch.tensor([[[2.0, 0.5, 0.1], [0.5, 1.0, -0.3], [0.1, -0.3, 0.5]]], dtype=F64)
    oracle = Oracle(GaussianMixture.full(torch.ones(1), mu, c))
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    alpha, sigma = torch.full((10,), 0.6, dtype=F64), torch.full((10,), 0.8, dtype=F64)
    s = 0.36 * c[0] + 0.64 * torch.eye(3, dtype=F64)
    expected = mu + (x - 0.6 * mu) @ torch.linalg.solve(s, 0.6 * c[0]).T
    torch.testing.assert_close(oracle.exact_at(x, alpha, sigma).x0, expected)


def test_x0_limits_no_noise_and_no_signal():
    m = random_mixture(2, "full", seed=6)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    # sigma = 0: x_t is x0 itself
    flow = Oracle(m, PROCESSES["flow"]())
    torch.testing.assert_close(flow.x0(x, 0.0), x)
    # alpha = 0 (flow at t = 1): x_t says nothing about x0, E[x0 | x] is the mean
    torch.testing.assert_close(flow.x0(100 * x, 1.0), m.mean().expand(8, 2))
    torch.testing.assert_close(flow.score(x, 1.0), -x)  # pure N(0, I) noise


def test_denoiser_decomposes_x():
    # alpha E[x0|x] + sigma E[eps|x] = E[x_t | x_t] = x
    m = random_mixture(2, "full", seed=7)
    for name in ("vp", "edm", "flow"):
        process = PROCESSES[name]()
        denoiser = Oracle(m, process).denoiser()
        for t in (0.1, 0.5, 0.9):
            alpha, sigma = coefficients(process, t)
            x = points_near(m, alpha, sigma)
            pred = denoiser(x, torch.tensor(t, dtype=F64))
            torch.testing.assert_close(alpha * pred.x0 + sigma * pred.eps, x)


# --- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ddpm", "vp", "edm", "flow"])
@pytest.mark.parametrize("target", TARGETS)
def test_target_consistent_with_target_from(name, target):
    m = random_mixture(2, "full", seed=8)
    process = PROCESSES[name]()
    oracle = Oracle(m, process)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=F64)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    d_alpha, d_sigma = process.d_alpha(t)[:, None], process.d_sigma(t)[:, None]
    # independent score and x0: autograd of the reference density, Tweedie
    xg = x.clone().requires_grad_(True)
    log_p = torch.stack(
        [noised_reference(m, alpha[i, 0], sigma[i, 0]).log_prob(xg[i]) for i in range(4)]
    )
    (score,) = torch.autograd.grad(log_p.sum(), xg)
    x0 = (x + sigma**2 * score) / alpha
    eps = -sigma * score
    expected = target_from(target, x0, eps, alpha, sigma, d_alpha, d_sigma)
    torch.testing.assert_close(oracle.target(target, x, t), expected, rtol=1e-7, atol=1e-7)


def test_targets_of_standard_gaussian_closed_form():
    # x0 ~ N(0, I): x_t ~ N(0, r^2 I), r^2 = alpha^2 + sigma^2; E[eps|x] = sigma x / r^2,
    # E[x0|x] = alpha x / r^2, v = (alpha eps - sigma x0) / r has mean 0.
    m = GaussianMixture.isotropic(torch.ones(1), torch.zeros(1, 3), torch.ones(1))
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    for name in ("vp", "ve", "flow"):
        process = PROCESSES[name]()
        oracle = Oracle(m, process)
        for tt in torch.tensor([0.2, 0.6], dtype=F64):
            a, s = float(process.alpha(tt)), float(process.sigma(tt))
            da, ds = float(process.d_alpha(tt)), float(process.d_sigma(tt))
            r2 = a * a + s * s
            torch.testing.assert_close(oracle.target("eps", x, tt), s * x / r2)
            torch.testing.assert_close(oracle.target("x0", x, tt), a * x / r2)
            torch.testing.assert_close(oracle.target("score", x, tt), -x / r2)
            velocity = (da * a + ds * s) * x / r2
            torch.testing.assert_close(oracle.target("velocity", x, tt), velocity)
            v = oracle.target("v", x, tt)
            torch.testing.assert_close(v, torch.zeros_like(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["vp", "edm", "flow"])
def test_velocity_satisfies_continuity_equation(name):
    # d/dt log p_t(x) = -div u(x, t) - u . grad log p_t(x)  (finite difference in t)
    m = random_mixture(2, "full", seed=9)
    process = PROCESSES[name]()
    oracle = Oracle(m, process)
    t, h = torch.tensor(0.4, dtype=F64), 1e-5
    alpha, sigma = coefficients(process, 0.4)
    x = points_near(m, alpha, sigma, n=10).requires_grad_(True)
    u = oracle.target("velocity", x, t)
    div = sum(torch.autograd.grad(u[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    x = x.detach()
    dlogp = (oracle.log_prob(x, t + h) - oracle.log_prob(x, t - h)) / (2 * h)
    rhs = -div - (u.detach() * oracle.score(x, t)).sum(1)
    torch.testing.assert_close(dlogp, rhs, rtol=1e-4, atol=1e-4)


# --- stability and dtypes -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["iso", "full"])
def test_far_from_every_mode_is_finite(kind):
    m = random_mixture(2, kind, seed=10)
    process = PROCESSES["edm"]()
    oracle = Oracle(m, process)
    x = torch.tensor([[1e3, 1e3], [-1e3, 0.0], [0.0, 1e3]], dtype=F64)
    for t in (0.05, 0.3):
        alpha, sigma = coefficients(process, t)
        exact = oracle.exact(x, t)
        assert bool(exact.log_prob.isfinite().all() and exact.score.isfinite().all())
        assert bool(exact.x0.isfinite().all())
        assert bool((exact.log_prob < -1e4).all())
        torch.testing.assert_close(exact.log_prob, noised_reference(m, alpha, sigma).log_prob(x))
        # far away the nearest (in Mahalanobis terms) component dominates: score points home
        assert bool(((exact.score * x).sum(1) < 0).all())
    # float32 input: float32 output, close to the float64 answer
    x32 = x.float()
    exact32 = oracle.exact(x32, 0.3)
    assert exact32.log_prob.dtype == exact32.score.dtype == exact32.x0.dtype == torch.float32
    exact64 = oracle.exact(x, 0.3)
    torch.testing.assert_close(exact32.log_prob, exact64.log_prob.float())
    torch.testing.assert_close(exact32.score, exact64.score.float())


def test_float32_oracle_dtype():
    m = random_mixture(2, "full", seed=12)
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    lo = Oracle(m, PROCESSES["vp"](), dtype=torch.float32).exact(x, 0.5)
    hi = Oracle(m, PROCESSES["vp"]()).exact(x, 0.5)
    assert lo.score.dtype == torch.float32
    torch.testing.assert_close(lo.log_prob, hi.log_prob, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lo.score, hi.score, rtol=1e-4, atol=1e-4)


def test_python_float_time_is_not_rounded_to_float32():
    m = GaussianMixture.isotropic(torch.ones(1), torch.zeros(1, 2), torch.full((1,), 0.1))
    oracle = Oracle(m, PROCESSES["ddpm"]())
    x = torch.ones(3, 2, dtype=F64)
    by_float = oracle.log_prob(x, 0.05)
    by_tensor = oracle.log_prob(x, torch.tensor(0.05, dtype=F64))
    torch.testing.assert_close(by_float, by_tensor, rtol=1e-12, atol=0)


def test_poisson_is_refused():
    with pytest.raises(ValueError, match="Gaussian marginals"):
        Oracle(random_mixture(2, "iso"), PROCESSES["poisson"]())


# --- Oracle.points: the memorising denoiser -------------------------------------------------


def test_points_oracle_limits():
    pts = torch.tensor([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0], [1.0, -1.0]], dtype=F64)
    oracle = Oracle.points(pts, PROCESSES["ve"]())
    ones = torch.ones(4, dtype=F64)
    near = pts + 0.01 * torch.tensor([[1.0, -1.0], [0.5, 0.5], [-1.0, 0.0], [0.0, 1.0]])
    tiny = oracle.exact_at(near, ones, 1e-2 * ones)
    torch.testing.assert_close(tiny.x0, pts, rtol=0, atol=1e-10)
    huge = oracle.exact_at(near, ones, 1e4 * ones)
    torch.testing.assert_close(huge.x0, pts.mean(0).expand(4, 2), rtol=0, atol=1e-6)
    # through the process: tiny t is tiny sigma
    ve = PROCESSES["ve"]()
    t_small = ve.time_at_sigma_ratio(1e-3)
    torch.testing.assert_close(oracle.x0(near, t_small), pts, rtol=0, atol=1e-10)


def test_points_oracle_log_prob_is_kernel_density():
    pts = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    oracle = Oracle.points(pts, None)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    alpha, sigma = 0.8, 0.5
    comps = torch.distributions.Normal(alpha * pts[None], sigma).log_prob(x[:, None]).sum(-1)
    expected = torch.logsumexp(comps, 1) - math.log(6)
    got = oracle.exact_at(x, torch.full((5,), alpha, dtype=F64), torch.full((5,), sigma, dtype=F64))
    torch.testing.assert_close(got.log_prob, expected)
    # the denoiser is the softmax-weighted average of the points
    weights = torch.softmax(comps, 1)
    torch.testing.assert_close(got.x0, weights @ pts)


# --- OracleDenoiser, ExactModel -------------------------------------------------------------


def test_oracle_denoiser_grad_and_nfe():
    m = random_mixture(2, "full", seed=13)
    process = PROCESSES["edm"]()
    oracle = Oracle(m, process)
    denoiser = oracle.denoiser()
    assert isinstance(denoiser, OracleDenoiser) and denoiser.nfe == 0
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    t = torch.tensor(0.4)
    pred = denoiser.predict(x, t)
    assert pred.x0.requires_grad and pred.eps.requires_grad
    (grad,) = torch.autograd.grad(pred.x0.sum(), x)
    assert bool(grad.isfinite().all()) and grad.abs().sum() > 0
    out = denoiser(x, t)
    assert not out.x0.requires_grad and not out.eps.requires_grad
    assert denoiser.nfe == 2
    torch.testing.assert_close(out.x0, oracle.x0(x.detach(), 0.4))
    sigma = float(process.sigma(torch.tensor(0.4, dtype=F64)))
    torch.testing.assert_close(out.eps, -sigma * oracle.score(x.detach(), 0.4))
    torch.testing.assert_close(out.eps, oracle.target("eps", x.detach(), 0.4))


def test_exact_model_standardises_by_mixture_moments():
    m = GaussianMixture.full(
        torch.tensor([1.0, 2.0]), torch.tensor([[5.0, -3.0], [7.0, -1.0]]),
        torch.tensor([[[2.0, 0.3], [0.3, 0.5]], [[1.0, 0.0], [0.0, 3.0]]]),
    )  # fmt: skip
    config = TrainConfig(process="edm", dataset="gaussians").validate()
    model = exact_model(m, config)
    assert isinstance(model, ExactModel) and model.dim == 2
    assert type(model.process) is PROCESSES["edm"]
    torch.testing.assert_close(model.normalizer.shift, m.mean().float())
    torch.testing.assert_close(model.normalizer.scale, m.std().float())
    inner = model.oracle.mixture
    torch.testing.assert_close(inner.mean(), torch.zeros(2, dtype=F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(inner.std(), torch.ones(2, dtype=F64), atol=1e-6, rtol=0)
    assert isinstance(model.denoiser(), OracleDenoiser)
    # a given normaliser is used as is
    given = Normalizer(shift=torch.tensor([1.0, 1.0]), scale=torch.tensor([2.0, 4.0]))
    other = exact_model(m, config, given)
    assert other.normalizer is given
    torch.testing.assert_close(
        other.oracle.mixture.mean(), (m.mean() - 1) / torch.tensor([2.0, 4.0], dtype=F64)
    )


def single_gaussian() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    mean = torch.tensor([1.0, -2.0], dtype=F64)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
    return GaussianMixture.full(torch.ones(1), mean[None], cov[None]), mean, cov


@pytest.mark.parametrize(
    ("process", "sampler", "steps"),
    [("edm", "heun", 40), ("vp", "heun", 40), ("flow", "euler", 100), ("vp", "euler", 150)],
)
def test_exact_model_ode_sampling_reproduces_gaussian(process, sampler, steps):
    m, mean, cov = single_gaussian()
    model = exact_model(m, TrainConfig(process=process, dataset="gaussians").validate())
    result = model.sample(
        20_000, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0)
    )
    x = result.x.double()
    assert result.nfe == (2 * steps - 1 if sampler == "heun" else steps)
    # sampling error of the covariance ~1% at n = 20000, discretisation a few per mille
    err = (torch.cov(x.T) - cov).abs().max() / cov.diagonal().max()
    assert err < 0.04, torch.cov(x.T)
    assert (x.mean(0) - mean).abs().max() < 0.05


@pytest.mark.parametrize(
    ("process", "sampler", "steps"),
    [
        ("edm", "dpm-solver++", 15),
        ("ve", "rk45", 10),
        ("ddpm", "ddim", 20),
        ("vp", "ancestral", 30),
    ],
)
def test_exact_model_other_samplers_finite_with_nfe(process, sampler, steps):
    m, mean, cov = single_gaussian()
    model = exact_model(m, TrainConfig(process=process, dataset="gaussians").validate())
    result = model.sample(
        2000, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(1)
    )
    assert result.x.shape == (2000, 2) and bool(result.x.isfinite().all())
    assert result.nfe >= (1 if sampler == "rk45" else steps)
    # loose: a first-order sampler with few steps still lands near the law
    torch.testing.assert_close(torch.cov(result.x.double().T), cov, atol=0.4, rtol=0.25)
    assert (result.x.double().mean(0) - mean).abs().max() < 0.15


@pytest.mark.parametrize("process_name", ["vp", "edm", "flow"])
def test_isotropic_fast_path_equals_the_general_path(process_name):
    """The O(B K) isotropic path and the per-axis path give the same answers."""
    g = torch.Generator().manual_seed(11)
    k, d = 7, 3
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    stds = torch.rand(k, generator=g, dtype=torch.float64) * 0.5
    iso = GaussianMixture.isotropic(weights, means, stds)
    general = GaussianMixture.full(
        weights, means, torch.diag_embed(stds[:, None].expand(k, d) ** 2)
    )
    process = PROCESSES[process_name]()
    fast, slow = Oracle(iso, process), Oracle(general, process)
    assert fast._isotropic and not slow._isotropic
    x = 2 * torch.randn(50, d, generator=g, dtype=torch.float64)
    t = torch.rand(50, generator=g, dtype=torch.float64) * 0.98 + 0.01
    a, b = fast.exact(x, t), slow.exact(x, t)
    for name in ("log_prob", "score", "x0"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("steps", [10, 20, 50])
def test_heun_on_ddpm_starts_with_an_euler_step(steps):
    """DDPM's cosine schedule starts at sigma / alpha ~ 2e4; Heun's trapezoid over that first
    step used to blow the covariance up (~470 instead of 4.3 at 10 steps)."""
    from diffusion.samplers.ode import HEUN_MAX_SIGMA

    cov = torch.tensor([[[0.3, 0.1], [0.1, 0.2]]] * 2, dtype=torch.float64)
    mixture = GaussianMixture.full(
        torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), cov
    )
    model = exact_model(mixture, TrainConfig(process="ddpm", dataset="gaussians").validate())
    one = torch.ones((), dtype=torch.float64)
    assert float(model.process.sigma_ratio(one)) > HEUN_MAX_SIGMA  # the case this is about
    result = model.sample(
        20_000, sampler="heun", steps=steps, generator=torch.Generator().manual_seed(1)
    )
    assert result.nfe == 2 * steps - 2  # the first and the last step are Euler steps
    got = torch.cov(result.x.double().T)
    torch.testing.assert_close(got, mixture.covariances()[0] + torch.diag(torch.tensor([4.0, 0.0], dtype=torch.float64)),
                               rtol=0, atol=0.25)  # fmt: skip
