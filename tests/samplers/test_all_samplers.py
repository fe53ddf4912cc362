"""Every sampler on every family, fed the exact denoiser for Gaussian data.

For data x0 ~ N(0, s^2 I) and x_t = alpha x0 + sigma eps, E[x0 | x_t] = alpha s^2 x / v and
E[eps | x_t] = sigma x / v with v = alpha^2 s^2 + sigma^2, so every step is linear and the
answers are known: the probability-flow ODE keeps z = x_t / sqrt(v(t)) fixed, so it maps x_1
to x_t = x_1 sqrt(v(t) / v(1)); its exact samples have std s. The `Oracle` below plays the
network (no training) and counts its evaluations like a `Denoiser`.

Most figures quoted in comments were measured with this file's seeds and sizes.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffusion.parametrize import Prediction
from diffusion.processes import DDPM, EDM, VE, VP, FlowMatching, SubVP
from diffusion.samplers import SAMPLERS, STOCHASTIC, SamplerStep
from diffusion.samplers.grids import make_grid

F64 = torch.float64
S = 0.5  # the data's standard deviation

FAMILIES = {
    "ddpm": lambda: DDPM(prediction="v"),  # cosine schedule, T = 1000
    "vp": VP,
    "subvp": SubVP,
    "ve": VE,
    "edm": EDM,
    "flow": FlowMatching,
}
DETERMINISTIC = sorted(set(SAMPLERS) - STOCHASTIC)
NEEDS_ALPHA = {"euler-maruyama", "pc"}  # the reverse SDE drift alpha'/alpha


class Oracle:
    """The exact denoiser for data N(0, s^2 I): `__call__(x, t)` gives a `Prediction`."""

    def __init__(self, process, s: float = S) -> None:
        self.process, self.s, self.nfe = process, s, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        self.nfe += 1
        x64 = x.to(F64)
        t64 = torch.as_tensor(t, dtype=F64)
        alpha, sigma = self.process.alpha(t64), self.process.sigma(t64)
        if alpha.ndim == 1:  # one time per sample
            shape = (-1,) + (1,) * (x.ndim - 1)
            alpha, sigma = alpha.reshape(shape), sigma.reshape(shape)
        x0 = alpha * self.s**2 * x64 / (alpha**2 * self.s**2 + sigma**2)
        eps = (x64 - alpha * x0) / sigma
        return Prediction(x0=x0.to(x.dtype), eps=eps.to(x.dtype))


def variance(process, t) -> float:
    """Var(x_t) per element: alpha^2 s^2 + sigma^2."""
    t = torch.as_tensor(t, dtype=F64)
    return (process.alpha(t) ** 2 * S**2 + process.sigma(t) ** 2).item()


def prior(process, n: int, seed: int, *, standardise: bool = False) -> torch.Tensor:
    """x at t = 1: sigma(1) z. Standardised z (mean 0, std 1 per column) makes the output
    std of a deterministic sampler exactly its gain, with no sampling noise."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)
    if standardise:
        z = (z - z.mean(0)) / z.std(0)
    return process.sigma(torch.ones((), dtype=F64)).item() * z


