"""The original demo: DDPM on the swiss roll, writing the training GIF.

    python -m diffusion.ddpm.main

It is `diffusion train` with its defaults, writing into ``runs/ddpm-demo`` (replaced on
each run); the animation of samples over training is ``runs/ddpm-demo/training.gif``.
It takes no arguments but --help.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from diffusion.cli import main

RUN_DIR = Path("runs") / "ddpm-demo"
USAGE = "usage: python -m diffusion.ddpm.main [-h]"
HELP = f"""{USAGE}

The original demo: train DDPM on the swiss roll with the defaults of `diffusion train`,
into {RUN_DIR} (replaced on each run), and write the animation of samples over training
to {RUN_DIR / "training.gif"}. For every other setting use `diffusion train --help`.

options:
  -h, --help  show this help message and exit
"""


def demo() -> int:
    """Train DDPM on the swiss roll into RUN_DIR and print where the GIF is."""
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    code = main(["train", "--dataset", "swissroll", "--process", "ddpm", "--out", str(RUN_DIR)])
    if code == 0:
        print(f"training animation: {RUN_DIR / 'training.gif'}")
    return code


def run(argv: Sequence[str] | None = None) -> int:
    """The demo's command line: no arguments runs it, --help describes it, anything else is
    a one-line error (exit 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        return demo()
    if argv[0] in ("-h", "--help"):
        print(HELP, end="")
        return 0
    print(f"diffusion.ddpm.main: error: unrecognized argument {argv[0]!r} "
          "(it takes none; see `diffusion train --help`)", file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(run())
