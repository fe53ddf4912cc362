"""Known answers for every forward process family: the closed forms of the papers, their
derivatives and SDE coefficients, DDPM as a discretised VP SDE, EDM's preconditioning and
training distribution, the training loss and the network input.

Conventions: t in [0, 1], t = 0 data, t = 1 noise, x_t = alpha(t) x0 + sigma(t) eps.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from diffusion.parametrize import prediction_from, target_from
from diffusion.processes import DDPM, EDM, VE, VP, FlowMatching, SubVP
from diffusion.processes.base import _derivative

F64 = torch.float64

FAMILIES = {
    "vp": VP,
    "subvp": SubVP,
    "ve": VE,
    "edm": EDM,
    "flow": FlowMatching,
}

# sigma / alpha at t = 1 for the defaults (VP and SubVP: 1 / alpha(1) up to O(alpha(1)^2),
# with alpha(1) = exp(-(20 - 0.1) / 4 - 0.1 / 2) = exp(-5.025)).
TERMINAL_RATIO = {
    "vp": math.sqrt(1 - math.exp(-2 * 5.025)) / math.exp(-5.025),  # 152.17
    "subvp": (1 - math.exp(-2 * 5.025)) / math.exp(-5.025),  # 152.16
    "ve": 10.0,
    "edm": 80.0,
    "flow": math.inf,
}

INTERIOR = torch.tensor([0.05, 0.2, 0.37, 0.5, 0.73, 0.9, 0.98], dtype=F64)


def t64(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=F64)


# -- endpoints and monotonicity ------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_data_at_t0_and_noise_at_t1(name: str) -> None:
    process = FAMILIES[name]()
    zero = t64(0.0)
    assert process.alpha(zero).item() == 1.0
    assert process.sigma(zero).item() == 0.0
    ratio = process.sigma_ratio(t64(1.0)).item()
    expected = TERMINAL_RATIO[name]
    if math.isinf(expected):
        assert math.isinf(ratio) and ratio > 0
    else:
        assert ratio == pytest.approx(expected, rel=1e-9)
    assert ratio >= 10.0  # every family ends far from the data


@pytest.mark.parametrize("name", FAMILIES)
def test_alpha_falls_and_sigma_rises(name: str) -> None:
    process = FAMILIES[name]()
    t = torch.linspace(0, 1, 1001, dtype=F64)
    alpha, sigma = process.alpha(t), process.sigma(t)
    assert bool((alpha[1:] <= alpha[:-1]).all())  # non-increasing (constant 1 for VE, EDM)
    assert bool((sigma[1:] > sigma[:-1]).all())  # strictly increasing
    assert bool(((alpha >= 0) & (alpha <= 1)).all())


# -- closed forms of the papers ------------------------------------------------------------

T_CHECK = [0.0, 0.1, 0.25, 0.5, 0.8, 1.0]


@pytest.mark.parametrize("t", T_CHECK)
def test_vp_closed_form(t: float) -> None:
    # Song et al. 2021, Eq. 33 with beta_min = 0.1, beta_max = 20.
    alpha = math.exp(-(t**2) * (20 - 0.1) / 4 - 0.1 * t / 2)
    process = VP()
    assert process.alpha(t64(t)).item() == pytest.approx(alpha, rel=1e-13)
    assert process.sigma(t64(t)).item() == pytest.approx(math.sqrt(1 - alpha**2), abs=1e-13)


@pytest.mark.parametrize("t", T_CHECK)
def test_subvp_closed_form(t: float) -> None:
    alpha = math.exp(-(t**2) * (20 - 0.1) / 4 - 0.1 * t / 2)
    process = SubVP()
    assert process.alpha(t64(t)).item() == pytest.approx(alpha, rel=1e-13)
    assert process.sigma(t64(t)).item() == pytest.approx(1 - alpha**2, abs=1e-13)


@pytest.mark.parametrize("t", [1e-6, 0.1, 0.25, 0.5, 0.8, 1.0])
def test_ve_closed_form(t: float) -> None:
    process = VE()
    assert process.alpha(t64(t)).item() == 1.0
    assert process.sigma(t64(t)).item() == pytest.approx(0.01 * 1000**t, rel=1e-13)


@pytest.mark.parametrize("t", T_CHECK)
def test_edm_closed_form(t: float) -> None:
    process = EDM()
    assert process.alpha(t64(t)).item() == 1.0
    assert process.sigma(t64(t)).item() == pytest.approx(80 * t**7, rel=1e-13, abs=0)


@pytest.mark.parametrize("t", T_CHECK)
def test_flow_closed_form(t: float) -> None:
    process = FlowMatching()
    assert process.alpha(t64(t)).item() == pytest.approx(1 - t, abs=1e-15)
    assert process.sigma(t64(t)).item() == pytest.approx(t, abs=1e-15)


# -- derivatives ---------------------------------------------------------------------------


def central_difference(fn, t: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    return (fn(t + h) - fn(t - h)) / (2 * h)


@pytest.mark.parametrize("name", FAMILIES)
def test_derivatives_match_finite_differences_and_autograd(name: str) -> None:
    process = FAMILIES[name]()
    for value, d_value in ((process.alpha, process.d_alpha), (process.sigma, process.d_sigma)):
        written = d_value(INTERIOR)
        fd = central_difference(value, INTERIOR)
        # Central differences with h = 1e-6 in float64: error O(h^2 f''') + O(eps / h) ~ 1e-8
        # relative to the largest values (EDM's sigma' reaches 7 * 80 = 560).
        scale = max(1.0, fd.abs().max().item())
        torch.testing.assert_close(written, fd, rtol=1e-6, atol=1e-7 * scale)
        torch.testing.assert_close(written, _derivative(value, INTERIOR), rtol=1e-12, atol=1e-12)


def test_ddpm_derivative_is_the_slope_of_the_interpolated_table() -> None:
    # DDPM has no written derivative: autograd of sqrt of the linearly interpolated alpha_bar.
    # Inside a step (k/T, (k+1)/T) alpha_bar has slope T (alpha_bar[k+1] - alpha_bar[k]).
    process = DDPM(1000, "linear")
    k = torch.tensor([10, 250, 600, 990])
    t = (k.to(F64) + 0.5) / 1000
    ab = process.alpha_bar
    slope = 1000 * (ab[k + 1] - ab[k])
    expected = slope / (2 * process.alpha(t))  # d sqrt(a) = a' / (2 sqrt(a))
    torch.testing.assert_close(process.d_alpha(t), expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(
        process.d_alpha(t), central_difference(process.alpha, t, 1e-7), rtol=1e-6, atol=0
    )


# -- SDE coefficients ----------------------------------------------------------------------


def beta(t: torch.Tensor) -> torch.Tensor:
    return 0.1 + 19.9 * t


def test_vp_drift_and_diffusion() -> None:
    process = VP()
    torch.testing.assert_close(process.drift(INTERIOR), -beta(INTERIOR) / 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        process.diffusion_squared(INTERIOR), beta(INTERIOR), rtol=1e-10, atol=0
    )


def test_subvp_drift_and_diffusion() -> None:
    process = SubVP()
    alpha = torch.exp(-(INTERIOR**2) * 19.9 / 4 - 0.05 * INTERIOR)
    torch.testing.assert_close(process.drift(INTERIOR), -beta(INTERIOR) / 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        process.diffusion_squared(INTERIOR), beta(INTERIOR) * (1 - alpha**4), rtol=1e-10, atol=0
    )
    # Sub-VP's g^2 stays below VP's at every t > 0 (the "sub" of Song et al. 2021, Eq. 34).
    assert bool((process.diffusion_squared(INTERIOR) < VP().diffusion_squared(INTERIOR)).all())


def test_ve_drift_and_diffusion() -> None:
    process = VE()
    sigma = 0.01 * 1000**INTERIOR
    assert bool((process.drift(INTERIOR) == 0).all())
    expected = 2 * sigma**2 * math.log(1000)  # d sigma^2 / dt
    torch.testing.assert_close(process.diffusion_squared(INTERIOR), expected, rtol=1e-12, atol=0)
    fd = central_difference(lambda u: process.sigma(u) ** 2, INTERIOR)
    torch.testing.assert_close(process.diffusion_squared(INTERIOR), fd, rtol=1e-7, atol=0)


# -- DDPM is the discretised VP SDE ---------------------------------------------------------


def test_linear_ddpm_is_the_discretised_vp_sde() -> None:
    ddpm, vp = DDPM(1000, "linear"), VP(0.1, 20.0)
    assert ddpm.betas[0].item() == pytest.approx(1e-4) and ddpm.betas[-1].item() == 0.02
    t = torch.linspace(0, 1, 2001, dtype=F64)
    gap = (ddpm.alpha(t) - vp.alpha(t)).abs().max().item()
    # Measured: 9.93e-4 (at t ~ 0.6, from sum log(1 - beta) vs -int beta). Twice that bounds it.
    assert gap < 2e-3
    # The cosine schedule is not this SDE: the same comparison is far off.
    assert (DDPM(1000, "cosine").alpha(t) - vp.alpha(t)).abs().max().item() > 0.1


# -- EDM: preconditioning, training distribution and grid ------------------------------------


def test_edm_v_prediction_is_the_karras_preconditioning() -> None:
    process = EDM()
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.9, 1.0], dtype=F64)
    sigma = process.sigma(t)
    x = torch.randn(6, 3, generator=generator, dtype=F64) * (1 + sigma[:, None])
    out = torch.randn(6, 3, generator=generator, dtype=F64)
    s = sigma[:, None]
    pred = prediction_from("v", out, x, torch.ones_like(s), s)
    expected = process.c_skip(s) * x + process.c_out(s) * (-out)  # Karras et al. 2022, Eq. 7
    torch.testing.assert_close(pred.x0, expected, rtol=1e-12, atol=1e-12)
    # The network's input is c_in(sigma) x.
    torch.testing.assert_close(process.model_input(x, t), process.c_in(s) * x, rtol=1e-14, atol=0)
    # The unweighted loss on v is EDM's: its weight lambda = (sigma^2 + 1) / sigma^2 = 1 / c_out^2.
    torch.testing.assert_close(1 / process.c_out(sigma) ** 2, (sigma**2 + 1) / sigma**2)

    # Through a Denoiser: a network F fed c_in x gives x0 = c_skip x + c_out (-F(c_in x)).
    class Net(nn.Module):
        def forward(self, inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.sin(3 * inp) + t[:, None]

    denoiser = process.denoiser(Net())
    for tt, ss in zip(t, sigma, strict=True):
        xb = x[:2]
        got = denoiser(xb, tt)
        f = torch.sin(3 * process.c_in(ss) * xb) + tt
        want = process.c_skip(ss) * xb - process.c_out(ss) * f
        torch.testing.assert_close(got.x0, want, rtol=1e-12, atol=1e-12)


def test_edm_training_noise_is_log_normal() -> None:
    process = EDM()
    n = 200_000
    t = process.sample_time(n, generator=torch.Generator().manual_seed(0))
    assert t.shape == (n,) and bool(((t > 0) & (t <= 1)).all())
    log_sigma = process.sigma(t.to(F64)).log()
    # ln sigma ~ N(-1.2, 1.2^2) (Karras et al. 2022, Table 1); the clamp to [0.002, 80]
    # touches 1.5e-5 of the mass. 5 standard errors: 1.2 / sqrt(n) and 1.2 / sqrt(2n).
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=5 * 1.2 / math.sqrt(n))
    assert log_sigma.std().item() == pytest.approx(1.2, abs=5 * 1.2 / math.sqrt(2 * n))
    assert log_sigma.min().item() >= math.log(0.002) - 1e-5
    assert log_sigma.max().item() <= math.log(80) + 1e-5


@pytest.mark.parametrize("K", [2, 5, 18, 40])
def test_edm_time_grid_is_karras_eq5(K: int) -> None:
    process = EDM()
    grid = process.time_grid(K)
    assert grid.shape == (K + 1,) and grid[0].item() == 1.0 and grid[-1].item() == 0.0
    i = torch.arange(K, dtype=F64)
    rho, lo, hi = 7.0, 0.002, 80.0
    karras = (hi ** (1 / rho) + i / (K - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    torch.testing.assert_close(process.sigma(grid[:-1]), karras, rtol=1e-12, atol=0)
    assert process.sigma(grid[-1]).item() == 0.0


def test_edm_lowest_level_is_sigma_min_in_float64() -> None:
    process = EDM()
    assert process.sigma(t64(process.t_min)).item() == pytest.approx(0.002, rel=1e-12)


# -- the training loss ---------------------------------------------------------------------


def target_formula(prediction: str, x0, noise, alpha, sigma) -> torch.Tensor:
    """Targets written from the papers, independently of `diffusion.parametrize`."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return (alpha * noise - sigma * x0) / (alpha**2 + sigma**2).sqrt()
    if prediction == "velocity":  # flow matching only here: d/dt ((1 - t) x0 + t eps)
        return noise - x0
    if prediction == "score":
        return -noise / sigma
    raise AssertionError(prediction)


