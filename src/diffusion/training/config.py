"""Typed training configuration: every setting stated once, checked on construction.

Each field of `TrainConfig` carries its help text, bounds and choices (`setting`); the
command line (`diffusion train --help`), the TOML/JSON keys of `--config` and the checks in
`TrainConfig.validate` are all generated from them. What is particular to a process (its
prediction target, sampler, steps, coupling, which settings it takes) is read from the
process class (`diffusion.processes`), never written here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, fields
from typing import Any

import torch

from diffusion.data import is_image_dataset
from diffusion.data.files import MAX_DIM
from diffusion.data.labels import MAX_CLASSES
from diffusion.errors import ConfigError
from diffusion.parametrize import TARGETS
from diffusion.processes import PROCESSES
from diffusion.processes.coupling import COUPLINGS
from diffusion.processes.schedules import BETA_SCHEDULES
from diffusion.processes.times import TRAIN_TIMES
from diffusion.samplers import GAUSSIAN_ONLY, SAMPLERS, check_sampler
from diffusion.samplers.grids import GRIDS
from diffusion.samplers.registry import ORDERS

MAX_SEED = 2**32 - 1  # seeds are split into named streams (diffusion.streams)
#: the largest batch paired by optimal transport: its n x n plan (and the cumulative sums
#: drawn from it) take 2 * 4 n^2 bytes, 512 MiB here.
MAX_OT_BATCH = 8192


@dataclass(frozen=True)
class Setting:
    """What one config field means and accepts (the field's metadata)."""

    help: str
    group: str  # the heading it is listed under in --help
    low: float | None = None  # smallest value allowed
    high: float | None = None  # largest value allowed (keeps a typo from eating the machine)
    open_low: bool = False  # the value must be above `low`, not equal to it
    open_high: bool = False  # the value must be below `high`
    choices: tuple[str, ...] | None = None
    unset: str = ""  # what None means, for --help
    metavar: str = ""  # how --help names the value (default: its kind, INT, FLOAT, STR)


#: the settings whose default depends on the kind of data, filled in by `validate`. Points:
#: the sweeps of docs/performance.md. Images: the digits sweeps of benchmarks/images.py.
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "points": {"model": "mlp", "train_steps": 2000, "batch_size": 512, "lr": 3e-3,
               "snapshot_samples": 2000, "eval_samples": 10_000},
    "images": {"model": "unet", "train_steps": 1500, "batch_size": 128, "lr": 4e-3,
               "snapshot_samples": 64, "eval_samples": 2000},
}  # fmt: skip
#: the networks `model` names.
MODELS = ("mlp", "unet", "diffusers-unet")


def _by_data(name: str) -> str:
    """--help's words for a data-dependent default, e.g. "2_000 for points, 1_500 for images"."""
    shown = [DATA_DEFAULTS[kind][name] for kind in ("points", "images")]
    shown = [f"{v:_}" if isinstance(v, int) else f"{v:g}" if isinstance(v, float) else v
             for v in shown]  # fmt: skip
    return f"{shown[0]} for points, {shown[1]} for images"


def int_list(text: str) -> tuple[int, ...] | None:
    """ "1,2,2" -> (1, 2, 2); None unless it is a comma-separated list of integers >= 1."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        return None
    return values if values and all(1 <= v <= 64 for v in values) else None


def setting(default: object, help: str, group: str, **meta: Any) -> Any:
    """A dataclass field with a default and its `Setting`."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, group, **meta)})


