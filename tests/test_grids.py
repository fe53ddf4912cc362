"""Known answers for the sampling time grids (`diffusion.samplers.grids`).

Every grid has K + 1 strictly decreasing times from exactly 1 (the prior) to exactly 0;
quadratic is (1 - i/K)^2; karras is Eq. 5 of Karras et al. 2022 on the noise level
sigma / alpha; logsnr is evenly spaced in log(sigma / alpha); where sigma / alpha at t = 1
exceeds 80 the first step jumps from t = 1 to the time of sigma / alpha = 80.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion.processes import DDPM, EDM, VE, VP, FlowMatching, SubVP
from diffusion.samplers import sample
from diffusion.samplers.grids import GRIDS, check_times, make_grid
from diffusion.samplers.ode import HEUN_MAX_SIGMA

F64 = torch.float64

PROCESSES = {
    "ddpm": DDPM,  # cosine, T = 1000: sigma / alpha = 20291 at t = 1
    "ddpm-linear": lambda: DDPM(1000, "linear"),  # 157 at t = 1
    "vp": VP,  # 152
    "subvp": SubVP,  # 152
    "ve": VE,  # 10
    "edm": EDM,  # 80
    "flow": FlowMatching,  # inf
}
# Processes whose sigma / alpha at t = 1 is above 80: their karras and logsnr grids jump.
JUMPS = {"ddpm", "ddpm-linear", "vp", "subvp", "flow"}
CONTINUOUS = ["vp", "subvp", "ve", "edm", "flow"]


def structure_cases():
    for name in PROCESSES:
        for kind in GRIDS:
            for steps in (1, 2, 5, 10):
                yield pytest.param(name, kind, steps, id=f"{name}-{kind}-{steps}")


def t64(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=F64)


def ratio(process, t) -> float:
    return process.sigma_ratio(t64(t)).item()


@pytest.mark.parametrize(("name", "kind", "steps"), list(structure_cases()))
def test_every_grid_walks_from_one_to_zero(name: str, kind: str, steps: int) -> None:
    process = PROCESSES[name]()
    grid = make_grid(process, steps, kind)
    assert grid.dtype == F64 and grid.shape == (steps + 1,)
    assert grid[0].item() == 1.0 and grid[-1].item() == 0.0
    assert bool((grid[1:] < grid[:-1]).all())
    if isinstance(process, DDPM):  # on the steps k / T
        k = grid * process.steps
        torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)
    # A valid grid for sampling.
    torch.testing.assert_close(check_times(grid), grid, rtol=0, atol=0)


@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("steps", [1, 2, 5, 10])
def test_quadratic_grid(name: str, steps: int) -> None:
    grid = make_grid(PROCESSES[name](), steps, "quadratic")
    i = torch.arange(steps + 1, dtype=F64)
    torch.testing.assert_close(grid, (1 - i / steps) ** 2, rtol=0, atol=1e-15)


def test_quadratic_grid_on_ddpm_is_rounded_to_its_steps() -> None:
    grid = make_grid(DDPM(), 10, "quadratic")
    expected = [1.0, 0.81, 0.64, 0.49, 0.36, 0.25, 0.16, 0.09, 0.04, 0.01, 0.0]
    assert grid.tolist() == pytest.approx(expected, abs=1e-12)
    coarse = make_grid(DDPM(100, "cosine"), 7, "quadratic")  # (1 - i/7)^2 * 100, rounded
    assert (coarse * 100).round().tolist() == [100, 73, 51, 33, 18, 8, 2, 0]


@pytest.mark.parametrize("steps", [1, 2, 5, 18, 40])
def test_karras_grid_on_edm_is_edms_own(steps: int) -> None:
    process = EDM()
    torch.testing.assert_close(
        make_grid(process, steps, "karras"), process.time_grid(steps), rtol=0, atol=1e-12
    )


def bottom_level(process) -> float:
    """The lowest noise level: that of the smallest training time, but at least 0.002."""
    t_low = max(process.t_min, 1e-3)
    return max(ratio(process, t_low), 0.002)


def test_bottom_levels() -> None:
    # What `bottom_level` gives, from the closed forms: VP sigma/alpha at t = 1e-3,
    # VE sigma_min 1000^0.001, and 0.002 where the process goes lower.
    alpha = math.exp(-(1e-6) * 19.9 / 4 - 0.05e-3)
    assert bottom_level(VP()) == pytest.approx(math.sqrt(1 - alpha**2) / alpha, rel=1e-9)
    assert bottom_level(VP()) == pytest.approx(0.01048, abs=1e-5)
    assert bottom_level(VE()) == pytest.approx(0.01 * 1000**0.001, rel=1e-12)
    assert bottom_level(EDM()) == pytest.approx(0.002, rel=1e-6)
    assert bottom_level(SubVP()) == 0.002
    assert bottom_level(FlowMatching()) == 0.002


def levels_of(process, grid: torch.Tensor, jumps: bool) -> torch.Tensor:
    """The positive noise levels the grid was built from (after t = 1 when it jumps)."""
    positive = grid[1:-1] if jumps else grid[:-1]
    return process.sigma_ratio(positive)


@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("steps", [5, 10])
def test_karras_levels_follow_eq5(name: str, steps: int) -> None:
    process = PROCESSES[name]()
    jumps = name in JUMPS
    grid = make_grid(process, steps, "karras")
    top = min(ratio(process, 1.0), 80.0)
    bottom, rho = bottom_level(process), 7.0
    n = steps - 1 if jumps else steps
    i = torch.arange(n, dtype=F64) / (n - 1)
    eq5 = (top ** (1 / rho) + i * (bottom ** (1 / rho) - top ** (1 / rho))) ** rho
    # rtol 1e-7: make_grid evaluates the bottom level at torch.tensor(1e-3), a float32 time
    # (1e-3 + 4.7e-11), which moves VP's bottom level by 2.6e-8 relative.
    torch.testing.assert_close(levels_of(process, grid, jumps), eq5, rtol=1e-7, atol=0)


@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("steps", [5, 10])
def test_logsnr_levels_are_evenly_spaced(name: str, steps: int) -> None:
    process = PROCESSES[name]()
    jumps = name in JUMPS
    log_levels = levels_of(process, make_grid(process, steps, "logsnr"), jumps).log()
    differences = log_levels[1:] - log_levels[:-1]
    torch.testing.assert_close(
        differences, torch.full_like(differences, differences[0].item()), rtol=1e-9, atol=0
    )
    assert log_levels[0].item() == pytest.approx(math.log(min(ratio(process, 1.0), 80.0)))
    assert log_levels[-1].item() == pytest.approx(math.log(bottom_level(process)), abs=1e-7)


@pytest.mark.parametrize("name", sorted(JUMPS))
@pytest.mark.parametrize("kind", ["karras", "logsnr"])
@pytest.mark.parametrize("steps", [2, 5, 10])
def test_first_step_jumps_to_sigma_max(name: str, kind: str, steps: int) -> None:
    process = PROCESSES[name]()
    assert ratio(process, 1.0) > 80
    grid = make_grid(process, steps, kind)
    assert grid[0].item() == 1.0
    t80 = process.time_at_sigma_ratio(80.0)
    if isinstance(process, DDPM):
        assert grid[1].item() == pytest.approx(round(t80 * process.steps) / process.steps)
    else:
        assert ratio(process, grid[1]) == pytest.approx(80.0, rel=1e-9)
        assert grid[1].item() == pytest.approx(t80, abs=1e-12)


@pytest.mark.parametrize("kind", ["karras", "logsnr"])
def test_no_jump_below_sigma_max(kind: str) -> None:
    # VE (10 at t = 1) and EDM (80) start their levels at t = 1 itself: the second time is
    # the second level, below the first.
    for process, top in ((VE(), 10.0), (EDM(), 80.0)):
        grid = make_grid(process, 5, kind)
        assert ratio(process, grid[0]) == pytest.approx(top, rel=1e-12)
        assert ratio(process, grid[1]) < 0.5 * top


def test_time_at_sigma_ratio_on_known_paths() -> None:
    # Flow: sigma/alpha = t / (1 - t) = 80 at t = 80/81. VP: solve alpha^2 = 1 / (1 + 80^2).
    assert FlowMatching().time_at_sigma_ratio(80.0) == pytest.approx(80 / 81, abs=1e-12)
    log_alpha = -0.5 * math.log(1 + 80**2)  # = -(19.9/4) t^2 - 0.05 t
    a, b, c = 19.9 / 4, 0.05, log_alpha
    t = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert VP().time_at_sigma_ratio(80.0) == pytest.approx(t, abs=1e-12)


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["karras", "logsnr", "quadratic"])
def test_too_many_steps_for_a_discrete_process_raise(kind: str) -> None:
    with pytest.raises(ValueError, match=rf"the {kind} grid with 9 steps repeats a time"):
        make_grid(DDPM(steps=10), 9, kind)
    # The uniform grid can take every step.
    assert make_grid(DDPM(steps=10), 10, "uniform").tolist() == pytest.approx(
        [k / 10 for k in range(10, -1, -1)]
    )


@pytest.mark.parametrize("name", ["ddpm", "vp", "edm"])
def test_bad_kind_or_steps_raise(name: str) -> None:
    process = PROCESSES[name]()
    with pytest.raises(ValueError, match="unknown time grid 'cosine'"):
        make_grid(process, 5, "cosine")
    for kind in GRIDS:
        with pytest.raises(ValueError, match="steps must be >= 1"):
            make_grid(process, 0, kind)


# -- through process.sample -------------------------------------------------------------------


class Zeros(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@pytest.mark.parametrize("name", ["vp", "flow", "edm", "ddpm"])
@pytest.mark.parametrize("kind", ["karras", "logsnr", "quadratic"])
def test_sample_uses_the_named_grid(name: str, kind: str) -> None:
    process = PROCESSES[name]()
    steps = 6
    result = sample(
        process.denoiser(Zeros()), (4, 2), sampler="heun", steps=steps, grid=kind,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    expected = make_grid(process, steps, kind)
    torch.testing.assert_close(result.times, expected, rtol=0, atol=0)
    # Heun's first step is a plain Euler step where it starts above HEUN_MAX_SIGMA (DDPM);
    # flow (alpha(1) = 0, tau infinite) integrates in t and keeps the correction.
    tau = float(process.sigma_ratio(expected[:1].double())[0])
    euler_first = HEUN_MAX_SIGMA < tau < float("inf")
    assert euler_first == (name == "ddpm")
    assert result.nfe == 2 * steps - 1 - euler_first
    assert result.x.shape == (4, 2) and bool(torch.isfinite(result.x).all())
    if not (name == "edm" and kind == "karras"):  # elsewhere the grid is not the uniform one
        assert not torch.equal(result.times, process.time_grid(steps))
    uniform = sample(process.denoiser(Zeros()), (4, 2), sampler="heun", steps=steps)
    torch.testing.assert_close(uniform.times, process.time_grid(steps), rtol=0, atol=0)
