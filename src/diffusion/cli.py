"""The `diffusion` command: train, sample and evaluate models on toy and user data.

Bad input never shows a traceback: it prints one line naming the problem and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

EXIT_USAGE = 2
EXIT_FAILURE = 1
SAMPLE_CHUNK = 65_536  # points sampled at once by `diffusion sample`
MAX_EVALUATE = 10**7  # samples `diffusion evaluate` holds in memory at once
MAX_NLL = 10**6  # points `diffusion nll` integrates (each one an ODE solve)
MAX_DIAGNOSE = 10**5  # points per measurement of `diffusion diagnose`


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
    """--sampler, --steps, --grid and every sampler's own options."""
    from diffusion.grids import GRIDS
    from diffusion.samplers import SAMPLERS

    parser.add_argument("--sampler", choices=list(SAMPLERS), default=None)
    parser.add_argument("--steps", type=positive_int, default=None, help="sampling steps")
    parser.add_argument(
        "--grid", choices=GRIDS, default=None, help="time grid (default: the run's)"
    )
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


def build_parser() -> Parser:
    from diffusion.grids import GRIDS
    from diffusion.parametrize import TARGETS
    from diffusion.processes import PROCESSES
    from diffusion.processes.schedules import BETA_SCHEDULES
    from diffusion.samplers import SAMPLERS

    parser = Parser(prog="diffusion", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a model. Settings come from the defaults, then --config FILE, then "
        "the options given here. --resume DIR continues a run from its last checkpoint.",
    )
    train.add_argument("--config", help="a .toml or .json file of settings (keys as below)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    train.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", help="toy set name or a .npy/.csv file (default swissroll)")
    data.add_argument("--n-train", type=positive_int, help="points drawn from a toy set")
    proc = train.add_argument_group("process")
    proc.add_argument("--process", choices=sorted(PROCESSES))
    proc.add_argument("--diffusion-steps", type=positive_int, help="DDPM steps T")
    proc.add_argument("--schedule", choices=sorted(BETA_SCHEDULES))
    proc.add_argument("--beta-start", type=finite_float)
    proc.add_argument("--beta-end", type=finite_float)
    proc.add_argument("--zero-terminal-snr", action=argparse.BooleanOptionalAction)
    proc.add_argument("--allow-terminal-signal", action=argparse.BooleanOptionalAction)
    proc.add_argument("--prediction", choices=TARGETS)
    proc.add_argument("--sigma-min", type=positive_float, help="ve and edm: lowest noise level")
    proc.add_argument("--sigma-max", type=positive_float, help="ve and edm: highest noise level")
    proc.add_argument("--augment-dim", type=positive_int, help="poisson: PFGM++'s D (default 128)")
    net = train.add_argument_group("network and optimisation")
    net.add_argument("--width", type=positive_int)
    net.add_argument("--depth", type=positive_int)
    net.add_argument("--steps", type=positive_int, help="training steps")
    net.add_argument("--batch-size", type=positive_int)
    net.add_argument("--lr", type=positive_float, help="peak learning rate")
    net.add_argument("--warmup", type=non_negative_int, help="warmup steps")
    net.add_argument("--min-lr-ratio", type=finite_float, help="final lr / peak lr, in [0, 1)")
    net.add_argument("--weight-decay", type=non_negative_float)
    net.add_argument("--grad-clip", type=positive_float, help="max gradient norm")
    net.add_argument("--ema-decay", type=finite_float, help="in [0, 1)")
    net.add_argument("--seed", type=seed_int)
    net.add_argument("--device", help="auto, cpu or cuda[:N]")
    out = train.add_argument_group("sampling, pictures and checkpoints")
    out.add_argument("--sampler", choices=sorted(SAMPLERS))
    out.add_argument("--sample-steps", type=positive_int)
    out.add_argument("--sample-grid", choices=GRIDS, help="time grid for sampling")
    out.add_argument("--snapshot-every", type=positive_int, help="steps between GIF frames")
    out.add_argument("--snapshot-samples", type=positive_int, help="points per GIF frame")
    out.add_argument("--eval-samples", type=positive_int)
    out.add_argument(
        "--checkpoint-every", type=non_negative_int, help="steps between checkpoints (0: none)"
    )

    sample = commands.add_parser(
        "sample", help="draw samples from a trained run (or from the exact oracle of a mixture)"
    )
    add_model_options(sample)
    sample.add_argument("--n", type=positive_int, required=True, help="number of samples")
    add_sampling_options(sample)
    sample.add_argument("--seed", type=seed_int, default=0)
    sample.add_argument("--out", required=True, help="output .npy file, an (n, d) float32 array")

    evaluate = commands.add_parser(
        "evaluate", help="measure fresh samples of a run against fresh data"
    )
    add_model_options(evaluate)
    evaluate.add_argument(
        "--n", type=positive_int, default=None, help="samples (default: the run's)"
    )
    add_sampling_options(evaluate)
    evaluate.add_argument("--seed", type=seed_int, default=1)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")

    nll = commands.add_parser(
        "nll", help="negative log-likelihood of fresh data by the probability-flow ODE"
    )
    add_model_options(nll)
    nll.add_argument("--n", type=positive_int, default=1000, help="data points (default 1000)")
    nll.add_argument("--seed", type=seed_int, default=0, help="seed of the data draw and probes")
    nll.add_argument("--divergence", choices=("exact", "hutchinson"), default="exact",
                     help="exact: one backward pass per dimension; hutchinson: one in all")  # fmt: skip
    nll.add_argument("--method", choices=("ode", "bound"), default="ode",
                     help="ode: probability-flow likelihood; bound: DDPM variational bound")  # fmt: skip
    nll.add_argument("--rtol", type=positive_float, default=1e-5, help="ODE relative tolerance")
    nll.add_argument("--atol", type=positive_float, default=1e-5, help="ODE absolute tolerance")
    nll.add_argument("--json", action="store_true", help="print JSON instead of lines")

    diagnose = commands.add_parser(
        "diagnose", help="where a run is wrong: error per time, NFE curve, memorisation, density"
    )
    diagnose.add_argument("--run", required=True, help="run directory written by `diffusion train`")
    diagnose.add_argument("--out", default=None, help="output directory (default RUN/diagnostics)")
    diagnose.add_argument("--n", type=positive_int, default=4000, help="points per measurement")
    diagnose.add_argument("--seed", type=seed_int, default=0)
    diagnose.add_argument("--quiet", action="store_true", help="no progress bar")

    compare = commands.add_parser(
        "compare", help="several runs side by side: compare.png, compare.gif, compare.json"
    )
    compare.add_argument("--run", action="append", default=[], help="a finished run (repeat)")
    compare.add_argument(
        "--process", nargs="+", default=[], choices=sorted(PROCESSES),
        help="train these processes first (default recipes) into OUT/<process>",
    )  # fmt: skip
    compare.add_argument("--dataset", default=None, help="data for --process (default swissroll)")
    compare.add_argument("--steps", type=positive_int, default=None, help="training steps")
    compare.add_argument("--seed", type=seed_int, default=0)
    compare.add_argument("--n", type=positive_int, default=5000, help="samples per run")
    compare.add_argument("--out", required=True, help="output directory")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def train_overrides(args: argparse.Namespace) -> dict:
    """The config settings given as options (those left out stay None and are not returned)."""
    from diffusion.config import FIELD_KINDS

    return {k: getattr(args, k) for k in FIELD_KINDS if getattr(args, k, None) is not None}


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


