"""Benchmark the default `diffusion train`: training time, sampling time and quality ratios.

    python benchmarks/default_run.py [--seeds 3] [--json out.json]

Trains the default DDPM recipe on the swiss roll once per seed, then draws 20,000 samples
with the default sampler and compares them with fresh data (sliced Wasserstein-2, MMD and
energy distance, each divided by its data-vs-data floor). Prints one row per seed and the
median; timings are wall-clock on this machine, so compare them within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from diffusion.checkpoint import TrainedModel
from diffusion.config import TrainConfig
from diffusion.run import evaluate
from diffusion.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", default="swissroll")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    rows = []
    for seed in range(args.seeds):
        config = TrainConfig(dataset=args.dataset, seed=seed)
        result = train(config, progress=False)
        trained = TrainedModel(
            config, result.process, result.ema, result.normalizer, result.data.shape[1]
        )
        start = time.perf_counter()
        ev = evaluate(trained, result.dataset, n=config.eval_samples, seed=seed)
        rows.append(
            {
                "seed": seed,
                "train_s": result.seconds,
                "sample_s": ev.seconds,
                "eval_s": time.perf_counter() - start,
                "nfe": ev.nfe,
                "sw_ratio": ev.metrics.sliced_wasserstein.ratio,
                "mmd_ratio": ev.metrics.mmd.ratio,
                "energy_ratio": ev.metrics.energy.ratio,
            }
        )
        r = rows[-1]
        print(
            f"seed {seed}: train {r['train_s']:.1f} s, sample {r['sample_s']:.1f} s ({r['nfe']} NFE), "
            f"SW ratio {r['sw_ratio']:.2f}, MMD ratio {r['mmd_ratio']:.2f}, energy ratio {r['energy_ratio']:.2f}",
            flush=True,
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"}
    print(
        f"median of {len(rows)}: train {med['train_s']:.1f} s, sample {med['sample_s']:.1f} s, "
        f"SW ratio {med['sw_ratio']:.2f}, MMD ratio {med['mmd_ratio']:.2f}, "
        f"energy ratio {med['energy_ratio']:.2f}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "median": med}, f, indent=2)


if __name__ == "__main__":
    main()
