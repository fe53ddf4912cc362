"""The samplers by name, the options each takes, and what each needs of a process."""

from __future__ import annotations

from collections.abc import Callable

from diffusion.samplers.ancestral import ancestral
from diffusion.samplers.ddim import ddim
from diffusion.samplers.deis import deis
from diffusion.samplers.dpm_solver import dpm_solver_pp
from diffusion.samplers.dpm_solver_singlestep import ORDERS as SINGLESTEP_ORDERS
from diffusion.samplers.dpm_solver_singlestep import singlestep_dpm_solver
from diffusion.samplers.ode import euler, heun, rk45
from diffusion.samplers.sde import annealed_langevin, euler_maruyama, predictor_corrector
from diffusion.samplers.unipc import unipc

SAMPLERS: dict[str, Callable] = {
    "ancestral": ancestral,
    "ddim": ddim,
    "euler-maruyama": euler_maruyama,
    "pc": predictor_corrector,
    "euler": euler,
    "heun": heun,
    "rk45": rk45,
    "dpm-solver++": dpm_solver_pp,
    "dpm-solver": singlestep_dpm_solver,
    "unipc": unipc,
    "deis": deis,
    "langevin": annealed_langevin,
}

#: the options each sampler takes (besides generator and callback).
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "ancestral": ("variance",),
    "ddim": ("eta",),
    "euler-maruyama": (),
    "pc": ("snr", "corrector_steps"),
    "euler": ("variable",),
    "heun": ("variable", "churn", "churn_min", "churn_max", "churn_noise"),
    "rk45": ("rtol", "atol", "max_step", "max_steps"),
    "dpm-solver++": ("order",),
    # singlestep: each of the K grid steps costs `order` evaluations (the last, to t = 0, one);
    # `orders` gives one order per step (`singlestep_plan` spends a budget of N evaluations).
    "dpm-solver": ("order", "orders", "prediction"),
    "unipc": ("order", "variant", "corrector"),
    "deis": ("order",),
    "langevin": ("step_size", "langevin_steps"),
}

#: samplers whose steps assume Gaussian marginals (refused for Poisson flow).
GAUSSIAN_ONLY = frozenset({"ancestral", "euler-maruyama", "pc", "langevin"})

#: samplers that integrate the SDE with drift f(t) = alpha'/alpha (infinite at t = 1 of the
#: flow-matching path, which ends in pure noise with alpha(1) = 0).
NEEDS_DRIFT = frozenset({"euler-maruyama", "pc"})

#: samplers that draw fresh noise (the others are deterministic given the prior draw).
STOCHASTIC = frozenset({"ancestral", "euler-maruyama", "pc", "langevin"})

#: the orders of the samplers that take one (`order`), for checking a config early.
ORDERS: dict[str, tuple[int, ...]] = {
    "dpm-solver++": (2, 3),
    "dpm-solver": SINGLESTEP_ORDERS,
    "unipc": (1, 2, 3),
    "deis": (1, 2, 3),
}


def get_sampler(name: str) -> Callable:
    """The sampler registered as `name`; raises ValueError listing the choices otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
