"""UniPC, multistep, data prediction (Zhao et al. 2023, "UniPC: A unified predictor-corrector
framework for fast sampling of diffusion models", arXiv 2302.04867): the predictor UniP-p
(Sec. 3.2) and the corrector UniC-p (Sec. 3.1), in their data-prediction form (the
`predict_x0=True` branch of the authors' code and of diffusers' UniPCMultistepScheduler).

Like DPM-Solver++ it integrates the probability-flow ODE in the half log-SNR
lambda = log(alpha / sigma), solving the linear part exactly (Lu et al. 2022, Eq. 9):

    x_s = (sigma_s / sigma_t) x_t + alpha_s int_0^h e^(tau - h) x0_hat(lambda_t + tau) dtau,

h = lambda_s - lambda_t. Both UniP and UniC replace x0_hat by x0_hat_t plus a combination of
divided differences D_m = (x0_hat(lambda_t + r_m h) - x0_hat_t) / r_m of other outputs:

    x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^-h) x0_hat_t + alpha_s B(h) sum_m rho_m D_m,

with B(h) = 1 - e^-h ("bh2", the paper's B_2(h) = e^h - 1 taken at -h for data prediction)
or B(h) = h ("bh1", B_1). The weights solve the order conditions sum_m rho_m r_m^(k-1) =
k! c_k / (h^k B(h)), k = 1..(number of D's), where c_k = int_0^h e^(tau - h) tau^k / k! dtau
(the paper's R_p(h) a_p = g_p(h) / B(h)); with one D the authors' code (and diffusers) take
rho = 1/2, the h -> 0 limit of that solution, which keeps the order of accuracy.

- UniP-p (predictor, t -> s): the D's come from the p - 1 outputs before t (r_m < 0).
- UniC-p (corrector): once x0_hat is evaluated at the predicted x_s (the next step needs that
  evaluation anyway), the step t -> s is redone from the corrected x_t with the same p - 1
  earlier D's plus the new output (r = 1): order p + 1 with no extra evaluation. The next
  predictor starts from the corrected x_s but uses the output at the uncorrected one.

Without the corrector, UniP-2 with bh2 is DPM-Solver++(2M), and UniP-3 is our 3M step (both
exact for a quadratic x0_hat). `tests/samplers/test_unipc.py` checks the whole sampler step by
step against diffusers and measures orders 2, 3 and ~4 for p = 1, 2, 3 with the exact score.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from diffusion.samplers.base import Callback, SamplerStep, StepCoefficients, walk
from diffusion.samplers.dpm_solver import _half_log_snr

#: B(h) of the update: "bh1" B_1(h) = h, "bh2" B_2(h) = 1 - e^-h (the paper's e^h - 1 at -h).
VARIANTS: dict[str, Callable[[float], float]] = {
    "bh1": lambda h: h,
    "bh2": lambda h: -math.expm1(-h),
}


def unipc(
    denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    order: int = 2,
    variant: str = "bh2",
    corrector: bool = True,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """UniPC-p (UniP-p predictor with the UniC-p corrector) on any decreasing grid; one network
    evaluation per step.

    Steps start at order 1 and rise to `order` as outputs accumulate; the last step (to t = 0,
    where lambda is infinite) is first order, x_0 = x0_hat, and the one before it at most
    second order, as in diffusers' UniPCMultistepScheduler (lower_order_final=True,
    final_sigmas_type="zero"). The final state is never corrected (that would take one more
    evaluation); on the step to t = 0 the correction of the state it starts from has no
    effect either, since x_0 = x0_hat there. The callback gets the predictor's state, which
    the corrector refines after the next evaluation (as diffusers' `step` returns it).

    Args:
        denoiser: `denoiser(x, t)` -> Prediction; `denoiser.process` gives alpha and sigma.
        x: (B, ...) the prior draw at times[0].
        times: decreasing grid of times down to 0.
        order: p of UniP-p, 1 to 3 (with the corrector the accuracy is p + 1).
        variant: "bh2" (B(h) = 1 - e^-h) or "bh1" (B(h) = h).
        corrector: apply UniC (False leaves the plain UniP predictor).
        generator: unused (the sampler is deterministic); part of the common signature.
        callback: called with a `SamplerStep` after every step.

    Returns:
        (B, ...) the sample at times[-1].
    """
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    b_of = VARIANTS[variant]
    steps = len(times) - 1
    history: list[tuple[torch.Tensor, float]] = []  # (x0_hat, lambda) evaluated, newest last
    last = None  # the previous predictor step, for the corrector: (x_t, coef, lambda_t, D count)
    for i, t, s, c in walk(denoiser.process, times):
        pred = denoiser(x, t)
        lam_t, lam_s = _half_log_snr(c.alpha_t, c.sigma_t), _half_log_snr(c.alpha_s, c.sigma_s)
        # UniC-p: redo the previous step from its corrected start, the new output in the D's.
        if corrector and last is not None:
            x_before, c_before, lam_before, n_before = last
            others = [*history[len(history) - 1 - n_before : -1], (pred.x0, lam_t)]
            x = _update(x_before, c_before, lam_before, lam_t, history[-1][0], others, b_of)
        history.append((pred.x0, lam_t))
        # UniP-p: order min(p, outputs so far, steps left), first order where lambda is infinite.
        h = lam_s - lam_t
        n = 0 if math.isinf(h) else min(order - 1, i, steps - 1 - i)
        n = min(n, next((k for k, (_, lam) in enumerate(reversed(history[:-1]))
                         if math.isinf(lam)), n))  # fmt: skip
        last = (x, c, lam_t, n) if not math.isinf(h) else None
        x = _update(x, c, lam_t, lam_s, pred.x0, history[len(history) - 1 - n : -1], b_of)
        if callback is not None:
            callback(SamplerStep(index=i, t=float(t), s=float(s), x=x, x0=pred.x0))
    return x


def _update(x, c: StepCoefficients, lam_t: float, lam_s: float, x0, others, b_of) -> torch.Tensor:
    """x_s from x_t with x0_hat_t = `x0` and the (x0_hat, lambda) pairs `others` in the D's."""
    h = lam_s - lam_t
    # Exponential-integrator (DDIM / DPM-Solver++ first-order) part.
    x_s = (c.sigma_s / c.sigma_t) * x - c.alpha_s * math.expm1(-h) * x0
    if not others:
        return x_s
    # Higher-order part: alpha_s B(h) sum_m rho_m D_m.
    b = b_of(h)
    r = [(lam - lam_t) / h for _, lam in others]
    rho = [0.5] if len(r) == 1 else _weights(r, h, b)
    for rho_m, r_m, (x0_m, _) in zip(rho, r, others, strict=True):
        x_s = x_s + (c.alpha_s * b * rho_m / r_m) * (x0_m - x0)
    return x_s


def _weights(r: list[float], h: float, b: float) -> list[float]:
    """rho solving sum_m rho_m r_m^(k-1) = k! c_k / (h^k B(h)), k = 1..len(r)."""
    p = len(r)
    c, rhs = -math.expm1(-h), []  # c_0 = 1 - e^-h
    for k in range(1, p + 1):
        c = h**k / math.factorial(k) - c  # c_k = h^k / k! - c_(k-1) (integration by parts)
        rhs.append(math.factorial(k) * c / (h**k * b))
    matrix = torch.tensor(
        [[r_m ** (k - 1) for r_m in r] for k in range(1, p + 1)], dtype=torch.float64
    )
    return torch.linalg.solve(matrix, torch.tensor(rhs, dtype=torch.float64)).tolist()
