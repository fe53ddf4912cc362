"""Known answers for DDPM (Ho et al. 2020): marginals, posteriors, grids, terminal check, loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion.processes import DDPM, TerminalSignalError
from diffusion.samplers import ancestral
from diffusion.samplers.base import StepCoefficients


def betas_and_alpha_bar(process: DDPM) -> tuple[list[float], list[float]]:
    """Betas and alpha_bar_0..T (alpha_bar_0 = 1) as plain Python floats, by a running product."""
    betas = process.betas.tolist()
    alpha_bar = [1.0]
    for beta in betas:
        alpha_bar.append(alpha_bar[-1] * (1 - beta))
    return betas, alpha_bar


@pytest.fixture(scope="module")
def linear100() -> DDPM:
    return DDPM(100, "linear", prediction="eps")


def test_alpha_bar_table_is_the_running_product(linear100: DDPM) -> None:
    _, alpha_bar = betas_and_alpha_bar(linear100)
    assert linear100.alpha_bar.dtype == torch.float64
    assert linear100.alpha_bar.tolist() == pytest.approx(alpha_bar, rel=1e-13)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_marginal_equals_composed_single_steps(schedule: str) -> None:
    # x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) z_k, x_0 fixed: composing gives
    # mean coefficient prod sqrt(1 - beta_i) and variance v_k = (1 - beta_k) v_{k-1} + beta_k.
    process = DDPM(100, schedule)
    betas = process.betas.tolist()
    mean_coef, var = 1.0, 0.0
    for k in range(1, process.steps + 1):
        mean_coef *= math.sqrt(1 - betas[k - 1])
        var = (1 - betas[k - 1]) * var + betas[k - 1]
        t = process.step_to_time(k)
        assert process.alpha(t).item() == pytest.approx(mean_coef, rel=1e-12, abs=1e-15)
        assert process.variance(t).item() == pytest.approx(var, rel=1e-12)
        assert process.sigma(t).item() == pytest.approx(math.sqrt(var), rel=1e-12)


def test_composed_steps_match_marginal_empirically(linear100: DDPM) -> None:
    # Simulate k = 40 single forward steps from a fixed x0 for n draws and compare with
    # N(sqrt(alpha_bar_k) x0, (1 - alpha_bar_k)).
    n, k, x0 = 200_000, 40, 2.0
    generator = torch.Generator().manual_seed(0)
    x = torch.full((n,), x0, dtype=torch.float64)
    for beta in linear100.betas[:k].tolist():
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * z
    t = linear100.step_to_time(k)
    mean = linear100.alpha(t).item() * x0
    var = linear100.variance(t).item()
    # Standard errors: sqrt(var / n) for the mean, var * sqrt(2 / n) for the variance
    # (Gaussian); allow 5 of them.
    assert x.mean().item() == pytest.approx(mean, abs=5 * math.sqrt(var / n))
    assert x.var().item() == pytest.approx(var, abs=5 * var * math.sqrt(2 / n))
    # ...and the test has power: the mean moved a lot from x0, the variance a lot from 0.
    assert abs(mean - x0) > 100 * math.sqrt(var / n)


def bayes_posterior(alpha_bar_prev: float, alpha_bar: float) -> tuple[float, float, float]:
    """q(x_{k-1} | x_k, x0) by Gaussian conditioning of the joint of (x_{k-1}, x_k) given x0.

    Returns (coefficient of x0, coefficient of x_k, variance).
    """
    alpha = alpha_bar / alpha_bar_prev  # 1 - beta_k
    beta = 1 - alpha
    var_prev = 1 - alpha_bar_prev  # Var(x_{k-1} | x0)
    var_k = alpha * var_prev + beta  # Var(x_k | x0)
    cov = math.sqrt(alpha) * var_prev  # Cov(x_{k-1}, x_k | x0)
    coef_xk = cov / var_k
    # E[x_{k-1} | x_k, x0] = m_{k-1} + coef_xk (x_k - m_k), with m_j = sqrt(alpha_bar_j) x0.
    coef_x0 = math.sqrt(alpha_bar_prev) - coef_xk * math.sqrt(alpha_bar)
    return coef_x0, coef_xk, var_prev - cov**2 / var_k


class Constant(nn.Module):
    """A 'network' that ignores its input and returns a fixed tensor; it records its inputs."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone()))
        return self.value.expand_as(x).clone()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("k", [1, 2, 10, 50, 99, 100])
