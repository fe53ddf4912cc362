"""diffusion: a toolkit for understanding, building and measuring generative diffusion models.

    import diffusion

    run = diffusion.train("moons", train_steps=1000)  # or an (n, d) array of points
    samples = run.sample(5000)
    print(run.evaluate().sliced_wasserstein.ratio)

`train`, `load`, `Run` and `TrainConfig` are imported on first use, so `import diffusion`
stays light; the packages below hold everything else (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: the public API: name -> the module that defines it.
_API = {
    "train": "diffusion.workflows.api",
    "load": "diffusion.workflows.api",
    "Run": "diffusion.workflows.api",
    "TrainConfig": "diffusion.training.config",
    "available_datasets": "diffusion.data",
}
__all__ = ["Run", "TrainConfig", "__version__", "available_datasets", "load", "train"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'diffusion' has no attribute {name!r}")
