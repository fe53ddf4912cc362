"""The table of docs/tuned-grids.md: standard against tuned grids, with the exact score.

    python benchmarks/tuned_grids.py [--json out.json]

A random full-covariance mixture of 5 components in 2-D (seed 0, standardised as a process
sees its data); for vp, edm and flow and each sampler at about 5, 8 and 10 network
evaluations: the grid is tuned (`diffusion.samplers.tuning.tune_grid`, 300 evaluations) on
2000 prior draws (seed 1), then both the best standard grid and the tuned grid sample 10000
fresh prior draws (seed 2), scored by the sliced-Wasserstein ratio to fresh mixture draws
(`SlicedWassersteinRatio`, n = 10000, 24 repeats, seed 3). Also printed: the ratio of the
accurate solve from the same fresh draws, and of a fresh draw of the mixture itself.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from diffusion.data.mixture import GaussianMixture
from diffusion.measure.metrics import SlicedWassersteinRatio
from diffusion.measure.oracle import Oracle
from diffusion.samplers import get_sampler
from diffusion.samplers.grids import make_grid
from diffusion.samplers.tuning import reference_solution, tune_grid
from diffusion.training.build import build_process
from diffusion.training.config import TrainConfig

F64 = torch.float64
MIXTURE_SEED = 0
N_TUNE, N_EVAL = 2000, 10_000
#: (sampler, options, steps for ~5, ~8, ~10 NFE): heun costs 2K - 1 (its last step is Euler).
CASES = [
    ("unipc", {"order": 3}, (5, 8, 10)),
    ("dpm-solver++", {"order": 3}, (5, 8, 10)),
    ("heun", {}, (3, 4, 5)),
]


def random_mixture(seed: int = MIXTURE_SEED, k: int = 5, dim: int = 2) -> GaussianMixture:
    """k full-covariance components (as tests/test_oracle.py draws them), standardised."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.2
    means = 2 * torch.randn(k, dim, generator=g, dtype=F64)
    a = torch.randn(k, dim, dim, generator=g, dtype=F64)
    covariances = a @ a.transpose(1, 2) / dim + 0.1 * torch.eye(dim, dtype=F64)
    mixture = GaussianMixture.full(weights, means, covariances)
    return mixture.affine(mixture.mean(), mixture.std())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", nargs="+", default=["vp", "edm", "flow"])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mixture = random_mixture()
    rows = []
    for name in args.processes:
        config = TrainConfig(process=name, dataset="gaussians")
        config.validate()
        process = build_process(config)
        denoiser = Oracle(mixture, process).denoiser()
        x1 = process.prior((N_TUNE, 2), generator=torch.Generator().manual_seed(1)).to(F64)
        reference = reference_solution(denoiser, x1)
        fresh = process.prior((N_EVAL, 2), generator=torch.Generator().manual_seed(2)).to(F64)
        fresh_reference = reference_solution(denoiser, fresh)
        ratio = SlicedWassersteinRatio(lambda n, g: mixture.sample(n, g), N_EVAL,
                                       torch.Generator().manual_seed(3))  # fmt: skip
        exact = ratio(fresh_reference.float())
        data = ratio(mixture.sample(N_EVAL, torch.Generator().manual_seed(4)).float())
        print(f"{name}: accurate solve {exact:.3f}, fresh mixture draw {data:.3f}", flush=True)
        for sampler, options, step_counts in CASES:
            run = get_sampler(sampler)
            for steps in step_counts:
                start = time.perf_counter()
                tuned = tune_grid(denoiser, x1, sampler=sampler, steps=steps, options=options,
                                  reference=reference, iterations=args.iterations)  # fmt: skip
                seconds = time.perf_counter() - start
                before_nfe = denoiser.nfe
                standard = run(denoiser, fresh, make_grid(process, steps, tuned.start_grid),
                               **options)  # fmt: skip
                nfe = denoiser.nfe - before_nfe
                after = run(denoiser, fresh, tuned.times, **options)
                row = {
                    "process": name, "sampler": sampler, "options": options, "steps": steps,
                    "nfe": nfe, "start_grid": tuned.start_grid,
                    "sw_standard": ratio(standard.float()), "sw_tuned": ratio(after.float()),
                    "mse_standard": (standard - fresh_reference).square().sum(1).mean().item(),
                    "mse_tuned": (after - fresh_reference).square().sum(1).mean().item(),
                    "tune_mse_standard": tuned.start_error, "tune_mse_tuned": tuned.error,
                    "sw_exact": exact, "sw_data": data, "seconds": seconds,
                    "times": tuned.times.tolist(),
                }  # fmt: skip
                rows.append(row)
                print(f"  {sampler:<13}{nfe:>3} NFE  {tuned.start_grid:<9} SW "
                      f"{row['sw_standard']:.2f} -> {row['sw_tuned']:.2f}  fresh mse "
                      f"{row['mse_standard']:.1e} -> {row['mse_tuned']:.1e}  ({seconds:.0f} s)",
                      flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
