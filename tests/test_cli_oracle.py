"""`diffusion sample --oracle` and `diffusion evaluate --oracle`: the exact score of a mixture
through the command line, and one-line errors (exit 2, nothing written) for bad combinations."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from diffusion.training.config import TrainConfig
from diffusion.workflows.run import run_training

SINGLE = {"weights": [1], "means": [[1.0, -2.0]], "covariances": [[[2.0, 0.6], [0.6, 0.5]]]}
MIXTURE = {"weights": [1, 2], "means": [[-2.0, 0.0], [2.0, 1.0]], "stds": [0.3, 0.5]}


def write_json(path, spec) -> str:
    path.write_text(json.dumps(spec))
    return str(path)


def nearest_centre_distance(x: np.ndarray, radius: float = 1.0, k: int = 8) -> np.ndarray:
    angle = 2 * math.pi * np.arange(k) / k
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], 1)
    return np.linalg.norm(x[:, None, :] - centres[None], axis=2).min(1)


@pytest.fixture(scope="module")
def gaussians_run(tmp_path_factory):
    """A (barely) trained edm run on `gaussians`: only its config and normaliser matter here."""
    run_dir = tmp_path_factory.mktemp("oracle_runs") / "gaussians"
    config = TrainConfig(
        dataset="gaussians", process="edm", train_steps=5, batch_size=64, width=16, depth=1,
        n_train=500, sample_steps=5, snapshot_every=5, snapshot_samples=50, eval_samples=100,
    )  # fmt: skip
    run_training(config, run_dir, progress=False)
    return run_dir


def test_sample_oracle_json_writes_float32_array(capsys, tmp_path):
    path = write_json(tmp_path / "mix.json", MIXTURE)
    out = tmp_path / "samples.npy"
    code, stdout, err = run_cli(capsys, "sample", "--oracle", "--dataset", path, "--process", "edm",
                                "--sampler", "heun", "--sample-steps", "10", "--n", "100", "--out", str(out))  # fmt: skip
    assert code == 0, err
    x = np.load(out)
    assert x.shape == (100, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert "19 NFE" in stdout  # heun: 2 * 10 - 1 evaluations
    # every sample sits near one of the two modes
    d = np.minimum(np.linalg.norm(x - [-2.0, 0.0], axis=1), np.linalg.norm(x - [2.0, 1.0], axis=1))
    assert d.max() < 3.0 and np.median(d) < 1.0


def test_sample_oracle_reproduces_gaussian_and_seed(capsys, tmp_path):
    path = write_json(tmp_path / "single.json", SINGLE)
    outs = []
    for seed, name in (("3", "a.npy"), ("3", "b.npy"), ("4", "c.npy")):
        out = tmp_path / name
        code, _, err = run_cli(capsys, "sample", "--oracle", "--dataset", path, "--process", "vp",
                               "--sampler", "dpm-solver++", "--sample-steps", "20", "--n", "5000",
                               "--seed", seed, "--out", str(out))  # fmt: skip
        assert code == 0, err
        outs.append(np.load(out))
    a, b, c = outs
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    x = a.astype(np.float64)
    # n = 5000: standard errors ~0.02 on the mean, ~2% on the covariance
    np.testing.assert_allclose(x.mean(0), [1.0, -2.0], atol=0.08)
    np.testing.assert_allclose(np.cov(x.T), [[2.0, 0.6], [0.6, 0.5]], rtol=0.08, atol=0.03)


def test_sample_oracle_in_five_dimensions(capsys, tmp_path):
    spec = {"weights": [1], "means": [[0, 1, 2, 3, 4]], "stds": [0.5]}
    path = write_json(tmp_path / "five.json", spec)
    out = tmp_path / "five.npy"
    code, _, err = run_cli(capsys, "sample", "--oracle", "--dataset", path, "--process", "flow",
                           "--sampler", "heun", "--sample-steps", "15", "--n", "3000", "--out", str(out))  # fmt: skip
    assert code == 0, err
    x = np.load(out).astype(np.float64)
    assert x.shape == (3000, 5)
    np.testing.assert_allclose(x.mean(0), [0, 1, 2, 3, 4], atol=0.05)
    np.testing.assert_allclose(x.std(0), 0.5, rtol=0.06)


def test_sample_oracle_named_gaussians_default_process(capsys, tmp_path):
    out = tmp_path / "g.npy"
    code, _, err = run_cli(capsys, "sample", "--oracle", "--dataset", "gaussians",
                           "--sample-steps", "40", "--n", "500", "--out", str(out))  # fmt: skip
    assert code == 0, err
    d = nearest_centre_distance(np.load(out).astype(np.float64))
    # within-cluster std 0.1: the mean distance to the centre is 0.1 sqrt(pi / 2) = 0.125
    assert 0.09 < d.mean() < 0.17


def test_evaluate_oracle_prints_metrics(capsys, tmp_path):
    path = write_json(tmp_path / "mix.json", MIXTURE)
    code, out, err = run_cli(capsys, "evaluate", "--oracle", "--dataset", path, "--process", "edm",
                             "--sampler", "heun", "--sample-steps", "20", "--n", "300", "--json")  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["n"] == 300
    for name in ("sliced_wasserstein", "mmd", "energy"):
        assert math.isfinite(metrics[name]["value"]) and metrics[name]["floor"] > 0
    # exact score: samples as close to the data as fresh data is (ratio ~1)
    assert metrics["sliced_wasserstein"]["ratio"] < 2.5


def test_oracle_with_run_uses_run_data_and_process(capsys, tmp_path, gaussians_run):
    out = tmp_path / "r.npy"
    code, _, err = run_cli(capsys, "sample", "--oracle", "--run", str(gaussians_run),
                           "--sampler", "heun", "--sample-steps", "20", "--n", "400",
                           "--out", str(out))  # fmt: skip
    assert code == 0, err
    d = nearest_centre_distance(np.load(out).astype(np.float64))
    assert 0.09 < d.mean() < 0.17  # the trained network (5 steps) could not do this
    code, out_text, err = run_cli(capsys, "evaluate", "--oracle", "--run", str(gaussians_run),
                                  "--sample-steps", "10", "--n", "200", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out_text)["n"] == 200


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("diffusion: error:")
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


BAD_COMBINATIONS = [
    (["--oracle", "--dataset", "moons"], "no closed form"),
    (["--oracle", "--dataset", "swissroll", "--process", "edm"], "no closed form"),
    (["--oracle", "--dataset", "gaussians", "--process", "poisson"], "Gaussian marginals"),
    ([], "give --run DIR"),
    (["--dataset", "gaussians"], "--oracle --dataset D"),
    (["--process", "edm"], "--oracle --dataset D"),
    (["--oracle"], "needs --dataset"),
    (["--oracle", "--dataset", "gaussians", "--process", "nosuch"], "invalid choice"),
    (["--oracle", "--dataset", "{broken}"], "is not valid JSON"),
    (["--oracle", "--dataset", "{unknown}"], "unknown key 'extra'"),
    (["--oracle", "--dataset", "{missing}"], "no such file"),
    (["--oracle", "--dataset", "nosuchset"], "unknown dataset"),
]


def _materialise(args: list[str], tmp_path) -> list[str]:
    files = {
        "{broken}": ('{"weights": [1], "means": [[0, 0]]', "broken.json"),
        "{unknown}": (
            '{"weights": [1], "means": [[0, 0]], "stds": [1], "extra": 2}',
            "unknown.json",
        ),
    }
    out = []
    for arg in args:
        if arg in files:
            text, name = files[arg]
            (tmp_path / name).write_text(text)
            arg = str(tmp_path / name)
        elif arg == "{missing}":
            arg = str(tmp_path / "missing.json")
        out.append(arg)
    return out


@pytest.mark.parametrize(("args", "fragment"), BAD_COMBINATIONS)
def test_sample_bad_combinations_exit_2_and_write_nothing(capsys, tmp_path, args, fragment):
    args = _materialise(args, tmp_path)
    before = set(tmp_path.iterdir())
    out = tmp_path / "never.npy"
    code, _, err = run_cli(capsys, "sample", *args, "--n", "10", "--out", str(out))
    assert_one_line_error(code, err, fragment)
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize(("args", "fragment"), BAD_COMBINATIONS)
def test_evaluate_bad_combinations_exit_2(capsys, tmp_path, args, fragment):
    code, out, err = run_cli(capsys, "evaluate", *_materialise(args, tmp_path), "--n", "10")
    assert_one_line_error(code, err, fragment)
    assert out == ""


def test_run_with_dataset_or_process_exits_2(capsys, tmp_path, gaussians_run):
    for extra in (["--dataset", "gaussians"], ["--process", "vp"]):
        out = tmp_path / "x.npy"
        code, _, err = run_cli(capsys, "sample", "--oracle", "--run", str(gaussians_run), *extra,
                               "--n", "10", "--out", str(out))  # fmt: skip
        assert_one_line_error(code, err, "come from the run")
        assert not out.exists()
        # the same without --oracle: those options belong to the oracle
        code, _, err = run_cli(capsys, "sample", "--run", str(gaussians_run), *extra,
                               "--n", "10", "--out", str(out))  # fmt: skip
        assert_one_line_error(code, err, "go with --oracle")
        assert not out.exists()


def test_oracle_with_run_of_non_mixture_data_exits_2(capsys, tmp_path, gaussians_run):
    # the same run, but its config names moons: no closed form to be exact about
    run_dir = tmp_path / "moons_run"
    shutil.copytree(gaussians_run, run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    meta["config"]["dataset"] = "moons"
    (run_dir / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "x.npy"
    code, _, err = run_cli(capsys, "sample", "--oracle", "--run", str(run_dir),
                           "--n", "10", "--out", str(out))  # fmt: skip
    assert_one_line_error(code, err, "no closed form")
    assert not out.exists()
    # without --oracle the same run samples from its network
    code, _, err = run_cli(capsys, "sample", "--run", str(run_dir), "--n", "10", "--out", str(out))
    assert code == 0, err
    assert np.load(out).shape == (10, 2)


def test_oracle_sample_matches_library_exact_model(capsys, tmp_path):
    # the command's samples are the library's ExactModel samples (same seed stream)
    from diffusion.data import get_dataset
    from diffusion.utils import make_generator
    from diffusion.workflows.exact import exact_model

    path = write_json(tmp_path / "mix.json", MIXTURE)
    out = tmp_path / "s.npy"
    code, _, err = run_cli(capsys, "sample", "--oracle", "--dataset", path, "--process", "flow",
                           "--sampler", "euler", "--sample-steps", "8", "--n", "50", "--seed", "9",
                           "--out", str(out))  # fmt: skip
    assert code == 0, err
    config = TrainConfig.from_dict({"dataset": path, "process": "flow"})
    model = exact_model(get_dataset(path).mixture, config)
    expected = model.sample(50, sampler="euler", steps=8, generator=make_generator(9, "cpu"))
    np.testing.assert_allclose(np.load(out), expected.x.numpy(), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(expected.x).all()
