"""Saving and loading trained models: safetensors weights plus a JSON config. Never pickle.

A run directory holds ``model.safetensors`` (the EMA weights and the data normaliser) and
``config.json`` (the resolved `TrainConfig`, the data dimension and the library version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusion
from diffusion.config import ConfigError, TrainConfig
from diffusion.normalize import Normalizer
from diffusion.processes import GaussianProcess, SampleResult
from diffusion.train import build_model, build_process

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A run directory or checkpoint that cannot be loaded (message says why, in one line)."""


@dataclass
class TrainedModel:
    """A model ready to sample: process, EMA network and the data normaliser."""

    config: TrainConfig
    process: GaussianProcess
    model: torch.nn.Module
    normalizer: Normalizer
    dim: int

    def sample(
        self,
        n: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        callback=None,
        **options: object,
    ) -> SampleResult:
        """n samples in data space (the callback still sees the normalised state)."""
        self.model.to(device).eval()
        result = self.process.sample(
            self.model,
            (n, self.dim),
            sampler=sampler or self.config.sampler,
            steps=steps or self.config.sample_steps,
            generator=generator,
            device=device,
            callback=callback,
            **options,
        )
        x = self.normalizer.denormalize(result.x)
        return SampleResult(x=x, nfe=result.nfe, times=result.times)


def save_model(run_dir: str | Path, trained: TrainedModel) -> None:
    """Write the weights and config of `trained` into `run_dir`, each file atomically."""
    from diffusion.utils import atomic_write, atomic_write_text

    run_dir = Path(run_dir)
    tensors = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()
    }
    tensors["normalizer.shift"] = trained.normalizer.shift.cpu().contiguous()
    tensors["normalizer.scale"] = trained.normalizer.scale.cpu().contiguous()
    atomic_write(run_dir / WEIGHTS, lambda p: save_file(tensors, str(p)))
    meta = {
        "format_version": FORMAT_VERSION,
        "library_version": diffusion.__version__,
        "dim": trained.dim,
        "config": trained.config.to_dict(),
    }
    atomic_write_text(run_dir / CONFIG, json.dumps(meta, indent=2) + "\n")


def load_model(run_dir: str | Path) -> TrainedModel:
    """Load a run directory written by `save_model`; raises CheckpointError on anything wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    for name in (CONFIG, WEIGHTS):
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir / name} is missing: is {run_dir} a training run?")
    try:
        meta = json.loads((run_dir / CONFIG).read_text())
        config = TrainConfig.from_dict(meta["config"])
        dim = int(meta["dim"])
        version = meta["format_version"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{run_dir / CONFIG} is not a valid run config: {exc}") from None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{run_dir / CONFIG} has format version {version}; expected {FORMAT_VERSION}"
        )
    try:
        tensors = load_file(str(run_dir / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise CheckpointError(
            f"{run_dir / WEIGHTS} is not a valid safetensors file: {exc}"
        ) from None
    model = build_model(config, dim)
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
        normalizer = Normalizer(
            shift=tensors["normalizer.shift"], scale=tensors["normalizer.scale"]
        )
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{run_dir / WEIGHTS} does not match its config: {first}") from None
    return TrainedModel(
        config=config,
        process=build_process(config),
        model=model.eval(),
        normalizer=normalizer,
        dim=dim,
    )
