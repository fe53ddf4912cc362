"""The training loop: AdamW with warmup and cosine decay, gradient clipping, EMA, snapshots.

Everything random comes from generators seeded by `TrainConfig.seed`; the global torch RNG
is never touched. The loop keeps the loss on the device and syncs with the host only every
`SYNC_EVERY` steps (progress bar, non-finite check), so it runs the same way on CUDA.

A `Trainer` can hand out its complete state (`TrainingState`: weights, EMA, optimizer
moments, the random generator, the data position, the step, the loss record and the
snapshots) and take it back, so a run resumed from a checkpoint continues bit for bit.

Non-finite guard: a step whose loss or gradient norm is not finite changes nothing (the
fused AdamW kernel is told through `found_inf`, as with AMP's grad scaler, and the EMA
update is weighted by zero), is counted, and is recorded as NaN in the loss curve. The check
runs on the device; every `SYNC_EVERY` steps the host looks at the longest run of skipped
steps and stops training with `NonFiniteLossError` once it reaches `MAX_NONFINITE_STREAK`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from diffusion.data import Dataset, get_dataset
from diffusion.data.normalize import Normalizer
from diffusion.errors import CheckpointError, ConfigError
from diffusion.processes import GaussianProcess
from diffusion.processes.guidance import GuidedDenoiser
from diffusion.samplers import sample
from diffusion.streams import stream, stream_seed
from diffusion.training.batches import EpochBatches
from diffusion.training.build import (
    build_model,
    build_process,
    data_digest,
    resolve_classes,
    resolve_data_settings,
    resolve_device,
    training_points,
)
from diffusion.training.config import TrainConfig
from diffusion.training.distributed import World, all_sum
from diffusion.training.saved_config import critical_differences
from diffusion.training.state import OPTIMIZER_KEYS, TrainingState, inconsistencies

#: sampling steps for the frames of training.gif (cheap; the final samples use sample_steps).
SNAPSHOT_STEPS = 50
#: cheaper sampler settings for the frames (annealed Langevin's 100 steps per level is slow).
SNAPSHOT_OPTIONS = {"langevin": {"langevin_steps": 20}}
#: the host looks at the loss (progress bar, non-finite check) once per this many steps.
SYNC_EVERY = 100
#: this many consecutive non-finite steps stop the run.
MAX_NONFINITE_STREAK = 10


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss (or gradient) stayed non-finite."""

    def __init__(self, step: int, streak: int, skipped: int, note: str = "") -> None:
        self.step, self.streak, self.skipped = step, streak, skipped
        super().__init__(
            f"training stopped at step {step}: the loss or gradient norm was not finite for "
            f"{streak} consecutive steps ({skipped} steps skipped in all; skipped steps do not "
            f"change the weights){note}. Try a lower learning rate, or check the data for NaN "
            "or inf"
        )


class Stopped(Exception):
    """Training stopped early, at a step boundary, because a signal asked it to."""

    def __init__(self, step: int, signal_number: int) -> None:
        self.step, self.signal_number = step, signal_number
        super().__init__(f"training stopped at step {step} (signal {signal_number})")


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at the last step.

    The learning rate is a pure function of the step, so the step is the scheduler's state.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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
    losses: torch.Tensor  # (steps,) training loss per step (NaN: skipped)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, samples)
    seconds: float = 0.0  # wall time of the loop, summed over resumes
    skipped_steps: int = 0  # steps skipped because the loss was not finite


