"""`diffusion compare`: runs side by side, with their metrics."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from diffusion.cli import main
from diffusion.training.config import TrainConfig
from diffusion.workflows.run import run_training

TINY = dict(
    train_steps=40, width=16, depth=1, n_train=500, batch_size=64, eval_samples=300,
    snapshot_samples=100, snapshot_every=20, checkpoint_every=0, sample_steps=10,
)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    made = {}
    for process, extra in (("ddpm", {"diffusion_steps": 50}), ("flow", {}), ("edm", {})):
        made[process] = root / process
        run_training(TrainConfig(process=process, **TINY, **extra), made[process], progress=False)
    made["moons"] = root / "moons"
    run_training(
        TrainConfig(dataset="moons", diffusion_steps=50, **TINY), made["moons"], progress=False
    )
    return made


def test_compare_writes_one_panel_per_run_and_the_metrics(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--n", "300"]
    for name in ("ddpm", "flow", "edm"):
        argv += ["--run", str(runs[name])]
    assert main(argv) == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["process"] for r in rows] == ["ddpm", "flow", "edm"]
    assert [r["sampler"] for r in rows] == ["ancestral", "unipc", "deis"]  # the defaults
    assert [r["nfe"] for r in rows] == [10, 10, 10]  # one evaluation per step
    assert all(r["sw_ratio"] > 0 for r in rows)
    with Image.open(out / "compare.png") as png:
        assert png.width == 4 * png.height  # data + three runs, square panels
    with Image.open(out / "compare.gif") as gif:
        assert gif.n_frames == 11 and gif.width == 3 * gif.height  # prior + 10 steps
    printed = capsys.readouterr().out
    assert "flow" in printed and "SW ratio" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "at least two runs"),
        (["--run", "{moons}"], "different data sets"),
        (["--run", "{missing}"], "does not exist"),
        (["--process", "ddpm", "ddpm"], "twice"),
    ],
)
def test_bad_compare_input_exits_2_with_one_line(extra, message, runs, tmp_path, capsys):
    filled = [a.format(moons=runs["moons"], missing=tmp_path / "nope") for a in extra]
    assert main(["compare", "--run", str(runs["ddpm"]), *filled, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "o" / "compare.png").exists()


def test_compare_sweeps_the_guidance_scale_of_a_conditional_run(tmp_path, capsys):
    run_dir, out = tmp_path / "run", tmp_path / "sweep"
    assert main(["train", "--dataset", "eight_gaussians", "--train-steps", "400", "--width", "32",
                 "--depth", "1", "--eval-samples", "500", "--snapshot-samples", "50",
                 "--sample-steps", "10", "--quiet", "--out", str(run_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["compare", "--run", str(run_dir), "--guidance", "0", "1", "3", "--n", "1000",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    rows = json.loads((out / "compare.json").read_text())
    assert [row["guidance"] for row in rows] == [0, 1, 3]
    per_class = [row["class_sw_ratio_median"] for row in rows]
    # w = 0 ignores the class: each class's samples spread over all eight components
    assert per_class[0] > 3 * per_class[1]
    assert (out / "compare.png").is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--guidance", "1", "2"], "unconditional"),
        (["--guidance", "1", "1"], "names a scale twice"),
        (["--guidance", "1", "--run", "{run}"], "exactly one --run"),
    ],
)
def test_guidance_sweep_bad_input(argv, message, tiny_run, tmp_path, capsys):
    argv = [a.format(run=tiny_run[0]) for a in argv]
    out = tmp_path / "out"
    assert main(["compare", "--run", str(tiny_run[0]), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not out.exists()
