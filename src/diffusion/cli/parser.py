"""The argument parser of the `diffusion` command."""

from __future__ import annotations

from diffusion.cli.common import (
    Parser,
    add_model_options,
    add_sampling_options,
    positive_float,
    positive_int,
    seed_int,
)

DESCRIPTION = "The `diffusion` command: train, sample and evaluate models on toy and user data."


def build_parser() -> Parser:
    from diffusion.cli.options import add_config_options
    from diffusion.data import available_datasets
    from diffusion.processes import PROCESSES
    from diffusion.samplers import SAMPLERS

    datasets = ", ".join(available_datasets())
    processes, samplers = ", ".join(PROCESSES), ", ".join(SAMPLERS)
    parser = Parser(prog="diffusion", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    add_config_options(train)

    sample = commands.add_parser(
        "sample", help="draw samples from a trained run (or from the exact oracle of a mixture)"
    )
    add_model_options(sample)
    sample.add_argument("--n", type=positive_int, required=True, help="number of samples")
    add_sampling_options(sample)
    sample.add_argument("--seed", type=seed_int, default=0)
    sample.add_argument("--out", required=True, help="output .npy file, an (n, d) float32 array")

    evaluate = commands.add_parser(
        "evaluate", help="measure fresh samples of a run against fresh data"
    )
    add_model_options(evaluate)
    evaluate.add_argument(
        "--n", type=positive_int, default=None, help="samples (default: the run's)"
    )
    add_sampling_options(evaluate)
    evaluate.add_argument("--seed", type=seed_int, default=1)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")

    nll = commands.add_parser(
        "nll", help="negative log-likelihood of fresh data by the probability-flow ODE"
    )
    add_model_options(nll)
    nll.add_argument("--n", type=positive_int, default=1000, help="data points (default 1000)")
    nll.add_argument("--seed", type=seed_int, default=0, help="seed of the data draw and probes")
    nll.add_argument("--divergence", choices=("exact", "hutchinson"), default="exact",
                     help="exact: one backward pass per dimension; hutchinson: one in all")  # fmt: skip
    nll.add_argument("--method", choices=("ode", "bound"), default="ode",
                     help="ode: probability-flow likelihood; bound: DDPM variational bound")  # fmt: skip
    nll.add_argument("--rtol", type=positive_float, default=1e-5, help="ODE relative tolerance")
    nll.add_argument("--atol", type=positive_float, default=1e-5, help="ODE absolute tolerance")
    nll.add_argument("--json", action="store_true", help="print JSON instead of lines")

    diagnose = commands.add_parser(
        "diagnose", help="where a run is wrong: error per time, NFE curve, memorisation, density"
    )
    diagnose.add_argument("--run", required=True, help="run directory written by `diffusion train`")
    diagnose.add_argument("--out", default=None, help="output directory (default RUN/diagnostics)")
    diagnose.add_argument("--n", type=positive_int, default=4000, help="points per measurement")
    diagnose.add_argument("--seed", type=seed_int, default=0)
    diagnose.add_argument("--quiet", action="store_true", help="no progress bar")

    compare = commands.add_parser(
        "compare", help="several runs side by side: compare.png, compare.gif, compare.json"
    )
    compare.add_argument("--run", action="append", default=[], help="a finished run (repeat)")
    compare.add_argument(
        "--process", nargs="+", default=[], choices=sorted(PROCESSES),
        help="train these processes first (default recipes) into OUT/<process>",
    )  # fmt: skip
    compare.add_argument("--dataset", default=None, help="data for --process (default swissroll)")
    compare.add_argument("--train-steps", type=positive_int, default=None,
                         help="training steps of each --process (default: the recipe's)")  # fmt: skip
    compare.add_argument("--seed", type=seed_int, default=0)
    compare.add_argument("--n", type=positive_int, default=5000, help="samples per run")
    compare.add_argument("--out", required=True, help="output directory")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser
