"""Few-step sampling: the fewest network evaluations (NFE) each solver x time grid needs to
reach a sliced-Wasserstein ratio of 1.1, with the exact score and with trained models.

    python benchmarks/samplers.py                                  # exact score: vp, edm, flow
    python benchmarks/samplers.py --models                         # also the default recipes
    python benchmarks/samplers.py --digits                         # the digits bar (10 vs 100)
    python benchmarks/samplers.py --no-exact --defaults            # family defaults: now, before
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
from diffusion.samplers.dpm_solver_singlestep import singlestep_plan
from diffusion.samplers.grids import make_grid
from diffusion.streams import stream
from diffusion.training.config import TrainConfig
from diffusion.workflows.exact import exact_model
from diffusion.workflows.run import run_training

#: (label, sampler, options): the deterministic solvers, one evaluation per step but Heun's
#: two (one on the last step) and singlestep DPM-Solver's `order` (a budget's plan, `singlestep_plan`)
SOLVERS = [
    ("euler", "euler", {}),
    ("heun", "heun", {}),
    ("dpm++2m", "dpm-solver++", {"order": 2}),
    ("dpm++3m", "dpm-solver++", {"order": 3}),
    ("unipc-2", "unipc", {"order": 2}),
    ("unipc-3", "unipc", {"order": 3}),
    ("deis-2", "deis", {"order": 2}),
    ("deis-3", "deis", {"order": 3}),
    ("dpm-3s", "dpm-solver", {"order": 3}),  # singlestep: a budget's plan of orders 3, ..., 1
]
GRIDS = ["uniform", "quadratic", "karras", "logsnr"]
BUDGETS = [5, 8, 10, 12, 15, 20, 30, 50]
BAR = 1.1
#: each family's default sampling before the few-step defaults (sampler, steps, grid, options)
BEFORE = {
    "vp": ("dpm-solver++", 50, "uniform", {}),
    "subvp": ("dpm-solver++", 50, "uniform", {}),
    "ve": ("heun", 50, "uniform", {}),
    "edm": ("heun", 32, "uniform", {}),
    "flow": ("heun", 12, "uniform", {}),  # with its default coupling, ot
    "poisson": ("heun", 32, "uniform", {}),
}
#: ... and with independent pairs, the path the exact score is of (flow's default pairs by OT)
BEFORE_INDEPENDENT = {"flow": ("heun", 25, "uniform", {})}


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
                steps, run_options = steps_for(sampler, budget), options
                try:
                    if grid == "tuned":
                        if budget > args.tune_max or sampler == "dpm-solver":
                            cells.append("")
                            continue
                        times = tuned_times(model, sampler, options, steps, args.seed + 1000)
                    elif sampler == "dpm-solver":  # singlestep: the budget's plan of orders
                        plan = singlestep_plan(model.process, budget, options["order"], grid)
                        times, run_options = plan.times, {**options, "orders": plan.orders}
                    else:
                        times = make_grid(model.process, steps, grid)
                    ratio, nfe = measure(model, score, sampler=sampler, options=run_options,
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


def defaults_table(args) -> list[dict]:
    """Each family's default sampling now against before, on the same draws: with the exact
    score of the mixture (not for Poisson flow) and on its default recipe trained on the
    swiss roll; medians of `--repeats` SW ratios, and the accurate solve's for scale."""
    rows = []
    mixture = random_mixture(args.mixture_seed)

    def defaults(config: TrainConfig) -> tuple:
        return (config.sampler, config.sample_steps, config.sample_grid,
                config.sampler_options(config.sampler))  # fmt: skip

    for process in args.default_processes:
        config = TrainConfig(process=process).validate()
        sources = []
        if process != "poisson":  # the exact score is that of independent pairs
            exact = TrainConfig(process=process, dataset="gaussians", coupling="independent")
            sources.append(("exact score", exact_model(mixture, exact), mixture.sample,
                            BEFORE_INDEPENDENT.get(process, BEFORE[process]), defaults(exact)))  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            print(f"\ntraining the default {process} recipe ...", flush=True)
            run_training(config, Path(tmp) / process, progress=False)
            model = load_model(Path(tmp) / process)
        sources.append((f"model, {config.dataset}", model, get_dataset(config.dataset).sample,
                        BEFORE[process], defaults(config)))  # fmt: skip
        for source, model, sample_data, before, now in sources:
            score = SlicedWassersteinRatio(lambda k, g, f=sample_data: f(k, g).double(), args.n,
                                           stream(args.seed, "metrics"))  # fmt: skip
            row = {"process": process, "source": source}
            for key, (sampler, steps, grid, options) in (("before", before),
                                                         ("now", now),
                                                         ("accurate", ("dpm-solver++", 500,
                                                                       "logsnr", {"order": 3}))):  # fmt: skip
                ratio, nfe = measure(model, score, sampler=sampler, options=options,
                                     times=make_grid(model.process, steps, grid), n=args.n,
                                     repeats=args.repeats, seed=args.seed)  # fmt: skip
                flags = "".join(f" {k} {v}" for k, v in options.items())
                row[key] = {"setting": f"{sampler}{flags} {steps} {grid}", "nfe": nfe,
                            "sw_ratio": round(ratio, 3)}  # fmt: skip
            print(f"{process:<8}{source:<22}" + "".join(
                f"{k}: {row[k]['setting']} ({row[k]['nfe']} NFE) {row[k]['sw_ratio']:.2f}   "
                for k in ("before", "now", "accurate")), flush=True)  # fmt: skip
            rows.append(row)
    return rows


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
    settings = [("heun 50 (99 NFE)", "heun", 50, "uniform", {}, None),
                ("unipc-3 100", "unipc", 100, "logsnr", {"order": 3}, None)]  # fmt: skip
    settings += [(f"{label} {budget} {grid}", sampler, steps_for(sampler, budget), grid, options,
                  (label, grid, budget))
                 for label, sampler, options in SOLVERS
                 if label in args.solvers and sampler != "dpm-solver"
                 for grid in args.digits_grids for budget in args.digits_budgets]  # fmt: skip
    rows = []
    for name, sampler, steps, grid, options, key in settings:
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
            row = {
                "setting": name,
                "nfe": nfe,
                "frechet_ratio": statistics.median(ratios),
                "draws": ratios,
            }
            if key is not None:
                row.update(zip(("solver", "grid", "budget"), key, strict=True))
            rows.append(row)
            print(f"{name:<28}{nfe:>5} NFE  Fréchet ratio {statistics.median(ratios):.3f}",
                  flush=True)  # fmt: skip
    return {"process": model.config.process, "rows": rows}


