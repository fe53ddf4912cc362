"""The `diffusion` command: train, sample and evaluate models on toy and user data.

One module per command (train, sample and evaluate, nll and diagnose, compare, tune-grid,
report, export), the parser in `parser`, and what they share in `common`.

Bad input never shows a traceback: it prints one line naming the problem and exits 2 (an
unknown option or command with the closest one: "did you mean ...?"). Without arguments the
command prints its usage and its commands, and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from diffusion.cli.common import EXIT_FAILURE, EXIT_USAGE, UsageError
from diffusion.cli.compare import cmd_compare
from diffusion.cli.export import cmd_export
from diffusion.cli.measure import cmd_diagnose, cmd_nll
from diffusion.cli.parser import build_parser
from diffusion.cli.report import cmd_report
from diffusion.cli.sample import cmd_evaluate, cmd_sample
from diffusion.cli.train import cmd_train
from diffusion.cli.tune import cmd_tune_grid

__all__ = ["COMMANDS", "build_parser", "main"]


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "nll": cmd_nll,
    "diagnose": cmd_diagnose,
    "tune-grid": cmd_tune_grid,
    "report": cmd_report,
    "export": cmd_export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `diffusion` command; returns the exit code."""
    from diffusion.data import DataError
    from diffusion.errors import CheckpointError
    from diffusion.training.config import ConfigError
    from diffusion.training.loop import NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        print(parser.format_help(), end="", file=sys.stderr)
        return EXIT_USAGE
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit 0
            return exc.code or 0
        args.argv = argv  # what was asked, for a command that starts others (train --nproc)
        return COMMANDS[args.command](args)
    except NonFiniteLossError as exc:  # not bad input: training itself failed
        print(f"diffusion: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILURE
    except (UsageError, ConfigError, DataError, CheckpointError, ValueError) as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"diffusion: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