@dataclass
class TrainConfig:
    """Everything that defines a training run, checked when it is made (`ConfigError`).

    The defaults train flow matching on the swiss roll in about 20 s on 2 CPU cores; they were
    chosen by the sweeps in `benchmarks/perf.py` (see docs/performance.md). Settings left as
    None take the process's own default (`diffusion.processes`).
    """

    # Data.
    dataset: str = setting(
        "swissroll",
        f"a toy or image set name, a .npy/.csv point cloud (at most {MAX_DIM} coordinates per "
        "point), a .json mixture, a .npy image array or a folder of PNG/JPEG images",
        "data",
        metavar="NAME|FILE",
    )  # fmt: skip
    n_train: int = setting(
        100_000, "points drawn once from a toy set to train on (files use all rows)", "data",
        low=1, high=10**7,
    )  # fmt: skip
    # Class conditioning (Ho & Salimans 2022): one network learns p(x | class) and, with the
    # label dropped, p(x); `diffusion sample --class C --guidance W` combines the two.
    labels: str = setting(
        "auto", "condition the network on the data's class labels: auto (when the data have "
        "them), on (refuse data without), off", "data", choices=("auto", "on", "off"),
    )  # fmt: skip
    # 0.3: on the digits, the "no class" model then samples within 4% of a network trained
    # without labels (Frechet ratio 1.09 against 1.05; 1.33 at 0.2, 1.87 at 0.1), and the
    # conditional samples are as good as at 0.1 (0.84 against 0.85): benchmarks/guidance.py.
    label_dropout: float = setting(
        0.3, "share of training labels replaced by 'no class', so the network also learns the "
        "unconditional model", "data", low=0, high=1,
    )  # fmt: skip
    classes: int | None = setting(
        None, "number of classes of a conditional run (0: unconditional)", "data", low=0,
        high=MAX_CLASSES, unset="from the data's labels",
    )  # fmt: skip
    # The forward process. Flow matching reached a given quality fastest of the families on the
    # toy sets, and DPM-Solver++ at 10 steps stays close to its 23-evaluation Heun samples.
    process: str = setting("flow", "the forward process", "process", choices=tuple(PROCESSES))
    # T also scales the network's sinusoidal time embedding, for every process.
    diffusion_steps: int = setting(
        1000, "T, the number of discrete DDPM steps", "process", low=1, high=10**6
    )
    # Cosine betas with v prediction: well conditioned at both ends of the schedule. (eps
    # prediction must divide by alpha(t) ~ 5e-5 at the end of the cosine schedule.)
    schedule: str = setting(
        "cosine", "the DDPM beta schedule", "process", choices=tuple(sorted(BETA_SCHEDULES))
    )
    beta_start: float | None = setting(
        None, "first beta of the linear, sigmoid and quadratic schedules", "process",
        low=0, high=1, open_low=True, open_high=True, unset="1e-4 scaled by 1000/T",
    )  # fmt: skip
    beta_end: float | None = setting(
        None, "last beta of the linear, sigmoid and quadratic schedules", "process",
        low=0, high=1, open_low=True, open_high=True, unset="0.02 scaled by 1000/T",
    )  # fmt: skip
    zero_terminal_snr: bool = setting(
        False, "rescale the betas so alpha_bar_T = 0 (Lin et al. 2024)", "process"
    )
    allow_terminal_signal: bool = setting(
        False, "accept a schedule that leaves signal at t = 1", "process"
    )
    prediction: str | None = setting(
        None, "what the network predicts", "process", choices=tuple(TARGETS),
        unset="the process's (velocity for flow, eps for ncsn, else v)",
    )  # fmt: skip
    sigma_min: float | None = setting(
        None, "the lowest noise level", "process", low=0, high=1e6, open_low=True,
        unset="the process's",
    )  # fmt: skip
    sigma_max: float | None = setting(
        None, "the highest noise level", "process", low=0, high=1e6, open_low=True,
        unset="the process's",
    )  # fmt: skip
    augment_dim: int = setting(
        128, "PFGM++'s augmentation dimension D (large D approaches EDM)", "process",
        low=1, high=10**6,
    )  # fmt: skip
    # On the swiss roll neither low-noise nor logit-normal beat uniform (docs/performance.md).
    # On the digits logit-normal reached a Fréchet ratio of 1.71 where uniform reached 1.97.
    train_times: str | None = setting(
        None, "the distribution of training times", "process", choices=tuple(TRAIN_TIMES),
        unset="uniform for points, logit-normal for images",
    )  # fmt: skip
    # ot (minibatch optimal transport) straightens flow matching's learned ODE.
    coupling: str | None = setting(
        None, "how each batch's data are paired with noise", "process", choices=COUPLINGS,
        unset="the process's first (ot for flow, unless the sampler needs the score)",
    )  # fmt: skip
    # The network: a residual MLP for points, a U-Net for images (diffusion.models).
    model: str | None = setting(
        None, "the network: mlp, unet, or diffusers-unet (diffusers' UNet2DModel, with the "
        "ddpm process; `diffusion export` writes it as a diffusers pipeline)",
        "network and optimisation", choices=MODELS, unset=_by_data("model"),
    )  # fmt: skip
    width: int = setting(  # 96 reached a median SW ratio of 1.05 where 64 reached 1.09
        96, "hidden width of the network", "network and optimisation", low=1, high=2**16
    )
    depth: int = setting(  # six blocks of width 64 were no better over 20 seeds, and slower
        3, "residual blocks of the MLP", "network and optimisation", low=1, high=1000
    )
    # 16: on the digits, 800 steps reached a Fréchet ratio of 1.97 in 51 s; 24 channels 2.15
    # in 76 s (benchmarks/images.py).
    unet_channels: int = setting(
        16, "U-Net channels at full resolution", "network and optimisation", low=1, high=1024
    )
    unet_mults: str | None = setting(
        None, "U-Net channel multiplier per resolution, comma-separated (one 2x downsampling "
        "between entries)", "network and optimisation", metavar="M,M,...",
        unset="1,2 for 8 x 8 images, 1,2,2 for 16 x 16, 1,2,2,2 for larger",
    )  # fmt: skip
    unet_blocks: int = setting(
        1, "U-Net residual blocks per resolution", "network and optimisation", low=1, high=16
    )
    unet_attention: str | None = setting(
        None, "image sides (pixels) at which the U-Net uses self-attention, comma-separated",
        "network and optimisation", metavar="S,S,...",
        unset="every side from 8 down below the full one",
    )  # fmt: skip
    dropout: float = setting(
        0.0, "dropout in the U-Net's residual blocks", "network and optimisation",
        low=0, high=1, open_high=True,
    )  # fmt: skip
    # Optimisation. 512 x 2000 steps beat 256 x 4000 and 1024 x 1500 at equal time.
    train_steps: int | None = setting(
        None, "optimisation steps", "network and optimisation", low=1, high=10**8,
        unset=_by_data("train_steps"),
    )  # fmt: skip
    batch_size: int | None = setting(
        None, "training examples per step", "network and optimisation", low=1, high=10**7,
        unset=_by_data("batch_size"),
    )  # fmt: skip
    lr: float | None = setting(
        None, "peak AdamW learning rate", "network and optimisation", low=0, open_low=True,
        unset=_by_data("lr"),
    )  # fmt: skip
    warmup: int = setting(
        100, "steps of linear warmup (then cosine decay)", "network and optimisation",
        low=0, high=10**8,
    )  # fmt: skip
    min_lr_ratio: float = setting(
        0.05, "the cosine decay ends at lr * min_lr_ratio", "network and optimisation",
        low=0, high=1, open_high=True,
    )  # fmt: skip
    weight_decay: float = setting(0.0, "AdamW weight decay", "network and optimisation", low=0)
    grad_clip: float = setting(
        1.0, "largest gradient norm", "network and optimisation", low=0, open_low=True
    )
    ema_decay: float = setting(
        0.999, "EMA of the weights, used for every sample drawn", "network and optimisation",
        low=0, high=1, open_high=True,
    )  # fmt: skip
    seed: int = setting(0, "seed of every random stream of the run", "network and optimisation",
                        low=0, high=MAX_SEED)  # fmt: skip
    device: str = setting("auto", "auto (CUDA when present), cpu or cuda[:N]",
                          "network and optimisation", metavar="DEVICE")  # fmt: skip
    # bf16 autocast: the network's forward pass in bfloat16 where PyTorch deems it safe, the
    # weights, gradients, optimizer and EMA in float32 (Micikevicius et al. 2018's mixed
    # precision, without loss scaling: bfloat16 has float32's exponent range).
    precision: str = setting(
        "fp32", "arithmetic of the network in training: fp32, or bf16 (autocast; for GPUs "
        "with bfloat16 units, also runs on CPUs)", "network and optimisation",
        choices=("fp32", "bf16"),
    )  # fmt: skip
    # Sampling during and after training.
    sampler: str | None = setting(
        None, "the sampler", "sampling, pictures and checkpoints", choices=tuple(SAMPLERS),
        unset="the process's",
    )  # fmt: skip
    sample_steps: int | None = setting(
        None, "sampling steps", "sampling, pictures and checkpoints", low=1, high=10**6,
        unset="the process's",
    )  # fmt: skip
    sample_grid: str | None = setting(
        None, "the time grid sampling walks", "sampling, pictures and checkpoints",
        choices=GRIDS, unset="the process's with its default sampler, else uniform",
    )  # fmt: skip
    sample_order: int | None = setting(
        None, f"the order of the {', '.join(ORDERS)} samplers", "sampling, pictures and "
        "checkpoints", low=1, high=3,
        unset="the process's with its default sampler, else the sampler's own",
    )  # fmt: skip
    snapshot_every: int = setting(
        100, "training steps between frames of training.gif",
        "sampling, pictures and checkpoints", low=1, high=10**8,
    )  # fmt: skip
    snapshot_samples: int | None = setting(
        None, "samples per frame of training.gif", "sampling, pictures and checkpoints",
        low=1, high=10**5, unset=_by_data("snapshot_samples"),
    )  # fmt: skip
    eval_samples: int | None = setting(
        None, "samples drawn for the final metrics (evaluate --n for more)",
        "sampling, pictures and checkpoints", low=1, high=10**6,
        unset=_by_data("eval_samples"),
    )  # fmt: skip
    log: str = setting(
        "csv", "the training log: csv (RUN/log.csv, always written), or tensorboard (also "
        "event files in RUN/tensorboard: loss, learning rate, gradient norm, snapshots, "
        "metrics; pip install 'diffusion-toolkit[tensorboard]')",
        "sampling, pictures and checkpoints", choices=("csv", "tensorboard"),
    )  # fmt: skip
    # The complete training state is saved every this many steps (and after the last), so
    # `diffusion train --resume` can continue bit for bit.
    checkpoint_every: int = setting(
        1000, "steps between checkpoints (0: none)", "sampling, pictures and checkpoints",
        low=0, high=10**8,
    )  # fmt: skip

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (hyphens in keys read as underscores); unknown keys are errors."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a table of settings, got {type(values).__name__}")
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - set(SETTINGS))
        if unknown:
            close = difflib.get_close_matches(unknown[0], SETTINGS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {unknown[0]!r}{hint}")
        return cls(**values)

    def sampler_options(self, sampler: str, options: dict | None = None) -> dict:
        """`options` for `sampler`, with this run's `sample_order` where the sampler is the
        run's own and no order is given."""
        options = dict(options or {})
        if sampler == self.sampler and self.sample_order is not None:
            options.setdefault("order", self.sample_order)
        return options

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field; fill the settings left as None from
        the process's defaults; return self.

        Checks, in order: each field's type (no NaN or inf), its range and choices, the
        settings the process does not take, then the process and sampler themselves.
        """
        for name, (kind, optional) in FIELD_KINDS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not _is_kind(value, kind):
                raise ConfigError(f"{name} must be {KIND_NAMES[kind]}, got {_short(value)}")
            if kind == "float":
                setattr(self, name, float(value))
            check_setting(name, value)
        self._resolve_data_defaults()
        self._check_process_settings()
        self._resolve_process_defaults()
        self._check_combinations()
        return self

    @property
    def data_kind(self) -> str:
        """ "images" when `dataset` names image data, else "points" (decided without loading)."""
        return "images" if is_image_dataset(self.dataset) else "points"

    def _resolve_data_defaults(self) -> None:
        """Fill the settings left as None whose default depends on the kind of data, and
        check the network's own settings."""
        unset = [name for name in DATA_DEFAULTS["points"] if getattr(self, name) is None]
        if unset:
            defaults = DATA_DEFAULTS[self.data_kind]
            for name in unset:
                setattr(self, name, defaults[name])
        for name in ("unet_mults", "unet_attention"):
            value = getattr(self, name)
            if value is not None and int_list(value) is None:
                raise ConfigError(f"{name} must be comma-separated integers from 1 to 64, "
                                  f"e.g. 1,2,2; got {_short(value)}")  # fmt: skip
        belongs = {("mlp",): ("width", "depth"),
                   ("unet", "diffusers-unet"): ("unet_channels", "unet_mults", "unet_blocks",
                                                "unet_attention", "dropout")}  # fmt: skip
        for models, names in belongs.items():
            for name in names:
                if self.model not in models and getattr(self, name) != DEFAULTS[name]:
                    raise ConfigError(f"{name} applies to model {' and '.join(models)} only; "
                                      f"this run's model is {self.model}")  # fmt: skip
        if self.model == "diffusers-unet" and self.process != "ddpm":
            raise ConfigError(f"model diffusers-unet trains with process ddpm only (the process "
                              f"of diffusers' DDPM pipelines), not {self.process}")  # fmt: skip

    def _check_process_settings(self) -> None:
        """Refuse a setting the process does not take, naming the processes that do."""
        cls = PROCESSES[self.process]
        for name, takers in PROCESS_SETTINGS.items():
            if name not in cls.settings and getattr(self, name) != DEFAULTS[name]:
                raise ConfigError(
                    f"{name} applies to {_processes(takers)} only, not {self.process}"
                )

    def _resolve_process_defaults(self) -> None:
        """Fill prediction, sampler, coupling, train_times and the sampling settings left as
        None from the process class, then build the process once so its own checks run now."""
        cls = PROCESSES[self.process]
        self.prediction = self.prediction or cls.default_prediction
        named = self.sampler  # None: the process's default setting, steps, grid and order
        self.sampler = self.sampler or cls.default_sampler
        if self.coupling is None:
            # The process's first coupling, unless the sampler asked for needs the score of
            # the Gaussian path, which only independent pairs train.
            needs_score = self.sampler in GAUSSIAN_ONLY
            self.coupling = "independent" if needs_score else cls.couplings[0]
        if self.coupling not in cls.couplings:
            takers = [n for n, c in PROCESSES.items() if self.coupling in c.couplings]
            raise ConfigError(
                f"coupling {self.coupling!r} applies to {_processes(takers)} only, not "
                f"{self.process} (the other families train with independent noise)"
            )
        if self.train_times is None and "train_times" in cls.settings:
            self.train_times = "logit-normal" if self.data_kind == "images" else "uniform"
        from diffusion.training.build import build_process  # build reads this module

        try:
            process = build_process(self)
        except ValueError as exc:
            raise ConfigError(f"{self.process}: {exc}") from None
        _, steps, grid, options = process.sampling_defaults(named)
        if self.sample_steps is None:
            self.sample_steps = steps
        if self.sample_grid is None:
            self.sample_grid = grid
        if self.sample_order is None:
            self.sample_order = options.get("order")
        elif self.sample_order not in ORDERS.get(self.sampler, ()):
            takers = [f"{name} ({'/'.join(map(str, o))})" for name, o in ORDERS.items()]
            raise ConfigError(f"sample_order {self.sample_order} does not apply to sampler "
                              f"{self.sampler}; orders: {', '.join(takers)}")  # fmt: skip
        try:
            check_sampler(process, self.sampler)
        except ValueError as exc:
            raise ConfigError(f"sampler {self.sampler!r}: {exc}") from None
        if process.discrete_steps and self.sample_steps > process.discrete_steps:
            raise ConfigError(
                f"sample_steps ({self.sample_steps}) cannot exceed the process's "
                f"{process.discrete_steps} steps (diffusion_steps)"
            )

    def _check_combinations(self) -> None:
        if self.labels == "off" and self.classes:
            raise ConfigError(f"classes ({self.classes}) needs labels auto or on; this run has "
                              "labels off")  # fmt: skip
        if self.schedule == "cosine":
            for name in ("beta_start", "beta_end"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"{name} applies to the linear, sigmoid and quadratic schedules; "
                        "the cosine schedule has no beta endpoints"
                    )
        for low, high in (("beta_start", "beta_end"), ("sigma_min", "sigma_max")):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a >= b:
                raise ConfigError(f"{low} ({a}) must be below {high} ({b})")
        if self.coupling == "ot" and self.batch_size > MAX_OT_BATCH:
            raise ConfigError(
                f"batch_size must be at most {MAX_OT_BATCH:_} with coupling {self.coupling!r} "
                f"(its plan is batch_size x batch_size), got {self.batch_size:_}"
            )
        if self.device not in ("auto", "cpu") and re.fullmatch(r"cuda(:\d+)?", self.device) is None:
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device is {self.device!r} but CUDA is not available here")


def _annotation_kind(annotation: str) -> tuple[str, bool]:
    """("int" | "float" | "str" | "bool", optional) from a field annotation such as "int | None"."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    (kind,) = [p for p in parts if p != "None"]
    return kind, optional


#: every setting's `Setting`, in the order of the fields.
SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(TrainConfig)}
#: every setting's default.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)}
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
#: the settings only some processes take (diffusion_steps aside: it also scales the network's
#: time embedding), each with the processes that take it.
PROCESS_SETTINGS: dict[str, list[str]] = {
    name: [p for p, cls in PROCESSES.items() if name in cls.settings]
    for name in SETTINGS
    if name != "diffusion_steps" and any(name in cls.settings for cls in PROCESSES.values())
}


def describe_range(meta: Setting) -> str:
    """The allowed range in words, e.g. "in [0, 1)" or "at least 1" ("" when unbounded)."""
    low, high = meta.low, meta.high
    if low is not None and high is not None:
        return f"in {'(' if meta.open_low else '['}{_num(low)}, {_num(high)}{')' if meta.open_high else ']'}"
    if low is not None:
        return f"{'above' if meta.open_low else 'at least'} {_num(low)}"
    if high is not None:
        return f"{'below' if meta.open_high else 'at most'} {_num(high)}"
    return ""


def check_setting(name: str, value: object) -> None:
    """Raise ConfigError if `value` is outside setting `name`'s range or choices."""
    meta = SETTINGS[name]
    if meta.choices is not None and value not in meta.choices:
        raise ConfigError(f"{name} must be one of {', '.join(meta.choices)}, got {_short(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    too_low = meta.low is not None and (value <= meta.low if meta.open_low else value < meta.low)
    too_high = meta.high is not None and (
        value >= meta.high if meta.open_high else value > meta.high
    )
    if too_low or too_high:
        raise ConfigError(f"{name} must be {describe_range(meta)}, got {_num(value)}")


def _processes(names: list[str]) -> str:
    """["vp", "ve", "flow"] -> "the vp, ve and flow processes"."""
    if len(names) == 1:
        return f"the {names[0]} process"
    return f"the {', '.join(names[:-1])} and {names[-1]} processes"


def _num(value: float) -> str:
    """A number as a person writes it: 100_000 as 100_000, 1e-3 as 0.001."""
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e16
    ):
        return f"{int(value):_}"
    return f"{value:g}"


def _short(value: object) -> str:
    """repr(value), cut to a readable length (a 5,000-digit number stays one short line)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"


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