def _best_curves(ax, rows: list[dict], colours: dict, value: str) -> None:
    """Each solver on the standard grid that is best at 10 NFE (solid) and on its tuned grid
    (dashed, where there is one)."""
    for label, colour in colours.items():
        mine = [r for r in rows if r.get("solver") == label and value in r]
        standard = [r for r in mine if r["grid"] != "tuned"]
        at10 = {r["grid"]: r[value] for r in standard if r["budget"] == 10}
        if at10:
            best = min(at10, key=at10.get)
            line = sorted((r["nfe"], r[value]) for r in standard if r["grid"] == best)
            ax.plot(*zip(*line, strict=True), "-o", ms=3, color=colour,
                    label=f"{label} ({best})")  # fmt: skip
        tuned = sorted((r["nfe"], r[value]) for r in mine if r["grid"] == "tuned")
        if tuned:
            ax.plot(*zip(*tuned, strict=True), "--s", ms=3, color=colour,
                    label=f"{label} (tuned)")  # fmt: skip


def _nfe_axis(ax) -> None:
    import matplotlib.ticker

    ax.set_xscale("log")
    ax.set_xticks([5, 10, 20, 50], labels=["5", "10", "20", "50"])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def draw(paths: list[Path], out: Path) -> None:
    """Quality against NFE from the JSON files of earlier runs: a column per process, the
    exact score above the trained default recipe (where a file has it), and the digits model
    in a last column; each solver on its best standard grid at 10 NFE (solid) and on its tuned
    grid (dashed), with the accurate solve's level x 1.1 (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables: dict[tuple[str, str], list[dict]] = {}  # (exact | model, process) -> parts
    digits = None
    for path in paths:
        data = json.loads(path.read_text())
        for t in data["tables"]:
            kind = "exact" if t["name"].startswith("exact") else "model"
            process = t["name"].split(", ")[-1] if kind == "exact" else t["name"].split()[0]
            tables.setdefault((kind, process), []).append(t)
        if any("solver" in r for r in data.get("digits", {}).get("rows", [])):
            digits = data["digits"]
    processes = list(dict.fromkeys(p for _, p in tables))
    kinds = [k for k in ("exact", "model") if any((k, p) in tables for p in processes)]
    columns = len(processes) + (digits is not None)
    fig, axes = plt.subplots(len(kinds), columns, figsize=(4.2 * columns, 3.6 * len(kinds)),
                             squeeze=False)  # fmt: skip
    colours = dict(zip([s[0] for s in SOLVERS], plt.get_cmap("tab10").colors, strict=False))
    for row, kind in enumerate(kinds):
        for col, process in enumerate(processes):
            ax, parts = axes[row][col], tables.get((kind, process))
            if not parts:
                ax.axis("off")
                continue
            _best_curves(ax, [r for t in parts for r in t["rows"]], colours, "sw_ratio")
            ax.axhline(BAR * parts[0]["converged"], color="0.5", lw=1,
                       label="accurate solve x 1.1")  # fmt: skip
            title = f"exact score, {process}" if kind == "exact" else parts[0]["name"]
            ax.set(yscale="log", xlabel="network evaluations", ylabel="SW ratio", title=title,
                   ylim=(0.8, 30))  # fmt: skip
            _nfe_axis(ax)
            ax.legend(fontsize=6, ncol=2)
    if digits is not None:
        ax = axes[0][-1]
        _best_curves(ax, digits["rows"], colours, "frechet_ratio")
        reference = next(r for r in digits["rows"] if r["setting"].startswith("unipc-3 100"))
        ax.axhline(1.1 * reference["frechet_ratio"], color="0.5", lw=1,
                   label="100 NFE x 1.1")  # fmt: skip
        ax.set(xlabel="network evaluations", ylabel="Fréchet ratio",
               title=f"digits ({digits['process']} model)")  # fmt: skip
        _nfe_axis(ax)
        ax.legend(fontsize=6, ncol=2)
        for ax in axes[1:, -1]:
            ax.axis("off")
    fig.suptitle("Quality against NFE: exact score (top), trained default recipes, digits")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
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
    parser.add_argument("--defaults", action="store_true",
                        help="each family's default sampling now against before")  # fmt: skip
    parser.add_argument("--default-processes", nargs="+", default=list(BEFORE))
    parser.add_argument("--digits-budgets", type=int, nargs="+", default=[10],
                        help="NFE budgets of each solver on digits (default: 10)")  # fmt: skip
    parser.add_argument("--digits-grids", nargs="+", default=["uniform", "logsnr", "karras"])
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
    if args.defaults:
        out["defaults"] = defaults_table(args)
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
