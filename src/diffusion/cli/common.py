"""What every `diffusion` subcommand shares: one-line usage errors, option types, option
groups, output-path checks, and the model a command runs on (a run or the exact oracle)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILURE = 1

MAX_EVALUATE = 10**7  # samples `diffusion evaluate` holds in memory at once
TUNED = "tuned"  # --sample-grid: the grid `diffusion tune-grid` saved with the run
NUMBER = re.compile(r"^-\.?\d")  # a negative number is a value, not an option


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line ("diffusion: error: ...") and exit 2, options are
    never abbreviated (`--step` is not `--steps`), and an unknown option or command is
    answered with the closest one ("did you mean ...?").

    Unknown arguments are errors here, `parse_known_args` included: each (sub)parser names
    its own, with a suggestion from its own options and from `synonyms`.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # every subparser too (parser_class=Parser)
        super().__init__(*args, **kwargs)
        #: other spellings of this parser's options (old names, common variants) -> the option
        self.synonyms: dict[str, str] = {}
        self.commands: argparse.Action | None = None  # the subcommands, when there are some

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    def add_subparsers(self, **kwargs):
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        if self.commands is not None:
            self._check_command(args)
            namespace, extras = super().parse_known_args(args, namespace)
        else:
            try:
                namespace, extras = super().parse_known_args(args, namespace)
            except UsageError:  # e.g. a required option missing: an unknown one says more
                extras = self._unknown_options(args)
                if not extras:
                    raise
        if extras:
            self.error(self._unrecognized(extras))
        return namespace, []

    def _check_command(self, args: list[str]) -> None:
        """The first word is the command (the options before it take no value): one of
        ours, else an error with the closest one."""
        names = list(self.commands.choices)
        words = [a for a in args if not a.startswith("-")]
        if not words:
            if not {"-h", "--help", "--version"} & set(args):
                self.error(f"no command given; commands: {', '.join(names)}")
            return
        if words[0] not in names:
            guess = close_match(words[0], names)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            self.error(f"unknown command {words[0]!r}{hint}; commands: {', '.join(names)}")

    def _unknown_options(self, args: list[str]) -> list[str]:
        """The words of `args` (before `--`) that look like options this parser lacks."""
        known = {o for a in self._actions for o in a.option_strings}
        found = []
        for arg in args:
            if arg == "--":
                break
            value = arg == "-" or NUMBER.match(arg)  # "-" and "-1.5" are values
            if arg.startswith("-") and not value and arg.split("=", 1)[0] not in known:
                found.append(arg)
        return found

    def _unrecognized(self, extras: list[str]) -> str:
        """'unrecognized option --x (did you mean --y?)' for the first unknown argument."""
        first = extras[0]
        if not first.startswith("-"):
            return f"unrecognized argument {first!r}"
        name = first.split("=", 1)[0]
        guess = self._suggest(name)
        return f"unrecognized option {name}" + (f" (did you mean {guess}?)" if guess else "")

    def _suggest(self, name: str) -> str | None:
        """The option meant by `name`: its new name, else the closest of those it begins
        (an abbreviation), else the closest of all (a typo); None when none is close."""
        if name in self.synonyms:
            return self.synonyms[name]
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        options = [*known, *self.synonyms]
        starts = [o for o in options if o.startswith(name)] if name.startswith("--") else []
        words = {o.lstrip("-"): o for o in starts or options}  # "--" would weigh in every ratio
        guess = close_match(name.lstrip("-"), list(words), cutoff=0 if starts else 0.6)
        return self.synonyms.get(words[guess], words[guess]) if guess else None


def close_match(word: str, candidates: list[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to `word` (difflib), or None when none is close."""
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _number(cast: type, what: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: `cast(text)` that must satisfy `ok`, else a one-line error."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


positive_int = _number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
seed_int = _number(int, "an integer in [0, 4294967295]", lambda v: 0 <= v <= 2**32 - 1)
positive_float = _number(float, "a positive finite number", lambda v: v > 0)
finite_float = _number(float, "a finite number", lambda v: True)
non_negative_float = _number(float, "a finite number >= 0", lambda v: v >= 0)


def on_off(text: str) -> bool:
    """Read "on" or "off" as a bool (an argparse type)."""
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def add_sampling_options(parser: argparse.ArgumentParser, *, steps_and_grid: bool = True) -> None:
    """--sampler, --sample-steps, --sample-grid and every sampler's own options (without
    --sample-steps and --sample-grid when `steps_and_grid` is False)."""
    from diffusion.samplers import SAMPLER_OPTIONS, SAMPLERS
    from diffusion.samplers.grids import GRIDS

    parser.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                        help="the sampler (default: the run's)")  # fmt: skip
    if steps_and_grid:
        parser.add_argument("--sample-steps", type=positive_int, default=None,
                            help="sampling steps (default: the run's)")  # fmt: skip
        parser.add_argument("--sample-grid", choices=(*GRIDS, TUNED), default=None,
                            help="the time grid sampling walks; tuned: the run's grid for this "
                            "sampler and steps, from `diffusion tune-grid` (default: the "
                            "run's)")  # fmt: skip
    group = parser.add_argument_group("sampler options (each applies to the samplers named)")

    def option(name: str, kind, text: str, **kwargs) -> None:
        """A sampler's option; its help ends with the default in the sampler's signature."""
        setting = name.removeprefix("--").replace("-", "_")
        user = next(s for s, names in SAMPLER_OPTIONS.items() if setting in names)
        default = inspect.signature(SAMPLERS[user]).parameters[setting].default
        if default is None:
            shown = "the process's"
        elif isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
        group.add_argument(name, type=kind, help=f"{text} (default: {shown})", **kwargs)

    option("--eta", non_negative_float, "ddim: noise, 0 deterministic")
    option(
        "--order",
        int,
        "dpm-solver++: 2 (2M) or 3 (3M); unipc, deis, dpm-solver: 1 to 3",
        choices=(1, 2, 3),
    )
    option("--variant", None, "unipc: B(h) = 1 - e^-h (bh2) or h (bh1)", choices=("bh2", "bh1"))
    option("--corrector", on_off, "unipc: the UniC corrector", metavar="{on,off}")
    option("--variance", None, "ancestral: variance", choices=("posterior", "beta"))
    option("--variable", None, "euler, heun: ODE variable", choices=("sigma", "t"))
    option("--churn", non_negative_float, "heun: S_churn of EDM")
    option("--snr", positive_float, "pc: corrector signal-to-noise ratio")
    option("--corrector-steps", non_negative_int, "pc: Langevin steps")
    option("--step-size", positive_float, "langevin: step / sigma^2")
    option("--langevin-steps", positive_int, "langevin: steps per level")
    option("--rtol", positive_float, "rk45: relative tolerance")
    option("--atol", positive_float, "rk45: absolute tolerance")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--run DIR, or --oracle with --dataset and --process: which model to use."""
    from diffusion.processes import PROCESSES

    group = parser.add_argument_group("model (a trained run, or the exact oracle of a mixture)")
    group.add_argument("--run", help="run directory written by `diffusion train`")
    group.add_argument(
        "--oracle", action="store_true",
        help="use the exact score of a Gaussian-mixture data set instead of a network: "
        "with --run, of the run's data and process; else give --dataset (and --process)",
    )  # fmt: skip
    group.add_argument("--dataset", help="with --oracle: a .json mixture or gaussians; with "
                       "--diffusers: the images to measure the model against (needed by "
                       "evaluate and nll)")  # fmt: skip
    group.add_argument("--process", choices=sorted(PROCESSES),
                       help="with --oracle (default: ddpm)")  # fmt: skip
    group.add_argument("--diffusers", metavar="DIR", default=None,
                       help="a model saved by diffusers' save_pretrained (a pipeline folder, "
                       "or a UNet2DModel folder with scheduler_config.json), from the local "
                       "disk; safetensors weights only")  # fmt: skip
    group.add_argument("--allow-pickle", action="store_true",
                       help="with --diffusers: accept pickled .bin weights (loading a pickle "
                       "runs any code it holds; only for files you trust)")  # fmt: skip


def format_metrics(metrics: dict) -> str:
    """A small table: metric, value, data-vs-data floor and ratio; "-" for a number that is
    missing (None: the JSON form of a non-finite one, e.g. the ratio to a zero floor)."""

    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    lines = [f"{'metric':<20}{'value':>12}{'floor':>12}{'ratio':>8}"]
    names = ("frechet", "memorisation", "sliced_wasserstein", "mmd", "energy")
    for name in (n for n in names if n in metrics):
        m = metrics[name]
        lines.append(f"{name:<20}{cell(m['value'], 12, 5)}{cell(m['floor'], 12, 5)}"
                     f"{cell(m['ratio'], 8, 2)}")  # fmt: skip
    return "\n".join(lines)


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (a symbolic link counts, even a broken one)."""
    path = path.absolute()
    while not os.path.lexists(path):
        path = path.parent
    return path


