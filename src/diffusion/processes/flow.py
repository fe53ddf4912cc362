"""Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023).

The linear path x_t = (1 - t) x0 + t eps, a Gaussian path with alpha = 1 - t and sigma = t.
The network regresses the conditional velocity dx_t/dt = eps - x0 (Lipman et al. 2023,
Eq. 23 with sigma_min = 0; Liu et al. 2023, Eq. 1), whose minimiser is the marginal velocity
field: the probability-flow ODE of this path. Sampling integrates it from t = 1 to 0.

With coupling "ot" each batch's noise is paired with its data by minibatch optimal transport
(`diffusion.processes.coupling`); the ODE still carries N(0, I) to the data, but x_t given x0
is no longer Gaussian, so samplers that need the score are refused.
"""

from __future__ import annotations

import torch

from diffusion.processes.continuous import ContinuousProcess
from diffusion.processes.coupling import check_coupling


class FlowMatching(ContinuousProcess):
    """Conditional flow matching on the straight path between data and noise."""

    default_sampler = "heun"
    default_steps = 25
    t_min = 0.0  # the velocity target eps - x0 is finite at every t

    def __init__(
        self,
        prediction: str = "velocity",
        train_times: str = "uniform",
        coupling: str = "independent",
    ) -> None:
        super().__init__(prediction, train_times)
        self.coupling = check_coupling(coupling)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - torch.as_tensor(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t).clone()

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(torch.as_tensor(t))

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(t))
