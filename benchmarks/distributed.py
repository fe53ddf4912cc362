"""Training on 1 process against N processes (torchrun, gloo on the CPU), one machine.

    python benchmarks/distributed.py                       # digits U-Net, 1 vs 2, ~6 min
    python benchmarks/distributed.py --steps 1500 --json benchmarks/distributed.json

Runs `diffusion train --dataset digits` (the default conditional recipe, `--steps` steps) as
one process using every core, then with `--nproc N`, each process one thread of its own
(cores / N), as torchrun arranges it. Reports the training loop's steps per second (the
frames of training.gif included, as `metrics.json` times them), the wall time of the whole
command, the Fréchet ratio each run reaches, and how far apart their weights are. N
processes train the weights of one process to float round-off (docs/distributed.md), so the
time to a given quality is in the ratio of the steps per second.

On a machine with GPUs give `--device cuda` (NCCL, one GPU per process); this script was
run on CPUs only here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffusion.io.checkpoints import latest_checkpoint, load_checkpoint


def train(out: Path, steps: int, nproc: int, device: str, threads: int) -> dict:
    command = [sys.executable, "-m", "diffusion", "train", "--dataset", "digits",
               "--train-steps", str(steps), "--checkpoint-every", str(steps),
               "--device", device, "--out", str(out), "--quiet"]  # fmt: skip
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - tic
    if done.returncode:
        sys.exit(f"training on {nproc} process(es) failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"processes": nproc, "threads_each": threads, "wall_seconds": round(wall, 1),
            "train_seconds": round(metrics["train_seconds"], 1),
            "steps_per_second": round(steps / metrics["train_seconds"], 2),
            "frechet_ratio": round(metrics["frechet"]["ratio"], 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, args.nproc):
            out = Path(tmp) / f"run{nproc}"
            row = train(out, args.steps, nproc, args.device, max(1, cores // nproc))
            rows.append(row)
            print(f"{nproc} process(es) x {row['threads_each']} thread(s): "
                  f"{row['steps_per_second']:.2f} steps/s (loop {row['train_seconds']} s, "
                  f"command {row['wall_seconds']} s), Fréchet ratio {row['frechet_ratio']}",
                  flush=True)  # fmt: skip
        one = load_checkpoint(latest_checkpoint(Path(tmp) / "run1"))
        many = load_checkpoint(latest_checkpoint(Path(tmp) / f"run{args.nproc}"))
        gap = max(float((one.model[k] - many.model[k]).abs().max()) for k in one.model)
    speedup = rows[1]["steps_per_second"] / rows[0]["steps_per_second"]
    print(f"{args.nproc} processes against 1: {speedup:.2f}x the steps per second; largest "
          f"weight difference after {args.steps} steps {gap:.1e}")  # fmt: skip
    report = {"device": args.device, "cores": cores, "steps": args.steps, "rows": rows,
              "speedup": round(speedup, 3), "largest_weight_difference": gap,
              "torch": torch.__version__}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
