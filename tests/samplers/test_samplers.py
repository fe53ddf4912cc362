"""Samplers fed an exact network for Gaussian data must give known answers.

For data x0 ~ N(mu, s^2) (elementwise) and x_t = alpha x0 + sigma eps, everything is linear:
E[x0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu), so every step of
every sampler maps a Gaussian to a Gaussian and the law of the samples can be computed
exactly by a two-number recursion (`sampler_law` below), written here from the DDPM tables
alone, independently of `diffusion.samplers`.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from diffusion.processes import DDPM
from diffusion.samplers import SAMPLERS, SamplerStep, ancestral, ddim, get_sampler, sample
from diffusion.samplers.base import walk
from diffusion.utils import expand_like

MU, S = 1.5, 0.5  # the 1-D data distribution N(MU, S^2) used throughout


class GaussianOracle(nn.Module):
    """The exact network for data N(mu, s^2 I) under `process`: returns E[target | x_t].

    `mu` and `s` are floats or tensors broadcastable to one sample (e.g. per channel).
    Computes in float64 and returns x's dtype.
    """

    def __init__(self, process, mu, s, target: str) -> None:
        super().__init__()
        self.process, self.target = process, target
        self.mu = torch.as_tensor(mu, dtype=torch.float64)
        self.s = torch.as_tensor(s, dtype=torch.float64)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x64 = x.to(torch.float64)
        t64 = t.to(torch.float64)
        alpha = expand_like(self.process.alpha(t64), x64)  # (B, 1, ...)
        sigma = expand_like(self.process.sigma(t64), x64)
        var = alpha**2 * self.s**2 + sigma**2  # Var(x_t)
        x0 = self.mu + alpha * self.s**2 / var * (x64 - alpha * self.mu)  # E[x0 | x_t]
        eps = sigma / var * (x64 - alpha * self.mu)  # E[eps | x_t]
        out = {"x0": x0, "eps": eps, "v": alpha * eps - sigma * x0}[self.target]
        return out.to(x.dtype)


def running_alpha_bar(process: DDPM) -> list[float]:
    """alpha_bar_0..T as a plain Python running product of (1 - beta_k)."""
    alpha_bar = [1.0]
    for beta in process.betas.tolist():
        alpha_bar.append(alpha_bar[-1] * (1 - beta))
    return alpha_bar


def step_law(ab_t: float, ab_s: float, kind: str) -> tuple[float, float, float]:
    """One step t -> s as x_s = A x_t + B x0_hat + sqrt(C2) z, from Ho et al. 2020 Eq. 7 / Song et al. 2021 Eq. 12.

    For a pair of steps, "beta" is 1 - alpha_bar_t / alpha_bar_s (the variance of q(x_t | x_s)).
    """
    beta = 1 - ab_t / ab_s
    if kind == "ddim":  # eta = 0: x_s = alpha_s x0_hat + sigma_s eps_hat
        A = math.sqrt((1 - ab_s) / (1 - ab_t))
        return A, math.sqrt(ab_s) - A * math.sqrt(ab_t), 0.0
    A = math.sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t)
    B = math.sqrt(ab_s) * beta / (1 - ab_t)
    if ab_s == 1.0:  # the last step (s = 0) returns the mean
        return A, B, 0.0
    return A, B, ((1 - ab_s) / (1 - ab_t) * beta if kind == "posterior" else beta)


def sampler_law(process: DDPM, ks: list[int], kind: str, mu: float, s: float):
    """Exact (mean, std) of the samples when the walk over step indices `ks` starts from N(0, 1 - alpha_bar_T)."""
    ab = running_alpha_bar(process)
    mean, var = 0.0, 1 - ab[-1]
    for k_t, k_s in itertools.pairwise(ks):
        A, B, C2 = step_law(ab[k_t], ab[k_s], kind)
        a_t = math.sqrt(ab[k_t])
        gain = a_t * s**2 / (ab[k_t] * s**2 + 1 - ab[k_t])  # d E[x0 | x_t] / d x_t
        mean = A * mean + B * (mu + gain * (mean - a_t * mu))
        var = (A + B * gain) ** 2 * var + C2
    return mean, math.sqrt(var)


def grid_steps(process: DDPM, steps: int) -> list[int]:
    return (process.time_grid(steps) * process.steps).round().long().tolist()


# Sampler name and options for each "kind" of `step_law`.
KINDS = {
    "posterior": ("ancestral", {"variance": "posterior"}),
    "beta": ("ancestral", {"variance": "beta"}),
    "ddim": ("ddim", {"eta": 0.0}),
}


@pytest.fixture(scope="module")
def linear() -> DDPM:
    return DDPM(1000, "linear", prediction="eps")


def draw(process, kind: str, n: int, steps: int, seed: int, mu=MU, s=S, target="eps"):
    sampler, options = KINDS[kind]
    model = GaussianOracle(process, mu, s, target)
    return sample(
        process.denoiser(model),
        (n, 1),
        sampler=sampler,
        steps=steps,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )


# -- (1) DDIM with eta = 0 is deterministic ----------------------------------------------


def test_ddim_eta0_is_deterministic_and_ignores_the_generator(linear: DDPM) -> None:
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = linear.time_grid(50)
    denoiser = linear.denoiser(GaussianOracle(linear, MU, S, "eps"))
    outs = [
        ddim(denoiser, x.clone(), grid, eta=0.0, generator=generator)
        for generator in (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2), None)
    ]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    # ...while eta > 0 does use it.
    a = ddim(denoiser, x, grid, eta=1.0, generator=torch.Generator().manual_seed(1))
    b = ddim(denoiser, x, grid, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert (a - b).abs().max().item() > 1e-3


# -- (2), (3) one step: posterior mean and variance ----------------------------------------


@pytest.mark.parametrize(
    ("sampler", "options", "kind"),
    [
        (ddim, {"eta": 1.0}, "posterior"),
        (ancestral, {"variance": "posterior"}, "posterior"),
        (ancestral, {"variance": "beta"}, "beta"),
    ],
)
@pytest.mark.parametrize(("k_t", "k_s"), [(600, 400), (101, 100), (1000, 900)])
def test_one_step_has_the_posterior_mean_and_the_stated_variance(
    linear: DDPM, sampler, options, kind: str, k_t: int, k_s: int
) -> None:
    # Many copies of one x_t, one step t -> s: the output is N(A x_t + B x0_hat, C2).
    n, x_value = 200_000, 0.8
    x = torch.full((n, 1), x_value, dtype=torch.float64)
    t, s = k_t / 1000, k_s / 1000
    grid = torch.tensor([t, s], dtype=torch.float64)
    denoiser = linear.denoiser(GaussianOracle(linear, MU, S, "eps"))
    out = sampler(denoiser, x, grid, generator=torch.Generator().manual_seed(k_t), **options)

    ab = running_alpha_bar(linear)
    A, B, C2 = step_law(ab[k_t], ab[k_s], kind)
    a_t = math.sqrt(ab[k_t])
    x0_hat = MU + a_t * S**2 / (ab[k_t] * S**2 + 1 - ab[k_t]) * (x_value - a_t * MU)
    mean = A * x_value + B * x0_hat
    # The library's own coefficients for the pair agree with the formula.
    ((_, _, _, coef),) = list(walk(linear, grid))
    expected_var = coef.posterior_variance if kind == "posterior" else coef.transition_variance
    assert expected_var == pytest.approx(C2, rel=1e-9)
    # Standard errors: sqrt(C2 / n) for the mean, C2 sqrt(2 / n) for the variance; allow 5.
    assert out.mean().item() == pytest.approx(mean, abs=5 * math.sqrt(C2 / n))
    assert out.var().item() == pytest.approx(C2, rel=5 * math.sqrt(2 / n))


def test_one_step_variance_check_can_tell_posterior_from_beta(linear: DDPM) -> None:
    # For the step 600 -> 400 the two variances differ by far more than the 5-SE tolerance
    # above (relative 5 sqrt(2 / n) = 1.6%), so that check distinguishes them.
    ab = running_alpha_bar(linear)
    ratio = (1 - ab[400]) / (1 - ab[600])  # posterior variance / beta
    assert 1 - ratio > 10 * math.sqrt(2 / 200_000)


def test_ddim_eta1_and_posterior_ancestral_take_the_same_path(linear: DDPM) -> None:
    # Same seed: both draw one N(0, I) per step with s > 0, so the paths coincide.
    denoiser = linear.denoiser(GaussianOracle(linear, MU, S, "eps"))
    x = torch.randn(1000, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grid = linear.time_grid(25)
    a = ddim(denoiser, x, grid, eta=1.0, generator=torch.Generator().manual_seed(8))
    b = ancestral(
        denoiser, x, grid, variance="posterior", generator=torch.Generator().manual_seed(8)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)  # float64: only rounding differs
    # Through `process.sample` (float32 prior and network): equal to float32 rounding.
    a32 = sample(
        linear.denoiser(denoiser.model),
        (1000, 1),
        sampler="ddim",
        steps=25,
        eta=1.0,
        generator=torch.Generator().manual_seed(9),
    ).x
    b32 = sample(
        linear.denoiser(denoiser.model),
        (1000, 1),
        sampler="ancestral",
        steps=25,
        generator=torch.Generator().manual_seed(9),
    ).x
    torch.testing.assert_close(a32, b32, rtol=0, atol=1e-5)


# -- (4) the exact network reproduces the data ---------------------------------------------


def test_exact_laws_of_the_samplers() -> None:
    """The analytic recursion itself: known directions of the discretisation bias."""
    process = DDPM(1000, "linear", prediction="eps")

    def std(kind: str, steps: int) -> float:
        return sampler_law(process, grid_steps(process, steps), kind, MU, S)[1]

    # With every step, all three samplers land within 1% of the data's spread.
    for kind in KINDS:
        assert std(kind, 1000) == pytest.approx(S, rel=0.01)
    for steps in (5, 10, 20, 50, 100):
        # The lower-bound variance always gives a narrower law than the upper bound.
        assert std("posterior", steps) < std("beta", steps)
        # The posterior variance under-disperses; so does deterministic DDIM with few steps.
        assert std("posterior", steps) < S and std("ddim", steps) < S
    assert std("posterior", 10) < 0.7 * S and std("ddim", 10) < 0.75 * S
    # The forward variance over-disperses once steps are small enough...
    assert std("beta", 20) > 1.03 * S and std("beta", 50) > 1.02 * S
    # ...but not with 10 steps: the last step (t = 0.1 -> 0) adds no noise, dropping its
    # variance 1 - alpha_bar_100 ~ 0.1, which outweighs the excess of the earlier steps.
    assert std("beta", 10) < S


def test_ancestral_with_all_steps_reproduces_the_data(linear: DDPM) -> None:
    n = 20_000
    result = draw(linear, "posterior", n, steps=1000, seed=0)
    assert result.nfe == 1000 and result.x.shape == (n, 1)
    assert result.x.dtype == torch.float32
    x = result.x.double()
    # Standard errors: S / sqrt(n) = 0.0035 for the mean, S / sqrt(2n) = 0.0025 for the std.
    # Allow 5 of them, plus the sampler's exact bias for the std (0.5 -> 0.496, see sampler_law).
    assert x.mean().item() == pytest.approx(MU, abs=5 * S / math.sqrt(n))
    assert x.std().item() == pytest.approx(S, abs=5 * S / math.sqrt(2 * n) + 0.004)


def test_ddim_with_200_steps_reproduces_the_data(linear: DDPM) -> None:
    n = 20_000
    result = draw(linear, "ddim", n, steps=200, seed=1)
    assert result.nfe == 200
    x = result.x.double()
    # 5 standard errors plus the exact biases of 200 deterministic steps (mean -0.005 from the
    # prior's missing sqrt(alpha_bar_T) MU, std -0.008 from discretisation): tolerance 0.025.
    assert x.mean().item() == pytest.approx(MU, abs=0.025)
    assert x.std().item() == pytest.approx(S, abs=0.025)


@pytest.mark.parametrize(
    ("kind", "steps"), [("posterior", 10), ("beta", 10), ("beta", 20), ("ddim", 10)]
)
def test_few_step_samples_follow_the_exact_law(linear: DDPM, kind: str, steps: int) -> None:
    n = 50_000
    x = draw(linear, kind, n, steps=steps, seed=steps).x.double()
    mean, std = sampler_law(linear, grid_steps(linear, steps), kind, MU, S)
    # 5 standard errors (std / sqrt(n) for the mean, std / sqrt(2n) for the std).
    assert x.mean().item() == pytest.approx(mean, abs=5 * std / math.sqrt(n))
    assert x.std().item() == pytest.approx(std, abs=5 * std / math.sqrt(2 * n))
    # The empirical bias direction matches the exact one, beyond the noise.
    if abs(std - S) > 10 * S / math.sqrt(2 * n):
        assert (x.std().item() > S) == (std > S)


# -- (5) the callback ------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_callback_gets_one_step_per_step(linear: DDPM, sampler: str) -> None:
    steps: list[SamplerStep] = []
    result = sample(
        linear.denoiser(GaussianOracle(linear, MU, S, "eps")),
        (16, 2),
        sampler=sampler,
        steps=20,
        generator=torch.Generator().manual_seed(0),
        callback=steps.append,
    )
    grid = linear.time_grid(20).tolist()
    assert len(steps) == 20 and result.nfe == 20
    assert [step.index for step in steps] == list(range(20))
    assert [step.t for step in steps] == pytest.approx(grid[:-1], abs=1e-12)
    assert [step.s for step in steps] == pytest.approx(grid[1:], abs=1e-12)
    assert all(b.s < a.s for a, b in itertools.pairwise(steps)) and steps[-1].s == 0.0
    assert all(step.x.shape == (16, 2) and step.x0.shape == (16, 2) for step in steps)
    assert torch.equal(steps[-1].x, result.x)


# -- (6) time grids -----------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_explicit_grid_equals_the_same_number_of_steps(linear: DDPM, sampler: str) -> None:
    model = GaussianOracle(linear, MU, S, "eps")
    options = {"eta": 0.5} if sampler == "ddim" else {}
    by_steps = sample(
        linear.denoiser(model),
        (64, 2),
        sampler=sampler,
        steps=37,
        generator=torch.Generator().manual_seed(3),
        **options,
    )
    by_times = sample(
        linear.denoiser(model),
        (64, 2),
        sampler=sampler,
        times=linear.time_grid(37).tolist(),
        generator=torch.Generator().manual_seed(3),
        **options,
    )
    assert torch.equal(by_steps.x, by_times.x)
    assert by_steps.nfe == by_times.nfe == 37
    torch.testing.assert_close(by_times.times, linear.time_grid(37), rtol=0, atol=0)


UNEVEN = [1000, 900, 620, 301, 300, 120, 37, 5, 1, 0]  # any subsequence of the steps


@pytest.mark.parametrize("kind", ["posterior", "beta", "ddim"])
def test_any_subsequence_takes_the_exact_steps(linear: DDPM, kind: str) -> None:
    # Replay the walk with the independent step formulas and the same noise draws.
    sampler, options = KINDS[kind]
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    grid = torch.tensor(UNEVEN, dtype=torch.float64) / 1000
    denoiser = linear.denoiser(GaussianOracle(linear, MU, S, "eps"))
    out = get_sampler(sampler)(
        denoiser, x, grid, generator=torch.Generator().manual_seed(5), **options
    )
    assert denoiser.nfe == len(UNEVEN) - 1

    ab = running_alpha_bar(linear)
    noise = torch.Generator().manual_seed(5)
    ref = x.clone()
    for k_t, k_s in itertools.pairwise(UNEVEN):
        A, B, C2 = step_law(ab[k_t], ab[k_s], kind)
        a_t = math.sqrt(ab[k_t])
        x0_hat = MU + a_t * S**2 / (ab[k_t] * S**2 + 1 - ab[k_t]) * (ref - a_t * MU)
        ref = A * ref + B * x0_hat
        if C2 > 0:
            ref = ref + math.sqrt(C2) * torch.randn(ref.shape, generator=noise, dtype=ref.dtype)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "times",
    [
        [0.0, 0.5, 1.0],  # increasing
        [1.0, 0.5, 0.5, 0.0],  # repeated time
        [1.0, 0.5, 0.1],  # does not end at 0
        [1.0],  # one time is no step
        [1.5, 0.5, 0.0],  # starts above t = 1
        [[1.0, 0.0]],  # not 1-D
    ],
)
def test_invalid_grids_raise(linear: DDPM, times) -> None:
    with pytest.raises(ValueError, match="time grid"):
        sample(
            linear.denoiser(GaussianOracle(linear, MU, S, "eps")), (4, 1), times=torch.tensor(times)
        )


def test_unknown_sampler_and_bad_options_raise(linear: DDPM) -> None:
    model = GaussianOracle(linear, MU, S, "eps")
    with pytest.raises(ValueError, match="unknown sampler 'plms'"):
        sample(linear.denoiser(model), (4, 1), sampler="plms", steps=5)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("DDIM")
    assert set(SAMPLERS) >= {"ancestral", "ddim"}
    for eta in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eta"):
            sample(linear.denoiser(model), (4, 1), sampler="ddim", steps=5, eta=eta)
    with pytest.raises(ValueError, match="unknown ancestral variance"):
        sample(linear.denoiser(model), (4, 1), sampler="ancestral", steps=5, variance="learned")


# -- (7) any data shape -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["posterior", "ddim"])
def test_sampling_images_matches_the_law_per_channel(kind: str) -> None:
    # Per-channel data N(mu_c, s_c^2) on (n, 3, 4, 4): pixels are independent, so each
    # channel gives n * 16 draws of a known 1-D law.
    mu = torch.tensor([-1.0, 0.5, 2.0]).reshape(3, 1, 1)
    s = torch.tensor([0.3, 1.0, 0.6]).reshape(3, 1, 1)
    sampler, options = KINDS[kind]
    n = 1000
    process = DDPM(1000, "linear", prediction="v")  # the law does not depend on the target
    result = sample(
        process.denoiser(GaussianOracle(process, mu, s, "v")),
        (n, 3, 4, 4),
        sampler=sampler,
        steps=50,
        generator=torch.Generator().manual_seed(6),
        **options,
    )
    assert result.x.shape == (n, 3, 4, 4) and bool(torch.isfinite(result.x).all())
    for c in range(3):
        x = result.x[:, c].double().reshape(-1)
        m, sd = sampler_law(process, grid_steps(process, 50), kind, mu[c].item(), s[c].item())
        count = x.numel()
        # 5 standard errors each (pixels of one image are independent under this oracle).
        assert x.mean().item() == pytest.approx(m, abs=5 * sd / math.sqrt(count))
        assert x.std().item() == pytest.approx(sd, abs=5 * sd / math.sqrt(2 * count))


# -- (8) zero terminal SNR ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "kind"), [("v", "posterior"), ("v", "ddim"), ("x0", "posterior")]
)
def test_zero_terminal_snr_starts_from_pure_noise(target: str, kind: str) -> None:
    process = DDPM(1000, "linear", zero_terminal_snr=True, prediction=target)
    assert process.alpha(torch.tensor(1.0)).item() == 0.0
    sampler, options = KINDS[kind]
    steps: list[SamplerStep] = []
    n = 20_000
    result = sample(
        process.denoiser(GaussianOracle(process, MU, S, target)),
        (n, 1),
        sampler=sampler,
        steps=100,
        generator=torch.Generator().manual_seed(7),
        callback=steps.append,
        **options,
    )
    assert bool(torch.isfinite(result.x).all())
    assert all(bool(torch.isfinite(step.x).all()) for step in steps)
    # At alpha = 0 the data is invisible: the best guess of x0 is the data mean, exactly.
    torch.testing.assert_close(steps[0].x0, torch.full_like(steps[0].x0, MU), rtol=0, atol=1e-6)
    mean, std = sampler_law(process, grid_steps(process, 100), kind, MU, S)
    x = result.x.double()
    assert x.mean().item() == pytest.approx(mean, abs=5 * std / math.sqrt(n))
    assert x.std().item() == pytest.approx(std, abs=5 * std / math.sqrt(2 * n))
    # With no signal left at t = 1, even deterministic DDIM has no bias in the mean.
    assert mean == pytest.approx(MU, abs=1e-9)
