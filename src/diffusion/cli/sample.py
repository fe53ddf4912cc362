"""`diffusion sample` and `diffusion evaluate`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

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
    from diffusion.cli.train import check_nproc, torchrun_again
    from diffusion.training.distributed import World, leave
    from diffusion.utils import atomic_write, default_device
    from diffusion.viz.images import save_image_grid

    out = Path(args.out)
    if out.suffix != ".npy":
        raise UsageError(f"--out must name a .npy file, got {args.out!r}")
    if args.nproc is not None:
        check_nproc(args.nproc)
    check_writable(out, "--out", directory=False)
    trained = load_source(args)
    settings = sampling_settings(args, trained)
    needed = args.n * trained.dim * 4 + 4096
    free = shutil.disk_usage(nearest_existing(out.parent)).free
    if needed > free:
        raise UsageError(f"--n {args.n} needs {needed / 2**30:.1f} GiB for {args.out!r}, but "
                         f"only {free / 2**30:.1f} GiB are free there")  # fmt: skip
    labels, guidance = class_labels(args, trained)
    if args.nproc is not None:
        return torchrun_again(args.argv, args.nproc)
    world = World.from_env(default_device(), args.backend)  # one process unless torchrun
    try:
        device = world.device(default_device())
        nfe = 0

        def draw(start: int, size: int, generator):
            chunk = None if labels is None else labels[start : start + size]
            result = trained.sample(size, generator=generator, device=device, label=chunk,
                                    **guidance, **settings)  # fmt: skip
            return result.x.to(torch.float32).contiguous(), result.nfe

        if not world.is_main:
            send_share(args.n, world, args.seed, device, draw)
            return 0

        def write(tmp: Path) -> None:
            # Samples go straight into a memory-mapped .npy, chunk by chunk: memory stays
            # bounded for any n; the other processes' chunks arrive in order.
            nonlocal nfe
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                              shape=(args.n, *trained.shape))  # fmt: skip
            for start, x, chunk_nfe in gather_shares(args.n, world, args.seed, device, draw,
                                                     trained.dim):  # fmt: skip
                size, nfe = x.shape[0], chunk_nfe
                array[start : start + size] = x.cpu().numpy().reshape(size, *trained.shape)
            array.flush()
            del array

        atomic_write(out, write)
    finally:
        leave(world)
    spread = f", on {world.size} processes" if world.size > 1 else ""
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
        print(f"wrote {args.n} images of {shape} to {out} ({nfe} NFE per sample{spread}), in "
              f"the data's units; the first {min(args.n, GRID_IMAGES)} as a grid in {picture}")  # fmt: skip
        return 0
    print(f"wrote {args.n} samples of dimension {trained.dim} to {out} ({nfe} NFE per "
          f"sample{spread})")  # fmt: skip
    return 0


def share_of(n: int, rank: int, size: int) -> range:
    """The rows of n samples that process `rank` of `size` draws: a contiguous share."""
    return range(rank * n // size, (rank + 1) * n // size)


def share_generator(seed: int, rank: int, size: int, device):
    """The random stream of one process's share: the seed itself for a single process (so
    one process samples as before), else a stream derived from (seed, rank, size)."""
    from diffusion.utils import derive_seed, make_generator

    if size == 1:
        return make_generator(seed, device)
    return make_generator(derive_seed(seed, "sample", rank, size), device)


def _chunks(rows: range):
    for start in range(rows.start, rows.stop, SAMPLE_CHUNK):
        yield start, min(SAMPLE_CHUNK, rows.stop - start)


def send_share(n: int, world, seed: int, device, draw) -> None:
    """A process other than the first: draw its share chunk by chunk and send each to rank 0
    (sends overlap with the next chunk's sampling)."""
    import torch.distributed as dist

    generator = share_generator(seed, world.rank, world.size, device)
    pending = []
    for start, size in _chunks(share_of(n, world.rank, world.size)):
        x, _ = draw(start, size, generator)
        pending.append((x, dist.isend(x, dst=0)))
    for _, work in pending:
        work.wait()


def gather_shares(n: int, world, seed: int, device, draw, dim: int):
    """The first process: (start, samples (size, dim), NFE) of every chunk, in row order; its
    own share drawn here, the others' received from their processes."""
    import torch.distributed as dist

    own = share_of(n, 0, world.size)
    generator = share_generator(seed, 0, world.size, device)
    chunks = list(_chunks(own))
    nfe = 0
    for start, size in tqdm(chunks, desc="sampling", unit="chunk", disable=len(chunks) == 1):
        x, nfe = draw(start, size, generator)
        yield start, x, nfe
    for rank in range(1, world.size):
        for start, size in _chunks(share_of(n, rank, world.size)):
            x = torch.empty((size, dim), dtype=torch.float32, device=device)
            dist.recv(x, src=rank)
            yield start, x, nfe


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
