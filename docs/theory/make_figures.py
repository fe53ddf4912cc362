"""Regenerate the pictures of the theory notes (docs/theory/*.md) into docs/images/theory/.

    python docs/theory/make_figures.py [--only NAME] [--out DIR]

Each figure is a function `name(out_dir) -> path` in the `FIGURES` registry; `--only NAME`
makes one of them. Everything runs on the CPU in seconds, from fixed seeds.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.cm import viridis
from matplotlib.colors import PowerNorm

from diffusion.data.images import DIGITS_RANGE, load_digits
from diffusion.data.mixture import GaussianMixture, load_mixture
from diffusion.data.normalize import Normalizer
from diffusion.measure.fokker_planck import (
    Grid,
    histogram_density,
    l1_distance,
    mixture_density,
    solve,
)
from diffusion.measure.metrics import random_directions, sliced_wasserstein
from diffusion.measure.oracle import GuidedOracleDenoiser, Oracle
from diffusion.processes import NCSN, VE, VP
from diffusion.samplers.grids import GRIDS, make_grid
from diffusion.samplers.registry import get_sampler
from diffusion.samplers.sampling import sample
from diffusion.utils import make_generator
from diffusion.viz.plots import new_figure, save_png

DOCS = Path(__file__).resolve().parent.parent
OUT = DOCS / "images" / "theory"
MIXTURE = DOCS / "examples" / "mixture.json"  # the mixture of docs/exact.md


def fokker_planck(out_dir: Path) -> Path:
    """Note 2: the VP forward density on a grid, in closed form, and as particles."""
    mixture, process = load_mixture(MIXTURE), VP()
    times = (0.0, 0.1, 0.3, 1.0)
    grid = Grid.square(5.0, 128)
    solution = solve(process, mixture_density(mixture, grid), grid, times)
    coarse = Grid.square(5.0, 64)  # particles: bins 2x wider, so the noise stays readable
    generator, n = make_generator(0), 100_000
    x0 = mixture.sample(n, generator).double()
    fig = new_figure(8.0, 6.4)
    axes = fig.subplots(3, len(times), sharex=True, sharey=True)
    for m, t in enumerate(times):
        tt = torch.tensor(t, dtype=torch.float64)
        alpha, sigma = process.alpha(tt).item(), process.sigma(tt).item()
        exact = mixture_density(mixture, grid, alpha, sigma)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        particles = histogram_density(alpha * x0 + sigma * noise, coarse)
        rows = (solution.densities[m], exact, particles)
        vmax = exact.max().item()  # one colour scale per column
        for row, (ax, density) in enumerate(zip(axes[:, m], rows, strict=True)):
            ax.imshow(density.T.numpy(), origin="lower", extent=(-5, 5, -5, 5), vmin=0,
                      vmax=vmax, cmap="viridis", interpolation="nearest")  # fmt: skip
            ax.set_xticks([-4, 0, 4])
            ax.set_yticks([-4, 0, 4])
            ax.tick_params(labelsize=7)
            if row == 0:
                error = l1_distance(solution.densities[m], exact, grid)
                ax.set_title(f"t = {t:g}: $\\alpha$ = {alpha:.2f}, $\\sigma$ = {sigma:.2f}\n"
                             f"L1(grid, exact) = {error:.1e}", fontsize=8)  # fmt: skip
    for ax, label in zip(
        axes[:, 0], ("Fokker-Planck grid", "closed form", "particles"), strict=True
    ):
        ax.set_ylabel(label, fontsize=9)
    fig.suptitle("VP forward process: density of x_t from the data (t = 0) to the prior (t = 1)",
                 fontsize=10)  # fmt: skip
    return save_png(fig, out_dir / "fokker_planck.png")


def memorisation(out_dir: Path) -> Path:
    """Note 9: the exact score of 10 training digits samples nothing but those digits."""
    digits = load_digits().pixels.flatten(1).double()  # (1797, 64), grey levels 0..16
    train = Normalizer.for_range(*DIGITS_RANGE, 64).normalize(digits[:10]).double()
    process, n = VP(), 500
    generator = make_generator(0)
    x = process.prior((n, 64), generator=generator).double()
    times = make_grid(process, 20, "logsnr").double()
    levels, largest = [], []

    def weights(step) -> None:  # the mean largest posterior weight over the 10 images
        s = torch.tensor(step.s, dtype=torch.float64)
        alpha, sigma = process.alpha(s), process.sigma(s)
        if sigma > 0:
            logits = -0.5 * torch.cdist(step.x, alpha * train) ** 2 / sigma**2
            levels.append(float(sigma / alpha))
            largest.append(float(torch.softmax(logits, 1).amax(1).mean()))

    samples = get_sampler("dpm-solver++")(Oracle.points(train, process).denoiser(), x, times,
                                          generator=generator, callback=weights)  # fmt: skip
    nearest = torch.cdist(samples, train).amin(1)
    fig = new_figure(8.0, 3.0)
    left, right = fig.subfigures(1, 2, width_ratios=(1.9, 1.0))
    rows = [train, samples[:10], samples[10:20]]
    grid = torch.cat([torch.cat([image.reshape(8, 8) for image in row], 1) for row in rows])
    ax = left.subplots()
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([4, 12, 20], ["training set", "samples", "samples"], fontsize=8)
    ax.set_title(f"the exact score of 10 digits: {n} samples; the largest distance\n"
                 f"from a sample to its nearest training digit: {float(nearest.max()):.2g}",
                 fontsize=9)  # fmt: skip
    ax = right.subplots()
    ax.semilogx(levels, largest, "o-", markersize=3)
    ax.axhline(0.1, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("noise level sigma / alpha", fontsize=8)
    ax.set_ylabel("mean largest posterior weight", fontsize=8)
    ax.invert_xaxis()
    ax.tick_params(labelsize=7)
    ax.set_title("the weights collapse onto one image", fontsize=9)
    return save_png(fig, out_dir / "memorisation.png")


def guidance_tilted(out_dir: Path) -> Path:
    """Note 10: guided samples (exact field, w = 3) beside the tilted law p(x|c)^w p(x)^(1-w)."""
    mixture = GaussianMixture.isotropic(
        torch.tensor([0.5, 0.5]), torch.tensor([[-1.0], [1.0]]), torch.tensor([0.6, 0.6])
    )
    process, scale = VP(), 3.0
    oracle = Oracle(mixture, process)
    grid = torch.linspace(-4, 4, 8001, dtype=torch.float64)[:, None]
    dx = float(grid[1, 0] - grid[0, 0])
    ones = torch.ones(grid.shape[0], dtype=torch.float64)
    own = Oracle(mixture.class_mixture(0)).exact_at(grid, ones, 0 * ones).log_prob
    whole = Oracle(mixture).exact_at(grid, ones, 0 * ones).log_prob
    tilted = (scale * own + (1 - scale) * whole).exp()
    tilted = tilted / (tilted.sum() * dx)

    def draw(sampler: str, times: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        generator = make_generator(seed)
        x = process.prior((n, 1), generator=generator).double()
        denoiser = GuidedOracleDenoiser(oracle, torch.zeros(n), scale)
        return get_sampler(sampler)(denoiser, x, times, generator=generator, callback=None)[:, 0]

    ode = draw("dpm-solver++", make_grid(process, 60, "logsnr").double(), 20_000, 1)
    sde = draw("euler-maruyama", process.time_grid(200).double(), 5_000, 2)
    mean = float((tilted * grid[:, 0]).sum() * dx)
    variance = float((tilted * (grid[:, 0] - mean) ** 2).sum() * dx)
    fig = new_figure(7.0, 3.6)
    ax = fig.subplots()
    edges = torch.linspace(-4, 2, 121).numpy()
    for values, name, colour in ((ode, "guided probability-flow ODE", "C0"),
                                 (sde, "guided reverse SDE", "C2")):  # fmt: skip
        label = f"{name}: mean {float(values.mean()):.2f}, var {float(values.var()):.3f}"
        ax.hist(values.numpy(), bins=edges, density=True, alpha=0.45, color=colour, label=label)
    x = grid[:, 0].numpy()
    ax.plot(x, tilted.numpy(), "k-", linewidth=1.5,
            label=f"tilted law p(x|c)^3 p(x)^-2: mean {mean:.2f}, var {variance:.3f}")  # fmt: skip
    ax.plot(x, own.exp().numpy(), "k:", linewidth=1.0, label="the class p(x|c): mean -1, var 0.36")
    ax.plot(x, whole.exp().numpy(), color="grey", linewidth=0.8, label="the data p(x)")
    ax.set_xlim(-4, 2.5)
    ax.set_xlabel("x", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("class c = N(-1, 0.6^2) of 0.5 N(-1, 0.6^2) + 0.5 N(1, 0.6^2), guidance w = 3, "
                 "exact field", fontsize=9)  # fmt: skip
    return save_png(fig, out_dir / "guidance_tilted.png")


# --------------------------------------------------------------------------------------------
# Notes 1-7: the pictures a reader needs (issue 21)
# --------------------------------------------------------------------------------------------

# The 1-D mixture of notes 3 and 4: three modes of different weights and widths.
MIXTURE_1D = GaussianMixture.isotropic(
    torch.tensor([0.3, 0.5, 0.2]), torch.tensor([[-2.0], [0.5], [2.5]]),
    torch.tensor([0.3, 0.4, 0.25]),
)  # fmt: skip
LINE_1D = "0.3 N(-2, 0.3^2) + 0.5 N(0.5, 0.4^2) + 0.2 N(2.5, 0.25^2)"


def _density_map(process, mixture: GaussianMixture, times: torch.Tensor, xs: torch.Tensor):
    """p_t(x) of a 1-D mixture, exact (the noised law is a mixture): (len(times), len(xs))."""
    t = times.double().repeat_interleave(len(xs))
    x = xs.double().repeat(len(times))[:, None]
    return Oracle(mixture, process).log_prob(x, t).exp().reshape(len(times), len(xs))


def score_field(out_dir: Path) -> Path:
    """Note 1: the exact score of a 2-D mixture, as arrows over its density contours."""
    mixture = load_mixture(MIXTURE)
    oracle, lim = Oracle(mixture), 4.5
    fine = torch.linspace(-lim, lim, 181, dtype=torch.float64)
    gx, gy = torch.meshgrid(fine, fine, indexing="xy")
    points = torch.stack([gx.flatten(), gy.flatten()], 1)
    ones = torch.ones(points.shape[0], dtype=torch.float64)
    density = oracle.exact_at(points, ones, 0 * ones).log_prob.exp().reshape(gx.shape)
    coarse = torch.linspace(-lim + 0.25, lim - 0.25, 19, dtype=torch.float64)
    ax_, ay_ = torch.meshgrid(coarse, coarse, indexing="xy")
    arrows = torch.stack([ax_.flatten(), ay_.flatten()], 1)
    ones = torch.ones(arrows.shape[0], dtype=torch.float64)
    score = oracle.exact_at(arrows, ones, 0 * ones).score
    norm = score.norm(dim=1, keepdim=True)
    direction = score / norm  # unit arrows: the length of the score spans four decades
    fig = new_figure(5.2, 4.6)
    ax = fig.subplots()
    ax.contourf(gx.numpy(), gy.numpy(), density.numpy(), levels=12, cmap="Greys")
    arrows_drawn = ax.quiver(arrows[:, 0].numpy(), arrows[:, 1].numpy(),
                             direction[:, 0].numpy(), direction[:, 1].numpy(),
                             norm[:, 0].log10().numpy(), cmap="viridis", scale=26,
                             width=0.004, pivot="mid")  # fmt: skip
    bar = fig.colorbar(arrows_drawn, ax=ax, shrink=0.8)
    bar.set_label("log10 |score|", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    ax.plot(*mixture.means.T.numpy(), "r+", markersize=9, label="component means")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("the score $\\nabla \\log p(x)$ of the example mixture (exact, t = 0):\n"
                 "unit arrows coloured by length, over the density p(x)", fontsize=9)  # fmt: skip
    return save_png(fig, out_dir / "score_field.png")


def langevin_modes(out_dir: Path) -> Path:
    """Note 2: plain Langevin keeps each point in its starting basin; annealing fixes the
    weights (the experiment of the notes' test, after Song & Ermon 2019, Fig. 3)."""
    target = GaussianMixture.isotropic(
        torch.tensor([0.8, 0.2]), torch.tensor([[-4.0, -4.0], [4.0, 4.0]]), torch.ones(2)
    )
    oracle, generator, n, step, lim = Oracle(target), make_generator(3), 1000, 0.05, 8.0
    ones = torch.ones(n, dtype=torch.float64)
    x = 2 * lim * torch.rand(n, 2, generator=generator, dtype=torch.float64) - lim
    panels = [("uniform start", x)]
    for k in range(1, 1001):  # unadjusted Langevin with the exact score, x <- x + g s + ...
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x = x + step * oracle.exact_at(x, ones, 0 * ones).score + math.sqrt(2 * step) * noise
        if k in (100, 1000):
            panels.append((f"plain Langevin,\n{k} steps of {step:g}", x))
    denoiser = Oracle(target, NCSN()).denoiser()
    annealed = sample(denoiser, (n, 2), generator=generator).x
    panels.append(("annealed Langevin (NCSN,\n10 levels x 100 steps)", annealed))
    fine = torch.linspace(-lim, lim, 161, dtype=torch.float64)
    gx, gy = torch.meshgrid(fine, fine, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    g1 = torch.ones(grid.shape[0], dtype=torch.float64)
    density = oracle.exact_at(grid, g1, 0 * g1).log_prob.exp().reshape(gx.shape)
    fig = new_figure(8.4, 2.9)
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (title, points) in zip(axes, panels, strict=True):
        ax.contour(gx.numpy(), gy.numpy(), density.numpy(), levels=5, colors="0.6",
                   linewidths=0.6)  # fmt: skip
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=2, alpha=0.5, linewidths=0)
        heavy = (points.sum(1) < 0).double().mean().item()
        ax.set_title(f"{title}\nshare in the 0.8 mode: {heavy:.2f}", fontsize=8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    fig.suptitle("target 0.8 N((-4, -4), I) + 0.2 N((4, 4), I), exact score, 1000 points",
                 fontsize=9)  # fmt: skip
    return save_png(fig, out_dir / "langevin_modes.png")


def forward_density(out_dir: Path) -> Path:
    """Note 3: p_t(x) of a 1-D mixture over (t, x) for VP and VE, exact, with slices."""
    lim, slices = 6.0, (0.0, 0.1, 0.3, 0.6, 1.0)
    xs = torch.linspace(-lim, lim, 301, dtype=torch.float64)
    times = torch.linspace(0, 1, 201, dtype=torch.float64)
    fig = new_figure(8.4, 5.6)
    axes = fig.subplots(2, 2, sharey="row", height_ratios=(1.3, 1.0))
    for column, process in enumerate((VP(), VE())):
        name = type(process).__name__
        density = _density_map(process, MIXTURE_1D, times, xs)
        ax = axes[0, column]
        image = ax.imshow(density.T.numpy(), origin="lower", aspect="auto",
                          extent=(0, 1, -lim, lim), cmap="magma",
                          norm=PowerNorm(0.4, vmin=0, vmax=1.0))  # fmt: skip
        for t in slices:
            ax.axvline(t, color="white", linewidth=0.5, linestyle=":")
        ax.set_xlabel("t", fontsize=8)
        ax.set_ylabel("x", fontsize=8)
        ax.tick_params(labelsize=7)
        tt = torch.tensor(1.0, dtype=torch.float64)
        ax.set_title(f"{name}: $p_t(x)$ from the data (t = 0) to the prior (t = 1),\n"
                     f"$\\alpha_1$ = {process.alpha(tt).item():.3f}, "
                     f"$\\sigma_1$ = {process.sigma(tt).item():.2f}; dotted: the slices below",
                     fontsize=9)  # fmt: skip
        ax = axes[1, column]
        rows = _density_map(process, MIXTURE_1D, torch.tensor(slices), xs)
        colours = viridis(torch.linspace(0, 0.9, len(slices)).numpy())
        for t, row, colour in zip(slices, rows, colours, strict=True):
            tt = torch.tensor(t, dtype=torch.float64)
            label = f"t = {t:g}: $\\alpha$ = {process.alpha(tt).item():.2f}, "
            label += f"$\\sigma$ = {process.sigma(tt).item():.2f}"
            ax.plot(xs.numpy(), row.numpy(), color=colour, linewidth=1.2, label=label)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(0, 0.9)
        ax.set_xlabel("x", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="upper right")
    axes[1, 0].set_ylabel("$p_t(x)$ at five times", fontsize=8)
    bar = fig.colorbar(image, ax=axes[0, :], shrink=0.9, pad=0.01)
    bar.set_label("$p_t(x)$, on a power-0.4 scale", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"the exact noised law of {LINE_1D}", fontsize=9)
    return save_png(fig, out_dir / "forward_density.png")


def reverse_trajectories(out_dir: Path) -> Path:
    """Note 4: reverse paths of the exact PF-ODE and reverse SDE (VP), over p_t(x)."""
    process, lim = VP(), 4.0
    xs = torch.linspace(-lim, lim, 241, dtype=torch.float64)
    grid_t = torch.linspace(0, 1, 201, dtype=torch.float64)
    density = _density_map(process, MIXTURE_1D, grid_t, xs)
    denoiser = Oracle(MIXTURE_1D, process).denoiser()
    modes = MIXTURE_1D.means[:, 0]
    fig = new_figure(8.4, 3.8)
    axes = fig.subplots(1, 2, sharey=True)
    runs = (("heun", 100, 40, "probability-flow ODE (Heun, 100 steps)"),
            ("euler-maruyama", 250, 15, "reverse SDE (Euler-Maruyama, 250 steps)"))  # fmt: skip
    for ax, (sampler, steps, n, title) in zip(axes, runs, strict=True):
        start = process.prior((40, 1), generator=make_generator(0)).double()[:n]
        times, path = [1.0], [start[:, 0]]

        def record(step, times=times, path=path) -> None:
            times.append(step.s)
            path.append(step.x[:, 0])

        get_sampler(sampler)(denoiser, start.clone(), process.time_grid(steps).double(),
                             generator=make_generator(1), callback=record)  # fmt: skip
        path = torch.stack(path, 1)  # (n, steps + 1)
        ax.contourf(grid_t.numpy(), xs.numpy(), density.T.numpy() ** 0.4,
                    levels=torch.linspace(0, 1, 11).numpy(), cmap="Greys", extend="max")  # fmt: skip
        nearest = (path[:, -1:] - modes[None]).abs().argmin(1)  # the mode each path reaches
        for row, k in zip(path.numpy(), nearest.tolist(), strict=True):
            ax.plot(times, row, color=f"C{k}", linewidth=0.8, alpha=0.9)
        ax.set_xlim(1, 0)  # read left to right: from the prior (t = 1) to the data (t = 0)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("t (sampling runs from t = 1 to t = 0)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{title}\n{n} paths from the same prior draws, exact score",
                     fontsize=9)  # fmt: skip
    axes[0].set_ylabel("x (colour: the mode a path ends in)", fontsize=8)
    fig.suptitle(f"VP reverse process of {LINE_1D}, over its exact $p_t(x)$ (grey levels of $p_t^{0.4}$)",
                 fontsize=9)  # fmt: skip
    return save_png(fig, out_dir / "reverse_trajectories.png")


def poisson_field(out_dir: Path) -> Path:
    """Note 6: the electric field lines of a few charges in the augmented half-plane (PFGM).

    The toolkit's PoissonFlow only draws PFGM++'s noise, so the field is computed here from
    its formula (Xu et al. 2022, Eq. 2-3, with N = 1 data dimension + 1 augmented one): a unit
    charge at y on the line z = 0 gives E(x, z) = (x - y, z) / ((x - y)^2 + z^2) / (2 pi),
    and the data's field is the average over the charges.
    """
    charges = torch.tensor([-2.3, -2.0, -1.7, 0.2, 0.5, 0.8, 1.1, 2.5])
    cluster = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])  # three groups of 3, 4 and 1 charges
    lines_per, radius, far = 12, 0.03, 60.0
    angles = (torch.arange(lines_per, dtype=torch.float64) + 0.5) * math.pi / lines_per
    start = torch.cat([torch.stack([c + radius * angles.cos(), radius * angles.sin()], 1)
                       for c in charges.double()])  # fmt: skip
    source = torch.arange(len(charges)).repeat_interleave(lines_per)

    def direction(p: torch.Tensor) -> torch.Tensor:  # the unit field at points p (L, 2)
        diff = p[:, None, :] - torch.stack([charges.double(), 0 * charges.double()], 1)[None]
        field = (diff / diff.square().sum(-1, keepdim=True)).mean(1)
        return field / field.norm(dim=1, keepdim=True)

    p, paths, done = start, [start], torch.zeros(len(start), dtype=torch.bool)
    for _ in range(3000):  # RK4 in arc length; the step grows with the distance from 0
        h = (0.02 + 0.04 * p.norm(dim=1, keepdim=True)) * (~done)[:, None]
        k1 = direction(p)
        k2 = direction(p + 0.5 * h * k1)
        k3 = direction(p + 0.5 * h * k2)
        k4 = direction(p + h * k3)
        p = p + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        paths.append(p)
        done = p.norm(dim=1) > far
        if bool(done.all()):
            break
    paths = torch.stack(paths, 1)  # (L, steps, 2)
    exit_angle = torch.atan2(p[:, 1], p[:, 0])  # where each line meets the far half-circle
    fig = new_figure(8.4, 3.9)
    left, right = fig.subplots(1, 2, width_ratios=(1.5, 1.0))
    group = cluster[source].numpy()  # the group each line leaves from
    for line, k in zip(paths.numpy(), group, strict=True):
        left.plot(line[:, 0], line[:, 1], color=f"C{k}", linewidth=0.6)
    left.plot(charges.numpy(), 0 * charges.numpy(), "ko", markersize=3, label="charges (data)")
    left.set_xlim(-6, 6)
    left.set_ylim(0, 6)
    left.set_aspect("equal")
    left.set_xlabel("x (data space)", fontsize=8)
    left.set_ylabel("z (augmented)", fontsize=8)
    left.tick_params(labelsize=7)
    left.legend(fontsize=7, loc="upper left")
    left.set_title(f"field lines of {len(charges)} unit charges, {lines_per} per charge\n"
                   "leaving each charge at evenly spaced angles", fontsize=9)  # fmt: skip
    edges = torch.linspace(0, 180, 13).numpy()
    degrees = exit_angle.rad2deg().numpy()
    stacked = [degrees[group == k] for k in range(3)]
    shares = [f"{(group == k).mean():.3g}" for k in range(3)]
    right.hist(stacked, bins=edges, stacked=True, color=["C0", "C1", "C2"], density=True,
               label=[f"from group {k + 1} (charge {share})" for k, share in enumerate(shares)])  # fmt: skip
    right.axhline(1 / 180, color="k", linewidth=1.0, linestyle="--", label="uniform")
    right.set_xlim(0, 180)
    right.set_ylim(0, 2.0 / 180)
    right.set_xlabel(f"exit angle at radius {far:g} (degrees)", fontsize=8)
    right.set_ylabel("density", fontsize=8)
    right.tick_params(labelsize=7)
    right.legend(fontsize=7, loc="upper right")
    right.set_title("far away the lines end uniformly;\neach group keeps its share, in order",
                    fontsize=9)  # fmt: skip
    fig.suptitle("PFGM (Xu et al. 2022): the data as charges on the plane z = 0; "
                 "sampling follows a line back down", fontsize=9)  # fmt: skip
    return save_png(fig, out_dir / "poisson_field.png")


