"""Networks and time embeddings."""

from diffusion.models.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding
from diffusion.models.mlp import TimeMLP

__all__ = ["GaussianFourierEmbedding", "SinusoidalEmbedding", "TimeMLP"]
