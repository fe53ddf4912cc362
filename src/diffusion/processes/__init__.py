"""Forward processes ("techniques"), each behind the `GaussianProcess` interface."""

from __future__ import annotations

from collections.abc import Callable

from diffusion.processes.base import GaussianProcess
from diffusion.processes.ddpm import DDPM, TerminalSignalError
from diffusion.processes.edm import EDM
from diffusion.processes.flow import FlowMatching
from diffusion.processes.ncsn import NCSN
from diffusion.processes.poisson import PoissonFlow
from diffusion.processes.sde import VE, VP, SubVP

PROCESSES: dict[str, Callable[..., GaussianProcess]] = {
    "ddpm": DDPM,
    "vp": VP,
    "subvp": SubVP,
    "ve": VE,
    "edm": EDM,
    "flow": FlowMatching,
    "ncsn": NCSN,
    "poisson": PoissonFlow,
}

__all__ = [
    "DDPM",
    "EDM",
    "NCSN",
    "PROCESSES",
    "VE",
    "VP",
    "FlowMatching",
    "GaussianProcess",
    "PoissonFlow",
    "SubVP",
    "TerminalSignalError",
]
