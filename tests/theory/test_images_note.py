"""Note 9: diffusion for images. Bits per dimension and uniform dequantisation against a
discrete distribution computed directly, the cost of attention counted in floating-point
operations, what a Fréchet distance sees, and the exact score of a finite training set
reproducing its images (memorisation)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusion.data.images import DIGITS_RANGE, load_digits
from diffusion.data.mixture import GaussianMixture
from diffusion.data.normalize import Normalizer
from diffusion.measure.images import frechet_distance, memorisation_ratio
from diffusion.measure.likelihood import exact_nll, pf_ode_nll
from diffusion.measure.metrics import energy_distance
from diffusion.measure.oracle import Oracle
from diffusion.models import TimeMLP, UNet
from diffusion.models.unet import Attention
from diffusion.processes import VP
from diffusion.samplers.grids import make_grid
from diffusion.samplers.registry import get_sampler
from diffusion.training.config import TrainConfig
from diffusion.workflows.exact import exact_model

F64 = torch.float64
LEVELS = 256  # 8-bit pixels, 0..255


def discretised_gaussian(mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, dequantised): P(k) = the N(mean, std^2) mass of the bin [k - 1/2, k + 1/2] for each
    level k = 0..255 (pixel units), and E_u[-log p(k + u)], u ~ U(-1/2, 1/2), by 20-point
    Gauss-Legendre quadrature: the continuous NLL of the dequantised level."""
    k = torch.arange(LEVELS, dtype=F64)
    law = torch.distributions.Normal(torch.tensor(mean, dtype=F64), torch.tensor(std, dtype=F64))
    mass = law.cdf(k + 0.5) - law.cdf(k - 0.5)
    nodes, weights = np.polynomial.legendre.leggauss(20)
    u, w = torch.tensor(nodes / 2), torch.tensor(weights / 2)  # on (-1/2, 1/2), summing to 1
    dequantised = -(law.log_prob(k[:, None] + u[None]) * w[None]).sum(1)
    return mass, dequantised


def test_bits_per_dim_of_the_model_coordinates_is_the_discrete_code_length():
    # A discrete law P on 256 levels, and the density that is P(k) on each bin [k - 1/2,
    # k + 1/2) in pixel units: the dequantisation bound is tight for it. In the toolkit's
    # coordinates z = (x - 127.5) / 127.5 that density is 127.5 P(k), so with nll_z = -log of
    # it, (nll_z / d + log 127.5) / log 2 = -log2 P(k) exactly: the discrete code length.
    # Break tried: log 128 (the constant of a [0, 1] map x / 256 followed by 2x - 1) in place
    # of log 127.5 is off by log2(128 / 127.5) = 0.00565 bits and fails.
    mass, _ = discretised_gaussian(120.0, 30.0)
    normalizer = Normalizer.for_range(0.0, 255.0, 1)
    assert float(normalizer.scale[0]) == 127.5  # the bin of width 1 is 2 / 255 wide in z
    levels = torch.arange(LEVELS, dtype=F64)[:, None]
    u = torch.rand(LEVELS, 1, generator=torch.Generator().manual_seed(0), dtype=F64) - 0.5
    z = normalizer.normalize(levels + u).double()
    bin_width_z = float(normalizer.normalize(torch.tensor([[1.0]]))[0, 0] + 1)  # 2 / 255
    assert abs(bin_width_z - 2 / 255) < 1e-7
    assert torch.equal(torch.round(z * 127.5 + 127.5), levels)  # each z falls in its own bin
    nll_z = -(mass / (2 / 255)).log()  # the piecewise-constant density in z, at z
    bits = (nll_z / 1 + math.log(127.5)) / math.log(2)
    torch.testing.assert_close(bits, -mass.log2(), rtol=0, atol=1e-12)


