"""`diffusion tune-grid`: a time grid chosen by measurement, saved with a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from diffusion.cli.common import (
    UsageError,
    check_writable,
    load_source,
    sampler_options,
)

MAX_TUNE = 10**6  # prior draws the search samples from at every evaluation


def cmd_tune_grid(args: argparse.Namespace) -> int:
    import torch

    from diffusion.io.grids import GRIDS_FILE, grid_entry, read_grids, save_grid
    from diffusion.samplers import check_sampler
    from diffusion.samplers.tuning import check_tunable, tune_grid
    from diffusion.streams import stream
    from diffusion.training.trained import command_flags
    from diffusion.utils import default_device

    if args.n > MAX_TUNE:
        raise UsageError(f"--n must be at most {MAX_TUNE:_} for tune-grid, got {args.n:_}")
    if args.run is not None and args.oracle:
        raise UsageError("tune-grid --run tunes against the run's own network; for the exact "
                         "oracle give --oracle --dataset D (and --process P) without --run")  # fmt: skip
    out = Path(args.out) if args.out is not None else None
    if out is None and args.run is not None:
        out = Path(args.run) / GRIDS_FILE
    if out is not None:
        if out.suffix != ".json":
            raise UsageError(f"--out must name a .json file, got {args.out!r}")
        check_writable(out, "--out", directory=False)
        read_grids(out)  # a file that is not a grids file fails now, not after the search
    trained = load_source(args)
    if trained.is_image and args.n > 10_000:
        raise UsageError("--n must be at most 10_000 for an image run (every draw is an image)")
    process = trained.process
    sampler = args.sampler or trained.config.sampler
    options = trained.sampling(sampler, sampler_options(args, sampler))[3]
    try:
        check_sampler(process, sampler, options)
        check_tunable(sampler, options)
    except ValueError as exc:
        raise UsageError(f"--sampler {sampler}: {exc}") from None
    most = process.discrete_steps
    if most and args.steps > most:
        raise UsageError(f"--steps must be at most {most} for this run (its process has {most} "
                         "steps)")  # fmt: skip

    device = default_device()
    denoiser = trained.denoiser(device)
    dtype = getattr(denoiser, "dtype", torch.float32)  # the oracle computes in float64
    x1 = process.prior((args.n, trained.dim), generator=stream(args.seed, "tune.prior", device),
                       device=device).to(dtype)  # fmt: skip
    bar = tqdm(total=args.iterations, desc="tuning", unit="eval", disable=args.quiet)

    def progress(done: int, total: int, error: float) -> None:
        bar.update(done - bar.n)
        bar.set_postfix_str(f"error {error:.3g}")

    try:
        tuned = tune_grid(denoiser, x1, sampler=sampler, steps=args.steps, options=options,
                          iterations=args.iterations, progress=progress)  # fmt: skip
        bar.update(bar.total - bar.n)  # the search may stop early (converged)
    finally:
        bar.close()
    shown = " ".join(f"{t:.6g}" for t in tuned.times.tolist())
    if tuned.error < tuned.start_error:
        gain = tuned.start_error / tuned.error if tuned.error > 0 else float("inf")
        verdict = f"{gain:.3g}x smaller"
    else:
        verdict = "the search found no better grid"
    steps = f"{args.steps} step{'s' if args.steps > 1 else ''}"
    print(f"{sampler} with {steps}, on {args.n} prior draws (seed {args.seed}); mean squared "
          "error against an accurate solve:")  # fmt: skip
    print(f"  best standard grid ({tuned.start_grid}): {tuned.start_error:.3e}")
    print(f"  tuned grid: {tuned.error:.3e} ({verdict}; {tuned.evaluations} network "
          "evaluations)")  # fmt: skip
    print(f"grid: {shown}")
    if out is None:
        return 0
    key, entry = grid_entry(tuned, sampler=sampler, steps=args.steps, options=options,
                            n=args.n, seed=args.seed, iterations=args.iterations,
                            source="network" if args.run is not None else "oracle")  # fmt: skip
    save_grid(out, key, entry)
    print(f"wrote {out} ({key})")
    if args.run is not None:
        flags = command_flags(options)
        print(f"sample with it: diffusion sample --run {args.run} --sampler {sampler}{flags} "
              f"--sample-steps {args.steps} --sample-grid tuned --n N --out FILE.npy")  # fmt: skip
    return 0
