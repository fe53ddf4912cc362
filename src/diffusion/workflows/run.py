"""A training run end to end: train, sample, measure, and write everything a person looks at.

Run directory layout::

    training.gif   samples over training against the data (images: a grid of samples from
                   one fixed prior draw, at every snapshot)
    reverse.gif    particles flowing from noise (t = 1) to data (t = 0) (images: a grid of
                   x_t beside the network's estimate of the clean image)
    samples.png    data and samples side by side (images: two grids)
    loss.png       the training loss curve
    log.csv        one row per step (loss, learning rate, gradient norm, ...), written as the
                   run trains (`diffusion.io.trainlog`)
    metrics.json   distances to fresh data, their floors and ratios, timings
    report.html    a page with all of the above, for a browser (written last)
    config.json    the resolved configuration, written before training starts
    config.toml    the same settings, for `diffusion train --config`
    model.safetensors   the EMA model, once training has finished
    checkpoints/   the latest complete training state, for `diffusion train --resume`

Every file is written atomically: a killed run never leaves a truncated file under a final
name.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from diffusion.data import Dataset
from diffusion.io.checkpoints import latest_checkpoint, save_checkpoint
from diffusion.io.runs import save_model, write_run_config
from diffusion.io.tensorboard_log import TensorBoardLog, check_tensorboard
from diffusion.io.trainlog import LOG_NAME, TrainingLog
from diffusion.measure.metrics import MetricsReport, compare_to_data
from diffusion.samplers import SamplerStep
from diffusion.streams import stream
from diffusion.training.build import resolve_device
from diffusion.training.config import TrainConfig
from diffusion.training.distributed import World, leave
from diffusion.training.loop import NonFiniteLossError, Trainer, TrainResult
from diffusion.training.preemption import stop_on_signals
from diffusion.training.state import TrainingState
from diffusion.training.trained import TrainedModel
from diffusion.utils import atomic_write_text
from diffusion.viz.gif import reverse_gif, training_gif
from diffusion.viz.images import image_reverse_gif, image_training_gif, plot_image_samples
from diffusion.viz.plots import compute_limits, plot_loss, plot_samples
from diffusion.viz.report import write_report
from diffusion.workflows.image_metrics import image_metrics

REVERSE_POINTS = 2000  # particles in reverse.gif
REVERSE_IMAGES = 16  # images in reverse.gif of an image run (a 4 x 4 grid)
REVERSE_FRAMES = 40  # frames in reverse.gif, spread over the sampling steps


def new_run_dir(root: str | Path = "runs") -> Path:
    """A fresh directory under `root` named after the current time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{stamp}-{suffix}"
    return path


@dataclass(frozen=True)
class EvalResult:
    """Samples drawn for evaluation, their metrics and what drawing them cost."""

    samples: torch.Tensor  # (n, d) in data space
    metrics: MetricsReport
    nfe: int
    seconds: float
    image: dict | None = None  # image runs: the Fréchet and memorisation ratios

    def to_dict(self) -> dict:
        """The metrics as JSON: each with value, floor and ratio."""
        return {**(self.image or {}), **self.metrics.to_dict()}


def evaluate(
    trained: TrainedModel,
    dataset: Dataset,
    *,
    n: int,
    seed: int,
    sampler: str | None = None,
    steps: int | None = None,
    grid: str | None = None,
    device: torch.device | str = "cpu",
    train: torch.Tensor | None = None,
    **options: object,
) -> EvalResult:
    """Sample n points and compare them with fresh data (value, floor, ratio per metric); for
    images also the Fréchet and memorisation ratios (`train`: a generated set's training
    images, for the latter)."""
    start = time.perf_counter()
    result = trained.sample(
        n,
        label=class_draws(trained, dataset, n, seed),
        sampler=sampler,
        steps=steps,
        grid=grid,
        generator=stream(seed, "eval", device),
        device=device,
        **options,
    )
    seconds = time.perf_counter() - start
    samples = result.x.cpu()
    report = compare_to_data(samples, dataset.sample, stream(seed, "metrics"))
    image = None
    if dataset.is_image:
        image = image_metrics(samples, dataset, stream(seed, "metrics.images"), train=train)
    return EvalResult(samples=samples, metrics=report, nfe=result.nfe, seconds=seconds,
                      image=image)  # fmt: skip


