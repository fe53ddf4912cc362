"""Time embeddings: the network's view of t in [0, 1]."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer position encoding of a step index (Vaswani et al. 2017; Ho et al. 2020).

    Continuous t in [0, 1] is mapped to the index ``t * scale`` first, so a DDPM with
    T = 1000 steps sees exactly the embedding of its step number.
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim = dim
        self.scale = scale
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (t * self.scale)[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, dim)


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of continuous time (Tancik et al. 2020; Song et al. 2021, App. C).

    Frequencies are fixed draws from N(0, std^2), stored in the state dict so a saved model
    reloads with the same features.
    """

    def __init__(self, dim: int, std: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim = dim
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=generator) * std)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = 2 * math.pi * t[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, dim)


EMBEDDINGS = {"sinusoidal": SinusoidalEmbedding, "fourier": GaussianFourierEmbedding}


class ClassEmbedding(nn.Module):
    """A learned vector per class, plus one for "no class" (index `classes`), added to the time
    embedding of a conditional network (Ho & Salimans 2022, classifier-free guidance: one
    network learns p(x | c) and, with the label dropped, p(x)).

    The vectors start at zero, so an untrained conditional network is its unconditional one.
    """

    def __init__(self, classes: int, dim: int) -> None:
        super().__init__()
        if classes < 1:
            raise ValueError(f"a conditional network needs at least one class, got {classes}")
        self.classes = classes
        self.table = nn.Embedding(classes + 1, dim)
        nn.init.zeros_(self.table.weight)

    def forward(self, label: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(B, dim) vectors for labels (B,) in 0..classes, `classes` meaning none; None: none
        for all `batch` rows."""
        if label is None:
            label = torch.full((batch,), self.classes, device=self.table.weight.device)
        if label.shape != (batch,):
            raise ValueError(f"labels of shape {tuple(label.shape)} for a batch of {batch}")
        return self.table(label.long())


def add_class(
    temb: torch.Tensor, embedding: ClassEmbedding | None, label: torch.Tensor | None, batch: int
) -> torch.Tensor:
    """The time embedding (B or 1, dim) with the class vectors added, (B, dim); a network
    without classes refuses labels."""
    if embedding is None:
        if label is not None:
            raise ValueError("this network is not conditional: it takes no labels")
        return temb
    return temb + embedding(label, batch)