def check_process(config) -> None:
    """Build the config's process once, so schedule problems surface before any training."""
    from diffusion.config import ConfigError
    from diffusion.train import build_process

    try:
        build_process(config)
    except ValueError as exc:
        raise ConfigError(f"{config.process}: {exc}") from None


def print_result(metrics: dict, run_dir: Path) -> None:
    print(f"trained in {metrics['train_seconds']:.1f} s; {metrics['n_samples']} samples in "
          f"{metrics['sample_seconds']:.1f} s ({metrics['nfe']} network evaluations)")  # fmt: skip
    if metrics.get("skipped_steps"):
        print(f"warning: {metrics['skipped_steps']} steps were skipped (non-finite loss)")
    print(format_metrics(metrics))
    print(f"outputs written to {run_dir}")


def cmd_train(args: argparse.Namespace) -> int:
    from diffusion.config import TrainConfig, read_config_file
    from diffusion.data import get_dataset
    from diffusion.run import new_run_dir, run_training

    if args.resume is not None:
        if args.out is not None:
            raise UsageError("--resume DIR continues the run in DIR; leave out --out")
        return resume_training(args)
    values = read_config_file(args.config) if args.config else {}
    values.update(train_overrides(args))
    config = TrainConfig.from_dict(values)
    # Check everything that can be checked before any compute or any file is written.
    dataset = get_dataset(config.dataset)
    check_process(config)
    run_dir = Path(args.out) if args.out else new_run_dir()
    check_writable(run_dir, "--out", directory=True)
    if (run_dir / "config.json").exists():
        raise UsageError(
            f"--out {str(run_dir)!r} already holds a run; continue it with --resume "
            f"{run_dir} or choose another directory"
        )
    print(f"training {config.process} on {config.dataset} for {config.steps} steps -> {run_dir}")
    metrics = run_training(config, run_dir, progress=not args.quiet, dataset=dataset)
    print_result(metrics, run_dir)
    return 0


