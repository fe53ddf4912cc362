"""Path measures of the reverse SDE: the Girsanov KL between two of them, and the
continuous-time likelihood bound it gives (theory note 8).

A reverse SDE dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dw-bar, run from t = 1 to 0, puts a
probability measure on whole paths. Two such SDEs that share g and the starting law but use
the scores s and s' differ only in their drifts, by g^2 (s - s'), and by Girsanov's theorem

    KL(P || Q) = 1/2 int_0^1 g(t)^2 E_{x ~ p_t} |s(x, t) - s'(x, t)|^2 dt

where p_t is P's marginal (Song, Durkan, Murray & Ermon 2021, Theorem 1; Särkkä & Solin
2019, Sec. 7.3). `girsanov_kl` evaluates the right side by quadrature over t, with draws of
p_t; `path_kl_monte_carlo` estimates the left side from simulated Euler-Maruyama paths, as the
mean log-ratio of the two chains' transition densities. The data processing inequality then
bounds the likelihood of the model's SDE: `continuous_bound` is Theorem 1's bound for one data
point,

    -log p_SDE(x0) <= -E log pi(x_1) + 1/2 int_0^1 E[2 g^2 div s + g^2 |s|^2 - 2 d f] dt

(the expectations over x_t ~ q(x_t | x0)), the continuous-time ELBO with likelihood
weighting lambda(t) = g(t)^2. Everything is in float64 and in the process's coordinates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

from diffusion.measure.likelihood import standard_error

Score = Callable[[torch.Tensor, float], torch.Tensor]  # (x (n, d), t) -> (n, d)


def _g2(process, t: float) -> float:
    return float(process.diffusion_squared(torch.tensor(t, dtype=torch.float64)))


def _f(process, t: float) -> float:
    return float(process.drift(torch.tensor(t, dtype=torch.float64)))


def _trapezoid(values: list[float], times: torch.Tensor) -> float:
    y, t = torch.tensor(values, dtype=torch.float64), times.to(torch.float64)
    return float(torch.trapezoid(y, t).abs())


def girsanov_kl(
    process,
    score: Score,
    other: Score,
    marginal: Callable[[float], torch.Tensor],
    times: torch.Tensor,
) -> float:
    """1/2 int g^2 E_{p_t} |score - other|^2 dt by the trapezoid rule on `times`, with
    `marginal(t)` (n, d) draws of p_t: the KL between the path measures of the two reverse
    SDEs that start from one law (Girsanov)."""
    values = []
    for t in times.tolist():
        x = marginal(t)
        gap = (score(x, t) - other(x, t)).pow(2).sum(1).mean()
        values.append(0.5 * _g2(process, t) * float(gap))
    return _trapezoid(values, times)


@torch.no_grad()
def path_kl_monte_carlo(
    process,
    score: Score,
    other: Score,
    x1: torch.Tensor,
    times: torch.Tensor,
    generator: torch.Generator,
) -> tuple[float, float]:
    """(mean, standard error) over paths of log dP/dQ for Euler-Maruyama paths of the
    reverse SDE with `score` (P), started at `x1` and walked down `times` (1 -> 0); Q is the
    same chain with `other`. Each step adds log N(x'; m_P, g^2 dt) - log N(x'; m_Q, g^2 dt)."""
    x = x1.to(torch.float64)
    log_ratio = torch.zeros(x.shape[0], dtype=torch.float64)
    grid = times.tolist()
    for t, s in itertools.pairwise(grid):
        dt = t - s
        g2, f = _g2(process, t), _f(process, t)
        mean_p = x - (f * x - g2 * score(x, t)) * dt
        mean_q = x - (f * x - g2 * other(x, t)) * dt
        step = mean_p + math.sqrt(g2 * dt) * torch.randn(x.shape, generator=generator,
                                                          dtype=torch.float64)  # fmt: skip
        variance = g2 * dt
        log_ratio += ((step - mean_q).pow(2).sum(1) - (step - mean_p).pow(2).sum(1)) / (
            2 * variance
        )
        x = step
    return float(log_ratio.mean()), standard_error(log_ratio)


def _divergence(score: Score, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(score (n, d), its divergence (n,)) by autograd, one backward pass per dimension."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = score(x, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype)
        for i in range(x.shape[1]):
            (grad,) = torch.autograd.grad(s[:, i].sum(), x, retain_graph=i + 1 < x.shape[1])
            div = div + grad[:, i]
    return s.detach(), div.detach()


def continuous_bound(
    process,
    score: Score,
    x0: torch.Tensor,
    times: torch.Tensor,
    *,
    draws: int = 64,
    generator: torch.Generator,
) -> torch.Tensor:
    """(n,) the continuous-time bound on -log p_SDE(x0) of the reverse SDE with `score` and
    the prior N(0, sigma(1)^2 I) (Song et al. 2021, Theorem 1, its first form): the prior term
    in closed form, the time integral by the trapezoid rule on `times` (increasing, from near
    0 to 1),
    each time's expectation over x_t ~ q(x_t | x0) with `draws` draws per point."""
    x0 = x0.to(torch.float64)
    n, d = x0.shape
    one = torch.ones((), dtype=torch.float64)
    a1, s1 = float(process.alpha(one)), float(process.sigma(one))
    prior = s1  # the prior N(0, sigma(1)^2 I) that sampling starts from (`prior_log_prob`)
    # -E log N(x_1; 0, prior^2 I) for x_1 ~ N(a1 x0, s1^2 I)
    second_moment = a1**2 * x0.pow(2).sum(1) + d * s1**2
    total = second_moment / (2 * prior**2) + d * math.log(prior) + 0.5 * d * math.log(2 * math.pi)
    values = []
    for t in times.tolist():
        tt = torch.tensor(t, dtype=torch.float64)
        alpha, sigma = float(process.alpha(tt)), float(process.sigma(tt))
        noise = torch.randn((draws, n, d), generator=generator, dtype=torch.float64)
        x_t = (alpha * x0 + sigma * noise).reshape(draws * n, d)
        s, div = _divergence(score, x_t, t)
        g2, f = _g2(process, t), _f(process, t)
        integrand = 2 * g2 * div + g2 * s.pow(2).sum(1) - 2 * d * f  # (draws * n,)
        values.append(0.5 * integrand.reshape(draws, n).mean(0))
    stacked = torch.stack(values)  # (times, n)
    return total + torch.trapezoid(stacked, times.to(torch.float64), dim=0)
