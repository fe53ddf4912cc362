"""Configs as they are saved and read back: `--config` files, configs of runs saved by older
versions, and which settings may change when a run is resumed."""

from __future__ import annotations

import inspect
import json
import tomllib
from pathlib import Path
from typing import Any

from diffusion.errors import ConfigError
from diffusion.processes import PROCESSES
from diffusion.samplers.registry import ORDERS, SAMPLERS
from diffusion.training.config import SETTINGS, TrainConfig

#: settings that may change when a run is resumed; every other one must stay as it was.
RESUMABLE_CHANGES = frozenset(
    {
        "train_steps", "lr", "warmup", "min_lr_ratio", "weight_decay", "grad_clip", "ema_decay",
        "sampler", "sample_steps", "sample_grid", "sample_order", "snapshot_every", "eval_samples",
        "checkpoint_every", "log",
        "device", "precision", "allow_terminal_signal",
    }
)  # fmt: skip


def upgrade_saved_config(values: object) -> object:
    """A config saved before a setting existed, given that setting as the run was trained.

    Runs saved before train_times existed drew uniform times, runs saved before coupling
    existed drew independent noise, runs saved before labels existed were unconditional, runs
    saved before sample_order existed sampled with their sampler's own order, and `steps` is
    now `train_steps`, so a checkpoint of one
    still matches its config on resume.
    Anything that is not a table is returned as it is (`from_dict` reports it).
    """
    if not isinstance(values, dict):
        return values
    values = dict(values)
    if "train_times" not in values:
        process = PROCESSES.get(values.get("process", "flow"))
        uniform = process is not None and "train_times" in process.settings
        values["train_times"] = "uniform" if uniform else None
    values.setdefault("coupling", "independent")
    if "labels" not in values:  # runs saved before class conditioning were unconditional
        values["labels"], values["classes"] = "off", 0
    if "sample_order" not in values:  # saved before it existed: the sampler's own order
        values["sample_order"] = own_order(values.get("sampler"))
    if "steps" in values and "train_steps" not in values:  # renamed in 0.2
        values["train_steps"] = values.pop("steps")
    return values


def own_order(sampler: object) -> int | None:
    """The `order` a sampler takes when none is given (None for one that takes no order)."""
    if sampler not in ORDERS:
        return None
    return inspect.signature(SAMPLERS[sampler]).parameters["order"].default


def critical_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why a run made with config `old` cannot continue under `new` (empty: it can)."""
    problems = []
    for name in SETTINGS:
        if name not in RESUMABLE_CHANGES and old.get(name) != new.get(name):
            problems.append(
                f"{name} differs (the run has {old.get(name)!r}, now {new.get(name)!r}); "
                f"{name} cannot change when resuming: start a new run instead"
            )
    return problems


def resumable_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The allowed settings that differ, as "name: old -> new"."""
    return [
        f"{name}: {old.get(name)!r} -> {new.get(name)!r}"
        for name in sorted(RESUMABLE_CHANGES)
        if old.get(name) != new.get(name)
    ]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a .toml or .json file (flat keys mirroring the options); ConfigError if bad."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"config file must be .toml or .json, got {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:]}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise ConfigError(f"config file {path} holds a number too long to be a setting") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    for key, value in values.items():
        if isinstance(value, dict | list):
            raise ConfigError(f"config file {path}: {key!r} must be a single value, not a table")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def to_toml(config: TrainConfig) -> str:
    """The config as a flat TOML file that `--config` reads back (None values are left out)."""
    lines = ["# diffusion train --config this-file (options given on the command line win)"]
    for name, value in config.to_dict().items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value)  # a JSON string is a valid TOML basic string
        else:
            text = repr(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"
