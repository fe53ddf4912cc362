"""`diffusion compare`."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion.cli.common import (
    MAX_EVALUATE,
    UsageError,
    check_writable,
)
from diffusion.streams import stream_seed


def cmd_compare(args: argparse.Namespace) -> int:
    from diffusion.data import get_dataset
    from diffusion.training.config import TrainConfig
    from diffusion.workflows.compare import compare_runs

    if len(args.run) + len(args.process) < 2:
        raise UsageError("compare needs at least two runs: give --run DIR and/or --process P ...")
    if len(set(args.process)) != len(args.process):
        raise UsageError("--process names a process twice")
    if args.n > MAX_EVALUATE:
        raise UsageError(f"--n must be at most {MAX_EVALUATE:_}")
    out = Path(args.out)
    check_writable(out, "--out", directory=True)
    configs = []
    for process in args.process:
        values = {"process": process, "seed": args.seed}
        if args.dataset:
            values["dataset"] = args.dataset
        if args.train_steps:
            values["train_steps"] = args.train_steps
        config = TrainConfig.from_dict(values)
        if (out / process / "config.json").exists():
            raise UsageError(f"{out / process} already holds a run; pass it with --run instead")
        configs.append(config)
    if configs:
        get_dataset(configs[0].dataset)
    rows = compare_runs([Path(r) for r in args.run], out, n=args.n, seed=stream_seed(args.seed, "compare"),
                        train=configs, progress=not args.quiet)  # fmt: skip
    print(f"{'process':<10}{'sampler':<16}{'NFE':>6}{'SW ratio':>10}")
    for row in rows:
        print(f"{row['process']:<10}{row['sampler']:<16}{row['nfe']:>6}{row['sw_ratio']:>10.2f}")
    print(f"wrote {out / 'compare.png'}, {out / 'compare.gif'} and {out / 'compare.json'}")
    return 0