def reference(process, x1: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The exact PF-ODE from times[0] to the last positive time t_e, then the exact denoiser
    (alpha(0) = 1 times E[x0 | x_{t_e}]), which is what a first-order last step to t = 0 does."""
    t_e = times[-2].item()
    x_e = x1 * math.sqrt(variance(process, t_e) / variance(process, times[0].item()))
    alpha_e = process.alpha(torch.tensor(t_e, dtype=F64)).item()
    return alpha_e * S**2 / variance(process, t_e) * x_e


def run(name: str, process, x: torch.Tensor, times: torch.Tensor, seed: int | None = 1, **kw):
    oracle = Oracle(process)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    out = SAMPLERS[name](oracle, x.clone(), times, generator=generator, **kw)
    return out, oracle.nfe


# -- every sampler on every family: the spread of the data ---------------------------------

STEPS = 100
N = 4000
# |std - s| allowed per dimension with 100 steps and 4000 2-D samples. Deterministic
# samplers see a standardised prior, so only their discretisation bias counts (measured
# maxima over families: heun 0.0043, rk45 0.0047, dpm-solver++ 0.0016, euler = ddim 0.0146).
# Stochastic ones add sampling noise, 5 standard errors = 5 s / sqrt(2 N) = 0.028 (measured
# maxima: ancestral 0.034, its posterior variance under-disperses by O(1/K); euler-maruyama
# 0.012; pc 0.021).
TOLERANCE = {
    "heun": 0.01,
    "rk45": 0.01,
    "dpm-solver++": 0.01,
    "dpm-solver": 0.01,
    "unipc": 0.01,
    "deis": 0.01,
    "euler": 0.02,
    "ddim": 0.02,
    "ancestral": 0.05,
    "euler-maruyama": 0.035,
    "pc": 0.035,
}
# Combinations that are finite but genuinely inaccurate at 100 steps:
INACCURATE = {
    # The cosine schedule clips the last beta at 0.999, so at t = 1 the drift
    # f = alpha'/alpha of the (interpolated) DDPM path is ~ -5e5 and an Euler-Maruyama step of
    # 0.01 is unstable: std 1.11 at 100 steps, 0.73 at 200, 0.527 at 1000. The linear schedule
    # is fine (`test_sde_samplers_on_a_linear_ddpm`).
    ("ddpm", "euler-maruyama"),
    ("ddpm", "pc"),  # same predictor; std 0.785 at 100 steps, 0.51 at 200.
}


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "langevin"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_sampler_reproduces_the_data_spread(family: str, name: str) -> None:
    process = FAMILIES[family]()
    x = prior(process, N, seed=0, standardise=True)
    times = process.time_grid(STEPS)
    if family == "flow" and name in NEEDS_ALPHA:
        with pytest.raises(ValueError, match=r"alpha.*use ancestral, ddim, euler, heun"):
            run(name, process, x, times)
        return
    out, _ = run(name, process, x, times)
    assert out.shape == x.shape and out.dtype == F64
    assert bool(torch.isfinite(out).all())
    if (family, name) in INACCURATE:
        return
    std = out.std(0)
    assert (std - S).abs().max().item() < TOLERANCE[name], std.tolist()
    assert out.mean(0).abs().max().item() < 5 * S / math.sqrt(N) + 0.01


@pytest.mark.parametrize("name", ["euler-maruyama", "pc"])
def test_sde_samplers_on_a_linear_ddpm(name: str) -> None:
    process = DDPM(1000, "linear", prediction="v")
    out, _ = run(name, process, prior(process, N, seed=0), process.time_grid(STEPS))
    assert (out.std(0) - S).abs().max().item() < TOLERANCE[name]  # measured 0.4999, 0.494


def langevin_law(process, times: torch.Tensor, step_size: float, steps: int) -> float:
    """Exact std of annealed Langevin with the oracle: the score is -x / v, so each step maps
    Var -> (1 - a / (2 v))^2 Var + a; the final denoising multiplies by alpha s^2 / v."""
    var = process.sigma(torch.ones((), dtype=F64)).item() ** 2
    levels = [t for t in times.tolist() if t > 0]
    for t in levels:
        a = step_size * process.sigma(torch.tensor(t, dtype=F64)).item() ** 2
        v = variance(process, t)
        for _ in range(steps):
            var = (1 - a / (2 * v)) ** 2 * var + a
    t = levels[-1]
    return process.alpha(torch.tensor(t, dtype=F64)).item() * S**2 / variance(process, t) * var**0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_langevin_follows_its_exact_law(family: str) -> None:
    process = FAMILIES[family]()
    times = process.time_grid(20)
    out, nfe = run("langevin", process, prior(process, N, seed=0), times, langevin_steps=20)
    assert nfe == 20 * 20 + 1
    law = langevin_law(process, times, step_size=0.2, steps=20)
    # 5 standard errors of a sample std.
    assert (out.std(0) - law).abs().max().item() < 5 * law / math.sqrt(2 * N)
    # The law itself is near s but biased: 20 steps of fixed relative size freeze the chain
    # once sigma << s (measured: ddpm 0.531, vp 0.520, subvp 0.522, ve 0.553, edm 0.619,
    # flow 0.474).
    assert abs(law - S) < 0.15


def test_one_langevin_step_has_the_stated_law() -> None:
    # VE at t = 0.5 (sigma^2 = 0.1), one level, one step of a = step_size sigma^2 from a
    # constant c: x' = c (1 - a / (2 v)) + sqrt(a) z, then the denoiser multiplies by s^2 / v.
    process, n, c, step_size = VE(), 200_000, 0.8, 0.7
    sigma2 = 0.01**2 * 1000.0
    a, v = step_size * sigma2, S**2 + sigma2
    times = torch.tensor([0.5, 0.0], dtype=F64)
    x = torch.full((n, 1), c, dtype=F64)
    out, nfe = run("langevin", process, x, times, step_size=step_size, langevin_steps=1)
    assert nfe == 2
    gain = S**2 / v
    std = gain * math.sqrt(a)
    assert out.mean().item() == pytest.approx(gain * c * (1 - a / (2 * v)), abs=5 * std / n**0.5)
    assert out.std().item() == pytest.approx(std, rel=5 / math.sqrt(2 * n))


def test_one_euler_maruyama_step_has_the_stated_law() -> None:
    # VP from t = 0.6 to 0.5 (a grid need not end at 0 for one step): f = -beta/2, g^2 = beta
    # with beta = 0.1 + 19.9 t, and the oracle's score -x / v, so from a constant c
    # x' = c (1 + (f + g^2 / v) dt) + sqrt(g^2 |dt|) z with dt = -0.1.
    process, n, c = VP(), 200_000, 0.8
    t, dt = 0.6, -0.1
    beta = 0.1 + 19.9 * t
    alpha = math.exp(-(t**2) * 19.9 / 4 - 0.05 * t)
    v = alpha**2 * S**2 + 1 - alpha**2
    times = torch.tensor([t, t + dt], dtype=F64)
    out, nfe = run("euler-maruyama", process, torch.full((n, 1), c, dtype=F64), times)
    assert nfe == 1
    std = math.sqrt(beta * -dt)
    mean = c * (1 + (-beta / 2 + beta / v) * dt)
    assert out.mean().item() == pytest.approx(mean, abs=5 * std / n**0.5)
    assert out.std().item() == pytest.approx(std, rel=5 / math.sqrt(2 * n))


# -- cost ----------------------------------------------------------------------------------

K = 10


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("euler", {}, K),
        ("ddim", {}, K),
        ("ddim", {"eta": 1.0}, K),
        ("dpm-solver++", {}, K),
        ("dpm-solver", {}, 3 * (K - 1) + 1),  # order 3 per step; the step to t = 0 is first order
        ("dpm-solver", {"order": 2, "prediction": "noise"}, 2 * (K - 1) + 1),
        ("unipc", {}, K),
        ("unipc", {"order": 3, "corrector": False}, K),
        ("deis", {"order": 3}, K),
        ("ancestral", {}, K),
        ("euler-maruyama", {}, K),
        ("heun", {}, 2 * K - 1),
        ("heun", {"churn": 5.0}, 2 * K - 1),
        ("pc", {}, K + (K - 1)),
        ("pc", {"corrector_steps": 3}, K + 3 * (K - 1)),
        ("pc", {"corrector_steps": 0}, K),
        ("langevin", {"langevin_steps": 3}, K * 3 + 1),
        ("langevin", {}, K * 100 + 1),  # 100 steps per level by default (Song & Ermon 2019)
    ],
)
@pytest.mark.parametrize("family", ["vp", "edm"])
def test_network_evaluations(family: str, name: str, options: dict, expected: int) -> None:
    process = FAMILIES[family]()
    _, nfe = run(name, process, prior(process, 8, seed=0), process.time_grid(K), **options)
    assert nfe == expected


# -- randomness ----------------------------------------------------------------------------


RUNNABLE = [
    (family, name)
    for family in FAMILIES
    for name in SAMPLERS
    if not (family == "flow" and name in NEEDS_ALPHA)  # refused, tested above
]


@pytest.mark.parametrize(("family", "name"), RUNNABLE)
def test_only_stochastic_samplers_use_the_generator(family: str, name: str) -> None:
    process = FAMILIES[family]()
    x, times = prior(process, 64, seed=0), process.time_grid(10)
    options = {"langevin_steps": 2} if name == "langevin" else {}
    a, _ = run(name, process, x, times, seed=1, **options)
    b, _ = run(name, process, x, times, seed=2, **options)
    again, _ = run(name, process, x, times, seed=1, **options)
    assert torch.equal(a, again)  # reproducible
    if name in STOCHASTIC:
        assert (a - b).abs().max().item() > 1e-3
    else:
        none, _ = run(name, process, x, times, seed=None, **options)
        assert torch.equal(a, b) and torch.equal(a, none)


def test_the_stochastic_set_is_what_the_registry_says() -> None:
    assert {"ancestral", "euler-maruyama", "pc", "langevin"} == STOCHASTIC
    assert set(DETERMINISTIC) == {
        "ddim", "euler", "heun", "rk45", "dpm-solver++", "dpm-solver", "unipc", "deis",
    }  # fmt: skip


# -- Euler is DDIM -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_euler_is_ddim_with_eta_zero(family: str) -> None:
    # Euler in (x / alpha, sigma / alpha) is DDIM (Song et al. 2021a, Sec. 4.3); on the
    # straight flow path the default is Euler in t, which is DDIM too (the path is linear).
    process = FAMILIES[family]()
    x, times = prior(process, 64, seed=3), process.time_grid(20)
    euler, _ = run("euler", process, x, times)
    ddim, _ = run("ddim", process, x, times, eta=0.0)
    torch.testing.assert_close(euler, ddim, rtol=0, atol=1e-10)


def test_euler_in_t_is_not_ddim_on_a_curved_path() -> None:
    # The equality above is not automatic: on VP, Euler in the process time differs.
    process = VP()
    x, times = prior(process, 64, seed=3), process.time_grid(20)
    euler_t, _ = run("euler", process, x, times, variable="t")
    ddim, _ = run("ddim", process, x, times)
    assert (euler_t - ddim).abs().max().item() > 1e-3


# -- convergence order against the exact flow -----------------------------------------------


def max_error(name: str, process, times: torch.Tensor) -> float:
    x1 = prior(process, 64, seed=0)
    out, _ = run(name, process, x1, times)
    return (out - reference(process, x1, times)).abs().max().item()


@pytest.mark.parametrize("family", ["edm", "ve"])
@pytest.mark.parametrize(
    ("name", "low", "high"),
    # Measured ratios of the max error at 20 and 40 steps: euler 1.977 (EDM), 1.957 (VE);
    # heun 4.47 (EDM), 4.19 (VE).
    [("euler", 1.8, 2.2), ("heun", 3.5, 5.0)],
)
def test_order_of_euler_and_heun(family: str, name: str, low: float, high: float) -> None:
    process = FAMILIES[family]()
    coarse = max_error(name, process, process.time_grid(20))
    fine = max_error(name, process, process.time_grid(40))
    assert coarse > 1e-4  # a real discretisation error, well above rounding
    assert low < coarse / fine < high


@pytest.mark.parametrize(
    ("family", "grid"),
    # Measured ratios at 20 -> 40 steps: 4.10 (VP, logsnr), 4.73 (EDM's own grid). On VP's
    # uniform grid the last positive step has a fixed log-SNR width (0.5 ln 2 as sigma^2 ~
    # beta_min t), so the ratios there are erratic (6.0, 0.75, 2.0, 2.8 from 10 to 160 steps).
    [("vp", "logsnr"), ("edm", "uniform")],
)
def test_order_of_dpm_solver(family: str, grid: str) -> None:
    process = FAMILIES[family]()
    coarse = max_error("dpm-solver++", process, make_grid(process, 20, grid))
    fine = max_error("dpm-solver++", process, make_grid(process, 40, grid))
    assert coarse > 1e-4
    assert 2.5 < coarse / fine < 6.0


@pytest.mark.parametrize("name", ["euler", "heun", "dpm-solver++", "dpm-solver"])
@pytest.mark.parametrize("family", ["vp", "ve", "edm", "flow"])
def test_the_last_step_is_the_denoiser(family: str, name: str) -> None:
    # What `reference` assumes: the step to t = 0 returns alpha(0) E[x0 | x at t_e].
    process = FAMILIES[family]()
    times = process.time_grid(8)
    steps: list[SamplerStep] = []
    oracle = Oracle(process)
    out = SAMPLERS[name](oracle, prior(process, 16, seed=4), times, callback=steps.append)
    x_e = steps[-2].x
    torch.testing.assert_close(out, oracle(x_e, times[-2]).x0, rtol=1e-12, atol=1e-12)


# -- rk45 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["edm", "ve"])
def test_rk45_meets_its_tolerance(family: str) -> None:
    process = FAMILIES[family]()
    times = process.time_grid(50)
    x1 = prior(process, 256, seed=0)
    exact = reference(process, x1, times)

    def solve(tol: float | None) -> tuple[float, int]:
        options = {} if tol is None else {"rtol": tol, "atol": tol}
        out, nfe = run("rk45", process, x1, times, **options)
        return (out - exact).abs().max().item(), nfe

    error, _ = solve(None)  # defaults rtol = atol = 1e-3; measured 3.8e-3 (EDM), 1.4e-3 (VE)
    assert error < 10 * 1e-3
    error_tight, nfe_tight = solve(1e-5)  # measured 3e-5 (EDM), 6e-6 (VE)
    error_loose, nfe_loose = solve(1e-2)  # measured NFE 50 vs 98 (EDM), 32 vs 74 (VE)
    assert error_tight < 1e-3 and error_loose > error_tight
    assert nfe_tight > nfe_loose


def test_rk45_default_tolerances_hold_on_subvp() -> None:
    process = SubVP()
    times = process.time_grid(100)
    x1 = prior(process, 256, seed=0)
    out, _ = run("rk45", process, x1, times)
    assert (out - reference(process, x1, times)).abs().max().item() < 10 * 1e-3


def test_rk45_takes_no_degenerate_step() -> None:
    process = VP()
    steps: list[SamplerStep] = []
    SAMPLERS["rk45"](
        Oracle(process), prior(process, 8, seed=0), process.time_grid(50), callback=steps.append
    )
    assert min(step.t - step.s for step in steps) > 1e-9


# -- stochastic churn ----------------------------------------------------------------------


def test_heun_churn_is_random_and_keeps_the_spread() -> None:
    process = EDM()
    times = process.time_grid(100)
    x = prior(process, N, seed=0, standardise=True)
    a, nfe = run("heun", process, x, times, seed=1, churn=40.0)
    b, _ = run("heun", process, x, times, seed=2, churn=40.0)
    plain, _ = run("heun", process, x, times, seed=1)
    zero, _ = run("heun", process, x, times, seed=2, churn=0.0)
    assert nfe == 2 * 100 - 1
    assert (a - b).abs().max().item() > 1e-2
    assert (a - plain).abs().max().item() > 1e-2
    assert torch.equal(zero, plain)
    # Measured std 0.501-0.515 (3 seeds); 5 standard errors = 0.028.
    for out in (a, b):
        assert (out.std(0) - S).abs().max().item() < 0.035


# -- the callback --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in ("rk45", "langevin")])
@pytest.mark.parametrize("family", ["vp", "edm"])
def test_callback_once_per_step(family: str, name: str) -> None:
    process = FAMILIES[family]()
    times = process.time_grid(8)
    steps: list[SamplerStep] = []
    out, _ = run(name, process, prior(process, 16, seed=0), times, callback=steps.append)
    grid = times.tolist()
    assert [step.index for step in steps] == list(range(8))
    assert [step.t for step in steps] == grid[:-1]
    assert [step.s for step in steps] == grid[1:]
    assert all(b.t < a.t for a, b in itertools.pairwise(steps))
    assert steps[-1].s == 0.0
    assert torch.equal(steps[-1].x, out)
    assert all(step.x.shape == (16, 2) and step.x0.shape == (16, 2) for step in steps)


def test_rk45_callback_reports_its_own_steps() -> None:
    # rk45 ignores the grid between times[0] and times[-2]: one call per accepted step, then
    # one for the final denoising from t_e = times[-2] to 0.
    process = EDM()
    times = process.time_grid(18)
    steps: list[SamplerStep] = []
    out, nfe = run("rk45", process, prior(process, 16, seed=0), times, callback=steps.append)
    assert [step.index for step in steps] == list(range(len(steps)))
    assert steps[0].t == 1.0
    assert all(step.s < step.t for step in steps)
    for a, b in itertools.pairwise(steps):
        assert b.t == pytest.approx(a.s, abs=1e-12)
    assert steps[-1].t == pytest.approx(times[-2].item(), abs=1e-12) and steps[-1].s == 0.0
    assert torch.equal(steps[-1].x, out)
    # Dormand-Prince with FSAL: 1 + 6 per attempted step + 1 for the final denoising.
    assert (nfe - 2) % 6 == 0 and len(steps) - 1 <= (nfe - 2) // 6


def test_langevin_callback_once_per_level() -> None:
    process = VE()
    times = process.time_grid(8)
    steps: list[SamplerStep] = []
    out, _ = run(
        "langevin", process, prior(process, 16, seed=0), times, callback=steps.append,
        langevin_steps=2,
    )  # fmt: skip
    grid = times.tolist()
    assert [step.index for step in steps] == list(range(8))
    assert [step.t for step in steps] == grid[:-1]
    assert [step.s for step in steps] == grid[1:]
    assert steps[-1].s == 0.0
    assert torch.equal(steps[-1].x, out)


# -- bad options ---------------------------------------------------------------------------


def test_bad_options_raise() -> None:
    edm, flow = EDM(), FlowMatching()
    x_edm, x_flow = prior(edm, 4, seed=0), prior(flow, 4, seed=0)
    grid_edm, grid_flow = edm.time_grid(5), flow.time_grid(5)
    with pytest.raises(ValueError, match="churn"):
        run("heun", edm, x_edm, grid_edm, churn=1.0, variable="t")
    with pytest.raises(ValueError, match="churn"):
        run("heun", edm, x_edm, grid_edm, churn=-1.0)
    for step_size in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="step_size > 0"):
            run("langevin", edm, x_edm, grid_edm, step_size=step_size)
    with pytest.raises(ValueError, match="langevin_steps >= 1"):
        run("langevin", edm, x_edm, grid_edm, langevin_steps=0)
    for tol in ({"rtol": 0.0}, {"rtol": -1e-3}, {"atol": 0.0}):
        with pytest.raises(ValueError, match="rtol and atol must be positive"):
            run("rk45", edm, x_edm, grid_edm, **tol)
    for name in ("euler", "heun"):
        with pytest.raises(ValueError, match="alpha = 0"):
            run(name, flow, x_flow, grid_flow, variable="sigma")
        with pytest.raises(ValueError, match="unknown ODE variable"):
            run(name, edm, x_edm, grid_edm, variable="tau")
    with pytest.raises(ValueError, match="snr > 0"):
        run("pc", edm, x_edm, grid_edm, snr=0.0)
    # Nothing was evaluated before the checks failed.
    oracle = Oracle(edm)
    with pytest.raises(ValueError):
        SAMPLERS["rk45"](oracle, x_edm, grid_edm, rtol=0.0)
    assert oracle.nfe == 0
