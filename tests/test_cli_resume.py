"""`diffusion train --resume`, `--config` and the SIGKILL stress script, through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from diffusion.cli import main
from diffusion.io.checkpoints import latest_checkpoint, load_checkpoint
from diffusion.io.runs import read_run_config
from diffusion.io.tensorfile import read_tensor_file
from diffusion.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "--train-steps", "40", "--width", "16", "--depth", "1", "--diffusion-steps", "50",
    "--sample-steps", "10", "--n-train", "500", "--batch-size", "64", "--eval-samples", "300",
    "--snapshot-samples", "100", "--snapshot-every", "20", "--checkpoint-every", "20", "--quiet",
]  # fmt: skip


def test_resume_with_more_steps_says_what_changed(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--train-steps", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "changed on resume: train_steps: 40 -> 60" in out
    assert "resuming" in out and "from step 40" in out
    assert load_checkpoint(latest_checkpoint(run_dir)).step == 60
    assert read_run_config(run_dir)[0].train_steps == 60
    assert json.loads((run_dir / "metrics.json").read_text())["skipped_steps"] == 0
    # A finished run has nothing left to do.
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(run_dir)]) == 0
    reference, _ = read_tensor_file(run_dir / "model.safetensors")
    for name in ("model.safetensors", "metrics.json"):
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "checkpoints")
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert "no checkpoint yet" in capsys.readouterr().out
    again, _ = read_tensor_file(run_dir / "model.safetensors")
    assert all(torch.equal(reference[k], again[k]) for k in reference)


def test_config_file_sets_options_and_options_win(tmp_path):
    (tmp_path / "run.toml").write_text(
        'ema-decay = 0.9\nlr = 0.001\ntrain_steps = 1000\ndataset = "moons"\n'
    )
    run_dir = tmp_path / "run"
    assert (
        main(["train", "--config", str(tmp_path / "run.toml"), *FAST, "--out", str(run_dir)]) == 0
    )
    config, dim = read_run_config(run_dir)
    assert (config.ema_decay, config.lr, config.dataset, dim) == (0.9, 0.001, "moons", 2)
    assert config.train_steps == 40  # the option given on the command line wins
    # The saved config.toml reproduces the resolved config exactly.
    saved = tomllib.loads((run_dir / "config.toml").read_text())
    assert TrainConfig.from_dict(saved) == config


def _kill_and_resume(tmp_path, kills: int) -> None:
    """A real SIGKILL of a child process at random moments, `kills` times, then compared."""
    out = tmp_path / "kills.json"
    script = ROOT / "benchmarks" / "kill_resume.py"
    command = [sys.executable, str(script), "--kills", str(kills), "--quick", "--seed", "3",
               "--json", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())
    assert summary["kills"] == kills and summary["unreadable_files"] == 0
    assert summary["identical_chains"] == summary["chains"] >= 1
    # every chain's log.csv holds each step once, with the reference's values
    assert summary["identical_logs"] == summary["chains"]


def test_sigkill_stress_script_resumes_bit_identically(tmp_path):
    _kill_and_resume(tmp_path, kills=2)


@pytest.mark.slow
def test_sigkill_stress_script_resumes_bit_identically_many_times(tmp_path):
    _kill_and_resume(tmp_path, kills=6)


@pytest.mark.parametrize("field", ["width", "schedule"])
def test_resume_refuses_a_changed_critical_option(field, tiny_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run[0], run_dir)
    value = {"width": "32", "schedule": "linear"}[field]
    assert main(["train", "--resume", str(run_dir), f"--{field}", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{field} differs" in err