class ExactTarget(nn.Module):
    """Returns the exact regression target for the noise a cloned generator will draw."""

    def __init__(self, process, x0, t, generator: torch.Generator) -> None:
        super().__init__()
        clone = torch.Generator().manual_seed(0)
        clone.set_state(generator.get_state())
        self.noise = torch.randn(x0.shape, generator=clone, dtype=x0.dtype)
        alpha = process.alpha(t.to(F64))[:, None]
        sigma = process.sigma(t.to(F64))[:, None]
        self.x_t = alpha * x0 + sigma * self.noise
        self.target = target_formula(process.prediction, x0, self.noise, alpha, sigma)
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.inputs.append((inp, t))
        return self.target


LOSS_CASES = [
    ("ddpm-eps", lambda: DDPM(1000, "linear")),
    ("ddpm-x0", lambda: DDPM(1000, "linear", prediction="x0")),
    ("ddpm-v", lambda: DDPM(prediction="v")),
    ("ddpm-score", lambda: DDPM(1000, "linear", prediction="score")),
    ("vp", VP),
    ("subvp", SubVP),
    ("ve", VE),
    ("edm", EDM),
    ("flow", partial(FlowMatching, coupling="independent")),  # ot re-pairs the noise
]


@pytest.mark.parametrize(("label", "make"), LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_is_zero_for_the_exact_target(label: str, make) -> None:
    process = make()
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 3, generator=generator, dtype=F64)
    t = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9], dtype=F64)
    model = ExactTarget(process, x0, t, generator)
    loss = process.loss(model, x0, t, generator=generator)
    assert loss.item() == pytest.approx(0.0, abs=1e-24)
    # The network saw the scaled x_t and t of shape (B,).
    ((inp, t_seen),) = model.inputs
    torch.testing.assert_close(t_seen, t)
    torch.testing.assert_close(inp, process.model_input(model.x_t, t), rtol=1e-12, atol=1e-12)

    # A network that outputs zeros pays the mean squared target (weighted by sigma^2 for score).
    zero = ExactTarget(process, x0, t, generator)
    if process.prediction == "score":
        expected = (zero.noise**2).mean().item()  # sigma^2 (noise / sigma)^2
    else:
        expected = (zero.target**2).mean().item()
    zero.target = torch.zeros_like(zero.target)
    loss0 = process.loss(zero, x0, t, generator=generator)
    assert expected > 0.1
    assert loss0.item() == pytest.approx(expected, rel=1e-12)


