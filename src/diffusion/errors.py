"""The errors a user's input can cause: each prints as one line, and the CLI exits 2.

They live here, below every package, so that numerics, training and files can raise them
without importing each other. (`diffusion.data.DataError` is the data sets' own.)
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range (message names the field)."""


class CheckpointError(ValueError):
    """A file or run directory that cannot be loaded (the message says why, in one line)."""
