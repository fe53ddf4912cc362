"""Samplers: plain functions with one signature (see `diffusion.samplers.base`), the time
grids they walk (`grids`), the ODE solver (`odeint`), and `sample`, which puts a process's
prior, a grid and a sampler together."""

from __future__ import annotations

from diffusion.samplers.ancestral import ancestral
from diffusion.samplers.base import SamplerStep
from diffusion.samplers.ddim import ddim
from diffusion.samplers.deis import deis
from diffusion.samplers.dpm_solver import dpm_solver_pp
from diffusion.samplers.dpm_solver_singlestep import (
    SinglestepPlan,
    singlestep_dpm_solver,
    singlestep_plan,
)
from diffusion.samplers.ode import euler, heun, rk45
from diffusion.samplers.registry import (
    GAUSSIAN_ONLY,
    NEEDS_DRIFT,
    SAMPLER_OPTIONS,
    SAMPLERS,
    STOCHASTIC,
    get_sampler,
)
from diffusion.samplers.sampling import SampleResult, check_sampler, sample
from diffusion.samplers.sde import annealed_langevin, euler_maruyama, predictor_corrector
from diffusion.samplers.unipc import unipc

__all__ = [
    "GAUSSIAN_ONLY",
    "NEEDS_DRIFT",
    "SAMPLERS",
    "SAMPLER_OPTIONS",
    "STOCHASTIC",
    "SampleResult",
    "SamplerStep",
    "SinglestepPlan",
    "ancestral",
    "annealed_langevin",
    "check_sampler",
    "ddim",
    "deis",
    "dpm_solver_pp",
    "euler",
    "euler_maruyama",
    "get_sampler",
    "heun",
    "predictor_corrector",
    "rk45",
    "sample",
    "singlestep_dpm_solver",
    "singlestep_plan",
    "unipc",
]
