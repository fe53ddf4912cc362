"""The original demo: DDPM on the swiss roll, writing the training GIF.

    python -m diffusion.ddpm.main

It is `diffusion train` with its defaults, writing into ``runs/ddpm-demo`` (replaced on
each run); the animation of samples over training is ``runs/ddpm-demo/training.gif``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from diffusion.cli import main

RUN_DIR = Path("runs") / "ddpm-demo"


def demo() -> int:
    """Train DDPM on the swiss roll into RUN_DIR and print where the GIF is."""
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    code = main(["train", "--dataset", "swissroll", "--process", "ddpm", "--out", str(RUN_DIR)])
    if code == 0:
        print(f"training animation: {RUN_DIR / 'training.gif'}")
    return code


if __name__ == "__main__":
    sys.exit(demo())
