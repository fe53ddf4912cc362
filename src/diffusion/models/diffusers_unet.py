"""Hugging Face diffusers' ``UNet2DModel`` behind this toolkit's network interface.

Two uses: training with diffusers' U-Net as the network (``--model diffusers-unet``, a DDPM
run that `diffusion export` can write as a diffusers pipeline), and opening a model saved by
diffusers (`diffusion.io.diffusers_in`). The wrapper is called like every network here,
``model(x, t, label=None)`` with our time t in [0, 1], and calls the U-Net at diffusers'
timestep t T - 1: diffusers' integer timestep k = 0..T-1 is our DDPM step k + 1.
diffusers is an optional dependency (``pip install 'diffusion-toolkit[diffusers]'``).
"""

from __future__ import annotations

import math

import torch


def import_unet2d():
    """diffusers' UNet2DModel class; ImportError with the install line when it is missing."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise ImportError("this needs the diffusers package: pip install "
                          "'diffusion-toolkit[diffusers]'") from None  # fmt: skip
    return UNet2DModel


class DiffusersUNet(torch.nn.Module):
    """``model(x, t, label=None)`` around a ``UNet2DModel``: x of shape (B, C*H*W) or
    (B, C, H, W) in [-1, 1], t our time in [0, 1] (one per example or one for all), label
    (B,) classes of a U-Net with ``num_class_embeds = classes + 1`` (index `classes`, or
    None: no class)."""

    def __init__(
        self, unet: torch.nn.Module, shape: tuple[int, int, int], steps: int, classes: int = 0
    ) -> None:
        super().__init__()
        self.unet, self.shape, self.steps, self.classes = unet, tuple(shape), steps, classes

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.shape)
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        timestep = t.to(torch.float32) * self.steps - 1  # our step k + 1 is their timestep k
        extra = {}
        if self.classes:
            if label is None:
                label = torch.full((x.shape[0],), self.classes, device=x.device)
            extra["class_labels"] = label.to(x.device, torch.long)
        elif label is not None:
            raise ValueError("this diffusers U-Net is unconditional: it cannot take a class")
        return self.unet(h, timestep, **extra).sample.reshape(x.shape)


def build_diffusers_unet(
    shape: tuple[int, ...],
    *,
    steps: int,
    channels: int,
    mults: tuple[int, ...],
    blocks: int,
    attention: tuple[int, ...],
    dropout: float = 0.0,
    classes: int = 0,
    seed: int | None = None,
) -> DiffusersUNet:
    """A new ``UNet2DModel`` for images of `shape` (C, H, W), with the layout our own U-Net
    takes from the same options: `channels` x `mults` per resolution, `blocks` residual
    blocks each, self-attention at the sides in `attention`; weights drawn from `seed`
    without touching torch's global generator."""
    if len(shape) != 3:
        raise ValueError(f"a U-Net needs images (C, H, W), got examples of shape {shape}")
    unet_class = import_unet2d()
    c, side = int(shape[0]), int(shape[1])
    widths = tuple(channels * m for m in mults)
    sides = [side // 2**i for i in range(len(mults))]
    down = tuple("AttnDownBlock2D" if s in attention else "DownBlock2D" for s in sides)
    up = tuple("AttnUpBlock2D" if s in attention else "UpBlock2D" for s in reversed(sides))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        unet = unet_class(
            sample_size=(int(shape[1]), int(shape[2])), in_channels=c, out_channels=c,
            layers_per_block=blocks, block_out_channels=widths, down_block_types=down,
            up_block_types=up, norm_num_groups=math.gcd(32, *widths), dropout=dropout,
            num_class_embeds=classes + 1 if classes else None,
        )  # fmt: skip
    return DiffusersUNet(unet, (c, int(shape[1]), int(shape[2])), steps, classes)
