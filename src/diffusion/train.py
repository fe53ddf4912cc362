"""The training loop: AdamW with warmup and cosine decay, gradient clipping, EMA, snapshots.

Everything random comes from generators seeded by `TrainConfig.seed`; the global torch RNG
is never touched. The loop keeps the loss on the device and syncs with the host only to
refresh the progress bar, so it runs the same way on CUDA.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from diffusion.config import TrainConfig
from diffusion.data import Dataset, get_dataset
from diffusion.models import TimeMLP
from diffusion.normalize import Normalizer
from diffusion.processes import PROCESSES, GaussianProcess
from diffusion.utils import default_device, make_generator

#: offsets that split one user seed into independent streams.
SEED_DATA, SEED_MODEL, SEED_TRAIN, SEED_SNAPSHOT = 0, 1, 2, 3
#: sampling steps for the frames of training.gif (cheap; the final samples use sample_steps).
SNAPSHOT_STEPS = 50


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when present, else CPU."""
    return default_device() if name == "auto" else torch.device(name)


def build_process(config: TrainConfig) -> GaussianProcess:
    """The forward process named by the config."""
    return PROCESSES[config.process](
        steps=config.diffusion_steps,
        schedule=config.schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        zero_terminal_snr=config.zero_terminal_snr,
        prediction=config.prediction,
        allow_terminal_signal=config.allow_terminal_signal,
    )


def build_model(config: TrainConfig, dim: int, seed: int | None = None) -> TimeMLP:
    """The network, initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed * 16 + SEED_MODEL if seed is None else seed)
        return TimeMLP(
            dim,
            width=config.width,
            depth=config.depth,
            embedding="sinusoidal",
            embedding_scale=float(config.diffusion_steps),
        )


def training_points(config: TrainConfig, dataset: Dataset) -> torch.Tensor:
    """The fixed training set: a file's rows, or `n_train` draws from a toy set."""
    if dataset.points is not None:
        return dataset.points
    return dataset.sample(config.n_train, make_generator(config.seed * 16 + SEED_DATA))


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every parameter."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, list(model.parameters()), 1.0 - decay)


@dataclass
class TrainResult:
    """A trained model and the record of how it got there."""

    config: TrainConfig
    process: GaussianProcess
    model: torch.nn.Module  # the raw weights after the last step
    ema: torch.nn.Module  # the EMA weights, used for sampling
    normalizer: Normalizer
    dataset: Dataset
    data: torch.Tensor  # (n, d) the training points, in data space
    losses: torch.Tensor  # (steps,) training loss per step
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, samples)
    seconds: float = 0.0  # wall time of the loop


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    on_snapshot: Callable[[int, torch.Tensor], None] | None = None,
    dataset: Dataset | None = None,
) -> TrainResult:
    """Train the EMA model of `config` and return it with the loss curve and the snapshots."""
    config.validate()
    device = resolve_device(config.device)
    if dataset is None:  # callers that already loaded config.dataset pass it in
        dataset = get_dataset(config.dataset)
    process = build_process(config)
    data = training_points(config, dataset)
    normalizer = Normalizer.fit(data)
    x_train = normalizer.normalize(data).to(device)  # (n, d)
    n, dim = x_train.shape

    model = build_model(config, dim).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup, config.steps, config.min_lr_ratio)
    )
    generator = make_generator(config.seed * 16 + SEED_TRAIN, device)
    losses = torch.empty(config.steps, device=device)
    snapshots: list[tuple[int, torch.Tensor]] = []

    def snapshot(step: int) -> None:
        # The same prior draw at every snapshot, so the frames of the animation move smoothly.
        frame_generator = make_generator(config.seed * 16 + SEED_SNAPSHOT, device)
        x = process.sample(
            ema,
            (config.snapshot_samples, dim),
            sampler=config.sampler,
            steps=min(config.sample_steps, SNAPSHOT_STEPS),
            generator=frame_generator,
            device=device,
        ).x
        samples = normalizer.denormalize(x).cpu()
        snapshots.append((step, samples))
        if on_snapshot is not None:
            on_snapshot(step, samples)

    start = time.perf_counter()
    bar = tqdm(total=config.steps, desc="training", disable=not progress, dynamic_ncols=True)
    model.train()
    for step in range(config.steps):
        idx = torch.randint(0, n, (config.batch_size,), generator=generator, device=device)
        loss = process.loss(model, x_train[idx], generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        # EMA warmup (as in Tarvainen & Valpola 2017): early weights are not averaged in for long.
        update_ema(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
        losses[step] = loss.detach()
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            done = step + 1 - bar.n
            bar.set_postfix(loss=f"{losses[max(0, step - 99) : step + 1].mean().item():.4f}")
            bar.update(done)
        if (step + 1) % config.snapshot_every == 0 or step + 1 == config.steps or step == 0:
            snapshot(step + 1)
    bar.close()
    seconds = time.perf_counter() - start
    return TrainResult(
        config=config,
        process=process,
        model=model,
        ema=ema,
        normalizer=normalizer,
        dataset=dataset,
        data=data,
        losses=losses.cpu(),
        snapshots=snapshots,
        seconds=seconds,
    )