def test_flow_matching_target_is_eps_minus_x0() -> None:
    process = FlowMatching()
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 2, generator=generator, dtype=F64)
    noise = torch.randn(5, 2, generator=generator, dtype=F64)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64)
    target = target_from(process.prediction, x0, noise, *process.coefficients(t, x0))
    torch.testing.assert_close(target, noise - x0, rtol=0, atol=1e-15)
    # It is d x_t / dt of the straight path, by finite differences.
    h = 1e-6
    forward = process.marginal(x0, t.clamp(0, 1 - h) + h, noise)
    backward = process.marginal(x0, t.clamp(0, 1 - h), noise)
    torch.testing.assert_close((forward - backward) / h, noise - x0, rtol=0, atol=1e-8)


# -- the network's input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [DDPM, lambda: DDPM(1000, "linear"), VP], ids=["ddpm-cosine", "ddpm-linear", "vp"]
)
def test_model_input_is_the_identity_on_variance_preserving_paths(make) -> None:
    process = make()
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=F64)
    alpha, sigma = process.alpha(t), process.sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-12)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    assert torch.equal(process.model_input(x, t), x)


@pytest.mark.parametrize("name", ["subvp", "ve", "edm", "flow"])
def test_model_input_scales_to_unit_variance(name: str) -> None:
    process = FAMILIES[name]()
    t = torch.tensor([0.05, 0.3, 0.5, 0.8, 1.0], dtype=F64)
    alpha, sigma = process.alpha(t), process.sigma(t)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    expected = x / (alpha**2 + sigma**2).sqrt()[:, None]
    torch.testing.assert_close(process.model_input(x, t), expected, rtol=1e-13, atol=0)
    # Not the identity: these paths leave unit variance somewhere on the grid.
    assert not torch.allclose(process.model_input(x, t), x)
    # Standardised data (s = 1) fed through the path arrive at unit variance.
    n = 100_000
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(n, 1, generator=gen, dtype=F64)
    eps = torch.randn(n, 1, generator=gen, dtype=F64)
    tt = torch.full((n,), 0.5, dtype=F64)
    inp = process.model_input(process.marginal(x0, tt, eps), tt)
    assert inp.var().item() == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))


def test_diffusion_squared_is_finite_at_t_zero_with_known_values():
    """g^2 at t = 0, where VP's sigma' is infinite: 2 sigma sigma' would be 0 * inf = NaN."""
    zero = torch.zeros(1, dtype=torch.float64)
    vp = VP(beta_min=0.1, beta_max=20.0)
    assert vp.diffusion_squared(zero).item() == pytest.approx(0.1)  # beta(0) = beta_min
    # DDPM with linear betas: alpha_bar(t) = 1 - beta_1 T t on the first step, so
    # g^2(0) = -d log alpha_bar / dt = beta_1 T = 1e-4 * 1000
    ddpm = DDPM(steps=1000, schedule="linear")
    assert ddpm.diffusion_squared(zero).item() == pytest.approx(0.1, rel=1e-9)
    assert SubVP().diffusion_squared(zero).item() == 0.0  # beta(0) (1 - alpha(0)^4)
