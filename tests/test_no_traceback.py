"""Inputs that once ended in a traceback, or were wrongly accepted after all the compute
(issue 16, part 8): each is now refused up front with one line on stderr and exit code 2,
with nothing written, or has a defined behaviour (a damaged checkpoint is skipped with a
warning; `sample` goes on without the run's data, which it does not need).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import forbid_compute

import diffusion.training.loop
import diffusion.workflows.run
from diffusion.cli import main
from diffusion.cli.common import format_metrics
from diffusion.io.checkpoints import list_checkpoints
from diffusion.training.config import TrainConfig

PREFIX = "diffusion: error: "
RNG = np.random.default_rng(0)  # fixture data only

# Trains in a couple of seconds; checkpoints at steps 10 and 20 (only the last is kept).
SMALL = dict(
    process="ddpm", train_steps=20, width=16, depth=1, diffusion_steps=50, sample_steps=10,
    n_train=300, batch_size=64, eval_samples=200, snapshot_samples=50, snapshot_every=10,
    checkpoint_every=10,
)  # fmt: skip
TINY_TRAIN = ["--train-steps", "2", "--eval-samples", "50", "--snapshot-samples", "20",
              "--n-train", "200", "--checkpoint-every", "0", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A finished run on a 2-D point cloud, with its checkpoint at step 20."""
    root = tmp_path_factory.mktemp("no-traceback")
    np.save(root / "points.npy", RNG.normal(size=(300, 2)))
    run_dir = root / "run"
    config = TrainConfig(**SMALL, dataset=str(root / "points.npy"))
    diffusion.workflows.run.run_training(config, run_dir, progress=False)
    assert [step for step, _ in list_checkpoints(run_dir)] == [20]
    return run_dir


