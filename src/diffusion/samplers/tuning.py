"""Time grids chosen by measurement: the K-step grid that makes one sampler's output closest to
an accurate solve of the same probability-flow ODE from the same prior draws.

The idea of optimising the grid for a given model, sampler and step count is that of Sabour,
Fidler & Kreis 2024 ("Align your steps: optimizing sampling schedules in diffusion models"),
which minimise an upper bound on the KL divergence between the true and the discretised
reverse SDE. Here the criterion is the measured discretisation error itself:

    E(grid) = mean_i |x_K(x1_i; grid) - x_ref(x1_i)|^2,

the mean squared distance between what the sampler reaches in K steps and an accurate solve
(DPM-Solver++(3M) with `REFERENCE_STEPS` log-SNR steps: on the exact score of a 2-D mixture
it agrees with twice as many steps to ~3e-7) from the same prior draws x1 (common random
numbers: E is a deterministic function of the grid). sqrt(E) bounds the Wasserstein-2
distance between the K-step and the accurate output laws (the draws give a coupling), so
driving it down drives down every distance the metrics measure. It works for any
deterministic sampler, also with a network (then "accurate" means accurate for that network's
ODE: its own trajectories).

**Parametrisation.** t_0 = 1 and t_K = 0 stay put; the K gaps g_k = t_k - t_(k+1) are a
softmax of K logits, the last one fixed (softmax ignores a common shift), so every point of
the K - 1 free parameters is a strictly decreasing grid from 1 to 0, and each logit moves a
gap by a factor (which suits grids whose gaps span decades). For a discrete process (DDPM)
the times are rounded to its steps inside the objective (the search sees only grids the
process can walk; a grid that repeats a step scores infinity).

**Search.** Nelder–Mead (Nelder & Mead 1965, with the standard coefficients 1, 2, 1/2, 1/2)
from the best of the standard grids (`diffusion.samplers.grids.GRIDS`), restarted from its
best point with a fresh simplex (of another size in turn) while the budget lasts, until three
restarts in a row find nothing better (a simplex that has collapsed along one axis stalls; a
restart gets it moving). Everything is deterministic: same inputs, same grid.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion.samplers.grids import GRIDS, check_times, make_grid
from diffusion.samplers.registry import SAMPLER_OPTIONS, STOCHASTIC, get_sampler

#: steps of the reference solve (DPM-Solver++(3M), log-SNR grid); a discrete process uses
#: all its own steps instead.
REFERENCE_STEPS = 500
#: objective evaluations (K-step sampling runs) of the search by default.
ITERATIONS = 300
#: samplers whose output does not depend on a time grid the way tuning needs.
UNTUNABLE = frozenset({"rk45"})  # adaptive steps: its grid is only the two ends
#: sizes of the initial simplex of successive restarts, in turn: each logit moved by this much
#: (0.5: a gap grows by a factor ~1.6); a restart that stalls at one size may move at another.
_SIMPLEX_STEPS = (0.5, 1.0, 0.25)
_PATIENCE = 3  # the search ends after this many restarts in a row that found nothing better


@dataclass(frozen=True)
class TunedGrid:
    """A grid chosen by `tune_grid`, with what it achieved."""

    times: torch.Tensor  # (K+1,) float64, strictly decreasing from 1 to 0
    error: float  # mean squared distance of the K-step output to the reference
    start_error: float  # the same for the best standard grid
    start_grid: str  # the name of that grid (uniform, quadratic, karras or logsnr)
    evaluations: int  # denoiser calls in all (reference, standard grids, search)


def reference_solution(denoiser, x1: torch.Tensor) -> torch.Tensor:
    """An accurate solve of the probability-flow ODE from the prior draws x1 (B, ...):
    DPM-Solver++(3M) on `REFERENCE_STEPS` log-SNR steps (on every step of a discrete
    process)."""
    process = denoiser.process
    most = process.discrete_steps
    # A discrete process: its finest grid, every step (log-SNR times would repeat, rounded).
    times = process.time_grid(most) if most else make_grid(process, REFERENCE_STEPS, "logsnr")
    return get_sampler("dpm-solver++")(denoiser, x1, times.to(x1.device), order=3)


def grid_error(
    denoiser,
    x1: torch.Tensor,
    reference: torch.Tensor,
    times: torch.Tensor,
    *,
    sampler: str,
    options: dict | None = None,
) -> float:
    """Mean squared distance between `sampler` walked on `times` from x1 and `reference`."""
    x = get_sampler(sampler)(denoiser, x1, times.to(x1.device), **(options or {}))
    error = (x - reference).to(torch.float64).flatten(1).square().sum(1).mean().item()
    return error if math.isfinite(error) else math.inf


def check_tunable(sampler: str, options: dict | None = None) -> None:
    """ValueError unless `sampler` with `options` is deterministic and walks a given grid."""
    get_sampler(sampler)  # an unknown name fails here, with the choices
    options = options or {}
    if sampler in STOCHASTIC or options.get("eta") or options.get("churn"):
        raise ValueError(
            f"{sampler} (or its noise option) draws fresh noise: a grid is tuned against the "
            "probability-flow ODE, for a deterministic sampler (e.g. unipc, dpm-solver++, "
            "heun, ddim with eta 0)"
        )
    if sampler in UNTUNABLE:
        raise ValueError(f"{sampler} chooses its own steps; it has no grid to tune")


def tune_grid(
    denoiser,
    x1: torch.Tensor,
    *,
    sampler: str,
    steps: int,
    options: dict | None = None,
    reference: torch.Tensor | None = None,
    iterations: int = ITERATIONS,
    progress: Callable[[int, int, float], None] | None = None,
) -> TunedGrid:
    """The `steps`-step grid that minimises the measured error of `sampler` from draws x1.

    Args:
        denoiser: ``denoiser(x_t, t)`` -> `Prediction`, with ``.process`` and ``.nfe``: a
            network seen through its process, or `Oracle.denoiser()` for the exact score.
        x1: (B, ...) prior draws, fixed for the whole search (common random numbers).
        sampler: a deterministic sampler's name (see `check_tunable`).
        steps: K, the number of steps of the grid.
        options: the sampler's options (e.g. ``{"order": 3}``).
        reference: (B, ...) the accurate solution from x1; computed by `reference_solution`
            when None.
        iterations: objective evaluations of the search (each one K-step sampling run).
        progress: called as ``progress(done, iterations, best_error)`` after each one.

    Returns:
        A `TunedGrid`; its error is never above that of the best standard grid.
    """
    check_tunable(sampler, options)
    if int(steps) < 1:
        raise ValueError(f"sampling steps must be >= 1, got {steps}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    steps, process = int(steps), denoiser.process
    most = process.discrete_steps
    if most and steps > most:
        raise ValueError(f"steps must be at most {most} for this process (its own steps)")
    start_nfe = denoiser.nfe
    if reference is None:
        reference = reference_solution(denoiser, x1)

    def error_of(times: torch.Tensor) -> float:
        return grid_error(denoiser, x1, reference, times, sampler=sampler, options=options)

    starts = {}
    for kind in GRIDS:
        try:
            starts[kind] = make_grid(process, steps, kind)
        except ValueError:  # e.g. a discrete process with too few steps for this grid
            continue
    scored = {kind: error_of(times) for kind, times in starts.items()}
    start_grid = min(scored, key=scored.__getitem__)  # the first of GRIDS on a tie
    start_error, best_times = scored[start_grid], starts[start_grid]
    best_error = start_error
    if steps > 1 and iterations > 0:
        to_times = _grid_maker(process, steps)

        def objective(params: torch.Tensor) -> float:
            times = to_times(params)
            return math.inf if times is None else error_of(times)

        params, error = _nelder_mead(
            objective, _logits(best_times), start_error, iterations, progress
        )
        if error < start_error:
            best_times, best_error = to_times(params), error
    return TunedGrid(times=check_times(best_times), error=best_error, start_error=start_error,
                     start_grid=start_grid, evaluations=denoiser.nfe - start_nfe)  # fmt: skip


def _logits(times: torch.Tensor) -> torch.Tensor:
    """The K - 1 free logits of a grid: log gap minus the log of the last gap."""
    log_gaps = (times[:-1] - times[1:]).log()  # (K,)
    return (log_gaps[:-1] - log_gaps[-1]).to(torch.float64)


def _grid_maker(process, steps: int) -> Callable[[torch.Tensor], torch.Tensor | None]:
    """params (K-1,) -> the grid (K+1,) from 1 to 0 with softmax gaps; for a discrete process
    rounded to its steps, None where rounding repeats a time."""
    most = process.discrete_steps

    def to_times(params: torch.Tensor) -> torch.Tensor | None:
        gaps = torch.softmax(torch.cat([params, params.new_zeros(1)]), 0)  # (K,) sum to 1
        times = (1 - torch.cumsum(gaps, 0)).clamp_min(0)
        times = torch.cat([times.new_ones(1), times])
        times[-1] = 0.0
        if most:
            times = (times * most).round() / most
        if not bool((times[1:] < times[:-1]).all()):
            return None
        return times

    return to_times


def _nelder_mead(
    f: Callable[[torch.Tensor], float],
    x0: torch.Tensor,
    f0: float,
    budget: int,
    progress: Callable[[int, int, float], None] | None,
) -> tuple[torch.Tensor, float]:
    """Minimise f from x0 (with f(x0) = f0) in at most `budget` evaluations: Nelder–Mead with
    coefficients 1, 2, 1/2, 1/2, restarted from the best point with simplices of the sizes
    `_SIMPLEX_STEPS` in turn, until `_PATIENCE` restarts in a row find nothing better."""
    used, lowest = 0, f0

    def call(x: torch.Tensor) -> float:
        nonlocal used, lowest
        used += 1
        value = f(x)
        lowest = min(lowest, value)
        if progress is not None:
            progress(used, budget, lowest)
        return value

    best = (x0, f0)
    n = x0.numel()
    restarts = idle = 0
    while used + n + 1 <= budget and idle < _PATIENCE:
        before, size = best[1], _SIMPLEX_STEPS[restarts % len(_SIMPLEX_STEPS)]
        restarts += 1
        corners = [best[0] + size * e for e in torch.eye(n, dtype=torch.float64)]
        simplex = [best] + [(x, call(x)) for x in corners]
        while used + 2 <= budget:
            simplex.sort(key=lambda p: p[1])
            if simplex[-1][1] - simplex[0][1] <= 1e-12 * max(abs(simplex[0][1]), 1e-300):
                break  # converged
            centroid = torch.stack([x for x, _ in simplex[:-1]]).mean(0)
            worst = simplex[-1]
            reflected = centroid + (centroid - worst[0])
            fr = call(reflected)
            if fr < simplex[0][1]:  # expand
                expanded = centroid + 2 * (centroid - worst[0])
                fe = call(expanded)
                simplex[-1] = (expanded, fe) if fe < fr else (reflected, fr)
            elif fr < simplex[-2][1]:  # accept the reflection
                simplex[-1] = (reflected, fr)
            else:  # contract (outside when the reflection beat the worst, else inside)
                towards = reflected if fr < worst[1] else worst[0]
                contracted = centroid + 0.5 * (towards - centroid)
                fc = call(contracted)
                if fc < min(fr, worst[1]):
                    simplex[-1] = (contracted, fc)
                else:  # shrink towards the best
                    if used + n > budget:
                        break
                    x_best = simplex[0][0]
                    shrunk = [x_best + 0.5 * (x - x_best) for x, _ in simplex[1:]]
                    simplex = [simplex[0]] + [(x, call(x)) for x in shrunk]
            candidate = min(simplex, key=lambda p: p[1])
            if candidate[1] < best[1]:
                best = candidate
        idle = 0 if best[1] < before else idle + 1
    return best


def resolved_options(sampler: str, options: dict | None = None) -> dict:
    """`options` with every option `sampler` takes filled in from its signature's defaults
    (those that default to None, "the process's", are left out unless given)."""
    parameters = inspect.signature(get_sampler(sampler)).parameters
    resolved = {name: parameters[name].default for name in SAMPLER_OPTIONS[sampler]}
    resolved.update(options or {})
    return {name: value for name, value in sorted(resolved.items()) if value is not None}


def grid_key(sampler: str, steps: int, options: dict | None = None) -> str:
    """The name a tuned grid is kept under: sampler, every option (defaults filled in) and
    steps, e.g. "unipc corrector=True order=3 variant=bh2 steps=10"."""
    settings = resolved_options(sampler, options)
    return " ".join([sampler, *(f"{k}={v}" for k, v in settings.items()), f"steps={int(steps)}"])
