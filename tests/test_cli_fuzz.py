"""A randomised campaign against the `diffusion` command: no traceback, ever.

Every command is driven in-process (`diffusion.cli.main`) with random mixtures of valid and
invalid options and values: numbers that are negative, zero, NaN, inf, huge or not numbers,
unknown choices, unknown, misspelt or abbreviated options, options without their value,
stray words, missing files, directories where files go, hostile data and config files,
broken runs, unwritable or symbolic-link outputs. Whatever it is given, a command must:

- return 0, or return 2 with exactly one line on stderr starting with "diffusion: error:"
  (never another code, never a traceback);
- when it returns 2, leave nothing behind: no run directory, no samples file, no change to
  any file it was pointed at.

The options, their choices, kinds and ranges are read from the real parser
(`diffusion.cli.parser.build_parser`) and from `diffusion.training.config.SETTINGS`, so the
campaign follows the command line as it changes. Valid values are kept small (a successful
`train` takes about a second or two), so the normal suite runs a bounded number of examples
per command with a fixed seed; the `slow` variant runs many more.

`compare --process` trains default recipes (tens of seconds each), so the campaign gives it
only in forms that are refused before any training.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import pickle
import shlex
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from diffusion.cli import common, main
from diffusion.cli.parser import build_parser
from diffusion.data import available_datasets
from diffusion.training.config import SETTINGS, TrainConfig
from diffusion.workflows.run import run_training

PREFIX = "diffusion: error: "
LONG = "x" * 300  # longer than a file name may be

# --- the command line, read from the parser ---------------------------------------------------


def command_options(command: str) -> dict[str, argparse.Action]:
    """The long options of `command` (--help aside), each mapped to its argparse action."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {}
    for action in commands.choices[command]._actions:
        for name in action.option_strings:
            if name.startswith("--") and name != "--help":
                options[name] = action
    return options


COMMANDS = ("train", "sample", "evaluate", "nll", "diagnose", "compare")
OPTIONS = {command: command_options(command) for command in COMMANDS}

# Numeric option types of the CLI that are not config settings: (low, high) of valid values.
TYPE_RANGES = {
    common.positive_int: ("int", 1, None),
    common.non_negative_int: ("int", 0, None),
    common.seed_int: ("int", 0, 2**32 - 1),
    common.positive_float: ("float", 0.0, None),
    common.non_negative_float: ("float", 0.0, None),
    common.finite_float: ("float", -10.0, 10.0),
}
# Valid values the campaign keeps small, so that a run that succeeds takes a second or two:
# (command or None for all, option destination) -> (low, high).
SMALL = {
    (None, "train_steps"): (1, 3),
    (None, "eval_samples"): (50, 200),
    (None, "snapshot_samples"): (1, 20),
    (None, "n_train"): (2, 200),
    (None, "checkpoint_every"): (0, 3),
    (None, "snapshot_every"): (1, 3),
    (None, "warmup"): (0, 3),
    (None, "width"): (1, 16),
    (None, "depth"): (1, 2),
    (None, "batch_size"): (1, 64),
    (None, "diffusion_steps"): (1, 50),
    (None, "sample_steps"): (1, 10),
    (None, "augment_dim"): (1, 16),
    (None, "langevin_steps"): (1, 2),
    (None, "corrector_steps"): (0, 2),
    (None, "rtol"): (1e-3, 0.1),
    (None, "atol"): (1e-3, 0.1),
    (None, "step_size"): (1e-3, 1.0),
    (None, "beta_start"): (1e-5, 0.02),
    (None, "beta_end"): (1e-3, 0.05),
    ("sample", "n"): (1, 200),
    ("evaluate", "n"): (1, 200),
    ("nll", "n"): (1, 20),
    ("diagnose", "n"): (1, 40),
    ("compare", "n"): (1, 100),
    ("compare", "train_steps"): (1, 3),
}
# Values that are not numbers, or numbers out of every range the CLI takes.
BAD_NUMBERS = [
    "-1", "0", "-0", "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1" + "0" * 30, "abc",
    "", " ", "1.5", "0x10", "1,000", "--", "-", "9" * 5000, "None", "true", "٣", "1e-400",
]  # fmt: skip
BAD_WORDS = ["bogus", "", " ", "x" * 5000, "-", "--", "flow ", "FLOW", "ddpm,flow", "é"]


