"""The data order: every point once per epoch, a pure function of the seed and position."""

from __future__ import annotations

import pytest
import torch

from diffusion.training.batches import EpochBatches


def test_each_epoch_visits_every_point_once():
    batches = EpochBatches(n=10, batch_size=5, seed=3)
    first = torch.cat([batches.next(), batches.next()])
    second = torch.cat([batches.next(), batches.next()])
    assert sorted(first.tolist()) == list(range(10)) == sorted(second.tolist())
    assert not torch.equal(first, second)  # a fresh shuffle each epoch
    assert batches.position == 20


@pytest.mark.parametrize(("n", "batch_size"), [(7, 3), (5, 12), (1, 4)])
def test_batches_run_across_epochs_for_any_batch_size(n, batch_size):
    batches = EpochBatches(n=n, batch_size=batch_size, seed=0)
    stream = torch.cat([batches.next() for _ in range(6)])
    assert stream.shape == (6 * batch_size,)
    epochs = stream[: (len(stream) // n) * n].reshape(-1, n)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(n))


def test_the_order_is_fixed_by_seed_and_position():
    a = EpochBatches(n=50, batch_size=8, seed=1)
    expected = [a.next() for _ in range(20)]
    b = EpochBatches(n=50, batch_size=8, seed=1)
    b.position = 8 * 11  # jump to batch 11, as a resumed run does
    assert all(torch.equal(b.next(), x) for x in expected[11:])
    c = EpochBatches(n=50, batch_size=8, seed=2)
    assert not torch.equal(c.next(), expected[0])


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        EpochBatches(n=5, batch_size=0, seed=0)
