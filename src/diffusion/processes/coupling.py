"""How training pairs data with noise: independently, or by minibatch optimal transport.

Flow matching trains on pairs (x0, noise) joined by straight lines. Drawn independently, the
lines of a batch cross, and the network must learn the average of many directions at each
point; its ODE paths bend. Pairing each batch's data with its noise by optimal transport
(Tong et al. 2024, "Improving and generalizing flow-based generative models with minibatch
optimal transport", OT-CFM; Pooladian et al. 2023, "Multisample flow matching") keeps the
marginals of x0 and of the noise, so the learned ODE still carries N(0, I) to the data, but
the lines of a batch cross far less: the regression target varies less and the ODE is
straighter, so few steps go far.

The plan here is entropic (Cuturi 2013, "Sinkhorn distances"): a fixed number of
over-relaxed Sinkhorn iterations on the squared-distance cost, then one noise row drawn for
each data row from its row of the plan, as Tong et al. do with their entropic
(Schrodinger-bridge) variant; an exact assignment of 512 points costs several times a
training step on a CPU. The iterations run on the device with no host reads.
"""

from __future__ import annotations

import torch

from diffusion.utils import check_choice

#: the couplings: "independent" draws noise for each row on its own; "ot" pairs by the plan.
COUPLINGS = ("independent", "ot")
#: entropic regularisation, as a fraction of the batch's mean squared distance.
OT_REG = 0.1
#: Sinkhorn iterations per batch, over-relaxed by OT_RELAXATION: on the normalised toy sets
#: the plan's column sums are then within 0.05% of uniform on average (plain Sinkhorn needs
#: about 20 iterations to reach 0.2%).
OT_ITERATIONS = 10
#: over-relaxation of the Sinkhorn updates (Thibault et al. 2021); 1 is plain Sinkhorn.
OT_RELAXATION = 1.5


def check_coupling(name: str) -> str:
    """Return `name` if it names a coupling, else raise ValueError listing them."""
    return check_choice("coupling", name, COUPLINGS)