def small_range(command: str, dest: str, kind: str, low, high):
    """The range valid values are drawn from: SMALL's, else the option's own, capped."""
    span = SMALL.get((command, dest)) or SMALL.get((None, dest))
    if span is not None:
        return span
    if kind == "int":
        low = 0 if low is None else int(low)
        return low, low + 10 if high is None else min(int(high), low + 10)
    low = -10.0 if low is None else float(low)
    return low, low + 10.0 if high is None else float(high)


def numeric_spec(action: argparse.Action):
    """(kind, low, high, open_low, open_high) of a numeric option, or None."""
    if action.dest in SETTINGS and getattr(action.type, "__name__", "") in ("int", "float"):
        meta = SETTINGS[action.dest]
        return action.type.__name__, meta.low, meta.high, meta.open_low, meta.open_high
    if action.type in TYPE_RANGES:
        kind, low, high = TYPE_RANGES[action.type]
        strict = action.type is common.positive_float
        return kind, low, high, strict, False
    return None


def number(command: str, action: argparse.Action):
    """A strategy of valid text for a numeric option."""
    kind, low, high, open_low, open_high = numeric_spec(action)
    lo, hi = small_range(command, action.dest, kind, low, high)
    if kind == "int":
        return st.integers(lo, hi).map(str)
    values = st.floats(lo, hi, exclude_min=open_low and lo == low,
                       exclude_max=open_high and hi == high,
                       allow_nan=False, allow_infinity=False)  # fmt: skip
    text = st.sampled_from([repr, "{:g}".format, "{:.3e}".format])
    return st.tuples(values, text).map(lambda pair: pair[1](pair[0]))


# --- the files and runs the campaign points commands at ---------------------------------------

