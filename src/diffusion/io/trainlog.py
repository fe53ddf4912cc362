"""The training log: one CSV row per training step, written as the run goes.

``log.csv`` in a run directory has the columns of `COLUMNS`::

    step     the step just taken (1, 2, ...)
    loss     its training loss (the mean over the global batch; NaN when skipped)
    lr       the learning rate it used
    grad_norm  the gradient norm before clipping
    skipped  1 if the step changed nothing because the loss or gradient was not finite
    seconds  training wall time since the run began (summed over resumes), when the host
             reached the step (on CUDA: when the step was queued)

Rows are appended (and flushed to the disk) each time the trainer looks at the loss, every
`diffusion.training.loop.SYNC_EVERY` steps and before every checkpoint, so a killed run keeps
its log up to its last checkpoint at least. A resumed run first drops the rows after the step
it resumes from, so that every step is in the log exactly once.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path

from diffusion.utils import atomic_write_text

COLUMNS = ("step", "loss", "lr", "grad_norm", "skipped", "seconds")
LOG_NAME = "log.csv"


def _format(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "nan"


class TrainingLog:
    """Appends rows to `path` (a CSV file with the header `COLUMNS`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def start(self, step: int) -> None:
        """Begin (step 0: a new file) or continue from `step`: rows after it are dropped
        (they belong to steps the resumed run will take again)."""
        header = ",".join(COLUMNS) + "\n"
        kept = [] if step == 0 else [r for r in read_log(self.path) if r["step"] <= step]
        lines = [header] + [self._line(r) for r in kept]
        atomic_write_text(self.path, "".join(lines))

    def append(self, rows: Iterable[dict]) -> None:
        """Append rows (dicts with the keys of `COLUMNS`) and flush them to the disk."""
        text = "".join(self._line(r) for r in rows)
        if not text:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def _line(row: dict) -> str:
        return (
            f"{int(row['step'])},{_format(row['loss'])},{_format(row['lr'])},"
            f"{_format(row['grad_norm'])},{int(row['skipped'])},{float(row['seconds']):.3f}\n"
        )


def read_log(path: str | Path) -> list[dict]:
    """The rows of a training log (missing file: no rows). A last line cut short by a kill
    during the write is left out."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for record in csv.DictReader(f):
            try:
                rows.append(
                    {
                        "step": int(record["step"]),
                        "loss": float(record["loss"]),
                        "lr": float(record["lr"]),
                        "grad_norm": float(record["grad_norm"]),
                        "skipped": int(record["skipped"]),
                        "seconds": float(record["seconds"]),
                    }
                )
            except (TypeError, ValueError, KeyError):
                break  # a torn last line
    return rows
