"""Adaptive Runge-Kutta integration of dy/dt = f(t, y): Dormand & Prince's RK5(4)7M.

One solver serves the rk45 sampler (x from t = 1 down to ~0) and the probability-flow
likelihood (x and the log-density change from ~0 up to t = 1). Steps are accepted when the
RMS over all elements of error / (atol + rtol |y|) is at most 1 (Hairer, Norsett & Wanner,
"Solving ODEs I", Sec. II.4), and the next step grows or shrinks by 0.9 norm^(-1/5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Dormand & Prince 1980, RK5(4)7M: nodes, coefficients, 5th-order and error weights.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)

# A step that would leave less than this much of the interval lands on its end instead.
_LANDING = 1e-9


@dataclass(frozen=True)
class Solution:
    """The state at the end of the interval and what it cost."""

    y: torch.Tensor
    evaluations: int  # calls of f
    accepted: int  # steps kept
    rejected: int  # steps retried with a smaller size


def dopri5(
    f: Callable[[float, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    max_step: float = math.inf,
    max_steps: int = 10_000,
    on_step: Callable[[float, float, torch.Tensor], None] | None = None,
) -> Solution:
    """Integrate dy/dt = f(t, y) from t0 to t1 (either direction) with adaptive steps.

    Args:
        f: the right-hand side; called with a float time and a tensor like `y`.
        y: the state at t0.
        rtol: relative tolerance on the local error.
        atol: absolute tolerance on the local error.
        max_step: the longest step allowed (an unbounded step can leap over a region where
            f changes fast with an error estimate that misses it).
        max_steps: give up (RuntimeError) after this many attempted steps.
        on_step: called as on_step(t_before, t_after, y_after) after each accepted step; the
            last call of f was at (t_after, y_after) (first same as last).

    Returns:
        A `Solution` with the state at t1.
    """
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got {rtol} and {atol}")
    direction = 1.0 if t1 >= t0 else -1.0
    t, h = t0, min(abs(t1 - t0) / 20, max_step)
    k1 = f(t, y)
    evaluations, accepted, rejected = 1, 0, 0
    if t == t1:
        return Solution(y, evaluations, accepted, rejected)
    for _ in range(max_steps):
        remaining = abs(t1 - t)
        h = max(min(h, max_step, remaining), 1e-12)
        if remaining - h < _LANDING:  # land exactly on t1 rather than a sliver short of it
            h = remaining
        step = direction * h
        t_next = t1 if h == remaining else t + step
        ks = [k1]
        for j in range(1, 7):
            yj = y + step * sum(a * k for a, k in zip(_A[j], ks, strict=False) if a)
            ks.append(f(t + _C[j] * step, yj))
        evaluations += 6
        y_new = y + step * sum(b * k for b, k in zip(_B, ks, strict=True) if b)
        error = step * sum(e * k for e, k in zip(_E, ks, strict=True) if e)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        norm = float((error / scale).pow(2).mean().sqrt())
        if norm <= 1:  # accept; the last stage is the next step's first (FSAL)
            t_before, t = t, t_next
            y, k1 = y_new, ks[-1]
            accepted += 1
            if on_step is not None:
                on_step(t_before, t, y)
            if t == t1:
                return Solution(y, evaluations, accepted, rejected)
        else:
            rejected += 1
        factor = 0.9 * norm ** (-1 / 5) if norm > 0 else 5.0
        h *= min(5.0, max(0.2, factor))
    raise RuntimeError(f"the ODE solver did not reach t = {t1} in {max_steps} steps")
