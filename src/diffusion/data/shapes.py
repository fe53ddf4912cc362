"""Procedural images: discs, squares, triangles and rings, drawn anti-aliased from a generator.

Each image is one shape of random centre, size, rotation and intensity on a black background.
A shape is described by its signed distance d(p) to the outline (negative inside), and a pixel
of side 1 is covered by about clamp(1/2 - d, 0, 1) of it: the usual distance-field
anti-aliasing, exact for a straight edge through the pixel centre and close elsewhere. Being
generated, fresh images are unlimited, so every floor measured on this set is exact.
"""

from __future__ import annotations

import math

import torch

from diffusion.data.errors import check_sample_size

#: the classes, in label order.
SHAPES = ("disc", "square", "triangle", "ring")
#: image sizes (pixels per side) a shapes set may have.
SIZES = (16, 32)


def _rotate(dx: torch.Tensor, dy: torch.Tensor, angle: torch.Tensor):
    """Coordinates relative to the centre, rotated by -angle into the shape's own frame."""
    c, s = torch.cos(angle), torch.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _signed_distance(kind: torch.Tensor, dx, dy, radius, angle) -> torch.Tensor:
    """Signed distance (pixels) of each pixel to each image's shape; all (n, H, W)."""
    u, v = _rotate(dx, dy, angle)
    r = torch.sqrt(dx * dx + dy * dy)
    disc = r - radius
    # A square whose corners lie on the circle of `radius` (half-side radius / sqrt(2)).
    half = radius / math.sqrt(2.0)
    qx, qy = u.abs() - half, v.abs() - half
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    square = outside + torch.minimum(torch.maximum(qx, qy), torch.zeros_like(qx))
    # An equilateral triangle with circumradius `radius`: the largest of its three edge
    # distances (exact near the edges, which is where anti-aliasing looks).
    inradius = radius / 2
    edges = [
        u * math.cos(a) + v * math.sin(a) - inradius
        for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)
    ]
    triangle = torch.maximum(torch.maximum(edges[0], edges[1]), edges[2])
    # A ring of outer radius `radius` and width a third of it.
    width = radius / 3
    ring = (r - (radius - width / 2)).abs() - width / 2
    stacked = torch.stack([disc, square, triangle, ring])  # (4, n, H, W)
    return stacked.gather(0, kind[None, :, None, None].expand(1, *disc.shape))[0]


def draw_shapes(
    n: int, generator: torch.Generator | None = None, size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """n random shape images and their labels (indices into SHAPES).

    Returns:
        images: (n, 1, size, size) float32 in [0, 1] (0 background, the shape's intensity
            between 0.5 and 1 inside);
        labels: (n,) int64.
    """
    n = check_sample_size(n)
    if size not in SIZES:
        raise ValueError(f"shapes come in sizes {', '.join(map(str, SIZES))}, got {size}")
    device = generator.device if generator is not None else torch.device("cpu")

    def uniform(low: float, high: float) -> torch.Tensor:
        draw = torch.rand((n, 1, 1), generator=generator, device=device)
        return low + (high - low) * draw

    kind = torch.randint(len(SHAPES), (n,), generator=generator, device=device)  # (n,)
    radius = uniform(0.18 * size, 0.4 * size)  # (n, 1, 1) pixels
    # The centre keeps the whole shape inside the image (radius bounds every shape).
    cx = radius + uniform(0, 1) * (size - 2 * radius)
    cy = radius + uniform(0, 1) * (size - 2 * radius)
    angle = uniform(0, 2 * math.pi)
    intensity = uniform(0.5, 1.0)
    centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5  # pixel centres
    dx = centres[None, None, :] - cx  # (n, 1, W) -> broadcast below to (n, H, W)
    dy = centres[None, :, None] - cy  # (n, H, 1)
    dx, dy = torch.broadcast_tensors(dx, dy)
    distance = _signed_distance(kind, dx, dy, radius, angle)  # (n, H, W)
    coverage = (0.5 - distance).clamp(0.0, 1.0)
    return (intensity * coverage)[:, None], kind  # (n, 1, H, W), (n,)