def test_uniform_dequantisation_bounds_the_discrete_nll_with_the_known_gap():
    # Jensen: -log P(k) = -log int p(k + u) du <= E_u[-log p(k + u)] at every level k, for any
    # density p. For a smooth p the gap is about Var_u(log p(k + u)) / 2 ~ (log p)'^2 / 24,
    # which averages to 1 / (24 s^2) for N(m, s^2): 1.04e-4 nats at s = 20 (measured to
    # 0.01%). A law about as narrow as a bin loses far more: 0.33 nats at s = 0.3.
    # Break tried: the density at the level itself, -log p(k), with no dequantisation, lies
    # below -log P(k) at the central levels (by 1.0e-4 nats at s = 20) and fails the bound.
    for std in (20.0, 0.3):
        mass, dequantised = discretised_gaussian(127.0, std)
        seen = mass > 1e-200
        gap = dequantised[seen] + mass[seen].log()  # continuous minus discrete NLL, per level
        assert gap.min() > -1e-12
        average = float((mass[seen] * gap).sum())
        if std == 20.0:
            assert abs(average - 1 / (24 * std**2)) < 0.01 / (24 * std**2)
        else:
            assert 0.3 < average < 0.35  # measured 0.327


def test_the_toolkit_bits_per_dim_adds_log_127_5_to_the_nll_of_its_coordinates():
    # pf_ode_nll reports nats in the data's units (the normaliser's log-Jacobian added), so
    # its bits_per_dim is (nll_z / d + log 127.5) / log 2 for 8-bit data mapped to [-1, 1].
    # Here the data law is a 2-D Gaussian mixture in pixel units and the model its exact score.
    # Break tried: dropping the log-Jacobian in pf_ode_nll shifts bits_per_dim by
    # log2(127.5) = 6.99 bits and fails.
    mixture = GaussianMixture.full(
        torch.tensor([0.6, 0.4]),
        torch.tensor([[100.0, 120.0], [170.0, 60.0]]),
        torch.tensor([[[400.0, 100.0], [100.0, 300.0]], [[200.0, -50.0], [-50.0, 250.0]]]),
    )
    normalizer = Normalizer.for_range(0.0, 255.0, 2)
    model = exact_model(mixture, TrainConfig(process="flow", dataset="gaussians").validate(),
                        normalizer)  # fmt: skip
    x = mixture.sample(32, torch.Generator().manual_seed(0)).double()
    result = pf_ode_nll(model, x)
    nll_z = exact_nll(mixture.affine(normalizer.shift, normalizer.scale), normalizer.normalize(x))
    expected = (float(nll_z.mean()) / 2 + math.log(127.5)) / math.log(2)
    assert abs(result.bits_per_dim - expected) < 1e-4  # measured 2e-6 bits: the solver error
    direct = float(exact_nll(mixture, x).mean()) / (2 * math.log(2))  # in pixel units
    assert abs(direct - expected) < 1e-9


def attention_flops(channels: int, side: int) -> int:
    """Floating-point operations of one `Attention` block on a (1, C, side, side) map."""
    block = Attention(channels)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        block(torch.zeros(1, channels, side, side))
    return counter.get_total_flops()


def test_attention_costs_the_square_of_the_pixels():
    # With N = H W pixels and C channels: the 1x1 projections to q, k, v and back cost
    # 2 N C (3C) + 2 N C C = 8 N C^2; the N x N scores q k^T and their product with v cost
    # 2 N^2 C each. So 4 C N^2 + 8 C^2 N, and the quadratic term wins once N > 2C: for C = 32,
    # beyond 8 x 8. Doubling the side multiplies the scores' cost by 16.
    # Break tried: 2 C N^2 (the scores alone, forgetting the product with v) fails at every
    # side.
    for channels in (32, 64):
        for side in (4, 8, 16):
            n = side * side
            assert attention_flops(channels, side) == 4 * channels * n**2 + 8 * channels**2 * n


def test_the_frechet_distance_is_the_closed_form_and_blind_beyond_two_moments():
    # For Gaussian features the Fréchet distance is the closed-form W2^2 between Gaussians;
    # here N(0, I) and N(m, diag(4, 1, 1, 1)) in 4-D: |m|^2 + (2 - 1)^2 = 1.25 + 1 = 2.25.
    # Features with the same mean and covariance as N(0, I) but a different law (the
    # corners of the cube, +-1 in every coordinate) score like a fresh Gaussian draw,
    # while the energy distance tells them apart.
    # Break tried: dropping the -2 Tr (S_a S_b)^(1/2) term (leaving a sum of variances) gives
    # 1.25 + 4 + 7 = 12.25 for the first pair and fails.
    generator = torch.Generator().manual_seed(0)
    n, d = 40_000, 4
    a = torch.randn(n, d, generator=generator, dtype=F64)
    b = torch.randn(n, d, generator=generator, dtype=F64) * torch.tensor([2.0, 1, 1, 1])
    b = b + torch.tensor([1.0, 0.5, 0.0, 0.0])
    assert abs(frechet_distance(a, b) - 2.25) < 0.05  # measured 2.256

    m = 2_000
    gauss = [torch.randn(m, d, generator=generator, dtype=F64) for _ in range(2)]
    cube = 2.0 * torch.randint(0, 2, (m, d), generator=generator).double() - 1
    floor = frechet_distance(gauss[0], gauss[1])
    assert frechet_distance(cube, gauss[0]) < 3 * floor  # measured 0.0065 for a floor of 0.0075
    energy_floor = energy_distance(gauss[1], gauss[0], unbiased=False)
    assert energy_distance(cube, gauss[0], unbiased=False) > 5 * energy_floor  # measured 24x


