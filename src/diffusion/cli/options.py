"""Command-line options generated from `TrainConfig`'s settings: each one's help, default,
bounds and choices are written once, on the config field, and read here."""

from __future__ import annotations

import argparse
import math
from typing import Any

from diffusion.training.config import (
    DEFAULTS,
    FIELD_KINDS,
    PROCESS_SETTINGS,
    SETTINGS,
    ConfigError,
    check_setting,
    describe_range,
)


def option_name(setting: str) -> str:
    """The option spelling of a config setting: train_steps -> --train-steps."""
    return "--" + setting.replace("_", "-")


def _parse(setting: str, kind: str):
    """An argparse type that reads `kind` and applies the setting's own range check."""
    cast = {"int": int, "float": float, "str": str}[kind]
    what = {"int": "an integer", "float": "a number", "str": "a string"}[kind]

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"expected {what}, got {shown!r}") from None
        if kind == "float" and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        try:
            check_setting(setting, value)
        except ConfigError as exc:  # "lr must be ..., got x": the option is named by argparse
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{setting} ")) from None
        return value

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


def help_text(setting: str) -> str:
    """The setting's help, its range, the processes it applies to, and its default."""
    meta = SETTINGS[setting]
    parts = [meta.help]
    span = describe_range(meta)
    if span and meta.choices is None:
        parts.append(span)
    if setting in PROCESS_SETTINGS:
        parts.append(f"{', '.join(PROCESS_SETTINGS[setting])} only")
    default = DEFAULTS[setting]
    if default is None:
        shown = meta.unset or "none"
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = f"{default:_}" if isinstance(default, int) else str(default)
    text = "; ".join(parts)
    return f"{text} (default: {shown})".replace("%", "%%")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per `TrainConfig` setting, grouped as the settings are. Each defaults to
    None (not given), so a --config file's value is kept unless the option is given."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting, meta in SETTINGS.items():
        if meta.group not in groups:
            groups[meta.group] = parser.add_argument_group(meta.group)
        group = groups[meta.group]
        kind, _ = FIELD_KINDS[setting]
        name = option_name(setting)
        if kind == "bool":
            group.add_argument(name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text(setting))  # fmt: skip
        elif meta.choices is not None:
            group.add_argument(name, choices=meta.choices, default=None, help=help_text(setting))
        else:
            group.add_argument(name, type=_parse(setting, kind), default=None,
                               metavar=meta.metavar or kind.upper(), help=help_text(setting))  # fmt: skip


def config_overrides(args: argparse.Namespace) -> dict:
    """The settings given as options (those left out are not returned)."""
    return {k: getattr(args, k) for k in SETTINGS if getattr(args, k, None) is not None}
