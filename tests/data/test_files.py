"""Point clouds from .npy/.csv files: round trips, bootstrap resampling, one-line errors."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion.data import DataError, get_dataset, load_points, resample

RNG = np.random.default_rng(0)  # fixture data only; the code under test never sees it


def write_csv(path: Path, rows: np.ndarray, header: str | None = None) -> Path:
    lines = [header] if header is not None else []
    lines += [",".join(repr(float(v)) for v in np.atleast_1d(row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- round trips ---


@pytest.mark.parametrize("shape", [(50, 3), (40, 1), (30, 2)])
def test_npy_round_trip(tmp_path, shape):
    array = RNG.normal(size=shape)
    np.save(tmp_path / "cloud.npy", array)
    dataset = get_dataset(str(tmp_path / "cloud.npy"))
    assert dataset.dim == shape[1]
    assert dataset.name == str(tmp_path / "cloud.npy")
    assert dataset.points.dtype == torch.float32
    assert torch.equal(dataset.points, torch.from_numpy(array.astype(np.float32)))


def test_npy_one_dimensional_array_is_one_column(tmp_path):
    array = RNG.normal(size=25)
    np.save(tmp_path / "line.npy", array)
    points = load_points(tmp_path / "line.npy")
    assert points.shape == (25, 1)
    assert torch.equal(points[:, 0], torch.from_numpy(array.astype(np.float32)))


def test_npy_integer_array_is_converted(tmp_path):
    np.save(tmp_path / "grid.npy", np.arange(12, dtype=np.int64).reshape(6, 2))
    points = load_points(tmp_path / "grid.npy")
    assert points.dtype == torch.float32
    assert torch.equal(points, torch.arange(12, dtype=torch.float32).reshape(6, 2))


@pytest.mark.parametrize("header", [None, "x,y,z", '"a", "b", "c"'])
def test_csv_round_trip_with_and_without_header(tmp_path, header):
    array = RNG.normal(size=(20, 3))
    path = write_csv(tmp_path / "cloud.csv", array, header)
    points = load_points(path)
    assert points.shape == (20, 3)
    assert torch.allclose(points, torch.from_numpy(array.astype(np.float32)))


def test_csv_one_column_and_spaces(tmp_path):
    (tmp_path / "column.csv").write_text("value\n1.5\n -2 \n3e1\n\n")
    assert torch.equal(load_points(tmp_path / "column.csv"), torch.tensor([[1.5], [-2.0], [30.0]]))
    (tmp_path / "spaced.csv").write_text("1, 2\n3 ,4\n")
    assert torch.equal(load_points(tmp_path / "spaced.csv"), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_path_objects_and_uppercase_suffix(tmp_path):
    np.save(tmp_path / "cloud.npy", np.arange(6.0).reshape(3, 2))
    (tmp_path / "cloud.npy").rename(tmp_path / "CLOUD.NPY")
    assert get_dataset(tmp_path / "CLOUD.NPY").points.shape == (3, 2)


# --- bootstrap sampling ---


def test_sample_is_a_seeded_bootstrap_of_the_rows(tmp_path):
    array = np.arange(20, dtype=np.float64).reshape(10, 2)  # 10 distinct rows
    np.save(tmp_path / "ten.npy", array)
    dataset = get_dataset(str(tmp_path / "ten.npy"))
    draw = dataset.sample(2000, torch.Generator().manual_seed(0))
    assert draw.shape == (2000, 2) and draw.dtype == torch.float32
    index = (draw[:, 0] / 2).long()  # row i is (2i, 2i + 1)
    assert torch.equal(draw, dataset.points[index])  # every draw is a row of the file
    counts = torch.bincount(index, minlength=10).double()
    assert (counts - 200).abs().max() < 5 * (2000 * 0.1 * 0.9) ** 0.5  # uniform over rows
    assert torch.equal(draw, dataset.sample(2000, torch.Generator().manual_seed(0)))
    assert not torch.equal(draw, dataset.sample(2000, torch.Generator().manual_seed(1)))
    generator = torch.Generator().manual_seed(2)
    assert not torch.equal(
        resample(dataset.points, 50, generator), resample(dataset.points, 50, generator)
    )


@pytest.mark.parametrize("n", [0, -1, 1.5])
def test_file_sample_size_is_checked(tmp_path, n):
    np.save(tmp_path / "cloud.npy", np.arange(6.0).reshape(3, 2))
    with pytest.raises(DataError, match="positive integer"):
        get_dataset(str(tmp_path / "cloud.npy")).sample(n, None)


def test_file_takes_no_options(tmp_path):
    np.save(tmp_path / "cloud.npy", np.arange(6.0).reshape(3, 2))
    with pytest.raises(DataError, match="noise"):
        get_dataset(str(tmp_path / "cloud.npy"), noise=0.1)


# --- bad files: each raises DataError with one line naming the file and the problem ---


def _save(array):
    return lambda path: np.save(path, array)


def _text(text):
    return lambda path: path.write_text(text)


def _bytes(data):
    return lambda path: path.write_bytes(data)


def _truncated(path):
    np.save(path, RNG.normal(size=(100, 3)))
    path.write_bytes(path.read_bytes()[:200])


def _npz_named_npy(path):
    with open(path, "wb") as f:
        np.savez(f, a=np.ones((3, 2)))


BAD_FILES = {
    # file name: (how to make it, or None for a missing file; words the message must contain)
    "missing.npy": (None, "no such file"),
    "missing_dir/points.csv": (None, "no such file"),
    "points.txt": (_text("1,2\n3,4\n"), "unsupported file type '.txt'"),
    "has_nan.npy": (_save(np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 4.0]])), "1 of 3 rows"),
    "has_inf.csv": (_text("1,2\ninf,4\n5,-inf\n7,8\n"), "2 of 4 rows"),
    "no_rows.npy": (_save(np.zeros((0, 2))), "empty"),
    "no_columns.npy": (_save(np.zeros((5, 0))), "empty"),
    "header_only.csv": (_text("x,y\n"), "empty"),
    "blank.csv": (_text(""), "empty"),
    # 3 or 4 dimensions are images (diffusion.data.images); 5 are nothing.
    "cube.npy": (_save(np.zeros((2, 3, 4))), "every pixel has the value 0"),
    "hypercube.npy": (_save(np.zeros((2, 3, 4, 5, 6))), "5 dimensions"),
    "scalar.npy": (_save(np.array(1.0)), "0 dimensions"),
    "strings.npy": (_save(np.array([["a", "b"], ["c", "d"]])), "non-numeric dtype"),
    "booleans.npy": (_save(np.array([True, False, True])), "non-numeric dtype"),
    "objects.npy": (_save(np.array([1.0, "x", None], dtype=object)), "Python objects"),
    "corrupt.npy": (_bytes(b"\x00\x01\x02 not numpy at all"), "not a .npy file"),
    "pickled.npy": (_bytes(pickle.dumps([[1.0, 2.0], [3.0, 4.0]])), "not a .npy file"),
    "archive.npy": (_npz_named_npy, "not a .npy file"),
    "truncated.npy": (_truncated, "cannot read as .npy"),
    "binary.csv": (_bytes(b"\xff\xfe\x00\x81\x00"), "cannot read as text"),
    "words.csv": (_text("x,y\n1,2\n3,abc\n"), "line 3: 'abc' is not a number"),
    "ragged.csv": (_text("1,2\n3,4,5\n"), "line 2 has 3 values, line 1 has 2"),
    "single.npy": (_save(np.array([[1.0, 2.0]])), "only 1 point"),
    "huge.npy": (_save(np.array([[1e300, 0.0], [1.0, 2.0]])), "too large for float32"),
    "constant.csv": (_text("1.5,2\n" * 100), "every point is the same (1.5, 2): nothing to learn"),
    "constant.npy": (_save(np.full((100, 3), 7.0)), "every point is the same"),
    "constant_flat.npy": (_save(np.ones(100)), "shape (100,) is read as 100 points in one dim"),
    "constant_in_float32.npy": (_save(1e10 + 1e-5 * np.arange(5.0)), "after rounding to float32"),
    "float32_edge.npy": (_save(np.array([[3e38, -3e38], [-3e38, 3e38]], np.float32)), "too large"),
    "far_apart.csv": (_text("1e19,0\n0,1\n"), "values too large: a point has norm 1e+19"),
    "wide.csv": (_text(",".join(["1"] * 5000) + "\n" + ",".join(["2"] * 5000) + "\n"), "4_096"),
    "wide.npy": (_save(np.zeros((2, 5000))), "has 5_000 coordinates per point; at most 4_096"),
    "long_integer.csv": (_text("1,2\n3," + "9" * 5000 + "\n"), "beyond float64"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_raises_one_line_data_error(tmp_path, name):
    make, words = BAD_FILES[name]
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(DataError) as info:
        get_dataset(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert Path(name).name in message
    assert words in message
    assert isinstance(info.value, ValueError)


def test_the_widest_file_loads_and_the_check_comes_before_parsing(tmp_path, monkeypatch):
    from diffusion.data.files import MAX_DIM

    np.save(tmp_path / "widest.npy", RNG.normal(size=(3, MAX_DIM)))
    assert load_points(tmp_path / "widest.npy").shape == (3, MAX_DIM)
    # One line of a million values: refused from the first line, before np.loadtxt.
    (tmp_path / "wider.csv").write_text(",".join(["1"] * 10**6) + "\n")
    monkeypatch.setattr(np, "loadtxt", None)  # calling it would raise TypeError
    with pytest.raises(DataError, match="1_000_000 coordinates"):
        load_points(tmp_path / "wider.csv")


def test_a_constant_column_beside_varying_ones_is_accepted(tmp_path):
    np.save(tmp_path / "plane.npy", np.c_[RNG.normal(size=10), np.zeros(10)])
    assert load_points(tmp_path / "plane.npy").shape == (10, 2)


@pytest.mark.parametrize("name", ["~no-such-user-here/points.npy", "x" * 300 + ".npy", "a\0b.csv"])
def test_names_no_file_can_have_are_one_line_errors(name):
    with pytest.raises(DataError) as info:
        get_dataset(name)
    assert "\n" not in str(info.value) and "file name" in str(info.value)


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(DataError, match=r"folder\.npy: is not a file"):
        load_points(tmp_path / "folder.npy")


# --- never unpickle ---


class _CreatesFileWhenUnpickled:
    """Unpickling this calls open(marker, "w"): the marker file appears iff it was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("wrap", ["object_array", "raw_pickle"])
def test_loading_never_unpickles(tmp_path, wrap):
    marker = tmp_path / "unpickled.txt"
    payload = _CreatesFileWhenUnpickled(marker)
    path = tmp_path / "payload.npy"
    if wrap == "object_array":
        np.save(path, np.array([payload, payload], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"payload\.npy"):
        get_dataset(str(path))
    assert not marker.exists()
    # The payload is live: unpickling it, as np.load(allow_pickle=True) would, creates the marker.
    if wrap == "object_array":
        np.load(path, allow_pickle=True)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()