ZOO_RUN = dict(
    process="ddpm", train_steps=20, width=16, depth=1, diffusion_steps=50, sample_steps=10,
    n_train=300, batch_size=64, eval_samples=100, snapshot_samples=20, snapshot_every=10,
    checkpoint_every=10,
)  # fmt: skip
MIXTURE = {"weights": [1, 2], "means": [[-1, 0], [1, 0.5]], "stds": [0.3, 0.5]}
RUNS = ("run", "unfinished", "gone", "dim3", "ckfile", "garbage", "allbad")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """Data files, config files and runs, good and bad, plus a finished run `run`."""
    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    np.save(root / "good.npy", rng.normal(size=(300, 2)))
    np.save(root / "good3.npy", rng.normal(size=(300, 3)))
    (root / "good.csv").write_text(
        "x,y\n" + "".join(f"{a},{b}\n" for a, b in rng.normal(size=(50, 2)))
    )
    (root / "good.json").write_text(json.dumps(MIXTURE))
    (root / "const.csv").write_text("1,2\n" * 100)
    np.save(root / "flat.npy", np.ones(100))
    np.save(root / "edge.npy", np.array([[3e38, -3e38], [-3e38, 3e38]], np.float32))
    (root / "overflow.json").write_text(json.dumps({**MIXTURE, "weights": [1e308, 1e308]}))
    (root / "wide.csv").write_text(",".join(["1"] * 5000) + "\n" + ",".join(["2"] * 5000) + "\n")
    (root / "digits.json").write_text(
        json.dumps(MIXTURE).replace("[1, 2]", "[1, " + "7" * 5000 + "]")
    )
    (root / "digits.csv").write_text("1,2\n3," + "7" * 5000 + "\n")
    (root / "nan.csv").write_text("1,2\nnan,3\n4,5\n")
    (root / "words.csv").write_text("1,2\n3,abc\n")
    (root / "empty.csv").write_text("")
    np.save(root / "cube.npy", np.zeros((2, 3, 4)))
    np.save(root / "single.npy", np.zeros((1, 2)))
    np.save(root / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (root / "pickle.npy").write_bytes(pickle.dumps(_Payload(str(root / "pwned"))))
    (root / "folder.npy").mkdir()
    (root / "points.txt").write_text("1,2\n3,4\n")
    (root / "good.toml").write_text("width = 16\ndepth = 1\n")
    (root / "settings.json").write_text('{"width": 16}')
    (root / "typo.toml").write_text("widht = 16\n")
    (root / "syntax.toml").write_text("width = = 16\n")
    (root / "digits.toml").write_text("width = " + "7" * 5000 + "\n")
    (root / "nan.toml").write_text("lr = nan\n")
    (root / "const.toml").write_text(f'dataset = "{root / "const.csv"}"\n')
    (root / "config.yaml").write_text("width: 16\n")
    (root / "array.json").write_text("[1, 2]")
    (root / "latin1.toml").write_bytes(b'dataset = "caf\xe9"\n')
    (root / "dir.toml").mkdir()
    (root / "afile").write_text("a file\n")
    (root / "notarun").mkdir()
    (root / "link").symlink_to(root / "nowhere")
    (root / "link.npy").symlink_to(root / "nowhere.npy")
    (root / "ckout").mkdir()
    (root / "ckout" / "checkpoints").write_text("a file where the checkpoints go\n")

    run = root / "run"
    run_training(TrainConfig(**ZOO_RUN, dataset=str(root / "good.json")), run, progress=False)
    for name, dataset in (("gone", root / "missing.npy"), ("dim3", root / "good3.npy")):
        shutil.copytree(run, root / name)
        meta = json.loads((root / name / "config.json").read_text())
        meta["config"]["dataset"] = str(dataset)
        (root / name / "config.json").write_text(json.dumps(meta))
    (root / "unfinished").mkdir()
    shutil.copy(run / "config.json", root / "unfinished" / "config.json")
    shutil.copytree(run, root / "ckfile")
    shutil.rmtree(root / "ckfile" / "checkpoints")
    (root / "ckfile" / "checkpoints").write_text("not a folder\n")
    shutil.copytree(run, root / "garbage")
    (root / "garbage" / "checkpoints" / "step-00000030.safetensors").write_bytes(b"garbage")
    shutil.copytree(run, root / "allbad")
    (root / "allbad" / "checkpoints" / "step-00000020.safetensors").write_bytes(b"garbage")
    (root / "examples").mkdir()
    return root


# --- values ----------------------------------------------------------------------------------

# Placeholders, filled per example: "@zoo/NAME" (the zoo), "@ex/NAME" (the example's own
# folder, the working directory), "@copy:NAME" (a fresh copy of a zoo run in the example).
BAD_DATA = [f"@zoo/{name}" for name in (
    "const.csv", "flat.npy", "edge.npy", "overflow.json", "wide.csv", "digits.json",
    "digits.csv", "nan.csv", "words.csv", "empty.csv", "cube.npy", "single.npy", "object.npy",
    "pickle.npy", "folder.npy", "points.txt", "missing.npy", "missing.json", "good.toml",
)] + ["swisroll", "bogus", "", "~no-such-user/x.npy", LONG, LONG + ".npy", "/proc/x.npy"]  # fmt: skip
BAD_CONFIGS = [f"@zoo/{name}" for name in (
    "typo.toml", "syntax.toml", "digits.toml", "nan.toml", "const.toml", "config.yaml", "array.json",
    "latin1.toml", "dir.toml", "missing.toml", "good.npy", "afile",
)] + ["", LONG + ".toml"]  # fmt: skip
BAD_RUNS = ["@zoo/unfinished", "@zoo/gone", "@zoo/dim3", "@zoo/notarun", "@zoo/afile",
            "@zoo/missing", "@zoo/run/checkpoints", "@zoo/run/config.json", "@zoo/link", "",
            LONG]  # fmt: skip
BAD_DIR_OUTS = ["@zoo/afile", "@zoo/afile/out", "/proc/x", "/proc/1/x", "@zoo/link", LONG,
                "@zoo/link/out"]  # fmt: skip


def path_value(command: str, dest: str, valid: bool):
    """A strategy of text for an option that names a file, a folder or a device."""
    writes_run = command in ("diagnose",) or dest == "resume"
    runs = [f"@copy:{name}" if writes_run else f"@zoo/{name}" for name in RUNS]
    table = {
        "dataset": (
            [*available_datasets(), "@zoo/good.npy", "@zoo/good.csv", "@zoo/good.json"]
            if command == "train"
            else ["@zoo/good.json", "gaussians", "eight_gaussians"],
            BAD_DATA,
        ),
        "config": (["@zoo/good.toml", "@zoo/settings.json"], BAD_CONFIGS),
        "resume": (["@copy:run", "@copy:garbage"], [*runs[1:], *BAD_RUNS]),
        "run": ([runs[0]], [*runs[1:], *BAD_RUNS]),
        "device": (["cpu", "auto"], ["cuda:x", "tpu", "cuda:99", "", "cuda:-1"]),
        "unet_mults": (["1,2", "1", "2,2"], ["1,x", "", "0", "1,,2", "65", "1,2,2,2,2,2"]),
        "unet_attention": (["4", "8,4", "1"], ["x", "", "0,4", "4;8"]),
        "classes": (["0", "1", "all", "0,1"], ["x", "", "-1", "1,,2", "99", "0;1"]),
        "guidance_interval": (["0.1,5", "0,1"], ["x", "", "5,1", "1", "a,b", "nan,1"]),
        # --nproc starts torchrun (seconds per example): only the values refused at once
        "nproc": (["0"], ["0", "-1", "x", ""]),
        # no diffusers model in the zoo: folders that are not one
        "diffusers": (["@zoo/notarun", "@zoo/run"], BAD_RUNS),
    }
    if dest == "out" and command == "sample":
        good = ["@ex/samples.npy", "@ex/a/b/samples.npy"]
        bad = ["@ex/samples.txt", "@zoo/folder.npy", "@zoo/link.npy", "/proc/x.npy",
               "@zoo/afile/s.npy", LONG + ".npy", ".npy", ""]  # fmt: skip
    elif dest == "out":
        good = ["@ex/out", "@ex/a/b/out"]
        bad = BAD_DIR_OUTS + (["@zoo/run", "@zoo/ckout"] if command == "train" else [])
    else:
        good, bad = table[dest]
    return st.sampled_from(good if valid else bad)


def value(command: str, action: argparse.Action, valid: bool):
    """A strategy of the text given after option `action` (valid or not)."""
    if action.choices is not None:
        choices = [str(c) for c in action.choices]  # (an int option: --order 2)
        if valid:
            return st.sampled_from(choices)
        near = st.sampled_from(choices).map(lambda c: c[:-1] or "x")
        return st.one_of(st.sampled_from(BAD_WORDS), near)
    if numeric_spec(action) is not None:
        return number(command, action) if valid else st.sampled_from(BAD_NUMBERS)
    return path_value(command, action.dest, valid)


# --- argument vectors --------------------------------------------------------------------------


def base(command: str, draw) -> list[str]:
    """The valid core of a command: what it needs, at a small cost."""
    ints = lambda dest: str(draw(st.integers(*small_range(command, dest, "int", 0, None))))  # noqa: E731
    if command == "train" and draw(st.integers(0, 4)) == 0:
        return ["train", "--resume", draw(st.sampled_from(["@copy:run", "@copy:garbage"])),
                "--train-steps", str(draw(st.integers(20, 22))), "--quiet"]  # fmt: skip
    if command == "train":
        return ["train", "--out", "@ex/run", "--quiet", "--train-steps", ints("train_steps"),
                "--eval-samples", ints("eval_samples"), "--snapshot-samples", "20",
                "--n-train", "200", "--checkpoint-every", "0", "--width", "16", "--depth", "1",
                "--sample-steps", ints("sample_steps")]  # fmt: skip
    if command == "sample":
        return ["sample", "--run", "@zoo/run", "--n", ints("n"), "--out", "@ex/samples.npy"]
    if command in ("evaluate", "nll"):
        return [command, "--run", "@zoo/run", "--n", ints("n")]
    if command == "diagnose":
        return ["diagnose", "--run", "@copy:run", "--n", ints("n"), "--quiet", "--out", "@ex/d"]
    return ["compare", "--run", "@zoo/run", "--run", "@zoo/run", "--n", ints("n"),
            "--out", "@ex/out", "--quiet"]  # fmt: skip


def option_words(command: str, name: str, action: argparse.Action, valid: bool, draw) -> list:
    """`name` and its value(s), as given on the command line."""
    if action.nargs == 0:
        return [name]
    if name == "--process" and command == "compare":  # refused forms only (see the docstring)
        words = draw(
            st.sampled_from([["flow", "flow"], ["flow", "bogus"], ["ddpm", "ddpm", "edm"]])
        )
        return [name, *words]
    return [name, draw(value(command, action, valid))]


def misspell(name: str, draw) -> str:
    """`name` with a letter dropped, doubled, swapped or changed."""
    body = name[2:]
    i = draw(st.integers(0, len(body) - 1))
    how = draw(st.sampled_from(["drop", "double", "swap", "change"]))
    if how == "drop":
        body = body[:i] + body[i + 1 :]
    elif how == "double":
        body = body[:i] + body[i] + body[i:]
    elif how == "swap" and i + 1 < len(body):
        body = body[:i] + body[i + 1] + body[i] + body[i + 2 :]
    else:
        body = body[:i] + ("z" if body[i] != "z" else "y") + body[i + 1 :]
    return "--" + body


@st.composite
def argv_for(draw, command: str) -> list[str]:
    """A random command line for `command`: the valid core, then options (each valid or
    not), then a few kinds of breakage."""
    argv = base(command, draw)
    options = OPTIONS[command]
    names = sorted(options)
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(names))
        valid = draw(st.integers(0, 9)) >= 3  # 70% valid values
        argv += option_words(command, name, options[name], valid, draw)
    breakages = draw(st.sampled_from([0, 0, 0, 1, 1, 2]))
    for _ in range(breakages):
        how = draw(st.sampled_from([
            "unknown", "misspelt", "abbreviated", "no-value", "stray", "drop", "separator",
            "help", "dash-value",
        ]))  # fmt: skip
        name = draw(st.sampled_from(names))
        if how == "unknown":
            argv.append(draw(st.sampled_from(["--bogus", "--bogus=1", "-x", "--", "---n"])))
        elif how == "misspelt":
            argv += [misspell(name, draw), "1"]
        elif how == "abbreviated":
            argv += [name[: max(3, len(name) - 2)], "1"]
        elif how == "no-value":
            argv.append(name)
        elif how == "stray":
            position = draw(st.integers(1, len(argv)))
            argv.insert(position, draw(st.sampled_from(["extra", "1", "train", "-"])))
        elif how == "drop" and len(argv) > 1:
            del argv[draw(st.integers(1, len(argv) - 1))]
        elif how == "separator":
            argv += ["--", draw(st.sampled_from(["--n", "x", "1"]))]
        elif how == "help":
            argv.append(draw(st.sampled_from(["--help", "-h", "--version"])))
        elif how == "dash-value":
            argv += [name, draw(st.sampled_from(["-5", "-1e3", "-.5", "-nan"]))]
    return argv


