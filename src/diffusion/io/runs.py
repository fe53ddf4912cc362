"""Saving and loading trained models: safetensors weights plus a JSON config. Never pickle.

A run directory holds ``config.json`` (the resolved `TrainConfig`, the data dimension and
the library version; written before training starts), ``config.toml`` (the same settings
for ``--config``), and once training has finished ``model.safetensors`` (the EMA weights and
the data normaliser, checksummed; see `tensorfile`). Training checkpoints live in
``checkpoints/`` (see `resume`); time grids tuned for the model by `diffusion tune-grid` in
``grids.json`` (see `grids`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import diffusion
from diffusion.data.normalize import Normalizer
from diffusion.errors import CheckpointError
from diffusion.io.grids import RunGrids
from diffusion.io.tensorfile import read_tensor_file, write_tensor_file
from diffusion.training.build import build_model, build_process
from diffusion.training.config import TrainConfig
from diffusion.training.saved_config import to_toml, upgrade_saved_config
from diffusion.training.trained import TrainedModel
from diffusion.utils import atomic_write_text

__all__ = ["CheckpointError", "TrainedModel", "load_model", "read_run_config", "save_model"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CONFIG_TOML = "config.toml"
MODEL_KIND = "model"
FORMAT_VERSION = 2  # 2: checksummed model file, config.json written when training starts
RUN_DEPTH = 3  # folders up from a path inside a run to look for it (RUN/checkpoints/file)


def write_run_config(
    run_dir: str | Path, config: TrainConfig, dim: int, shape: tuple[int, ...] | None = None
) -> None:
    """Write the run's resolved config: config.json (read by `load_model` and `--resume`) and
    config.toml (the same settings, for `diffusion train --config`)."""
    run_dir = Path(run_dir)
    meta = {
        "format_version": FORMAT_VERSION,
        "library_version": diffusion.__version__,
        "dim": dim,
        "shape": list(shape or (dim,)),
        "config": config.to_dict(),
    }
    atomic_write_text(run_dir / CONFIG, json.dumps(meta, indent=2) + "\n")
    atomic_write_text(run_dir / CONFIG_TOML, to_toml(config))


def enclosing_run(path: Path) -> Path | None:
    """The run directory `path` lies in (a file of a run, its checkpoints/, a checkpoint in
    them...), or None: the nearest of its parents holding a config.json, a few levels up."""
    for parent in list(path.resolve().parents)[:RUN_DEPTH]:
        if (parent / CONFIG).is_file():
            return Path(os.path.relpath(parent)) if not path.is_absolute() else parent
    return None


def read_run_config(run_dir: str | Path, *, option: str = "--run") -> tuple[TrainConfig, int]:
    """The config and data dimension recorded in a run directory; `option` is what named
    it on the command line (for the message when it names a file or folder inside a run)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    try:
        run_dir.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise CheckpointError(f"{option} {str(run_dir)[:60]!r}...: {exc.strerror}") from None
    if not (run_dir.is_dir() and path.is_file()):
        inside = enclosing_run(run_dir) if run_dir.exists() else None
        if inside is not None:
            raise CheckpointError(f"{option} expects a run directory; pass {inside} "
                                  f"({run_dir} is inside it)")  # fmt: skip
    if not run_dir.exists():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"{option} expects a run directory; {str(run_dir)!r} is a file")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: is {run_dir} a training run?")
    try:
        meta = json.loads(path.read_text())
        version = meta["format_version"]
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has format version {version!r}; this version of diffusion reads "
                f"{FORMAT_VERSION} (retrain the run)"
            )
        config = TrainConfig.from_dict(upgrade_saved_config(meta["config"]))
        dim = meta["dim"]
        if not (isinstance(dim, int) and dim >= 1):
            raise TypeError(f"dim must be a positive integer, got {dim!r}")
        run_shape(meta, dim)  # checked with the rest; `read_run_shape` reads it
    except CheckpointError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid run config: {exc}") from None
    return config, dim


def run_shape(meta: dict, dim: int) -> tuple[int, ...]:
    """The example shape recorded in a run's config.json ((dim,) for runs that predate it);
    TypeError unless it is a list of 1 or 3 positive integers with `dim` entries in all."""
    shape = meta.get("shape", [dim])
    if not (
        isinstance(shape, list)
        and len(shape) in (1, 3)
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
        and math.prod(shape) == dim
    ):
        raise TypeError(f"shape must be 1 or 3 positive integers with dim entries, got {shape!r}")
    return tuple(shape)


def read_run_shape(run_dir: str | Path) -> tuple[int, ...]:
    """The example shape of a run whose config `read_run_config` has already accepted."""
    meta = json.loads((Path(run_dir) / CONFIG).read_text())
    return run_shape(meta, meta["dim"])


def save_model(run_dir: str | Path, trained: TrainedModel) -> None:
    """Write the EMA weights and normaliser of `trained` to model.safetensors, atomically."""
    tensors = {f"model.{k}": v for k, v in trained.model.state_dict().items()}
    tensors["normalizer.shift"] = trained.normalizer.shift
    tensors["normalizer.scale"] = trained.normalizer.scale
    meta = {"kind": MODEL_KIND, "format_version": FORMAT_VERSION, "dim": trained.dim,
            "shape": list(trained.shape)}  # fmt: skip
    write_tensor_file(Path(run_dir) / WEIGHTS, tensors, meta)


def load_model(run_dir: str | Path, *, option: str = "--run") -> TrainedModel:
    """Load a finished run; raises CheckpointError (one line) on anything wrong. `option` is
    what named the run on the command line (see `read_run_config`)."""
    run_dir = Path(run_dir)
    config, dim = read_run_config(run_dir, option=option)
    if not (run_dir / WEIGHTS).is_file():
        raise CheckpointError(
            f"{run_dir / WEIGHTS} is missing: the run has not finished training "
            f"(continue it with: diffusion train --resume {run_dir})"
        )
    tensors, meta = read_tensor_file(run_dir / WEIGHTS)
    if meta.get("kind") != MODEL_KIND or meta.get("dim") != dim:
        raise CheckpointError(
            f"{run_dir / WEIGHTS} is not this run's model (kind {meta.get('kind')!r}, "
            f"dim {meta.get('dim')!r}; config.json says dim {dim})"
        )
    shape = read_run_shape(run_dir)
    if meta.get("shape", [dim]) != list(shape):
        raise CheckpointError(f"{run_dir / WEIGHTS} is not this run's model (shape "
                              f"{meta.get('shape')!r}; config.json says {list(shape)})")  # fmt: skip
    try:
        model = build_model(config, shape)
    except ValueError as exc:
        raise CheckpointError(f"{run_dir / CONFIG} does not describe a model: {exc}") from None
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
        normalizer = Normalizer(
            shift=tensors["normalizer.shift"], scale=tensors["normalizer.scale"]
        )
        if normalizer.shift.shape != (dim,) or normalizer.scale.shape != (dim,):
            raise RuntimeError(f"normaliser of shape {tuple(normalizer.shift.shape)}")
    except (RuntimeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{run_dir / WEIGHTS} does not match its config: {first}") from None
    return TrainedModel(
        config=config,
        process=build_process(config),
        model=model.eval(),
        normalizer=normalizer,
        dim=dim,
        shape=shape,
        tuned_grids=RunGrids(run_dir),
    )
