"""One source of truth for defaults: a process built from Python with no arguments, from
`TrainConfig(process=P)` and from `diffusion train --process P` are the same thing."""

from __future__ import annotations

import pytest
import torch

from diffusion.cli.options import config_overrides, help_text
from diffusion.cli.parser import build_parser
from diffusion.models import TimeMLP
from diffusion.processes import PROCESSES
from diffusion.samplers import GAUSSIAN_ONLY
from diffusion.training.build import build_model, build_process
from diffusion.training.config import PROCESS_SETTINGS, TrainConfig

GRID = torch.linspace(0, 1, 33, dtype=torch.float64)


def cli_config(*options: str) -> TrainConfig:
    args = build_parser().parse_args(["train", *options])
    return TrainConfig.from_dict(config_overrides(args))


@pytest.mark.parametrize("name", list(PROCESSES))
def test_python_config_and_cli_build_the_same_process(name):
    cls = PROCESSES[name]
    python = cls()
    config = TrainConfig(process=name)
    assert cli_config("--process", name) == config
    built = build_process(config)
    assert type(built) is cls
    for attribute in ("prediction", "coupling", "default_sampler", "default_sample_steps"):
        assert getattr(built, attribute) == getattr(python, attribute), attribute
    torch.testing.assert_close(built.alpha(GRID), python.alpha(GRID), rtol=0, atol=0)
    torch.testing.assert_close(built.sigma(GRID), python.sigma(GRID), rtol=0, atol=0)
    # ... and the config reads its defaults from the class, not from a table of its own.
    assert config.prediction == cls.default_prediction == python.prediction
    assert config.sampler == cls.default_sampler
    assert config.sample_steps == python.default_sample_steps
    assert config.coupling == python.coupling == cls.couplings[0]


def test_the_default_network_is_the_same_from_python_and_the_config():
    config = TrainConfig()
    ours, plain = build_model(config, 2, seed=0), TimeMLP(2, seed=0)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in plain.parameters()]
    for a, b in zip(ours.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_sampler_that_needs_the_score_gets_independent_pairs():
    config = TrainConfig(process="flow", sampler="ancestral")
    assert config.coupling == "independent"
    assert "ancestral" in GAUSSIAN_ONLY


@pytest.mark.parametrize(("setting", "takers"), list(PROCESS_SETTINGS.items()))
def test_a_process_setting_names_the_processes_that_take_it(setting, takers):
    """Which processes take a setting is stated once (the class's `settings`), and the error
    for any other process, the help text and the build all read it."""
    others = [p for p in PROCESSES if p not in takers]
    assert takers and others
    for process in takers:
        assert setting in PROCESSES[process].settings
    value = {"schedule": "linear", "train_times": "logit-normal", "augment_dim": 7,
             "zero_terminal_snr": True, "allow_terminal_signal": True,
             "beta_start": 1e-4, "beta_end": 0.02, "sigma_min": 0.01, "sigma_max": 5.0}[setting]  # fmt: skip
    with pytest.raises(ValueError, match=rf"{setting} applies to the {takers[0]}"):
        TrainConfig(process=others[0], **{setting: value})
    assert f"{', '.join(takers)} only" in help_text(setting)
