"""Every family's default recipe on several data sets: training time and quality, one run.

    python benchmarks/families.py [--datasets swissroll moons] [--evals 3] [--json out.json]

For each data set and each process, trains `diffusion train --process P --dataset D` with
all defaults (in process, without writing pictures), then evaluates the EMA model `--evals`
times with the family's default sampler: 10,000 fresh samples against fresh data, the
sliced-Wasserstein ratio to the data floor. Prints the training time, the NFE and the median
and range of the ratios. Run it on a quiet machine: the times are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from diffusion.processes import PROCESSES
from diffusion.training.config import TrainConfig
from diffusion.training.loop import train
from diffusion.training.trained import TrainedModel
from diffusion.workflows.run import evaluate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", nargs="+", default=list(PROCESSES))
    parser.add_argument("--datasets", nargs="+", default=["swissroll", "moons"])
    parser.add_argument("--evals", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    start = time.perf_counter()
    for dataset in args.datasets:
        for process in args.processes:
            config = TrainConfig(process=process, dataset=dataset).validate()
            result = train(config, progress=False)
            trained = TrainedModel.from_result(result)
            ratios, nfe = [], 0
            for e in range(args.evals):
                ev = evaluate(trained, result.dataset, n=args.n, seed=e + 1)
                ratios.append(ev.metrics.sliced_wasserstein.ratio)
                nfe = ev.nfe
            row = {
                "dataset": dataset,
                "process": process,
                "sampler": config.sampler,
                "nfe": nfe,
                "train_s": round(result.seconds, 1),
                "sw_ratios": [round(r, 3) for r in ratios],
                "sw_median": round(statistics.median(ratios), 3),
            }
            rows.append(row)
            print(f"{dataset:>10} {process:>8} {config.sampler:>13} NFE {nfe:>5}  train "
                  f"{result.seconds:5.1f} s  SW ratio {row['sw_median']:.2f} "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}]", flush=True)  # fmt: skip
    print(f"machine: {platform.machine()}, torch {torch.__version__}; "
          f"wall time {time.perf_counter() - start:.0f} s")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "evals": args.evals, "n": args.n}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
