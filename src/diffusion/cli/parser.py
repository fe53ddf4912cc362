"""The argument parser of the `diffusion` command."""

from __future__ import annotations

import argparse

import diffusion
from diffusion.cli.common import (
    Parser,
    add_model_options,
    add_sampling_options,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
)

DESCRIPTION = "The `diffusion` command: train, sample and evaluate models on toy and user data."
EPILOG = "`diffusion COMMAND --help` lists a command's options."

#: Other spellings of options, per command: names before 0.2.0 (--steps, --grid) and common
#: variants. Given, they are refused, with the option to use instead.
SYNONYMS = {
    "train": {"--steps": "--train-steps", "--grid": "--sample-grid", "--learning-rate": "--lr"},
    "sample": {"--steps": "--sample-steps", "--grid": "--sample-grid", "--samples": "--n"},
    "evaluate": {"--steps": "--sample-steps", "--grid": "--sample-grid", "--samples": "--n"},
    "compare": {"--steps": "--train-steps", "--samples": "--n"},
    "nll": {"--samples": "--n"},
    "diagnose": {"--samples": "--n"},
    "tune-grid": {"--sample-steps": "--steps", "--samples": "--n"},
}


class CommandsFormatter(argparse.HelpFormatter):
    """argparse's formatter, but the help column leaves room for the longest command name
    (argparse measures a command one indent short, so `tune-grid` would push its help to the
    next line)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS:
            for sub in self._iter_indented_subactions(action):  # indented while iterating
                width = len(self._format_action_invocation(sub)) + self._current_indent
                self._action_max_length = max(self._action_max_length, width)


def build_parser() -> Parser:
    from diffusion.cli.options import add_config_options
    from diffusion.data import available_datasets
    from diffusion.processes import PROCESSES
    from diffusion.samplers import SAMPLERS
    from diffusion.samplers.tuning import ITERATIONS

    datasets = ", ".join(available_datasets())
    processes, samplers = ", ".join(PROCESSES), ", ".join(SAMPLERS)
    parser = Parser(prog="diffusion", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=CommandsFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"diffusion {diffusion.__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, metavar="COMMAND", title="commands"
    )

    train = commands.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a model and write a run directory: pictures, metrics, the model and "
        "checkpoints. Settings come from the defaults, then --config FILE, then the options "
        "given here. --resume DIR continues a run from its last checkpoint.",
        epilog=f"data sets: {datasets}; processes: {processes}; samplers: {samplers}",
    )
    train.add_argument("--config", help="a .toml or .json file of settings (keys as below)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    train.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train on N processes of this machine (starts torchrun; for several "
                       "machines run torchrun yourself: docs/distributed.md)")  # fmt: skip
    train.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                       help="how processes started by torchrun talk: gloo (CPU), nccl (one GPU "
                       "each); default auto: by --device")  # fmt: skip
    add_config_options(train)

    sample = commands.add_parser(
        "sample",
        help="draw samples from a run or from the exact oracle of a mixture",
        description="Draw --n samples from a trained run (--run DIR) or from the exact score of "
        "a Gaussian mixture (--oracle), and write them to --out, an .npy file holding an (n, d) "
        "float32 array in the data's units. The sampler, its steps and time grid are the run's "
        "unless given.",
    )
    add_model_options(sample)
    sample.add_argument("--n", type=positive_int, required=True, help="number of samples")
    add_sampling_options(sample)
    sample.add_argument("--seed", type=seed_int, default=0, help="seed of the prior draw "
                        "and the sampler's noise (default: 0)")  # fmt: skip
    sample.add_argument("--out", required=True, help="output .npy file, an (n, d) float32 array")
    sample.add_argument("--nproc", type=int, default=None, metavar="N",
                        help="sample on N processes of this machine, each its share from its "
                        "own random stream (starts torchrun; docs/distributed.md)")  # fmt: skip
    sample.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                        help="how processes started by torchrun talk (default: auto)")  # fmt: skip
    guidance = sample.add_argument_group("classes and guidance (a run trained with labels)")
    guidance.add_argument("--class", dest="classes", default=None, metavar="C[,C...]|all",
                          help="sample these classes (numbers), in equal shares in the order "
                          "given, or every class with 'all'; their labels are written beside "
                          "--out as .labels.npy (default: unconditional)")  # fmt: skip
    guidance.add_argument("--guidance", type=non_negative_float, default=1.0, metavar="W",
                          help="classifier-free guidance scale: 0 unconditional, 1 conditional, "
                          "above 1 guided (default: 1)")  # fmt: skip
    guidance.add_argument("--guidance-interval", default=None, metavar="LOW,HIGH",
                          help="apply the guidance only at noise levels sigma/alpha in "
                          "(LOW, HIGH), conditional elsewhere (default: everywhere)")  # fmt: skip

    evaluate = commands.add_parser(
        "evaluate",
        help="measure fresh samples of a run against fresh data",
        description="Draw fresh samples of a run (or of the exact oracle) and measure them "
        "against fresh draws of its data set: sliced Wasserstein, MMD and energy distance, each "
        "beside its data-vs-data floor. Prints a table (or JSON with --json); writes no files.",
    )
    add_model_options(evaluate)
    evaluate.add_argument(
        "--n", type=positive_int, default=None, help="samples (default: the run's --eval-samples)"
    )
    add_sampling_options(evaluate)
    evaluate.add_argument("--seed", type=seed_int, default=1, help="seed of the samples and "
                          "the data draws (default: 1)")  # fmt: skip
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")

    compare = commands.add_parser(
        "compare",
        help="several runs side by side (pictures and metrics)",
        description="Compare runs side by side: finished runs (--run DIR, repeated) and runs of "
        "default recipes trained first into OUT/<process> (--process P ...). Writes into --out "
        "compare.png (data and each run's samples, with sampler, NFE and SW ratio), compare.gif "
        "(their reverse processes) and compare.json (the figures).",
    )
    compare.add_argument("--run", action="append", default=[], help="a finished run (repeat)")
    compare.add_argument(
        "--process", nargs="+", default=[], choices=sorted(PROCESSES),
        help="train these processes first (default recipes) into OUT/<process>",
    )  # fmt: skip
    compare.add_argument("--dataset", default=None,
                         help="data for --process (default: swissroll); with --diffusers, the "
                         "images the diffusers model is measured against")  # fmt: skip
    compare.add_argument("--diffusers", metavar="DIR", default=None,
                         help="a model saved by diffusers' save_pretrained, compared with the "
                         "runs on --dataset (the runs' own data)")  # fmt: skip
    compare.add_argument("--allow-pickle", action="store_true",
                         help="with --diffusers: accept pickled .bin weights")  # fmt: skip
    compare.add_argument("--train-steps", type=positive_int, default=None,
                         help="training steps of each --process (default: the recipe's)")  # fmt: skip
    compare.add_argument("--seed", type=seed_int, default=0, help="seed (default: 0)")
    compare.add_argument("--n", type=positive_int, default=5000,
                         help="samples per run (default: 5000)")  # fmt: skip
    compare.add_argument("--out", required=True, help="output directory")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.add_argument("--guidance", nargs="+", type=non_negative_float, default=None,
                         metavar="W", help="with one --run trained with labels: sample it at "
                         "each guidance scale W side by side (0 unconditional, 1 conditional)")  # fmt: skip

    nll = commands.add_parser(
        "nll",
        help="negative log-likelihood by the probability-flow ODE",
        description="Negative log-likelihood of --n fresh points of the run's data set, in nats "
        "per point and bits per dimension, by the probability-flow ODE (or, for a discrete-time "
        "DDPM, its variational bound with --method bound). On a Gaussian mixture the exact NLL "
        "is printed beside it. Prints lines (or JSON with --json); writes no files.",
    )
    add_model_options(nll)
    nll.add_argument("--n", type=positive_int, default=1000, help="data points (default: 1000)")
    nll.add_argument("--seed", type=seed_int, default=0,
                     help="seed of the data draw and probes (default: 0)")  # fmt: skip
    nll.add_argument("--divergence", choices=("exact", "hutchinson"), default="exact",
                     help="exact: one backward pass per dimension; hutchinson: one in all "
                     "(default: exact)")  # fmt: skip
    nll.add_argument("--method", choices=("ode", "bound"), default="ode",
                     help="ode: probability-flow likelihood; bound: DDPM variational bound "
                     "(default: ode)")  # fmt: skip
    nll.add_argument("--rtol", type=positive_float, default=1e-5,
                     help="ODE relative tolerance (default: 1e-5)")  # fmt: skip
    nll.add_argument("--atol", type=positive_float, default=1e-5,
                     help="ODE absolute tolerance (default: 1e-5)")  # fmt: skip
    nll.add_argument("--json", action="store_true", help="print JSON instead of lines")

    diagnose = commands.add_parser(
        "diagnose",
        help="where a run is wrong: error by time, NFE, memorisation, density",
        description="Measure where a run is wrong against an exact reference (the oracle of its "
        "mixture, else of its training set): error by time, quality against NFE, prior "
        "mismatch, memorisation, and for 2-D data its density and score field. Writes "
        "error_by_time.png, nfe_curve.png, memorisation.png, density.png, field.gif and "
        "diagnostics.json into --out (default: RUN/diagnostics), and prints a summary.",
    )
    diagnose.add_argument("--run", required=True, help="run directory written by `diffusion train`")
    diagnose.add_argument("--out", default=None, help="output directory (default: RUN/diagnostics)")
    diagnose.add_argument("--n", type=positive_int, default=4000,
                          help="points per measurement (default: 4000)")  # fmt: skip
    diagnose.add_argument("--seed", type=seed_int, default=0, help="seed (default: 0)")
    diagnose.add_argument("--quiet", action="store_true", help="no progress bar")

    report = commands.add_parser(
        "report",
        help="write report.html for a run, or put several runs side by side",
        description="Write a static page (no server, no network) with a run's pictures, metrics "
        "and their floors, timings, configuration and the command that reproduces it: "
        "RUN/report.html for one run (training writes it too); for several runs, one page that "
        "shows them side by side (--out FILE).",
    )
    report.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    report.add_argument("--out", default=None,
                        help="the page to write (default: RUN/report.html; required for "
                        "several runs)")  # fmt: skip

    tune = commands.add_parser(
        "tune-grid",
        help="tune a time grid to a sampler and step count, for a run",
        description="Choose the --steps-step time grid that makes --sampler's samples closest to "
        "an accurate solve of the same ODE from the same --n prior draws (Nelder-Mead from the "
        "best of the uniform, quadratic, karras and logsnr grids; docs/tuned-grids.md). With "
        "--run, against the run's own network, written to RUN/grids.json for `diffusion sample "
        "--sample-grid tuned`; with --oracle --dataset D, against the exact score of a "
        "mixture, printed (and written to --out FILE.json if given). Prints the error before "
        "and after, and the grid.",
    )
    add_model_options(tune)
    tune.add_argument("--steps", type=positive_int, required=True, help="steps of the grid")
    add_sampling_options(tune, steps_and_grid=False)
    tune.add_argument("--n", type=positive_int, default=2000,
                      help="prior draws the error is measured on (default: 2000)")  # fmt: skip
    tune.add_argument("--seed", type=seed_int, default=0, help="seed of the prior draws "
                      "(default: 0)")  # fmt: skip
    tune.add_argument("--iterations", type=non_negative_int, default=ITERATIONS,
                      help=f"evaluations of the search, each one K-step sampling run of --n "
                      f"draws (default: {ITERATIONS})")  # fmt: skip
    tune.add_argument("--out", default=None, help="the grids file (.json) to add the grid to "
                      "(default: RUN/grids.json with --run; none with --oracle)")  # fmt: skip
    tune.add_argument("--quiet", action="store_true", help="no progress bar")

    export = commands.add_parser(
        "export",
        help="write a run as a diffusers pipeline",
        description="Write a run as a folder that Hugging Face diffusers loads without this "
        "package: DDPMPipeline.from_pretrained(OUT). Only runs trained with --model "
        "diffusers-unet --process ddpm (unconditional) can be exported (docs/diffusers.md).",
    )
    export.add_argument("--run", required=True, help="run directory written by `diffusion train`")
    export.add_argument("--to", required=True, choices=("diffusers",), help="the format")
    export.add_argument("out", metavar="OUT", help="the folder to write (must not exist)")

    for name, subparser in commands.choices.items():
        subparser.synonyms = SYNONYMS.get(name, {})
    return parser
