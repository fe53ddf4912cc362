"""Benchmark the default `diffusion train`: training time, sampling time and quality ratios.

    python benchmarks/default_run.py [--seeds 3] [--evals 3] [--json out.json]

For each training seed, trains the default DDPM recipe on the swiss roll, then evaluates it
`--evals` times: each evaluation draws 20,000 fresh samples (default sampler and steps) and
compares them with fresh data (sliced Wasserstein-2, MMD, energy distance, each divided by
its data-vs-data floor). A control row evaluates fresh *data* in place of samples, with the
same procedure: it shows the spread of the ratio for a perfect model, i.e. the noise of the
metric itself. Timings are wall-clock on this machine; compare them within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from diffusion.data import get_dataset
from diffusion.measure.metrics import compare_to_data
from diffusion.training.config import TrainConfig
from diffusion.training.loop import train
from diffusion.training.trained import TrainedModel
from diffusion.utils import make_generator
from diffusion.workflows.run import evaluate

RATIOS = ("sliced_wasserstein", "mmd", "energy")


def ratios(report) -> dict[str, float]:
    return {name: getattr(report, name).ratio for name in RATIOS}


def summary(rows: list[dict[str, float]]) -> str:
    parts = []
    for name in RATIOS:
        values = sorted(r[name] for r in rows)
        parts.append(f"{name} {statistics.median(values):.2f} [{values[0]:.2f}-{values[-1]:.2f}]")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds")
    parser.add_argument("--evals", type=int, default=3, help="evaluations per trained model")
    parser.add_argument("--dataset", default="swissroll")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    runs, model_rows = [], []
    for seed in range(args.seeds):
        config = TrainConfig(dataset=args.dataset, seed=seed)
        result = train(config, progress=False)
        trained = TrainedModel.from_result(result)
        evals = []
        for e in range(args.evals):
            ev = evaluate(trained, result.dataset, n=config.eval_samples, seed=100 * seed + e)
            evals.append({"sample_s": ev.seconds, "nfe": ev.nfe, **ratios(ev.metrics)})
        model_rows.extend(evals)
        runs.append({"seed": seed, "train_s": result.seconds, "evals": evals})
        print(
            f"seed {seed}: train {result.seconds:.1f} s, sample {evals[0]['sample_s']:.1f} s "
            f"({evals[0]['nfe']} NFE) | {summary(evals)}",
            flush=True,
        )

    # Control: fresh data scored as if it were samples (a perfect model).
    dataset = get_dataset(args.dataset)
    n = TrainConfig().eval_samples
    control = []
    for e in range(args.seeds * args.evals):
        fake = dataset.sample(n, make_generator(10_000 + e))
        control.append(ratios(compare_to_data(fake, dataset.sample, make_generator(20_000 + e))))

    train_median = statistics.median(r["train_s"] for r in runs)
    sample_median = statistics.median(r["sample_s"] for r in model_rows)
    print(f"model   ({len(model_rows)} evaluations): {summary(model_rows)}")
    print(f"control ({len(control)} evaluations of fresh data): {summary(control)}")
    print(f"median training time {train_median:.1f} s, sampling {n} points {sample_median:.1f} s")
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "control": control}, f, indent=2)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark wall time {time.perf_counter() - start:.0f} s")
