"""Drawing samples: walk a time grid back from the prior with a named sampler.

The process says what noise was added (its prior, alpha and sigma); the grid and the sampler
say how we walk back. Neither knows about training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion.samplers.grids import check_times, make_grid
from diffusion.samplers.registry import GAUSSIAN_ONLY, NEEDS_DRIFT, get_sampler

#: ODE samplers: what a process without Gaussian marginals, or a network trained on coupled
#: pairs, can still use.
ODE_SAMPLERS = "euler, heun, rk45, dpm-solver++ or ddim with eta = 0"


@dataclass(frozen=True)
class SampleResult:
    """Samples and what they cost."""

    x: torch.Tensor  # (n, ...) samples at t = 0
    nfe: int  # network evaluations used
    times: torch.Tensor  # (K+1,) the time grid walked, from 1 down to 0


def sample(
    denoiser,
    shape: tuple[int, ...],
    *,
    sampler: str | None = None,
    steps: int | None = None,
    times: torch.Tensor | None = None,
    grid: str | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    callback: Callable | None = None,
    **options: object,
) -> SampleResult:
    """Draw samples of any shape by walking a time grid back from the prior.

    Args:
        denoiser: called as ``denoiser(x_t, t)`` -> `Prediction`, with ``.process`` and an
            ``.nfe`` counter: ``process.denoiser(model)`` for a trained network (in eval
            mode), or `diffusion.measure.oracle.Oracle.denoiser()` for the exact answer.
        shape: output shape, e.g. (n, d) for n points in d dimensions.
        sampler: a name from `diffusion.samplers.SAMPLERS`; the process's default when None.
        steps: number of sampling steps (ignored when `times` is given); when None, the
            process's default for this sampler (`process.sampling_defaults`).
        times: an explicit decreasing time grid ending at 0 (e.g. a subsequence of steps).
        grid: how to place `steps` times when `times` is None: uniform, quadratic,
            karras or logsnr (`diffusion.samplers.grids`); when None, the process's default
            grid for its default sampler, else uniform.
        generator: source of the prior and sampler noise.
        device: where to sample.
        callback: called with a `diffusion.samplers.SamplerStep` after every step.
        options: sampler options (e.g. ``eta`` for DDIM, ``variance`` for ancestral); the
            process's default sampler takes its default order unless ``order`` is given.

    Returns:
        A `SampleResult` with the samples, the NFE and the grid used.
    """
    process = denoiser.process
    name, default_steps, default_grid, default_options = process.sampling_defaults(sampler)
    options = {**default_options, **options}
    run = get_sampler(name)
    check_sampler(process, name, options)
    steps = default_steps if steps is None else steps
    grid = default_grid if grid is None else grid
    if times is not None:
        walked = check_times(times)
    elif grid == "uniform":
        walked = process.time_grid(steps)
    else:
        walked = make_grid(process, steps, grid)
    x = process.prior(shape, generator=generator, device=device)
    start = denoiser.nfe
    x = run(denoiser, x, walked.to(device), generator=generator, callback=callback, **options)
    return SampleResult(x=x, nfe=denoiser.nfe - start, times=walked)


def check_sampler(process, name: str, options: dict | None = None) -> None:
    """Raise ValueError if sampler `name` (with its noise options) needs what `process` does
    not give: Gaussian marginals, the score of the path (lost with a coupling), or a finite
    SDE drift at t = 1."""
    options = options or {}
    stochastic = name in GAUSSIAN_ONLY or options.get("churn") or options.get("eta")
    if stochastic and not process.gaussian:
        raise ValueError(
            f"{name} (or its noise option) assumes Gaussian marginals, which "
            f"{type(process).__name__} does not have: use {ODE_SAMPLERS}"
        )
    if stochastic and process.coupling != "independent":
        raise ValueError(
            f"{name} (or its noise option) needs the score of the Gaussian path, which a "
            f"network trained with coupling {process.coupling!r} does not learn: use "
            f"{ODE_SAMPLERS}"
        )
    if name in NEEDS_DRIFT and not process.finite_drift:
        raise ValueError(
            f"{name} needs the SDE drift alpha'/alpha, which is infinite at t = 1 of the "
            f"{type(process).__name__} path; use heun, euler, rk45, dpm-solver++, ddim or "
            "ancestral"
        )
