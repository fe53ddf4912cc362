"""`diffusion compare`."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion.cli.common import (
    MAX_EVALUATE,
    UsageError,
    check_writable,
    open_diffusers,
)
from diffusion.streams import stream_seed


def cmd_compare(args: argparse.Namespace) -> int:
    from diffusion.data import get_dataset
    from diffusion.training.config import TrainConfig
    from diffusion.workflows.compare import compare_runs

    if args.guidance is not None:
        return sweep_guidance(args)
    loaded = []
    if args.diffusers is not None:
        if args.process:
            raise UsageError("--process trains on --dataset; with --diffusers --dataset is the "
                             "diffusers model's data: compare it with finished runs (--run)")  # fmt: skip
        loaded = [(args.diffusers, open_diffusers(args.diffusers, args.dataset,
                                                  allow_pickle=args.allow_pickle,
                                                  command="compare"))]  # fmt: skip
    elif args.allow_pickle:
        raise UsageError("--allow-pickle goes with --diffusers")
    if len(args.run) + len(args.process) + len(loaded) < 2:
        raise UsageError("compare needs at least two runs: give --run DIR, --process P ... "
                         "and/or --diffusers DIR")  # fmt: skip
    if len(set(args.process)) != len(args.process):
        raise UsageError("--process names a process twice")
    out = checked_out(args)
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
                        train=configs, loaded=loaded, progress=not args.quiet)  # fmt: skip
    images = "frechet_ratio" in rows[0]
    print(f"{'process':<10}{'sampler':<16}{'NFE':>6}{'SW ratio':>10}"
          + (f"{'Fréchet ratio':>15}" if images else ""))  # fmt: skip
    for row in rows:
        print(f"{row['process']:<10}{row['sampler']:<16}{row['nfe']:>6}{row['sw_ratio']:>10.2f}"
              + (f"{row['frechet_ratio']:>15.2f}" if images else ""))  # fmt: skip
    gif = "" if images else f", {out / 'compare.gif'}"
    print(f"wrote {out / 'compare.png'}{gif} and {out / 'compare.json'}")
    return 0


def checked_out(args: argparse.Namespace) -> Path:
    """The output folder, once --n is within bounds and the folder can be written."""
    if args.n > MAX_EVALUATE:
        raise UsageError(f"--n must be at most {MAX_EVALUATE:_}")
    out = Path(args.out)
    check_writable(out, "--out", directory=True)
    return out


def sweep_guidance(args: argparse.Namespace) -> int:
    """`diffusion compare --run R --guidance W ...`: one conditional run at several scales."""
    from diffusion.workflows.compare import compare_guidance

    if len(args.run) != 1 or args.process:
        raise UsageError("--guidance compares one run at several scales: give exactly one "
                         "--run and no --process")  # fmt: skip
    if len(set(args.guidance)) != len(args.guidance):
        raise UsageError("--guidance names a scale twice")
    out = checked_out(args)
    rows = compare_guidance(Path(args.run[0]), args.guidance, out, n=args.n,
                            seed=stream_seed(args.seed, "compare"))  # fmt: skip
    print(f"{'w':>6}{'NFE':>6}{'SW ratio':>10}{'per class':>11}{'Fréchet':>9}{'right':>8}")
    for row in rows:
        per_class = row.get("class_sw_ratio_median")
        frechet, right = row.get("frechet_ratio"), row.get("accuracy")
        print(f"{row['guidance']:>6g}{row['nfe']:>6}{row['sw_ratio']:>10.2f}"
              f"{'' if per_class is None else f'{per_class:.2f}':>11}"
              f"{'' if frechet is None else f'{frechet:.2f}':>9}"
              f"{'' if right is None else f'{100 * right:.1f}%':>8}")  # fmt: skip
    print(f"wrote {out / 'compare.png'} and {out / 'compare.json'}")
    return 0
