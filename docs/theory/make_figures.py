"""Regenerate the pictures of the theory notes (docs/theory/*.md) into docs/images/theory/.

    python docs/theory/make_figures.py [--only NAME] [--out DIR]

Each figure is a function `name(out_dir) -> path` in the `FIGURES` registry; `--only NAME`
makes one of them. Everything runs on the CPU in seconds, from fixed seeds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

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
from diffusion.measure.oracle import GuidedOracleDenoiser, Oracle
from diffusion.processes import VP
from diffusion.samplers.grids import make_grid
from diffusion.samplers.registry import get_sampler
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


FIGURES: dict[str, Callable[[Path], Path]] = {
    "fokker_planck": fokker_planck,
    "memorisation": memorisation,
    "guidance_tilted": guidance_tilted,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES), help="make only this figure")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [args.only] if args.only else FIGURES:
        print(f"wrote {FIGURES[name](args.out)}")


if __name__ == "__main__":
    main()
