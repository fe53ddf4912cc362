"""Poisson flow (PFGM++, Xu et al. 2023): data as charges in N + D dimensions.

PFGM++ places the N-dimensional data in an (N + D)-dimensional space and follows the
electric field of the data "charges". Its perturbation kernel at radius r is

    p_r(x | y) ∝ (||x - y||^2 + r^2)^(-(N + D) / 2)      (Xu et al. 2023, Eq. 4),

and with the alignment r = sigma sqrt(D) (Sec. 4) training and sampling reuse EDM's
sigma schedule, preconditioning and ODE dx/dsigma = (x - D(x, sigma)) / sigma. That kernel
is a multivariate Student-t with D degrees of freedom and scale sigma: with z ~ N(0, I_N)
and c ~ chi^2_D independent, x = y + sigma z / sqrt(c / D) has exactly this density (the
radius follows Xu et al.'s R = r sqrt(b / (1 - b)), b ~ Beta(N/2, D/2), and the direction is
uniform). So the noise is heavy-tailed for small D and becomes Gaussian as D -> infinity,
where PFGM++ is EDM (Sec. 4, Prop. 3.1): the `tests` measure that limit.

The marginals are not Gaussian, so only the deterministic ODE samplers apply (euler, heun
without churn, rk45, dpm-solver++, ddim with eta = 0); the Gaussian-posterior samplers are
refused by name.
"""

from __future__ import annotations

import torch

from diffusion.processes.edm import EDM


class PoissonFlow(EDM):
    """PFGM++ with augmentation dimension D, aligned to the EDM sigma schedule."""

    gaussian = False
    # Heun, 32 steps on EDM's grid (EDM's few-step default was measured on Gaussian paths only).
    default_sampler = "heun"
    default_sample_steps = 32
    default_sample_order = None
    other_sample_steps = None
    settings = {"augment_dim": "augment_dim", "sigma_min": "sigma_min", "sigma_max": "sigma_max"}  # noqa: RUF012

    def __init__(
        self,
        augment_dim: int = 128,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        prediction: str | None = None,
    ) -> None:
        super().__init__(sigma_min=sigma_min, sigma_max=sigma_max, prediction=prediction)
        if not (isinstance(augment_dim, int) and augment_dim >= 1):
            raise ValueError(f"augment_dim D must be a positive integer, got {augment_dim}")
        self.augment_dim = augment_dim

    def noise(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Student-t noise with D degrees of freedom: z / sqrt(chi^2_D / D) per sample."""
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        extra = torch.randn((shape[0], self.augment_dim), generator=generator, device=device,
                            dtype=dtype)  # fmt: skip
        scale = extra.pow(2).mean(dim=1).rsqrt()  # (B,) 1 / sqrt(chi^2_D / D)
        return z * scale.reshape(-1, *([1] * (len(shape) - 1)))
