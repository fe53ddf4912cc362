"""Training-time distributions (diffusion.processes.times) and the `train_times` setting."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.processes import VE, VP, FlowMatching
from diffusion.processes.times import TRAIN_TIMES, check_train_times, density, draw_times
from diffusion.training.build import build_process
from diffusion.training.config import ConfigError, TrainConfig
from diffusion.training.saved_config import critical_differences, upgrade_saved_config

N = 400_000


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


#: closed-form CDFs: low-noise is 1/2 U + 1/2 U^3, so P(t <= s) = s/2 + s^(1/3)/2.
CDF = {
    "uniform": lambda s: s,
    "low-noise": lambda s: 0.5 * s + 0.5 * s ** (1 / 3),
    "logit-normal": lambda s: normal_cdf(math.log(s / (1 - s))),
}


@pytest.mark.parametrize("kind", TRAIN_TIMES)
def test_draws_follow_the_closed_form_cdf(kind):
    t = draw_times(kind, N, generator=torch.Generator().manual_seed(0))
    assert t.shape == (N,) and t.dtype == torch.float32
    assert t.min() >= 0 and t.max() <= 1
    for s in (0.01, 0.1, 0.3, 0.5, 0.9):
        expected = CDF[kind](s)
        se = math.sqrt(expected * (1 - expected) / N)
        assert abs((t <= s).float().mean().item() - expected) < 5 * se + 1e-4, (kind, s)


def test_low_noise_puts_more_draws_near_the_data():
    # the figure the docstring quotes: 28% below t = 0.1 instead of 10%; mean 1/2 * 1/2 + 1/2 * 1/4
    t = draw_times("low-noise", N, generator=torch.Generator().manual_seed(1))
    assert (t < 0.1).float().mean().item() == pytest.approx(0.2821, abs=0.003)
    assert t.mean().item() == pytest.approx(0.375, abs=0.002)
    logit = draw_times("logit-normal", N, generator=torch.Generator().manual_seed(1))
    assert logit.mean().item() == pytest.approx(0.5, abs=0.002)  # symmetric about 1/2


@pytest.mark.parametrize("kind", TRAIN_TIMES)
def test_density_is_the_derivative_of_the_cdf(kind):
    for s in (0.02, 0.2, 0.5, 0.8, 0.97):
        h = 1e-5
        slope = (CDF[kind](s + h) - CDF[kind](s - h)) / (2 * h)
        value = density(kind, torch.tensor(s, dtype=torch.float64)).item()
        assert value == pytest.approx(slope, rel=1e-6), (kind, s)


def test_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="uniform, low-noise, logit-normal"):
        check_train_times("cubic")
    with pytest.raises(ValueError, match="cubic"):
        draw_times("cubic", 3)
    with pytest.raises(ValueError, match="cubic"):
        FlowMatching(train_times="cubic")


def test_processes_draw_their_training_times_from_it():
    flow = FlowMatching(train_times="low-noise")
    t = flow.sample_time(N, generator=torch.Generator().manual_seed(2))
    same = draw_times("low-noise", N, generator=torch.Generator().manual_seed(2))
    assert torch.equal(t, same)  # flow's t_min is 0: the draws are the times
    vp = VP(train_times="low-noise")
    t = vp.sample_time(N, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(t, vp.t_min + (1 - vp.t_min) * same)
    assert t.min() >= vp.t_min
    default = VE().sample_time(N, generator=torch.Generator().manual_seed(2))
    assert default.mean().item() == pytest.approx(0.5, abs=0.002)  # uniform unless chosen


def test_config_resolves_and_checks_train_times():
    assert TrainConfig().validate().train_times == "uniform"
    for process in ("vp", "subvp", "ve"):
        assert TrainConfig(process=process).validate().train_times == "uniform"
    for process in ("ddpm", "edm", "ncsn", "poisson"):
        assert TrainConfig(process=process).validate().train_times is None
    config = TrainConfig(process="vp", train_times="logit-normal").validate()
    assert build_process(config).train_times == "logit-normal"
    with pytest.raises(
        ConfigError,
        match="train_times applies to the vp, subvp, ve and flow processes only, not edm",
    ):
        TrainConfig(process="edm", train_times="uniform").validate()
    with pytest.raises(ConfigError, match="train_times must be one of"):
        TrainConfig(train_times="cubic").validate()


def test_configs_saved_before_train_times_resume_unchanged():
    old = TrainConfig(process="vp").validate().to_dict()
    del old["train_times"]  # a run saved before the setting existed drew uniform times
    upgraded = upgrade_saved_config(old)
    assert upgraded["train_times"] == "uniform" and "train_times" not in old
    assert critical_differences(upgraded, TrainConfig(process="vp").validate().to_dict()) == []
    edm = TrainConfig(process="edm").validate().to_dict()
    del edm["train_times"]
    assert upgrade_saved_config(edm)["train_times"] is None
    chosen = {**TrainConfig().validate().to_dict(), "train_times": "low-noise"}
    assert upgrade_saved_config(chosen) == chosen  # a saved choice is kept as it is
    assert upgrade_saved_config([1, 2]) == [1, 2]  # not a table: from_dict reports it
