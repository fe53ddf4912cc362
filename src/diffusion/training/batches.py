"""The order in which training points are visited: a fresh permutation every epoch.

Each epoch's permutation is a pure function of (seed, epoch), so the whole order is fixed by
one number, `position` (points consumed so far). That number is all a checkpoint needs to
carry for training to continue with exactly the batches it would have seen. A batch that
runs past the end of an epoch continues into the next one, so any batch size works, even
one larger than the data set.
"""

from __future__ import annotations

import torch

from diffusion.utils import derive_seed, make_generator


class EpochBatches:
    """Batches of indices into n points: every point once per epoch, in shuffled order."""

    def __init__(
        self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got {n} and {batch_size}")
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self.position = 0  # points consumed since the start of training
        self._cached: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The visiting order of epoch `epoch` (drawn on the CPU, so it is the same on any device)."""
        if self._cached is None or self._cached[0] != epoch:
            generator = make_generator(derive_seed(self.seed, "epoch", epoch))
            order = torch.randperm(self.n, generator=generator).to(self.device)
            self._cached = (epoch, order)
        return self._cached[1]

    def next(self) -> torch.Tensor:
        """The next batch_size indices; advances `position`."""
        parts = []
        need = self.batch_size
        while need:
            epoch, offset = divmod(self.position, self.n)
            take = min(need, self.n - offset)
            parts.append(self.permutation(epoch)[offset : offset + take])
            self.position += take
            need -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)
