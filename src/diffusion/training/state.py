"""The training state: everything a run needs to continue exactly where it stopped.

`diffusion.io.checkpoints` writes it to disk and reads it back; `Trainer.state` and
`Trainer.load_state` make and take it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: per-parameter AdamW state, as torch names it.
OPTIMIZER_KEYS = ("step", "exp_avg", "exp_avg_sq")


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly where it stopped (all tensors on the CPU)."""

    step: int  # training steps done
    model: dict[str, torch.Tensor]  # raw weights
    ema: dict[str, torch.Tensor]  # EMA weights
    optimizer: list[dict[str, torch.Tensor]]  # AdamW state per parameter (empty before step 1)
    rng: torch.Tensor  # state of the training generator (times and noise), uint8
    data_position: int  # training points consumed (see EpochBatches)
    losses: torch.Tensor  # (step,) loss per step, NaN where a step was skipped
    snapshots: list[tuple[int, torch.Tensor]]  # frames of training.gif so far
    skipped: int  # non-finite steps skipped so far
    seconds: float  # training wall time so far
    config: dict  # the TrainConfig the state was made with
    data_sha256: str  # digest of the training points
    device_type: str  # "cpu" or "cuda": generator states do not move between them


def inconsistencies(
    state: TrainingState, batch_size: int, snapshot_shape: tuple[int, ...]
) -> list[str]:
    """Where the parts of `state` disagree with each other (a damaged or edited file), for a
    run of `batch_size` whose snapshots have `snapshot_shape`; empty when all is well."""
    problems = []
    if state.losses.shape != (state.step,):
        problems.append(f"{tuple(state.losses.shape)} losses for step {state.step}")
    if state.data_position != state.step * batch_size:
        problems.append(f"data position {state.data_position} at step {state.step}")
    if not 0 <= state.skipped <= state.step:
        problems.append(f"{state.skipped} skipped steps of {state.step}")
    if not (math.isfinite(state.seconds) and state.seconds >= 0):
        problems.append(f"training time {state.seconds}")
    updates = state.step - state.skipped
    for i, entry in enumerate(state.optimizer):
        if state.step == 0 and entry:
            problems.append(f"optimizer entry {i} before the first step")
        elif state.step > 0 and (not entry or entry["step"].item() != updates):
            problems.append(f"optimizer entry {i} does not record {updates} updates")
    steps = [s for s, _ in state.snapshots]
    if steps != sorted(set(steps)) or any(not 1 <= s <= state.step for s in steps):
        problems.append(f"snapshot steps {steps}")
    if any(x.shape != snapshot_shape for _, x in state.snapshots):
        problems.append(f"snapshots not of shape {snapshot_shape}")
    return problems
