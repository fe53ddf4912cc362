"""Networks and time embeddings: a residual MLP for points, a U-Net for images."""

from diffusion.models.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding
from diffusion.models.mlp import TimeMLP
from diffusion.models.unet import UNet, parameter_count

__all__ = ["GaussianFourierEmbedding", "SinusoidalEmbedding", "TimeMLP", "UNet", "parameter_count"]
