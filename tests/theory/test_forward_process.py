"""Note 3, "The forward process": the identities of docs/theory/03-forward-process.md.

- Composing T one-step DDPM transitions gives the closed-form marginal (Ho et al. 2020, Eq. 4).
- Step index k sits at time t = k / T.
- The original demo's schedule leaves alpha_bar_T ~ 0.78; the check refuses it.
- The mean and variance of each SDE, integrated from their ODEs, are alpha(t) and sigma(t).
- The oracle's noised mixture is the law of alpha x0 + sigma noise (a scaled convolution).
"""

from __future__ import annotations

import math

import pytest
import torch
from theory_helpers import F64, mixture_2d, noised_samples

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.oracle import Oracle
from diffusion.processes import DDPM, EDM, VE, VP, FlowMatching, SubVP, TerminalSignalError
from diffusion.samplers.odeint import dopri5

# --- DDPM: one step at a time against the closed form ------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid"])
def test_composed_one_step_transitions_give_the_closed_form_marginal(schedule: str) -> None:
    # Data x0 ~ N(mu, S). One step x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) z maps a
    # Gaussian's moments by mean -> sqrt(1 - beta_k) mean, cov -> (1 - beta_k) cov + beta_k I.
    process = DDPM(1000, schedule)
    mu = torch.tensor([1.5, -0.5], dtype=F64)
    S = torch.tensor([[0.8, 0.3], [0.3, 0.4]], dtype=F64)
    eye = torch.eye(2, dtype=F64)
    mean, cov = mu.clone(), S.clone()
    means, covs = [], []
    for beta in process.betas.tolist():
        mean = math.sqrt(1 - beta) * mean
        cov = (1 - beta) * cov + beta * eye
        means.append(mean)
        covs.append(cov)
    # Eq. 4 of Ho et al. 2020 at the time of step k: N(alpha mu, alpha^2 S + sigma^2 I).
    t = process.step_to_time(torch.arange(1, process.steps + 1))
    alpha, sigma = process.alpha(t)[:, None, None], process.sigma(t)[:, None, None]  # (T, 1, 1)
    torch.testing.assert_close(torch.stack(means), alpha[:, 0] * mu, rtol=1e-11, atol=1e-15)
    closed = alpha**2 * S + sigma**2 * eye
    torch.testing.assert_close(torch.stack(covs), closed, rtol=1e-11, atol=1e-15)


def test_composed_transitions_by_simulation_match_the_marginal_draw() -> None:
    # The same statement on samples: 200 single steps from mixture data against one draw of
    # x_T = alpha x0 + sigma noise. Compare means and covariances within 5 standard errors.
    process = DDPM(200, "linear")
    m = mixture_2d()
    n = 100_000
    g = torch.Generator().manual_seed(0)
    x0 = m.sample(n, g).double()
    x = x0.clone()
    k = 60  # stop half-way, where signal and noise are both present
    for beta in process.betas[:k].tolist():
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(n, 2, generator=g, dtype=F64)
    t = process.step_to_time(k).expand(n)
    y = process.marginal(x0, t, torch.randn(n, 2, generator=g, dtype=F64))
    alpha = process.alpha(t[0])
    assert 0.3 < alpha < 0.95  # both terms matter at this step
    for stat in (lambda z: z, lambda z: z[:, :1] * z[:, 1:], lambda z: z.square()):
        a, b = stat(x), stat(y)
        se = torch.sqrt((a.var(0) + b.var(0)) / n)
        assert ((a.mean(0) - b.mean(0)).abs() < 5 * se).all()


def test_step_k_sits_at_time_k_over_T() -> None:
    process = DDPM(50, "cosine")
    k = torch.arange(51)
    t = process.step_to_time(k)
    torch.testing.assert_close(t, k.double() / 50, rtol=0, atol=0)
    # alpha(k / T)^2 is alpha_bar_k, the running product, with alpha_bar_0 = 1 at t = 0.
    alpha_bar = torch.cumprod(1 - process.betas, 0)
    torch.testing.assert_close(process.alpha(t[1:]) ** 2, alpha_bar, rtol=1e-13, atol=0)
    assert process.alpha(t[:1]).item() == 1.0 and process.sigma(t[:1]).item() == 0.0
    # Training draws steps k in 1..T (Algorithm 1 of Ho et al. 2020), i.e. times k / T.
    drawn = process.sample_time(2000, generator=torch.Generator().manual_seed(1)).double() * 50
    steps = drawn.round()
    torch.testing.assert_close(drawn, steps, rtol=0, atol=1e-4)  # float32 times
    assert steps.min() == 1 and steps.max() == 50
    # Sampling walks the same grid back from t = 1 ("trailing").
    torch.testing.assert_close(process.time_grid(50), t.flip(0), rtol=0, atol=0)


# --- the terminal signal --------------------------------------------------------------------


