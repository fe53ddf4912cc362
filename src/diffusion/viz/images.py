"""Pictures of image runs: grids of images, samples beside real images, and the two GIFs.

Images arrive as rows (n, C*H*W) or (n, C, H, W) in the data's own units; `value_range`
(low, high) maps them to grey levels or colours. One channel is drawn in grey, three as RGB;
two or four channels (an alpha channel) are drawn without their alpha. Each image is enlarged
by a whole number of screen pixels per image pixel, so an 8 x 8 digit stays sharp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from diffusion.utils import atomic_write
from diffusion.viz.gif import figure_to_rgb, save_gif
from diffusion.viz.plots import new_figure, save_png

GRID_PIXELS = 256  # about this many screen pixels across a grid's images
PAD = 1  # screen pixels between the images of a grid (and around them)
BACKGROUND = 0.5  # grey level of the padding


def to_unit(
    images: torch.Tensor | np.ndarray, shape: Sequence[int], value_range: tuple[float, float]
) -> np.ndarray:
    """(n, H, W, 3) float in [0, 1]: images in data units mapped through `value_range`."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    c, h, w = shape
    x = x.reshape(-1, c, h, w).astype(np.float64)
    low, high = value_range
    x = np.clip((x - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat(x[:, :1], 3, axis=1) if c in (1, 2) else x[:, :3]  # drop alpha
    return rgb.transpose(0, 2, 3, 1)  # (n, H, W, 3)


def image_grid(
    images: torch.Tensor | np.ndarray,
    shape: Sequence[int],
    value_range: tuple[float, float],
    *,
    columns: int | None = None,
) -> np.ndarray:
    """One (rows * (H * k + PAD) + PAD, ...) x 3 uint8 picture of the images in a grid, each
    enlarged k times (k so that the grid is about GRID_PIXELS wide)."""
    unit = to_unit(images, shape, value_range)  # (n, H, W, 3)
    n, h, w, _ = unit.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    k = max(1, GRID_PIXELS // (columns * w))
    big = unit.repeat(k, axis=1).repeat(k, axis=2)  # (n, H*k, W*k, 3)
    cell_h, cell_w = h * k + PAD, w * k + PAD
    sheet = np.full((rows * cell_h + PAD, columns * cell_w + PAD, 3), BACKGROUND)
    for i in range(n):
        r, c = divmod(i, columns)
        sheet[PAD + r * cell_h : (r + 1) * cell_h, PAD + c * cell_w : (c + 1) * cell_w] = big[i]
    return (sheet * 255 + 0.5).astype(np.uint8)


def grids_figure(panels: Sequence[tuple[str, np.ndarray]], title: str | None = None) -> Figure:
    """Image grids side by side, each under its caption."""
    fig = new_figure(3.2 * len(panels), 3.6 if title else 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (caption, grid) in zip(axes, panels, strict=True):
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(caption, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_image_samples(
    data: torch.Tensor,
    samples: torch.Tensor,
    path: str | Path,
    *,
    shape: Sequence[int],
    value_range: tuple[float, float],
    title: str,
    count: int = 64,
) -> Path:
    """samples.png: a grid of real images beside a grid of samples."""
    n = min(count, data.shape[0], samples.shape[0])
    real = image_grid(data[:n], shape, value_range)
    fake = image_grid(samples[:n], shape, value_range)
    return save_png(grids_figure([("data", real), ("samples", fake)], title), path)


def image_training_gif(
    frames: Sequence[tuple[int, torch.Tensor]],
    path: str | Path,
    *,
    shape: Sequence[int],
    value_range: tuple[float, float],
    count: int = 64,
    fps: float = 6,
) -> Path:
    """training.gif for images: the same prior draw sampled by the EMA model at each
    snapshot, so every cell of the grid follows one sample as the network learns."""
    images = []
    for step, x in frames:
        grid = image_grid(x[:count], shape, value_range)
        images.append(figure_to_rgb(grids_figure([(f"samples at step {step}", grid)])))
    return save_gif(images, path, fps=fps)


def image_reverse_gif(
    frames: Sequence[tuple[float, torch.Tensor, torch.Tensor]],
    path: str | Path,
    *,
    shape: Sequence[int],
    value_range: tuple[float, float],
    fps: float = 8,
) -> Path:
    """reverse.gif for images: x_t from noise (t = 1) to data (t = 0), with the network's
    prediction of the clean image at each step beside it. Frames are (t, x_t, x0_hat)."""
    images = []
    for t, x, x0 in frames:
        panels = [
            (f"x_t at t = {t:.3f}", image_grid(x, shape, value_range)),
            ("predicted clean image", image_grid(x0, shape, value_range)),
        ]
        images.append(figure_to_rgb(grids_figure(panels)))
    return save_gif(images, path, fps=fps)


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    shape: Sequence[int],
    value_range: tuple[float, float],
) -> Path:
    """The images as one grid, written as a PNG (atomically)."""
    grid = image_grid(images, shape, value_range)
    path = Path(path)
    atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    return path
