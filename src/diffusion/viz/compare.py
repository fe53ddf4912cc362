"""Several models side by side: one row of panels (a PNG) and the reverse processes (a GIF)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from diffusion.viz.gif import figure_to_rgb, save_gif
from diffusion.viz.plots import (
    PANEL_INCHES,
    compute_limits,
    draw_points,
    focus_limits,
    new_figure,
    save_png,
    subsample,
    to_points,
)


def compare_figure(data: ArrayLike, panels: Sequence[tuple[str, ArrayLike]], *, limits=None):
    """Data, then one panel per (title, samples), all at the same limits."""
    data_points = subsample(to_points(data))
    sets = [(title, subsample(to_points(x))) for title, x in panels]
    limits = limits or compute_limits(data_points, *[x for _, x in sets])
    fig = new_figure(PANEL_INCHES * (len(sets) + 1), PANEL_INCHES)
    axes = fig.subplots(1, len(sets) + 1, sharex=True, sharey=True)
    draw_points(axes[0], data_points, limits, color="0.35")
    axes[0].set_title("data", fontsize=10)
    for ax, (title, points) in zip(axes[1:], sets, strict=True):
        draw_points(ax, points, limits, background=data_points)
        ax.set_title(title, fontsize=9)
    return fig


def plot_compare(
    data: ArrayLike, panels: Sequence[tuple[str, ArrayLike]], path: str | Path
) -> Path:
    """Write `compare_figure` as a PNG (atomically)."""
    return save_png(compare_figure(data, panels), path)


def compare_gif(
    data: ArrayLike,
    trajectories: Sequence[tuple[str, Sequence[tuple[float, ArrayLike]]]],
    path: str | Path,
    *,
    frames: int = 30,
    fps: float = 8,
) -> Path:
    """Reverse processes side by side: frame j shows each trajectory at the same fraction
    j / (frames - 1) of its own steps (samplers take different numbers of steps); at most
    as many frames as the longest trajectory has states."""
    data_points = subsample(to_points(data))
    tracks = [
        (label, [(t, subsample(to_points(x))) for t, x in traj]) for label, traj in trajectories
    ]
    everything = [x for _, traj in tracks for _, x in traj]
    limits = focus_limits(data_points, everything)  # not EDM's sigma = 80 start
    frames = min(frames, max(len(traj) for _, traj in tracks))  # no repeated frames

    def frame(j: int) -> np.ndarray:
        fig = new_figure(PANEL_INCHES * len(tracks), PANEL_INCHES)
        axes = np.atleast_1d(fig.subplots(1, len(tracks), sharex=True, sharey=True))
        for ax, (label, traj) in zip(axes, tracks, strict=True):
            t, points = traj[round(j * (len(traj) - 1) / max(1, frames - 1))]
            draw_points(ax, points, limits, background=data_points)
            ax.set_title(f"{label}, t = {float(t):.2f}", fontsize=9)
        return figure_to_rgb(fig)

    return save_gif((frame(j) for j in range(frames)), path, fps=fps)