class Trainer:
    """One training run: build it from a config, optionally `load_state`, then `run`."""

    def __init__(
        self, config: TrainConfig, dataset: Dataset | None = None, world: World | None = None
    ) -> None:
        config.validate()
        self.config = config
        self.world = world or World()  # several processes: `diffusion.training.distributed`
        self.world.check_batch(config.batch_size)
        self.device = self.world.device(resolve_device(config.device))
        self.dataset = dataset if dataset is not None else get_dataset(config.dataset)
        self.data, labels = training_points(config, self.dataset)
        resolve_classes(config, self.dataset, labels is not None, labels)
        self.data_sha256 = data_digest(self.data)
        self.normalizer = Normalizer.for_dataset(self.dataset, self.data)
        x = self.normalizer.normalize(self.data).to(self.device)  # (n, d), images flattened
        resolve_data_settings(config, self.dataset, x)
        self.process = build_process(config)
        self.x_train = x
        # (n,) class of each training example, for a conditional run (config.classes > 0)
        self.labels = labels.to(self.device) if labels is not None else None
        n, self.dim = x.shape
        self.shape = self.dataset.shape  # one example: (d,), or (C, H, W) for images

        try:
            self.model = build_model(config, self.shape).to(self.device)
        except ValueError as exc:  # e.g. a U-Net asked for points
            raise ConfigError(f"model {config.model}: {exc}") from None
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        # what the loss calls: the network itself, or DDP around it (which averages the
        # gradients of the processes during backward)
        self.network = self.model
        if self.world.size > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
        # fused: one kernel for the whole update, and it can skip a step on the device.
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        self.generator = stream(config.seed, "train", self.device)
        self.batches = EpochBatches(
            n, config.batch_size, stream_seed(config.seed, "order"), self.device
        )
        self.step = 0
        self.losses = torch.full((config.train_steps,), math.nan, device=self.device)
        # per step, for the training log (`on_log`): gradient norm, whether skipped, host time
        self.grad_norms = torch.full((config.train_steps,), math.nan, device=self.device)
        self._bad_steps = torch.zeros((config.train_steps,), device=self.device)
        self._step_seconds: dict[int, float] = {}
        self._logged = 0  # steps handed to on_log so far
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.seconds = 0.0
        self._skipped = torch.zeros((), device=self.device)  # non-finite steps, on the device
        self._streak = torch.zeros((), device=self.device)  # consecutive ones, now
        self._worst = torch.zeros((), device=self.device)  # longest streak since the last check
        #: set (to the signal's number) to stop after the current step with a checkpoint
        #: (`diffusion.training.preemption`); the processes of a run stop at the same step
        self.stop_signal = 0
        self._votes = torch.zeros((), device=self.device)  # processes asking to stop

    # -- state -------------------------------------------------------------------------------

    def state(self) -> TrainingState:
        """A CPU copy of everything needed to continue (see TrainingState)."""

        def cpu(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to("cpu", copy=True)

        optimizer = []
        for p in self.model.parameters():
            entry = self.optimizer.state.get(p, {})
            optimizer.append({k: cpu(entry[k]) for k in OPTIMIZER_KEYS if k in entry})
        return TrainingState(
            step=self.step,
            model={k: cpu(v) for k, v in self.model.state_dict().items()},
            ema={k: cpu(v) for k, v in self.ema.state_dict().items()},
            optimizer=optimizer,
            rng=self.generator.get_state().clone(),
            data_position=self.batches.position,
            losses=cpu(self.losses[: self.step]),
            snapshots=[(s, x.clone()) for s, x in self.snapshots],
            skipped=int(self._skipped.item()),
            seconds=self.seconds,
            config=self.config.to_dict(),
            data_sha256=self.data_sha256,
            device_type=self.device.type,
        )

    def load_state(self, state: TrainingState) -> None:
        """Continue from `state`; CheckpointError if it does not belong to this run."""
        differences = critical_differences(state.config, self.config.to_dict())
        if differences:
            raise CheckpointError(f"cannot resume: {differences[0]}")
        if state.data_sha256 != self.data_sha256:
            raise CheckpointError(
                "cannot resume: the training data differ from the data the checkpoint was "
                f"trained on ({self.config.dataset})"
            )
        if state.device_type != self.device.type:
            raise CheckpointError(
                f"cannot resume on {self.device.type}: the checkpoint's random state was made on "
                f"{state.device_type}; resume with --device {state.device_type}"
            )
        if state.step > self.config.train_steps:
            raise CheckpointError(
                f"cannot resume: the checkpoint is at step {state.step}, beyond train_steps = "
                f"{self.config.train_steps}"
            )
        try:
            self.model.load_state_dict(state.model, strict=True)
            self.ema.load_state_dict(state.ema, strict=True)
            self._load_optimizer(state.optimizer)
            self.generator.set_state(state.rng)
        except (RuntimeError, ValueError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"checkpoint does not fit this model: {first}") from None
        problems = inconsistencies(
            state, self.config.batch_size, (self.config.snapshot_samples, self.dim)
        )
        if problems:
            raise CheckpointError(f"checkpoint is inconsistent: {problems[0]}")
        self.step = state.step
        self.batches.position = state.data_position
        self.losses[: state.step] = state.losses.to(self.device)
        self.snapshots = [(s, x.clone()) for s, x in state.snapshots]
        self._skipped.fill_(state.skipped)
        self.seconds = state.seconds
        self._logged = state.step

    def _load_optimizer(self, entries: list[dict[str, torch.Tensor]]) -> None:
        params = list(self.model.parameters())
        if len(entries) != len(params):
            raise ValueError(f"{len(entries)} optimizer entries for {len(params)} parameters")
        self.optimizer.state.clear()
        for p, entry in zip(params, entries, strict=True):
            if not entry:
                continue
            if set(entry) != set(OPTIMIZER_KEYS):
                raise ValueError(f"optimizer entry has keys {sorted(entry)}")
            for key in ("exp_avg", "exp_avg_sq"):
                if entry[key].shape != p.shape:
                    raise ValueError(f"optimizer {key} of shape {tuple(entry[key].shape)}")
            self.optimizer.state[p] = {
                "step": entry["step"].to(self.device, torch.float32, copy=True),
                "exp_avg": entry["exp_avg"].to(self.device, p.dtype, copy=True),
                "exp_avg_sq": entry["exp_avg_sq"].to(self.device, p.dtype, copy=True),
            }

    # -- the loop ----------------------------------------------------------------------------

    def snapshot(self) -> torch.Tensor:
        """Samples of the EMA model in data space, drawn from the same prior draw every time."""
        frame_generator = stream(self.config.seed, "snapshot", self.device)
        denoiser = self.process.denoiser(self.ema)
        if self.labels is not None:  # a conditional run: the frames cycle through the classes
            n, classes = self.config.snapshot_samples, self.config.classes
            label = torch.arange(n, device=self.device) % classes
            denoiser = GuidedDenoiser(self.ema, self.process, self.process.prediction, label,
                                      1.0, classes)  # fmt: skip
        x = sample(
            denoiser,
            (self.config.snapshot_samples, self.dim),
            sampler=self.config.sampler,
            steps=min(self.config.sample_steps, SNAPSHOT_STEPS),
            grid=self.config.sample_grid,
            **self.config.sampler_options(
                self.config.sampler, SNAPSHOT_OPTIONS.get(self.config.sampler)
            ),
            generator=frame_generator,
            device=self.device,
        ).x
        return self.normalizer.denormalize(x, clip=self.dataset.is_image).cpu()

    def check_finite(self) -> None:
        """Host check: raise NonFiniteLossError if a long run of steps was skipped."""
        worst = int(self._worst.item())
        self._worst.zero_()
        if worst >= MAX_NONFINITE_STREAK:
            raise NonFiniteLossError(self.step, worst, int(self._skipped.item()))

    def _forward(self, *args, **kwargs) -> torch.Tensor:
        """The network's forward pass in training: in bfloat16 autocast when asked
        (`precision`), its output back in float32 for the loss."""
        if self.config.precision != "bf16":
            return self.network(*args, **kwargs)
        with torch.autocast(self.device.type, torch.bfloat16):
            return self.network(*args, **kwargs).float()

    def train_step(self) -> None:
        """One optimisation step (skipped on the device if the loss is not finite)."""
        config, step = self.config, self.step
        idx = self.batches.next()
        shard = self.world.shard(config.batch_size)
        conditioning: dict = {} if shard is None else {"shard": shard}
        if self.labels is not None:
            # Classifier-free guidance training (Ho & Salimans 2022, Algorithm 1): each label
            # is replaced by "no class" (index `classes`) with probability label_dropout; the
            # true classes still group the coupling (`couple`).
            groups = self.labels[idx]
            dropped = torch.rand(groups.shape, generator=self.generator, device=self.device)
            label = groups.masked_fill(dropped < config.label_dropout, config.classes)
            conditioning.update(cond={"label": label}, groups=groups)
        loss = self.process.loss(
            self._forward, self.x_train[idx], generator=self.generator, **conditioning
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world.size > 1:  # the batch's loss, and whether any process asks to stop
            votes = torch.stack([loss.detach(), loss.new_tensor(float(self.stop_signal > 0))])
            loss, self._votes = all_sum(votes, self.world).unbind()
            loss = loss / self.world.size
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        bad = (~(torch.isfinite(loss) & torch.isfinite(norm))).to(torch.float32)
        factor = lr_factor(step, config.warmup, config.train_steps, config.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * factor
        self.optimizer.found_inf = bad  # the fused kernel leaves everything as is when 1
        self.optimizer.step()
        # EMA warmup (as in Tarvainen & Valpola 2017): early weights are not averaged in for
        # long. A skipped step has weight 0, which leaves the EMA exactly as it was.
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        # ema += w (p - ema), written with foreach ops that take the weight w as a device
        # tensor (_foreach_lerp_ would read a tensor weight back to the host every step).
        ema_params = list(self.ema.parameters())
        with torch.no_grad():
            deltas = torch._foreach_sub(list(self.model.parameters()), ema_params)
            torch._foreach_mul_(deltas, (1 - decay) * (1 - bad))
            torch._foreach_add_(ema_params, deltas)
        self.losses[step] = loss.detach()
        self.grad_norms[step] = norm.detach()
        self._bad_steps[step] = bad
        self._skipped += bad
        self._streak.add_(1).mul_(bad)
        torch.maximum(self._worst, self._streak, out=self._worst)
        self.step = step + 1

    def run(
        self,
        *,
        progress: bool = True,
        on_snapshot: Callable[[int, torch.Tensor], None] | None = None,
        on_checkpoint: Callable[[Trainer], None] | None = None,
        until: int | None = None,
        on_stop: Callable[[Trainer], None] | None = None,
        on_log: Callable[[list[dict]], None] | None = None,
    ) -> TrainResult:
        """Train from the current step to `config.train_steps` (or to step `until`, to stop early
        as an interrupted run would) and return the result.

        `on_checkpoint(trainer)` is called every `config.checkpoint_every` steps and after the
        last step (never after a skipped streak that stops the run). When `stop_signal` is set
        (by a signal, `diffusion.training.preemption`), the step under way finishes,
        `on_stop(trainer)` is called and `Stopped` is raised. With several processes only the
        first shows progress and draws snapshots.

        `on_log(rows)` gets one dict per step (the columns of `diffusion.io.trainlog`) each
        time the host looks at the loss, and always before a checkpoint or a stop.
        """
        config = self.config
        every = config.checkpoint_every
        start = time.perf_counter()
        main = self.world.is_main
        bar = tqdm(
            total=config.train_steps, initial=self.step, desc="training",
            disable=not (progress and main), dynamic_ncols=True,
        )  # fmt: skip
        self.model.train()
        stop = config.train_steps if until is None else min(until, config.train_steps)
        try:
            while self.step < stop:
                self.train_step()
                step, last = self.step, self.step == config.train_steps
                if on_log is not None:  # the log's wall time of each step, popped when logged
                    self._step_seconds[step] = self.seconds + time.perf_counter() - start
                checkpoint = on_checkpoint is not None and (last or (every and step % every == 0))
                stopping = self._stopping()
                if step % SYNC_EVERY == 0 or last or checkpoint or stopping:
                    self.check_finite()
                    window = self.losses[max(0, step - SYNC_EVERY) : step]
                    bar.set_postfix(loss=f"{window.nanmean().item():.4f}")
                    bar.update(step - bar.n)
                    if on_log is not None:
                        on_log(self.log_rows())
                if main and (step % config.snapshot_every == 0 or last or step == 1):
                    samples = self.snapshot()
                    self.snapshots.append((step, samples))
                    if on_snapshot is not None:
                        on_snapshot(step, samples)
                if checkpoint or stopping:
                    self.seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    if checkpoint:
                        on_checkpoint(self)
                    if stopping and not last:
                        if on_stop is not None and not checkpoint:
                            on_stop(self)
                        raise Stopped(self.step, self.stop_signal)
        finally:
            bar.close()
        self.seconds += time.perf_counter() - start
        return self.result()

    def log_rows(self) -> list[dict]:
        """The training log's rows for the steps taken since the last call (one host sync)."""
        config, first, last = self.config, self._logged, self.step
        values = torch.stack(
            [self.losses[first:last], self.grad_norms[first:last], self._bad_steps[first:last]]
        ).tolist()
        rows = []
        for i, (loss, norm, bad) in enumerate(zip(*values, strict=True)):
            step = first + i  # 0-based; the log counts steps from 1
            factor = lr_factor(step, config.warmup, config.train_steps, config.min_lr_ratio)
            rows.append({"step": step + 1, "loss": loss, "lr": config.lr * factor,
                         "grad_norm": norm, "skipped": int(bad),
                         "seconds": self._step_seconds.pop(step + 1, math.nan)})  # fmt: skip
        self._logged = last
        return rows

    def _stopping(self) -> bool:
        """Whether to stop after this step: a signal here, or (with several processes) in any
        process, so that all stop at the same step."""
        if self.world.size == 1:
            return self.stop_signal > 0
        return bool(self._votes.item() > 0)

    def result(self) -> TrainResult:
        return TrainResult(
            config=self.config,
            process=self.process,
            model=self.model,
            ema=self.ema,
            normalizer=self.normalizer,
            dataset=self.dataset,
            data=self.data,
            losses=self.losses.cpu(),
            snapshots=list(self.snapshots),
            seconds=self.seconds,
            skipped_steps=int(self._skipped.item()),
        )


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    on_snapshot: Callable[[int, torch.Tensor], None] | None = None,
    dataset: Dataset | None = None,
    resume: TrainingState | None = None,
    on_checkpoint: Callable[[Trainer], None] | None = None,
) -> TrainResult:
    """Train the EMA model of `config` (from `resume` if given) and return it with its record."""
    trainer = Trainer(config, dataset)
    if resume is not None:
        trainer.load_state(resume)
    return trainer.run(progress=progress, on_snapshot=on_snapshot, on_checkpoint=on_checkpoint)
