"""Still pictures: data next to samples, the loss curve, and the shared drawing helpers.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so
nothing global (backend, current figure, rcParams) changes and no screen is needed. Every
picture is small enough for a README: ~4 x 4 inches per panel at 80 dpi.

Points of dimension d >= 2 are drawn by their first two coordinates (titles say so when
d > 2); 1-D points are drawn as density histograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from diffusion.utils import atomic_write, make_generator

DPI = 80  # 4 in x 80 dpi = 320 px per panel: README-sized
PANEL_INCHES = 4.0
MAX_POINTS = 2000  # points drawn per panel; more only slows drawing and bloats GIFs
HIST_BINS = 60  # bins over the x-limits for 1-D data
DATA_COLOR = "0.75"  # light grey: the data behind the samples
SAMPLE_COLOR = "tab:blue"
ArrayLike = torch.Tensor | np.ndarray


class Limits(NamedTuple):
    """Axis limits ((xmin, xmax), (ymin, ymax)). For 1-D data y is the density axis."""

    x: tuple[float, float]
    y: tuple[float, float]


def to_points(x: ArrayLike) -> np.ndarray:
    """(N,) or (N, D) tensor/array -> (N, D) float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected points of shape (N,) or (N, D) with N > 0, got {x.shape}")
    return x