def class_draws(trained: TrainedModel, dataset: Dataset, n: int, seed: int) -> torch.Tensor | None:
    """The classes a conditional run's evaluation samples (None for an unconditional run):
    drawn in the data's own proportions, so that sampling each at w = 1 samples the data law
    sum_c p(c) p(x | c) with the network's conditional model, the one trained on every batch
    (its "no class" model sees only the dropped labels, `label_dropout` of them)."""
    if not trained.config.classes:
        return None
    generator = stream(seed, "eval.labels")
    if dataset.labels is not None:
        pick = torch.randint(dataset.labels.shape[0], (n,), generator=generator)
        return dataset.labels[pick]
    if dataset.labelled is not None:
        return dataset.labelled(n, generator)[1]
    return None


def _reverse_frames(trained: TrainedModel, n: int, *, seed: int, device: torch.device | str):
    """(t, x_t, x0_hat) frames in data space, n examples from the prior (x0_hat there: the
    data's centre) to the samples, at most REVERSE_FRAMES + 1 of them."""
    steps = trained.config.sample_steps
    keep = set(torch.linspace(0, steps - 1, REVERSE_FRAMES).round().long().tolist())
    frames: list[tuple[float, torch.Tensor, torch.Tensor]] = []

    def record(step: SamplerStep) -> None:
        if step.index in keep:
            frames.append((step.s, trained.to_data(step.x).cpu(), trained.to_data(step.x0).cpu()))

    generator = stream(seed, "reverse", device)
    x1 = trained.process.prior((n, trained.dim), generator=generator, device=device)
    frames.append((1.0, trained.to_data(x1).cpu(), trained.to_data(torch.zeros_like(x1)).cpu()))
    generator = stream(seed, "reverse", device)  # replay: the same prior draw
    label = None
    if trained.config.classes:  # a conditional run: the examples cycle through the classes
        label = torch.arange(n, device=device) % trained.config.classes
    trained.sample(n, generator=generator, device=device, callback=record, label=label)
    return frames


def reverse_trajectory(trained: TrainedModel, *, seed: int, device: torch.device | str = "cpu"):
    """(t, x_t) frames in data space from the prior to the samples, at most REVERSE_FRAMES + 1."""
    frames = _reverse_frames(trained, REVERSE_POINTS, seed=seed, device=device)
    return [(t, x) for t, x, _ in frames]


def reverse_images(trained: TrainedModel, *, seed: int, device: torch.device | str = "cpu"):
    """(t, x_t, x0_hat) frames in data space for reverse.gif of an image run: REVERSE_IMAGES
    images from the prior to the samples, with the network's clean-image estimate."""
    return _reverse_frames(trained, REVERSE_IMAGES, seed=seed, device=device)


def _write_pictures(run_dir: Path, result: TrainResult, evaluation: EvalResult, reverse) -> None:
    """training.gif, reverse.gif and samples.png: scatter plots for points, grids for images."""
    data, dataset, config = result.data, result.dataset, result.config
    title = f"{config.dataset}: data vs {config.process} samples"
    if dataset.is_image:
        look = {"shape": dataset.shape, "value_range": dataset.value_range}
        image_training_gif(result.snapshots, run_dir / "training.gif", **look)
        image_reverse_gif(reverse, run_dir / "reverse.gif", **look)
        plot_image_samples(data, evaluation.samples, run_dir / "samples.png", title=title, **look)
        return
    limits = compute_limits(data)
    training_gif(result.snapshots, data, run_dir / "training.gif", limits=limits)
    reverse_gif(reverse, data, run_dir / "reverse.gif")
    plot_samples(data, evaluation.samples, run_dir / "samples.png", limits=limits, title=title)


