"""Typed training configuration: every field has a commented default and is checked up front."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from diffusion.parametrize import TARGETS
from diffusion.processes import PROCESSES
from diffusion.processes.schedules import BETA_SCHEDULES
from diffusion.samplers import SAMPLERS

DEFAULT_SAMPLE_STEPS = 200  # enough for ancestral sampling to sit near the floor here


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range (message names the field)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults give a quick, good DDPM on the swiss roll."""

    # Data: a registered toy set name or a path to a .npy/.csv point cloud of shape (n, d).
    dataset: str = "swissroll"
    n_train: int = 100_000  # points drawn once from a toy set to train on (files use all rows)
    # The forward process.
    process: str = "ddpm"
    diffusion_steps: int = 1000  # T, the number of discrete DDPM steps
    # Cosine betas with v prediction: well conditioned at both ends of the schedule. (eps
    # prediction must divide by alpha(t) ~ 5e-5 at the end of the cosine schedule.)
    schedule: str = "cosine"  # beta schedule: linear, cosine, sigmoid, quadratic
    beta_start: float | None = None  # None: 1e-4 scaled by 1000/T (linear/sigmoid/quadratic)
    beta_end: float | None = None  # None: 0.02 scaled by 1000/T
    zero_terminal_snr: bool = False  # rescale betas so alpha_bar_T = 0 (Lin et al. 2023)
    allow_terminal_signal: bool = False  # accept a schedule that leaves signal at t = 1
    prediction: str = "v"  # network target: eps, x0 or v
    # The network: a residual MLP with a sinusoidal step embedding.
    width: int = 64  # 64 trains ~35% faster per step than 96 on CPU, at the same quality here
    depth: int = 3
    # Optimisation.
    steps: int = 5000  # training steps
    batch_size: int = 1024
    lr: float = 2e-3  # peak AdamW learning rate
    warmup: int = 200  # linear warmup steps, then cosine decay
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm
    ema_decay: float = 0.999  # EMA of the weights, used for every sample we draw
    # Sampling during and after training.
    sampler: str = "ancestral"
    # Sampling steps (a trailing subsequence of the T steps); None: min(200, diffusion_steps).
    sample_steps: int | None = None
    snapshot_every: int = 250  # training steps between frames of training.gif
    snapshot_samples: int = 2000  # points per frame
    eval_samples: int = 10_000  # points sampled for the final metrics (evaluate --n for more)
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}")
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field; return self when all is well."""
        if self.sample_steps is None and isinstance(self.diffusion_steps, int):
            self.sample_steps = min(DEFAULT_SAMPLE_STEPS, self.diffusion_steps)  # resolve once
        positive = (
            "n_train", "diffusion_steps", "width", "depth", "steps", "batch_size",
            "sample_steps", "snapshot_every", "snapshot_samples", "eval_samples",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        for name in ("ema_decay", "min_lr_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ConfigError(f"{name} must lie in [0, 1), got {value!r}")
        if not (isinstance(self.weight_decay, int | float) and 0 <= self.weight_decay < math.inf):
            raise ConfigError(
                f"weight_decay must be a non-negative number, got {self.weight_decay!r}"
            )
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0 < value < 1):
                raise ConfigError(f"{name} must lie in (0, 1), got {value!r}")
        if self.schedule not in BETA_SCHEDULES:
            raise ConfigError(
                f"schedule must be one of {', '.join(sorted(BETA_SCHEDULES))}, got {self.schedule!r}"
            )
        if self.process not in PROCESSES:
            raise ConfigError(
                f"process must be one of {', '.join(PROCESSES)}, got {self.process!r}"
            )
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.prediction not in TARGETS:
            raise ConfigError(
                f"prediction must be one of {', '.join(TARGETS)}, got {self.prediction!r}"
            )
        if self.sample_steps > self.diffusion_steps:
            raise ConfigError(
                f"sample_steps ({self.sample_steps}) cannot exceed diffusion_steps "
                f"({self.diffusion_steps})"
            )
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        return self
