"""Where on [0, 1] training times are drawn: the training-time distribution.

Drawing t from a density p(t) instead of U(0, 1) is the same as weighting the loss at t by
p(t) (Kingma & Gao 2023, Sec. 4), so this choice decides which noise levels the network
learns best. Three are offered for the continuous processes (flow, vp, subvp, ve):

- ``uniform``: t ~ U(0, 1), the choice of Song et al. 2021 and Lipman et al. 2023.
- ``low-noise``: half the draws uniform, half u^3 with u ~ U(0, 1); the density
  1/2 + t^(-2/3) / 6 puts 28% of the draws below t = 0.1 instead of 10%. On thin data such
  as the swiss roll the velocity field is sharpest near the data (t -> 0): it must send
  points to the right arm of the roll. This mixture is ours; it follows Karras et al. 2022
  (Sec. 5, "noise distribution"): spend the training where the loss can still be reduced,
  and keep the uniform half so no level is starved. On the swiss roll it did not help: over
  twenty seeds the mean SW ratio changed by +0.03 +- 0.02 (docs/performance.md), so it is
  not the default.
- ``logit-normal``: logit(t) ~ N(0, 1), which favours the middle of the path (Esser et al.
  2024, Sec. 3.1, with m = 0 and s = 1).

EDM and Poisson flow draw log-normal noise levels of their own (Karras et al. 2022, Table 1);
DDPM and NCSN draw uniform discrete steps and levels.
"""

from __future__ import annotations

import torch

from diffusion.utils import check_choice

TRAIN_TIMES = ("uniform", "low-noise", "logit-normal")
LOW_NOISE_POWER = 3  # the u^3 half of "low-noise"


def check_train_times(kind: str) -> str:
    """`kind` if it names a training-time distribution; ValueError listing them otherwise."""
    return check_choice("training-time distribution", kind, TRAIN_TIMES)


def draw_times(
    kind: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """n times in [0, 1] (float32) from the distribution named `kind`."""
    if check_train_times(kind) == "uniform":
        return torch.rand(n, generator=generator, device=device)
    if kind == "low-noise":
        u = torch.rand(n, generator=generator, device=device)
        coin = torch.rand(n, generator=generator, device=device)
        return torch.where(coin < 0.5, u**LOW_NOISE_POWER, u)
    return torch.sigmoid(torch.randn(n, generator=generator, device=device))  # logit-normal


def density(kind: str, t: torch.Tensor) -> torch.Tensor:
    """The probability density of `kind` at t in (0, 1), elementwise (for tests and plots)."""
    t = torch.as_tensor(t)
    if check_train_times(kind) == "uniform":
        return torch.ones_like(t)
    if kind == "low-noise":
        k = LOW_NOISE_POWER
        return 0.5 + 0.5 * t ** (1 / k - 1) / k
    logit = torch.log(t / (1 - t))  # logit-normal: the normal density times d logit / dt
    return torch.exp(-0.5 * logit**2) / (2 * torch.pi) ** 0.5 / (t * (1 - t))
