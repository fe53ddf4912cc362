"""The Dormand-Prince solver on ODEs with known solutions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffusion.samplers.odeint import Solution, dopri5

F64 = torch.float64


def decay(t: float, y: torch.Tensor) -> torch.Tensor:
    return -y


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_exponential_decay_within_tolerance(tol):
    y0 = torch.tensor([1.0, 2.0, -3.0], dtype=F64)
    sol = dopri5(decay, y0, 0.0, 1.0, rtol=tol, atol=tol)
    assert isinstance(sol, Solution)
    torch.testing.assert_close(sol.y, y0 * math.exp(-1), rtol=10 * tol, atol=10 * tol)
    assert sol.evaluations == 1 + 6 * (sol.accepted + sol.rejected)


def test_tighter_tolerance_is_more_accurate_and_costs_more():
    y0 = torch.ones(1, dtype=F64)
    loose = dopri5(decay, y0, 0.0, 2.0, rtol=1e-3, atol=1e-3)
    tight = dopri5(decay, y0, 0.0, 2.0, rtol=1e-9, atol=1e-9)
    exact = math.exp(-2)
    assert abs(float(tight.y) - exact) < abs(float(loose.y) - exact)
    assert abs(float(tight.y) - exact) < 1e-8
    assert tight.evaluations > loose.evaluations


def test_backwards_in_time():
    # dy/dt = -y from t = 1 down to 0: y(0) = y(1) e
    y1 = torch.tensor([math.exp(-1), 1.0], dtype=F64)
    sol = dopri5(decay, y1, 1.0, 0.0, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sol.y, y1 * math.e, rtol=1e-7, atol=1e-9)


def test_time_dependent_right_hand_side():
    # dy/dt = cos t: y(t1) - y(t0) = sin t1 - sin t0; and a quartic, which RK5 integrates exactly
    sol = dopri5(lambda t, y: torch.full_like(y, math.cos(t)), torch.zeros(2, dtype=F64), 0.5, 3.0,
                 rtol=1e-9, atol=1e-9)  # fmt: skip
    torch.testing.assert_close(sol.y, torch.full((2,), math.sin(3.0) - math.sin(0.5), dtype=F64))
    quartic = dopri5(lambda t, y: torch.full_like(y, 5 * t**4), torch.zeros(1, dtype=F64), 0.0, 2.0)
    torch.testing.assert_close(quartic.y, torch.tensor([32.0], dtype=F64), rtol=1e-12, atol=1e-12)


def test_rotation_system_and_batched_state():
    # y' = A y with A a rotation generator: y(t) = R(t) y0, |y| conserved
    def rotate(t, y):
        return torch.stack([-y[:, 1], y[:, 0]], dim=1)

    y0 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, -1.0]], dtype=F64)
    sol = dopri5(rotate, y0, 0.0, math.pi / 2, rtol=1e-9, atol=1e-9)
    expected = torch.stack([-y0[:, 1], y0[:, 0]], dim=1)  # a quarter turn
    torch.testing.assert_close(sol.y, expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(("t0", "t1"), [(0.0, 1.0), (1.0, 0.0), (-0.3, 2.5)])
def test_on_step_times_are_monotone_and_end_at_t1(t0, t1):
    steps = []
    sol = dopri5(decay, torch.ones(2, dtype=F64), t0, t1, rtol=1e-7, atol=1e-7,
                 on_step=lambda a, b, y: steps.append((a, b, y.clone())))  # fmt: skip
    assert len(steps) == sol.accepted >= 2
    assert steps[0][0] == t0 and steps[-1][1] == t1  # lands exactly on t1
    sign = 1 if t1 > t0 else -1
    for (a, b, _), (c, _, _) in itertools.pairwise(steps):
        assert sign * (b - a) > 0 and b == c  # contiguous, in the right direction
    assert torch.equal(steps[-1][2], sol.y)
    # every intermediate state is on the exact solution
    for _, b, y in steps:
        torch.testing.assert_close(
            y, torch.full((2,), math.exp(-(b - t0)), dtype=F64), rtol=1e-5, atol=1e-6
        )


def test_max_step_is_respected():
    lengths = []
    dopri5(decay, torch.ones(1, dtype=F64), 0.0, 1.0, max_step=0.03,
           on_step=lambda a, b, y: lengths.append(b - a))  # fmt: skip
    assert max(lengths) <= 0.03 + 1e-12
    assert len(lengths) >= 34  # 1 / 0.03 = 33.3


def test_fast_decay_rejects_then_succeeds():
    # y' = -50 y: the first step (1/20 of the interval) is far too long and is rejected
    sol = dopri5(lambda t, y: -50 * y, torch.ones(1, dtype=F64), 0.0, 0.2, rtol=1e-7, atol=1e-12)
    assert sol.rejected >= 1
    torch.testing.assert_close(sol.y, torch.tensor([math.exp(-10)], dtype=F64), rtol=1e-5, atol=0)


def test_zero_length_interval_returns_initial_state():
    y0 = torch.tensor([1.0, 2.0])
    sol = dopri5(decay, y0, 0.4, 0.4)
    assert torch.equal(sol.y, y0) and sol.accepted == 0


def test_max_steps_exceeded_raises():
    with pytest.raises(RuntimeError, match="did not reach"):
        dopri5(decay, torch.ones(1, dtype=F64), 0.0, 1.0, rtol=1e-12, atol=1e-12, max_steps=3)


def test_non_finite_right_hand_side_gives_up():
    with pytest.raises(RuntimeError, match="did not reach"):
        dopri5(lambda t, y: torch.full_like(y, math.nan), torch.ones(1), 0.0, 1.0, max_steps=50)


def test_exactly_max_steps_is_enough():
    y0 = torch.ones(3, dtype=F64)
    free = dopri5(decay, y0, 0.0, 1.0, rtol=1e-8, atol=1e-10)
    attempts = free.accepted + free.rejected
    bounded = dopri5(decay, y0, 0.0, 1.0, rtol=1e-8, atol=1e-10, max_steps=attempts)
    torch.testing.assert_close(bounded.y, free.y)


@pytest.mark.parametrize(
    ("rtol", "atol"),
    [(0.0, 1e-6), (1e-6, 0.0), (-1e-3, 1e-3), (1e-3, -1.0), (math.nan, 1e-3), (1e-3, math.nan)],
)
def test_bad_tolerances_raise(rtol, atol):
    with pytest.raises(ValueError, match="rtol and atol must be positive"):
        dopri5(decay, torch.ones(1), 0.0, 1.0, rtol=rtol, atol=atol)
