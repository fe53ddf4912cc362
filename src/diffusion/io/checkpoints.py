"""Training checkpoints: the complete `TrainingState` in one checksummed file, and resuming.

A run directory keeps its checkpoints in ``checkpoints/step-00001000.safetensors``. Each is
written to a temporary file, flushed and renamed into place (`tensorfile`), then read back
and verified; only then are older checkpoints removed, so a crash at any moment leaves at
least one intact checkpoint (or none before the first). Loading checks the checksum and
every field, and never unpickles anything.

Layout of one checkpoint (tensor names; the JSON metadata holds the rest)::

    model.<name>, ema.<name>          raw and EMA weights
    optimizer.<i>.{step,exp_avg,exp_avg_sq}   AdamW state of parameter i
    rng                               training generator state (times and noise)
    losses                            loss per step so far
    snapshot.<j>                      frames of training.gif so far
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

import diffusion
from diffusion.errors import CheckpointError
from diffusion.io.tensorfile import read_tensor_file, write_tensor_file
from diffusion.training.saved_config import upgrade_saved_config
from diffusion.training.state import OPTIMIZER_KEYS, TrainingState

CHECKPOINT_DIR = "checkpoints"
STATE_KIND = "training-state"
STATE_FORMAT = 1
_NAME = re.compile(r"step-(\d{8,})\.safetensors")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.safetensors"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file in the run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][1] if checkpoints else None


def check_checkpoint_folder(run_dir: str | Path) -> None:
    """CheckpointError when checkpoints cannot be written into the run: RUN/checkpoints is
    not a folder, or a checkpoint's name is taken by something other than a file."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if os.path.lexists(folder) and not folder.is_dir():
        kind = "a file" if folder.is_file() else "a broken link or a special file"
        raise CheckpointError(f"{folder} is {kind}, not the folder of the run's checkpoints: "
                              "move it away")  # fmt: skip
    for _, path in list_checkpoints(run_dir):
        if not path.is_file():
            raise CheckpointError(f"{path} is not a file: move it away")


@dataclass(frozen=True)
class Resumable:
    """The newest checkpoint of a run that loads (None, None: there is none), and the newer
    ones that did not, newest first, with the reason each was refused."""

    path: Path | None
    state: TrainingState | None
    refused: list[tuple[Path, str]]


def newest_loadable_checkpoint(run_dir: str | Path) -> Resumable:
    """The newest checkpoint of `run_dir` that loads and verifies, skipping damaged ones
    (a crash mid-copy, a stray file named like a checkpoint)."""
    refused: list[tuple[Path, str]] = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return Resumable(path, load_checkpoint(path), refused)
        except CheckpointError as exc:
            refused.append((path, " ".join(str(exc).split())))
    return Resumable(None, None, refused)


def remove_temporary_files(run_dir: str | Path) -> list[Path]:
    """Delete leftovers of writes that a killed process never finished (".name.xyz.tmp...")."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINT_DIR):
        if folder.is_dir():
            for p in folder.glob(".*.tmp*"):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def state_to_file(state: TrainingState) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and JSON metadata that represent `state` on disk."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in state.model.items()})
    tensors.update({f"ema.{k}": v for k, v in state.ema.items()})
    for i, entry in enumerate(state.optimizer):
        tensors.update({f"optimizer.{i}.{k}": v for k, v in entry.items()})
    tensors["rng"] = state.rng
    tensors["losses"] = state.losses
    for j, (_, x) in enumerate(state.snapshots):
        tensors[f"snapshot.{j}"] = x
    meta = {
        "kind": STATE_KIND,
        "format_version": STATE_FORMAT,
        "library_version": diffusion.__version__,
        "torch_version": torch.__version__,
        "step": state.step,
        "data_position": state.data_position,
        "skipped": state.skipped,
        "seconds": state.seconds,
        "optimizer_entries": len(state.optimizer),
        "snapshot_steps": [s for s, _ in state.snapshots],
        "config": state.config,
        "data_sha256": state.data_sha256,
        "device_type": state.device_type,
    }
    return tensors, meta


def state_from_file(tensors: dict[str, torch.Tensor], meta: dict, path: Path) -> TrainingState:
    """Inverse of `state_to_file`; CheckpointError naming what is missing or malformed."""
    if meta.get("kind") != STATE_KIND:
        raise CheckpointError(f"{path} is not a training checkpoint (kind {meta.get('kind')!r})")
    if meta.get("format_version") != STATE_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('format_version')!r}; this version of "
            f"diffusion reads format {STATE_FORMAT}"
        )
    try:
        ints = {k: meta[k] for k in ("step", "data_position", "skipped", "optimizer_entries")}
        if not all(isinstance(v, int) and v >= 0 for v in ints.values()):
            raise TypeError(f"counters must be non-negative integers, got {ints}")
        steps = meta["snapshot_steps"]
        if not (isinstance(steps, list) and all(isinstance(s, int) for s in steps)):
            raise TypeError("snapshot_steps must be a list of integers")
        optimizer = [
            {
                k: tensors[f"optimizer.{i}.{k}"]
                for k in OPTIMIZER_KEYS
                if f"optimizer.{i}.{k}" in tensors
            }
            for i in range(ints["optimizer_entries"])
        ]
        state = TrainingState(
            step=ints["step"],
            model=_prefixed(tensors, "model."),
            ema=_prefixed(tensors, "ema."),
            optimizer=optimizer,
            rng=tensors["rng"],
            data_position=ints["data_position"],
            losses=tensors["losses"],
            snapshots=[(s, tensors[f"snapshot.{j}"]) for j, s in enumerate(steps)],
            skipped=ints["skipped"],
            seconds=_number(meta["seconds"]),
            config=upgrade_saved_config(dict(meta["config"])),
            data_sha256=str(meta["data_sha256"]),
            device_type=str(meta["device_type"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is a malformed training checkpoint: {exc}") from None
    if state.rng.dtype != torch.uint8 or state.losses.dtype != torch.float32:
        raise CheckpointError(f"{path} is a malformed training checkpoint: wrong dtypes")
    return state


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(path: str | Path) -> TrainingState:
    """Read and verify one checkpoint file."""
    path = Path(path)
    tensors, meta = read_tensor_file(path)
    return state_from_file(tensors, meta, path)


def save_checkpoint(run_dir: str | Path, state: TrainingState) -> Path:
    """Write `state` atomically, verify it by reading it back, then remove older checkpoints."""
    path = checkpoint_path(run_dir, state.step)
    tensors, meta = state_to_file(state)
    write_tensor_file(path, tensors, meta)
    load_checkpoint(path)  # raises if what landed on disk is not what we meant to write
    for _, other in list_checkpoints(run_dir):
        if other != path:
            other.unlink(missing_ok=True)
    return path
