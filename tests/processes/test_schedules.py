"""Known answers for the DDPM beta schedules (float64 throughout)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.processes.schedules import (
    BETA_SCHEDULES,
    cosine_betas,
    make_betas,
    rescale_zero_terminal_snr,
)


def alpha_bar_of(betas: torch.Tensor) -> list[float]:
    """alpha_bar_k = prod_{i <= k} (1 - beta_i), as a plain Python running product (independent of torch.cumprod)."""
    out, acc = [], 1.0
    for beta in betas.tolist():
        acc *= 1.0 - beta
        out.append(acc)
    return out


@pytest.mark.parametrize("name", sorted(BETA_SCHEDULES))
@pytest.mark.parametrize("T", [50, 100, 1000])
def test_each_schedule_gives_T_float64_betas_in_open_unit_interval(name: str, T: int) -> None:
    betas = make_betas(name, T)
    assert betas.shape == (T,)
    assert betas.dtype == torch.float64
    assert bool((betas > 0).all()) and bool((betas < 1).all())


def test_linear_endpoints_at_1000_steps() -> None:
    # Ho et al. 2020, Sec. 4: beta_1 = 1e-4, beta_T = 0.02, linearly spaced.
    betas = make_betas("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    # Constant increments: (0.02 - 1e-4) / 999.
    diffs = betas[1:] - betas[:-1]
    torch.testing.assert_close(
        diffs, torch.full_like(diffs, (0.02 - 1e-4) / 999), rtol=0, atol=1e-15
    )


@pytest.mark.parametrize("T", [50, 100, 250, 500, 2000])
def test_linear_endpoints_scale_with_1000_over_T(T: int) -> None:
    betas = make_betas("linear", T)
    scale = 1000 / T
    assert betas[0].item() == pytest.approx(1e-4 * scale, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02 * scale, rel=1e-12)


def test_linear_explicit_endpoints_are_used() -> None:
    betas = make_betas("linear", 100, beta_start=1e-5, beta_end=5e-3)
    assert betas[0].item() == pytest.approx(1e-5, rel=1e-12)
    assert betas[-1].item() == pytest.approx(5e-3, rel=1e-12)


def _nichol_alpha_bar(T: int, s: float = 0.008) -> list[float]:
    """Eq. 17 of Nichol & Dhariwal 2021: alpha_bar_k = f(k) / f(0), f(k) = cos^2(((k/T + s)/(1 + s)) pi/2)."""

    def f(k: int) -> float:
        return math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2

    return [f(k) / f(0) for k in range(T + 1)]


@pytest.mark.parametrize("T", [10, 100, 1000])
def test_cosine_alpha_bar_matches_eq17_except_where_clipped(T: int) -> None:
    betas = make_betas("cosine", T)
    reference = _nichol_alpha_bar(T)  # reference[0] = 1 (k = 0 is data)
    # The unclipped betas of Eq. 17: beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}.
    raw = [1 - reference[k] / reference[k - 1] for k in range(1, T + 1)]
    clipped = [b > 0.999 for b in raw]
    # Near t = T the ratio goes to 0, so the last beta is clipped at 0.999 (and only that one).
    assert clipped[-1] and not any(clipped[:-1])
    assert betas[-1].item() == 0.999
    got = alpha_bar_of(betas)
    first_clipped = clipped.index(True)
    assert got[:first_clipped] == pytest.approx(reference[1 : first_clipped + 1], rel=1e-10)
    # Where clipped, alpha_bar_T = alpha_bar_{T-1} * (1 - 0.999) instead of ~0.
    assert got[-1] == pytest.approx(reference[T - 1] * 1e-3, rel=1e-10)


def test_cosine_max_beta_is_a_clip() -> None:
    betas = cosine_betas(1000, max_beta=0.5)
    assert betas.max().item() == 0.5
    unclipped = cosine_betas(1000, max_beta=1.0)
    keep = unclipped < 0.5
    torch.testing.assert_close(betas[keep], unclipped[keep], rtol=0, atol=0)


@pytest.mark.parametrize("T", [100, 1000])
def test_quadratic_has_sqrt_betas_linear_between_the_endpoints(T: int) -> None:
    betas = make_betas("quadratic", T)
    root = betas.sqrt()
    scale = 1000 / T
    assert root[0].item() == pytest.approx(math.sqrt(1e-4 * scale), rel=1e-12)
    assert root[-1].item() == pytest.approx(math.sqrt(0.02 * scale), rel=1e-12)
    step = (math.sqrt(0.02 * scale) - math.sqrt(1e-4 * scale)) / (T - 1)
    diffs = root[1:] - root[:-1]
    torch.testing.assert_close(diffs, torch.full_like(diffs, step), rtol=0, atol=1e-14)
    # ...so the betas themselves are not linear (they are convex).
    assert bool((betas[2:] - 2 * betas[1:-1] + betas[:-2] > 0).all())


@pytest.mark.parametrize("T", [100, 1000])
def test_sigmoid_is_increasing_between_start_and_end_and_symmetric(T: int) -> None:
    start, end = 1e-4 * 1000 / T, 0.02 * 1000 / T
    betas = make_betas("sigmoid", T)
    assert bool((betas[1:] > betas[:-1]).all())
    assert bool((betas > start).all()) and bool((betas < end).all())
    # sigmoid(6) = 1 - sigmoid(-6): the endpoints sit just inside [start, end].
    edge = 1 / (1 + math.exp(6))
    assert betas[0].item() == pytest.approx(start + edge * (end - start), rel=1e-12)
    assert betas[-1].item() == pytest.approx(end - edge * (end - start), rel=1e-12)
    # sigmoid(x) + sigmoid(-x) = 1 on the symmetric grid [-6, 6].
    torch.testing.assert_close(
        betas + betas.flip(0), torch.full_like(betas, start + end), rtol=0, atol=1e-15
    )


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "quadratic"])
def test_rescale_zero_terminal_snr_is_algorithm_1_of_lin_et_al(name: str) -> None:
    T = 1000
    original = make_betas(name, T)
    rescaled = make_betas(name, T, zero_terminal_snr=True)
    torch.testing.assert_close(rescaled, rescale_zero_terminal_snr(original), rtol=0, atol=0)
    old = torch.tensor(alpha_bar_of(original), dtype=torch.float64)
    new = torch.tensor(alpha_bar_of(rescaled), dtype=torch.float64)
    # The last step is pure noise, exactly.
    assert new[-1].item() == 0.0
    assert rescaled[-1].item() == 1.0
    # The first step keeps its alpha_bar.
    assert new[0].item() == pytest.approx(old[0].item(), rel=1e-12)
    # sqrt(alpha_bar) is shifted and scaled: new = a * old + b with a, b fixed by the two ends.
    first, last = old[0].sqrt().item(), old[-1].sqrt().item()
    a = first / (first - last)
    b = -last * first / (first - last)
    torch.testing.assert_close(new.sqrt(), a * old.sqrt() + b, rtol=0, atol=1e-12)
    # All but the last rescaled beta stay in (0, 1).
    assert bool((rescaled[:-1] > 0).all()) and bool((rescaled[:-1] < 1).all())


def test_unknown_schedule_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown beta schedule 'cosin'"):
        make_betas("cosin", 100)


@pytest.mark.parametrize(
    ("name", "T", "start", "end"),
    [
        ("linear", 100, 0.0, 0.02),  # beta_1 = 0: no noise at the first step
        ("linear", 100, 1e-4, 1.0),  # beta_T = 1
        ("linear", 100, -1e-3, 0.02),
        ("quadratic", 100, 1e-4, 1.5),
        ("sigmoid", 100, 1e-4, 2.0),
        ("linear", 100, 1e-4, float("nan")),
        ("linear", 10, None, None),  # the 1000/T scaling gives beta_T = 0.2 * 10 = 2
    ],
)
def test_betas_outside_open_unit_interval_raise(
    name: str, T: int, start: float | None, end: float | None
) -> None:
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\)"):
        make_betas(name, T, start, end)


def test_nonpositive_steps_and_cosine_endpoints_raise() -> None:
    with pytest.raises(ValueError, match="positive"):
        make_betas("linear", 0)
    with pytest.raises(ValueError, match="cosine schedule takes no beta_start"):
        make_betas("cosine", 100, beta_start=1e-4)
