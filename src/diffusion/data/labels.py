"""Class labels of a user's file: `NAME.labels.npy` beside `NAME.npy` or `NAME.csv`, or a
column of the CSV that its header names "label" or "class".

A labels file holds one integer per example, in the file's order, from 0 to K - 1; the classes
are named by their numbers. A label column holds the same integers, or names (any text): the
classes are then the names in sorted order. Anything else is refused in one line naming the
file (`DataError`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffusion.data.errors import DataError

#: the most classes a labelled set may have (a column of values mistaken for labels would
#: otherwise make a table of millions of class embeddings).
MAX_CLASSES = 1000


def labels_path(path: Path) -> Path:
    """Where the labels of data file `path` live: data.npy -> data.labels.npy."""
    return path.with_name(f"{path.stem}.labels.npy")


def load_labels(path: Path, n: int) -> tuple[torch.Tensor, tuple[str, ...]] | None:
    """The labels (n,) and class names of data file `path` with n examples, or None when it
    has no labels file."""
    where = labels_path(path)
    if not where.is_file():
        return None
    try:
        array = np.load(where, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{where}: cannot read the labels: {reason}") from None
    return checked_labels(array, n, where, path.name)


def checked_labels(
    array: np.ndarray, n: int, where: object, data: str
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Integer labels `array` of the n examples of `data`, checked, as a tensor (n,) and the
    class names "0" to "K - 1"; `where` names the source in errors."""
    if array.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per example, shape (N,); got "
                        f"shape {array.shape}")  # fmt: skip
    if array.shape[0] != n:
        raise DataError(f"{where}: {array.shape[0]} labels for the {n} examples of {data}")
    if array.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integers, got dtype {array.dtype}")
    if n and int(array.min()) < 0:
        raise DataError(f"{where}: labels must be 0 or more, got {int(array.min())}")
    classes = int(array.max()) + 1 if n else 0
    _check_count(where, classes)
    return torch.from_numpy(array.astype(np.int64)), tuple(str(k) for k in range(classes))


def labels_from_text(
    text: list[str], where: object, data: str
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Labels (n,) and class names from a label column's entries: whole numbers are class
    numbers (checked as a labels file's); any other text names the classes, numbered in
    sorted order."""
    try:
        numbers = np.array([int(entry) for entry in text], dtype=np.int64)
    except (ValueError, OverflowError):
        names = tuple(sorted(set(text)))
        _check_count(where, len(names))
        index = {name: k for k, name in enumerate(names)}
        return torch.tensor([index[entry] for entry in text], dtype=torch.int64), names
    return checked_labels(numbers, len(text), where, data)


def _check_count(where: object, classes: int) -> None:
    if classes > MAX_CLASSES:
        raise DataError(f"{where}: {classes:_} classes; at most {MAX_CLASSES} classes are allowed")
