"""Conversions between prediction targets, and the denoiser view of a network.

A Gaussian path writes ``x_t = alpha * x0 + sigma * eps``. A network may predict

- ``eps``: the noise that was added (Ho et al. 2020);
- ``x0``: the clean data;
- ``v``: ``(alpha * eps - sigma * x0) / r`` with ``r = sqrt(alpha^2 + sigma^2)`` (Salimans &
  Ho 2022, Sec. 4, where r = 1; dividing by r keeps the target at unit variance for any
  path). With the input scaled by ``c_in = 1 / r`` this is exactly the EDM preconditioning
  of Karras et al. 2022 (Table 1) for sigma_data = 1: see `diffusion.processes.edm`;
- ``velocity``: ``dx_t/dt = alpha' * x0 + sigma' * eps``, the flow-matching target
  (Lipman et al. 2023; Liu et al. 2023); it needs the derivatives of alpha and sigma;
- ``score``: ``grad log p_t(x_t) = -eps / sigma`` (Song & Ermon 2019), trained with the
  weight sigma^2 so the loss stays finite as sigma -> 0.

Every conversion between them lives here, so samplers and losses never repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from diffusion.utils import check_choice

if TYPE_CHECKING:
    from diffusion.processes.base import GaussianProcess

TARGETS = ("eps", "x0", "v", "velocity", "score")


@dataclass(frozen=True)
class Prediction:
    """What a network says about x_t at time t, in the two forms samplers use."""

    x0: torch.Tensor  # (B, ...) estimate of the clean data E[x0 | x_t]
    eps: torch.Tensor  # (B, ...) estimate of the noise E[eps | x_t]


def check_target(target: str) -> str:
    """Return `target` if it is a known prediction target, else raise ValueError."""
    return check_choice("prediction target", target, TARGETS)


def target_from(
    target: str,
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha: torch.Tensor,
    sigma: torch.Tensor,
    d_alpha: torch.Tensor | None = None,
    d_sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """The regression target for a network that predicts `target` (coefficients broadcastable;
    `d_alpha`, `d_sigma` are d alpha/dt and d sigma/dt, needed for "velocity" only)."""
    if target == "eps":
        return eps
    if target == "x0":
        return x0
    if target == "v":
        # Eq. 8 of Salimans & Ho 2022, divided by r = sqrt(alpha^2 + sigma^2) (r = 1 for VP).
        return (alpha * eps - sigma * x0) / (alpha**2 + sigma**2).sqrt()
    if target == "velocity":
        _need(d_alpha, d_sigma)
        return d_alpha * x0 + d_sigma * eps
    if target == "score":
        return -eps / sigma
    raise ValueError(f"unknown prediction target {target!r}")


def prediction_from(
    target: str,
    output: torch.Tensor,
    x_t: torch.Tensor,
    alpha: torch.Tensor,
    sigma: torch.Tensor,
    d_alpha: torch.Tensor | None = None,
    d_sigma: torch.Tensor | None = None,
) -> Prediction:
    """Turn a network output for `target` into (x0, eps) using x_t = alpha x0 + sigma eps."""
    if target == "eps":
        return Prediction(x0=(x_t - sigma * output) / alpha, eps=output)
    if target == "x0":
        return Prediction(x0=output, eps=(x_t - alpha * output) / sigma)
    if target == "v":
        # With v = (alpha eps - sigma x0) / r and r^2 = alpha^2 + sigma^2:
        # alpha x_t - sigma r v = r^2 x0 and sigma x_t + alpha r v = r^2 eps.
        norm = alpha**2 + sigma**2
        r = norm.sqrt() if isinstance(norm, torch.Tensor) else norm**0.5
        return Prediction(
            x0=(alpha * x_t - sigma * r * output) / norm,
            eps=(sigma * x_t + alpha * r * output) / norm,
        )
    if target == "velocity":
        # Solve [alpha sigma; alpha' sigma'] [x0; eps] = [x_t; u] (det = alpha sigma' - sigma alpha').
        _need(d_alpha, d_sigma)
        det = alpha * d_sigma - sigma * d_alpha
        return Prediction(
            x0=(d_sigma * x_t - sigma * output) / det, eps=(alpha * output - d_alpha * x_t) / det
        )
    if target == "score":
        eps = -sigma * output
        return Prediction(x0=(x_t - sigma * eps) / alpha, eps=eps)
    raise ValueError(f"unknown prediction target {target!r}")


def _need(d_alpha, d_sigma) -> None:
    if d_alpha is None or d_sigma is None:
        raise ValueError("the velocity target needs d_alpha and d_sigma (dalpha/dt, dsigma/dt)")


def score_from_eps(eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The score grad log p_t(x_t) = -E[eps | x_t] / sigma (Vincent 2011; Song et al. 2021, Eq. 3)."""
    return -eps / sigma


class Denoiser:
    """A network seen through a process: at (x_t, t) it returns a `Prediction`.

    The network is called as ``model(x_t, t, **cond)`` with continuous ``t`` of shape (B,) and
    predicts `target`; `cond` (e.g. class labels, one row per sample) is fixed for the
    denoiser's life. `nfe` counts network evaluations, so every sampler's cost can be reported.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        process: GaussianProcess,
        target: str,
        cond: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.process = process
        self.target = check_target(target)
        self.cond = dict(cond or {})
        self.nfe = 0

    @property
    def dtype(self) -> torch.dtype:
        """The precision the network computes in (float32 when it has no parameters)."""
        return next(self.model.parameters(), torch.empty(0)).dtype

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        return self.predict(x_t, t)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """As calling the denoiser, but differentiable (for likelihoods and diagnostics)."""
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])  # (B,)
        self.nfe += 1
        output = self.model(self.process.model_input(x_t, t), t, **self.cond)
        return prediction_from(self.target, output, x_t, *self.process.coefficients(t, x_t))
