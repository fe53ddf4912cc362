"""Known answers for the time embeddings and the time-conditioned MLP."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion.models import GaussianFourierEmbedding, SinusoidalEmbedding, TimeMLP


def seeded_model(seed: int, **kwargs) -> TimeMLP:
    """A TimeMLP whose initial weights depend only on `seed` (global RNG state is restored)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TimeMLP(**kwargs)


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("embedding", ["sinusoidal", "fourier"])
def test_time_mlp_maps_batch_to_batch(dim: int, embedding: str) -> None:
    model = seeded_model(0, dim=dim, width=32, depth=2, embedding=embedding, time_dim=16)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(7, dim, generator=generator)
    t = torch.rand(7, generator=generator)
    out = model(x, t)
    assert out.shape == (7, dim)
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("T", [100, 1000])
def test_sinusoidal_embedding_of_a_step_is_sin_cos_of_the_step(T: int) -> None:
    dim = 32
    embed = SinusoidalEmbedding(dim, scale=T)
    k = torch.arange(0, T + 1, 7)
    t = k.double() / T  # float64 times so that t * T is the integer k
    out = embed(t)
    assert out.shape == (len(k), dim)
    half = dim // 2
    # Vaswani et al. 2017: frequencies 10000^(-j / half), j = 0..half-1.
    for row, step in zip(out, k.tolist(), strict=True):
        freqs = [10000 ** (-j / half) for j in range(half)]
        expected = [math.sin(step * f) for f in freqs] + [math.cos(step * f) for f in freqs]
        # The buffer holds float32 frequencies: the phase k f is off by up to
        # k * f * 2^-24 <= 1000 * 6e-8 = 6e-5 radians.
        assert row.tolist() == pytest.approx(expected, abs=1e-4)


def test_sinusoidal_embedding_rejects_odd_dims() -> None:
    with pytest.raises(ValueError, match="even"):
        SinusoidalEmbedding(7)
    with pytest.raises(ValueError, match="even"):
        GaussianFourierEmbedding(7)


def test_gaussian_fourier_embedding_is_seeded_and_saved() -> None:
    a, b = (
        GaussianFourierEmbedding(16, std=4.0, seed=3),
        GaussianFourierEmbedding(16, std=4.0, seed=3),
    )
    c = GaussianFourierEmbedding(16, std=4.0, seed=4)
    assert torch.equal(a.freqs, b.freqs) and not torch.equal(a.freqs, c.freqs)
    # The frequencies are N(0, std^2) draws from the seeded generator.
    expected = torch.randn(8, generator=torch.Generator().manual_seed(3)) * 4.0
    torch.testing.assert_close(a.freqs, expected, rtol=0, atol=0)
    # The features are sin / cos(2 pi t f).
    t = torch.tensor([0.0, 0.25, 0.9])
    args = 2 * math.pi * t[:, None] * expected[None, :]
    torch.testing.assert_close(a(t), torch.cat([args.sin(), args.cos()], dim=-1), rtol=0, atol=1e-5)
    # Stored in the state dict: loading it into a differently seeded module reproduces `a`.
    assert "freqs" in a.state_dict()
    c.load_state_dict(a.state_dict())
    torch.testing.assert_close(c(t), a(t), rtol=0, atol=0)
    # The model's state dict carries them too.
    model = seeded_model(0, dim=2, width=16, depth=1, embedding="fourier", time_dim=16)
    assert "embed.freqs" in model.state_dict()


def test_sinusoidal_frequencies_are_not_saved_but_rebuilt() -> None:
    # Fixed by (dim, max_period): not part of the state dict, identical on every construction.
    embed = SinusoidalEmbedding(16)
    assert "freqs" not in embed.state_dict()
    torch.testing.assert_close(embed.freqs, SinusoidalEmbedding(16).freqs, rtol=0, atol=0)


@pytest.mark.parametrize("embedding", ["sinusoidal", "fourier"])
def test_different_times_give_different_outputs(embedding: str) -> None:
    model = seeded_model(2, dim=2, width=32, depth=2, embedding=embedding, time_dim=16)
    x = torch.randn(1, 2, generator=torch.Generator().manual_seed(0)).expand(5, 2)
    t = torch.tensor([0.0, 0.001, 0.25, 0.5, 1.0])
    out = model(x, t)  # same x, different t
    distances = torch.cdist(out, out)
    off_diagonal = distances[~torch.eye(5, dtype=torch.bool)]
    assert off_diagonal.min().item() > 1e-4


def test_unknown_embedding_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown time embedding 'learned'"):
        TimeMLP(dim=2, embedding="learned")


def test_time_mlp_can_fit_a_tiny_regression() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=generator)
    t = torch.rand(8, generator=generator)
    y = torch.randn(8, 2, generator=generator)
    model = seeded_model(0, dim=2, width=64, depth=2, time_dim=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = torch.nn.functional.mse_loss(model(x, t), y).item()
    for _ in range(200):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x, t), y)
        loss.backward()
        optimizer.step()
    last = torch.nn.functional.mse_loss(model(x, t), y).item()
    assert last < first / 10


@pytest.mark.parametrize("embedding", ["sinusoidal", "fourier"])
def test_a_shared_time_is_embedded_once_with_the_same_result(embedding: str) -> None:
    model = seeded_model(0, dim=2, width=32, depth=3, embedding=embedding)
    x = torch.randn(257, 2, generator=torch.Generator().manual_seed(1))
    shared = torch.tensor(0.37).expand(257)  # what a sampler passes: one time, stride 0
    rows = []
    hook = model.time_mlp.register_forward_hook(lambda m, i, o: rows.append(o.shape[0]))
    fast = model(x, shared)
    full = model(x, torch.full((257,), 0.37))  # the same time written out row by row
    hook.remove()
    assert rows == [1, 257]  # the shared time went through the time layers once
    assert fast.shape == full.shape == (257, 2)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    # gradients flow through the shared path as through the full one (likelihood, diagnose)
    xg = x.clone().requires_grad_(True)
    model(xg, shared).sum().backward()
    xf = x.clone().requires_grad_(True)
    model(xf, torch.full((257,), 0.37)).sum().backward()
    torch.testing.assert_close(xg.grad, xf.grad, rtol=1e-5, atol=1e-6)


def test_seed_gives_the_weights_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a = TimeMLP(dim=2, width=16, depth=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # untouched
    b = TimeMLP(dim=2, width=16, depth=2, seed=3)
    c = TimeMLP(dim=2, width=16, depth=2, seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.input.weight, c.input.weight)
    # the same weights as seeding the global generator by hand, as nn.Linear alone needs
    with torch.random.fork_rng():
        torch.manual_seed(3)
        by_hand = TimeMLP(dim=2, width=16, depth=2)
    assert torch.equal(by_hand.output[2].weight, a.output[2].weight)
