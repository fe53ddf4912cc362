"""Minibatch optimal-transport coupling (diffusion.processes.coupling) and the `coupling`
setting of flow matching."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffusion.io.checkpoints import load_checkpoint, save_checkpoint
from diffusion.processes import FlowMatching
from diffusion.processes.coupling import (
    COUPLINGS,
    check_coupling,
    couple,
    ot_pairing,
    sinkhorn_kernel,
)
from diffusion.samplers import sample
from diffusion.training.build import build_process
from diffusion.training.config import ConfigError, TrainConfig
from diffusion.training.loop import Trainer
from diffusion.training.saved_config import critical_differences, upgrade_saved_config


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_plan_rows_are_exact_and_columns_converge():
    g = gen()
    x, y = torch.randn(256, 2, generator=g), torch.randn(256, 2, generator=g)
    kernel, u, v = sinkhorn_kernel(x, y)
    plan = u[:, None] * kernel * v[None, :]
    assert torch.allclose(plan.sum(1) * 256, torch.ones(256), atol=1e-4)
    assert (plan.sum(0) * 256 - 1).abs().mean() < 0.003  # the default iterations
    kernel, u, v = sinkhorn_kernel(x, y, iterations=300)
    plan = u[:, None] * kernel * v[None, :]
    assert torch.allclose(plan.sum(0) * 256, torch.ones(256), atol=1e-3)
    assert torch.isfinite(plan).all() and (plan >= 0).all()


def test_over_relaxation_converges_faster_than_plain_sinkhorn():
    """Ten over-relaxed iterations leave the column sums far closer to uniform than ten
    plain ones (measured on the swiss roll: 0.04% against 1% on average)."""
    g = gen(7)
    x, y = torch.randn(512, 2, generator=g), torch.randn(512, 2, generator=g)

    def column_error(relaxation: float) -> float:
        kernel, u, v = sinkhorn_kernel(x, y, iterations=10, relaxation=relaxation)
        return ((u[:, None] * kernel * v[None, :]).sum(0) * 512 - 1).abs().mean().item()

    assert column_error(1.5) < column_error(1.0) / 5


def test_small_regularisation_finds_the_optimal_assignment():
    """Six points: the plan's rows peak at the permutation of least total squared distance,
    found here by trying all 720 (the best beats the next by 1% of the mean cost, so the
    regularisation must be well below that)."""
    g = gen(3)
    x, y = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    cost = torch.cdist(x, y) ** 2
    best = min(itertools.permutations(range(6)), key=lambda p: cost[range(6), p].sum().item())
    sharp = dict(reg=0.001, iterations=3000, dtype=torch.float64)
    kernel, u, v = sinkhorn_kernel(x, y, **sharp)
    plan = u[:, None] * kernel * v[None, :]
    assert plan.argmax(1).tolist() == list(best)
    draws = torch.stack([ot_pairing(x, y, **sharp, generator=g) for _ in range(50)])
    assert (draws == torch.tensor(best)).all()
    assert plan.argmax(1).tolist() != list(range(6))  # not the independent pairing


def test_in_one_dimension_the_pairing_keeps_the_order():
    """Optimal transport on the line pairs the k-th smallest with the k-th smallest."""
    g = gen(1)
    x, y = 0.5 * torch.randn(512, 1, generator=g), torch.randn(512, 1, generator=g)
    rank_x = x[:, 0].argsort().argsort().float()
    rank_y = y[:, 0].argsort().argsort().float()
    sharp = rank_y[ot_pairing(x, y, reg=0.01, iterations=300, dtype=torch.float64, generator=g)]
    assert (sharp - rank_x).abs().mean() / 512 < 0.04
    blurred = rank_y[ot_pairing(x, y, generator=g)]  # the default regularisation
    assert (blurred - rank_x).abs().mean() / 512 < 0.1
    assert (rank_y - rank_x).abs().mean() / 512 > 0.25  # independent: about 1/3


def test_paired_noise_stays_standard_normal():
    """Data far to one side: a pairing that favoured the noise near the data would move the
    noise's mean toward it. Each noise row is chosen once on average, so it does not; a plan
    with no Sinkhorn iterations (the kernel's rows alone) does, which this test would see."""
    g = gen(2)
    paired, unconverged = [], []
    for _ in range(40):
        x0 = torch.tensor([2.0, 0.0]) + 0.1 * torch.randn(512, 2, generator=g)
        noise = torch.randn(512, 2, generator=g)
        paired.append(couple("ot", x0, noise, g))
        unconverged.append(noise[ot_pairing(x0, noise, iterations=0, generator=g)])
    paired = torch.cat(paired)  # 20,480 rows: standard error of the mean about 0.007
    assert paired.mean(0).abs().max() < 0.03
    assert (paired.var(0) - 1).abs().max() < 0.05
    assert torch.cat(unconverged).mean(0)[0] > 0.1


def test_the_coupling_shortens_the_pairs_and_the_flow_loss_uses_it():
    """x0 ~ N(0, 0.25 I): independent pairs are E|eps - x0|^2 / 2 = 1.25 apart per
    dimension; optimal transport needs only (1 - 0.5)^2 = 0.25 (minibatch and entropic blur
    add a little). A network that outputs 0 has exactly that as its flow-matching loss."""
    g = gen(4)
    x0 = 0.5 * torch.randn(512, 2, generator=g)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    t = torch.full((512,), 0.5)
    losses = {
        kind: FlowMatching(coupling=kind).loss(zero, x0, t, generator=gen(5)).item()
        for kind in COUPLINGS
    }
    assert 1.1 < losses["independent"] < 1.4
    assert 0.25 < losses["ot"] < 0.4


def test_stochastic_samplers_are_refused_after_ot_training():
    process = FlowMatching(coupling="ot")
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    for sampler, options in (("ancestral", {}), ("ddim", {"eta": 1.0}), ("heun", {"churn": 1.0})):
        with pytest.raises(ValueError, match="needs the score of the Gaussian path"):
            sample(process.denoiser(zero), (4, 2), sampler=sampler, steps=2, **options)
    assert sample(process.denoiser(zero), (4, 2), sampler="heun", steps=2).x.shape == (4, 2)


def test_unknown_couplings_and_mismatched_batches_are_refused():
    assert check_coupling("ot") == "ot"
    with pytest.raises(ValueError, match="unknown coupling 'exact'; choose one of"):
        check_coupling("exact")
    with pytest.raises(ValueError, match="as many rows"):
        sinkhorn_kernel(torch.zeros(3, 2), torch.zeros(4, 2))
    noise = torch.randn(5, 2)
    assert couple("independent", torch.zeros(5, 2), noise, None) is noise


def test_config_checks_the_coupling():
    default = TrainConfig().validate()
    assert (default.coupling, default.sample_steps) == ("ot", 10)  # flow: straighter paths
    assert TrainConfig(sampler="heun").validate().sample_steps == 12  # another sampler's own
    assert TrainConfig(process="vp").validate().coupling == "independent"
    asked = TrainConfig(sampler="ancestral").validate()  # needs the score: independent pairs
    assert (asked.coupling, asked.sample_steps) == ("independent", 25)
    assert TrainConfig(coupling="independent").validate().sample_steps == 15
    assert build_process(TrainConfig(coupling="ot").validate()).coupling == "ot"
    with pytest.raises(ConfigError, match="applies to the flow process only"):
        TrainConfig(process="vp", coupling="ot").validate()
    with pytest.raises(ConfigError, match="needs the score of the Gaussian path"):
        TrainConfig(coupling="ot", sampler="ancestral").validate()
    with pytest.raises(ConfigError, match="coupling must be one of"):
        TrainConfig(coupling="sinkhorn").validate()
    TrainConfig(coupling="ot", batch_size=8192).validate()
    with pytest.raises(ConfigError, match="batch_size must be at most 8_192 with coupling"):
        TrainConfig(coupling="ot", batch_size=8193).validate()


def test_configs_saved_before_coupling_read_back_independent():
    """Runs saved before the setting existed drew independent noise (and now the default flow
    pairs by optimal transport): they read back as independent and resume as they were."""
    old = TrainConfig(coupling="independent").validate().to_dict()
    del old["coupling"]
    upgraded = upgrade_saved_config(old)
    assert upgraded["coupling"] == "independent" and "coupling" not in old
    assert TrainConfig.from_dict(upgraded).coupling == "independent"
    assert critical_differences(upgraded, TrainConfig.from_dict(upgraded).to_dict()) == []
    chosen = {**TrainConfig().validate().to_dict(), "coupling": "ot"}
    assert upgrade_saved_config(chosen) == chosen


def test_ot_training_resumes_bit_identically(tmp_path):
    small = dict(
        coupling="ot", train_steps=30, width=16, depth=1, batch_size=64, n_train=500,
        snapshot_every=15, snapshot_samples=50, checkpoint_every=0, warmup=5,
    )  # fmt: skip
    whole = Trainer(TrainConfig(**small))
    whole.run(progress=False)
    first = Trainer(TrainConfig(**small))
    first.run(progress=False, until=11)
    second = Trainer(TrainConfig(**small))
    second.load_state(load_checkpoint(save_checkpoint(tmp_path, first.state())))
    second.run(progress=False)
    for a, b in zip(whole.ema.parameters(), second.ema.parameters(), strict=True):
        assert torch.equal(a, b)
    plain = Trainer(TrainConfig(**{**small, "coupling": "independent"}))
    plain.run(progress=False)
    assert not torch.equal(next(plain.ema.parameters()), next(whole.ema.parameters()))


def one_euler_step_spread(coupling: str) -> float:
    """Train a small flow on 1-D data N(2, 0.5²) and return the standard deviation of its
    samples after one Euler step from t = 1 to 0.

    Between two Gaussians the optimal coupling is the line eps -> 2 + 0.5 eps, so with it
    every path is straight and one step lands on N(2, 0.5²). With independent pairs the
    marginal velocity at t = 1 is x - 2 (its paths bend), so one step sends every point to
    the mean: a spread of 0. (The entropic plan blurs the line a little, and 400 steps do
    not fit it exactly, so the tolerances below are loose; the two cases stay far apart.)"""
    from diffusion.models import TimeMLP

    process = FlowMatching(coupling=coupling)
    model = TimeMLP(1, width=32, depth=1, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(6)
    for _ in range(400):
        x0 = 2 + 0.5 * torch.randn(256, 1, generator=g)
        loss = process.loss(model, x0, generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x = sample(
            process.denoiser(model.eval()), (4000, 1), sampler="euler", steps=1, generator=g
        ).x
    assert abs(x.mean().item() - 2) < 0.2, x.mean()
    return x.std().item()


def test_ot_paths_are_straight_enough_for_one_euler_step():
    assert abs(one_euler_step_spread("ot") - 0.5) < 0.12  # measured 0.41
    assert one_euler_step_spread("independent") < 0.2  # measured 0.14


def test_the_oracle_keeps_the_field_of_independent_noise():
    """The exact model of a mixture is the Gaussian path's field whatever the coupling: the
    oracle of a coupled process is that of the same path with independent noise."""
    from diffusion.data import get_dataset
    from diffusion.measure.oracle import Oracle
    from diffusion.workflows.exact import exact_model

    mixture = get_dataset("gaussians").mixture
    model = exact_model(mixture, TrainConfig(dataset="gaussians"))
    assert model.config.coupling == "ot" and model.process.coupling == "independent"
    x, t = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), torch.rand(64)
    coupled = Oracle(mixture, FlowMatching(coupling="ot")).exact(x, t)
    independent = Oracle(mixture, FlowMatching(coupling="independent")).exact(x, t)
    torch.testing.assert_close(coupled.score, independent.score, rtol=0, atol=0)