@pytest.fixture
def run_copy(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.fixture
def no_compute(monkeypatch):
    """Training and evaluation fail loudly if anything reaches them."""
    forbid_compute(monkeypatch, sampling=False)


def tree(path: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under `path`, with size and modification time."""
    return sorted(
        (str(p.relative_to(path)), p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in path.rglob("*")
    )


def refused(capsys, argv: list[str], *words: str) -> str:
    """Run `diffusion argv`: exit 2, one line on stderr naming `words`, nothing on stdout."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith(PREFIX), err
    for word in words:
        assert word in err, f"{word!r} missing from {err!r}"
    assert out == "", out
    return err


# --- data with nothing to learn, or beyond float32 / the dimension limit --------------------


def _text(text: str):
    return lambda path: path.write_text(text)


def _array(array: np.ndarray):
    return lambda path: np.save(path, array)


DATA = {
    "same.csv": (_text("0.5,-1\n" * 100), ("same.csv", "every point is the same", "nothing")),
    "same.npy": (_array(np.full((100, 2), 3.0)), ("same.npy", "every point is the same")),
    "flat.npy": (_array(np.ones(100)), ("flat.npy", "every point is the same", "(n, d)")),
    "edge.npy": (
        _array(np.array([[3e38, -3e38], [-3e38, 3e38], [1, 2]], np.float32)),
        ("edge.npy", "values too large", "float32"),
    ),
    "weights.json": (
        _text('{"weights": [1e308, 1e308], "means": [[0, 0], [1, 1]], "stds": [1, 1]}'),
        ("weights.json", "weights sum to more than"),
    ),
    "wide.csv": (
        _text(",".join(["1"] * 200_000) + "\n" + ",".join(["2"] * 200_000) + "\n"),
        ("wide.csv", "200_000 coordinates", "at most 4_096"),
    ),
    "digits.json": (
        _text('{"weights": [1, ' + "7" * 5000 + '], "means": [[0, 0], [1, 1]], "stds": [1, 1]}'),
        ("digits.json", "weights"),
    ),
    "digits.csv": (_text("1,2\n3," + "7" * 5000 + "\n5,6\n"), ("digits.csv", "beyond float64")),
}


@pytest.mark.parametrize("name", sorted(DATA))
def test_data_without_a_spread_or_beyond_the_limits_is_refused(name, tmp_path, capsys, no_compute):
    make, words = DATA[name]
    make(tmp_path / name)
    before = tree(tmp_path)
    refused(capsys, ["train", "--dataset", str(tmp_path / name), "--out", str(tmp_path / "out"),
                     *TINY_TRAIN], *words)  # fmt: skip
    assert tree(tmp_path) == before  # no run directory


def test_format_metrics_shows_a_dash_for_a_missing_number():
    metrics = {
        "sliced_wasserstein": {"value": 0.5, "floor": 0.0, "ratio": None},
        "mmd": {"value": None, "floor": None, "ratio": None},
        "energy": {"value": 0.25, "floor": 0.125, "ratio": 2.0},
    }
    lines = format_metrics(metrics).splitlines()
    assert lines[1].split() == ["sliced_wasserstein", "0.50000", "0.00000", "-"]
    assert lines[2].split() == ["mmd", "-", "-", "-"]
    assert lines[3].split() == ["energy", "0.25000", "0.12500", "2.00"]


# --- output paths ----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("out", ["/proc/x", "/proc/1/x", "/proc/self/run", "/proc/x/y/z"])
def test_train_out_that_cannot_be_created(out, capsys, no_compute):
    refused(capsys, ["train", "--out", out, *TINY_TRAIN], "--out", out, "cannot write")
    assert not os.path.lexists(out)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_sample_out_that_cannot_be_created(small_run, capsys):
    refused(capsys, ["sample", "--run", str(small_run), "--n", "5", "--out", "/proc/x.npy"],
            "--out", "cannot write")  # fmt: skip


def test_existing_directory_that_cannot_be_written(tmp_path, capsys, monkeypatch, no_compute):
    """Root writes through permission bits, so the refusal is simulated twice: by the
    permission bits (os.access) and by the write itself failing (the probe)."""
    out = tmp_path / "locked"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != out and real_access(p, mode))
    refused(capsys, ["train", "--out", str(out), *TINY_TRAIN], "cannot write in", "locked")
    monkeypatch.setattr(os, "access", real_access)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    refused(capsys, ["train", "--out", str(out), *TINY_TRAIN], "locked", "Permission denied")
    assert list(out.iterdir()) == []


def test_a_system_folder_root_cannot_write_is_refused(capsys, no_compute):
    folder = Path("/sys/kernel")
    try:
        shutil.rmtree(tempfile.mkdtemp(dir=folder))
    except OSError:
        pass  # as expected: /sys refuses even root
    else:
        pytest.skip("/sys/kernel is writable here")
    refused(capsys, ["train", "--out", str(folder), *TINY_TRAIN], "/sys/kernel", "cannot write")


def test_a_name_too_long_is_refused(tmp_path, capsys, no_compute):
    out = tmp_path / ("x" * 300)
    err = refused(capsys, ["train", "--out", str(out), *TINY_TRAIN], "--out", "too long")
    assert len(err) < 400  # the path is cut short in the message


@pytest.mark.parametrize("target", ["missing", "existing"])
def test_sample_out_onto_a_symbolic_link_is_refused(small_run, tmp_path, capsys, target):
    link = tmp_path / "samples.npy"
    pointee = tmp_path / "elsewhere.npy"
    if target == "existing":
        np.save(pointee, np.zeros((1, 2)))
    link.symlink_to(pointee)
    before = tree(tmp_path)
    refused(capsys, ["sample", "--run", str(small_run), "--n", "5", "--out", str(link)],
            "--out", "samples.npy", "is a symbolic link")  # fmt: skip
    assert link.is_symlink() and tree(tmp_path) == before


def test_train_out_below_a_broken_link_is_refused(tmp_path, capsys, no_compute):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    refused(capsys, ["train", "--out", str(tmp_path / "link" / "run"), *TINY_TRAIN],
            "broken symbolic link")  # fmt: skip


@pytest.mark.parametrize("entry", ["checkpoints", "metrics.json", "model.safetensors"])
def test_fresh_out_holding_the_wrong_kind_of_entry(entry, tmp_path, capsys, no_compute):
    out = tmp_path / "out"
    out.mkdir()
    if entry == "checkpoints":
        (out / entry).write_text("a file where the checkpoints folder goes\n")
    else:
        (out / entry).mkdir()
    before = tree(tmp_path)
    refused(capsys, ["train", "--out", str(out), *TINY_TRAIN], entry, "move it away")
    assert tree(tmp_path) == before


# --- resuming -------------------------------------------------------------------------------


def test_resume_with_checkpoints_as_a_file_is_refused(run_copy, capsys, no_compute):
    shutil.rmtree(run_copy / "checkpoints")
    (run_copy / "checkpoints").write_text("not a folder\n")
    before = tree(run_copy)
    refused(capsys, ["train", "--resume", str(run_copy), "--train-steps", "30", "--quiet"],
            "checkpoints is a file")  # fmt: skip
    assert tree(run_copy) == before


def test_resume_skips_a_damaged_checkpoint_and_says_so(run_copy, capsys):
    bad = run_copy / "checkpoints" / "step-00000030.safetensors"
    bad.write_bytes(b"garbage, not a checkpoint")
    code = main(["train", "--resume", str(run_copy), "--train-steps", "22", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in out + err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "step-00000030.safetensors" in warning[0], err
    assert "from step 20" in out and "step-00000020.safetensors" in out, out
    assert [step for step, _ in list_checkpoints(run_copy)] == [22]  # the damaged one is gone


def test_resume_refuses_when_no_checkpoint_loads(run_copy, capsys, no_compute):
    (run_copy / "checkpoints" / "step-00000020.safetensors").write_bytes(b"garbage")
    before = tree(run_copy)
    refused(capsys, ["train", "--resume", str(run_copy), "--train-steps", "30", "--quiet"],
            "step-00000020.safetensors", "cannot resume")  # fmt: skip
    assert tree(run_copy) == before


# --- a run whose data set is gone or changed ------------------------------------------------


def _point_data_at(run_dir: Path, dataset: Path) -> None:
    path = run_dir / "config.json"
    meta = json.loads(path.read_text())
    meta["config"]["dataset"] = str(dataset)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("change", ["gone", "three-dimensional"])
def test_evaluate_needs_the_data_and_sample_does_not(run_copy, tmp_path, capsys, change):
    data = tmp_path / "moved.npy"
    if change == "three-dimensional":
        np.save(data, RNG.normal(size=(50, 3)))
    _point_data_at(run_copy, data)
    words = ("no such file",) if change == "gone" else ("dimension 3", "dimension 2")
    refused(capsys, ["evaluate", "--run", str(run_copy), "--n", "20"], "moved.npy", *words)

    npy = tmp_path / "samples.npy"
    code = main(["sample", "--run", str(run_copy), "--n", "7", "--out", str(npy)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert np.load(npy).shape == (7, 2)
