"""Cost sections: training throughput against batch size, sampling throughput and peak
memory of `diffusion sample` at 10^4..10^6 points, cost against the data dimension, and the
effect of CPU thread counts and `torch.compile` on a training step."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import Scorer, model_draw, timed

from diffusion.data import get_dataset
from diffusion.data.mixture import GaussianMixture
from diffusion.processes.coupling import COUPLINGS
from diffusion.samplers import sample
from diffusion.training.config import MAX_OT_BATCH, TrainConfig
from diffusion.training.loop import Trainer
from diffusion.utils import make_generator
from diffusion.workflows.exact import exact_model
from diffusion.workflows.run import run_training

BATCHES = (64, 256, 512, 1024, 4096, 16384)
SAMPLE_SIZES = (10_000, 100_000, 1_000_000)
DIMS = (2, 8, 32, 128)
WARM, TIMED, REPEATS = 20, 50, 3


def step_time(trainer: Trainer, steps: int = TIMED, repeats: int = REPEATS) -> float:
    """Median seconds per training step over `repeats` blocks of `steps` (after a warm-up).

    The loss is read once per block, so the clock includes all queued device work."""
    for _ in range(WARM):
        trainer.train_step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        trainer.losses[trainer.step - 1].item()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _config(**changes) -> TrainConfig:
    # A long nominal run keeps the learning rate schedule away from its end while timing.
    return TrainConfig(train_steps=10**6, checkpoint_every=0, snapshot_every=10**6, **changes)


def training_throughput(log) -> list[dict]:
    """Training samples per second of the default model at each batch size, with independent
    pairs and with the optimal-transport coupling (whose n x n plan grows with the batch; it
    is refused above MAX_OT_BATCH)."""
    rows = []
    for batch in BATCHES:
        row = {"batch_size": batch}
        for coupling in COUPLINGS:
            if coupling == "ot" and batch > MAX_OT_BATCH:
                continue
            seconds = step_time(Trainer(_config(batch_size=batch, coupling=coupling)))
            suffix = "" if coupling == "independent" else f"_{coupling}"
            row[f"ms_per_step{suffix}"] = round(1e3 * seconds, 3)
            row[f"samples_per_s{suffix}"] = round(batch / seconds)
            log(
                f"  batch {batch:>6}, {coupling:>11}: {1e3 * seconds:7.2f} ms/step, "
                f"{batch / seconds:>10,.0f} samples/s"
            )
        rows.append(row)
    return rows


def _peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """Run a command; return its wall seconds and its peak resident memory in MiB."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def sampling_scale(log) -> list[dict]:
    """`diffusion sample` on a (briefly trained) default-architecture run, in a fresh
    process per size: wall time (imports and model loading included) and peak memory."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run_training(
            TrainConfig(train_steps=50, eval_samples=1000, snapshot_samples=100),
            run_dir,
            progress=False,
        )
        cli = [sys.executable, "-m", "diffusion"]
        base_s, base_mib = _peak_rss_mib(
            [*cli, "sample", "--run", str(run_dir), "--n", "1", "--out", f"{tmp}/one.npy"]
        )
        log(f"  n = 1 (start-up): {base_s:.1f} s, peak {base_mib:.0f} MiB")
        rows.append({"n": 1, "seconds": round(base_s, 2), "peak_mib": round(base_mib)})
        for n in SAMPLE_SIZES:
            seconds, mib = _peak_rss_mib(
                [*cli, "sample", "--run", str(run_dir), "--n", str(n), "--out", f"{tmp}/x.npy"]
            )
            # Mostly start-up (under twice its time): the difference is noise, not a rate.
            rate = round(n / (seconds - base_s)) if seconds >= 2 * base_s else None
            rows.append(
                {
                    "n": n,
                    "seconds": round(seconds, 2),
                    "peak_mib": round(mib),
                    "samples_per_s": rate,
                }
            )
            shown = f"{rate:>9,} samples/s after start-up" if rate else "mostly start-up"
            log(f"  n = {n:>9,}: {seconds:6.1f} s, {shown}, peak {mib:.0f} MiB")
    return rows


def random_mixture(dim: int, components: int = 8, seed: int = 0) -> GaussianMixture:
    """K isotropic components with means drawn on a sphere of radius 3 and stds in [0.2, 0.5]."""
    generator = make_generator(seed)
    means = torch.randn(components, dim, generator=generator, dtype=torch.float64)
    means = 3 * means / means.norm(dim=1, keepdim=True)
    stds = 0.2 + 0.3 * torch.rand(components, generator=generator, dtype=torch.float64)
    weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
    return GaussianMixture.isotropic(weights, means, stds)


def dimension_scale(log) -> list[dict]:
    """The default recipe on an 8-component mixture in D dimensions: step time, training
    time, sampling time and SW ratio, beside the exact score's ratio with the same sampler."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dim in DIMS:
            path = Path(tmp) / f"mixture{dim}.json"
            path.write_text(json.dumps(random_mixture(dim).to_json()))
            dataset = get_dataset(str(path))
            config = TrainConfig(dataset=str(path), checkpoint_every=0).validate()
            trainer = Trainer(config, dataset)
            trainer.run(progress=False)
            scorer = Scorer(dataset)
            draw = model_draw(
                trainer, trainer.ema, config.sampler, config.sample_steps, config.sample_grid
            )
            _, sample_s = timed(lambda draw=draw, n=scorer.n: draw(n, make_generator(0)))
            oracle = exact_model(dataset.mixture, config, normalizer=trainer.normalizer)
            row = {
                "dim": dim,
                "train_s": round(trainer.seconds, 2),
                "ms_per_step": round(1e3 * trainer.seconds / config.train_steps, 3),
                "sample_s_10k": round(sample_s, 2),
                "ratio": scorer(draw),
                "exact_ratio": scorer(lambda n, g, oracle=oracle: oracle.sample(n, generator=g).x),
            }
            rows.append(row)
            log(
                f"  D = {dim:>3}: train {row['train_s']:.1f} s, 10k samples {sample_s:.2f} s, "
                f"SW ratio {row['ratio']:.2f} (exact score {row['exact_ratio']:.2f})"
            )
    return rows


