"""`diffusion report RUN [RUN ...]`: the run report, written again or for several runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion.cli.common import UsageError


def cmd_report(args: argparse.Namespace) -> int:
    from diffusion.viz.report import write_report

    if args.out is not None:
        out = Path(args.out)
        if out.is_dir():
            raise UsageError(
                f"--out {out} is a folder: name the page to write (e.g. {out}/report.html)"
            )
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    page = write_report(args.runs, args.out)
    print(f"wrote {page}")
    return 0