def test_the_exact_score_of_a_finite_set_reproduces_its_images():
    # The optimal denoiser of n training images (Oracle.points: the empirical law, each image
    # a zero-variance component) driven through the probability-flow ODE lands every sample
    # on a training image, each with probability 1/n (the empirical law is what it samples),
    # and the posterior weights over the images collapse from nearly uniform at t = 1 to one
    # image. 10 digits in [-1, 1]^64, 2,000 samples, DPM-Solver++ on 20 log-SNR steps.
    # Break tried: the oracle of a mixture with std 0.5 at the same 10 images (a smoothed
    # empirical law) gives samples 4.05 from their nearest image on average (0.5 sqrt(64) = 4
    # expected), and fails.
    digits = load_digits().pixels.flatten(1).double()  # (1797, 64), grey levels 0..16
    normalizer = Normalizer.for_range(*DIGITS_RANGE, 64)
    images = normalizer.normalize(digits).double()
    train, held_out = images[:10], images[1000:1400]
    process, n = VP(), 2000
    denoiser = Oracle.points(train, process).denoiser()
    generator = torch.Generator().manual_seed(0)
    x = process.prior((n, 64), generator=generator).double()
    largest_weight = []

    def weights(step) -> None:  # mean over samples of the largest posterior weight at time s
        s = torch.tensor(step.s, dtype=F64)
        alpha, sigma = process.alpha(s), process.sigma(s).clamp_min(1e-12)
        logits = -0.5 * torch.cdist(step.x, alpha * train) ** 2 / sigma**2  # (n, 10)
        largest_weight.append(float(torch.softmax(logits, 1).amax(1).mean()))

    samples = get_sampler("dpm-solver++")(denoiser, x, make_grid(process, 20, "logsnr").double(),
                                          generator=generator, callback=weights)  # fmt: skip
    distances = torch.cdist(samples, train)  # (n, 10)
    assert float(distances.amin(1).max()) < 1e-6  # measured 0: the images themselves
    spacing = torch.cdist(train, train).fill_diagonal_(math.inf).min()
    assert spacing > 3.0  # while two training images are at least 3.9 apart
    counts = torch.bincount(distances.argmin(1), minlength=10).double()
    chi2 = float(((counts - n / 10) ** 2 / (n / 10)).sum())
    assert chi2 < 27.9  # the 99.9% point of chi-square with 9 degrees of freedom; measured 15
    assert largest_weight[0] < 0.15 and largest_weight[-2] > 0.999  # measured 0.109 -> 1.000
    assert memorisation_ratio(samples.float(), train.float(), held_out.float()).ratio < 1e-6


def test_the_unet_has_the_same_weights_at_every_image_size():
    # Convolutions share their weights over positions, so the same U-Net (channels, levels,
    # attention at its lowest resolution) has the same parameters for 8 x 8, 16 x 16 or
    # 32 x 32 images, while an MLP on the flattened image grows with the number of pixels.
    # Break tried: counting the MLP in place of the U-Net fails (its count grows with d).
    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    unets = [count(UNet((1, side, side), channels=16, mults=(1, 2), attention=(side // 2,)))
             for side in (8, 16, 32)]  # fmt: skip
    assert unets[0] == unets[1] == unets[2] == 176_849  # the digits U-Net of docs/images.md
    mlps = [count(TimeMLP(side * side)) for side in (8, 16, 32)]
    assert mlps[0] < mlps[1] < mlps[2]
