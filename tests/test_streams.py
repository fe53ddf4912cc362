"""Named random streams: one helper turns (seed, name, rank) into a generator."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffusion.streams import SLOTS, STREAMS, stream, stream_seed


def test_rank_zero_keeps_the_seeds_runs_have_always_used():
    """Fixed-seed runs stay bit-identical: the training stream of seed 3 was 3 * 16 + 2."""
    assert stream_seed(3, "train") == 3 * 16 + 2
    assert stream_seed(0, "data") == 0 and stream_seed(0, "order") == 7
    a, b = stream(5, "eval"), torch.Generator().manual_seed(5 * 16 + 4)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_every_stream_has_its_own_slot():
    assert len(set(STREAMS.values())) == len(STREAMS)
    assert all(0 <= slot < SLOTS for slot in STREAMS.values())


def test_streams_differ_across_names_seeds_and_ranks():
    seeds = {
        stream_seed(seed, name, rank=rank)
        for seed, name, rank in itertools.product(range(4), STREAMS, range(3))
    }
    assert len(seeds) == 4 * len(STREAMS) * 3
    assert stream_seed(0, "train", rank=1) != stream_seed(0, "train", rank=2)
    assert stream_seed(7, "train", rank=1) == stream_seed(7, "train", rank=1)  # deterministic


def test_an_unknown_stream_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown random stream 'trian'"):
        stream_seed(0, "trian")
