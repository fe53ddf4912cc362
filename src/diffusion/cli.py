"""The `diffusion` command: train, sample and evaluate models on toy and user data.

Bad input never shows a traceback: it prints one line naming the problem and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

EXIT_USAGE = 2
SAMPLE_CHUNK = 65_536  # points sampled at once by `diffusion sample`


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
positive_float = _number(float, "a positive finite number", lambda v: v > 0)
non_negative_float = _number(float, "a finite number >= 0", lambda v: v >= 0)


def build_parser() -> Parser:
    from diffusion.parametrize import TARGETS
    from diffusion.processes import PROCESSES
    from diffusion.processes.schedules import BETA_SCHEDULES
    from diffusion.samplers import SAMPLERS

    parser = Parser(prog="diffusion", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--dataset", default="swissroll", help="toy set name or a .npy/.csv file")
    train.add_argument("--process", default="ddpm", choices=sorted(PROCESSES))
    train.add_argument("--steps", type=positive_int, default=None, help="training steps")
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    train.add_argument("--batch-size", type=positive_int, default=None)
    train.add_argument("--lr", type=positive_float, default=None)
    train.add_argument("--width", type=positive_int, default=None)
    train.add_argument("--depth", type=positive_int, default=None)
    train.add_argument("--diffusion-steps", type=positive_int, default=None, help="DDPM steps T")
    train.add_argument("--schedule", choices=sorted(BETA_SCHEDULES), default=None)
    train.add_argument("--beta-start", type=positive_float, default=None)
    train.add_argument("--beta-end", type=positive_float, default=None)
    train.add_argument("--zero-terminal-snr", action="store_true", default=None)
    train.add_argument("--allow-terminal-signal", action="store_true", default=None)
    train.add_argument("--prediction", choices=TARGETS, default=None)
    train.add_argument("--sampler", choices=sorted(SAMPLERS), default=None)
    train.add_argument("--sample-steps", type=positive_int, default=None)
    train.add_argument("--snapshot-every", type=positive_int, default=None)
    train.add_argument("--eval-samples", type=positive_int, default=None)
    train.add_argument("--device", default=None, help="auto, cpu or cuda")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = commands.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("--run", required=True, help="run directory written by `diffusion train`")
    sample.add_argument("--n", type=positive_int, required=True, help="number of samples")
    sample.add_argument("--sampler", choices=sorted(SAMPLERS), default=None)
    sample.add_argument("--steps", type=positive_int, default=None, help="sampling steps")
    sample.add_argument(
        "--eta", type=non_negative_float, default=None, help="DDIM noise (0: deterministic)"
    )
    sample.add_argument(
        "--variance", choices=("posterior", "beta"), default=None, help="ancestral variance"
    )
    sample.add_argument("--seed", type=non_negative_int, default=0)
    sample.add_argument("--out", required=True, help="output .npy file, an (n, d) float32 array")

    evaluate = commands.add_parser(
        "evaluate", help="measure fresh samples of a run against fresh data"
    )
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument(
        "--n", type=positive_int, default=None, help="samples (default: the run's)"
    )
    evaluate.add_argument("--sampler", choices=sorted(SAMPLERS), default=None)
    evaluate.add_argument("--steps", type=positive_int, default=None)
    evaluate.add_argument("--seed", type=non_negative_int, default=1)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


TRAIN_FIELDS = (
    "dataset", "process", "steps", "seed", "batch_size", "lr", "width", "depth", "diffusion_steps",
    "schedule", "beta_start", "beta_end", "zero_terminal_snr", "allow_terminal_signal", "prediction",
    "sampler", "sample_steps", "snapshot_every", "eval_samples", "device",
)  # fmt: skip


def format_metrics(metrics: dict) -> str:
    """A small table: metric, value, data-vs-data floor and ratio."""
    lines = [f"{'metric':<20}{'value':>12}{'floor':>12}{'ratio':>8}"]
    for name in ("sliced_wasserstein", "mmd", "energy"):
        m = metrics[name]
        lines.append(f"{name:<20}{m['value']:>12.5f}{m['floor']:>12.5f}{m['ratio']:>8.2f}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from diffusion.config import TrainConfig
    from diffusion.data import get_dataset
    from diffusion.run import new_run_dir, run_training
    from diffusion.train import build_process

    overrides = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k) is not None}
    config = TrainConfig.from_dict(overrides)
    # Check everything that can be checked before any compute or any file is written.
    dataset = get_dataset(config.dataset)
    build_process(config)
    run_dir = Path(args.out) if args.out else new_run_dir()
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {str(run_dir)!r} exists and is not a directory")
    if (run_dir / "config.json").exists():
        raise UsageError(f"--out {str(run_dir)!r} already holds a run; choose another directory")
    print(f"training {config.process} on {config.dataset} for {config.steps} steps -> {run_dir}")
    metrics = run_training(config, run_dir, progress=not args.quiet, dataset=dataset)
    print(f"trained in {metrics['train_seconds']:.1f} s; {metrics['n_samples']} samples in "
          f"{metrics['sample_seconds']:.1f} s ({metrics['nfe']} network evaluations)")  # fmt: skip
    print(format_metrics(metrics))
    print(f"outputs written to {run_dir}")
    return 0


def sampler_options(args: argparse.Namespace) -> dict:
    """Sampler options given on the command line, checked against the sampler that uses them."""
    options = {}
    if args.eta is not None:
        options["eta"] = args.eta
    if args.variance is not None:
        options["variance"] = args.variance
    return options


def sampling_steps(requested: int | None, trained) -> int:
    """--steps, or the run's own sampling steps; at most the run's number of diffusion steps."""
    steps = requested or trained.config.sample_steps
    if steps > trained.config.diffusion_steps:
        raise UsageError(f"--steps must be at most {trained.config.diffusion_steps} for this run")
    return steps


def cmd_sample(args: argparse.Namespace) -> int:
    from diffusion.checkpoint import load_model
    from diffusion.utils import atomic_write, default_device, make_generator

    out = Path(args.out)
    if out.suffix != ".npy":
        raise UsageError(f"--out must name a .npy file, got {args.out!r}")
    trained = load_model(args.run)
    sampler = args.sampler or trained.config.sampler
    options = sampler_options(args)
    if "eta" in options and sampler != "ddim":
        raise UsageError("--eta applies to the ddim sampler only")
    if "variance" in options and sampler != "ancestral":
        raise UsageError("--variance applies to the ancestral sampler only")
    steps = sampling_steps(args.steps, trained)
    device = default_device()
    generator = make_generator(args.seed, device)
    array = np.empty((args.n, trained.dim), dtype=np.float32)
    # Chunks keep memory bounded for millions of points; one generator runs through them all.
    starts = range(0, args.n, SAMPLE_CHUNK)
    for start in tqdm(starts, desc="sampling", unit="chunk", disable=len(starts) == 1):
        size = min(SAMPLE_CHUNK, args.n - start)
        result = trained.sample(
            size, sampler=sampler, steps=steps, generator=generator, device=device, **options
        )
        array[start : start + size] = result.x.cpu().numpy()
    atomic_write(out, lambda p: np.save(p, array))
    print(
        f"wrote {args.n} samples of dimension {trained.dim} to {out} ({result.nfe} NFE per sample)"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from diffusion.checkpoint import load_model
    from diffusion.data import get_dataset
    from diffusion.run import evaluate
    from diffusion.utils import default_device

    trained = load_model(args.run)
    steps = sampling_steps(args.steps, trained)
    dataset = get_dataset(trained.config.dataset)
    result = evaluate(
        trained, dataset, n=args.n or trained.config.eval_samples, seed=args.seed,
        sampler=args.sampler, steps=steps, device=default_device(),
    )  # fmt: skip
    metrics = result.metrics.to_dict()
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{result.samples.shape[0]} samples, {result.nfe} NFE, {result.seconds:.1f} s")
        print(format_metrics(metrics))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `diffusion` command; returns the exit code."""
    from diffusion.checkpoint import CheckpointError
    from diffusion.config import ConfigError
    from diffusion.data import DataError

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError, DataError, CheckpointError, ValueError) as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"diffusion: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
