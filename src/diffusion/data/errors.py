"""The one error type of the data package, and the sample-size check every sampler shares."""

from __future__ import annotations

import operator


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
