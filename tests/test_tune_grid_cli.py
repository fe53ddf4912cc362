"""`diffusion tune-grid`: a grid tuned against a run's own network, saved in RUN/grids.json and
walked by `diffusion sample|evaluate --sample-grid tuned`; the exact-oracle form; one-line
errors (exit 2) for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from diffusion.cli import main
from diffusion.io.grids import GRIDS_FILE, read_grids
from diffusion.io.runs import load_model
from diffusion.samplers.tuning import grid_key

UNIPC = ("--sampler", "unipc", "--order", "3")
FAST = ("--n", "200", "--iterations", "20", "--quiet")


@pytest.fixture(scope="module")
def tuned_run(tiny_run, tmp_path_factory):
    """A copy of the tiny DDPM run (so the shared one stays as it was) with an 8-step UniPC-3
    grid tuned on it."""
    run = tmp_path_factory.mktemp("tune") / "run"
    shutil.copytree(tiny_run[0], run)
    assert main(["tune-grid", "--run", str(run), "--steps", "8", *UNIPC, *FAST]) == 0
    return run


def tune(capsys, run, steps: int, *extra: str):
    return run_cli(capsys, "tune-grid", "--run", str(run), "--steps", str(steps), *UNIPC,
                   *FAST, *extra)  # fmt: skip


def test_tune_grid_writes_the_run_grid_and_sample_walks_it(capsys, tuned_run, tmp_path):
    grids = read_grids(tuned_run / GRIDS_FILE)
    key = grid_key("unipc", 8, {"order": 3})
    entry = grids[key]
    times = torch.tensor(entry["times"], dtype=torch.float64)
    assert times.shape == (9,) and bool((times[1:] < times[:-1]).all())
    assert entry["error"] <= entry["start_error"] and entry["source"] == "network"
    assert torch.equal(times * 200, (times * 200).round())  # on DDPM's 200 steps

    # A second grid keeps the first.
    code, out, err = tune(capsys, tuned_run, 5)
    assert code == 0, err
    assert "best standard grid" in out and "tuned grid" in out and "grid: 1 " in out
    assert set(read_grids(tuned_run / GRIDS_FILE)) == {key, grid_key("unipc", 5, {"order": 3})}

    # sample walks the saved grid: 8 NFE, and the same samples as TrainedModel.sample(grid=tuned).
    out_file = tmp_path / "x.npy"
    code, out, err = run_cli(capsys, "sample", "--run", str(tuned_run), *UNIPC, "--sample-steps",
                             "8", "--sample-grid", "tuned", "--n", "50", "--out", str(out_file))  # fmt: skip
    assert code == 0, err
    assert "(8 NFE per sample)" in out
    trained = load_model(tuned_run)
    result = trained.sample(50, sampler="unipc", steps=8, grid="tuned", order=3,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(result.times, times)
    np.testing.assert_allclose(np.load(out_file), result.x.numpy(), rtol=1e-5, atol=1e-5)

    code, out, err = run_cli(capsys, "evaluate", "--run", str(tuned_run), *UNIPC,
                             "--sample-steps", "8", "--sample-grid", "tuned", "--n", "200")  # fmt: skip
    assert code == 0, err
    assert "8 NFE" in out


def test_a_grid_never_tuned_names_the_command(capsys, tuned_run, tmp_path):
    code, _, err = run_cli(capsys, "sample", "--run", str(tuned_run), *UNIPC, "--sample-steps",
                           "7", "--sample-grid", "tuned", "--n", "5", "--out",
                           str(tmp_path / "x.npy"))  # fmt: skip
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert f"diffusion tune-grid --run {tuned_run} --steps 7 --sampler unipc --order 3" in err
    assert "(it has: unipc corrector=True order=3 variant=bh2 steps=8" in err
    assert not (tmp_path / "x.npy").exists()
    # The run's own sampler (DDPM: ancestral) draws fresh noise: no grid is tuned for it.
    code, _, err = run_cli(capsys, "sample", "--run", str(tuned_run), "--sample-grid", "tuned",
                           "--n", "5", "--out", str(tmp_path / "x.npy"))  # fmt: skip
    assert code == 2 and "ancestral (or its noise option) draws fresh noise" in err


def test_a_broken_grids_file_is_one_line(capsys, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    (run / GRIDS_FILE).write_text('{"format_version": 1, "grids": {"x": {"times": [1, 2]}}}')
    code, _, err = run_cli(capsys, "sample", "--run", str(run), "--sample-grid", "tuned",
                           "--sampler", "unipc", "--n", "5", "--out", str(tmp_path / "x.npy"))  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not a valid grids file" in err
    # Other grids still sample: the file is read only for a tuned grid.
    code, _, err = run_cli(capsys, "sample", "--run", str(run), "--n", "5", "--sample-steps",
                           "5", "--out", str(tmp_path / "y.npy"))  # fmt: skip
    assert code == 0, err


def test_tune_grid_oracle_prints_and_writes_out(capsys, tmp_path):
    args = ("tune-grid", "--oracle", "--dataset", "gaussians", "--process", "flow", "--steps",
            "4", "--sampler", "heun", "--n", "100", "--iterations", "15", "--quiet")  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "grid: 1 " in out and "wrote" not in out
    target = tmp_path / "grids.json"
    code, out, err = run_cli(capsys, *args, "--out", str(target))
    assert code == 0, err
    entry = json.loads(target.read_text())["grids"][grid_key("heun", 4)]
    assert entry["source"] == "oracle" and len(entry["times"]) == 5
    assert entry["options"]["churn_max"] == "inf"  # JSON has no infinity


def test_an_out_file_that_is_not_a_grids_file_is_refused_first(capsys, tmp_path):
    target = tmp_path / "other.json"
    target.write_text('{"x": 1}')
    code, _, err = run_cli(capsys, "tune-grid", "--oracle", "--dataset", "gaussians", "--steps",
                           "3", "--sampler", "heun", "--quiet", "--out", str(target))  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not a valid grids file" in err and "tuned grid" not in err
    assert target.read_text() == '{"x": 1}'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--oracle",), "tunes against the run's own network"),
        (("--sampler", "ancestral"), "draws fresh noise"),
        (("--sampler", "rk45"), "chooses its own steps"),
        (("--sampler", "unipc", "--eta", "0.5"), "--eta applies to the ddim"),
        (("--sampler", "unipc", "--out", "grids.txt"), "--out must name a .json file"),
        (("--sampler", "unipc", "--steps", "300"), "at most 200"),
        (("--sampler", "unipc", "--sample-steps", "8"), "did you mean --steps"),
    ],
)
def test_bad_input_is_one_line(capsys, tiny_run, extra, message):
    steps = () if "--steps" in extra else ("--steps", "4")
    code, _, err = run_cli(capsys, "tune-grid", "--run", str(tiny_run[0]), *steps, *extra,
                           "--quiet")  # fmt: skip
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tiny_run[0] / GRIDS_FILE).exists()
