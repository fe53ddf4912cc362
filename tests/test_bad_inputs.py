"""Bad input to `diffusion`: one line on stderr, exit 2, no traceback, and nothing computed.

Every case runs `diffusion.cli.main(argv)` in-process with the training loop, the sampler and
the evaluation patched to fail if they are reached, so a case passes only when the input is
refused *before* any compute, and when nothing was written (no run directory, no samples
file, the finished run left exactly as it was).
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import forbid_compute

import diffusion.io.runs
import diffusion.training.loop
import diffusion.workflows.run
from diffusion.cli import main
from diffusion.io.checkpoints import list_checkpoints
from diffusion.training.config import TrainConfig

PREFIX = "diffusion: error: "
HUGE = "1" + "0" * 30  # an integer no 64-bit seed or tensor size can hold

# A finished run small enough to train in a couple of seconds, with a checkpoint at step 60.
SMALL = dict(
    process="ddpm", train_steps=60, width=16, depth=1, diffusion_steps=50, sample_steps=10, n_train=500,
    batch_size=64, eval_samples=500, snapshot_samples=100, snapshot_every=30,
    checkpoint_every=30,
)  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("bad-inputs") / "run"
    diffusion.workflows.run.run_training(TrainConfig(**SMALL), run_dir, progress=False)
    assert (run_dir / "model.safetensors").is_file()
    assert [step for step, _ in list_checkpoints(run_dir)] == [60]
    return run_dir


class _Payload:
    """Unpickling this creates `marker` (the file must never appear)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_files(tmp: Path, run_dir: Path) -> dict[str, str]:
    """Every file a case names, under tmp; returns the placeholders for the case's argv."""
    marker = tmp / "pwned"
    (tmp / "bad.csv").write_text("x,y\n1.0,2.0\n3.0,abc\n5.0,6.0\n")
    np.save(tmp / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp / "pickle.npy").write_bytes(pickle.dumps(_Payload(marker)))
    (tmp / "syntax.toml").write_text("train_steps = = 5\n")
    (tmp / "typo.toml").write_text("bach_size = 64\n")
    (tmp / "steps-str.toml").write_text('train_steps = "many"\n')
    (tmp / "steps-float.toml").write_text("train_steps = 5.5\n")
    (tmp / "lr-nan.toml").write_text("lr = nan\n")
    (tmp / "zts-yes.toml").write_text('zero_terminal_snr = "yes"\n')
    (tmp / "batch-str.json").write_text('{"batch_size": "64"}')
    (tmp / "config.yaml").write_text("train_steps: 5\n")
    (tmp / "section.toml").write_text("[training]\ntrain_steps = 5\n")
    (tmp / "array.json").write_text("[1, 2, 3]")
    (tmp / "latin1.toml").write_bytes(b'dataset = "caf\xe9"\n')  # not UTF-8
    (tmp / "afile").write_text("not a directory\n")
    (tmp / "isdir.npy").mkdir()
    (tmp / "empty-dir").mkdir()
    (tmp / "empty-dir.toml").mkdir()
    unfinished = tmp / "unfinished"
    unfinished.mkdir()
    shutil.copy(run_dir / "config.json", unfinished / "config.json")
    odd = tmp / "odd-config"
    odd.mkdir()
    meta = json.loads((run_dir / "config.json").read_text())
    meta["config"] = [1, 2]  # valid JSON, but not a table of settings
    (odd / "config.json").write_text(json.dumps(meta))
    shutil.copy(run_dir / "model.safetensors", odd / "model.safetensors")
    return {
        "tmp": str(tmp),
        "out": str(tmp / "run"),
        "run": str(run_dir),
        "unfinished": str(unfinished),
        "odd": str(odd),
        "npy": str(tmp / "samples.npy"),
    }


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{name}" placeholders are filled from make_files
    expect: tuple[str, ...]  # substrings the error line must contain
    xfail: str | None = None  # why the code does not (yet) refuse it cleanly
    marks: tuple = ()


def train(id: str, *args: str, expect: str | tuple[str, ...], xfail: str | None = None, marks=()):
    """A `train` case: a fresh --out that must still not exist afterwards."""
    expect = (expect,) if isinstance(expect, str) else expect
    return Case(id, ("train", "--out", "{out}", "--quiet", *args), expect, xfail, marks)


