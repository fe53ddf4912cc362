"""A compact time-conditioned U-Net for small images (Ronneberger et al. 2015; as used for
diffusion by Ho et al. 2020, Sec. 4 and App. B, and Song et al. 2021).

Shape: at each resolution `blocks` residual blocks, then a 2x downsampling; the way back
mirrors it with one more block per level, each taking the matching skip connection. A residual
block is GroupNorm -> SiLU -> 3x3 conv, the time embedding added per channel, GroupNorm ->
SiLU -> dropout -> 3x3 conv, plus the input (Ho et al. 2020, App. B). Self-attention (one
head per 32 channels, PyTorch's fused `scaled_dot_product_attention`) follows the blocks at
the resolutions listed in `attention`. The last convolution starts at zero, so the untrained
network predicts 0 everywhere (the mean of every target), which steadies the first steps.

The toolkit keeps examples flattened as (B, C*H*W) rows like points; the network accepts
those rows (or (B, C, H, W) images) and returns its prediction in the same layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.models.embeddings import ClassEmbedding, SinusoidalEmbedding, add_class
from diffusion.models.mlp import seeded


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the channels allow, else the largest divisor below it."""
    return max(g for g in range(1, 9) if channels % g == 0)


class ResBlock(nn.Module):
    """Residual block with the time embedding added between its two convolutions."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        h = h + self.time(temb)[:, :, None, None]  # the time, per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, as a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // 32)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, c / heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, c / heads)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps/x0/v network f(x_t, t) for images of shape (C, H, W).

    Args:
        shape: (C, H, W) of one image; H and W must be divisible by 2^(len(mults) - 1).
        channels: channels at the full resolution.
        mults: channel multiplier per resolution, from the full one down (one 2x
            downsampling between consecutive entries).
        blocks: residual blocks per resolution on the way down (one more on the way up).
        attention: the resolutions (side length in pixels) that get self-attention.
        dropout: dropout inside the residual blocks.
        embedding_scale: the sinusoidal time embedding sees t * embedding_scale.
        seed: draw the initial weights from this seed, leaving torch's global generator as
            it was; None: from the global generator.
        classes: 0 for an unconditional network; else the number of classes, each with a
            learned vector added to the time embedding (`ClassEmbedding`), and the network is
            called as ``model(x, t, label=labels)`` (label `classes`, or None: no class).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        channels: int = 32,
        mults: tuple[int, ...] = (1, 2),
        blocks: int = 1,
        attention: tuple[int, ...] = (4,),
        dropout: float = 0.0,
        embedding_scale: float = 1000.0,
        seed: int | None = None,
        classes: int = 0,
    ) -> None:
        super().__init__()
        check_unet_shape(shape, mults)
        self.shape = tuple(shape)
        self.dim = math.prod(shape)
        self.classes = classes
        with seeded(seed):
            self._build(channels, mults, blocks, attention, dropout, embedding_scale)
            # built last, so the other weights are those of the unconditional network
            self.label_embed = ClassEmbedding(classes, 4 * channels) if classes else None

    def _build(self, channels, mults, blocks, attention, dropout, embedding_scale) -> None:
        in_ch, side = self.shape[0], self.shape[1]
        time_dim = 4 * channels
        self.embed = SinusoidalEmbedding(channels, scale=embedding_scale)
        self.time_mlp = nn.Sequential(
            nn.Linear(channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.input = nn.Conv2d(in_ch, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [channels], channels
        for level, mult in enumerate(mults):
            for _ in range(blocks):
                self.down.append(ResBlock(ch, channels * mult, time_dim, dropout))
                ch = channels * mult
                if side in attention:
                    self.down.append(Attention(ch))
                skips.append(ch)
            if level < len(mults) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # 2x down
                skips.append(ch)
                side //= 2
        self.middle = nn.ModuleList(
            [
                ResBlock(ch, ch, time_dim, dropout),
                Attention(ch),
                ResBlock(ch, ch, time_dim, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), channels * mult, time_dim, dropout))
                ch = channels * mult
                if side in attention:
                    self.up.append(Attention(ch))
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))
                side *= 2
        self.output = nn.Sequential(
            nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, in_ch, 3, padding=1)
        )
        nn.init.zeros_(self.output[-1].weight)  # the untrained network predicts 0
        nn.init.zeros_(self.output[-1].bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        flat = x.dim() == 2
        h = x.reshape(x.shape[0], *self.shape)  # (B, C, H, W)
        if t.dim() == 1 and t.shape[0] > 1 and t.stride(0) == 0:
            t = t[:1]  # one time for the batch: embed it once (see TimeMLP.forward)
        temb = self.time_mlp(self.embed(t))  # (B, 4 * channels) or (1, 4 * channels)
        if temb.shape[0] == 1:
            temb = temb.expand(h.shape[0], -1)
        temb = add_class(temb, self.label_embed, label, h.shape[0])
        h = self.input(h)
        skips = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            if not isinstance(layer, Attention):
                skips.append(h)
            else:
                skips[-1] = h  # the skip leaves after attention
        for layer in self.middle:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), temb)
            else:
                h = layer(h)
        out = self.output(h)  # (B, C, H, W)
        return out.reshape(x.shape[0], -1) if flat else out


def check_unet_shape(shape: tuple[int, ...], mults: tuple[int, ...]) -> None:
    """ValueError unless `shape` is (C, H, W) with H and W divisible by the downsamplings."""
    if len(shape) != 3:
        raise ValueError(f"a U-Net needs images (C, H, W), got examples of shape {shape}")
    factor = 2 ** (len(mults) - 1)
    if shape[1] % factor or shape[2] % factor:
        raise ValueError(
            f"a U-Net with {len(mults)} resolutions halves the image {len(mults) - 1} times, so "
            f"its height and width must be divisible by {factor}; got {shape[1]} x {shape[2]}"
        )


def parameter_count(model: nn.Module) -> int:
    """The number of trainable numbers in `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
