"""`diffusion train`, fresh or resumed."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion.cli.common import (
    UsageError,
    check_process,
    check_writable,
    format_metrics,
)


def train_overrides(args: argparse.Namespace) -> dict:
    """The config settings given as options (those left out stay None and are not returned)."""
    from diffusion.config import FIELD_KINDS

    return {k: getattr(args, k) for k in FIELD_KINDS if getattr(args, k, None) is not None}


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
