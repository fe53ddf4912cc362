"""`diffusion train`, fresh or resumed."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

from diffusion.cli.common import (
    UsageError,
    check_writable,
    format_metrics,
)
from diffusion.cli.options import config_overrides
from diffusion.errors import CheckpointError
from diffusion.io.lock import run_lock

#: The files `diffusion.workflows.run` writes into a run directory.
RUN_FILES = ("config.json", "config.toml", "model.safetensors", "metrics.json", "training.gif",
             "reverse.gif", "samples.png", "loss.png")  # fmt: skip


def print_result(metrics: dict, run_dir: Path) -> None:
    print(f"trained in {metrics['train_seconds']:.1f} s; {metrics['n_samples']} samples in "
          f"{metrics['sample_seconds']:.1f} s ({metrics['nfe']} network evaluations)")  # fmt: skip
    if metrics.get("skipped_steps"):
        print(f"warning: {metrics['skipped_steps']} steps were skipped (non-finite loss)")
    print(format_metrics(metrics))
    print(f"outputs written to {run_dir}; open {run_dir / 'report.html'} in a browser")


def check_run_folder(run_dir: Path) -> None:
    """Refuse a run directory where training would end in an error after all its compute: a
    folder in the place of an output file, or a file in the place of checkpoints/."""
    from diffusion.io.checkpoints import check_checkpoint_folder

    for name in RUN_FILES:
        if (run_dir / name).is_dir():
            raise UsageError(f"{run_dir / name} is a directory, where the run writes a file: "
                             "move it away")  # fmt: skip
    check_checkpoint_folder(run_dir)


def cmd_train(args: argparse.Namespace) -> int:
    from diffusion.data import get_dataset
    from diffusion.training.config import TrainConfig
    from diffusion.training.saved_config import read_config_file
    from diffusion.workflows.run import new_run_dir

    if args.nproc is not None:
        return launch(args)
    if args.resume is not None:
        if args.out is not None:
            raise UsageError("--resume DIR continues the run in DIR; leave out --out")
        return resume_training(args)
    values = read_config_file(args.config) if args.config else {}
    values.update(config_overrides(args))
    config = TrainConfig.from_dict(values)
    # Check everything that can be checked before any compute or any file is written.
    dataset = get_dataset(config.dataset)
    network = describe_network(config, dataset)
    from diffusion.training.distributed import World

    World.check_env(config.batch_size)
    check_log(config)
    run_dir = Path(args.out) if args.out else new_run_dir()
    check_writable(run_dir, "--out", directory=True)
    if (run_dir / "config.json").exists():
        raise UsageError(
            f"--out {str(run_dir)!r} already holds a run; continue it with --resume "
            f"{run_dir} or choose another directory"
        )
    check_run_folder(run_dir)
    say(f"training {config.process} on {config.dataset} for {config.train_steps} steps with "
        f"{network} -> {run_dir}")  # fmt: skip
    with run_lock(run_dir) if is_first_process() else nullcontext():
        return train_and_report(config, run_dir, args, dataset)


def check_log(config) -> None:
    """ConfigError before anything is written when --log tensorboard cannot be written."""
    if config.log == "tensorboard":
        from diffusion.io.tensorboard_log import check_tensorboard

        check_tensorboard()


def is_first_process() -> bool:
    """Whether this is the process that writes (rank 0 of a torchrun launch, or the only one)."""
    return os.environ.get("RANK", "0") == "0"


def say(message: str) -> None:
    """Print from the first process only (the others of a launch would repeat it)."""
    if is_first_process():
        print(message)


def train_and_report(config, run_dir: Path, args: argparse.Namespace, dataset, state=None) -> int:
    """Train (from `state` if given), print the result; on SIGTERM/SIGINT say how to resume
    and exit 128 + the signal's number."""
    from diffusion.io.checkpoints import latest_checkpoint
    from diffusion.training.loop import Stopped
    from diffusion.workflows.run import run_training

    try:
        metrics = run_training(config, run_dir, progress=not args.quiet, dataset=dataset,
                               resume=state, backend=args.backend)  # fmt: skip
    except Stopped as stop:
        number = stop.signal_number or signal.SIGTERM
        last = latest_checkpoint(run_dir)
        where = f"the checkpoint is {last}" if last else "no checkpoint could be written"
        if is_first_process():
            print(f"diffusion: stopped by {signal.Signals(number).name} at step {stop.step}; "
                  f"{where}; continue with: diffusion train --resume {run_dir}",
                  file=sys.stderr)  # fmt: skip
        return 128 + number
    if metrics is not None:
        print_result(metrics, run_dir)
    return 0


def launch(args: argparse.Namespace) -> int:
    """`diffusion train --nproc N ...`: the same command on N processes of this machine, under
    torchrun (a free port on localhost for the rendezvous)."""
    from diffusion.training.config import TrainConfig
    from diffusion.training.distributed import World
    from diffusion.training.saved_config import read_config_file

    check_nproc(args.nproc)
    if args.resume is None:  # a batch that does not split is refused before any process starts
        values = read_config_file(args.config) if args.config else {}
        values.update(config_overrides(args))
        World(0, args.nproc).check_batch(TrainConfig.from_dict(values).batch_size)
    return torchrun_again(args.argv, args.nproc)


