"""Time grids for sampling, chosen separately from the sampler.

Every grid is a strictly decreasing tensor of times from 1 (where the prior is) down to 0,
with `steps` + 1 entries ("trailing": the first step starts at the terminal time, Lin et al.
2023, Sec. 3.3). Grids other than uniform are defined on the noise level of the equivalent
variance-exploding process, sigma / alpha, and mapped back to times:

- ``uniform``: the process's own grid (evenly spaced times, or DDPM steps);
- ``quadratic``: t_i = (1 - i/K)^2, dense near the data (Song et al. 2021a, DDIM, App. D.2);
- ``karras``: sigma_i = (sigma_max^(1/rho) + i/(K-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
  (Karras et al. 2022, Eq. 5), then 0; sigma_min is 0.002 or the noise level of the
  smallest training time, whichever is larger; sigma_max is 80 or that of t = 1;
- ``logsnr``: evenly spaced log(sigma / alpha), as DPM-Solver uses (Lu et al. 2022, Sec. 3.3).

Where sigma/alpha at t = 1 is above `sigma_max` (80, EDM's), the first step goes from t = 1
to the time of sigma_max. For a discrete process (DDPM) the times are rounded to its steps.
"""

from __future__ import annotations

import math

import torch

GRIDS = ("uniform", "quadratic", "karras", "logsnr")
SIGMA_MAX = 80.0  # Karras et al. 2022, Table 1
SIGMA_MIN = 0.002


def make_grid(
    process,
    steps: int,
    kind: str = "uniform",
    *,
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> torch.Tensor:
    """A decreasing grid of `steps` + 1 times from 1 to 0 (float64)."""
    if kind not in GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; choose one of: {', '.join(GRIDS)}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"sampling steps must be >= 1, got {steps}")
    if kind == "uniform":
        return process.time_grid(steps)
    if kind == "quadratic":
        times = torch.linspace(1, 0, steps + 1, dtype=torch.float64) ** 2
        return _discretise(process, times, kind)
    if steps == 1:  # one step: from the prior straight to the data
        return torch.tensor([1.0, 0.0], dtype=torch.float64)
    # Noise-level grids: between the noise levels of the first and last positive times.
    levels_count = process.discrete_steps
    t_low = 1.0 / levels_count if levels_count else max(process.t_min, 1e-3)
    ratio_at_one = float(process.sigma_ratio(torch.tensor(1.0, dtype=torch.float64)))
    top = min(ratio_at_one, sigma_max or SIGMA_MAX)
    bottom = max(
        float(process.sigma_ratio(torch.tensor(t_low, dtype=torch.float64))),
        sigma_min or SIGMA_MIN,
    )
    if not bottom < top:
        raise ValueError(f"the {kind} grid needs sigma_min < sigma_max, got {bottom}, {top}")
    jump = ratio_at_one > top * (1 + 1e-9)
    n = steps - 1 if jump else steps  # positive levels besides t = 1 when there is a jump
    i = (
        torch.linspace(0, 1, n, dtype=torch.float64)
        if n > 1
        else torch.zeros(1, dtype=torch.float64)
    )
    if kind == "karras":
        levels = (top ** (1 / rho) + i * (bottom ** (1 / rho) - top ** (1 / rho))) ** rho
    else:  # logsnr
        levels = torch.exp(math.log(top) + i * (math.log(bottom) - math.log(top)))
    times = [process.time_at_sigma_ratio(float(level)) for level in levels]
    if jump:
        times = [1.0, *times]
    times[0] = 1.0
    return _discretise(process, torch.tensor([*times, 0.0], dtype=torch.float64), kind)


def _discretise(process, times: torch.Tensor, kind: str) -> torch.Tensor:
    """Round to a discrete process's steps; check the grid stays strictly decreasing."""
    if process.discrete_steps:
        times = (times * process.discrete_steps).round() / process.discrete_steps
    if not bool((times[1:] < times[:-1]).all()):
        raise ValueError(
            f"the {kind} grid with {len(times) - 1} steps repeats a time on this process "
            "(too many steps for its resolution); use fewer steps or the uniform grid"
        )
    return times


def check_times(times: torch.Tensor) -> torch.Tensor:
    """Validate a user time grid: 1-D, strictly decreasing, from t = 1 down to t = 0."""
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or times.numel() < 2:
        raise ValueError("a time grid needs at least two times, e.g. [1.0, 0.0]")
    if not bool((times[1:] < times[:-1]).all()):
        raise ValueError("a time grid must be strictly decreasing (t = 1 is noise, t = 0 is data)")
    if times[0] != 1 or times[-1] != 0:
        raise ValueError("a time grid must start at t = 1 (where the prior is) and end at t = 0")
    return times
