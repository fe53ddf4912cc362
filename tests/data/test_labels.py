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


def test_a_csv_label_column_holds_numbers_or_names(tmp_path):
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("x,Label,y\n0.5,1,2\n# a comment\n\n1.5,0,3\n2.5,1,4\n")
    data = get_dataset(str(numbers))
    assert data.points.tolist() == [[0.5, 2.0], [1.5, 3.0], [2.5, 4.0]]  # not a coordinate
    assert data.classes == ("0", "1") and data.labels.tolist() == [1, 0, 1]
    names = tmp_path / "names.csv"
    names.write_text("class,x\ncat,0\ndog,1\nant,2\ncat,3\n")
    data = get_dataset(str(names))
    assert data.classes == ("ant", "cat", "dog")  # sorted names
    assert data.labels.tolist() == [1, 2, 0, 1] and data.points[:, 0].tolist() == [0, 1, 2, 3]
    unlabelled = tmp_path / "plain.csv"
    unlabelled.write_text("x,y\n0,1\n1,0\n")
    assert get_dataset(str(unlabelled)).labels is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x,label\n0,1\n1,\n", "line 3 has no label"),
        ("x,label\n0,1\n1,0,5\n", "line 3 has 3 values, the header has 2"),
        ("x,label\n0,1\n1,-1\n", "labels must be 0 or more"),
        ("x,label\n0,1\nzz,0\n", "line 3: 'zz' is not a number"),
        ("label,class,x\n0,1,2\n1,0,2\n", "two label columns ('label' and 'class')"),
        ("x,label\n" + "".join(f"{k},{k * 7}\n" for k in range(200)), "at most 1000 classes"),
        ("x,label\n" + "".join(f"{k},n{k}\n" for k in range(1001)), "1_001 classes"),
    ],
)
def test_bad_csv_label_columns_are_one_line_errors(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        get_dataset(str(path))


def test_a_label_column_and_a_labels_file_together_are_refused(tmp_path):
    path = tmp_path / "both.csv"
    path.write_text("x,label\n0,1\n1,0\n")
    np.save(tmp_path / "both.labels.npy", np.array([0, 1]))
    with pytest.raises(DataError, match="a label column and a labels file"):
        get_dataset(str(path))