def check_nproc(n: int) -> None:
    """UsageError for an --nproc that cannot start: below 1, or under torchrun already."""
    if n < 1:
        raise UsageError(f"--nproc must be 1 or more, got {n}")
    if "RANK" in os.environ:
        raise UsageError("--nproc starts torchrun; under torchrun already, leave it out")


def torchrun_again(argv: list[str], n: int) -> int:
    """Run the command of `argv` (without --nproc) on n local processes under torchrun, and
    return its exit code."""
    import subprocess

    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    # "--": torchrun's own parser would take an option of the command that abbreviates one
    # of its own (--run for --run-path) as its own
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={n}", "-m", "diffusion", "--", *rest]  # fmt: skip
    return subprocess.call(command)


def describe_network(config, dataset) -> str:
    """ "a unet of 176_849 parameters": the network the run will train, built once now so
    that a model that cannot take the data (a U-Net on points, sides that do not halve) is
    refused before anything is written."""
    from diffusion.models import parameter_count
    from diffusion.training.build import build_model, resolve_classes, wants_labels

    trial = dataclasses.replace(config)  # classes resolved on a copy: the run resolves its own
    resolve_classes(trial, dataset, wants_labels(config, dataset))
    try:
        model = build_model(trial, dataset.shape, seed=0)
    except ValueError as exc:
        raise UsageError(f"--model {config.model}: {exc}") from None
    text = f"a {config.model} of {parameter_count(model):_} parameters"
    if trial.classes:
        text += (f", conditional on {trial.classes} classes (label dropout "
                 f"{config.label_dropout:g})")  # fmt: skip
    return text


def resume_training(args: argparse.Namespace) -> int:
    """`diffusion train --resume DIR`: continue from the run's latest checkpoint."""
    from diffusion.data import get_dataset
    from diffusion.io.checkpoints import newest_loadable_checkpoint
    from diffusion.io.runs import read_run_config
    from diffusion.training.config import TrainConfig
    from diffusion.training.saved_config import (
        critical_differences,
        read_config_file,
    )

    run_dir = Path(args.resume)
    old, dim = read_run_config(run_dir, option="--resume")
    check_writable(run_dir, "--resume", directory=True)
    check_run_folder(run_dir)
    values = old.to_dict()
    if args.config:
        values.update(read_config_file(args.config))
    values.update(config_overrides(args))
    config = TrainConfig.from_dict(values)
    problems = critical_differences(old.to_dict(), config.to_dict())
    if problems:
        raise UsageError(f"cannot resume {run_dir}: {problems[0]}")
    from diffusion.training.distributed import World

    World.check_env(config.batch_size)
    check_log(config)
    dataset = get_dataset(config.dataset)
    if dataset.dim != dim:
        raise UsageError(f"cannot resume: {config.dataset} now has dimension {dataset.dim}, "
                         f"the run was trained on dimension {dim}")  # fmt: skip
    found = newest_loadable_checkpoint(run_dir)
    path, state = found.path, found.state
    if found.refused and state is None:  # not one loads: refuse rather than start over
        raise CheckpointError(f"cannot resume: {found.refused[0][1]} (move it away to train "
                              f"{run_dir} from step 0)")  # fmt: skip
    done = state.step if state is not None else 0
    if done > config.train_steps:
        raise UsageError(
            f"--train-steps {config.train_steps} is below the checkpoint's step {done}"
        )
    if done == config.train_steps and (run_dir / "metrics.json").is_file():
        say(f"{run_dir} has already finished all {config.train_steps} steps; nothing to do "
            "(give a larger --train-steps to train longer)")  # fmt: skip
        return 0
    for _, why in found.refused if is_first_process() else ():  # a refusal above: one line
        print(f"diffusion: warning: {why}; skipping it", file=sys.stderr)
    with run_lock(run_dir) if is_first_process() else nullcontext():  # checked: now train
        return _resume(run_dir, config, old, args, dataset, state, path, found.refused)


def _resume(run_dir, config, old, args, dataset, state, path, refused) -> int:
    """The part of `resume_training` that writes, under the run's lock."""
    from diffusion.io.checkpoints import latest_checkpoint, remove_temporary_files
    from diffusion.training.saved_config import resumable_changes

    if is_first_process() and latest_checkpoint(run_dir) != path and not refused:
        raise CheckpointError(f"{run_dir} changed while it was being checked (another trainer "
                              "finished in it); run the command again")  # fmt: skip
    done = state.step if state is not None else 0
    if is_first_process():  # leftovers of writes a killed process never finished
        remove_temporary_files(run_dir)
    for change in resumable_changes(old.to_dict(), config.to_dict()):
        say(f"changed on resume: {change}")
    where = f"step {done} ({path})" if state is not None else "step 0 (no checkpoint yet)"
    if refused:
        where += ", the newest checkpoint that loads"
    say(f"resuming {run_dir} from {where}; training to step {config.train_steps}")
    return train_and_report(config, run_dir, args, dataset, state)
