"""Class conditioning from the command line: a labelled data set trains a conditional run,
`diffusion sample --class C --guidance W` samples it (labels written beside the samples), and
bad labels or guidance options are one-line errors, exit 2, nothing written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_helpers import forbid_compute, run_cli

from diffusion.io.runs import load_model
from diffusion.training.config import TrainConfig
from diffusion.training.saved_config import upgrade_saved_config
from diffusion.workflows.run import run_training

SMALL = dict(
    train_steps=600, batch_size=256, width=32, depth=2, n_train=4000, sample_steps=10,
    snapshot_every=600, snapshot_samples=50, eval_samples=200,
)  # fmt: skip


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """A conditional flow run on `gaussians` (8 classes, one per cluster)."""
    run_dir = tmp_path_factory.mktemp("conditional") / "gaussians"
    run_training(TrainConfig(dataset="gaussians", **SMALL), run_dir, progress=False)
    return run_dir


def cluster_of(x: np.ndarray) -> np.ndarray:
    angle = 2 * math.pi * np.arange(8) / 8
    centres = np.stack([np.cos(angle), np.sin(angle)], 1)
    return np.linalg.norm(x[:, None, :] - centres[None], axis=2).argmin(1)


def test_a_labelled_set_trains_a_conditional_run_by_default(labelled_run):
    saved = json.loads((labelled_run / "config.json").read_text())["config"]
    assert saved["labels"] == "auto" and saved["classes"] == 8
    assert load_model(labelled_run).classes == 8


def test_sample_a_class_with_guidance_writes_labels(capsys, labelled_run, tmp_path):
    out = tmp_path / "s.npy"
    code, text, err = run_cli(capsys, "sample", "--run", str(labelled_run), "--n", "400",
                              "--class", "2,5", "--guidance", "2", "--out", str(out))  # fmt: skip
    assert code == 0, err
    x, labels = np.load(out), np.load(tmp_path / "s.labels.npy")
    assert labels.tolist() == [2] * 200 + [5] * 200
    assert (cluster_of(x) == labels).mean() > 0.97
    assert "guidance scale 2" in text


def test_class_all_gives_every_class_in_equal_shares(capsys, labelled_run, tmp_path):
    out = tmp_path / "all.npy"
    code, _, err = run_cli(capsys, "sample", "--run", str(labelled_run), "--n", "80", "--class",
                           "all", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert np.bincount(np.load(tmp_path / "all.labels.npy")).tolist() == [10] * 8


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--class", "8"], "--class 8 is not a class of this run (0..7)"),
        (["--class", "two"], "--class takes class numbers"),
        (["--guidance", "2"], "--guidance and --guidance-interval need --class"),
        (["--class", "1", "--guidance-interval", "3,1"], "--guidance-interval needs 0 <= LOW"),
        (["--class", "1", "--guidance-interval", "a"], "--guidance-interval takes two numbers"),
        (["--class", "1", "--guidance", "-1"], "--guidance"),
    ],
)
def test_bad_class_options_exit_2_and_write_nothing(capsys, monkeypatch, labelled_run, tmp_path,
                                                    args, fragment):  # fmt: skip
    forbid_compute(monkeypatch)
    out = tmp_path / "x.npy"
    code, _, err = run_cli(capsys, "sample", "--run", str(labelled_run), "--n", "10",
                           "--out", str(out), *args)  # fmt: skip
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unconditional_run_refuses_a_class(capsys, monkeypatch, tiny_run, tmp_path):
    forbid_compute(monkeypatch)
    code, _, err = run_cli(capsys, "sample", "--run", str(tiny_run[0]), "--n", "10", "--class",
                           "1", "--out", str(tmp_path / "x.npy"))  # fmt: skip
    assert code == 2 and "unconditional" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "swissroll", "--labels", "on"], "has no class labels"),
        (["--dataset", "gaussians", "--classes", "5"], "classes is 5 but the data have 8"),
        (["--dataset", "gaussians", "--labels", "off", "--classes", "8"], "needs labels auto"),
        (
            ["--dataset", "gaussians", "--label-dropout", "1.5"],
            "--label-dropout: must be in [0, 1]",
        ),
    ],
)
def test_bad_label_settings_exit_2_and_write_nothing(capsys, monkeypatch, tmp_path, args,
                                                     fragment):  # fmt: skip
    forbid_compute(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *args, "--out", str(out), "--quiet")
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_runs_saved_before_labels_load_as_unconditional():
    old = {"dataset": "gaussians", "process": "flow"}
    assert TrainConfig.from_dict(upgrade_saved_config(old)).classes == 0


def test_a_conditional_run_is_evaluated_in_the_data_class_proportions(labelled_run, tiny_run):
    from diffusion.data import get_dataset
    from diffusion.workflows.run import class_draws

    gaussians = get_dataset("gaussians")
    labels = class_draws(load_model(labelled_run), gaussians, 8000, seed=1)
    assert np.abs(np.bincount(labels.numpy(), minlength=8) / 8000 - 1 / 8).max() < 0.02
    assert class_draws(load_model(tiny_run[0]), get_dataset("swissroll"), 10, seed=1) is None
