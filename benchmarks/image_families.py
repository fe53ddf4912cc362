"""Every family on the 16 x 16 shapes, and every sampler that fits each: training time, the
Fréchet ratio in the shapes classifier's features, NFE, and whether every sample is finite.

    python benchmarks/image_families.py --json benchmarks/image_families.json   # ~15 min

Each family trains with its defaults for images (U-Net, batch 128, logit-normal training times
where the family takes them) for `--steps` steps, then draws `--n` samples with each sampler
at its default number of steps. The Fréchet floor is two halves of fresh shapes of the same
size, so a ratio of 1 is as good as real data; short runs on two CPU cores are far from it,
and the table compares families and samplers at equal training, not converged models.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusion.data import get_dataset
from diffusion.measure.images import frechet_ratio
from diffusion.processes import PROCESSES
from diffusion.samplers import SAMPLERS, check_sampler
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
from diffusion.training.trained import TrainedModel
from diffusion.workflows.image_metrics import feature_net, to_unit_range


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--processes", nargs="+", default=list(PROCESSES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dataset = get_dataset("shapes")
    net = feature_net(dataset)
    real = to_unit_range(dataset.sample(2 * args.n, torch.Generator().manual_seed(1)), dataset)
    rows = []
    for process in args.processes:
        config = TrainConfig(dataset="shapes", process=process, train_steps=args.steps,
                             n_train=20_000, snapshot_every=10**6, checkpoint_every=0)  # fmt: skip
        start = time.perf_counter()
        result = Trainer(config, dataset).run(progress=False)
        seconds = time.perf_counter() - start
        trained = TrainedModel.from_result(result)
        for sampler in SAMPLERS:
            try:
                check_sampler(trained.process, sampler)
            except ValueError:
                continue
            options = {"langevin_steps": 4} if sampler == "langevin" else {}
            begin = time.perf_counter()
            steps = None if sampler == trained.config.sampler else 25
            try:
                out = trained.sample(args.n, sampler=sampler, steps=steps,
                                     generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
            except ValueError:  # e.g. more steps than NCSN's levels: its own number instead
                out = trained.sample(args.n, sampler=sampler,
                                     generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
            sample_seconds = time.perf_counter() - begin
            finite = bool(torch.isfinite(out.x).all())
            fd = frechet_ratio(net, to_unit_range(out.x, dataset), real,
                               torch.Generator().manual_seed(0)) if finite else None  # fmt: skip
            row = {"process": process, "sampler": sampler, "default": sampler == config.sampler,
                   "train_seconds": round(seconds, 1), "nfe": out.nfe,
                   "sample_seconds": round(sample_seconds, 1), "finite": finite,
                   "fd_ratio": round(fd.ratio, 2) if fd else None}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        meta = {"steps": args.steps, "n": args.n, "threads": torch.get_num_threads()}
        args.json.write_text(json.dumps({"settings": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
