"""The one error type of the data package, the sample-size check every sampler shares, and
the check of a file name a user gives."""

from __future__ import annotations

import operator
import os
from pathlib import Path


class DataError(ValueError):
    """A data set cannot be built or sampled; the message is one line naming the cause."""


def check_sample_size(n: object) -> int:
    """Return `n` as a positive int, or raise DataError."""
    if isinstance(n, bool):  # bool is an int subclass; True points is a bug, not a count
        raise DataError(f"number of points must be a positive integer, got {n!r}")
    try:
        count = operator.index(n)  # accepts int and numpy/torch integer scalars, not floats
    except TypeError:
        raise DataError(f"number of points must be a positive integer, got {n!r}") from None
    if count <= 0:
        raise DataError(f"number of points must be a positive integer, got {count}")
    return count


def user_path(spec: str | os.PathLike[str]) -> Path:
    """`spec` as a Path with `~` expanded; DataError when the name cannot be a file's (a
    NUL byte, an unknown user after `~`, a name longer than the system allows)."""
    text = os.fspath(spec)
    if "\0" in text:
        raise DataError(f"{text!r}: a file name cannot hold a NUL byte")
    try:
        path = Path(text).expanduser()
        path.exists()  # ENAMETOOLONG and the like surface here, not later
    except (RuntimeError, OSError) as error:  # RuntimeError: "~user" without a home
        shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
        reason = getattr(error, "strerror", None) or str(error)
        raise DataError(f"{shown}: not a usable file name ({reason})") from None
    return path