def subsample(points: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most max_points rows. The permutation depends only on N (seed 0), so successive
    frames of the same particles keep the same subset and the animation stays continuous."""
    n = points.shape[0]
    if n <= max_points:
        return points
    idx = torch.randperm(n, generator=make_generator(0))[:max_points].sort().values
    return points[idx.numpy()]


def _robust_range(values: np.ndarray, quantile: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (-1.0, 1.0)
    lo, hi = np.quantile(values, [quantile, 1.0 - quantile])
    return float(lo), float(hi)


def _pad(lo: float, hi: float, margin: float) -> tuple[float, float]:
    span = hi - lo
    if span <= 0:  # all points equal: open a window around them
        span = max(abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


def histogram_edges(x_limits: tuple[float, float]) -> np.ndarray:
    """The HIST_BINS + 1 bin edges used for every 1-D histogram drawn within x_limits."""
    return np.linspace(x_limits[0], x_limits[1], HIST_BINS + 1)


def compute_limits(*arrays: ArrayLike, margin: float = 0.1, quantile: float = 0.005) -> Limits:
    """Axis limits shared by every panel and frame that shows these arrays.

    Each array contributes its 0.5%-99.5% quantile box (robust to a few stray points), the
    union of the boxes is taken (so a wide frame, e.g. the noise at t = 1, is covered in
    full), and each side is padded by `margin` times the span. d >= 2 uses the first two
    coordinates. For d = 1, x is the value axis and y the density axis, (0, 1.1 * the highest
    histogram bar over the arrays) with the bins of `histogram_edges`.
    """
    if not arrays:
        raise ValueError("compute_limits needs at least one array")
    points = [to_points(a) for a in arrays]
    dims = {p.shape[1] for p in points}
    if len(dims) != 1:
        raise ValueError(f"arrays have different dimensions: {sorted(dims)}")
    boxes = [[_robust_range(p[:, k], quantile) for k in range(min(2, p.shape[1]))] for p in points]
    x = _pad(min(b[0][0] for b in boxes), max(b[0][1] for b in boxes), margin)
    if dims.pop() >= 2:
        y = _pad(min(b[1][0] for b in boxes), max(b[1][1] for b in boxes), margin)
        return Limits(x=x, y=y)
    edges = histogram_edges(x)
    peak = max(_density(p[:, 0], edges).max(initial=0.0) for p in points)
    return Limits(x=x, y=(0.0, 1.1 * peak if peak > 0 else 1.0))


#: a state wider than this many times the data is left out of `focus_limits`. A unit-variance
#: prior is 1-3 times as wide as normalised data; EDM and Poisson flow start at sigma = 80.
MAX_ZOOM_OUT = 4.0


def focus_limits(
    data: ArrayLike, states: Sequence[ArrayLike], max_zoom_out: float = MAX_ZOOM_OUT
) -> Limits:
    """Limits for the data and every state at most `max_zoom_out` times as wide as it.

    The noise at t = 1 of a unit-variance prior is covered in full; the sigma = 80 start of
    EDM or Poisson flow is not (covering it would shrink the data to a dot), so their first
    frames show particles arriving from outside the window.
    """
    data_points = to_points(data)
    axes = min(2, data_points.shape[1])  # for 1-D data, y is the density axis: x only

    def span(points: ArrayLike) -> float:
        limits = compute_limits(points)
        return max(hi - lo for lo, hi in (limits.x, limits.y)[:axes])

    widest = max_zoom_out * span(data_points)
    return compute_limits(data_points, *[x for x in states if span(x) <= widest])


def _density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values[np.isfinite(values)], bins=edges, density=False)
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total else counts.astype(np.float64)


def as_limits(limits: Limits | Sequence[Sequence[float]]) -> Limits:
    """Accept any ((xmin, xmax), (ymin, ymax)) pair."""
    (x0, x1), (y0, y1) = limits
    return Limits(x=(float(x0), float(x1)), y=(float(y0), float(y1)))


def new_figure(width: float = PANEL_INCHES, height: float = PANEL_INCHES) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def coordinate_note(dim: int) -> str:
    """Title suffix saying which coordinates a panel shows."""
    return f" (coords 1-2 of {dim})" if dim > 2 else ""


def draw_points(
    ax: Axes,
    points: np.ndarray,
    limits: Limits,
    *,
    color: str = SAMPLE_COLOR,
    alpha: float = 0.5,
    background: np.ndarray | None = None,
) -> None:
    """Scatter the first two coordinates (or a 1-D density histogram) at fixed limits,
    with an optional `background` point set drawn first in light grey."""
    layers = [] if background is None else [(background, DATA_COLOR, 0.6)]
    layers.append((points, color, alpha))
    for layer, layer_color, layer_alpha in layers:
        layer = subsample(layer)
        if layer.shape[1] == 1:
            values = layer[:, 0]
            ax.hist(
                values[np.isfinite(values)],
                bins=histogram_edges(limits.x),
                density=True,
                histtype="stepfilled",
                color=layer_color,
                alpha=layer_alpha,
            )
        else:
            ax.scatter(
                layer[:, 0], layer[:, 1], s=3, c=layer_color, alpha=layer_alpha, linewidths=0
            )
    ax.set_xlim(*limits.x)
    ax.set_ylim(*limits.y)
    ax.tick_params(labelsize=8)
    if points.shape[1] == 1:
        ax.set_ylabel("density", fontsize=8)


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, facecolor="white"))
    return path


# --------------------------------------------------------------------------------------------
# Data next to samples
# --------------------------------------------------------------------------------------------


def samples_figure(
    data: ArrayLike,
    samples: ArrayLike,
    *,
    title: str | None = None,
    limits: Limits | Sequence[Sequence[float]] | None = None,
) -> Figure:
    """Two panels, data | samples, at the same limits."""
    data_points, sample_points = to_points(data), to_points(samples)
    n_data, n_samples = len(data_points), len(sample_points)
    # Subsample before the limits so 1-D density limits match the histograms drawn.
    data_points, sample_points = subsample(data_points), subsample(sample_points)
    limits = compute_limits(data_points, sample_points) if limits is None else as_limits(limits)
    fig = new_figure(2 * PANEL_INCHES, PANEL_INCHES)
    ax_data, ax_samples = fig.subplots(1, 2, sharex=True, sharey=True)
    note = coordinate_note(data_points.shape[1])
    draw_points(ax_data, data_points, limits, color="0.35")
    ax_data.set_title(f"data (n = {n_data}){note}", fontsize=10)
    draw_points(ax_samples, sample_points, limits)
    ax_samples.set_title(f"samples (n = {n_samples}){note}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_samples(
    data: ArrayLike,
    samples: ArrayLike,
    path: str | Path,
    *,
    title: str | None = None,
    limits: Limits | Sequence[Sequence[float]] | None = None,
) -> Path:
    """Save data and samples side by side as a PNG.

    Args:
        data: (N, D) or (N,) data points.
        samples: (M, D) or (M,) generated points.
        path: where the PNG goes (written atomically).
        title: overall title, e.g. "DDPM, 100 steps, after 20k training steps".
        limits: ((xmin, xmax), (ymin, ymax)); None computes them from both sets.

    Returns:
        The path written.
    """
    return save_png(samples_figure(data, samples, title=title, limits=limits), path)


# --------------------------------------------------------------------------------------------
# Loss curve
# --------------------------------------------------------------------------------------------


def ema_smooth(values: np.ndarray, window: float | None = None) -> np.ndarray:
    """Bias-corrected exponential moving average (as in Adam, Kingma & Ba 2015, Sec. 3).

    window: effective length 1 / (1 - beta); default len(values) / 50, at least 1.
    """
    window = max(1.0, len(values) / 50) if window is None else max(1.0, float(window))
    beta = 1.0 - 1.0 / window
    out = np.empty_like(values)
    avg = 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1.0 - beta) * v
        out[i] = avg / (1.0 - beta ** (i + 1)) if beta > 0 else avg
    return out


def loss_figure(
    losses: Sequence[float] | np.ndarray, *, steps: Sequence[int] | None = None
) -> Figure:
    """Raw loss (light) and its EMA (dark) against the training step, log y when all > 0."""
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no losses to plot")
    x = np.arange(values.size) if steps is None else np.asarray(steps, dtype=np.float64)
    if x.shape != values.shape:
        raise ValueError(f"steps has shape {x.shape}, losses {values.shape}")
    finite = np.isfinite(values)
    fig = new_figure(5.0, 3.5)
    ax = fig.subplots()
    ax.plot(x, values, color=SAMPLE_COLOR, alpha=0.3, linewidth=0.8, label="loss")
    if finite.any():
        ax.plot(x[finite], ema_smooth(values[finite]), color="tab:red", linewidth=1.5, label="EMA")
        if (values[finite] > 0).all():
            ax.set_yscale("log")
    ax.set_xlabel("training step", fontsize=9)
    ax.set_ylabel("loss", fontsize=9)
    ax.set_title(f"training loss ({values.size} steps)", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8)
    return fig


def plot_loss(
    losses: Sequence[float] | np.ndarray,
    path: str | Path,
    *,
    steps: Sequence[int] | None = None,
) -> Path:
    """Save the training loss curve as a PNG.

    Args:
        losses: one loss per logged step.
        path: where the PNG goes (written atomically).
        steps: the training step of each loss; None means 0, 1, 2, ...

    Returns:
        The path written.
    """
    return save_png(loss_figure(losses, steps=steps), path)
