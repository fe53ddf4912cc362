"""What makes the U-Net's training step fast on a CPU: each setting measured alone against the
default, in one run (steps per second, median of repeats, after warm-up; compile time apart).

    python benchmarks/unet_speed.py --json benchmarks/unet_speed.json    # ~6 min on 2 cores

Settings: the default (float32, contiguous tensors, PyTorch's fused scaled-dot-product
attention, all cores); channels-last memory format for the network and its inputs; attention
written out (softmax of q k^T) instead of the fused kernel; one thread instead of all;
`torch.compile` of the network (its compile time reported separately, since a 2-minute run
pays it; the cache under /tmp makes a second compile quick). Each variant trains the default digits recipe (8 x 8) and the 16 x 16 shapes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SCRIPT = r"""
import sys, time, torch
import torch.nn.functional as F
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
import diffusion.models.unet as unet

dataset, variant, steps, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if variant == "one-thread":
    torch.set_num_threads(1)
if variant == "unfused-attention":
    def attention(q, k, v):
        weights = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1)
        return weights @ v
    unet.F = type("F", (), {**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")},
                            "scaled_dot_product_attention": staticmethod(attention)})
config = TrainConfig(dataset=dataset, snapshot_every=10**6, checkpoint_every=0,
                     train_steps=10**6)
trainer = Trainer(config)
compile_seconds = 0.0
if variant == "channels-last":
    trainer.model = trainer.model.to(memory_format=torch.channels_last)
    trainer.model.input.register_forward_pre_hook(
        lambda module, args: (args[0].contiguous(memory_format=torch.channels_last),))
if variant == "compile":
    trainer.model = torch.compile(trainer.model)
    start = time.perf_counter()
    trainer.run(progress=False, until=trainer.step + 3)
    compile_seconds = time.perf_counter() - start
trainer.run(progress=False, until=trainer.step + 10)  # warm-up
rates = []
for _ in range(repeats):
    start = time.perf_counter()
    trainer.run(progress=False, until=trainer.step + steps)
    rates.append(steps / (time.perf_counter() - start))
print(" ".join(f"{r:.3f}" for r in rates), compile_seconds)
"""

# "default" runs first and last: the difference between the two is the drift of the machine
# over the run, the yardstick for every other ratio.
VARIANTS = ("default", "channels-last", "unfused-attention", "one-thread", "compile", "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--datasets", default="digits,shapes")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, "-c", SCRIPT, dataset, variant, str(args.steps), str(args.repeats)],
                capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode:
                line = (out.stderr.strip().splitlines() or ["failed"])[-1]
                rows.append({"dataset": dataset, "variant": variant, "error": line})
                print(f"{dataset:8s} {variant:18s} failed: {line}", flush=True)
                continue
            *rates, compile_seconds = map(float, out.stdout.split())
            row = {"dataset": dataset, "variant": variant,
                   "steps_per_second": round(statistics.median(rates), 2),
                   "compile_seconds": round(compile_seconds, 1)}  # fmt: skip
            rows.append(row)
            print(f"{dataset:8s} {variant:18s} {row['steps_per_second']:6.2f} steps/s"
                  + (f"  (compile {compile_seconds:.0f} s)" if compile_seconds else ""), flush=True)  # fmt: skip
    for dataset in args.datasets.split(","):
        base = statistics.median(r["steps_per_second"] for r in rows if r["dataset"] == dataset
                                 and r["variant"] == "default" and "steps_per_second" in r)  # fmt: skip
        for r in rows:
            if r["dataset"] == dataset and "steps_per_second" in r:
                r["speedup"] = round(r["steps_per_second"] / base, 2)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": f"{__import__('os').cpu_count()} cores", "rows": rows}, f,
                      indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
