"""Forward processes ("techniques"), each behind the `GaussianProcess` interface."""

from __future__ import annotations

from collections.abc import Callable

from diffusion.processes.base import GaussianProcess, SampleResult
from diffusion.processes.ddpm import DDPM, TerminalSignalError

PROCESSES: dict[str, Callable[..., GaussianProcess]] = {
    "ddpm": DDPM,
}

__all__ = ["DDPM", "PROCESSES", "GaussianProcess", "SampleResult", "TerminalSignalError"]