def prior_term(process) -> float:
    """E over unit-variance 2-D data of KL(q(x_1 | x0) || N(0, I)): the L_T term of the bound,
    (d (sigma^2 - 1 - ln sigma^2) + alpha^2 E|x0|^2) / 2 with E|x0|^2 = d = 2."""
    one = torch.ones((), dtype=F64)
    a2, s2 = process.alpha(one).item() ** 2, process.sigma(one).item() ** 2
    return 0.5 * (2 * (s2 - 1 - math.log(s2)) + a2 * 2)


def test_the_original_demo_schedule_leaves_most_of_the_signal() -> None:
    # The demo this toolkit grew from: T = 100, betas linear from 1e-5 to 5e-3.
    with pytest.raises(TerminalSignalError):
        DDPM(100, "linear", beta_start=1e-5, beta_end=5e-3)
    demo = DDPM(100, "linear", beta_start=1e-5, beta_end=5e-3, allow_terminal_signal=True)
    alpha_bar_T = demo.alpha_bar[-1].item()
    # prod (1 - beta) ~ exp(-sum beta) = exp(-100 (1e-5 + 5e-3) / 2) = exp(-0.2505) = 0.778.
    assert alpha_bar_T == pytest.approx(math.exp(-0.2505), rel=2e-3)
    assert 0.77 < alpha_bar_T < 0.79
    # Its x_T is far from N(0, I): more than a nat per point for unit-variance 2-D data...
    assert prior_term(demo) > 1.0
    # ...where the default schedule's is below 1e-8 nats.
    default = DDPM()
    assert default.alpha_bar[-1].item() < 1e-8
    assert prior_term(default) < 1e-8


# --- continuous SDEs: the moment ODEs give alpha and sigma -------------------------------------


def vp_integral(p: VP, t: torch.Tensor) -> torch.Tensor:
    """int_0^t beta(s) ds for beta linear from beta_min to beta_max."""
    return p.beta_min * t + 0.5 * (p.beta_max - p.beta_min) * t**2


# The drift f(t) and squared diffusion g(t)^2 as the papers write them (not from alpha, sigma).
PAPER_COEFFICIENTS = {
    # VP, Eq. 11 of Song et al. 2021: dx = -beta/2 x dt + sqrt(beta) dw.
    "vp": (VP, lambda p, t: -0.5 * p.beta(t), lambda p, t: p.beta(t)),
    # sub-VP, Eq. 12: g^2 = beta (1 - exp(-2 int_0^t beta)).
    "subvp": (
        SubVP,
        lambda p, t: -0.5 * p.beta(t),
        lambda p, t: p.beta(t) * (1 - torch.exp(-2 * vp_integral(p, t))),
    ),
    # VE, Eq. 9: dx = sqrt(d sigma^2 / dt) dw with sigma = sigma_min (sigma_max / sigma_min)^t.
    "ve": (
        VE,
        lambda p, t: 0 * t,
        lambda p, t: (
            2
            * math.log(p.sigma_max / p.sigma_min)
            * (p.sigma_min * (p.sigma_max / p.sigma_min) ** t) ** 2
        ),
    ),
}


def moment_ode(f, g2):
    """dm/dt = f m and dv/dt = 2 f v + g^2: mean and variance of dx = f x dt + g dw from a fixed
    start (Särkkä & Solin 2019, Eqs. 5.50-5.51 for a linear SDE)."""

    def rhs(t: float, state: torch.Tensor) -> torch.Tensor:
        tt = torch.tensor(t, dtype=F64)
        ft, gt = float(f(tt)), float(g2(tt))
        return torch.stack([ft * state[0], 2 * ft * state[1] + gt])

    return rhs


def integrate_moments(rhs, state, t0: float, times: list[float]) -> list[torch.Tensor]:
    """The state at each of `times` (increasing), integrating piecewise from t0."""
    out = []
    for t in times:
        state = dopri5(rhs, state, t0, t, rtol=1e-11, atol=1e-13).y
        out.append(state)
        t0 = t
    return out


TIMES = [0.05, 0.2, 0.5, 0.8, 1.0]


@pytest.mark.parametrize("name", sorted(PAPER_COEFFICIENTS))
def test_sde_moment_odes_integrate_to_alpha_and_sigma(name: str) -> None:
    make, f, g2 = PAPER_COEFFICIENTS[name]
    process = make()
    inner = torch.linspace(0.01, 1, 50, dtype=F64)
    # The library's f and g^2 (derived from alpha and sigma) are the paper's.
    torch.testing.assert_close(process.drift(inner), f(process, inner), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        process.diffusion_squared(inner), g2(process, inner), rtol=1e-9, atol=0
    )
    # Integrate the paper's moment ODEs from x(0) = x0, one fixed data point (m = 1 per unit
    # of x0, v = 0). VE jumps to sigma_min at t = 0+ in the code (sigma(0) = 0 is the data
    # itself): start it there, v(0+) = sigma_min^2, so the path is x0 + sigma(t) noise.
    t0, v0 = (0.0, 0.0) if name != "ve" else (1e-12, process.sigma_min**2)
    start = torch.tensor([1.0, v0], dtype=F64)
    states = integrate_moments(moment_ode(lambda t: f(process, t), lambda t: g2(process, t)),
                               start, t0, TIMES)  # fmt: skip
    for t, state in zip(TIMES, states, strict=True):
        tt = torch.tensor(t, dtype=F64)
        assert state[0].item() == pytest.approx(process.alpha(tt).item(), rel=1e-8)
        assert math.sqrt(state[1].item()) == pytest.approx(process.sigma(tt).item(), rel=1e-8)


