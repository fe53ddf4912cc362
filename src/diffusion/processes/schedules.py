"""Beta schedules for discrete-time DDPM, each a function ``(T, ...) -> betas`` of shape (T,).

Betas are float64: products of a thousand factors near one lose precision in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _endpoints(T: int, beta_start: float | None, beta_end: float | None) -> tuple[float, float]:
    """Given endpoints, or Ho et al.'s 1e-4 and 0.02 at T = 1000 scaled by 1000/T."""
    scale = 1000.0 / T
    start = 1e-4 * scale if beta_start is None else beta_start
    end = 0.02 * scale if beta_end is None else beta_end
    return start, end


def linear_betas(
    T: int, beta_start: float | None = None, beta_end: float | None = None
) -> torch.Tensor:
    """Linear betas (Ho et al. 2020, Sec. 4), 1e-4 to 0.02 at T=1000.

    Defaults scale with 1000/T so any T keeps the same total noise (Nichol & Dhariwal 2021).
    """
    start, end = _endpoints(T, beta_start, beta_end)
    return torch.linspace(start, end, T, dtype=torch.float64)


def quadratic_betas(
    T: int, beta_start: float | None = None, beta_end: float | None = None
) -> torch.Tensor:
    """Betas linear in sqrt(beta), then squared (the "scaled linear" schedule of latent diffusion)."""
    start, end = _endpoints(T, beta_start, beta_end)
    return torch.linspace(math.sqrt(start), math.sqrt(end), T, dtype=torch.float64) ** 2


def sigmoid_betas(
    T: int, beta_start: float | None = None, beta_end: float | None = None
) -> torch.Tensor:
    """Betas following a sigmoid over [-6, 6] between beta_start and beta_end (Xu et al. 2022, GeoDiff)."""
    start, end = _endpoints(T, beta_start, beta_end)
    return torch.sigmoid(torch.linspace(-6.0, 6.0, T, dtype=torch.float64)) * (end - start) + start


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2) (Eq. 17 of Nichol & Dhariwal 2021).

    Betas are clipped at `max_beta` (0.999, as in the paper) to avoid a singularity at t = T.
    """
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has zero SNR (Algorithm 1 of Lin et al. 2024).

    The first step keeps its value; the last becomes pure noise. Use a model that predicts
    ``v`` or ``x0`` with it: ``eps`` cannot recover the data where there is no signal.
    """
    root = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alpha_bar = root**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


BETA_SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "quadratic": quadratic_betas,
}


def make_betas(
    name: str,
    T: int,
    beta_start: float | None = None,
    beta_end: float | None = None,
    zero_terminal_snr: bool = False,
) -> torch.Tensor:
    """Betas (T,) in float64 for schedule `name`; raises ValueError on a bad name or range."""
    if name not in BETA_SCHEDULES:
        choices = ", ".join(sorted(BETA_SCHEDULES))
        raise ValueError(f"unknown beta schedule {name!r}; choose one of: {choices}")
    if T < 1:
        raise ValueError(f"the number of diffusion steps must be positive, got {T}")
    if name == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("the cosine schedule takes no beta_start/beta_end")
        betas = cosine_betas(T)
    else:
        betas = BETA_SCHEDULES[name](T, beta_start, beta_end)
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(
            f"betas must lie in (0, 1); the {name} schedule with T = {T} gives "
            f"[{betas.min().item():.3g}, {betas.max().item():.3g}] (default endpoints scale "
            "with 1000/T: use more steps or give beta_start/beta_end)"
        )
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas
