"""The U-Net: layouts, zero-initialised output, seeded weights, shared times, shape checks."""

from __future__ import annotations

import pytest
import torch

from diffusion.models.unet import Attention, UNet, parameter_count


def _trained_a_little(net: UNet) -> UNet:
    """The net after one optimiser step, so that its output layer is no longer zero."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(4, net.dim, generator=torch.Generator().manual_seed(0))
    net(x, torch.rand(4)).sub(x).pow(2).mean().backward()
    opt.step()
    return net


def test_the_untrained_unet_predicts_zero_and_the_same_seed_gives_the_same_weights():
    net = UNet((1, 8, 8), channels=8, seed=0)
    x = torch.randn(5, 64)
    assert torch.equal(net(x, torch.rand(5)), torch.zeros(5, 64))
    again = UNet((1, 8, 8), channels=8, seed=0)
    other = UNet((1, 8, 8), channels=8, seed=1)
    a, b, c = (dict(m.state_dict()) for m in (net, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_rows_and_images_give_the_same_prediction_in_their_own_layout():
    net = _trained_a_little(UNet((3, 8, 8), channels=8, attention=(4,), seed=0)).eval()
    x = torch.randn(6, 3, 8, 8)
    t = torch.rand(6)
    out_image = net(x, t)
    out_rows = net(x.reshape(6, -1), t)
    assert out_image.shape == (6, 3, 8, 8) and out_rows.shape == (6, 192)
    assert torch.allclose(out_image.reshape(6, -1), out_rows, atol=1e-6)
    assert out_rows.abs().max() > 0  # trained: no longer the zero output


def test_one_time_for_the_batch_gives_what_a_time_per_example_gives():
    net = _trained_a_little(UNet((1, 8, 8), channels=8, seed=0)).eval()
    x = torch.randn(7, 64)
    shared = torch.tensor(0.3).expand(7)  # stride 0, as a sampler passes it
    assert torch.allclose(net(x, shared), net(x, torch.full((7,), 0.3)), atol=1e-6)


def test_the_time_changes_the_prediction():
    net = _trained_a_little(UNet((1, 8, 8), channels=8, seed=0)).eval()
    x = torch.randn(3, 64)
    assert not torch.allclose(net(x, torch.full((3,), 0.1)), net(x, torch.full((3,), 0.9)))


def test_attention_sits_at_the_requested_sides_and_grows_the_count():
    plain = UNet((1, 16, 16), channels=8, mults=(1, 2, 2), attention=(), seed=0)
    attended = UNet((1, 16, 16), channels=8, mults=(1, 2, 2), attention=(8, 4), seed=0)
    count = sum(isinstance(m, Attention) for m in attended.modules())
    # middle: 1; the 8 and 4 levels: (1 block down + 2 up) each = 6.
    assert count == 1 + 6
    assert sum(isinstance(m, Attention) for m in plain.modules()) == 1  # the middle only
    assert parameter_count(attended) > parameter_count(plain)


def test_skip_connections_carry_fine_detail():
    """Each output pixel depends on the input pixel at the same place (a U-Net's skips)."""
    net = _trained_a_little(UNet((1, 8, 8), channels=8, mults=(1, 2), seed=0)).eval()
    x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    net(x, torch.tensor([0.5]))[0, 0, 2, 5].backward()
    assert x.grad[0, 0, 2, 5].abs() > 0


def test_parameter_count_of_the_default_digits_network():
    # channels 32, mults (1, 2), one block, attention at 4: a known architecture, a known count.
    net = UNet((1, 8, 8), channels=32, mults=(1, 2), blocks=1, attention=(4,), seed=0)
    assert parameter_count(net) == sum(p.numel() for p in net.parameters())
    assert 5e5 < parameter_count(net) < 1e6


@pytest.mark.parametrize(
    ("shape", "mults", "message"),
    [((64,), (1, 2), "needs images"), ((1, 6, 6), (1, 2, 2), "divisible by 4")],
)
def test_shapes_the_unet_cannot_take_are_refused(shape, mults, message):
    with pytest.raises(ValueError, match=message):
        UNet(shape, mults=mults)
