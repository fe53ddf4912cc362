"""Image metrics: the Fréchet distance against closed forms, its floor, the memorisation
ratio of a copier and of fresh data, and the classifier cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion.data import get_dataset, held_out_split
from diffusion.data.images import load_digits
from diffusion.measure.images import (
    FeatureNet,
    accuracy,
    fit_feature_net,
    frechet_distance,
    frechet_ratio,
    memorisation_ratio,
)
from diffusion.workflows import image_metrics as cache
from diffusion.workflows.image_metrics import feature_net, image_metrics, to_unit_range


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    n, d = 200_000, 3
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    # b ~ N(m, diag(s^2)): FD = |m|^2 + sum (1 - s)^2 for commuting covariances.
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    s = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    b = m + s * torch.randn(n, d, generator=g, dtype=torch.float64)
    expected = float(m.pow(2).sum() + (1 - s).pow(2).sum())  # 5.25 + 1.25 = 6.5
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.01)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_with_rotated_covariances():
    """Non-commuting covariances: S_a = diag(4, 1), S_b = S_a rotated by 90 degrees =
    diag(1, 4); Tr (S_a S_b)^(1/2) = 2 + 2, so FD = 5 + 5 - 8 = 2."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    a = z * torch.tensor([2.0, 1.0], dtype=torch.float64)
    b = a.flip(1)
    assert frechet_distance(a, b) == pytest.approx(2.0, rel=0.02)


def test_the_frechet_floor_makes_real_images_score_about_one():
    digits = get_dataset("digits")
    net = FeatureNet(1, 10, seed=0).eval()  # random features suffice for this property
    images = to_unit_range(digits.points, digits)
    g = torch.Generator().manual_seed(0)
    fake_real = images[torch.randperm(images.shape[0], generator=g)[:600]]
    real = frechet_ratio(net, fake_real, images, torch.Generator().manual_seed(1))
    noise = frechet_ratio(net, torch.rand(600, 1, 8, 8) * 2 - 1, images,
                          torch.Generator().manual_seed(1))  # fmt: skip
    assert 0.5 < real.ratio < 2.0 and noise.ratio > 20
    assert real.n == noise.n == 600


def test_memorisation_ratio_of_a_copier_is_zero_and_of_fresh_data_about_one():
    digits = get_dataset("digits")
    train, held = digits.points, digits.held_out
    copier = memorisation_ratio(train[:200], train, held)
    fresh = memorisation_ratio(held, train, held)
    assert copier.ratio == 0.0 and copier.n == 200
    assert fresh.ratio == pytest.approx(1.0)


def test_the_digits_classifier_learns_the_digits_and_is_cached(classifier_cache, monkeypatch):
    """(The session's cache: the classifier is trained once for the whole suite.)"""
    monkeypatch.setattr(cache, "_MEMORY", {})
    digits = get_dataset("digits")
    net = feature_net(digits)
    held = to_unit_range(digits.held_out, digits)
    labels = load_digits().labels[held_out_split(1797)[1]]
    assert accuracy(net, held, labels) > 0.9
    files = list(classifier_cache.glob("features-*.safetensors"))
    assert len(files) >= 1
    monkeypatch.setattr(cache, "_MEMORY", {})  # a new process: read from disk, not trained
    monkeypatch.setattr(cache, "fit_feature_net", lambda *a, **k: pytest.fail("retrained"))
    again = feature_net(digits)
    first, second = net.state_dict(), again.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_damaged_cache_file_is_retrained_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "_MEMORY", {})
    monkeypatch.setattr(cache, "FIT_STEPS", 5)
    monkeypatch.setattr(cache, "fit_feature_net",
                        lambda images, labels, seed: fit_feature_net(images, labels, seed=seed,
                                                                     steps=5))  # fmt: skip
    digits = get_dataset("digits")
    feature_net(digits)
    (path,) = tmp_path.glob("features-*.safetensors")
    path.write_bytes(b"garbage")
    monkeypatch.setattr(cache, "_MEMORY", {})
    feature_net(digits)  # no error: trained again and rewritten
    assert path.read_bytes() != b"garbage"


def test_image_metrics_of_real_digits_are_at_their_floors():
    digits = get_dataset("digits")
    metrics = image_metrics(digits.held_out, digits, torch.Generator().manual_seed(0))
    assert set(metrics) == {"frechet", "memorisation"}
    assert metrics["memorisation"]["ratio"] == pytest.approx(1.0)
    assert metrics["frechet"]["ratio"] < 2.0


def test_samples_of_quantised_digits_are_scored_on_the_data_levels():
    digits = get_dataset("digits")
    assert digits.quantised
    jitter = (torch.rand(digits.held_out.shape, generator=torch.Generator().manual_seed(1))
              - 0.5) * 0.8  # fmt: skip
    jittered = (digits.held_out + jitter).clamp(*digits.value_range)
    exact = image_metrics(digits.held_out, digits, torch.Generator().manual_seed(0))
    scored = image_metrics(jittered, digits, torch.Generator().manual_seed(0))
    assert scored == exact  # within +-0.4 of a level: the same images once rounded
    as_continuous = dataclasses.replace(digits, quantised=False)
    unrounded = image_metrics(jittered, as_continuous, torch.Generator().manual_seed(0))
    assert unrounded["frechet"]["value"] != exact["frechet"]["value"]