def shown_path(path: str | Path) -> str:
    """A path as messages quote it: in quotes, and cut short when very long."""
    text = str(path)
    return repr(text) if len(text) <= 200 else f"{text[:100]!r}... ({len(text)} characters)"


def check_writable(path: Path, option: str, *, directory: bool) -> None:
    """Refuse, before any compute, an output path that cannot be created where it points: a
    file where a directory goes or the reverse, a symbolic link where a file goes (the write
    would replace the link) or a broken one, a name the system refuses (too long), or a place
    this process cannot write. The last is tried, by making and removing a temporary folder
    there: permission bits do not stop root, and /proc or /sys refuse whatever they say."""
    where, folder = f"{option} {shown_path(path)}", None
    try:
        exists, link = path.exists(), path.is_symlink()
        if link and not (directory and exists):
            target = shown_path(os.readlink(path))
            raise UsageError(
                f"{where} is a symbolic link (to {target}"
                f"{'' if exists else ', which does not exist'}); writing would replace the "
                "link: give the target or another path"
            )
        if exists and path.is_dir() != directory:
            raise UsageError(f"{where} is {'a directory' if path.is_dir() else 'a file'}")
        # Files are written beside their final name (then renamed), a run's inside it.
        folder = path if directory and exists else nearest_existing(path.parent)
        if not folder.is_dir():
            broken = folder.is_symlink() and not folder.exists()
            kind = "a broken symbolic link" if broken else "not a directory"
            raise UsageError(f"{where}: {shown_path(folder)} is {kind}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{where}: cannot write in {shown_path(folder)}")
        before = folder.stat()
        probe = tempfile.mkdtemp(prefix=".diffusion-probe-", dir=folder)
    except OSError as exc:  # a name too long, a folder that refuses writes, ...
        reason = exc.strerror or type(exc).__name__
        place = f" in {shown_path(folder)}" if folder is not None else ""
        raise UsageError(f"{where}: cannot write{place} ({reason})") from None
    with contextlib.suppress(OSError):  # leave no trace, not even the folder's time
        os.rmdir(probe)
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))


