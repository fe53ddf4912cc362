"""The argument parser of the `diffusion` command."""

from __future__ import annotations

import argparse

from diffusion.cli.common import (
    Parser,
    add_model_options,
    add_sampling_options,
    finite_float,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
)

DESCRIPTION = "The `diffusion` command: train, sample and evaluate models on toy and user data."


def build_parser() -> Parser:
    from diffusion.grids import GRIDS
    from diffusion.parametrize import TARGETS
    from diffusion.processes import PROCESSES
    from diffusion.processes.coupling import COUPLINGS
    from diffusion.processes.schedules import BETA_SCHEDULES
    from diffusion.processes.times import TRAIN_TIMES
    from diffusion.samplers import SAMPLERS

    parser = Parser(prog="diffusion", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a model. Settings come from the defaults, then --config FILE, then "
        "the options given here. --resume DIR continues a run from its last checkpoint.",
    )
    train.add_argument("--config", help="a .toml or .json file of settings (keys as below)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    train.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", help="toy set name or a .npy/.csv file (default swissroll)")
    data.add_argument("--n-train", type=positive_int, help="points drawn from a toy set")
    proc = train.add_argument_group("process")
    proc.add_argument("--process", choices=sorted(PROCESSES))
    proc.add_argument("--diffusion-steps", type=positive_int, help="DDPM steps T")
    proc.add_argument("--schedule", choices=sorted(BETA_SCHEDULES))
    proc.add_argument("--beta-start", type=finite_float)
    proc.add_argument("--beta-end", type=finite_float)
    proc.add_argument("--zero-terminal-snr", action=argparse.BooleanOptionalAction)
    proc.add_argument("--allow-terminal-signal", action=argparse.BooleanOptionalAction)
    proc.add_argument("--prediction", choices=TARGETS)
    proc.add_argument("--sigma-min", type=positive_float, help="ve and edm: lowest noise level")
    proc.add_argument("--sigma-max", type=positive_float, help="ve and edm: highest noise level")
    proc.add_argument("--augment-dim", type=positive_int, help="poisson: PFGM++'s D (default 128)")
    proc.add_argument("--train-times", choices=TRAIN_TIMES,
                      help="flow, vp, subvp, ve: distribution of training times (default uniform)")  # fmt: skip
    proc.add_argument("--coupling", choices=COUPLINGS,
                      help="flow: pair data with noise independently or by minibatch OT")  # fmt: skip
    net = train.add_argument_group("network and optimisation")
    net.add_argument("--width", type=positive_int)
    net.add_argument("--depth", type=positive_int)
    net.add_argument("--steps", type=positive_int, help="training steps")
    net.add_argument("--batch-size", type=positive_int)
    net.add_argument("--lr", type=positive_float, help="peak learning rate")
    net.add_argument("--warmup", type=non_negative_int, help="warmup steps")
    net.add_argument("--min-lr-ratio", type=finite_float, help="final lr / peak lr, in [0, 1)")
    net.add_argument("--weight-decay", type=non_negative_float)
    net.add_argument("--grad-clip", type=positive_float, help="max gradient norm")
    net.add_argument("--ema-decay", type=finite_float, help="in [0, 1)")
    net.add_argument("--seed", type=seed_int)
    net.add_argument("--device", help="auto, cpu or cuda[:N]")
    out = train.add_argument_group("sampling, pictures and checkpoints")
    out.add_argument("--sampler", choices=sorted(SAMPLERS))
    out.add_argument("--sample-steps", type=positive_int)
    out.add_argument("--sample-grid", choices=GRIDS, help="time grid for sampling")
    out.add_argument("--snapshot-every", type=positive_int, help="steps between GIF frames")
    out.add_argument("--snapshot-samples", type=positive_int, help="points per GIF frame")
    out.add_argument("--eval-samples", type=positive_int)
    out.add_argument(
        "--checkpoint-every", type=non_negative_int, help="steps between checkpoints (0: none)"
    )

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
    compare.add_argument("--steps", type=positive_int, default=None, help="training steps")
    compare.add_argument("--seed", type=seed_int, default=0)
    compare.add_argument("--n", type=positive_int, default=5000, help="samples per run")
    compare.add_argument("--out", required=True, help="output directory")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser
