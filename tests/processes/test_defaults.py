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
from diffusion.samplers.grids import make_grid
from diffusion.training.build import build_model, build_process
from diffusion.training.config import PROCESS_SETTINGS, TrainConfig
from diffusion.workflows.exact import exact_model

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
    assert config.sample_grid == cls.default_sample_grid
    assert config.sample_order == cls.default_sample_order
    assert config.coupling == python.coupling == cls.couplings[0]


@pytest.mark.parametrize("name", list(PROCESSES))
def test_another_sampler_walks_its_own_setting(name):
    """The default grid and order were measured with the default sampler: any other sampler
    named without them walks `other_sample_steps` of the uniform grid with its own order."""
    cls = PROCESSES[name]
    other = "euler" if cls.default_sampler != "euler" else "heun"
    config = TrainConfig(process=name, sampler=other)
    process = build_process(config)
    assert config.sample_grid == "uniform" and config.sample_order is None
    assert config.sample_steps == (process.other_sample_steps or process.default_sample_steps)
    assert process.sampling_defaults(other) == (other, config.sample_steps, "uniform", {})


def test_the_run_order_applies_to_the_run_sampler_only():
    config = TrainConfig(process="vp", sampler="unipc", sample_order=3)
    assert config.sampler_options("unipc") == {"order": 3}
    assert config.sampler_options("unipc", {"order": 1}) == {"order": 1}  # asked for wins
    assert config.sampler_options("deis") == {}  # another sampler: its own default


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sampler": "heun", "sample_order": 2}, "sample_order 2 does not apply to sampler heun"),
        ({"sampler": "dpm-solver++", "sample_order": 1}, "dpm-solver\\+\\+ \\(2/3\\)"),
        ({"sampler": "unipc", "sample_order": 4}, "sample_order"),
    ],
)
def test_a_sample_order_the_sampler_cannot_take_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(process="vp", **settings)


@pytest.mark.parametrize("name", ["vp", "edm", "flow"])
def test_sample_with_nothing_named_is_the_process_default_setting(name):
    """`sample(denoiser, shape)` walks the default sampler, steps, grid and order: the same
    numbers as naming them all."""
    from diffusion.data.mixture import GaussianMixture
    from diffusion.samplers import sample

    mixture = GaussianMixture.isotropic(torch.ones(2), [[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.3])
    model = exact_model(mixture, TrainConfig(process=name, dataset="gaussians"))
    process = model.process
    sampler, steps, grid, options = process.sampling_defaults()
    plain = sample(model.denoiser(), (64, 2), generator=torch.Generator().manual_seed(0))
    named = sample(model.denoiser(), (64, 2), sampler=sampler, steps=steps, grid=grid,
                   generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
    torch.testing.assert_close(plain.x, named.x, rtol=0, atol=0)
    torch.testing.assert_close(plain.times, make_grid(process, steps, grid), rtol=0, atol=0)
    assert plain.nfe == named.nfe


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


@pytest.mark.parametrize(("sampler", "order"), [("deis", 2), ("dpm-solver++", 2), ("heun", None)])
def test_a_run_saved_before_sample_order_keeps_its_sampler_own_order(sampler, order):
    """A vp run saved with deis before sample_order existed sampled deis at its own order 2,
    not at the order 3 that vp's default now gives deis."""
    from diffusion.training.saved_config import upgrade_saved_config

    saved = TrainConfig(process="vp", sampler=sampler).to_dict()
    del saved["sample_order"]
    config = TrainConfig.from_dict(upgrade_saved_config(saved))
    assert config.sample_order == order
    assert config.sampler_options(sampler) == ({} if order is None else {"order": order})


def test_naming_a_sampler_gives_it_as_it_is():
    """The measured setting comes with the default sampler when none is named; naming one,
    the default one too, gives it on the uniform grid at the family's former steps."""
    assert PROCESSES["vp"]().sampling_defaults() == ("deis", 15, "karras", {"order": 3})
    named = TrainConfig(process="vp", sampler="deis")
    assert (named.sample_steps, named.sample_grid, named.sample_order) == (50, "uniform", None)
    assert named.sampler_options("deis") == {}  # deis's own order, 2


def test_a_run_keeps_its_setting_for_its_own_sampler_only():
    from diffusion.data.mixture import GaussianMixture

    mixture = GaussianMixture.isotropic(torch.ones(2), [[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.3])
    run = exact_model(mixture, TrainConfig(process="vp", dataset="gaussians"))
    assert run.sampling() == ("deis", 15, "karras", {"order": 3})
    assert run.sampling("deis", {"order": 2}) == ("deis", 15, "karras", {"order": 2})
    assert run.sampling("unipc") == ("unipc", 50, "uniform", {})  # not the run's 15 on karras
    result = run.sample(8, sampler="unipc", generator=torch.Generator().manual_seed(0))
    assert result.nfe == 50
    torch.testing.assert_close(result.times, make_grid(run.process, 50, "uniform"))
