"""Shared fixtures: a tiny trained run, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from diffusion.training.config import TrainConfig
from diffusion.workflows.run import run_training

# The suite runs on shared 2-core machines: one intra-op thread avoids oversubscription,
# which otherwise makes small tensor ops wait on the scheduler.
torch.set_num_threads(1)

TINY = dict(
    process="ddpm", train_steps=1500, batch_size=256, width=64, depth=2, n_train=4000, diffusion_steps=200,
    sample_steps=50, snapshot_every=750, ema_decay=0.99, snapshot_samples=300, eval_samples=2000,
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple:
    """A run directory from a short DDPM training on the swiss roll, and its metrics."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    metrics = run_training(TrainConfig(**TINY), run_dir, progress=False)
    return run_dir, metrics


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory):
    """The image metrics' classifiers are cached in a temporary folder, not in ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("DIFFUSION_CACHE")
    os.environ["DIFFUSION_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DIFFUSION_CACHE", None)
    else:
        os.environ["DIFFUSION_CACHE"] = previous


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium without network (`tests/browser.py`). Without Chromium the tests
    that need it are skipped, except in CI (CI=true), where .ci/run installs it: there they
    fail."""
    from browser import Browser, find_chromium

    if find_chromium() is None:
        message = "no Chromium on PATH (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with Browser() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests keep what a person may want to look at (screenshots): test-artifacts/ at
    the repository root, or $DIFFUSION_TEST_ARTIFACTS."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(os.environ.get("DIFFUSION_TEST_ARTIFACTS", root / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
