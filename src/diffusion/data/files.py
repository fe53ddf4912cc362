"""A user's own point cloud, shape (n, d), from a .npy or .csv file.

A file holds a finite set of n points, not a distribution we can draw from afresh: `resample`
draws rows with replacement, so "fresh" samples of a file-backed set are bootstrap resamples of
the file. Two such draws share points, which lowers the distance between them; metrics that
compare model samples with data must use a floor computed the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from diffusion.data.errors import DataError, check_sample_size, user_path

SUFFIXES = (".npy", ".csv")
#: Most coordinates per point, for every data set: sampling, metrics and pictures grow with
#: the dimension. 4_096 holds a 64 x 64 grey or 3 x 32 x 32 colour image; there the smallest
#: run (3 training steps) already takes ~40 s on 2 CPU cores, most of it drawing reverse.gif.
MAX_DIM = 4096
#: Largest norm of a point: squared distances between points (metrics, kernels) are computed
#: in float32, whose largest value is 3.4e38, so (2 * 1e18)^2 = 4e36 leaves room.
MAX_NORM = 1e18


def _one_line(error: BaseException) -> str:
    """An exception's message collapsed onto one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """The shape and dtype in a .npy header, read without loading the data; None if
    unreadable."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                return shape, dtype
            if version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                return shape, dtype
    except (ValueError, OSError, EOFError, SyntaxError):
        pass
    return None  # np.load below reports the problem


def _check_width(where: object, width: int) -> None:
    """DataError when a point has more than MAX_DIM coordinates."""
    if width > MAX_DIM:
        raise DataError(
            f"{where}: has {width:_} coordinates per point; at most {MAX_DIM:_} are supported "
            "(network, metrics and pictures grow with the dimension)"
        )


def _read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            magic = f.read(len(np.lib.format.MAGIC_PREFIX))
    except OSError as error:
        raise DataError(f"{path}: cannot read ({_one_line(error)})") from None
    if magic != np.lib.format.MAGIC_PREFIX:  # a pickle, a zip (.npz), text, or corrupt bytes
        raise DataError(f"{path}: is not a .npy file (no NumPy header); corrupt or another format")
    header = _npy_header(path)
    if header is not None and header[1].hasobject:
        raise DataError(
            f"{path}: holds Python objects (dtype {header[1]}), which would need unpickling; "
            "save a numeric array instead"
        )
    if header is not None and len(header[0]) == 2:  # before loading: (2, 10**8) is refused now
        _check_width(path, header[0][1])
    try:
        return np.load(path, allow_pickle=False)  # never unpickle a user's file
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read as .npy ({_one_line(error)})") from None


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


#: header names of a CSV column that holds each point's class instead of a coordinate
LABEL_COLUMNS = ("label", "class")


