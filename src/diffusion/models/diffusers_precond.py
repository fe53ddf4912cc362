"""diffusers' EDM and flow-matching conventions around a ``UNet2DModel``, as networks of ours.

A diffusers U-Net trained with an EDM scheduler (``EDMEulerScheduler``,
``EDMDPMSolverMultistepScheduler``) or a flow-matching one (``FlowMatchEulerDiscreteScheduler``,
``FlowMatchHeunDiscreteScheduler``) expects its input, its timestep and its output in that
scheduler's units. These thin wrappers translate, so that our `EDM` and `FlowMatching`
processes see an ordinary network ``model(h, t)``, where h is our network input
(`GaussianProcess.model_input`: x_t scaled by 1 / sqrt(alpha^2 + sigma^2)) and t our time:

- EDM (Karras et al. 2022, Table 1, with diffusers' ``sigma_data``, 0.5 by default where
  our EDM standardises data to 1): the wrapper returns the denoised estimate
  D(x; sigma) = c_skip x + c_out F(c_in x; ln(sigma) / 4), which an `EDM` process with
  prediction "x0" takes as it is; c_out changes sign for ``v_prediction``.
- Flow matching (Lipman et al. 2023; Esser et al. 2024, the schedulers' convention): the path
  x_t = (1 - t) x0 + t eps is ours with t = diffusers' sigma; the U-Net is called at
  timestep 1000 t (``num_train_timesteps`` t) on the unscaled x_t and returns the velocity
  eps - x0, our "velocity" target.
"""

from __future__ import annotations

import torch

from diffusion.utils import expand_like


def _unet_call(unet: torch.nn.Module, x: torch.Tensor, shape, timestep) -> torch.Tensor:
    """The U-Net on flat (B, C*H*W) or image inputs, at one timestep per example."""
    h = x.reshape(x.shape[0], *shape)
    return unet(h, timestep.to(torch.float32)).sample.reshape(x.shape)


class _Wrapped(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module, process, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.unet, self.process, self.shape = unet, process, tuple(shape)

    def _unscaled(self, h: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, t per example) from our network input h = c_in x_t."""
        t = torch.as_tensor(t, device=h.device).reshape(-1).expand(h.shape[0])
        tt = t.to(torch.float64)
        radius = (self.process.alpha(tt) ** 2 + self.process.sigma(tt) ** 2).sqrt()
        scale = radius if self.process.scale_input else torch.ones_like(radius)
        return h * expand_like(scale.to(h.dtype), h), t

    @staticmethod
    def _no_label(label) -> None:
        if label is not None:
            raise ValueError("this diffusers U-Net is unconditional: it cannot take a class")


class DiffusersEDM(_Wrapped):
    """``model(h, t)`` -> D(x_t; sigma(t)) for a U-Net trained with diffusers' EDM schedulers
    (Karras et al. 2022, Eq. 7 and Table 1); `sign` is -1 for ``v_prediction``."""

    def __init__(self, unet, process, shape, *, sigma_data: float, sign: float = 1.0) -> None:
        super().__init__(unet, process, shape)
        self.sigma_data, self.sign = float(sigma_data), float(sign)

    def forward(self, h: torch.Tensor, t: torch.Tensor, label=None) -> torch.Tensor:
        self._no_label(label)
        x, t = self._unscaled(h, t)
        sigma = self.process.sigma(t.to(torch.float64))  # (B,)
        sd2 = self.sigma_data**2
        c_in = (sigma**2 + sd2).rsqrt()
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = self.sign * sigma * self.sigma_data * c_in
        noise_level = sigma.log() / 4  # c_noise
        out = _unet_call(self.unet, x * expand_like(c_in.to(x.dtype), x), self.shape, noise_level)
        return expand_like(c_skip.to(x.dtype), x) * x + expand_like(c_out.to(x.dtype), x) * out


class DiffusersFlow(_Wrapped):
    """``model(h, t)`` -> the velocity eps - x0 of a U-Net trained with diffusers'
    flow-matching schedulers, called at timestep `steps` t."""

    def __init__(self, unet, process, shape, *, steps: int) -> None:
        super().__init__(unet, process, shape)
        self.steps = int(steps)

    def forward(self, h: torch.Tensor, t: torch.Tensor, label=None) -> torch.Tensor:
        self._no_label(label)
        x, t = self._unscaled(h, t)
        return _unet_call(self.unet, x, self.shape, t * self.steps)