# --- running one command line ------------------------------------------------------------------


def _state(root: Path, skip: str | None = None) -> list[tuple[str, int, int]]:
    """Every entry under `root` (not below `skip`), with size and modification time."""
    entries = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if skip is not None and relative.parts[0] == skip:
            continue
        info = path.lstat()
        entries.append((str(relative), info.st_size, info.st_mtime_ns))
    return sorted(entries)


def _fill(word: str, zoo: Path, example: Path) -> str:
    if word.startswith("@zoo/"):
        return str(zoo / word[5:])
    if word.startswith("@ex/"):
        return str(example / word[4:])
    if word.startswith("@copy:"):
        name = word[6:]
        copy = example / f"copy-{name}"
        if not copy.exists():
            shutil.copytree(zoo / name, copy, symlinks=True)
        return str(copy)
    return word


def check(template: list[str], zoo: Path) -> None:
    """Run one command line; fail the test unless it returned 0, or 2 with one line on
    stderr and nothing written."""
    example = Path(tempfile.mkdtemp(dir=zoo / "examples"))
    try:
        argv = [_fill(word, zoo, example) for word in template]
        shown = shlex.join(a if len(a) <= 80 else f"{a[:40]}...({len(a)} characters)" for a in argv)
        zoo_before, example_before = _state(zoo, skip="examples"), _state(example)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.chdir(example), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):  # fmt: skip
            try:
                code = main(argv)
            except (Exception, SystemExit):  # every escape is the bug we look for
                pytest.fail(f"diffusion {shown}\nraised:\n{traceback.format_exc()}")
        stdout, stderr = out.getvalue(), err.getvalue()
        context = f"diffusion {shown}\nexit {code}\nstdout: {stdout[-2000:]!r}\nstderr: {stderr!r}"
        assert "Traceback" not in stdout + stderr, context
        assert code in (0, 2), context
        assert _state(zoo, skip="examples") == zoo_before, f"the zoo changed\n{context}"
        assert not (zoo / "pwned").exists(), context
        if code == 2:
            lines = stderr.splitlines()
            assert len(lines) == 1 and stderr.endswith("\n"), context
            assert lines[0].startswith(PREFIX) and lines[0][len(PREFIX) :].strip(), context
            assert _state(example) == example_before, f"a refused command wrote\n{context}"
    finally:
        shutil.rmtree(example, ignore_errors=True)