def sampler_options(args: argparse.Namespace, sampler: str) -> dict:
    """Sampler options given on the command line; each must be one `sampler` takes."""
    from diffusion.samplers import SAMPLER_OPTIONS

    names = {name for opts in SAMPLER_OPTIONS.values() for name in opts}
    options = {k: getattr(args, k) for k in sorted(names) if getattr(args, k, None) is not None}
    for name in options:
        if name not in SAMPLER_OPTIONS[sampler]:
            users = [s for s, opts in SAMPLER_OPTIONS.items() if name in opts]
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} applies to the {' and '.join(users)} sampler"
                             f"{'s' if len(users) > 1 else ''} only, not {sampler}")  # fmt: skip
    return options


def sampling_steps(requested: int | None, trained, default: int) -> int:
    """--sample-steps, or `default` (the run's own for the sampler, `TrainedModel.sampling`);
    at most a discrete process's own steps."""
    steps = requested or default
    most = trained.process.discrete_steps
    if most and steps > most:
        raise UsageError(f"--sample-steps must be at most {most} for this run (its process has "
                         f"{most} steps)")  # fmt: skip
    return steps


def check_grid(trained, steps: int, grid: str, sampler: str, options: dict) -> None:
    """Build the grid once (or find the tuned one), so a grid the process cannot take, or a
    tuned grid that was never tuned, fails before sampling."""
    from diffusion.samplers.grids import make_grid
    from diffusion.samplers.tuning import check_tunable

    try:
        if grid == TUNED:
            check_tunable(sampler, options)  # no grid is ever tuned for a stochastic sampler
            trained.tuned_grid(sampler, steps, options)
        else:
            make_grid(trained.process, steps, grid)
    except ValueError as exc:
        raise UsageError(f"--sample-grid {grid}: {exc}") from None


