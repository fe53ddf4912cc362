"""The `diffusion` command: good input works, bad input exits 2 with one line and no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import run_cli

from diffusion.cli import main

#: a linear schedule too short to reach noise: sqrt(alpha_bar_T) = 0.88 is left at t = 1.
TERMINAL_SIGNAL = ["--process", "ddpm", "--schedule", "linear", "--diffusion-steps", "100",
                   "--beta-start", "1e-5", "--beta-end", "5e-3"]  # fmt: skip

BAD_TRAIN = [
    ["--dataset", "nosuchset"],
    ["--dataset", "missing.npy"],
    ["--dataset", "missing.csv"],
    ["--process", "nosuchprocess"],
    ["--train-steps", "0"],
    ["--train-steps", "-5"],
    ["--train-steps", "ten"],
    ["--seed", "-1"],
    ["--batch-size", "0"],
    ["--lr", "0"],
    ["--lr", "nan"],
    ["--lr", "inf"],
    ["--width", "0"],
    ["--depth", "-2"],
    ["--diffusion-steps", "0"],
    ["--schedule", "nosuchschedule"],
    ["--beta-end", "1.5"],
    ["--beta-start", "0"],
    ["--prediction", "noise"],
    ["--sampler", "nosuchsampler"],
    ["--sample-steps", "0"],
    ["--process", "ddpm", "--sample-steps", "2000"],
    ["--snapshot-every", "0"],
    ["--eval-samples", "0"],
    ["--device", "tpu"],
    TERMINAL_SIGNAL,
    ["--zero-terminal-snr", "--prediction", "eps"],
    ["--train-times", "cubic"],
    ["--process", "edm", "--train-times", "uniform"],
    ["--coupling", "exact"],
    ["--process", "vp", "--coupling", "ot"],
    ["--coupling", "ot", "--sampler", "ancestral"],
    ["--no-such-option"],
]


@pytest.mark.parametrize("args", BAD_TRAIN, ids=lambda a: " ".join(a))
def test_bad_train_input_exits_2_with_one_line(capsys, tmp_path, args):
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", str(out_dir), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffusion: error:"), err
    assert "Traceback" not in err
    assert not out_dir.exists(), "nothing may be written before the input is checked"


def test_terminal_signal_error_says_how_to_fix(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), *TERMINAL_SIGNAL)
    assert code == 2
    assert "0.88" in err and "cosine" in err and "allow" in err


def test_bad_data_files_exit_2(capsys, tmp_path):
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((4, 2, 2)))
    for path in (nan, empty, cube):
        code, _, err = run_cli(
            capsys, "train", "--dataset", str(path), "--out", str(tmp_path / "r")
        )
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert path.name in err


def test_missing_run_directory_exits_2(capsys, tmp_path):
    for command in (["sample", "--n", "10", "--out", str(tmp_path / "x.npy")], ["evaluate"]):
        code, _, err = run_cli(capsys, *command, "--run", str(tmp_path / "nope"))
        assert code == 2 and "does not exist" in err
    assert not (tmp_path / "x.npy").exists()


def test_bad_sample_input_exits_2(capsys, tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "x.npy"
    cases = [
        ["--n", "0", "--out", str(out)],
        ["--n", "-3", "--out", str(out)],
        ["--n", "10", "--out", str(tmp_path / "x.txt")],
        ["--n", "10", "--out", str(out), "--sample-steps", "100000"],
        ["--n", "10", "--out", str(out), "--sampler", "nosuch"],
        ["--n", "10", "--out", str(out), "--sampler", "ancestral", "--eta", "0.5"],
        ["--n", "10", "--out", str(out), "--sampler", "ddim", "--variance", "beta"],
        ["--n", "10", "--out", str(out), "--sampler", "ddim", "--eta", "-1"],
        ["--out", str(out)],
    ]
    for args in cases:
        code, _, err = run_cli(capsys, "sample", "--run", str(run_dir), *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)
    assert not out.exists()


def test_not_a_run_directory_exits_2(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    code, _, err = run_cli(capsys, "evaluate", "--run", str(tmp_path))
    assert code == 2 and "config.json" in err


def test_sample_writes_float32_array(capsys, tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "x.npy"
    code, stdout, _ = run_cli(
        capsys, "sample", "--run", str(run_dir), "--n", "123", "--sampler", "ddim", "--sample-steps", "10",
        "--seed", "3", "--out", str(out),
    )  # fmt: skip
    assert code == 0 and "10 NFE" in stdout
    x = np.load(out)
    assert x.shape == (123, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    # Deterministic DDIM with the same seed gives the same samples.
    out2 = tmp_path / "y.npy"
    main(["sample", "--run", str(run_dir), "--n", "123", "--sampler", "ddim", "--sample-steps", "10",
          "--seed", "3", "--out", str(out2)])  # fmt: skip
    np.testing.assert_array_equal(np.load(out2), x)


def test_evaluate_prints_metrics_with_floors(capsys, tiny_run):
    run_dir, _ = tiny_run
    code, stdout, _ = run_cli(capsys, "evaluate", "--run", str(run_dir), "--n", "1000")
    assert code == 0
    for name in ("sliced_wasserstein", "mmd", "energy"):
        assert name in stdout
    assert "floor" in stdout and "ratio" in stdout


def test_train_refuses_to_overwrite_a_run(capsys, tiny_run):
    run_dir, _ = tiny_run
    before = (run_dir / "config.json").read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", str(run_dir), "--train-steps", "5")
    assert code == 2 and "already holds a run" in err
    assert (run_dir / "config.json").read_bytes() == before


def test_console_script_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "diffusion", "train", "--dataset", "nosuchset"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "nosuchset" in proc.stderr and "swissroll" in proc.stderr


def test_sample_in_chunks_fills_every_row_with_fresh_draws(capsys, tiny_run, tmp_path, monkeypatch):
    import diffusion.cli as cli

    monkeypatch.setattr(cli.sample, "SAMPLE_CHUNK", 50)
    run_dir, _ = tiny_run
    out = tmp_path / "x.npy"
    args = [
        "sample",
        "--run",
        str(run_dir),
        "--n",
        "120",
        "--sampler",
        "ddim",
        "--sample-steps",
        "5",
    ]
    code, _, _ = run_cli(capsys, *args, "--out", str(out))
    assert code == 0
    x = np.load(out)
    assert x.shape == (120, 2) and np.isfinite(x).all()
    # One generator runs through the chunks: chunk 2 is not a copy of chunk 1.
    assert not np.allclose(x[:50], x[50:100])
