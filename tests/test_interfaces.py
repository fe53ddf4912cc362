"""Interfaces ready for images and conditioning: `model(x_t, t, **cond)` everywhere, data sets
that know the shape of one example, and metrics that take any example shape."""

from __future__ import annotations

import pytest
import torch

from diffusion.data import Dataset, get_dataset
from diffusion.measure.metrics import energy_distance, mmd, sliced_wasserstein
from diffusion.processes import DDPM, FlowMatching
from diffusion.samplers import sample


class Recorder(torch.nn.Module):
    """Returns zeros, remembering the keyword arguments of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        self.calls.append(cond)
        return 0 * self.scale * x


@pytest.mark.parametrize("process", [DDPM(50), FlowMatching(coupling="independent")])
def test_cond_reaches_the_network_in_the_loss_the_denoiser_and_every_step(process):
    labels = torch.tensor([3, 1, 4, 1])
    model = Recorder()
    process.loss(model, torch.randn(4, 2), cond={"labels": labels})
    assert len(model.calls) == 1 and torch.equal(model.calls[0]["labels"], labels)
    model.calls.clear()
    result = sample(process.denoiser(model, labels=labels), (4, 2), sampler="ddim", steps=5)
    assert result.nfe == 5 and len(model.calls) == 5
    assert all(torch.equal(call["labels"], labels) for call in model.calls)
    model.calls.clear()
    process.loss(model, torch.randn(4, 2))  # no conditioning: no keyword arguments
    assert model.calls == [{}]


def test_a_data_set_knows_the_shape_of_one_example():
    assert get_dataset("moons").shape == (2,)
    images = Dataset(name="tiny", dim=16, sample=lambda n, g=None: torch.zeros(n, 1, 4, 4),
                     shape=(1, 4, 4))  # fmt: skip
    assert images.shape == (1, 4, 4) and images.labels is None
    with pytest.raises(ValueError, match=r"shape \(1, 4, 5\) has 20 entries"):
        Dataset(name="bad", dim=16, sample=images.sample, shape=(1, 4, 5))
    with pytest.raises(ValueError, match="one entry per row"):
        Dataset(name="bad", dim=2, sample=images.sample, points=torch.zeros(5, 2),
                labels=torch.zeros(4, dtype=torch.long))  # fmt: skip


@pytest.mark.parametrize("metric", [sliced_wasserstein, mmd, energy_distance])
def test_metrics_of_images_are_those_of_their_flattened_pixels(metric):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 1, 4, 4, generator=g), torch.randn(150, 1, 4, 4, generator=g) + 0.3
    flat = metric(
        x.reshape(200, 16), y.reshape(150, 16), generator=torch.Generator().manual_seed(1)
    )
    image = metric(x, y, generator=torch.Generator().manual_seed(1))
    assert image == pytest.approx(flat, rel=1e-12) and image > 0
