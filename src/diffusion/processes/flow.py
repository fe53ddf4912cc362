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

    default_prediction = "velocity"
    # Few-step default (docs/performance.md, "Few-step defaults"): UniPC-2 on the uniform grid.
    # With independent pairs, 15 steps reached the accurate solve's SW ratio (within 10%) with
    # the exact score of a random mixture; with coupling ot, the straighter paths reached it at
    # 5 steps on the swiss roll, and 10 steps on digits scored the Fréchet ratio of 100 within
    # 1%. Heun took 25 and 12 steps (49 and 23 evaluations); any other sampler keeps those.
    default_sampler = "unipc"
    default_sample_steps = 15
    default_sample_order = 2
    other_sample_steps = 25
    ot_sample_steps = 10
    #: Heun steps with coupling ot: its straighter paths gave the SW ratio of 25 steps (49 NFE)
    #: at 12 (23 NFE) within 0.02 on seeds 0-2 (docs/performance.md).
    ot_other_sample_steps = 12
    # The drift alpha'/alpha = -1 / (1 - t) is infinite at t = 1, where alpha = 0.
    finite_drift = False
    # On the swiss roll ot lowered the SW ratio on 18 of 20 seeds (docs/performance.md).
    couplings = ("ot", "independent")
    settings = {"train_times": "train_times"}  # noqa: RUF012
    t_min = 0.0  # the velocity target eps - x0 is finite at every t

    def __init__(
        self,
        prediction: str | None = None,
        train_times: str = "uniform",
        coupling: str = "ot",
    ) -> None:
        super().__init__(prediction, train_times)
        self.coupling = check_coupling(coupling)
        if self.coupling == "ot":
            self.default_sample_steps = self.ot_sample_steps
            self.other_sample_steps = self.ot_other_sample_steps

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - torch.as_tensor(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t).clone()

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(torch.as_tensor(t))

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(t))