def test_posterior_of_one_step_is_eq_6_7_of_ho_et_al(schedule: str, k: int) -> None:
    process = DDPM(100, schedule)
    betas, alpha_bar = betas_and_alpha_bar(process)
    beta_k, ab, ab_prev = betas[k - 1], alpha_bar[k], alpha_bar[k - 1]
    # Eq. 7 of Ho et al. 2020.
    ho_var = (1 - ab_prev) / (1 - ab) * beta_k
    ho_coef_x0 = math.sqrt(ab_prev) * beta_k / (1 - ab)
    ho_coef_xk = math.sqrt(1 - beta_k) * (1 - ab_prev) / (1 - ab)
    # The Bayes posterior, computed by conditioning, agrees with the paper.
    coef_x0, coef_xk, var = bayes_posterior(ab_prev, ab)
    assert (coef_x0, coef_xk) == pytest.approx((ho_coef_x0, ho_coef_xk), rel=1e-10, abs=1e-14)
    assert var == pytest.approx(ho_var, rel=1e-8, abs=1e-16)

    # StepCoefficients for the pair t = k/T -> s = (k-1)/T.
    t, s = process.step_to_time(k), process.step_to_time(k - 1)
    coef = StepCoefficients(
        alpha_t=process.alpha(t).item(),
        sigma_t=process.sigma(t).item(),
        alpha_s=process.alpha(s).item(),
        sigma_s=process.sigma(s).item(),
    )
    assert coef.transition_variance == pytest.approx(beta_k, rel=1e-9)
    assert coef.posterior_variance == pytest.approx(ho_var, rel=1e-9, abs=1e-16)

    # The ancestral sampler's step mean: feed an x0-predicting constant network and remove
    # the (reproducible) noise: x_s = coef_x0 x0 + coef_xk x_k + sqrt(beta_tilde) z.
    x0 = torch.tensor([[0.7, -1.3, 2.0]], dtype=torch.float64)
    xk = torch.tensor([[0.1, 0.4, -2.5]], dtype=torch.float64)
    denoiser = DDPM(100, schedule, prediction="x0").denoiser(Constant(x0))
    grid = torch.tensor([t.item(), s.item()], dtype=torch.float64)
    out = ancestral(denoiser, xk, grid, generator=torch.Generator().manual_seed(3))
    if k > 1:
        z = torch.randn(xk.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    else:
        z = torch.zeros_like(xk)  # the last step (to t = 0) returns the mean
    expected = ho_coef_x0 * x0 + ho_coef_xk * xk + math.sqrt(ho_var) * z
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_variance_and_variance_at_step_agree_on_the_grid() -> None:
    process = DDPM(1000, "cosine")
    k = torch.arange(process.steps + 1)
    by_time = process.variance(process.step_to_time(k))
    torch.testing.assert_close(by_time, process.variance_at_step(k), rtol=1e-12, atol=1e-15)
    _, alpha_bar = betas_and_alpha_bar(process)
    assert process.variance_at_step(k).tolist() == pytest.approx(
        [1 - a for a in alpha_bar], rel=1e-12, abs=1e-15
    )
    assert process.variance_at_step(0).item() == 0.0


@pytest.mark.parametrize("steps", [1, 3, 7, 10, 50, 99, 100, None])
def test_time_grid_is_decreasing_on_the_step_grid(steps: int | None) -> None:
    process = DDPM(100, "linear")
    grid = process.time_grid(steps)
    K = process.steps if steps is None else steps
    assert grid.shape == (K + 1,)
    assert grid[0].item() == 1.0 and grid[-1].item() == 0.0
    assert bool((grid[1:] < grid[:-1]).all())
    k = grid * process.steps
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)


def test_time_grid_with_all_steps_visits_every_step() -> None:
    process = DDPM(100, "linear")
    k = (process.time_grid() * process.steps).round().long()
    assert k.tolist() == list(range(100, -1, -1))


