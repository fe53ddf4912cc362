"""Few-step sampling: the fewest network evaluations (NFE) each solver x time grid needs to
reach a sliced-Wasserstein ratio of 1.1, with the exact score and with trained models.

    python benchmarks/samplers.py                                  # exact score: vp, edm, flow
    python benchmarks/samplers.py --models                         # also the default recipes
    python benchmarks/samplers.py --digits                         # the digits bar (10 vs 100)
    python benchmarks/samplers.py --tuned --json benchmarks/samplers.json
    python benchmarks/samplers.py --redraw benchmarks/samplers_exact.json benchmarks/samplers_tuned.json

Exact part: a random 2-D Gaussian mixture of 5 components with full covariances (drawn from
`--mixture-seed`, not the example file), sampled with its exact score (`Oracle`) under each
process. Model part (`--models`): each process's default recipe trained on the swiss roll.
For each solver, grid and NFE budget, `--repeats` sample sets of `--n` points (fresh prior
draws each, the same for every row) are compared with fresh data (one set of data draws and
directions for every row); the table shows the median SW ratio. The ratio of a perfect
sampler is itself noisy, so the same statistic is measured for fresh data in place of
samples, and for an accurate solve (DPM-Solver++(3M), 500 log-SNR steps) from the same prior
draws: the level a solver can reach from those draws, not exactly 1. On a 5-component
mixture one draw's own fluctuation (the components' counts) moves the ratio by tens of
percent, far more than a few-step solver's error at the floor, so "reached" means: within
10% of that accurate solve's ratio (the last column), which is the discretisation error
alone (the score is exact). `--tuned` adds grids
tuned for each process, solver and steps by `diffusion.samplers.tuning.tune_grid` on other
prior draws than those measured (against the exact field, or the model's own trajectories).

Digits part (`--digits`): the default digits model (trained here, ~2-3 minutes); the Fréchet
ratio at 10 NFE with the best few-step setting against the ratio at 100 NFE (bar: within
10%), medians over `--repeats` draws.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from oracle import random_mixture as oracle_spec  # benchmarks/oracle.py

from diffusion.data import get_dataset
from diffusion.data.mixture import GaussianMixture
from diffusion.io.runs import load_model
from diffusion.measure.metrics import SlicedWassersteinRatio
from diffusion.samplers import sample
from diffusion.samplers.grids import make_grid
from diffusion.streams import stream
from diffusion.training.config import TrainConfig
from diffusion.workflows.exact import exact_model
from diffusion.workflows.run import run_training

#: (label, sampler, options): the deterministic solvers, each one evaluation per step but Heun
SOLVERS = [
    ("euler", "euler", {}),
    ("heun", "heun", {}),
    ("dpm++2m", "dpm-solver++", {"order": 2}),
    ("dpm++3m", "dpm-solver++", {"order": 3}),
    ("unipc-2", "unipc", {"order": 2}),
    ("unipc-3", "unipc", {"order": 3}),
    ("deis-2", "deis", {"order": 2}),
    ("deis-3", "deis", {"order": 3}),
]
GRIDS = ["uniform", "quadratic", "karras", "logsnr"]
BUDGETS = [5, 8, 10, 12, 15, 20, 30, 50]
BAR = 1.1


def random_mixture(seed: int, k: int = 5) -> GaussianMixture:
    """`benchmarks/oracle.py`'s random mixture spec (means in [-3, 3]^2, random full
    covariances and weights), with k components, as a mixture."""
    spec = oracle_spec(seed, k)
    return GaussianMixture.full(*(torch.tensor(spec[key], dtype=torch.float64)
                                  for key in ("weights", "means", "covariances")))  # fmt: skip


def steps_for(sampler: str, budget: int) -> int:
    """Steps whose NFE is at most `budget` (Heun: 2K - 1)."""
    return (budget + 1) // 2 if sampler == "heun" else budget


def measure(model, score, *, sampler, options, times, n, repeats, seed) -> tuple[float, int]:
    """Median SW ratio (`score`, against fixed data draws) over `repeats` fresh prior draws,
    and the NFE of one draw."""
    ratios, nfe = [], 0
    for r in range(repeats):
        with torch.no_grad():
            result = sample(model.denoiser("cpu"), (n, model.dim), sampler=sampler, times=times,
                            generator=stream(seed + r, "eval"), **options)  # fmt: skip
        nfe = result.nfe
        x = model.to_data(result.x).double()
        ratios.append(score(x) if torch.isfinite(x).all() else math.inf)
    return statistics.median(ratios), nfe


def tuned_times(model, sampler: str, options: dict, steps: int, seed: int) -> torch.Tensor:
    from diffusion.samplers.tuning import tune_grid

    x1 = model.process.prior((2000, model.dim), generator=stream(seed, "eval")).double()
    denoiser = model.denoiser("cpu")
    return tune_grid(denoiser, x1, sampler=sampler, steps=steps, options=options).times


def table(name: str, model, sample_data, args, grids: list[str]) -> dict:
    """Rows of (solver, grid, budget, NFE, ratio) and the fewest NFE reaching BAR."""
    start = time.perf_counter()
    # One set of data draws and directions for every row (the statistic of compare_to_data).
    score = SlicedWassersteinRatio(lambda k, g: sample_data(k, g).double(), args.n,
                                   stream(args.seed, "metrics"))  # fmt: skip
    control = statistics.median(
        score(sample_data(args.n, stream(args.seed + r, "data")).double())
        for r in range(args.repeats)
    )
    # The level an exact solve reaches from the same prior draws (their own fluctuation).
    converged, _ = measure(model, score, sampler="dpm-solver++", options={"order": 3},
                           times=make_grid(model.process, 500, "logsnr"), n=args.n,
                           repeats=args.repeats, seed=args.seed)  # fmt: skip
    print(f"\n== {name}: fresh data in place of samples scores {control:.2f}, an accurate "
          f"solve from the same prior draws {converged:.2f} (medians of {args.repeats}) ==",
          flush=True)  # fmt: skip
    print(
        f"{'solver':<10}{'grid':<10}"
        + "".join(f"{b:>7}" for b in args.budgets)
        + "  NFE to 1.1x solve"
    )
    rows, reach = [], {}
    for label, sampler, options in SOLVERS:
        if label not in args.solvers:
            continue
        for grid in grids:
            cells, first = [], None
            for budget in args.budgets:
                steps = steps_for(sampler, budget)
                try:
                    if grid == "tuned":
                        if budget > args.tune_max:
                            cells.append("")
                            continue
                        times = tuned_times(model, sampler, options, steps, args.seed + 1000)
                    else:
                        times = make_grid(model.process, steps, grid)
                    ratio, nfe = measure(model, score, sampler=sampler, options=options,
                                         times=times, n=args.n, repeats=args.repeats,
                                         seed=args.seed)  # fmt: skip
                except ValueError as exc:  # a grid or sampler this process refuses
                    cells.append("-")
                    rows.append({"solver": label, "grid": grid, "budget": budget,
                                 "refused": str(exc)})  # fmt: skip
                    continue
                rows.append({"solver": label, "grid": grid, "budget": budget, "nfe": nfe,
                             "sw_ratio": round(ratio, 3)})  # fmt: skip
                cells.append(f"{ratio:.2f}")
                if first is None and ratio <= BAR * converged:
                    first = nfe
                if first is not None and budget >= 10:  # reached, and the 10-NFE cell is in
                    break
            reach[f"{label} {grid}"] = first
            cells += [""] * (len(args.budgets) - len(cells))
            print(f"{label:<10}{grid:<10}" + "".join(f"{c:>7}" for c in cells)
                  + f"  {first if first is not None else '-':>5}", flush=True)  # fmt: skip
    return {"name": name, "control": control, "converged": converged, "rows": rows,
            "nfe_to_1.1x_converged": reach,
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def digits_bar(args) -> dict:
    """The default digits model: Fréchet ratio at 10 NFE against 100 NFE."""
    from diffusion.workflows.run import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "digits"
        print("\ntraining the default digits model ...", flush=True)
        tic = time.perf_counter()
        run_training(TrainConfig(dataset="digits").validate(), run_dir, progress=False)
        print(f"trained in {time.perf_counter() - tic:.0f} s", flush=True)
        model = load_model(run_dir)
    dataset = get_dataset("digits")
    settings = [("heun 50 (99 NFE)", "heun", 50, "uniform", {}),
                ("unipc-3 100", "unipc", 100, "logsnr", {"order": 3})]  # fmt: skip
    settings += [(f"{label} 10 {grid}", sampler, steps_for(sampler, 10), grid, options)
                 for label, sampler, options in SOLVERS if label in args.solvers
                 for grid in ("uniform", "logsnr", "karras")]  # fmt: skip
    rows = []
    for name, sampler, steps, grid, options in settings:
        ratios, nfe = [], 0
        for r in range(args.repeats):
            try:
                result = evaluate(model, dataset, n=2000, seed=args.seed + r, sampler=sampler,
                                  steps=steps, grid=grid, **options)  # fmt: skip
            except ValueError as exc:
                print(f"{name:<28} refused: {exc}")
                break
            ratios.append(result.image["frechet"]["ratio"])
            nfe = result.nfe
        if ratios:
            rows.append({"setting": name, "nfe": nfe, "frechet_ratio": statistics.median(ratios),
                         "draws": ratios})  # fmt: skip
            print(f"{name:<28}{nfe:>5} NFE  Fréchet ratio {statistics.median(ratios):.3f}",
                  flush=True)  # fmt: skip
    return {"process": model.config.process, "rows": rows}


def draw(paths: list[Path], out: Path) -> None:
    """Quality against NFE from the JSON files of earlier runs: one panel per table (process),
    each solver on its best standard grid (solid) and on its tuned grid (dashed, where a
    file has one), the accurate solve's level x 1.1 (grey)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables: dict[str, list[dict]] = {}
    for path in paths:
        for t in json.loads(path.read_text())["tables"]:
            tables.setdefault(t["name"], []).append(t)
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), squeeze=False)
    colours = dict(zip([s[0] for s in SOLVERS], plt.get_cmap("tab10").colors, strict=False))
    for ax, (name, parts) in zip(axes[0], tables.items(), strict=True):
        rows = [r for t in parts for r in t["rows"] if "sw_ratio" in r]
        for label in colours:
            mine = [r for r in rows if r["solver"] == label]
            if not mine:
                continue
            standard = [r for r in mine if r["grid"] != "tuned"]
            at10 = {r["grid"]: r["sw_ratio"] for r in standard if r["budget"] == 10}
            if at10:
                best = min(at10, key=at10.get)
                line = sorted((r["nfe"], r["sw_ratio"]) for r in standard if r["grid"] == best)
                ax.plot(*zip(*line, strict=True), "-o", ms=3, color=colours[label],
                        label=f"{label} ({best})")  # fmt: skip
            tuned = sorted((r["nfe"], r["sw_ratio"]) for r in mine if r["grid"] == "tuned")
            if tuned:
                ax.plot(*zip(*tuned, strict=True), "--s", ms=3, color=colours[label],
                        label=f"{label} (tuned)")  # fmt: skip
        ax.axhline(BAR * parts[0]["converged"], color="0.5", lw=1, label="accurate solve x 1.1")
        ax.set(xscale="log", yscale="log", xlabel="network evaluations", ylabel="SW ratio",
               title=name, ylim=(0.8, 30))  # fmt: skip
        ax.set_xticks([5, 10, 20, 50], labels=["5", "10", "20", "50"])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("Quality against NFE with the exact score (best standard grid at 10 NFE, tuned)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", nargs="+", default=["vp", "edm", "flow"])
    parser.add_argument("--solvers", nargs="+", default=[s[0] for s in SOLVERS])
    parser.add_argument("--budgets", type=int, nargs="+", default=BUDGETS)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mixture-seed", type=int, default=7)
    parser.add_argument("--tuned", action="store_true", help="add tuned grids")
    parser.add_argument("--tune-max", type=int, default=12, help="tune grids up to this NFE")
    parser.add_argument("--models", action="store_true", help="also the default recipes")
    parser.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--digits", action="store_true", help="the digits 10-vs-100 NFE bar")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--redraw", type=Path, nargs="+", metavar="JSON",
                        help="only draw the picture (--figure) from earlier --json files")  # fmt: skip
    parser.add_argument("--figure", type=Path, default=Path("docs/images/samplers/nfe.png"))
    args = parser.parse_args()
    if args.redraw:
        draw(args.redraw, args.figure)
        return 0
    torch.set_num_threads(2)
    start = time.perf_counter()
    grids = GRIDS + (["tuned"] if args.tuned else [])
    out = {"n": args.n, "repeats": args.repeats, "budgets": args.budgets, "bar": BAR,
           "mixture_seed": args.mixture_seed, "tables": []}  # fmt: skip
    if args.exact:
        mixture = random_mixture(args.mixture_seed)
        out["mixture"] = {"weights": mixture.weights.tolist(), "means": mixture.means.tolist(),
                          "covariances": mixture.covariances().tolist()}  # fmt: skip
        for process in args.processes:
            config = TrainConfig(process=process, dataset="gaussians").validate()
            model = exact_model(mixture, config)
            out["tables"].append(table(f"exact score, {process}", model, mixture.sample, args,
                                       grids))  # fmt: skip
    if args.models:
        with tempfile.TemporaryDirectory() as tmp:
            for process in args.processes:
                run_dir = Path(tmp) / process
                print(f"\ntraining the default {process} recipe ...", flush=True)
                run_training(TrainConfig(process=process).validate(), run_dir, progress=False)
                model = load_model(run_dir)
                dataset = get_dataset(model.config.dataset)
                out["tables"].append(table(f"{process} model, {model.config.dataset}", model,
                                           dataset.sample, args, grids))  # fmt: skip
    if args.digits:
        out["digits"] = digits_bar(args)
    out["machine"] = f"{platform.machine()}, torch {torch.__version__}"
    out["seconds"] = round(time.perf_counter() - start)
    print(f"\nwall time {out['seconds']} s; {out['machine']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