def cmd(id: str, *argv: str, expect: str | tuple[str, ...], xfail: str | None = None, marks=()):
    expect = (expect,) if isinstance(expect, str) else expect
    return Case(id, argv, expect, xfail, marks)


def sample(id: str, *args: str, expect: str | tuple[str, ...], xfail: str | None = None):
    """A `sample` case on the finished run, writing to {npy} unless it says otherwise."""
    has_out = "--out" in args
    base = ("sample", "--run", "{run}", "--n", "5") + (() if has_out else ("--out", "{npy}"))
    return cmd(id, *base, *args, expect=expect, xfail=xfail)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")

# fmt: off
CASES = [
    # -- the command line itself --
    cmd("no-subcommand", "--quiet", expect="no command given"),
    cmd("unknown-subcommand", "fly", expect="fly"),
    cmd("unknown-option", "train", "--out", "{out}", "--no-such-option", expect="--no-such-option"),
    cmd("option-without-value", "train", "--out", "{out}", "--train-steps", expect="--train-steps"),
    cmd("ambiguous-abbreviation", "train", "--out", "{out}", "--s", "5", expect="--s"),
    cmd("sample-missing-run", "sample", "--n", "5", "--out", "{npy}", expect="--run"),
    cmd("sample-missing-n", "sample", "--run", "{run}", "--out", "{npy}", expect="--n"),
    cmd("sample-missing-out", "sample", "--run", "{run}", "--n", "5", expect="--out"),
    cmd("evaluate-missing-run", "evaluate", "--n", "5", expect="--run"),
    # -- numbers that are not numbers, or out of range --
    train("steps-not-a-number", "--train-steps", "ten", expect="--train-steps"),
    train("steps-zero", "--train-steps", "0", expect="--train-steps"),
    train("steps-negative", "--train-steps", "-5", expect="--train-steps"),
    train("steps-fraction", "--train-steps", "1.5", expect="--train-steps"),
    train("steps-nan", "--train-steps", "nan", expect="--train-steps"),
    train("batch-size-zero", "--batch-size", "0", expect="--batch-size"),
    train("batch-size-inf", "--batch-size", "inf", expect="--batch-size"),
    train("lr-zero", "--lr", "0", expect="--lr"),
    train("lr-negative", "--lr", "-1", expect="--lr"),
    train("lr-nan", "--lr", "nan", expect="--lr"),
    train("lr-inf", "--lr", "inf", expect="--lr"),
    train("lr-word", "--lr", "fast", expect="--lr"),
    train("width-zero", "--width", "0", expect="--width"),
    train("width-nan", "--width", "nan", expect="--width"),
    train("depth-negative", "--depth", "-2", expect="--depth"),
    train("diffusion-steps-zero", "--diffusion-steps", "0", expect="--diffusion-steps"),
    train("n-train-zero", "--n-train", "0", expect="--n-train"),
    train("seed-negative", "--seed", "-1", expect="--seed"),
    train("seed-fraction", "--seed", "1.5", expect="--seed"),
    train("warmup-negative", "--warmup", "-1", expect="--warmup"),
    train("ema-decay-1.5", "--ema-decay", "1.5", expect="--ema-decay"),
    train("ema-decay-nan", "--ema-decay", "nan", expect="--ema-decay"),
    train("min-lr-ratio-negative", "--min-lr-ratio", "-0.1", expect="--min-lr-ratio"),
    train("min-lr-ratio-one", "--min-lr-ratio", "1", expect="--min-lr-ratio"),
    train("grad-clip-zero", "--grad-clip", "0", expect="--grad-clip"),
    train("weight-decay-negative", "--weight-decay", "-1", expect="--weight-decay"),
    train("sample-steps-zero", "--sample-steps", "0", expect="--sample-steps"),
    train("snapshot-every-zero", "--snapshot-every", "0", expect="--snapshot-every"),
    train("eval-samples-zero", "--eval-samples", "0", expect="--eval-samples"),
    train("checkpoint-every-negative", "--checkpoint-every", "-1", expect="--checkpoint-every"),
    train(
        "seed-too-large", "--seed", HUGE, expect="seed",
    ),
    train(
        "steps-too-large", "--train-steps", HUGE, expect="steps",
    ),
    train(
        "n-train-too-large", "--n-train", "100000000000000", expect="--n-train",
    ),
    # -- choices --
    train("unknown-process", "--process", "sde", expect="--process"),
    train("unknown-schedule", "--schedule", "exponential", expect="--schedule"),
    train("unknown-prediction", "--prediction", "noise", expect="--prediction"),
    train("unknown-sampler", "--sampler", "plms", expect="--sampler"),
    train("unknown-grid", "--sample-grid", "cosine", expect="--sample-grid"),
    train("sigma-min-with-ddpm", "--sigma-min", "0.1", expect="sigma_min"),
    train("sigma-min-above-max", "--process", "ve", "--sigma-min", "5", "--sigma-max", "1", expect=("sigma", "min < max")),
    train("beta-start-with-vp", "--process", "vp", "--beta-start", "0.001", expect="beta_start"),
    train("zero-snr-with-edm", "--process", "edm", "--zero-terminal-snr", expect="zero_terminal_snr"),
    train("sigma-max-zero", "--process", "edm", "--sigma-max", "0", expect="--sigma-max"),
    # -- data --
    train("unknown-dataset", "--dataset", "nosuchset", expect=("nosuchset", "swissroll")),
    train("missing-npy", "--dataset", "{tmp}/missing.npy", expect="missing.npy"),
    train("missing-csv", "--dataset", "{tmp}/missing.csv", expect="missing.csv"),
    train("csv-non-numeric-cell", "--dataset", "{tmp}/bad.csv", expect=("bad.csv", "'abc'")),
    train("npy-object-array", "--dataset", "{tmp}/object.npy", expect=("object.npy", "objects")),
    train("npy-is-a-pickle", "--dataset", "{tmp}/pickle.npy", expect="pickle.npy"),
    train("dataset-is-a-directory", "--dataset", "{tmp}/isdir.npy", expect="isdir.npy"),
    train("dataset-unsupported-suffix", "--dataset", "{tmp}/afile", expect="afile"),
    # -- the process and its schedule --
    train(
        "beta-start-above-beta-end", "--process", "ddpm", "--schedule", "linear", "--beta-start", "0.02",
        "--beta-end", "0.01", expect="beta_start",
    ),
    train("beta-start-with-cosine", "--beta-start", "0.001", expect="beta_start"),
    train("beta-end-with-cosine", "--beta-end", "0.02", expect="beta_end"),
    train("beta-end-above-1", "--schedule", "linear", "--beta-end", "1.5", expect="--beta-end"),
    train("beta-start-zero", "--schedule", "linear", "--beta-start", "0", expect="--beta-start"),
    train(
        "beta-start-negative", "--schedule", "linear", "--beta-start", "-0.1", expect="--beta-start"
    ),
    train(
        "zero-terminal-snr-with-eps", "--zero-terminal-snr", "--prediction", "eps",
        expect="zero_terminal_snr",
    ),
    train(
        "linear-too-few-steps-betas", "--process", "ddpm", "--schedule", "linear", "--diffusion-steps", "10",
        expect=("betas must lie in (0, 1)", "T = 10"),
    ),
    train(
        "linear-terminal-signal", "--process", "ddpm", "--schedule", "linear", "--diffusion-steps", "20",
        "--beta-start", "1e-4", "--beta-end", "0.02",
        expect=("sqrt(alpha_bar_T)", "--allow-terminal-signal"),
    ),
    train(
        "sample-steps-above-diffusion-steps", "--process", "ddpm", "--diffusion-steps", "50", "--sample-steps", "100",
        expect="sample_steps",
    ),
    # -- device --
    train("device-cuda-without-cuda", "--device", "cuda", expect="cuda", marks=(NO_CUDA,)),
    train("device-cuda-1-without-cuda", "--device", "cuda:1", expect="cuda", marks=(NO_CUDA,)),
    train("device-tpu", "--device", "tpu", expect="device"),
    train("device-cuda-letter", "--device", "cuda:x", expect="device"),
    # -- the output directory --
    cmd("out-is-a-file", "train", "--out", "{tmp}/afile", expect="--out"),
    cmd("out-holds-a-run", "train", "--out", "{run}", "--train-steps", "5", expect="already holds a run"),
    cmd(
        "out-below-a-file", "train", "--out", "{tmp}/afile/run", expect="--out",
    ),
    # -- --config files --
    train("config-missing", "--config", "{tmp}/missing.toml", expect="missing.toml"),
    train("config-syntax-error", "--config", "{tmp}/syntax.toml", expect="syntax.toml"),
    train("config-typo-key", "--config", "{tmp}/typo.toml", expect=("bach_size", "'batch_size'")),
    train("config-steps-string", "--config", "{tmp}/steps-str.toml", expect="steps"),
    train("config-steps-fraction", "--config", "{tmp}/steps-float.toml", expect="steps"),
    train("config-lr-nan", "--config", "{tmp}/lr-nan.toml", expect="lr"),
    train("config-bool-string", "--config", "{tmp}/zts-yes.toml", expect="zero_terminal_snr"),
    train("config-json-wrong-type", "--config", "{tmp}/batch-str.json", expect="batch_size"),
    train("config-yaml-suffix", "--config", "{tmp}/config.yaml", expect="config.yaml"),
    train("config-toml-table", "--config", "{tmp}/section.toml", expect="training"),
    train("config-json-array", "--config", "{tmp}/array.json", expect="array.json"),
    train("config-is-a-directory", "--config", "{tmp}/empty-dir.toml", expect="empty-dir.toml"),
    train(
        "config-not-utf8", "--config", "{tmp}/latin1.toml", expect="latin1.toml",
    ),
    # -- --resume --
    cmd("resume-with-out", "train", "--resume", "{run}", "--out", "{out}", expect="--out"),
    cmd("resume-missing-dir", "train", "--resume", "{tmp}/nope", expect="does not exist"),
    cmd("resume-dir-without-config", "train", "--resume", "{tmp}/empty-dir", expect="config.json"),
    cmd("resume-changed-width", "train", "--resume", "{run}", "--width", "32", expect="width"),
    cmd("resume-changed-depth", "train", "--resume", "{run}", "--depth", "2", expect="depth"),
    cmd(
        "resume-changed-schedule", "train", "--resume", "{run}", "--schedule", "linear",
        expect="schedule",
    ),
    cmd(
        "resume-changed-prediction", "train", "--resume", "{run}", "--prediction", "eps",
        expect="prediction",
    ),
    cmd("resume-changed-seed", "train", "--resume", "{run}", "--seed", "1", expect="seed"),
    cmd(
        "resume-changed-dataset", "train", "--resume", "{run}", "--dataset", "moons",
        expect="dataset",
    ),
    cmd(
        "resume-changed-batch-size", "train", "--resume", "{run}", "--batch-size", "32",
        expect="batch_size",
    ),
    cmd(
        "resume-config-wrong-type", "train", "--resume", "{run}", "--config",
        "{tmp}/batch-str.json", expect="batch_size",
    ),
    cmd(
        "resume-steps-below-checkpoint", "train", "--resume", "{run}", "--train-steps", "30",
        expect=("--train-steps 30", "60"),
    ),
    cmd(
        "resume-config-typo", "train", "--resume", "{run}", "--config", "{tmp}/typo.toml",
        expect="bach_size",
    ),
    # -- sample --
    sample("sample-n-zero", "--n", "0", expect="--n"),
    sample("sample-n-word", "--n", "many", expect="--n"),
    sample("sample-out-not-npy", "--out", "{tmp}/samples.txt", expect="--out"),
    sample("sample-steps-above-run", "--sample-steps", "51", expect="--sample-steps"),
    sample("sample-eta-with-ancestral", "--eta", "0.5", expect="--eta"),
    sample("sample-eta-negative", "--sampler", "ddim", "--eta", "-1", expect="--eta"),
    sample("sample-variance-with-ddim", "--sampler", "ddim", "--variance", "beta", expect="--variance"),
    sample("sample-churn-with-ddim", "--sampler", "ddim", "--churn", "5", expect=("--churn", "heun")),
    sample("sample-snr-with-euler", "--sampler", "euler", "--snr", "0.1", expect=("--snr", "pc")),
    sample("sample-rtol-negative", "--sampler", "rk45", "--rtol", "-1", expect="--rtol"),
    sample("sample-unknown-grid", "--sample-grid", "cosine", expect="--sample-grid"),
    sample("sample-karras-grid-too-fine", "--sample-grid", "karras", "--sample-steps", "50", expect=("--sample-grid", "repeats")),
    sample("sample-unknown-variable", "--sampler", "heun", "--variable", "x", expect="--variable"),
    sample("sample-unknown-variance", "--variance", "fixed", expect="--variance"),
    sample("sample-seed-negative", "--seed", "-3", expect="--seed"),
    cmd(
        "sample-run-missing", "sample", "--run", "{tmp}/nope", "--n", "5", "--out", "{npy}",
        expect="does not exist",
    ),
    cmd(
        "sample-run-unfinished", "sample", "--run", "{unfinished}", "--n", "5", "--out", "{npy}",
        expect=("model.safetensors", "--resume"),
    ),
    cmd(
        "sample-run-config-not-a-table", "sample", "--run", "{odd}", "--n", "5", "--out", "{npy}",
        expect="config.json",
    ),
    sample(
        "sample-seed-too-large", "--seed", HUGE, expect="--seed",
    ),
    sample(
        "sample-n-too-large", "--n", "100000000000000", expect="--n",
    ),
    sample(
        "sample-out-is-a-directory", "--out", "{tmp}/isdir.npy", expect="--out",
    ),
    sample(
        "sample-out-below-a-file", "--out", "{tmp}/afile/x.npy", expect="--out",
    ),
    # -- evaluate --
    cmd("evaluate-n-zero", "evaluate", "--run", "{run}", "--n", "0", expect="--n"),
    cmd("evaluate-steps-above-run", "evaluate", "--run", "{run}", "--sample-steps", "51", expect="--sample-steps"),
    cmd("evaluate-unknown-sampler", "evaluate", "--run", "{run}", "--sampler", "x", expect="--sampler"),
    cmd(
        "evaluate-run-unfinished", "evaluate", "--run", "{unfinished}",
        expect="model.safetensors",
    ),
]
# fmt: on