def resume_training(args: argparse.Namespace) -> int:
    """`diffusion train --resume DIR`: continue from the run's latest checkpoint."""
    from diffusion.checkpoint import read_run_config
    from diffusion.config import (
        TrainConfig,
        critical_differences,
        read_config_file,
        resumable_changes,
    )
    from diffusion.data import get_dataset
    from diffusion.resume import latest_checkpoint, load_checkpoint, remove_temporary_files
    from diffusion.run import run_training

    run_dir = Path(args.resume)
    old, dim = read_run_config(run_dir)
    values = old.to_dict()
    if args.config:
        values.update(read_config_file(args.config))
    values.update(train_overrides(args))
    config = TrainConfig.from_dict(values)
    problems = critical_differences(old.to_dict(), config.to_dict())
    if problems:
        raise UsageError(f"cannot resume {run_dir}: {problems[0]}")
    dataset = get_dataset(config.dataset)
    if dataset.dim != dim:
        raise UsageError(f"cannot resume: {config.dataset} now has dimension {dataset.dim}, "
                         f"the run was trained on dimension {dim}")  # fmt: skip
    check_process(config)
    path = latest_checkpoint(run_dir)
    state = load_checkpoint(path) if path is not None else None
    done = state.step if state is not None else 0
    if done > config.steps:
        raise UsageError(f"--steps {config.steps} is below the checkpoint's step {done}")
    if done == config.steps and (run_dir / "metrics.json").is_file():
        print(f"{run_dir} has already finished all {config.steps} steps; nothing to do "
              "(give a larger --steps to train longer)")  # fmt: skip
        return 0
    remove_temporary_files(run_dir)  # leftovers of writes a killed process never finished
    for change in resumable_changes(old.to_dict(), config.to_dict()):
        print(f"changed on resume: {change}")
    where = f"step {done} ({path})" if state is not None else "step 0 (no checkpoint yet)"
    print(f"resuming {run_dir} from {where}; training to step {config.steps}")
    metrics = run_training(config, run_dir, progress=not args.quiet, dataset=dataset, resume=state)
    print_result(metrics, run_dir)
    return 0


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
    """--steps, or the run's own sampling steps; for ddpm at most its diffusion steps."""
    steps = requested or trained.config.sample_steps
    if trained.config.process == "ddpm" and steps > trained.config.diffusion_steps:
        raise UsageError(f"--steps must be at most {trained.config.diffusion_steps} for this run")
    return steps


def check_grid(trained, steps: int, grid: str) -> None:
    """Build the grid once, so a grid the process cannot take fails before sampling."""
    from diffusion.grids import make_grid

    try:
        make_grid(trained.process, steps, grid)
    except ValueError as exc:
        raise UsageError(f"--grid {grid}: {exc}") from None


def load_source(args: argparse.Namespace):
    """The model the options name: a run's network, or an exact oracle (`ExactModel`)."""
    from diffusion.checkpoint import load_model
    from diffusion.config import TrainConfig
    from diffusion.data import get_dataset
    from diffusion.oracle import exact_model

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
        check_process(config)
    dataset = get_dataset(config.dataset)
    if dataset.mixture is None:
        raise UsageError(
            f"--oracle needs a Gaussian-mixture data set (a .json mixture, gaussians or "
            f"eight_gaussians); {config.dataset} has no closed form"
        )
    if config.process == "poisson":
        raise UsageError("--oracle needs Gaussian marginals; the poisson process has none")
    return exact_model(dataset.mixture, config, normalizer)