def sinkhorn_kernel(
    x: torch.Tensor,
    y: torch.Tensor,
    reg: float = OT_REG,
    iterations: int = OT_ITERATIONS,
    dtype: torch.dtype = torch.float32,
    relaxation: float = OT_RELAXATION,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The entropic transport plan between the rows of x and y, uniform weights on both.

    The plan is diag(u) K diag(v) with K = exp(-C / eps), C the squared distances and eps =
    `reg` times their mean (Cuturi 2013: the entropic plan has this form, and Sinkhorn's
    alternating normalisation of rows and columns finds u and v). C is first shifted by a
    row and then a column minimum, a change the scalings absorb that leaves a 1 in every row
    and column of K, so no row or column of K underflows to zero in float32.

    Each update is over-relaxed, v <- v^(1 - w) (1 / K^T u)^w and likewise u, with w =
    `relaxation` (Thibault, Chizat, Dossal & Papadakis 2021, "Overrelaxed Sinkhorn-Knopp
    algorithm for regularized optimal transport"): the same fixed point, reached in fewer
    iterations for w in (1, 2); w = 1 is Sinkhorn's update.

    Args:
        x: (n, ...) points.
        y: (n, ...) points, as many as x.
        reg: eps as a fraction of the mean squared distance.
        iterations: Sinkhorn iterations (each updates the column scaling v, then the row
            scaling u).
        dtype: precision of the plan. float32 is enough at the default `reg`; much smaller
            ones need float64, or the scalings overflow.
        relaxation: w above.

    Returns:
        (K, u, v): the plan is u[:, None] * K * v[None, :]; its row sums are exactly 1/n and
        its column sums approach 1/n with the iterations.
    """
    kernel, v = _kernel_and_column_scaling(x, y, reg, iterations, dtype, relaxation)
    u = torch.mv(kernel, v).reciprocal_()  # a plain last step: the row sums exact
    return kernel, u / x.shape[0], v


def _kernel_and_column_scaling(
    x: torch.Tensor,
    y: torch.Tensor,
    reg: float,
    iterations: int,
    dtype: torch.dtype,
    relaxation: float,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K and v of `sinkhorn_kernel`: all a draw from the plan's rows needs (their
    normalisation supplies u). `groups` (n,): rows of x and y in different groups get
    infinite cost, so K is block-diagonal and each group gets its own plan in the same
    iterations."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have as many rows, got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    a, b = x.reshape(n, -1).to(dtype), y.reshape(n, -1).to(dtype)
    # |x_i - y_j|^2 = |x_i|^2 + |y_j|^2 - 2 x_i.y_j, in one matrix product; the work below is
    # done in place on this one (n, n) matrix.
    cost = torch.addmm((a * a).sum(1, keepdim=True) + (b * b).sum(1), a, b.T, alpha=-2)
    cost.clamp_min_(0)
    if groups is None:
        eps = cost.mean()
    else:  # every group pairs with its own rows only; eps from the distances within groups
        apart = groups[:, None] != groups[None, :]
        eps = cost.masked_fill(apart, 0).sum() / (~apart).sum()
        cost.masked_fill_(apart, float("inf"))
    eps = eps.mul_(reg).clamp_min_(torch.finfo(cost.dtype).tiny)
    cost.sub_(cost.amin(1, keepdim=True))
    cost.sub_(cost.amin(0, keepdim=True))
    kernel = cost.div_(eps.neg_()).exp_()
    # Iterated with marginals 1 (u = 1 / K v, v = 1 / K^T u); the plan with marginals 1/n is
    # the same with u divided by n.
    # Each iteration updates v, then u; the last u would go unused (a draw needs only v, and
    # sinkhorn_kernel takes a plain step instead), so it is not computed.
    u = torch.ones(n, device=kernel.device, dtype=dtype)
    v = u
    w = relaxation
    for i in range(iterations):
        if i:
            u = torch.mv(kernel, v).pow_(-w).mul_(u.pow(1 - w))
        v = torch.mv(kernel.T, u).pow_(-w).mul_(v.pow(1 - w))
    return kernel, v


def ot_pairing(
    x0: torch.Tensor,
    noise: torch.Tensor,
    *,
    reg: float = OT_REG,
    iterations: int = OT_ITERATIONS,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """For each row of x0, the index of a row of `noise` drawn from its row of the plan.

    Row i's draw follows the plan's conditional K[i, j] v[j] / sum_j K[i, j] v[j], by
    inverting its cumulative sum at one uniform per row. Each noise row is then chosen once
    on average (as the plan's column sums are 1/n, once the iterations have converged), so
    the paired noise stays N(0, I). With `groups` (n,), each row draws only among the rows
    of its own group (one plan per group).
    """
    kernel, v = _kernel_and_column_scaling(
        x0.detach(), noise, reg, iterations, dtype, OT_RELAXATION, groups
    )
    weights = torch.cumsum(kernel.mul_(v), dim=1)  # (n, n), rows increasing
    n = weights.shape[0]
    u = torch.rand(n, 1, generator=generator, device=weights.device, dtype=weights.dtype)
    index = torch.searchsorted(weights, u * weights[:, -1:]).squeeze(1)
    index = index.clamp_max(n - 1)  # a uniform of exactly 1 would fall past the end
    # A row whose weights overflowed or vanished (not seen at the default settings) keeps
    # its own noise row, as the independent coupling would; decided on the device.
    total = weights[:, -1]
    ok = torch.isfinite(total) & (total > 0)
    return torch.where(ok, index, torch.arange(n, device=index.device))


def couple(
    coupling: str,
    x0: torch.Tensor,
    noise: torch.Tensor,
    generator: torch.Generator | None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The noise rows to pair with x0's rows under `coupling` (noise itself if independent).

    `groups` (B,), e.g. class labels: pair only within each group. A conditional model samples
    each class from fresh Gaussian noise, so the noise paired with one class must itself be
    Gaussian: a plan over the whole batch would give each class the corner of noise nearest
    to it. Within a class, noise rows are drawn from the plan between that class's rows,
    whose column sums are uniform, so the class's noise stays N(0, I) (minibatch OT as in
    Tong et al. 2024, applied per class)."""
    if coupling == "independent":
        return noise
    with torch.no_grad():
        return noise[ot_pairing(x0, noise, generator=generator, groups=groups)]
