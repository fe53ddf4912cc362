"""Every family trains on the 16 x 16 shapes with the U-Net, and every sampler that fits it
draws finite images from the result; the per-family choices for images hold."""

from __future__ import annotations

import pytest
import torch

from diffusion.processes import PROCESSES
from diffusion.samplers import SAMPLERS, check_sampler
from diffusion.training.build import largest_distance
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
from diffusion.training.trained import TrainedModel

TINY = dict(
    dataset="shapes", unet_channels=8, train_steps=3, batch_size=8, n_train=64,
    snapshot_every=10**6, snapshot_samples=2, checkpoint_every=0, diffusion_steps=100,
)  # fmt: skip


@pytest.fixture(scope="module", params=sorted(PROCESSES))
def trained(request) -> TrainedModel:
    config = TrainConfig(process=request.param, **TINY)
    result = Trainer(config).run(progress=False)
    return TrainedModel.from_result(result)


def test_every_sampler_that_fits_draws_finite_images(trained):
    ran = []
    for name in SAMPLERS:
        try:
            check_sampler(trained.process, name)
        except ValueError:
            continue  # refused by name (e.g. a Gaussian-only sampler on Poisson flow)
        options = {"langevin_steps": 2} if name == "langevin" else {}
        x = trained.sample(3, sampler=name, steps=2, generator=torch.Generator().manual_seed(0),
                           **options).x  # fmt: skip
        assert x.shape == (3, 256) and torch.isfinite(x).all(), name
        assert x.min() >= 0 and x.max() <= 1, name  # clipped to the shapes' pixel range
        ran.append(name)
    assert "heun" in ran or "ancestral" in ran or "langevin" in ran


@pytest.mark.parametrize("process", ["ve", "ncsn"])
def test_ve_and_ncsn_take_sigma_max_from_the_images(process):
    """Song & Ermon 2020, Technique 1: sigma_max = the largest distance between training
    examples (normalised), measured when left unset and recorded in the config."""
    config = TrainConfig(process=process, **TINY)
    assert config.sigma_max is None
    trainer = Trainer(config)
    expected = round(largest_distance(trainer.x_train), 2)
    assert config.sigma_max == expected and trainer.process.sigma_max == expected
    assert 5 < expected < 40  # 256 pixels in [-1, 1]: far above the points' default of 10
    given = TrainConfig(process=process, **{**TINY, "sigma_max": 7.0})
    assert Trainer(given).process.sigma_max == 7.0  # a value given is kept


def test_points_keep_the_default_sigma_max():
    config = TrainConfig(process="ve", train_steps=3, n_train=64, batch_size=8)
    assert Trainer(config).process.sigma_max == 10.0 and config.sigma_max is None


def test_poisson_flow_on_the_pixels_has_its_student_t_prior():
    """N = 256 pixel dimensions and D = 128 extra ones: the prior is sigma_max z / sqrt(c / D)
    with c ~ chi^2_D, so E|x|^2 = sigma_max^2 N D / (D - 2) (Xu et al. 2023, Eq. 4 and Sec. 4)."""
    trainer = Trainer(TrainConfig(process="poisson", **TINY))
    process = trainer.process
    x = process.prior((20_000, 256), generator=torch.Generator().manual_seed(0)).double()
    expected = process.sigma_max**2 * 256 * 128 / 126
    assert x.pow(2).sum(1).mean() == pytest.approx(expected, rel=0.01)
