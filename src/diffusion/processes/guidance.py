"""Classifier-free guidance: one conditional network, two predictions, one combination.

A network trained with its class label dropped some of the time (`--label-dropout`) predicts
both the conditional target f(x, t, c) and the unconditional one f(x, t, none). Guidance with
scale w samples with

    f_w = f(x, t, none) + w (f(x, t, c) - f(x, t, none))

(Ho & Salimans 2022, Eq. 6, written with w = 1 + their w): w = 0 is the unconditional model,
w = 1 the conditional one, w > 1 pushes away from the unconditional prediction. For eps (and
so for the score, -eps / sigma) this is the score of p_t(x)^(1-w) p_t(x | c)^w at every t; that
this is *not* the score of the noised version of p(x)^(1-w) p(x | c)^w is what makes guided
sampling differ from sampling that tilted law (see the guidance notes).

The combination is taken in the network's own output space, whatever the process predicts.
Each prediction (x0, eps, v, velocity, score) is an affine function of the output at fixed
(x_t, t) with coefficients that do not depend on the class, so combining outputs combines x0,
eps and the score with the same weights: guidance is the same for every parametrisation, and
every sampler and every family gets it without change. Both predictions come from one batched
call of the network on 2B rows (counted as two evaluations, which is what they cost).

A guidance interval (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval
improves sample and distribution quality") applies w only where the noise level
sigma / alpha is inside (low, high) and plain conditional sampling (w = 1) elsewhere.
"""

from __future__ import annotations

import math

import torch

from diffusion.parametrize import Denoiser, Prediction, prediction_from


def check_guidance(scale: float, interval: tuple[float, float] | None = None) -> None:
    """ValueError unless w is a finite number >= 0 and the interval is 0 <= low < high."""
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale >= 0):
        raise ValueError(f"the guidance scale must be a finite number >= 0, got {scale!r}")
    if interval is not None:
        low, high = interval
        if not (0 <= low < high):
            raise ValueError(f"the guidance interval must be 0 <= low < high, got {interval}")


def check_labels(label: torch.Tensor, classes: int) -> None:
    """ValueError unless `label` is one class in 0..classes - 1 per sample, shape (B,)."""
    if label.dim() != 1 or (
        label.numel() and not 0 <= int(label.min()) <= int(label.max()) < classes
    ):
        raise ValueError(f"labels must be classes 0..{classes - 1}, one per sample")


def guidance_scales(
    process, t: torch.Tensor, scale: float, interval: tuple[float, float] | None
) -> torch.Tensor:
    """(B,) the scale at each row's time t (B,): w inside the interval of noise levels
    sigma / alpha (everywhere when None), 1 outside."""
    scales = torch.full_like(t, scale)
    if interval is None:
        return scales
    level = process.sigma_ratio(t)
    inside = (level > interval[0]) & (level < interval[1])
    return torch.where(inside, scales, torch.ones_like(scales))


class GuidedDenoiser(Denoiser):
    """A conditional network seen through a process, with classifier-free guidance.

    Args:
        model: a conditional network, called as ``model(x, t, label=labels)`` where label
            `classes` means "no class".
        process: the process it was trained with.
        target: what the network predicts.
        label: (B,) the class of each sample (a sampler's batch of B).
        scale: the guidance scale w (0: unconditional, 1: conditional).
        classes: the number of classes (the index of "no class").
        interval: (low, high) noise levels sigma / alpha where w applies; None: everywhere.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        process,
        target: str,
        label: torch.Tensor,
        scale: float,
        classes: int,
        interval: tuple[float, float] | None = None,
    ) -> None:
        check_guidance(scale, interval)
        check_labels(label, classes)
        super().__init__(model, process, target)
        self.label = label.long()
        self.scale = float(scale)
        self.classes = classes
        self.interval = interval

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])  # (B,)
        if self.label.shape[0] != x_t.shape[0]:
            raise ValueError(f"{self.label.shape[0]} labels for a batch of {x_t.shape[0]}")
        label = self.label.to(x_t.device)
        none = torch.full_like(label, self.classes)
        model_input = self.process.model_input(x_t, t)
        scales = guidance_scales(self.process, t, self.scale, self.interval)
        if self.scale == 0:  # the unconditional model alone
            self.nfe += 1
            output = self.model(model_input, t, label=none)
        elif bool((scales == 1).all()):  # the conditional model alone
            self.nfe += 1
            output = self.model(model_input, t, label=label)
        else:
            self.nfe += 2
            both = self.model(
                torch.cat([model_input, model_input]), torch.cat([t, t]),
                label=torch.cat([label, none]),
            )  # fmt: skip
            conditional, unconditional = both.chunk(2)
            w = scales.reshape(-1, *[1] * (x_t.dim() - 1))
            output = unconditional + w * (conditional - unconditional)
        return prediction_from(self.target, output, x_t, *self.process.coefficients(t, x_t))