def read_csv_table(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """The numbers (n, d) of a CSV file, and the text of its label column (one entry per
    point) when its header names one (`LABEL_COLUMNS`, any case), else None."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read as text ({_one_line(error)})") from None
    # Skip one header line: the first non-blank line, if none of its fields is a number.
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    skip = 0
    if first is not None and not any(_is_number(f) for f in lines[first].split(",")):
        skip = first + 1
    labels = None
    if skip:
        lines, labels = _take_label_column(path, lines, skip)
    data = next((line for line in lines[skip:] if line.split("#")[0].strip()), "")
    _check_width(path, data.split("#")[0].count(",") + 1)  # before parsing every line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            array = np.loadtxt(lines[skip:], delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as error:
        problem = _csv_problem(lines, skip) or _one_line(error)
        raise DataError(f"{path}: cannot parse as comma-separated numbers ({problem})") from None
    return array, labels


def _take_label_column(
    path: Path, lines: list[str], skip: int
) -> tuple[list[str], list[str] | None]:
    """`lines` without the label column that the header (line `skip`) names, and that
    column's entries; the lines unchanged and None when the header names no label column.
    Blank and comment lines stay in place, so line numbers in later errors still hold."""
    header = [field.strip().lower() for field in lines[skip - 1].split(",")]
    found = [i for i, name in enumerate(header) if name in LABEL_COLUMNS]
    if not found:
        return lines, None
    if len(found) > 1:
        names = " and ".join(repr(lines[skip - 1].split(",")[i].strip()) for i in found)
        raise DataError(f"{path}: the header names two label columns ({names}); keep one")
    column, kept, labels = found[0], lines[:skip], []
    for number, line in enumerate(lines[skip:], start=skip + 1):
        fields = line.split("#")[0].split(",")
        if not line.split("#")[0].strip():
            kept.append(line)
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}: line {number} has {len(fields)} values, the header "
                            f"has {len(header)}")  # fmt: skip
        label = fields.pop(column).strip()
        if not label:
            raise DataError(f"{path}: line {number} has no label")
        labels.append(label)
        kept.append(",".join(fields))
    return kept, labels


def _csv_problem(lines: list[str], skip: int) -> str | None:
    """The first bad line of a CSV that np.loadtxt rejected, described with its line number."""
    width, width_line = None, 0
    for number, line in enumerate(lines[skip:], start=skip + 1):
        if not line.split("#")[0].strip():  # blank or comment, as np.loadtxt skips them
            continue
        fields = line.split("#")[0].split(",")
        bad = next((f.strip() for f in fields if not _is_number(f)), None)
        if bad is not None:
            return f"line {number}: {bad[:20]!r} is not a number"
        if width is not None and len(fields) != width:
            return f"line {number} has {len(fields)} values, line {width_line} has {width}"
        width, width_line = len(fields), number
    return None


def load_points(path: str | Path) -> torch.Tensor:
    """Load a point cloud from a .npy or .csv file.

    Args:
        path: a .npy array of shape (n, d) or (n,), or a .csv with one point per line, numbers
            separated by commas, optionally one header line of names (skipped); a column
            the header names "label" or "class" is not a coordinate (`load_point_table`);
            blank lines and text after '#' are ignored.

    Returns:
        (n, d) float32 tensor; a 1-D array of length n becomes (n, 1).

    Raises:
        DataError: one line naming the file and the problem (missing file, unsupported type,
            unreadable content, non-numeric dtype, wrong dimensions, more than MAX_DIM
            coordinates, empty, non-finite values, fewer than 2 points, every point the same,
            a point of norm above MAX_NORM).
    """
    return load_point_table(path)[0]


def load_point_table(path: str | Path) -> tuple[torch.Tensor, list[str] | None]:
    """`load_points`, with the label column of a CSV whose header names one (its text, one
    entry per point; `diffusion.data.labels.labels_from_text` makes classes of it), else
    None."""
    path = user_path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; use .npy or .csv "
            "(or .json for a Gaussian mixture)"
        )
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: is not a file")
    if path.suffix.lower() == ".csv":
        array, labels = read_csv_table(path)
    else:
        array, labels = _read_npy(path), None
    return points_from_array(array, str(path)), labels


def points_from_array(array: np.ndarray, where: str) -> torch.Tensor:
    """An (n, d) float32 point cloud from a numeric array of shape (n, d) or (n,), checked as
    `load_points` checks a file; `where` names the source in errors (a path, "the array")."""

    if array.dtype.kind not in "iuf":  # signed, unsigned, float; not bool, complex, str, object
        raise DataError(f"{where}: has non-numeric dtype {array.dtype}; expected real numbers")
    flat = array.ndim == 1
    if flat:
        array = array[:, None]  # (n,) -> (n, 1)
    if array.ndim != 2:
        raise DataError(
            f"{where}: has {array.ndim} dimensions (shape {array.shape}); expected (n, d) or (n,)"
        )
    n, d = array.shape
    if n == 0 or d == 0:
        raise DataError(f"{where}: is empty (no {'points' if n == 0 else 'coordinates'})")
    _check_width(where, d)
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad_rows.size:
        raise DataError(
            f"{where}: has non-finite values (NaN, inf, or beyond float64's 1.8e308) in "
            f"{bad_rows.size} of {n} rows (first: point {bad_rows[0]}, counting from 0)"
        )
    if n < 2:
        raise DataError(f"{where}: has only {n} point; need at least 2")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        points = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not torch.isfinite(points).all():
        raise DataError(f"{where}: has values too large for float32 (|x| > 3.4e38)")
    _check_spread(where, points, array, flat)
    return points


def _check_spread(where: str, points: torch.Tensor, array: np.ndarray, flat: bool) -> None:
    """DataError when all `points` (n, d) are one point, or lie too far apart for float32.

    `array` is what they were read from, `flat` whether it was 1-D (n points in one dimension).
    """
    if bool((points == points[:1]).all()):
        rounded = not bool((array == array[:1]).all())  # they differed before float32
        n, d = points.shape
        value = ", ".join(f"{v:g}" for v in points[0, :4].tolist()) + (", ..." if d > 4 else "")
        why = " after rounding to float32 (their differences are below its precision)"
        shape = (f"; its shape ({n},) is read as {n} points in one dimension, save an (n, d) "
                 "array for points in d dimensions") if flat else ""  # fmt: skip
        raise DataError(f"{where}: every point is the same ({value}){why if rounded else ''}: "
                        f"nothing to learn{shape}")  # fmt: skip
    norm = float(torch.linalg.vector_norm(points.double(), dim=1).max())
    if norm > MAX_NORM:
        raise DataError(
            f"{where}: values too large: a point has norm {norm:.3g}, and distances between "
            f"points overflow float32 beyond a norm of {MAX_NORM:.0e}; rescale the data"
        )


def resample(
    points: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """n rows of `points` (N, d) drawn uniformly with replacement: a bootstrap resample, (n, d)."""
    n = check_sample_size(n)
    device = generator.device if generator is not None else points.device
    index = torch.randint(points.shape[0], (n,), generator=generator, device=device)  # (n,)
    return points.to(device)[index]
