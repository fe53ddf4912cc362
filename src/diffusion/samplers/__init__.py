"""Samplers: plain functions with one signature (see `diffusion.samplers.base`)."""

from __future__ import annotations

from collections.abc import Callable

from diffusion.samplers.ancestral import ancestral
from diffusion.samplers.base import SamplerStep
from diffusion.samplers.ddim import ddim

SAMPLERS: dict[str, Callable] = {
    "ancestral": ancestral,
    "ddim": ddim,
}


def get_sampler(name: str) -> Callable:
    """The sampler registered as `name`; raises ValueError listing the choices otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = ["SAMPLERS", "SamplerStep", "ancestral", "ddim", "get_sampler"]
