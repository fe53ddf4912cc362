"""diffusion: a toolkit for understanding, building and measuring generative diffusion models."""

__version__ = "0.1.0"
