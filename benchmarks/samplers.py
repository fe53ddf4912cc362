"""Quality against network evaluations for every sampler, on one trained model.

    python benchmarks/samplers.py                         # trains the vp recipe first
    python benchmarks/samplers.py --run runs/vp --steps 5 10 20 50 --json out.json

For each sampler and each number of steps K, draws `--n` samples (the same prior draw for
every sampler) and compares them with fresh data: the sliced-Wasserstein ratio to the
data-vs-data floor (median of 24 repeats, the same data draws and directions for every
row, so rows are comparable). Prints a table of "ratio (NFE)" and, per sampler, the fewest
NFE that reached a ratio <= 1.3 and <= 1.1. The default model is the vp recipe because every
sampler, including Euler-Maruyama and predictor-corrector, works on it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffusion.data import get_dataset
from diffusion.io.runs import load_model
from diffusion.measure.metrics import compare_to_data
from diffusion.samplers import SAMPLERS
from diffusion.streams import stream
from diffusion.training.config import TrainConfig
from diffusion.workflows.run import run_training


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run (default: train the vp recipe)")
    parser.add_argument("--process", default="vp", help="process to train when --run is absent")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--max-nfe", type=int, default=2100, help="skip settings that would cost more NFE"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run
        if run_dir is None:
            run_dir = Path(tmp) / args.process
            print(f"training the {args.process} recipe ...", flush=True)
            run_training(TrainConfig(process=args.process), run_dir, progress=False)
        trained = load_model(run_dir)
    dataset = get_dataset(trained.config.dataset)
    print(f"model: {trained.config.process} on {trained.config.dataset}; n = {args.n}")

    rows = []
    for sampler in args.samplers:
        for steps in args.steps:
            if trained.config.process == "ddpm" and steps > trained.config.diffusion_steps:
                continue
            if sampler == "langevin" and steps * 100 + 1 > args.max_nfe:  # 100 steps per level
                continue
            start = time.perf_counter()
            try:
                result = trained.sample(
                    args.n, sampler=sampler, steps=steps,
                    generator=stream(args.seed, "eval"),
                )  # fmt: skip
            except ValueError as exc:  # a combination the process refuses
                print(f"{sampler:>15} K={steps:<4} refused: {exc}")
                rows.append({"sampler": sampler, "steps": steps, "refused": str(exc)})
                break
            seconds = time.perf_counter() - start
            x = result.x
            finite = bool(torch.isfinite(x).all())
            ratio = float("inf")
            if finite:
                report = compare_to_data(x, dataset.sample, stream(args.seed, "metrics"))
                ratio = report.sliced_wasserstein.ratio
            rows.append({"sampler": sampler, "steps": steps, "nfe": result.nfe,
                         "sw_ratio": ratio, "seconds": round(seconds, 2)})  # fmt: skip
            print(f"{sampler:>15} K={steps:<4} NFE={result.nfe:<5} SW ratio {ratio:6.2f} "
                  f"({seconds:.1f} s)", flush=True)  # fmt: skip

    print("\nsmallest NFE reaching a sliced-Wasserstein ratio of")
    print(f"{'sampler':>15} {'<= 1.3':>8} {'<= 1.1':>8}")
    best = {}
    for sampler in args.samplers:
        mine = [r for r in rows if r["sampler"] == sampler and "nfe" in r]
        reach = {}
        for bar in (1.3, 1.1):
            hits = [r["nfe"] for r in mine if r["sw_ratio"] <= bar]
            reach[str(bar)] = min(hits) if hits else None
        best[sampler] = reach
        cells = [str(reach[b]) if reach[b] is not None else "-" for b in ("1.3", "1.1")]
        print(f"{sampler:>15} {cells[0]:>8} {cells[1]:>8}")
    if args.json:
        summary = {
            "process": trained.config.process,
            "dataset": trained.config.dataset,
            "n": args.n,
            "rows": rows,
            "smallest_nfe": best,
            "machine": f"{platform.machine()}, torch {torch.__version__}",
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
