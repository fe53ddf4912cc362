"""Labels of a user's file (NAME.labels.npy beside NAME.npy or NAME.csv): read with the data,
trained on by default, and refused in one line (exit 2, nothing written) when they do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_helpers import forbid_compute, run_cli

from diffusion.data import DataError, get_dataset, held_out_split
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer


def two_blobs(tmp_path, suffix: str = ".npy"):
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(-2, 0.3, (50, 2)), rng.normal(2, 0.3, (50, 2))])
    labels = np.repeat([0, 1], 50)
    path = tmp_path / f"blobs{suffix}"
    if suffix == ".npy":
        np.save(path, points.astype(np.float32))
    else:
        np.savetxt(path, points, delimiter=",")
    np.save(tmp_path / "blobs.labels.npy", labels)
    return path, labels


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_labels_beside_a_point_cloud_are_read_and_trained_on(tmp_path, suffix):
    path, labels = two_blobs(tmp_path, suffix)
    data = get_dataset(str(path))
    assert data.classes == ("0", "1")
    assert torch.equal(data.labels, torch.from_numpy(labels))
    config = TrainConfig(dataset=str(path), train_steps=2, batch_size=16, width=8, depth=1)
    Trainer(config)
    assert config.classes == 2


def test_labels_beside_an_image_array_follow_the_held_out_split(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    labels = np.arange(40) % 4
    np.save(tmp_path / "pics.npy", images)
    np.save(tmp_path / "pics.labels.npy", labels)
    data = get_dataset(str(tmp_path / "pics.npy"))
    assert data.classes == ("0", "1", "2", "3")
    train, _ = held_out_split(40)  # the training images keep their own labels
    assert torch.equal(data.labels, torch.from_numpy(labels)[train])
    assert torch.equal(data.points, torch.from_numpy(images).float().reshape(40, -1)[train])


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (np.zeros(99, dtype=np.int64), "99 labels for the 100 examples"),
        (np.zeros((100, 1), dtype=np.int64), "shape (N,)"),
        (np.full(100, 0.5), "labels must be integers"),
        (np.full(100, -1), "labels must be 0 or more"),
        (np.arange(100) * 100, "at most 1000 classes"),
    ],
)
def test_bad_labels_are_one_line_errors(tmp_path, labels, fragment):
    path, _ = two_blobs(tmp_path)
    np.save(tmp_path / "blobs.labels.npy", labels)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        get_dataset(str(path))


def test_bad_labels_exit_2_from_train_and_write_nothing(capsys, monkeypatch, tmp_path):
    forbid_compute(monkeypatch)
    path, _ = two_blobs(tmp_path)
    (tmp_path / "blobs.labels.npy").write_bytes(b"not a numpy file")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", str(path), "--out", str(out), "--quiet")
    assert code == 2 and "cannot read the labels" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
