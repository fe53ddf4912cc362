"""TrainConfig: typed, range-checked, unknown keys refused."""

from __future__ import annotations

import math

import pytest

from diffusion.training.config import ConfigError, TrainConfig


def test_defaults_are_valid_and_round_trip():
    config = TrainConfig()
    assert config.validate() is config
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="'stpes'"):
        TrainConfig.from_dict({"stpes": 10})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("train_steps", 0), ("train_steps", 1.5), ("train_steps", True), ("batch_size", -1), ("lr", 0.0),
        ("lr", math.nan), ("grad_clip", -1.0), ("ema_decay", 1.0), ("min_lr_ratio", -0.1),
        ("warmup", -1), ("seed", -3), ("beta_start", 0.0), ("beta_end", 1.0),
        ("schedule", "exp"), ("process", "nope"), ("sampler", "nope"), ("prediction", "noise"),
        ("device", "tpu"), ("weight_decay", math.inf),
    ],
)  # fmt: skip
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict({field: value})


def test_a_beta_schedule_is_refused_outside_ddpm():
    with pytest.raises(ConfigError, match="schedule applies to the ddpm process only"):
        TrainConfig.from_dict({"schedule": "linear"})
    assert TrainConfig.from_dict({"process": "ddpm", "schedule": "linear"}).schedule == "linear"


def test_sample_steps_cannot_exceed_diffusion_steps():
    with pytest.raises(ConfigError, match="sample_steps"):
        TrainConfig.from_dict({"process": "ddpm", "diffusion_steps": 50, "sample_steps": 100})


def test_a_config_is_checked_when_it_is_made():
    """No TrainConfig exists with a bad value: construction validates (and fills defaults)."""
    with pytest.raises(ConfigError, match=r"train_steps must be in \[1, 100_000_000\], got -3"):
        TrainConfig(train_steps=-3)
    with pytest.raises(ConfigError, match="sigma_min applies to the ve, edm, ncsn and poisson"):
        TrainConfig(process="vp", sigma_min=0.1)
    assert TrainConfig(process="edm").sample_steps == 15  # filled from the EDM class
    assert TrainConfig(process="edm", sampler="heun").sample_steps == 32  # another sampler's


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_file_with_a_5000_digit_number_names_the_file(tmp_path, suffix):
    from diffusion.training.saved_config import read_config_file

    path = tmp_path / f"run{suffix}"
    digits = "9" * 5000
    path.write_text(
        f'{{"train_steps": {digits}}}' if suffix == ".json" else f"train_steps = {digits}"
    )
    with pytest.raises(ConfigError, match=f"config file {path} holds a number too long"):
        read_config_file(path)
