"""Typed training configuration: every field has a commented default and is checked up front."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from diffusion.grids import GRIDS
from diffusion.parametrize import TARGETS
from diffusion.processes import PROCESSES
from diffusion.processes.coupling import COUPLINGS
from diffusion.processes.schedules import BETA_SCHEDULES
from diffusion.processes.times import TRAIN_TIMES
from diffusion.samplers import GAUSSIAN_ONLY, SAMPLERS

DEFAULT_SAMPLE_STEPS = 200  # enough for ancestral sampling to sit near the floor here
MAX_SEED = 2**32 - 1
SIGMA_PROCESSES = ("ve", "edm", "ncsn", "poisson")  # the processes that take sigma_min / sigma_max
#: per process: (prediction target, sampler, sampling steps; None: min(200, T)).
PROCESS_DEFAULTS = {
    "ddpm": ("v", "ancestral", None),
    "vp": ("v", "dpm-solver++", 50),
    "subvp": ("v", "dpm-solver++", 50),
    "ve": ("v", "heun", 50),
    "edm": ("v", "heun", 32),  # the paper's 18 left SW 1.5 on the thin swiss roll; 32: 1.18
    "flow": ("velocity", "heun", 25),  # with coupling ot: OT_SAMPLE_STEPS
    "ncsn": ("eps", "langevin", 10),
    "poisson": ("v", "heun", 32),
}  # seeds are split into streams (seed * 16 + k), which must fit in 64 bits
#: the processes whose training times `train_times` chooses (edm and poisson draw log-normal
#: noise levels, ddpm and ncsn uniform discrete steps).
TRAIN_TIMES_PROCESSES = ("flow", "vp", "subvp", "ve")
#: Heun steps of a flow trained with coupling ot: its straighter paths gave the SW ratio of 25
#: steps (49 NFE) at 12 (23 NFE) within 0.02 on seeds 0-2 (docs/performance.md).
OT_SAMPLE_STEPS = 12
#: the largest batch paired by optimal transport: its n x n plan (and the cumulative sums
#: drawn from it) take 2 * 4 n^2 bytes, 512 MiB here.
MAX_OT_BATCH = 8192


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range (message names the field)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    The defaults train flow matching on the swiss roll in about 20 s on 2 CPU cores; they were
    chosen by the sweeps in `benchmarks/perf.py` (see docs/performance.md).
    """

    # Data: a registered toy set name or a path to a .npy/.csv point cloud of shape (n, d).
    dataset: str = "swissroll"
    n_train: int = 100_000  # points drawn once from a toy set to train on (files use all rows)
    # The forward process. Flow matching reached a given quality fastest of the families on the
    # toy sets, and DPM-Solver++ at 10 steps stays close to its 49-evaluation Heun samples.
    process: str = "flow"
    diffusion_steps: int = 1000  # T, the number of discrete DDPM steps
    # Cosine betas with v prediction: well conditioned at both ends of the schedule. (eps
    # prediction must divide by alpha(t) ~ 5e-5 at the end of the cosine schedule.)
    schedule: str = "cosine"  # beta schedule: linear, cosine, sigmoid, quadratic
    beta_start: float | None = None  # None: 1e-4 scaled by 1000/T (linear/sigmoid/quadratic)
    beta_end: float | None = None  # None: 0.02 scaled by 1000/T
    zero_terminal_snr: bool = False  # rescale betas so alpha_bar_T = 0 (Lin et al. 2024)
    allow_terminal_signal: bool = False  # accept a schedule that leaves signal at t = 1
    # Network target: eps, x0, v, velocity or score; None: the process's default (v, and
    # velocity for flow matching).
    prediction: str | None = None
    # Continuous noise levels of the ve and edm processes; None: the process's defaults.
    sigma_min: float | None = None
    sigma_max: float | None = None
    augment_dim: int = 128  # poisson: PFGM++'s augmentation dimension D (large D -> edm)
    # Training times of flow, vp, subvp and ve: uniform, low-noise or logit-normal
    # (diffusion.processes.times); None: uniform. On the swiss roll neither of the others
    # beat uniform at the default settings (docs/performance.md).
    train_times: str | None = None
    # How flow matching pairs each batch's data with noise: independent, or ot (minibatch
    # optimal transport, diffusion.processes.coupling), which straightens the learned ODE.
    # None: ot for flow (independent if the sampler needs the score), independent otherwise.
    # On the swiss roll ot lowered the SW ratio on 18 of 20 seeds (docs/performance.md).
    coupling: str | None = None
    # The network: a residual MLP with a sinusoidal step embedding.
    width: int = 96  # 96 reached a median SW ratio of 1.05 where 64 reached 1.09 (same steps)
    depth: int = 3  # six blocks of width 64 were no better over 20 seeds, and slower
    # Optimisation.
    steps: int = 2000  # training steps
    batch_size: int = 512  # 512 and 2000 steps beat 256 x 4000 and 1024 x 1500 at equal time
    lr: float = 3e-3  # peak AdamW learning rate
    warmup: int = 100  # linear warmup steps, then cosine decay
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm
    ema_decay: float = 0.999  # EMA of the weights, used for every sample we draw
    # Sampling during and after training.
    sampler: str | None = None  # None: the process's default (ancestral for ddpm, heun for edm)
    # Sampling steps; None: min(200, diffusion_steps) for ddpm, else the process's default.
    sample_steps: int | None = None
    sample_grid: str = "uniform"  # time grid: uniform, quadratic, karras or logsnr
    snapshot_every: int = 100  # training steps between frames of training.gif
    snapshot_samples: int = 2000  # points per frame
    eval_samples: int = 10_000  # points sampled for the final metrics (evaluate --n for more)
    # Checkpoints: every this many steps (and after the last) the complete training state is
    # saved to checkpoints/ in the run directory, so `diffusion train --resume` can continue
    # bit for bit. 0 turns them off.
    checkpoint_every: int = 1000
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (hyphens in keys read as underscores); unknown keys are errors."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a table of settings, got {type(values).__name__}")
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - set(FIELD_KINDS))
        if unknown:
            close = difflib.get_close_matches(unknown[0], FIELD_KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {unknown[0]!r}{hint}")
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field; return self when all is well.

        Checks, in order: each field's type (no NaN or inf), its range, then combinations.
        """
        for name, (kind, optional) in FIELD_KINDS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not _is_kind(value, kind):
                raise ConfigError(f"{name} must be {KIND_NAMES[kind]}, got {value!r}")
            if kind == "float":
                setattr(self, name, float(value))
        _check_choice("process", self.process, list(PROCESSES))
        self._resolve_process_defaults()
        choices = {
            "schedule": sorted(BETA_SCHEDULES),
            "sampler": list(SAMPLERS),
            "prediction": list(TARGETS),
            "sample_grid": list(GRIDS),
            "coupling": list(COUPLINGS),
        }
        if self.train_times is not None:
            choices["train_times"] = list(TRAIN_TIMES)
        for name, allowed in choices.items():
            _check_choice(name, getattr(self, name), allowed)
        positive = (
            "n_train", "diffusion_steps", "width", "depth", "steps", "batch_size", "augment_dim",
            "sample_steps", "snapshot_every", "snapshot_samples", "eval_samples",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("warmup", "seed", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, most in LIMITS.items():
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most:_}, got {getattr(self, name):_}")
        for name in ("lr", "grad_clip"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("ema_decay", "min_lr_ratio"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"{name} must lie in (0, 1), got {value}")
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value}")
        self._check_combinations()
        return self

    def _resolve_process_defaults(self) -> None:
        """Fill prediction, sampler, coupling and sample_steps left as None from the process's
        defaults."""
        prediction, sampler, steps = PROCESS_DEFAULTS[self.process]
        self.prediction = self.prediction or prediction
        self.sampler = self.sampler or sampler
        if self.coupling is None:
            # Flow matching pairs by optimal transport, unless the sampler asked for needs the
            # score of the Gaussian path, which only independent pairs train.
            ot = self.process == "flow" and self.sampler not in GAUSSIAN_ONLY
            self.coupling = "ot" if ot else "independent"
        if self.sample_steps is None and self.coupling == "ot":
            self.sample_steps = OT_SAMPLE_STEPS
        if self.sample_steps is None:
            self.sample_steps = steps or min(DEFAULT_SAMPLE_STEPS, self.diffusion_steps)
        if self.train_times is None and self.process in TRAIN_TIMES_PROCESSES:
            self.train_times = "uniform"

    def _check_combinations(self) -> None:
        if self.schedule == "cosine":
            for name in ("beta_start", "beta_end"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"{name} applies to the linear, sigmoid and quadratic schedules; "
                        "the cosine schedule has no beta endpoints"
                    )
        if (
            self.beta_start is not None
            and self.beta_end is not None
            and self.beta_start >= self.beta_end
        ):
            raise ConfigError(
                f"beta_start ({self.beta_start}) must be below beta_end ({self.beta_end})"
            )
        if self.zero_terminal_snr and self.prediction == "eps":
            raise ConfigError(
                "zero_terminal_snr cannot be combined with prediction = 'eps': at t = 1 no "
                "signal is left to recover; use prediction = 'v' or 'x0'"
            )
        if self.process == "poisson" and self.sampler in GAUSSIAN_ONLY:
            raise ConfigError(
                f"sampler {self.sampler!r} assumes Gaussian marginals; the poisson process "
                "needs an ODE sampler: euler, heun, rk45, dpm-solver++ or ddim"
            )
        if self.process == "flow" and self.sampler in ("euler-maruyama", "pc"):
            raise ConfigError(
                f"sampler {self.sampler!r} needs the SDE drift alpha'/alpha, infinite at t = 1 "
                "of the flow path; use heun, euler, rk45, dpm-solver++, ddim or ancestral"
            )
        if self.train_times is not None and self.process not in TRAIN_TIMES_PROCESSES:
            raise ConfigError(
                f"train_times applies to flow, vp, subvp and ve, not {self.process} (edm and "
                "poisson draw log-normal noise levels, ddpm and ncsn uniform steps)"
            )
        if self.coupling == "ot" and self.process != "flow":
            raise ConfigError(
                f"coupling {self.coupling!r} applies to the flow process only, not "
                f"{self.process} (it straightens flow matching's paths; the other families "
                "train with independent noise)"
            )
        if self.coupling == "ot" and self.batch_size > MAX_OT_BATCH:
            raise ConfigError(
                f"batch_size must be at most {MAX_OT_BATCH:_} with coupling {self.coupling!r} "
                f"(its plan is batch_size x batch_size), got {self.batch_size:_}"
            )
        if self.coupling == "ot" and self.sampler in GAUSSIAN_ONLY:
            raise ConfigError(
                f"sampler {self.sampler!r} needs the score of the Gaussian path, which a flow "
                f"trained with coupling {self.coupling!r} does not learn; use an ODE sampler: "
                "heun, euler, rk45, dpm-solver++ or ddim"
            )
        if self.augment_dim != 128 and self.process != "poisson":
            raise ConfigError(
                f"augment_dim applies to the poisson process only, not {self.process}"
            )
        for name, unset in DDPM_ONLY.items() if self.process != "ddpm" else ():
            if getattr(self, name) != unset:
                raise ConfigError(
                    f"{name} applies to the ddpm process only, not {self.process} "
                    "(the default process is flow; add --process ddpm)"
                )
        for name in ("sigma_min", "sigma_max") if self.process not in SIGMA_PROCESSES else ():
            if getattr(self, name) is not None:
                raise ConfigError(
                    f"{name} applies to the ve, edm and ncsn processes, not {self.process}"
                )
        if (self.sigma_min or 0) and (self.sigma_max or 0) and self.sigma_min >= self.sigma_max:
            raise ConfigError(
                f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})"
            )
        if self.process == "ddpm" and self.sample_steps > self.diffusion_steps:
            raise ConfigError(
                f"sample_steps ({self.sample_steps}) cannot exceed diffusion_steps "
                f"({self.diffusion_steps})"
            )
        if self.device not in ("auto", "cpu") and re.fullmatch(r"cuda(:\d+)?", self.device) is None:
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device is {self.device!r} but CUDA is not available here")


#: settings of the DDPM beta schedule, each with the value that means "not set"; another
#: value is refused for any other process.
DDPM_ONLY = {"schedule": "cosine", "beta_start": None, "beta_end": None, "zero_terminal_snr": False}

#: upper bounds that keep a typo (an extra zero or ten) from allocating the machine away.
LIMITS = {
    "n_train": 10**8,
    "diffusion_steps": 10**6,
    "width": 2**16,
    "depth": 1000,
    "steps": 10**8,
    "batch_size": 10**7,
    "snapshot_samples": 10**7,
    "eval_samples": 10**8,
    "seed": MAX_SEED,
    "augment_dim": 10**6,
}


def _check_choice(name: str, value: object, allowed: list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _annotation_kind(annotation: str) -> tuple[str, bool]:
    """("int" | "float" | "str" | "bool", optional) from a field annotation such as "int | None"."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    (kind,) = [p for p in parts if p != "None"]
    return kind, optional


#: each field's kind and whether None is allowed, read from the annotations above.
FIELD_KINDS: dict[str, tuple[str, bool]] = {
    f.name: _annotation_kind(str(f.type)) for f in fields(TrainConfig)
}
KIND_NAMES = {
    "int": "an integer",
    "float": "a finite number",
    "str": "a string",
    "bool": "true or false",
}


def _is_kind(value: object, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


#: settings that may change when a run is resumed; every other one must stay as it was.
RESUMABLE_CHANGES = frozenset(
    {
        "steps", "lr", "warmup", "min_lr_ratio", "weight_decay", "grad_clip", "ema_decay",
        "sampler", "sample_steps", "sample_grid", "snapshot_every", "eval_samples",
        "checkpoint_every",
        "device", "allow_terminal_signal",
    }
)  # fmt: skip


def upgrade_saved_config(values: object) -> object:
    """A config saved before a setting existed, given that setting as the run was trained.

    Runs saved before train_times existed drew uniform times, and runs saved before coupling
    existed drew independent noise, so a checkpoint of one still matches its config on resume.
    Anything that is not a table is returned as it is (`from_dict` reports it).
    """
    if not isinstance(values, dict):
        return values
    values = dict(values)
    if "train_times" not in values:
        uniform = values.get("process", "flow") in TRAIN_TIMES_PROCESSES
        values["train_times"] = "uniform" if uniform else None
    values.setdefault("coupling", "independent")
    return values


def critical_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why a run made with config `old` cannot continue under `new` (empty: it can)."""
    problems = []
    for name in FIELD_KINDS:
        if name not in RESUMABLE_CHANGES and old.get(name) != new.get(name):
            problems.append(
                f"{name} differs (the run has {old.get(name)!r}, now {new.get(name)!r}); "
                f"{name} cannot change when resuming: start a new run instead"
            )
    return problems


def resumable_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The allowed settings that differ, as "name: old -> new"."""
    return [
        f"{name}: {old.get(name)!r} -> {new.get(name)!r}"
        for name in sorted(RESUMABLE_CHANGES)
        if old.get(name) != new.get(name)
    ]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a .toml or .json file (flat keys mirroring the options); ConfigError if bad."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"config file must be .toml or .json, got {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:]}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    for key, value in values.items():
        if isinstance(value, dict | list):
            raise ConfigError(f"config file {path}: {key!r} must be a single value, not a table")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def to_toml(config: TrainConfig) -> str:
    """The config as a flat TOML file that `--config` reads back (None values are left out)."""
    lines = ["# diffusion train --config this-file (options given on the command line win)"]
    for name, value in config.to_dict().items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value)  # a JSON string is a valid TOML basic string
        else:
            text = repr(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"