def sampling_settings(args: argparse.Namespace, trained) -> dict:
    """The sampler, steps, grid and sampler options the command line asks for (the run's
    own where left out), checked before any sampling: keyword arguments of `sample`."""
    from diffusion.samplers import check_sampler

    sampler = args.sampler or trained.config.sampler
    sampler, run_steps, run_grid, options = trained.sampling(
        sampler, sampler_options(args, sampler)
    )
    try:
        check_sampler(trained.process, sampler, options)
    except ValueError as exc:
        raise UsageError(f"--sampler {sampler}: {exc}") from None
    steps = sampling_steps(args.sample_steps, trained, run_steps)
    grid = args.sample_grid or run_grid
    check_grid(trained, steps, grid, sampler, options)
    return {"sampler": sampler, "steps": steps, "grid": grid, **options}


def load_source(args: argparse.Namespace):
    """The model the options name: a run's network, or an exact oracle (`ExactModel`)."""
    from diffusion.data import get_dataset
    from diffusion.io.runs import load_model
    from diffusion.training.config import TrainConfig
    from diffusion.workflows.exact import exact_model

    named = args.dataset is not None or args.process is not None
    if getattr(args, "diffusers", None) is not None:
        if args.run is not None or args.oracle or args.process is not None:
            raise UsageError("--diffusers names the model: leave out --run, --oracle and "
                             "--process")  # fmt: skip
        return open_diffusers(args.diffusers, args.dataset, allow_pickle=args.allow_pickle,
                              command=getattr(args, "command", "sample"))  # fmt: skip
    if getattr(args, "allow_pickle", False):
        raise UsageError("--allow-pickle goes with --diffusers")
    if args.run is None and not args.oracle:
        raise UsageError(
            "give --run DIR (a trained run), --oracle --dataset D (exact) or --diffusers DIR"
        )
    if named and not args.oracle:
        raise UsageError("--dataset and --process go with --oracle")
    if named and args.run is not None:
        raise UsageError("--dataset and --process come from the run; leave them out with --run")
    if args.run is None and args.dataset is None:
        raise UsageError("--oracle without --run needs --dataset (a Gaussian mixture)")
    if not args.oracle:
        return load_model(args.run)
    if args.run is not None:
        trained = load_model(args.run)
        config, normalizer = trained.config, trained.normalizer
        dataset = run_dataset(trained, "--oracle uses the run's data set")
    else:
        values = {"dataset": args.dataset, "process": args.process or "ddpm"}
        config, normalizer = TrainConfig.from_dict(values), None
        dataset = get_dataset(config.dataset)
    if dataset.mixture is None:
        raise UsageError(
            f"--oracle needs a Gaussian-mixture data set (a .json mixture, gaussians or "
            f"eight_gaussians); {config.dataset} has no closed form"
        )
    if config.process == "poisson":
        raise UsageError("--oracle needs Gaussian marginals; the poisson process has none")
    return exact_model(dataset.mixture, config, normalizer)


#: commands that compare a diffusers model with data: they need --dataset
DIFFUSERS_NEED_DATA = {"evaluate": "evaluate compares samples with", "nll": "nll measures the "
                       "likelihood of", "compare": "compare measures samples against"}  # fmt: skip


def open_diffusers(folder: str, dataset: str | None, *, allow_pickle: bool, command: str):
    """A diffusers model (`--diffusers DIR`), with the images of `--dataset` for the commands
    that compare it with data (their shape must be the model's; samples come back in their
    pixel range)."""
    from diffusion.data import DataError, get_dataset
    from diffusion.io.diffusers_in import load_diffusers

    images = None
    if dataset is not None:
        try:
            images = get_dataset(dataset)
        except DataError as exc:
            raise UsageError(f"--dataset: {exc}") from None
    elif command in DIFFUSERS_NEED_DATA:
        raise UsageError(f"{DIFFUSERS_NEED_DATA[command]} data: give --dataset D (the images, "
                         "a folder, a .npy array or digits/shapes) with --diffusers")  # fmt: skip
    return load_diffusers(folder, allow_pickle=allow_pickle, dataset=images)


def run_dataset(trained, why: str):
    """The data set a run was trained on, for a command that needs it (`why` says so, e.g.
    "evaluate compares samples with the run's data set"): UsageError when it cannot be
    loaded any more or now has another dimension than the run's model."""
    from diffusion.data import DataError, get_dataset

    name = trained.config.dataset
    try:
        dataset = get_dataset(name)
    except DataError as exc:
        raise UsageError(f"{why}, which cannot be loaded: {exc}") from None
    if dataset.dim != trained.dim:
        raise UsageError(f"{why}, but {name} now has dimension {dataset.dim}, the run was "
                         f"trained on dimension {trained.dim}")  # fmt: skip
    return dataset
