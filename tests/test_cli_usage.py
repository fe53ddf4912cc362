"""The `diffusion` command as a user meets it: usage without arguments, --version, no
abbreviated options, "did you mean" for unknown options and commands (one line, exit 2),
`--run` pointing inside a run, `diagnose` on the default recipe (flow matching with the
optimal-transport coupling), the demo's --help, and the packaging metadata."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_helpers import run_cli

import diffusion
import diffusion.ddpm.main as demo
from diffusion.cli import COMMANDS, build_parser, main
from diffusion.data import get_dataset
from diffusion.errors import CheckpointError
from diffusion.io.runs import read_run_config
from diffusion.training.build import build_process
from diffusion.training.config import TrainConfig
from diffusion.workflows import diagnose as diagnose_module
from diffusion.workflows.exact import exact_model

ROOT = Path(__file__).resolve().parents[1]
ERROR = "diffusion: error: "
# a tiny network, but the default recipe: flow matching, coupling 'ot'
TINY = ["--width", "16", "--depth", "1", "--batch-size", "64", "--n-train", "500",
        "--snapshot-every", "1000", "--snapshot-samples", "50", "--quiet"]  # fmt: skip


def one_line_error(capsys, *args: str) -> str:
    """Run the command, check it failed as bad input (exit 2, one line on stderr, nothing on
    stdout) and return the message after 'diffusion: error: '."""
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (code, err)
    assert out == ""
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith(ERROR), err
    return err.removeprefix(ERROR).rstrip("\n")


# --- usage and version ----------------------------------------------------------------------


def test_no_arguments_prints_usage_and_every_command_and_exits_2(capsys):
    code, out, err = run_cli(capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("usage: diffusion ")
    for name in COMMANDS:
        (line,) = [ln for ln in lines if ln.split()[:1] == [name]]
        assert len(line.split()) > 2, f"{name} has no one-line description: {line!r}"


def test_version(capsys):
    code, out, err = run_cli(capsys, "--version")
    assert (code, out, err) == (0, f"diffusion {diffusion.__version__}\n", "")
    assert diffusion.__version__ == "0.2.0"


def test_help_exits_0(capsys):
    for args in (["--help"], ["train", "--help"], ["diagnose", "-h"]):
        code, out, err = run_cli(capsys, *args)
        assert code == 0 and out.startswith("usage: diffusion") and err == "", args


# --- no abbreviations, "did you mean" -------------------------------------------------------


def test_no_parser_takes_abbreviations():
    parser = build_parser()
    assert not parser.allow_abbrev
    assert set(parser.commands.choices) == set(COMMANDS)
    for name, sub in parser.commands.choices.items():
        assert not sub.allow_abbrev, name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # an abbreviation is refused, not taken for the option it begins
        (["train", "--step", "10"], "unrecognized option --step (did you mean --train-steps?)"),
        (["train", "--zero"], "unrecognized option --zero (did you mean --zero-terminal-snr?)"),
        (["train", "--no-zero"],
         "unrecognized option --no-zero (did you mean --no-zero-terminal-snr?)"),
        (["train", "--quie"], "unrecognized option --quie (did you mean --quiet?)"),
        # typos
        (["train", "--lerning-rate", "1"],
         "unrecognized option --lerning-rate (did you mean --lr?)"),
        (["train", "--dataste=moons"], "unrecognized option --dataste (did you mean --dataset?)"),
        # options renamed in 0.2.0: the new name, per command
        (["train", "--steps", "10"], "unrecognized option --steps (did you mean --train-steps?)"),
        (["compare", "--steps", "10", "--out", "x"],
         "unrecognized option --steps (did you mean --train-steps?)"),
        (["evaluate", "--run", "x", "--steps", "10"],
         "unrecognized option --steps (did you mean --sample-steps?)"),
        (["evaluate", "--grid", "karras"],
         "unrecognized option --grid (did you mean --sample-grid?)"),
        # said before a missing required option (sample needs --n and --out)
        (["sample", "--steps", "10"],
         "unrecognized option --steps (did you mean --sample-steps?)"),
        # nothing close: no guess
        (["diagnose", "--run", "x", "--frobnicate"], "unrecognized option --frobnicate"),
        (["train", "extra"], "unrecognized argument 'extra'"),
        # commands
        (["trian"], "unknown command 'trian' (did you mean 'train'?); "
                    "commands: train, sample, evaluate, compare, nll, diagnose, report, tune-grid, export"),
        (["diagnos", "--run", "x"], "unknown command 'diagnos' (did you mean 'diagnose'?); "
                                    "commands: train, sample, evaluate, compare, nll, diagnose, report, tune-grid, export"),
        (["zzz"], "unknown command 'zzz'; "
                  "commands: train, sample, evaluate, compare, nll, diagnose, report, tune-grid, export"),
        (["--quiet"], "no command given; "
                      "commands: train, sample, evaluate, compare, nll, diagnose, report, tune-grid, export"),
    ],
)  # fmt: skip
def test_unknown_options_and_commands_name_the_closest(capsys, tmp_path, args, message):
    before = sorted(tmp_path.rglob("*"))
    assert one_line_error(capsys, *args) == message
    assert sorted(tmp_path.rglob("*")) == before


def test_a_negative_number_is_a_value_not_an_unknown_option(capsys):
    message = one_line_error(capsys, "train", "--beta-start", "-1e-4", "--quiet")
    assert "unrecognized" not in message and "--beta-start" in message


# --- descriptions ---------------------------------------------------------------------------


def test_every_command_describes_what_it_writes_and_its_defaults():
    parser = build_parser()
    for name, sub in parser.commands.choices.items():
        assert sub.description and len(sub.description) > 80, name
        assert any(word in sub.description for word in ("write", "Write", "print", "Print"))
        for action in sub._actions:
            if action.default not in (None, False, [], "==SUPPRESS==") and action.help:
                assert "default" in action.help, (name, action.option_strings)


# --- --run inside a run ---------------------------------------------------------------------


@pytest.fixture
def fake_run(tmp_path) -> Path:
    """Only the layout of a run directory: enough to be recognised from inside."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"")
    (run / "checkpoints" / "step-00000010.safetensors").write_bytes(b"")
    return run


