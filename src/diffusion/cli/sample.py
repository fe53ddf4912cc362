"""`diffusion sample` and `diffusion evaluate`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffusion.cli.common import (
    MAX_EVALUATE,
    UsageError,
    check_writable,
    format_metrics,
    load_source,
    nearest_existing,
    run_dataset,
    sampling_settings,
)

SAMPLE_CHUNK = 65_536  # points sampled at once by `diffusion sample`
GRID_IMAGES = 64  # images shown in the PNG grid `diffusion sample` writes beside an image array


def cmd_sample(args: argparse.Namespace) -> int:
    from diffusion.utils import atomic_write, default_device, make_generator
    from diffusion.viz.images import save_image_grid

    out = Path(args.out)
    if out.suffix != ".npy":
        raise UsageError(f"--out must name a .npy file, got {args.out!r}")
    check_writable(out, "--out", directory=False)
    trained = load_source(args)
    settings = sampling_settings(args, trained)
    needed = args.n * trained.dim * 4 + 4096
    free = shutil.disk_usage(nearest_existing(out.parent)).free
    if needed > free:
        raise UsageError(f"--n {args.n} needs {needed / 2**30:.1f} GiB for {args.out!r}, but "
                         f"only {free / 2**30:.1f} GiB are free there")  # fmt: skip
    labels, guidance = class_labels(args, trained)
    device = default_device()
    generator = make_generator(args.seed, device)
    nfe = 0

    def write(tmp: Path) -> None:
        # Samples go straight into a memory-mapped .npy, chunk by chunk: memory stays bounded
        # for any n, and one generator runs through all chunks.
        nonlocal nfe
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(args.n, *trained.shape))  # fmt: skip
        starts = range(0, args.n, SAMPLE_CHUNK)
        for start in tqdm(starts, desc="sampling", unit="chunk", disable=len(starts) == 1):
            size = min(SAMPLE_CHUNK, args.n - start)
            chunk = None if labels is None else labels[start : start + size]
            result = trained.sample(size, generator=generator, device=device, label=chunk,
                                    **guidance, **settings)  # fmt: skip
            array[start : start + size] = result.x.cpu().numpy().reshape(size, *trained.shape)
            nfe = result.nfe
        array.flush()
        del array

    atomic_write(out, write)
    if labels is not None:
        labels_path = out.with_suffix(".labels.npy")
        atomic_write(labels_path, lambda tmp: np.save(tmp, labels.numpy()))
        print(f"labels of the samples in {labels_path} (guidance scale {args.guidance:g})")
    if trained.is_image:  # a picture of the first ones beside the array
        picture = out.with_suffix(".png")
        first = np.load(out, mmap_mode="r")[:GRID_IMAGES]
        low, high = trained.value_range
        save_image_grid(np.asarray(first), picture, shape=trained.shape, value_range=(low, high))
        shape = " x ".join(map(str, trained.shape))
        print(f"wrote {args.n} images of {shape} to {out} ({nfe} NFE per sample), in the data's "
              f"units; the first {min(args.n, GRID_IMAGES)} as a grid in {picture}")  # fmt: skip
        return 0
    print(f"wrote {args.n} samples of dimension {trained.dim} to {out} ({nfe} NFE per sample)")
    return 0


def class_labels(args: argparse.Namespace, trained):
    """(labels (n,) or None, the guidance keyword arguments) from --class, --guidance and
    --guidance-interval; UsageError for anything that does not fit the run."""
    import torch

    if args.classes is None:
        if args.guidance != 1.0 or args.guidance_interval is not None:
            raise UsageError("--guidance and --guidance-interval need --class")
        return None, {}
    if not trained.classes:
        raise UsageError("--class needs a run trained with labels; this one is unconditional "
                         "(train on labelled data with --labels auto or on)")  # fmt: skip
    k = trained.classes
    if args.classes.strip() == "all":
        chosen = list(range(k))
    else:
        try:
            chosen = [int(part) for part in args.classes.split(",")]
        except ValueError:
            raise UsageError(f"--class takes class numbers 0..{k - 1} separated by commas, or "
                             f"all; got {args.classes!r}") from None  # fmt: skip
        bad = [c for c in chosen if not 0 <= c < k]
        if bad:
            raise UsageError(f"--class {bad[0]} is not a class of this run (0..{k - 1})")
    interval = None
    if args.guidance_interval is not None:
        try:
            low, high = (float(part) for part in args.guidance_interval.split(","))
        except ValueError:
            raise UsageError("--guidance-interval takes two numbers LOW,HIGH, got "
                             f"{args.guidance_interval!r}") from None  # fmt: skip
        if not 0 <= low < high:  # NaN fails too
            raise UsageError(f"--guidance-interval needs 0 <= LOW < HIGH, got {low:g},{high:g}")
        interval = (low, high)
    # equal shares in the order given: the first n/len samples the first class, and so on
    share = torch.arange(args.n) * len(chosen) // args.n
    labels = torch.tensor(chosen)[share]
    return labels, {"guidance": args.guidance, "interval": interval}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from diffusion.training.build import training_points
    from diffusion.utils import default_device
    from diffusion.workflows.run import evaluate

    if args.n is not None and args.n > MAX_EVALUATE:
        raise UsageError(f"--n must be at most {MAX_EVALUATE:_} for evaluate (samples are held "
                         f"in memory), got {args.n:_}")  # fmt: skip
    trained = load_source(args)
    settings = sampling_settings(args, trained)
    dataset = run_dataset(trained, "evaluate compares samples with the run's data set")
    # A generated image set's training images are drawn again from the run's seed, for the
    # memorisation ratio.
    train = None
    if dataset.is_image and dataset.points is None:
        train = training_points(trained.config, dataset)[0]
    result = evaluate(
        trained, dataset, n=args.n or trained.config.eval_samples, seed=args.seed,
        device=default_device(), train=train, **settings,
    )  # fmt: skip
    metrics = result.to_dict()
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{result.samples.shape[0]} samples, {result.nfe} NFE, {result.seconds:.1f} s")
        print(format_metrics(metrics))
    return 0
