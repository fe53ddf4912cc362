"""Animated GIFs: samples as training goes on, and particles flowing from noise to data.

Each frame is a matplotlib figure rendered on an Agg canvas to an RGB array; the frames are
quantised to one shared palette and written by Pillow, atomically. Axis limits are computed
once for the whole animation, so motion in the picture is motion in the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from diffusion.utils import atomic_write
from diffusion.viz.plots import (
    ArrayLike,
    Limits,
    as_limits,
    compute_limits,
    coordinate_note,
    draw_points,
    focus_limits,
    new_figure,
    subsample,
    to_points,
)

HOLD_LAST_MS = 2000  # the final frame stays up this long, so the result can be read
PALETTE_COLORS = 64  # grey data, blue samples, text: 64 colours are plenty and keep files small


def frame_figure(
    points: ArrayLike, data: ArrayLike | None, *, title: str, limits: Limits
) -> Figure:
    """One animation frame: `data` in light grey behind `points`, at fixed limits."""
    points = to_points(points)
    fig = new_figure()
    ax = fig.subplots()
    background = None if data is None else to_points(data)
    draw_points(ax, points, limits, background=background)
    ax.set_title(title + coordinate_note(points.shape[1]), fontsize=10)
    return fig


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """Render `fig` on its Agg canvas; returns (H, W, 3) uint8."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_gif(images: Iterable[np.ndarray], path: str | Path, *, fps: float) -> Path:
    """Write (H, W, 3) uint8 frames as a looping GIF, atomically; the last frame is held
    for max(HOLD_LAST_MS, one frame) milliseconds."""
    rgb = [Image.fromarray(np.ascontiguousarray(image)) for image in images]
    if not rgb:
        raise ValueError("no frames to write")
    # One palette from the first and last frames (they hold every colour used), so colours
    # do not flicker between frames; no dithering, which would only add noise and bytes.
    sheet = Image.new("RGB", (rgb[0].width, 2 * rgb[0].height))
    sheet.paste(rgb[0], (0, 0))
    sheet.paste(rgb[-1], (0, rgb[0].height))
    palette = sheet.quantize(colors=PALETTE_COLORS)
    frames = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in rgb]
    frame_ms = round(1000.0 / fps)
    durations = [frame_ms] * (len(frames) - 1) + [max(HOLD_LAST_MS, frame_ms)]
    path = Path(path)

    def write(tmp: Path) -> None:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            optimize=True,
        )

    atomic_write(path, write)
    return path


def _frame_limits(
    arrays: Sequence[np.ndarray], limits: Limits | Sequence[Sequence[float]] | None
) -> Limits:
    return compute_limits(*arrays) if limits is None else as_limits(limits)


# --------------------------------------------------------------------------------------------
# Samples over training
# --------------------------------------------------------------------------------------------


def training_figures(
    frames: Sequence[tuple[int, ArrayLike]],
    data: ArrayLike,
    *,
    limits: Limits | Sequence[Sequence[float]] | None = None,
) -> Iterator[Figure]:
    """One figure per (training_step, samples) frame, all with the same limits."""
    return _state_figures(frames, data, lambda step: f"samples after step {int(step)}", limits)


def _state_figures(
    states: Sequence[tuple[float, ArrayLike]],
    data: ArrayLike,
    title: Callable[[float], str],
    limits: Limits | Sequence[Sequence[float]] | None,
) -> Iterator[Figure]:
    """One figure per (key, points) state over the data, with limits shared by all of them."""
    data_points = subsample(to_points(data))
    point_sets = [(key, subsample(to_points(x))) for key, x in states]
    limits = _frame_limits([data_points] + [x for _, x in point_sets], limits)
    for key, points in point_sets:
        yield frame_figure(points, data_points, title=title(key), limits=limits)


def training_gif(
    frames: Sequence[tuple[int, ArrayLike]],
    data: ArrayLike,
    path: str | Path,
    *,
    limits: Limits | Sequence[Sequence[float]] | None = None,
    fps: float = 5,
) -> Path:
    """Animate samples as training goes on, over the data in light grey.

    Args:
        frames: (training_step, samples (N, D)) pairs, in training order.
        data: (M, D) data points, drawn behind every frame.
        path: where the GIF goes (written atomically).
        limits: ((xmin, xmax), (ymin, ymax)) for every frame; None: from data and all frames.
        fps: frames per second; the last frame is held for HOLD_LAST_MS.

    Returns:
        The path written.
    """
    figures = training_figures(frames, data, limits=limits)
    return save_gif((figure_to_rgb(fig) for fig in figures), path, fps=fps)


# --------------------------------------------------------------------------------------------
# Reverse process
# --------------------------------------------------------------------------------------------


def reverse_figures(
    trajectory: Sequence[tuple[float, ArrayLike]],
    data: ArrayLike,
    *,
    limits: Limits | Sequence[Sequence[float]] | None = None,
) -> Iterator[Figure]:
    """One figure per (t, x_t) state. Limits cover the data and every state not far wider
    (`focus_limits`): the noise at t = 1 of a unit-variance prior, not EDM's sigma = 80."""
    if limits is None:
        limits = focus_limits(data, [x for _, x in trajectory])
    return _state_figures(
        trajectory, data, lambda t: f"reverse process, t = {float(t):.2f}", limits
    )


def reverse_gif(
    trajectory: Sequence[tuple[float, ArrayLike]],
    data: ArrayLike,
    path: str | Path,
    *,
    limits: Limits | Sequence[Sequence[float]] | None = None,
    fps: float = 10,
) -> Path:
    """Animate particles flowing from noise (t = 1) to data (t = 0), over the data in grey.

    Args:
        trajectory: (t, x_t (N, D)) pairs in sampling order, e.g. collected by a sampler's
            callback; the same N particles in every state keep the motion continuous.
        data: (M, D) data points, drawn behind every frame.
        path: where the GIF goes (written atomically).
        limits: ((xmin, xmax), (ymin, ymax)); None: `focus_limits` of the data and states.
        fps: frames per second; the last frame (the samples) is held for HOLD_LAST_MS.

    Returns:
        The path written.
    """
    figures = reverse_figures(trajectory, data, limits=limits)
    return save_gif((figure_to_rgb(fig) for fig in figures), path, fps=fps)