def cmd_sample(args: argparse.Namespace) -> int:
    from diffusion.utils import atomic_write, default_device, make_generator

    out = Path(args.out)
    if out.suffix != ".npy":
        raise UsageError(f"--out must name a .npy file, got {args.out!r}")
    check_writable(out, "--out", directory=False)
    trained = load_source(args)
    sampler = args.sampler or trained.config.sampler
    options = sampler_options(args, sampler)
    steps = sampling_steps(args.steps, trained)
    grid = args.grid or trained.config.sample_grid
    check_grid(trained, steps, grid)
    needed = args.n * trained.dim * 4 + 4096
    free = shutil.disk_usage(nearest_existing(out.parent)).free
    if needed > free:
        raise UsageError(f"--n {args.n} needs {needed / 2**30:.1f} GiB for {args.out!r}, but "
                         f"only {free / 2**30:.1f} GiB are free there")  # fmt: skip
    device = default_device()
    generator = make_generator(args.seed, device)
    nfe = 0

    def write(tmp: Path) -> None:
        # Samples go straight into a memory-mapped .npy, chunk by chunk: memory stays bounded
        # for any n, and one generator runs through all chunks.
        nonlocal nfe
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(args.n, trained.dim))  # fmt: skip
        starts = range(0, args.n, SAMPLE_CHUNK)
        for start in tqdm(starts, desc="sampling", unit="chunk", disable=len(starts) == 1):
            size = min(SAMPLE_CHUNK, args.n - start)
            result = trained.sample(
                size, sampler=sampler, steps=steps, grid=grid, generator=generator,
                device=device, **options,
            )  # fmt: skip
            array[start : start + size] = result.x.cpu().numpy()
            nfe = result.nfe
        array.flush()
        del array

    atomic_write(out, write)
    print(f"wrote {args.n} samples of dimension {trained.dim} to {out} ({nfe} NFE per sample)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from diffusion.data import get_dataset
    from diffusion.run import evaluate
    from diffusion.utils import default_device

    if args.n is not None and args.n > MAX_EVALUATE:
        raise UsageError(f"--n must be at most {MAX_EVALUATE:_} for evaluate (samples are held "
                         f"in memory), got {args.n:_}")  # fmt: skip
    trained = load_source(args)
    sampler = args.sampler or trained.config.sampler
    options = sampler_options(args, sampler)
    steps = sampling_steps(args.steps, trained)
    grid = args.grid or trained.config.sample_grid
    check_grid(trained, steps, grid)
    dataset = get_dataset(trained.config.dataset)
    result = evaluate(
        trained, dataset, n=args.n or trained.config.eval_samples, seed=args.seed,
        sampler=sampler, steps=steps, grid=grid, device=default_device(), **options,
    )  # fmt: skip
    metrics = result.metrics.to_dict()
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{result.samples.shape[0]} samples, {result.nfe} NFE, {result.seconds:.1f} s")
        print(format_metrics(metrics))
    return 0


def cmd_nll(args: argparse.Namespace) -> int:
    from diffusion.data import get_dataset
    from diffusion.likelihood import ddpm_bound, exact_nll, pf_ode_nll
    from diffusion.utils import default_device, make_generator

    if args.n > MAX_NLL:
        raise UsageError(f"--n must be at most {MAX_NLL:_} for nll, got {args.n:_}")
    trained = load_source(args)
    if not trained.process.gaussian:
        raise UsageError(f"nll needs a Gaussian path; {trained.config.process} is not one")
    dataset = get_dataset(trained.config.dataset)
    device = default_device()
    x = dataset.sample(args.n, make_generator(args.seed))  # (n, d) fresh data
    generator = make_generator(args.seed + 1, device)
    if args.method == "bound":
        if trained.config.process != "ddpm":
            raise UsageError(f"--method bound is the DDPM variational bound; this model is "
                             f"{trained.config.process}")  # fmt: skip
        result = ddpm_bound(trained, x, generator=generator, device=device)
    else:
        result = pf_ode_nll(trained, x, divergence=args.divergence, rtol=args.rtol,
                            atol=args.atol, generator=generator, device=device)  # fmt: skip
    report = {
        "nll": result.mean, "stderr": result.stderr, "bits_per_dim": result.bits_per_dim,
        "n": args.n, "dim": result.dim, "divergence": result.divergence,
        "rtol": result.rtol, "atol": result.atol, "evaluations": result.evaluations,
    }  # fmt: skip
    if dataset.mixture is not None:
        exact = exact_nll(dataset.mixture, x)
        difference = result.nll - exact
        report["exact_nll"] = float(exact.mean())
        report["exact_stderr"] = float(exact.std() / math.sqrt(args.n)) if args.n > 1 else 0.0
        report["difference"] = float(difference.mean())
        report["difference_stderr"] = (
            float(difference.std() / math.sqrt(args.n)) if args.n > 1 else 0.0
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"nll: {result.mean:.4f} ± {result.stderr:.4f} nats per point")
    print(f"bits/dim: {result.bits_per_dim:.4f}")
    if "exact_nll" in report:
        print(f"exact: {report['exact_nll']:.4f} ± {report['exact_stderr']:.4f} nats per point "
              f"(model - exact: {report['difference']:+.5f} ± {report['difference_stderr']:.5f})")  # fmt: skip
    how = (f"{result.divergence}" if args.method == "bound" else
           f"{result.divergence} divergence, rtol {result.rtol:g}, atol {result.atol:g}")  # fmt: skip
    print(f"({args.n} points of {trained.config.dataset}, {how}, "
          f"{result.evaluations} evaluations)")  # fmt: skip
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from diffusion.checkpoint import load_model
    from diffusion.diagnose import diagnose

    if args.n > MAX_DIAGNOSE:
        raise UsageError(f"--n must be at most {MAX_DIAGNOSE:_} for diagnose, got {args.n:_}")
    trained = load_model(args.run)
    if not trained.process.gaussian:
        raise UsageError(f"diagnose needs a Gaussian path; {trained.config.process} is not one")
    out = Path(args.out) if args.out else Path(args.run) / "diagnostics"
    check_writable(out, "--out", directory=True)
    report = diagnose(trained, out, n=args.n, seed=args.seed, progress=not args.quiet)
    errors, prior = report["error_by_time"], report["prior_mismatch"]
    print(f"reference: {report['reference']}")
    print(f"largest excess loss at t = {errors['worst_t']:.2f} (log SNR "
          f"{errors['worst_log_snr']:.1f}): {errors['worst_excess_loss']:.4f}")  # fmt: skip
    curve = report["nfe_curve"]
    print("SW ratio by NFE (model / exact): " + ", ".join(
        f"{nfe}: {m:.2f}/{r:.2f}" for nfe, m, r in
        zip(curve["nfe"], curve["model"], curve["reference"], strict=True)))  # fmt: skip
    print(f"KL(q_1 || prior): {prior['kl']:.2e} ± {prior['stderr']:.1e} nats "
          f"(upper bound {prior['upper_bound']:.2e})")  # fmt: skip
    print(f"memorisation: median nearest-training-point distance, samples / fresh data = "
          f"{report['memorisation']['median_ratio']:.2f}")  # fmt: skip
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from diffusion.compare import compare_runs
    from diffusion.config import TrainConfig
    from diffusion.data import get_dataset

    if len(args.run) + len(args.process) < 2:
        raise UsageError("compare needs at least two runs: give --run DIR and/or --process P ...")
    if len(set(args.process)) != len(args.process):
        raise UsageError("--process names a process twice")
    if args.n > MAX_EVALUATE:
        raise UsageError(f"--n must be at most {MAX_EVALUATE:_}")
    out = Path(args.out)
    check_writable(out, "--out", directory=True)
    configs = []
    for process in args.process:
        values = {"process": process, "seed": args.seed}
        if args.dataset:
            values["dataset"] = args.dataset
        if args.steps:
            values["steps"] = args.steps
        config = TrainConfig.from_dict(values)
        check_process(config)
        if (out / process / "config.json").exists():
            raise UsageError(f"{out / process} already holds a run; pass it with --run instead")
        configs.append(config)
    if configs:
        get_dataset(configs[0].dataset)
    rows = compare_runs([Path(r) for r in args.run], out, n=args.n, seed=args.seed + 1,
                        train=configs, progress=not args.quiet)  # fmt: skip
    print(f"{'process':<10}{'sampler':<16}{'NFE':>6}{'SW ratio':>10}")
    for row in rows:
        print(f"{row['process']:<10}{row['sampler']:<16}{row['nfe']:>6}{row['sw_ratio']:>10.2f}")
    print(f"wrote {out / 'compare.png'}, {out / 'compare.gif'} and {out / 'compare.json'}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "nll": cmd_nll,
    "diagnose": cmd_diagnose,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `diffusion` command; returns the exit code."""
    from diffusion.checkpoint import CheckpointError
    from diffusion.config import ConfigError
    from diffusion.data import DataError
    from diffusion.train import NonFiniteLossError

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except NonFiniteLossError as exc:  # not bad input: training itself failed
        print(f"diffusion: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILURE
    except (UsageError, ConfigError, DataError, CheckpointError, ValueError) as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"diffusion: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
