"""Conversions between prediction targets, and the denoiser view of a network.

A Gaussian path writes ``x_t = alpha * x0 + sigma * eps``. A network may predict

- ``eps``: the noise that was added (Ho et al. 2020);
- ``x0``: the clean data;
- ``v``: ``alpha * eps - sigma * x0`` (Salimans & Ho 2022, Sec. 4; Appendix D).

Every conversion between them lives here, so samplers and losses never repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from diffusion.utils import expand_like

if TYPE_CHECKING:
    from diffusion.processes.base import GaussianProcess

TARGETS = ("eps", "x0", "v")


@dataclass(frozen=True)
class Prediction:
    """What a network says about x_t at time t, in the two forms samplers use."""

    x0: torch.Tensor  # (B, ...) estimate of the clean data E[x0 | x_t]
    eps: torch.Tensor  # (B, ...) estimate of the noise E[eps | x_t]


def check_target(target: str) -> str:
    """Return `target` if it is a known prediction target, else raise ValueError."""
    if target not in TARGETS:
        raise ValueError(
            f"unknown prediction target {target!r}; choose one of: {', '.join(TARGETS)}"
        )
    return target


def target_from(
    target: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """The regression target for a network that predicts `target` (alpha, sigma broadcastable)."""
    if target == "eps":
        return eps
    if target == "x0":
        return x0
    if target == "v":
        return alpha * eps - sigma * x0  # Eq. 8 of Salimans & Ho 2022 (any alpha, sigma)
    raise ValueError(f"unknown prediction target {target!r}")


def prediction_from(
    target: str, output: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
) -> Prediction:
    """Turn a network output for `target` into (x0, eps) using x_t = alpha x0 + sigma eps."""
    if target == "eps":
        return Prediction(x0=(x_t - sigma * output) / alpha, eps=output)
    if target == "x0":
        return Prediction(x0=output, eps=(x_t - alpha * output) / sigma)
    if target == "v":
        # alpha x_t - sigma v = (alpha^2 + sigma^2) x0 and sigma x_t + alpha v = (alpha^2 + sigma^2) eps.
        norm = alpha**2 + sigma**2
        return Prediction(
            x0=(alpha * x_t - sigma * output) / norm, eps=(sigma * x_t + alpha * output) / norm
        )
    raise ValueError(f"unknown prediction target {target!r}")


def score_from_eps(eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The score grad log p_t(x_t) = -E[eps | x_t] / sigma (Vincent 2011; Song et al. 2021, Eq. 3)."""
    return -eps / sigma


class Denoiser:
    """A network seen through a process: at (x_t, t) it returns a `Prediction`.

    The network takes ``(x_t, t)`` with continuous ``t`` of shape (B,) and predicts `target`.
    `nfe` counts network evaluations, so every sampler's cost can be reported.
    """

    def __init__(self, model: torch.nn.Module, process: GaussianProcess, target: str) -> None:
        self.model = model
        self.process = process
        self.target = check_target(target)
        self.nfe = 0

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])  # (B,)
        self.nfe += 1
        output = self.model(x_t, t)
        alpha = expand_like(self.process.alpha(t), x_t)
        sigma = expand_like(self.process.sigma(t), x_t)
        return prediction_from(self.target, output, x_t, alpha, sigma)
