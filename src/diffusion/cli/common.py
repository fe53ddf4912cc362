"""What every `diffusion` subcommand shares: one-line usage errors, option types, option
groups, output-path checks, and the model a command runs on (a run or the exact oracle)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILURE = 1

MAX_EVALUATE = 10**7  # samples `diffusion evaluate` holds in memory at once


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line ("diffusion: error: ...") and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _number(cast: type, what: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: `cast(text)` that must satisfy `ok`, else a one-line error."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


positive_int = _number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
seed_int = _number(int, "an integer in [0, 4294967295]", lambda v: 0 <= v <= 2**32 - 1)
positive_float = _number(float, "a positive finite number", lambda v: v > 0)
finite_float = _number(float, "a finite number", lambda v: True)
non_negative_float = _number(float, "a finite number >= 0", lambda v: v >= 0)


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """--sampler, --sample-steps, --sample-grid and every sampler's own options."""
    from diffusion.samplers import SAMPLERS
    from diffusion.samplers.grids import GRIDS

    parser.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                        help="the sampler (default: the run's)")  # fmt: skip
    parser.add_argument("--sample-steps", type=positive_int, default=None,
                        help="sampling steps (default: the run's)")  # fmt: skip
    parser.add_argument("--sample-grid", choices=GRIDS, default=None,
                        help="the time grid sampling walks (default: the run's)")  # fmt: skip
    group = parser.add_argument_group("sampler options (each applies to the samplers named)")
    group.add_argument("--eta", type=non_negative_float, help="ddim: noise (0: deterministic)")
    group.add_argument("--variance", choices=("posterior", "beta"), help="ancestral: variance")
    group.add_argument("--variable", choices=("sigma", "t"), help="euler, heun: ODE variable")
    group.add_argument("--churn", type=non_negative_float, help="heun: S_churn (EDM)")
    group.add_argument("--snr", type=positive_float, help="pc: corrector signal-to-noise ratio")
    group.add_argument("--corrector-steps", type=non_negative_int, help="pc: Langevin steps")
    group.add_argument("--step-size", type=positive_float, help="langevin: step / sigma^2")
    group.add_argument("--langevin-steps", type=positive_int, help="langevin: steps per level")
    group.add_argument("--rtol", type=positive_float, help="rk45: relative tolerance")
    group.add_argument("--atol", type=positive_float, help="rk45: absolute tolerance")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--run DIR, or --oracle with --dataset and --process: which model to use."""
    from diffusion.processes import PROCESSES

    group = parser.add_argument_group("model (a trained run, or the exact oracle of a mixture)")
    group.add_argument("--run", help="run directory written by `diffusion train`")
    group.add_argument(
        "--oracle", action="store_true",
        help="use the exact score of a Gaussian-mixture data set instead of a network: "
        "with --run, of the run's data and process; else give --dataset (and --process)",
    )  # fmt: skip
    group.add_argument("--dataset", help="with --oracle: a .json mixture or gaussians")
    group.add_argument("--process", choices=sorted(PROCESSES), help="with --oracle (default ddpm)")


def format_metrics(metrics: dict) -> str:
    """A small table: metric, value, data-vs-data floor and ratio."""
    lines = [f"{'metric':<20}{'value':>12}{'floor':>12}{'ratio':>8}"]
    for name in ("sliced_wasserstein", "mmd", "energy"):
        m = metrics[name]
        lines.append(f"{name:<20}{m['value']:>12.5f}{m['floor']:>12.5f}{m['ratio']:>8.2f}")
    return "\n".join(lines)


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable(path: Path, option: str, *, directory: bool) -> None:
    """Refuse, before any compute, an output path that cannot be created where it points."""
    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if path.is_dir() else "a file"
        raise UsageError(f"{option} {str(path)!r} is {kind}")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise UsageError(f"{option} {str(path)!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {str(path)!r}: cannot write in {str(parent)!r}")


def sampler_options(args: argparse.Namespace, sampler: str) -> dict:
    """Sampler options given on the command line; each must be one `sampler` takes."""
    from diffusion.samplers import SAMPLER_OPTIONS

    names = {name for opts in SAMPLER_OPTIONS.values() for name in opts}
    options = {k: getattr(args, k) for k in sorted(names) if getattr(args, k, None) is not None}
    for name in options:
        if name not in SAMPLER_OPTIONS[sampler]:
            users = [s for s, opts in SAMPLER_OPTIONS.items() if name in opts]
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} applies to the {' and '.join(users)} sampler"
                             f"{'s' if len(users) > 1 else ''} only, not {sampler}")  # fmt: skip
    return options


def sampling_steps(requested: int | None, trained) -> int:
    """--sample-steps, or the run's own; at most a discrete process's own steps."""
    steps = requested or trained.config.sample_steps
    most = trained.process.discrete_steps
    if most and steps > most:
        raise UsageError(f"--sample-steps must be at most {most} for this run (its process has "
                         f"{most} steps)")  # fmt: skip
    return steps


def check_grid(trained, steps: int, grid: str) -> None:
    """Build the grid once, so a grid the process cannot take fails before sampling."""
    from diffusion.samplers.grids import make_grid

    try:
        make_grid(trained.process, steps, grid)
    except ValueError as exc:
        raise UsageError(f"--sample-grid {grid}: {exc}") from None


def sampling_settings(args: argparse.Namespace, trained) -> dict:
    """The sampler, steps, grid and sampler options the command line asks for (the run's
    own where left out), checked before any sampling: keyword arguments of `sample`."""
    sampler = args.sampler or trained.config.sampler
    options = sampler_options(args, sampler)
    try:
        trained.process.check_sampler(sampler, options)
    except ValueError as exc:
        raise UsageError(f"--sampler {sampler}: {exc}") from None
    steps = sampling_steps(args.sample_steps, trained)
    grid = args.sample_grid or trained.config.sample_grid
    check_grid(trained, steps, grid)
    return {"sampler": sampler, "steps": steps, "grid": grid, **options}


def load_source(args: argparse.Namespace):
    """The model the options name: a run's network, or an exact oracle (`ExactModel`)."""
    from diffusion.data import get_dataset
    from diffusion.io.runs import load_model
    from diffusion.measure.oracle import exact_model
    from diffusion.training.config import TrainConfig

    named = args.dataset is not None or args.process is not None
    if args.run is None and not args.oracle:
        raise UsageError("give --run DIR (a trained run) or --oracle --dataset D (exact)")
    if named and not args.oracle:
        raise UsageError("--dataset and --process go with --oracle")
    if named and args.run is not None:
        raise UsageError("--dataset and --process come from the run; leave them out with --run")
    if args.run is None and args.dataset is None:
        raise UsageError("--oracle without --run needs --dataset (a Gaussian mixture)")
    if not args.oracle:
        return load_model(args.run)
    if args.run is not None:
        trained = load_model(args.run)
        config, normalizer = trained.config, trained.normalizer
    else:
        values = {"dataset": args.dataset, "process": args.process or "ddpm"}
        config, normalizer = TrainConfig.from_dict(values), None
    dataset = get_dataset(config.dataset)
    if dataset.mixture is None:
        raise UsageError(
            f"--oracle needs a Gaussian-mixture data set (a .json mixture, gaussians or "
            f"eight_gaussians); {config.dataset} has no closed form"
        )
    if config.process == "poisson":
        raise UsageError("--oracle needs Gaussian marginals; the poisson process has none")
    return exact_model(dataset.mixture, config, normalizer)
