"""What the command-line tests share: running `diffusion` in-process, and making sure a
refused input never reaches training, sampling or evaluation."""

from __future__ import annotations

import pytest

import diffusion.io.runs
import diffusion.training.loop
import diffusion.workflows.run
from diffusion.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`diffusion ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _forbid(what: str):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"{what} was reached: the input was not refused before compute")

    return forbidden


def forbid_compute(monkeypatch: pytest.MonkeyPatch, *, sampling: bool = True) -> None:
    """Training and evaluation (and, with `sampling`, sampling) fail loudly if reached."""
    monkeypatch.setattr(diffusion.training.loop.Trainer, "__init__", _forbid("Trainer.__init__"))
    monkeypatch.setattr(diffusion.workflows.run, "run_training", _forbid("run_training"))
    monkeypatch.setattr(diffusion.workflows.run, "evaluate", _forbid("evaluate"))
    if sampling:
        monkeypatch.setattr(diffusion.io.runs.TrainedModel, "sample", _forbid("sampling"))
