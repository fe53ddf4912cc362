"""TensorBoard event files for a run (``--log tensorboard``), beside the CSV log.

Written into ``RUN/tensorboard/``: per step ``train/loss``, ``train/lr``,
``train/grad_norm`` and ``train/skipped`` (the rows of `diffusion.io.trainlog`, as they are
flushed), the samples at each snapshot (an image grid for images, a scatter plot for
points), and at the end every metric's value, floor and ratio (``metrics/NAME/ratio``, ...).
A resumed run reopens the folder with ``purge_step`` at its first new step, so events that a
killed run wrote after its last checkpoint are dropped by TensorBoard and every step is
there once. TensorBoard is an optional dependency: ``pip install
'diffusion-toolkit[tensorboard]'``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from diffusion.errors import ConfigError

FOLDER = "tensorboard"
SNAPSHOT_IMAGES = 16  # images of a snapshot shown in TensorBoard


def check_tensorboard() -> None:
    """ConfigError (one line) when TensorBoard cannot be written here."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("--log tensorboard needs the tensorboard package: pip install "
                          "'diffusion-toolkit[tensorboard]'") from None  # fmt: skip


class TensorBoardLog:
    """Event files in `run_dir`/tensorboard, continuing after step `step` (0: a new run)."""

    def __init__(self, run_dir: str | Path, step: int, *, shape: tuple[int, ...],
                 value_range: tuple[float, float] | None = None) -> None:  # fmt: skip
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.shape, self.value_range = tuple(shape), value_range
        # purge_step: events at or after it (written by a run killed after its checkpoint)
        # are dropped when TensorBoard reads the folder
        self.writer = SummaryWriter(
            str(Path(run_dir) / FOLDER), purge_step=step + 1 if step else None
        )

    def append(self, rows: list[dict]) -> None:
        """The training log's rows (see `diffusion.io.trainlog`)."""
        for row in rows:
            for name in ("loss", "lr", "grad_norm", "skipped"):
                self.writer.add_scalar(f"train/{name}", float(row[name]), row["step"])
        self.writer.flush()

    def snapshot(self, step: int, samples: torch.Tensor) -> None:
        """Samples (n, d) of the model in data space at training step `step`."""
        if len(self.shape) == 3 and self.value_range is not None:
            from diffusion.viz.images import to_unit

            unit = to_unit(samples[:SNAPSHOT_IMAGES], self.shape, self.value_range)
            self.writer.add_images("samples", unit, step, dataformats="NHWC")
        else:
            from diffusion.viz.plots import new_figure

            fig = new_figure(3.2, 3.2)
            ax = fig.subplots()
            points = samples.numpy()
            ax.scatter(points[:, 0], points[:, 1] if points.shape[1] > 1 else np.zeros(len(points)),
                       s=2, alpha=0.5)  # fmt: skip
            ax.set_title(f"samples after step {step}", fontsize=9)
            self.writer.add_figure("samples", fig, step, close=False)
        self.writer.flush()

    def metrics(self, metrics: dict, step: int) -> None:
        """The run's final metrics (metrics.json's numbers), at the last step."""
        for name, value in metrics.items():
            if isinstance(value, dict):
                for key in ("value", "floor", "ratio"):
                    number = value.get(key)
                    if isinstance(number, int | float) and math.isfinite(number):
                        self.writer.add_scalar(f"metrics/{name}/{key}", number, step)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"metrics/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