class PerRowTime(torch.nn.Module):
    """The network fed its time row by row, as before it embedded a shared time once."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t.contiguous())  # a materialised copy: not seen as one time


def shared_time_sampling(log, n: int = 10_000, repeats: int = 5) -> dict:
    """Seconds to draw n samples with the default sampler when the network embeds the
    sampler's one time once (`TimeMLP`'s shared-time path) and when it embeds it per row;
    interleaved, median of `repeats`."""
    trainer = Trainer(_config())
    config = trainer.config
    models = {"shared": trainer.ema, "per_row": PerRowTime(trainer.ema)}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            _, seconds = timed(
                lambda model=model: sample(
                    trainer.process.denoiser(model), (n, trainer.dim), sampler=config.sampler,
                    steps=config.sample_steps, generator=torch.Generator().manual_seed(0),
                )
            )  # fmt: skip
            times[name].append(seconds)
    out = {f"{name}_s": round(statistics.median(v), 3) for name, v in times.items()}
    out.update(n=n, sampler=config.sampler, steps=config.sample_steps)
    log(
        f"  {n:,} samples ({config.sampler} {config.sample_steps}): {out['shared_s']:.2f} s "
        f"with the time embedded once, {out['per_row_s']:.2f} s per row"
    )
    return out


def settings(compile_: bool, log) -> dict:
    """ms per training step of the default recipe with 1 thread and with every core, and
    with torch.compile (its compile time reported separately)."""
    out: dict[str, object] = {"threads": []}
    before = torch.get_num_threads()
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        seconds = step_time(Trainer(_config()))
        out["threads"].append({"threads": threads, "ms_per_step": round(1e3 * seconds, 3)})
        log(f"  {threads} thread(s): {1e3 * seconds:.2f} ms/step")
    torch.set_num_threads(before)
    out["shared_time"] = shared_time_sampling(log)
    if compile_:
        trainer = Trainer(_config())
        eager = step_time(trainer)
        trainer = Trainer(_config())
        trainer.model = torch.compile(trainer.model)
        _, first = timed(
            lambda: [trainer.train_step() for _ in range(3)] + [trainer.losses[2].item()]
        )
        compiled = step_time(trainer)
        out["compile"] = {
            "first_steps_s": round(first, 1),
            "eager_ms": round(1e3 * eager, 3),
            "compiled_ms": round(1e3 * compiled, 3),
        }
        log(
            f"  torch.compile: first 3 steps {first:.1f} s, then {1e3 * compiled:.2f} ms/step "
            f"(eager {1e3 * eager:.2f})"
        )
    return out
