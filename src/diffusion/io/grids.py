"""Tuned time grids on disk: RUN/grids.json, written by `diffusion tune-grid`, read by sampling.

The file is one JSON object::

    {"format_version": 1,
     "grids": {"unipc corrector=True order=3 variant=bh2 steps=10": {
         "sampler": "unipc", "options": {"corrector": true, "order": 3, "variant": "bh2"},
         "steps": 10, "times": [1.0, ..., 0.0], "error": ..., "start_error": ...,
         "start_grid": "logsnr", "n": 2000, "seed": 0, "library_version": "..."}, ...}}

keyed by `diffusion.samplers.tuning.grid_key` (sampler, every option with its default filled
in, steps). Writing a grid keeps the others and replaces the file atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

import diffusion
from diffusion.errors import CheckpointError
from diffusion.samplers.grids import check_times
from diffusion.samplers.tuning import TunedGrid, grid_key, resolved_options
from diffusion.utils import atomic_write_text

GRIDS_FILE = "grids.json"
FORMAT_VERSION = 1


def read_grids(path: str | Path) -> dict[str, dict]:
    """The entries of a grids file by key ({} when it does not exist); CheckpointError (one
    line) when it is not a valid one."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"expected format_version {FORMAT_VERSION}")
        grids = data.get("grids")
        if not isinstance(grids, dict):
            raise ValueError("expected a 'grids' object")
        for key, entry in grids.items():
            _check_entry(key, entry)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} is not a valid grids file ({first}); delete it and "
                              "tune again with diffusion tune-grid") from None  # fmt: skip
    return grids


def _check_entry(key: str, entry: object) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("times"), list):
        raise ValueError(f"grid {key!r} has no list of times")
    times = entry["times"]
    if not all(isinstance(t, int | float) and math.isfinite(t) for t in times):
        raise ValueError(f"grid {key!r} has a time that is not a finite number")
    check_times(torch.tensor(times, dtype=torch.float64))
    if len(times) != entry.get("steps", -1) + 1:
        raise ValueError(f"grid {key!r} has {len(times)} times for {entry.get('steps')} steps")


def grid_entry(
    tuned: TunedGrid, *, sampler: str, steps: int, options: dict | None = None, **about
) -> tuple[str, dict]:
    """(key, entry) for a tuned grid; `about` adds what it was tuned on (n, seed, ...)."""
    # JSON has no infinity: such an option (heun's churn_max) is written as the text "inf".
    settings = {k: v if not isinstance(v, float) or math.isfinite(v) else str(v)
                for k, v in resolved_options(sampler, options).items()}  # fmt: skip
    entry = {
        "sampler": sampler,
        "options": settings,
        "steps": int(steps),
        "times": tuned.times.tolist(),
        "error": tuned.error,
        "start_error": tuned.start_error,
        "start_grid": tuned.start_grid,
        "evaluations": tuned.evaluations,
        **about,
        "library_version": diffusion.__version__,
    }
    return grid_key(sampler, steps, options), entry


def save_grid(path: str | Path, key: str, entry: dict) -> None:
    """Add (or replace) one grid in the grids file at `path`, keeping the others; atomic."""
    grids = read_grids(path)
    _check_entry(key, entry)
    grids[key] = entry
    text = json.dumps({"format_version": FORMAT_VERSION, "grids": grids}, indent=2)
    atomic_write_text(path, text + "\n")


class RunGrids(Mapping[str, torch.Tensor]):
    """A run's tuned grids by key, read from RUN/grids.json on first use (a missing file is
    no grid; a broken one fails only when a tuned grid is asked for)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / GRIDS_FILE
        self._grids: dict[str, torch.Tensor] | None = None

    def _load(self) -> dict[str, torch.Tensor]:
        if self._grids is None:
            self._grids = {key: torch.tensor(entry["times"], dtype=torch.float64)
                           for key, entry in read_grids(self.path).items()}  # fmt: skip
        return self._grids

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())
