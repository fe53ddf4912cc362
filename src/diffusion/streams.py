"""Named random streams: every consumer of randomness gets its own generator from the run seed.

One place turns (seed, name, rank) into a seed, so nothing else does seed arithmetic. On rank
0 each stream keeps the seed runs have always used (seed * 16 + slot), so fixed-seed results
stay bit for bit what they were; other ranks (processes of a distributed run) get streams
derived by hashing, independent of rank 0's and of each other.
"""

from __future__ import annotations

import torch

from diffusion.utils import derive_seed, make_generator

#: every stream by name, with its slot (the order they were introduced; never reuse one).
STREAMS: dict[str, int] = {
    "data": 0,  # the training points drawn from a toy set
    "model": 1,  # the network's initial weights
    "train": 2,  # training times and noise
    "snapshot": 3,  # the prior draw of every frame of training.gif
    "eval": 4,  # the samples scored at the end of a run (and by `evaluate`)
    "reverse": 5,  # the particles of reverse.gif
    "metrics": 6,  # the fresh data and projections the metrics use
    "order": 7,  # the order in which training points are visited
    "nll.data": 8,  # the fresh data `diffusion nll` measures
    "nll.probes": 9,  # its Hutchinson probes and dequantisation noise
    "diagnose.curve": 10,  # the run seed of diagnose's quality-vs-NFE curve
    "diagnose.fresh": 11,  # fresh data for `diffusion diagnose`
    "diagnose.samples": 12,  # the model's samples it measures
    "diagnose.memoriser": 13,  # samples of the training set's exact oracle
    "diagnose.subset": 14,  # the training points kept for the reference
    "compare": 15,  # the run seed of the samples `diffusion compare` scores
}
#: streams added after the first 16 slots were taken: derived by hashing, on every rank.
HASHED_STREAMS = (
    "metrics.images",  # the real-image splits of the image metrics
    "nll.dequantise",  # the uniform noise `diffusion nll` adds to integer pixels
    "eval.labels",  # the classes a conditional run's evaluation samples
    "metrics.classes",  # real-image splits of per-class Fréchet ratios (guidance benchmark)
    "tune.prior",  # the prior draws `diffusion tune-grid` measures a grid's error on
)
#: slots per seed: seed * SLOTS + slot must stay distinct across seeds.
SLOTS = 16


def stream_seed(seed: int, name: str, *, rank: int = 0) -> int:
    """The seed of stream `name` of run seed `seed` on process `rank`."""
    if name not in STREAMS and name not in HASHED_STREAMS:
        known = ", ".join([*STREAMS, *HASHED_STREAMS])
        raise ValueError(f"unknown random stream {name!r}; known: {known}")
    if rank == 0 and name in STREAMS:
        return int(seed) * SLOTS + STREAMS[name]
    return derive_seed("stream", int(seed), name, int(rank))


def stream(
    seed: int, name: str, device: torch.device | str = "cpu", *, rank: int = 0
) -> torch.Generator:
    """A fresh generator on `device` for stream `name` of run seed `seed` on process `rank`."""
    return make_generator(stream_seed(seed, name, rank=rank), device)