@pytest.mark.parametrize(
    "inside",
    ["model.safetensors", "config.json", "checkpoints", "checkpoints/step-00000010.safetensors"],
)
def test_run_inside_a_run_says_which_directory_to_pass(capsys, fake_run, inside):
    message = one_line_error(capsys, "diagnose", "--run", str(fake_run / inside))
    assert message.startswith(f"--run expects a run directory; pass {fake_run} ")
    with pytest.raises(CheckpointError, match="--resume expects a run directory; pass"):
        read_run_config(fake_run / inside, option="--resume")


def test_run_that_is_a_file_elsewhere(capsys, tmp_path):
    (tmp_path / "x.txt").write_text("")
    message = one_line_error(capsys, "diagnose", "--run", str(tmp_path / "x.txt"))
    assert message == f"--run expects a run directory; {str(tmp_path / 'x.txt')!r} is a file"


# --- diagnose on the default recipe ---------------------------------------------------------


@pytest.fixture(scope="module")
def ot_run(tmp_path_factory) -> Path:
    """The default process and coupling (flow matching, 'ot'), barely trained on a mixture."""
    run = tmp_path_factory.mktemp("ot") / "run"
    code = main(["train", "--dataset", "gaussians", "--train-steps", "30",
                 "--eval-samples", "200", "--out", str(run), *TINY])  # fmt: skip
    assert code == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["process"], config["coupling"]) == ("flow", "ot")
    return run


def test_diagnose_an_ot_run_against_the_gaussian_path(capsys, monkeypatch, tmp_path, ot_run):
    monkeypatch.setattr(diagnose_module, "CURVE_STEPS", (2, 4))  # keep the NFE curve short
    out_dir = tmp_path / "diag"
    code, out, err = run_cli(capsys, "diagnose", "--run", str(ot_run), "--n", "100",
                             "--quiet", "--out", str(out_dir))  # fmt: skip
    assert code == 0, err
    reference = ("exact (mixture), Gaussian path of independent noise: a network trained with "
                 "coupling 'ot' learns a straighter field, so its error by time includes that "
                 "difference")  # fmt: skip
    assert out.splitlines()[0] == f"reference: {reference}"
    assert out.splitlines()[-1] == f"wrote {out_dir}"
    report = json.loads((out_dir / "diagnostics.json").read_text())
    assert (report["process"], report["coupling"], report["reference"]) == ("flow", "ot", reference)
    assert report["nfe_curve"]["steps"] == [2, 4]
    for name in ("error_by_time.png", "nfe_curve.png", "memorisation.png", "field.gif"):
        assert (out_dir / name).stat().st_size > 0


def test_the_exact_model_of_a_coupled_process_draws_independent_noise():
    config = TrainConfig(dataset="gaussians").validate()  # the default: flow, coupling 'ot'
    coupled = build_process(config)
    assert coupled.coupling == "ot"
    exact = exact_model(get_dataset("gaussians").mixture, config, process=coupled)
    assert exact.process is not coupled and exact.process.coupling == "independent"
    independent = build_process(dataclasses.replace(config, coupling="independent"))
    exact = exact_model(get_dataset("gaussians").mixture, config, process=independent)
    assert exact.process is independent  # reused


def test_nll_bound_needs_a_discrete_process(capsys, ot_run):
    message = one_line_error(capsys, "nll", "--run", str(ot_run), "--method", "bound")
    assert message.startswith("--method bound is the variational bound of a discrete-time")


# --- the original demo ----------------------------------------------------------------------


def test_demo_help_and_bad_arguments(capsys, monkeypatch):
    monkeypatch.setattr(demo, "demo", lambda: pytest.fail("the demo must not start"))
    assert demo.run(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: python -m diffusion.ddpm.main") and err == ""
    assert demo.run(["--steps", "3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("diffusion.ddpm.main: error: unrecognized argument '--steps'")


def test_demo_help_as_a_module():
    done = subprocess.run([sys.executable, "-m", "diffusion.ddpm.main", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("usage: ") and done.stderr == ""


# --- packaging ------------------------------------------------------------------------------


def test_distribution_metadata():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "diffusion-toolkit"  # "diffusion" on PyPI is another project
    assert project["version"] == diffusion.__version__
    assert project["scripts"] == {"diffusion": "diffusion.cli:main"}
    assert set(project["urls"]) == {"Homepage", "Documentation", "Source", "Issues"}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "2026 the diffusion authors" in license_text