# --- the campaign --------------------------------------------------------------------------------

# Examples per command in the normal suite: a successful train, diagnose or compare takes a
# few seconds (pictures), sample, evaluate and nll a fraction of one. About 15 s in all; the
# `slow` variant below runs 500 per command.
EXAMPLES = {"train": 10, "sample": 16, "evaluate": 16, "nll": 12, "diagnose": 4, "compare": 4}
SLOW_EXAMPLES = 500


def campaign(command: str, zoo: Path, examples: int, shrink: bool) -> None:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              phases=phases, suppress_health_check=list(HealthCheck), print_blob=False)  # fmt: skip
    @given(template=argv_for(command))
    def run(template: list[str]) -> None:
        check(template, zoo)

    run()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_line_ends_in_a_traceback(command, zoo):
    campaign(command, zoo, EXAMPLES[command], shrink=False)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_line_ends_in_a_traceback_long(command, zoo):
    campaign(command, zoo, SLOW_EXAMPLES, shrink=True)


def test_the_campaign_reads_the_real_parser():
    """Every option of every command is drawn, and every numeric one has a valid range."""
    for command, options in OPTIONS.items():
        assert "--out" in options or command in ("evaluate", "nll")
        for name, action in options.items():
            spec = numeric_spec(action)
            if spec is None:
                continue
            kind, low, high, *_ = spec
            lo, hi = small_range(command, action.dest, kind, low, high)
            assert lo <= hi and (low is None or lo >= low) and (high is None or hi <= high), name
            assert math.isfinite(lo) and math.isfinite(hi), name
    assert {a.dest for a in OPTIONS["train"].values()} >= set(SETTINGS)


def test_a_traceback_fails_the_check(zoo, monkeypatch):
    """The check itself can fail: a command that raises, or exits 2 with two lines."""
    import diffusion.cli as cli

    def explode(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "nll", explode)
    with pytest.raises(pytest.fail.Exception, match="boom"):
        check(["nll", "--run", "@zoo/run"], zoo)

    def two_lines(args):
        print("diffusion: error: one\ndiffusion: error: two", file=sys.stderr)
        return 2

    monkeypatch.setitem(cli.COMMANDS, "nll", two_lines)
    with pytest.raises(AssertionError):
        check(["nll", "--run", "@zoo/run"], zoo)
