"""Pictures and GIFs: valid files, fixed limits, 1-D and 3-D inputs, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from diffusion.utils import make_generator
from diffusion.viz import gif, plots
from diffusion.viz.gif import (
    HOLD_LAST_MS,
    reverse_figures,
    reverse_gif,
    training_figures,
    training_gif,
)
from diffusion.viz.plots import (
    MAX_POINTS,
    Limits,
    compute_limits,
    ema_smooth,
    focus_limits,
    loss_figure,
    plot_loss,
    plot_samples,
    samples_figure,
    subsample,
)


def _ring(n: int, dim: int = 2, seed: int = 0) -> torch.Tensor:
    g = make_generator(seed)
    angle = torch.rand(n, generator=g) * 2 * torch.pi
    x = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (N, 2)
    x = x + 0.05 * torch.randn(n, 2, generator=g)
    if dim == 1:
        return x[:, 0]
    return torch.cat([x, torch.randn(n, dim - 2, generator=g)], dim=1)


def _gif_frames(path: Path) -> tuple[int, tuple[int, int], list[int]]:
    """Frame count, size in pixels and per-frame durations (ms) of a GIF."""
    with Image.open(path) as im:
        assert im.format == "GIF"
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        return im.n_frames, im.size, durations


def _axes_limits(fig: Figure) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    return [(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes]


# ---------------------------------------------------------------- limits


def test_compute_limits_is_robust_padded_and_covers_every_array() -> None:
    narrow = np.stack([np.linspace(0, 1, 1001), np.linspace(-2, 2, 1001)], axis=1)
    limits = compute_limits(narrow, margin=0.1)
    # 0.5% / 99.5% quantiles of a uniform grid, padded by 10% of the span on each side.
    assert limits.x == pytest.approx((0.005 - 0.099, 0.995 + 0.099))
    assert limits.y == pytest.approx((-1.98 - 0.396, 1.98 + 0.396))
    # One stray point does not stretch the axes...
    stray = np.concatenate([narrow, [[1e6, 1e6]]])
    assert compute_limits(stray).x[1] < 2
    # ...but a genuinely wider array (noise at t = 1) is covered in full.
    wide = 5.0 * narrow - 2.0  # its quantile box contains the narrow one
    assert compute_limits(narrow, wide) == compute_limits(wide)
    assert isinstance(limits, Limits) and isinstance(limits, tuple)


def test_compute_limits_1d_uses_density_axis() -> None:
    x = _ring(4000, dim=1)
    limits = compute_limits(x)
    assert limits.y[0] == 0.0
    edges = plots.histogram_edges(limits.x)
    peak = np.histogram(x.numpy(), bins=edges, density=True)[0].max()
    assert limits.y[1] == pytest.approx(1.1 * peak)


def test_subsample_is_bounded_and_stable() -> None:
    points = np.arange(5000.0)[:, None]
    a, b = subsample(points), subsample(points)
    assert len(a) == MAX_POINTS and np.array_equal(a, b)
    assert np.array_equal(subsample(points[:10]), points[:10])


# ---------------------------------------------------------------- still pictures


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_plot_samples_writes_png(tmp_path: Path, dim: int) -> None:
    data, samples = _ring(500, dim, seed=1), _ring(300, dim, seed=2) * 1.2
    path = plot_samples(data, samples, tmp_path / "samples.png", title="after 100 steps")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (2 * 4 * plots.DPI, 4 * plots.DPI)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_samples_figure_panels_share_limits_and_say_what_they_show() -> None:
    data, samples = _ring(500, 3, seed=1), _ring(300, 3, seed=2) * 3
    fig = samples_figure(data, samples)
    (left, right) = _axes_limits(fig)
    assert left == right
    assert left[0] == pytest.approx(compute_limits(data, samples).x)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["data (n = 500) (coords 1-2 of 3)", "samples (n = 300) (coords 1-2 of 3)"]
    fixed = samples_figure(data, samples, limits=((-4, 4), (-3, 3)))
    assert _axes_limits(fixed)[0] == ((-4, 4), (-3, 3))


def test_plot_loss(tmp_path: Path) -> None:
    losses = np.exp(-np.arange(300) / 100) + 0.1
    path = plot_loss(losses, tmp_path / "loss.png", steps=np.arange(300) * 10)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (5 * plots.DPI, int(3.5 * plots.DPI))
    assert loss_figure(losses).axes[0].get_yscale() == "log"
    assert loss_figure(losses - 0.5).axes[0].get_yscale() == "linear"  # negative losses
    with pytest.raises(ValueError):
        loss_figure(losses, steps=[1, 2, 3])


def test_ema_smooth_known_answers() -> None:
    assert ema_smooth(np.full(100, 3.0)) == pytest.approx(np.full(100, 3.0))  # bias-corrected
    step = np.r_[np.zeros(50), np.ones(50)]
    smooth = ema_smooth(step, window=10)
    # After k steps of 1 the EMA (beta = 0.9) is 1 - 0.9^k, up to the tiny debiasing factor.
    assert smooth[59] == pytest.approx(1 - 0.9**10, rel=0.02)
    assert smooth[49] == 0.0


# ---------------------------------------------------------------- GIFs


def test_training_gif_frames_size_durations_and_file_size(tmp_path: Path) -> None:
    data = _ring(3000, seed=3)
    g = make_generator(4)
    frames = [
        (100 * i, (i / 39) * data + (1 - i / 39) * torch.randn(3000, 2, generator=g))
        for i in range(40)
    ]
    path = training_gif(frames, data, tmp_path / "training.gif", fps=5)
    n_frames, size, durations = _gif_frames(path)
    assert n_frames == 40
    assert size == (4 * plots.DPI, 4 * plots.DPI)
    assert durations[:-1] == [200] * 39 and durations[-1] == HOLD_LAST_MS
    assert path.stat().st_size < 1.5e6  # README-friendly
    assert list(tmp_path.iterdir()) == [path]


def test_training_frames_share_limits_and_titles_say_when() -> None:
    data = _ring(400, seed=5)
    frames = [(step, data * scale) for step, scale in ((0, 4.0), (10, 2.0), (20, 1.0))]
    figures = list(training_figures(frames, data))
    limits = {str(_axes_limits(fig)) for fig in figures}
    assert len(limits) == 1  # identical axes in every frame
    assert figures[0].axes[0].get_xlim() == pytest.approx(
        compute_limits(data, *[x for _, x in frames]).x
    )
    assert [fig.axes[0].get_title() for fig in figures] == [
        "samples after step 0",
        "samples after step 10",
        "samples after step 20",
    ]


def test_reverse_frames_cover_the_noise_at_t1() -> None:
    data = _ring(1000, seed=6)
    noise = 0.7 * torch.randn(1000, 2, generator=make_generator(7))  # 3.5x as wide as the ring
    trajectory = [(1 - k / 4, (k / 4) * data + (1 - k / 4) * noise) for k in range(5)]
    figures = list(reverse_figures(trajectory, data))
    assert len({str(_axes_limits(fig)) for fig in figures}) == 1
    (x0, x1), (y0, y1) = _axes_limits(figures[-1])[0]
    inside = (noise[:, 0] > x0) & (noise[:, 0] < x1) & (noise[:, 1] > y0) & (noise[:, 1] < y1)
    assert inside.float().mean() > 0.99
    assert figures[1].axes[0].get_title() == "reverse process, t = 0.75"


def test_reverse_frames_leave_out_noise_far_wider_than_the_data() -> None:
    # EDM starts at sigma = 80: covering it would shrink the data to a dot.
    data = _ring(1000, seed=6)
    noise = torch.randn(1000, 2, generator=make_generator(7))
    trajectory = [(1.0, 80.0 * noise), (0.5, 0.7 * noise), (0.0, data)]
    (x0, x1), (y0, y1) = _axes_limits(next(iter(reverse_figures(trajectory, data))))[0]
    assert (x0, x1) == pytest.approx(compute_limits(data, 0.7 * noise).x)
    assert x1 - x0 < 6 and y1 - y0 < 6  # the 3.5x-wide state is still covered in full
    assert focus_limits(data, [80.0 * noise], max_zoom_out=1e3) == compute_limits(
        data, 80.0 * noise
    )


def test_focus_limits_1d_measures_the_value_axis() -> None:
    data = _ring(1000, dim=1, seed=3)
    wide = 50.0 * torch.randn(1000, generator=make_generator(4))
    assert focus_limits(data, [wide]).x == compute_limits(data).x
    assert focus_limits(data, [wide], max_zoom_out=1e3).x == compute_limits(data, wide).x


@pytest.mark.parametrize("dim", [1, 3])
def test_gifs_accept_1d_and_3d(tmp_path: Path, dim: int) -> None:
    data = _ring(500, dim, seed=8)
    noise = torch.randn(500, dim, generator=make_generator(9)).squeeze(-1) if dim == 1 else None
    noise = torch.randn_like(data) if noise is None else noise
    trajectory = [(1 - k / 5, (k / 5) * data + (1 - k / 5) * noise) for k in range(6)]
    path = reverse_gif(trajectory, data, tmp_path / "reverse.gif", fps=10)
    n_frames, size, durations = _gif_frames(path)
    assert n_frames == 6 and size == (4 * plots.DPI, 4 * plots.DPI)
    assert durations[0] == 100 and durations[-1] == HOLD_LAST_MS
    figure = next(iter(reverse_figures(trajectory, data)))
    title = figure.axes[0].get_title()
    assert title.endswith("(coords 1-2 of 3)") if dim == 3 else title == "reverse process, t = 1.00"
    if dim == 1:
        assert figure.axes[0].get_ylabel() == "density"
        assert figure.axes[0].get_ylim()[0] == 0.0
    path = training_gif([(0, noise), (5, data)], data, tmp_path / "training.gif")
    assert _gif_frames(path)[0] == 2


# ---------------------------------------------------------------- atomic writes


def _fail_after_partial_write(path, *args, **kwargs) -> None:
    Path(path).write_bytes(b"partial")
    raise OSError("disk full")


def test_failed_png_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        Figure, "savefig", lambda self, path, *a, **k: _fail_after_partial_write(path)
    )
    target = tmp_path / "samples.png"
    with pytest.raises(OSError, match="disk full"):
        plot_samples(_ring(50), _ring(50, seed=1), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_gif_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        gif.Image.Image, "save", lambda self, path, *a, **k: _fail_after_partial_write(path)
    )
    target = tmp_path / "training.gif"
    with pytest.raises(OSError, match="disk full"):
        training_gif([(0, _ring(50)), (1, _ring(50, seed=1))], _ring(50), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
