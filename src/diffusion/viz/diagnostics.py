"""Pictures of where a model is wrong (see `diffusion.measure.diagnostics`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffusion.viz.gif import figure_to_rgb, save_gif
from diffusion.viz.plots import PANEL_INCHES, new_figure, save_png

MODEL_COLOR = "tab:blue"
REFERENCE_COLOR = "tab:orange"


def plot_error_by_time(errors, path: str | Path, *, reference_name: str) -> Path:
    """Left: training loss of model and reference per log-SNR bin; right: the eps error."""
    fig = new_figure(2 * PANEL_INCHES, PANEL_INCHES)
    left, right = fig.subplots(1, 2)
    x = np.asarray(errors.log_snr)
    left.plot(x, errors.model_loss, "o-", color=MODEL_COLOR, ms=3, label="model")
    left.plot(x, errors.reference_loss, "o-", color=REFERENCE_COLOR, ms=3,
              label=f"{reference_name}: irreducible")  # fmt: skip
    left.set_yscale("log")
    left.set_title("training loss per time bin", fontsize=10)
    left.legend(fontsize=8)
    right.plot(x, errors.eps_error, "o-", color=MODEL_COLOR, ms=3)
    right.set_yscale("log")
    right.set_title("model vs exact: E|eps - eps*|^2 / D", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("log SNR = log(alpha^2 / sigma^2)  (noise <- -> data)", fontsize=8)
        ax.grid(alpha=0.3)
    return save_png(fig, path)


def plot_nfe_curve(curve, path: str | Path, *, reference_name: str) -> Path:
    """SW ratio against NFE: the reference (discretisation error) and the model (both)."""
    fig = new_figure(PANEL_INCHES * 1.25, PANEL_INCHES)
    ax = fig.subplots()
    ax.plot(
        curve.nfe, curve.model, "o-", color=MODEL_COLOR, label="model: discretisation + learning"
    )
    ax.plot(curve.nfe, curve.reference, "o-", color=REFERENCE_COLOR,
            label=f"{reference_name}: discretisation only")  # fmt: skip
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("sliced-Wasserstein / data floor")
    ax.set_title(f"{curve.sampler}, {curve.grid} grid", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_png(fig, path)


def plot_memorisation(memo, path: str | Path, *, copy_distances=None) -> Path:
    """Histograms of the distance to the nearest training point: samples, fresh data and,
    when given, a perfect memoriser's samples (the training set's exact score)."""
    fig = new_figure(PANEL_INCHES * 1.25, PANEL_INCHES)
    ax = fig.subplots()
    values = [memo.samples.numpy(), memo.fresh.numpy()]
    if copy_distances is not None:
        values.append(copy_distances.numpy())
    top = max(float(np.quantile(v, 0.99)) for v in values) or 1.0
    bins = np.linspace(0, top, 50)
    ax.hist(memo.fresh.numpy(), bins=bins, density=True, alpha=0.5, color="0.5",
            label="fresh data")  # fmt: skip
    ax.hist(memo.samples.numpy(), bins=bins, density=True, histtype="step", lw=1.5,
            color=MODEL_COLOR, label=f"model samples (median ratio {memo.median_ratio:.2f})")  # fmt: skip
    if copy_distances is not None:
        ax.hist(copy_distances.numpy(), bins=bins, density=True, histtype="step", lw=1.5,
                color="tab:red", label="perfect memoriser's samples")  # fmt: skip
    ax.set_xlabel("distance to the nearest training point")
    ax.set_title("memorisation", fontsize=10)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def plot_density(grid, path: str | Path, *, data=None) -> Path:
    """The model's density (probability-flow likelihood) beside the exact one, same colours."""
    panels = [("model density (PF-ODE)", grid.model.numpy())]
    if grid.has_reference:
        panels.append(("exact density", grid.reference.numpy()))
    fig = new_figure(PANEL_INCHES * len(panels), PANEL_INCHES)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    extent = (float(grid.x[0]), float(grid.x[-1]), float(grid.y[0]), float(grid.y[-1]))
    top = max(float(p.max()) for _, p in panels)
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.imshow(values, origin="lower", extent=extent, vmin=0, vmax=top, cmap="viridis",
                  aspect="auto")  # fmt: skip
        ax.set_title(title, fontsize=10)
    if data is not None and not grid.has_reference:
        axes[0].scatter(data[:500, 0], data[:500, 1], s=1, c="white", alpha=0.4)
    return save_png(fig, path)


def field_gif(frames: Sequence, path: str | Path, *, reference_name: str, fps: float = 3) -> Path:
    """Arrows of the score field, model beside reference, one frame per noise level. Each
    frame divides both fields by the reference's median arrow length and caps arrows at
    1.5, so directions stay readable both near the data and where the model is far off."""
    images = []
    for frame in frames:
        fig = new_figure(2 * PANEL_INCHES, PANEL_INCHES)
        axes = fig.subplots(1, 2)
        pts = frame.points.numpy()
        unit = max(float(frame.reference.norm(dim=1).median()), 1e-12)
        spacing = float(np.ptp(pts[:, 0])) / max(1, round(len(pts) ** 0.5) - 1)
        for ax, values, title in ((axes[0], frame.model, "model"),
                                  (axes[1], frame.reference, reference_name)):  # fmt: skip
            v = values.numpy() / unit
            length = np.linalg.norm(v, axis=1, keepdims=True)
            v = v * np.minimum(1.0, 1.5 / np.maximum(length, 1e-12))
            ax.quiver(pts[:, 0], pts[:, 1], v[:, 0], v[:, 1], angles="xy", scale_units="xy",
                      scale=1 / (0.8 * spacing), width=0.004)  # fmt: skip
            ax.set_title(f"{title}: score, noise {frame.noise:.2f}", fontsize=10)
            ax.set_aspect("equal")
        images.append(figure_to_rgb(fig))
    return save_gif(images, path, fps=fps)
