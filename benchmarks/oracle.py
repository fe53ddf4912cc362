"""The exact oracle on a mixture it has never seen: sample quality at <= 40 NFE, and the
probability-flow NLL against the true log-density.

    python benchmarks/oracle.py [--evals 9] [--n 10000] [--seed 0] [--json out.json]

A random 2-D Gaussian mixture (6 components, random full covariances, random weights) is
drawn from `--seed` and written to a temporary JSON file, which is then read the way a user's
file is (`get_dataset(path)`). For each process and second-order sampler, `--evals` sample
sets of `--n` points are compared with fresh data (sliced-Wasserstein ratio to the data
floor). The ratio of a perfect sampler is itself noisy (a finite sample against the floor),
so the same statistic is shown for fresh data in place of samples ("data" row): the target
is that row, not exactly 1. Then `diffusion nll`'s computation runs with the oracle on 1,000
fresh points per process and is set beside the exact mixture log-density.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffusion.data import get_dataset
from diffusion.measure.likelihood import exact_nll, pf_ode_nll
from diffusion.measure.metrics import compare_to_data
from diffusion.streams import stream
from diffusion.training.config import TrainConfig
from diffusion.utils import make_generator
from diffusion.workflows.exact import exact_model
from diffusion.workflows.run import evaluate

RECIPES = [  # (process, sampler, steps, grid): all at most 40 network evaluations
    ("edm", "heun", 20, "uniform"),
    ("vp", "heun", 20, "karras"),
    ("flow", "heun", 20, "uniform"),
    ("edm", "dpm-solver++", 40, "uniform"),
    ("vp", "dpm-solver++", 40, "logsnr"),
]


def random_mixture(seed: int, k: int = 6) -> dict:
    """A mixture spec as a user would write it: means in [-3, 3]^2, random covariances."""
    g = make_generator(seed)
    means = 6 * torch.rand(k, 2, generator=g, dtype=torch.float64) - 3
    a = 0.5 * torch.randn(k, 2, 2, generator=g, dtype=torch.float64)
    covariances = a @ a.transpose(1, 2) + 0.02 * torch.eye(2, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return {"weights": (weights / weights.sum()).tolist(), "means": means.tolist(),
            "covariances": covariances.tolist()}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=9)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    spec = random_mixture(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixture.json"
        path.write_text(json.dumps(spec))
        dataset = get_dataset(path)
    rows = []
    control = []
    for e in range(args.evals):  # fresh data in place of samples, with the same metric seeds
        fresh = dataset.sample(args.n, make_generator(10_000 + e))
        report = compare_to_data(fresh, dataset.sample, stream(e + 1, "metrics"))
        control.append(report.sliced_wasserstein.ratio)
    rows.append({"recipe": "data (perfect sampler)", "nfe": 0, "sw_ratios": control})
    print(f"{'recipe':<34}{'NFE':>5}{'SW ratio median':>17}  range", flush=True)
    _print(rows[-1])
    for process, sampler, steps, grid in RECIPES:
        config = TrainConfig(process=process, dataset=str(path)).validate()
        model = exact_model(dataset.mixture, config)
        ratios, nfe = [], 0
        for e in range(args.evals):
            result = evaluate(model, dataset, n=args.n, seed=e + 1, sampler=sampler, steps=steps,
                              grid=grid)  # fmt: skip
            ratios.append(result.metrics.sliced_wasserstein.ratio)
            nfe = result.nfe
        rows.append({"recipe": f"{process} {sampler} {steps} {grid}", "nfe": nfe,
                     "sw_ratios": ratios})  # fmt: skip
        _print(rows[-1])
    x = dataset.sample(1000, make_generator(20_000))
    exact = exact_nll(dataset.mixture, x)
    nll_rows = []
    print(f"\nexact NLL of 1000 fresh points: {float(exact.mean()):.4f} nats per point")
    for process in ("edm", "vp", "flow", "ddpm"):
        config = TrainConfig(process=process, dataset=str(path)).validate()
        tic = time.perf_counter()
        result = pf_ode_nll(exact_model(dataset.mixture, config), x)
        difference = result.nll - exact
        nll_rows.append({"process": process, "nll": result.mean, "exact": float(exact.mean()),
                         "difference": float(difference.mean()),
                         "max_abs_difference": float(difference.abs().max()),
                         "evaluations": result.evaluations,
                         "seconds": round(time.perf_counter() - tic, 1)})  # fmt: skip
        print(f"{process:>6}: PF-ODE NLL {result.mean:.4f}, minus exact {difference.mean():+.5f} "
              f"(max |per point| {difference.abs().max():.4f}), {result.evaluations} evaluations",
              flush=True)  # fmt: skip
    print(f"machine: {platform.machine()}, torch {torch.__version__}; "
          f"wall time {time.perf_counter() - start:.0f} s")  # fmt: skip
    if args.json:
        out = {"mixture": spec, "evals": args.evals, "n": args.n, "rows": rows, "nll": nll_rows}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _print(row: dict) -> None:
    r = row["sw_ratios"]
    row["sw_median"] = round(statistics.median(r), 3)
    print(f"{row['recipe']:<34}{row['nfe']:>5}{row['sw_median']:>17.2f}  "
          f"{min(r):.2f}-{max(r):.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