def write_outputs(run_dir: Path, result: TrainResult, evaluation: EvalResult, reverse) -> dict:
    """Write pictures, metrics and checkpoint of a finished run; return the metrics dict."""
    _write_pictures(run_dir, result, evaluation, reverse)
    plot_loss(result.losses.numpy(), run_dir / "loss.png")
    metrics = {
        "dataset": result.config.dataset,
        "process": result.config.process,
        "sampler": result.config.sampler,
        "sample_steps": result.config.sample_steps,
        "nfe": evaluation.nfe,
        "n_samples": int(evaluation.samples.shape[0]),
        "train_seconds": round(result.seconds, 2),
        "sample_seconds": round(evaluation.seconds, 2),
        "skipped_steps": result.skipped_steps,
        "final_loss": float(result.losses[-100:].nanmean()),
        **evaluation.to_dict(),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_report([run_dir])
    return metrics


def run_training(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    dataset: Dataset | None = None,
    resume: TrainingState | None = None,
    backend: str = "auto",
) -> dict | None:
    """Train with `config` (continuing from `resume` if given), then write every output into
    `run_dir`; return the metrics.

    The resolved config is written first; with `config.checkpoint_every` > 0 the training
    state is checkpointed into run_dir/checkpoints as it goes. `dataset` is `config.dataset`
    already loaded, if the caller has it (else it is loaded). SIGTERM or SIGINT stops the
    run after the step under way with a checkpoint (`Stopped`). Started by torchrun, the
    processes train one model together (`backend`: `diffusion.training.distributed`) and only
    the first writes files and returns the metrics; the others return None.
    """
    run_dir = Path(run_dir)
    world = World.from_env(resolve_device(config.device), backend)
    try:
        trainer = Trainer(config, dataset, world)
        if resume is not None:
            trainer.load_state(resume)
        log = board = None
        if world.is_main:
            if config.log == "tensorboard":
                check_tensorboard()  # before any file is written
            write_run_config(run_dir, config, trainer.dim, trainer.shape)
            log = TrainingLog(run_dir / LOG_NAME)
            log.start(trainer.step)
            if config.log == "tensorboard":
                dataset = trainer.dataset
                board = TensorBoardLog(run_dir, trainer.step, shape=trainer.shape,
                                       value_range=dataset.value_range if dataset.is_image
                                       else None)  # fmt: skip

        def on_log(rows: list[dict]) -> None:
            log.append(rows)
            if board is not None:
                board.append(rows)

        def checkpoint(t: Trainer) -> None:
            if world.is_main:
                save_checkpoint(run_dir, t.state())

        try:
            with stop_on_signals(trainer):
                result = trainer.run(
                    progress=progress, on_stop=checkpoint,
                    on_checkpoint=checkpoint if config.checkpoint_every else None,
                    on_log=on_log if log is not None else None,
                    on_snapshot=board.snapshot if board is not None else None,
                )  # fmt: skip
        except NonFiniteLossError as exc:
            last = latest_checkpoint(run_dir)
            note = (
                f"; the last good checkpoint is {last}" if last else "; no checkpoint was written"
            )
            raise NonFiniteLossError(exc.step, exc.streak, exc.skipped, note) from None
    finally:
        leave(world)
    if not world.is_main:
        return None
    device = trainer.device
    trained = TrainedModel.from_result(result)
    save_model(run_dir, trained)
    evaluation = evaluate(
        trained, result.dataset, n=config.eval_samples, seed=config.seed, device=device,
        train=result.data,
    )  # fmt: skip
    frames = reverse_images if trained.is_image else reverse_trajectory
    reverse = frames(trained, seed=config.seed, device=device)
    metrics = write_outputs(run_dir, result, evaluation, reverse)
    if board is not None:
        board.metrics(metrics, config.train_steps)
        board.close()
    return metrics