def metric_floors(out_dir: Path) -> Path:
    """Note 7: the floor as a distribution: the sliced Wasserstein distance between two fresh
    draws of the data, at two sample sizes, beside that of a slightly wrong law."""
    mixture, repeats, sizes = load_mixture(MIXTURE), 80, (250, 1000)
    wrong = mixture.affine(torch.tensor([0.3, 0.0]), torch.tensor([1.0, 1.0]))  # shifted
    generator = make_generator(0)
    directions = random_directions(2, 64, make_generator(1))  # the same for every distance

    def distances(n: int, law: GaussianMixture) -> torch.Tensor:
        return torch.tensor([sliced_wasserstein(mixture.sample(n, generator),
                                                law.sample(n, generator), directions=directions)
                             for _ in range(repeats)])  # fmt: skip

    fig = new_figure(7.0, 4.4)
    axes = fig.subplots(len(sizes), 1, sharex=True)
    edges = torch.linspace(0, 0.5, 51).numpy()
    for ax, n in zip(axes, sizes, strict=True):
        floor, off = distances(n, mixture), distances(n, wrong)
        ax.hist(floor.numpy(), bins=edges, color="C0", alpha=0.6,
                label=f"data vs data (the floor): median {floor.median():.3f}")  # fmt: skip
        ax.hist(off.numpy(), bins=edges, color="C3", histtype="step", linewidth=1.4,
                label=f"data vs the shifted law: median {off.median():.3f}")  # fmt: skip
        ax.axvline(floor.median().item(), color="C0", linestyle="--", linewidth=1.0)
        ax.axvline(off.median().item(), color="C3", linestyle="--", linewidth=1.0)
        overlap = (off < floor.quantile(0.95)).double().mean().item()
        ax.set_title(f"n = {n} points per draw: {overlap:.0%} of the shifted law's distances "
                     "fall below the floor's 95th percentile", fontsize=9)  # fmt: skip
        ax.set_xlim(0, 0.5)
        ax.set_ylabel(f"count of {repeats} draws", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("sliced Wasserstein distance $SW_2$ (64 fixed directions)", fontsize=8)
    fig.suptitle("the example mixture against fresh draws of itself, and against itself "
                 "shifted by 0.3 in x", fontsize=9)  # fmt: skip
    return save_png(fig, out_dir / "metric_floors.png")


def time_grids(out_dir: Path) -> Path:
    """Note 5: where the four time grids of make_grid stop on VP, 10 steps."""
    process, steps = VP(), 10
    fig = new_figure(8.4, 3.0)
    left, right = fig.subplots(1, 2)
    for row, kind in enumerate(GRIDS):
        times = make_grid(process, steps, kind).double()
        level = (process.sigma(times) / process.alpha(times))[:-1]  # tau = sigma / alpha > 0
        left.plot(times.numpy(), [row] * len(times), "o-", markersize=4, linewidth=0.6)
        right.plot(level.numpy(), [row] * len(level), "o-", markersize=4, linewidth=0.6)
    for ax in (left, right):
        ax.set_yticks(range(len(GRIDS)), GRIDS, fontsize=8)
        ax.set_ylim(len(GRIDS) - 0.5, -0.5)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", linewidth=0.3)
    left.set_xlim(-0.02, 1.02)
    left.set_xlabel("time t", fontsize=8)
    left.set_title("the 11 times $1 = t_0 > \\dots > t_{10} = 0$", fontsize=9)
    right.set_xscale("log")
    right.set_xlim(1e-3, 300)
    right.set_xlabel("noise level $\\tau = \\sigma_t / \\alpha_t$ (t > 0)", fontsize=8)
    right.set_title("the same stops as noise levels", fontsize=9)
    fig.suptitle("make_grid(VP(), 10, kind): where a 10-step sampler stops", fontsize=9)
    return save_png(fig, out_dir / "time_grids.png")


FIGURES: dict[str, Callable[[Path], Path]] = {
    "fokker_planck": fokker_planck,
    "memorisation": memorisation,
    "guidance_tilted": guidance_tilted,
    "score_field": score_field,
    "langevin_modes": langevin_modes,
    "forward_density": forward_density,
    "reverse_trajectories": reverse_trajectories,
    "poisson_field": poisson_field,
    "metric_floors": metric_floors,
    "time_grids": time_grids,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES), help="make only this figure")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # small tensors: one thread beats two contended ones (10x on sorts)
    for name in [args.only] if args.only else FIGURES:
        print(f"wrote {FIGURES[name](args.out)}")


if __name__ == "__main__":
    main()
