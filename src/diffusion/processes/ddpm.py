"""Denoising diffusion probabilistic models (Ho et al. 2020) as a `GaussianProcess`.

Index convention: a process with T steps has step indices k = 1..T in the paper's notation;
step k sits at continuous time t = k / T, and t = 0 (k = 0) is the clean data. So the
alpha_bar of the paper at step k is ``alpha_bar[k]`` here, with ``alpha_bar[0] = 1``.
Between grid points alpha_bar is interpolated linearly in t (only used off the grid).
"""

from __future__ import annotations

import torch

from diffusion.processes.base import GaussianProcess, random_level_times
from diffusion.processes.schedules import make_betas

#: sqrt(alpha_bar_T) above this keeps too much signal at t = 1 for the N(0, I) prior.
MAX_TERMINAL_SIGNAL = 0.05


class TerminalSignalError(ValueError):
    """The schedule leaves real signal at t = 1, so sampling would start from the wrong prior."""


class DDPM(GaussianProcess):
    """Discrete-time variance-preserving diffusion: q(x_k | x_{k-1}) = N(sqrt(1 - beta_k) x_{k-1}, beta_k I).

    Args:
        steps: the number of diffusion steps T.
        schedule: beta schedule name: "linear", "cosine", "sigmoid" or "quadratic".
        beta_start: first beta of the linear/sigmoid/quadratic schedules (default 1e-4 at
            T = 1000, scaled by 1000/T).
        beta_end: last beta of the linear/sigmoid/quadratic schedules (default 0.02 at
            T = 1000, scaled by 1000/T).
        zero_terminal_snr: rescale the schedule so alpha_bar_T = 0 (Lin et al. 2024).
        prediction: network target, "eps", "x0" or "v".
        allow_terminal_signal: accept a schedule whose sqrt(alpha_bar_T) exceeds 0.05.
    """

    default_sampler = "ancestral"
    settings = {  # noqa: RUF012
        "diffusion_steps": "steps",
        "schedule": "schedule",
        "beta_start": "beta_start",
        "beta_end": "beta_end",
        "zero_terminal_snr": "zero_terminal_snr",
        "allow_terminal_signal": "allow_terminal_signal",
    }
    scale_input = False  # alpha^2 + sigma^2 = 1: the input is already at unit variance

    def __init__(
        self,
        steps: int = 1000,
        schedule: str = "cosine",
        beta_start: float | None = None,
        beta_end: float | None = None,
        zero_terminal_snr: bool = False,
        prediction: str | None = None,
        allow_terminal_signal: bool = False,
    ) -> None:
        super().__init__(prediction)
        self.steps = self.discrete_steps = int(steps)
        # Ancestral sampling at 200 of the 1000 steps sat at the metrics' floor on the toy sets.
        self.default_sample_steps = min(200, self.steps)
        self.schedule = schedule
        self.betas = make_betas(
            schedule, self.steps, beta_start, beta_end, zero_terminal_snr
        )  # (T,)
        # alpha_bar[k] = prod_{i <= k} (1 - beta_i), Eq. 4 of Ho et al. 2020; alpha_bar[0] = 1.
        ones = torch.ones(1, dtype=torch.float64)
        self.alpha_bar = torch.cat([ones, torch.cumprod(1 - self.betas, dim=0)])  # (T+1,)
        self._tables: dict[torch.device, torch.Tensor] = {}
        terminal = self.alpha_bar[-1].sqrt().item()
        if terminal > MAX_TERMINAL_SIGNAL and not allow_terminal_signal:
            raise TerminalSignalError(
                f"the {schedule} schedule with {self.steps} steps leaves sqrt(alpha_bar_T) = "
                f"{terminal:.2f} of the data at t = 1 (at most {MAX_TERMINAL_SIGNAL} is allowed), so "
                "sampling from N(0, I) would start from the wrong distribution; use more steps, a "
                "larger beta_end, the cosine schedule or zero_terminal_snr, or accept it with "
                "allow_terminal_signal=True (--allow-terminal-signal)"
            )
        if zero_terminal_snr and self.prediction == "eps":
            raise ValueError(
                "zero terminal SNR with eps prediction cannot recover the data at t = 1 "
                "(there is no signal left); predict v or x0 instead (Lin et al. 2024, Sec. 3.2)"
            )

    @classmethod
    def from_betas(cls, betas: torch.Tensor, prediction: str | None = None) -> DDPM:
        """A DDPM with the given betas (T,) instead of a named schedule (a model trained
        elsewhere, e.g. `diffusion.io.diffusers_in`). Any terminal signal is accepted: the
        model was trained with it."""
        betas = torch.as_tensor(betas, dtype=torch.float64).reshape(-1)
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]")
        process = cls(len(betas), "linear", prediction=prediction, allow_terminal_signal=True)
        process.schedule = "custom"
        process.betas = betas
        ones = torch.ones(1, dtype=torch.float64)
        process.alpha_bar = torch.cat([ones, torch.cumprod(1 - betas, dim=0)])
        return process

    # -- the discrete view ---------------------------------------------------------------
    def step_to_time(self, k: torch.Tensor | int) -> torch.Tensor:
        """Continuous time t = k / T of step index k (0 is data, T is the last step)."""
        return torch.as_tensor(k, dtype=torch.float64) / self.steps

    def variance_at_step(self, k: torch.Tensor | int) -> torch.Tensor:
        """Noise variance 1 - alpha_bar_k of q(x_k | x0) at step index k in 0..T."""
        k = torch.as_tensor(k)
        if bool(((k < 0) | (k > self.steps)).any()):
            raise ValueError(f"step indices must lie in 0..{self.steps}")
        return 1 - self.alpha_bar[k]

    # -- the continuous view -------------------------------------------------------------
    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        table = self._tables.get(t.device)
        if table is None:  # one copy per device, so training steps do not re-upload it
            table = self._tables[t.device] = self.alpha_bar.to(t.device)
        pos = t.to(torch.float64).clamp(0, 1) * self.steps
        lo = pos.floor().long().clamp(max=self.steps - 1)
        frac = pos - lo
        return (table[lo] * (1 - frac) + table[lo + 1] * frac).to(t.dtype)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self._alpha_bar(torch.as_tensor(t)).sqrt()

    def d_variance(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma^2/dt = -2 alpha alpha' (sigma^2 = 1 - alpha_bar), finite at t = 0."""
        t = torch.as_tensor(t)
        return -2 * self.alpha(t) * self.d_alpha(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - self._alpha_bar(torch.as_tensor(t))).sqrt()

    def sample_time(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Uniform step k in 1..T (Algorithm 1 of Ho et al. 2020), returned as t = k / T."""
        return random_level_times(self.steps, n, generator, device)

    def time_grid(self, steps: int | None = None) -> torch.Tensor:
        """`steps` evenly spaced step indices from T down to 0 ("trailing": it starts at T)."""
        steps = self.steps if steps is None else int(steps)
        if not 1 <= steps <= self.steps:
            raise ValueError(
                f"sampling steps must be in 1..{self.steps} for this DDPM, got {steps}"
            )
        k = torch.linspace(self.steps, 0, steps + 1, dtype=torch.float64).round()
        return k / self.steps