@pytest.mark.parametrize("steps", [0, 101])
def test_time_grid_rejects_out_of_range_steps(steps: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        DDPM(100, "linear").time_grid(steps)


def test_sample_time_is_uniform_over_steps_1_to_T() -> None:
    process = DDPM(10, "cosine")
    t = process.sample_time(20_000, generator=torch.Generator().manual_seed(0))
    k = t.double() * process.steps
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-5)
    counts = torch.bincount(k.round().long(), minlength=11)
    assert counts[0].item() == 0  # t = 0 (the data) is never a training time
    # Each of the 10 steps: 2000 expected, binomial sd ~ 42; allow 5 sd.
    assert bool(((counts[1:] - 2000).abs() < 5 * 42.5).all())
    # Seeded: the same generator seed gives the same times.
    again = process.sample_time(20_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_short_linear_schedule_leaves_signal_and_is_rejected() -> None:
    # The original repository's default: 100 steps, beta 1e-5 to 5e-3.
    with pytest.raises(TerminalSignalError) as info:
        DDPM(100, "linear", beta_start=1e-5, beta_end=5e-3)
    message = str(info.value)
    assert "0.88" in message  # sqrt(alpha_bar_T) = sqrt(0.778)
    assert "more steps" in message and "beta_end" in message and "cosine" in message
    assert isinstance(info.value, ValueError)
    process = DDPM(100, "linear", beta_start=1e-5, beta_end=5e-3, allow_terminal_signal=True)
    expected = math.prod(1 - b for b in torch.linspace(1e-5, 5e-3, 100).double().tolist())
    assert process.alpha_bar[-1].item() == pytest.approx(expected, rel=1e-6)
    assert process.alpha_bar[-1].item() == pytest.approx(0.78, abs=0.005)


def test_zero_terminal_snr_with_eps_prediction_is_rejected() -> None:
    with pytest.raises(ValueError, match="predict v or x0"):
        DDPM(1000, "linear", zero_terminal_snr=True, prediction="eps")
    for prediction in ("v", "x0"):
        process = DDPM(1000, "linear", zero_terminal_snr=True, prediction=prediction)
        assert process.alpha(torch.tensor(1.0, dtype=torch.float64)).item() == 0.0
        assert process.sigma(torch.tensor(1.0, dtype=torch.float64)).item() == 1.0


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid", "quadratic"])
@pytest.mark.parametrize("steps", [50, 200, 1000])
def test_default_endpoints_pass_the_terminal_check_at_any_length(schedule: str, steps: int) -> None:
    # The 1000/T scaling keeps sum(beta) (hence alpha_bar_T) roughly fixed as T changes.
    process = DDPM(steps, schedule)
    assert process.alpha_bar[-1].sqrt().item() < 0.05


def test_alpha_bar_is_linear_in_t_between_steps(linear100: DDPM) -> None:
    _, alpha_bar = betas_and_alpha_bar(linear100)
    k = torch.tensor([0, 3, 57, 99])
    for frac in (0.25, 0.5, 0.9):
        t = (k.double() + frac) / linear100.steps
        expected = [(1 - frac) * alpha_bar[i] + frac * alpha_bar[i + 1] for i in k.tolist()]
        assert (linear100.alpha(t) ** 2).tolist() == pytest.approx(expected, rel=1e-12)
        assert (linear100.alpha(t) ** 2 + linear100.sigma(t) ** 2).tolist() == pytest.approx(
            [1.0] * 4, rel=1e-12
        )


def test_default_ddpm_ends_near_pure_noise() -> None:
    process = DDPM()
    assert process.steps == 1000 and process.schedule == "cosine"
    assert process.alpha_bar[-1].sqrt().item() < 0.05
    assert process.prediction == "v"  # the same default as `diffusion train --process ddpm`


def test_unknown_prediction_target_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown prediction target"):
        DDPM(100, "linear", prediction="noise")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_at_given_times_is_mse_against_the_target(prediction: str) -> None:
    process = DDPM(100, "linear", prediction=prediction)
    _, alpha_bar = betas_and_alpha_bar(process)
    x0 = torch.tensor([[1.0, -2.0], [0.5, 0.25], [-1.5, 3.0]], dtype=torch.float64)
    k = [1, 37, 100]
    t = torch.tensor(k, dtype=torch.float64) / process.steps
    output = torch.tensor([[0.3, -0.1], [0.2, 0.9], [-0.4, 0.0]], dtype=torch.float64)
    model = Constant(output)
    loss = process.loss(model, x0, t, generator=torch.Generator().manual_seed(11))

    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    alpha = torch.tensor([math.sqrt(alpha_bar[i]) for i in k], dtype=torch.float64)[:, None]
    sigma = torch.tensor([math.sqrt(1 - alpha_bar[i]) for i in k], dtype=torch.float64)[:, None]
    target = {"eps": noise, "x0": x0, "v": alpha * noise - sigma * x0}[prediction]
    assert loss.item() == pytest.approx(((output - target) ** 2).mean().item(), rel=1e-12)
    # The network saw x_t = alpha x0 + sigma noise and t of shape (B,).
    ((x_t, t_seen),) = model.calls
    torch.testing.assert_close(x_t, alpha * x0 + sigma * noise, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t_seen, t, rtol=0, atol=0)


def test_loss_without_times_is_seeded_and_zero_for_the_exact_target() -> None:
    # With the model returning the noise that was drawn, the eps loss is exactly zero.
    process = DDPM(100, "linear", prediction="eps")
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    process.sample_time(64, generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    loss = process.loss(Constant(noise), x0, generator=torch.Generator().manual_seed(5))
    assert loss.item() == pytest.approx(0.0, abs=1e-24)
    wrong = process.loss(Constant(noise), x0, generator=torch.Generator().manual_seed(6))
    assert wrong.item() > 0.5  # E|a - b|^2 = 2 for independent standard normals
