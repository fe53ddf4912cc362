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

from diffusion.data.mixture import load_mixture
from diffusion.measure.fokker_planck import (
    Grid,
    histogram_density,
    l1_distance,
    mixture_density,
    solve,
)
from diffusion.processes import VP
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


FIGURES: dict[str, Callable[[Path], Path]] = {
    "fokker_planck": fokker_planck,
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