@pytest.mark.parametrize(("make", "t_end"), [(FlowMatching, 0.99), (EDM, 1.0)])
def test_flow_and_edm_paths_have_the_same_moment_odes(make, t_end: float) -> None:
    # Any path x_t = alpha x0 + sigma noise is the marginal of dx = f x dt + g dw with
    # f = alpha' / alpha and g^2 = (sigma^2)' - 2 f sigma^2 (Kingma et al. 2021, App. A).
    process = make()
    times = [t_end / 4, t_end / 2, t_end]  # flow: f = -1 / (1 - t) is singular at t = 1
    states = integrate_moments(moment_ode(process.drift, process.diffusion_squared),
                               torch.tensor([1.0, 0.0], dtype=F64), 0.0, times)  # fmt: skip
    for t, state in zip(times, states, strict=True):
        tt = torch.tensor(t, dtype=F64)
        assert state[0].item() == pytest.approx(process.alpha(tt).item(), rel=1e-6)
        assert math.sqrt(state[1].item()) == pytest.approx(process.sigma(tt).item(), rel=1e-6)


# --- the noised mixture is a scaled convolution ------------------------------------------------


@pytest.mark.parametrize(
    ("make", "t"), [(VP, 0.3), (SubVP, 0.5), (VE, 0.4), (EDM, 0.6), (FlowMatching, 0.7)]
)
def test_oracle_noised_density_is_the_convolution_in_1d(make, t: float) -> None:
    # p_t(x) = int p_0(y) N(x; alpha y, sigma^2) dy, by quadrature over y.
    m = GaussianMixture.isotropic(
        torch.tensor([0.6, 0.4]), torch.tensor([[-1.0], [1.5]]), torch.tensor([0.5, 0.3])
    )
    process = make()
    oracle = Oracle(m, process)
    tt = torch.tensor(t, dtype=F64)
    alpha, sigma = process.alpha(tt).item(), process.sigma(tt).item()
    y = torch.linspace(-6, 6, 24001, dtype=F64)[:, None]
    ones = torch.ones(y.shape[0], dtype=F64)
    p0 = oracle.exact_at(y, ones, 0 * ones).log_prob.exp() * (12 / 24000)
    x = torch.linspace(-4, 4, 41, dtype=F64)[:, None] * max(alpha, sigma)
    kernel = torch.exp(-0.5 * ((x - alpha * y.T) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    convolution = kernel @ p0  # (41,)
    exact = oracle.log_prob(x, t).exp()
    torch.testing.assert_close(exact, convolution, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(("make", "t"), [(VP, 0.3), (VE, 0.4), (FlowMatching, 0.5)])
def test_oracle_noised_density_is_the_law_of_the_noised_samples(make, t: float) -> None:
    # Expectations of test functions: by quadrature under the oracle's p_t, and by Monte Carlo
    # over alpha x0 + sigma noise with x0 from the mixture. Allow 5 standard errors.
    m = mixture_2d()
    process = make()
    oracle = Oracle(m, process)
    n = 200_000
    _, x_t = noised_samples(m, process, t, n, torch.Generator().manual_seed(4))
    scale = max(process.alpha(torch.tensor(t)).item() * 3, process.sigma(torch.tensor(t)).item())
    w = 3.0 * scale + 2.0
    h = 2 * w / 400
    axis = -w + h * (torch.arange(400, dtype=F64) + 0.5)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    weights = oracle.log_prob(grid, t).exp() * h * h
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    tests = {
        "x": lambda z: z[:, 0],
        "y": lambda z: z[:, 1],
        "xy": lambda z: z[:, 0] * z[:, 1],
        "x^2": lambda z: z[:, 0] ** 2,
        "x > 0, y < 0": lambda z: ((z[:, 0] > 0) & (z[:, 1] < 0)).double(),
        "cos(x + y)": lambda z: torch.cos(z.sum(1)),
    }
    for name, h_fn in tests.items():
        quadrature = (weights * h_fn(grid)).sum()
        values = h_fn(x_t)
        se = values.std() / math.sqrt(n)
        assert abs(values.mean() - quadrature) < 5 * se, name
