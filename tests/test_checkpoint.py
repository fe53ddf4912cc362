"""Checkpoints: safetensors + JSON round trip; anything else is refused with one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from diffusion.io.runs import CheckpointError, load_model
from diffusion.training.config import TrainConfig
from diffusion.training.loop import train
from diffusion.training.trained import TrainedModel
from diffusion.utils import make_generator


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def test_load_restores_config_normalizer_and_weights(tiny_run):
    run_dir, _ = tiny_run
    trained = load_model(run_dir)
    assert trained.config.width == 64 and trained.dim == 2
    # The normaliser was fitted on swiss-roll data: its mean is near the roll's centre.
    assert trained.normalizer.shift.abs().max() < 0.5
    x = trained.sample(50, sampler="ddim", steps=3, generator=make_generator(0)).x
    assert x.shape == (50, 2) and torch.isfinite(x).all()


def test_truncated_weights_are_refused(run_copy):
    weights = run_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(run_copy)


def test_weights_of_another_architecture_are_refused(run_copy):
    meta = json.loads((run_copy / "config.json").read_text())
    meta["config"]["width"] = 32
    (run_copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_model(run_copy)


def test_unknown_config_key_and_format_version_are_refused(run_copy):
    meta = json.loads((run_copy / "config.json").read_text())
    meta["config"]["surprise"] = 1
    (run_copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="surprise"):
        load_model(run_copy)
    meta["config"].pop("surprise")
    meta["format_version"] = 99
    (run_copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(run_copy)


def test_a_pickle_is_never_loaded(run_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    (run_copy / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        load_model(run_copy)
    assert not marker.exists()


def test_from_result_samples_with_the_ema_weights():
    config = TrainConfig(
        train_steps=20, width=16, depth=1, n_train=500, snapshot_every=20, checkpoint_every=0,
        dataset="moons", device="cpu",
    )  # fmt: skip
    result = train(config, progress=False)
    trained = TrainedModel.from_result(result)
    assert trained.model is result.ema and trained.process is result.process
    assert trained.normalizer is result.normalizer and trained.dim == 2
    assert trained.config is result.config
    # Sampling goes through the EMA network: the raw weights give different points.
    a = trained.sample(50, steps=4, generator=make_generator(1)).x
    raw = TrainedModel(**{**vars(trained), "model": result.model})
    b = raw.sample(50, steps=4, generator=make_generator(1)).x
    assert a.shape == (50, 2) and not torch.allclose(a, b)
