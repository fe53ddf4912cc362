"""The Python API: `import diffusion`, then train, sample, evaluate and load in a few lines."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import diffusion

TINY = dict(train_steps=60, width=16, depth=1, batch_size=64, n_train=500, eval_samples=400,
            snapshot_every=60, snapshot_samples=50, checkpoint_every=0)  # fmt: skip


def test_import_diffusion_stays_light():
    """The public names are imported on first use: `import diffusion` loads no torch."""
    code = "import sys, diffusion; print('torch' in sys.modules, diffusion.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", diffusion.__version__]
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        diffusion.trian  # noqa: B018


def test_train_on_an_array_in_memory_then_sample_and_evaluate():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(400, 3)) * [1.0, 2.0, 0.5] + [5.0, -1.0, 0.0]  # (n, 3)
    run = diffusion.train(points, progress=False, **TINY)
    assert run.dir is None and run.config.dataset == "<array>"
    x = run.sample(300, seed=4)
    assert x.shape == (300, 3) and x.dtype == torch.float32
    assert torch.equal(x, run.sample(300, seed=4))  # the seed fixes the draw
    # In the data's units: the means are near the data's, far from the standardised 0.
    assert torch.allclose(x.mean(0), torch.tensor([5.0, -1.0, 0.0]), atol=0.6)
    report = run.evaluate(200)
    assert report.sliced_wasserstein.floor > 0 and report.sliced_wasserstein.ratio > 0


def test_train_into_a_directory_then_load_gives_the_same_samples(tmp_path):
    run = diffusion.train("moons", out=tmp_path / "run", progress=False, **TINY)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert run.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    loaded = diffusion.load(tmp_path / "run")
    assert loaded.config == run.config
    torch.testing.assert_close(loaded.sample(100, seed=1), run.sample(100, seed=1))
    # The same settings from Python and from the config: one source of defaults (the run
    # records the classes it found: the two moons).
    assert run.config == diffusion.TrainConfig(dataset="moons", classes=2, **TINY)


def test_bad_input_is_one_line_error():
    with pytest.raises(ValueError, match=r"unknown config key .train_step.*train_steps"):
        diffusion.train("moons", train_step=5)
    with pytest.raises(ValueError, match="the array: has non-finite values"):
        diffusion.train(np.array([[0.0, np.nan], [1.0, 2.0]]), **TINY)
    with pytest.raises(ValueError, match="first argument"):
        diffusion.train(dataset="moons")


def test_a_run_trained_on_an_array_cannot_evaluate_after_loading(tmp_path):
    points = np.random.default_rng(1).normal(size=(200, 2))
    diffusion.train(points, out=tmp_path / "run", progress=False, **TINY)
    loaded = diffusion.load(tmp_path / "run")
    assert loaded.sample(10).shape == (10, 2)
    with pytest.raises(ValueError, match="in-memory array"):
        loaded.evaluate(50)


def test_run_sample_is_diffusion_sample_with_the_same_seed(tmp_path):
    from diffusion.cli import main

    run = diffusion.train("gaussians", out=tmp_path / "run", progress=False, **TINY)
    out = tmp_path / "x.npy"
    assert main(["sample", "--run", str(tmp_path / "run"), "--n", "50", "--seed", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    torch.testing.assert_close(torch.from_numpy(np.load(out)), run.sample(50, seed=3))