def _param(case: Case):
    marks = list(case.marks)
    if case.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture
def no_compute(monkeypatch):
    """Training, sampling and evaluation all fail loudly if anything reaches them."""
    forbid_compute(monkeypatch)


def _tree(path: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")
    )


def test_the_table_is_broad():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.argv[0] if c.argv else "" for c in CASES} >= {
        "--quiet",
        "fly",
        "train",
        "sample",
        "evaluate",
    }


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_refused_with_one_line_before_any_compute(
    case: Case, finished_run, tmp_path, capsys, no_compute
):
    names = make_files(tmp_path, finished_run)
    argv = [a.format(**names) for a in case.argv]
    run_before = _tree(finished_run)
    tmp_before = _tree(tmp_path)

    code = main(argv)
    out, err = capsys.readouterr()

    assert "Traceback" not in err + out
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one line, got {err!r}"
    line = lines[0]
    assert line.startswith(PREFIX) and line[len(PREFIX) :].strip(), line
    for part in case.expect:
        assert part in line, f"{part!r} missing from {line!r}"
    assert out == "", f"nothing may be printed to stdout: {out!r}"
    # Nothing was written: no run directory, no samples, no marker, the run untouched.
    assert not Path(names["out"]).exists()
    assert not Path(names["npy"]).exists()
    assert not (tmp_path / "pwned").exists()
    assert _tree(tmp_path) == tmp_before
    assert _tree(finished_run) == run_before


def test_the_process_exits_2_with_one_line(tmp_path, finished_run):
    """Three cases through a real `python -m diffusion` process (run side by side)."""
    out_dir, npy = tmp_path / "run", tmp_path / "x.npy"
    cases = {
        "unknown subcommand": ["fly"],
        "train --steps 0": ["train", "--out", str(out_dir), "--train-steps", "0"],
        "sample --steps above the run's": [
            "sample", "--run", str(finished_run), "--n", "5", "--sample-steps", "51", "--out", str(npy),
        ],
    }  # fmt: skip
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "diffusion", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in cases.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, proc.returncode, err)
        assert "Traceback" not in err, (name, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(PREFIX), (name, err)
        assert out == "", (name, out)
    assert not out_dir.exists() and not npy.exists()
