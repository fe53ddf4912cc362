# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Exact ground truth on a Gaussian mixture
#
# On real data nobody knows the true score $\nabla \log p_t$, so a model's error can only
# be guessed from its samples. On a Gaussian mixture it is known exactly, at every noise
# level. This notebook uses that answer to:
#
# 1. compute the exact noised density, score and denoiser, and check them against each other;
# 2. sample with the exact score (a sampler with no learning error);
# 3. compare a trained model's likelihood (by the probability-flow ODE) with the exact one;
# 4. split the model's error into the part that learning left and the part the sampler adds,
#    and see at which noise levels the network is wrong.
#
# Theory: [the reverse process](../docs/theory/04-reverse-process.md) (Tweedie's formula, the
# probability-flow ODE) and [measuring](../docs/theory/07-measuring.md); the toolkit's reference
# is [exact ground truth](../docs/exact.md). The notebook runs in about a minute on 2 CPU cores
# (its last cell prints how long this run took).

# %%
import json
import math
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from diffusion.data import get_dataset
from diffusion.measure import diagnostics
from diffusion.measure.likelihood import exact_nll, pf_ode_nll
from diffusion.measure.metrics import compare_to_data
from diffusion.measure.oracle import Oracle
from diffusion.processes import VP
from diffusion.samplers import sample
from diffusion.training.config import TrainConfig
from diffusion.training.loop import train
from diffusion.training.trained import TrainedModel
from diffusion.workflows.exact import exact_model

SEED = 0
OUT = Path(tempfile.mkdtemp(prefix="diffusion-03-"))
print("outputs in", OUT)
NOTEBOOK_START = time.perf_counter()

# %% [markdown]
# ## The mixture
#
# $p_0(x) = \sum_k w_k\, \mathcal N(x; m_k, C_k)$, here the three components of
# `docs/examples/mixture.json`, written to a file and loaded as a user's data set.

# %%
MIXTURE = {  # the contents of docs/examples/mixture.json
    "weights": [0.5, 0.3, 0.2],
    "means": [[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]],
    "covariances": [
        [[0.3, 0.1], [0.1, 0.2]],
        [[0.05, 0.0], [0.0, 0.4]],
        [[0.2, -0.15], [-0.15, 0.2]],
    ],
}
mixture_path = OUT / "mixture.json"
mixture_path.write_text(json.dumps(MIXTURE))
dataset = get_dataset(mixture_path)
mixture = dataset.mixture  # a GaussianMixture: weights, means, covariances (float64)

# %% [markdown]
# ## The exact noised density, score and denoiser
#
# Under any Gaussian path $x_t = \alpha\, x_0 + \sigma\, \varepsilon$, each component stays
# Gaussian: a linear map of a Gaussian plus independent Gaussian noise. So the marginal is
# again a mixture, with $S_k = \alpha^2 C_k + \sigma^2 I$:
#
# $$
# p_t(x) = \sum_k w_k\, \mathcal N(x;\ \alpha m_k,\ S_k),
# \qquad
# \nabla \log p_t(x) = \sum_k r_k(x)\, S_k^{-1} (\alpha m_k - x),
# $$
#
# where $r_k(x) = w_k \mathcal N(x; \alpha m_k, S_k) / p_t(x)$ are the responsibilities. The
# optimal denoiser $\mathbb E[x_0 \mid x_t = x]$ is the responsibility-weighted Gaussian
# conditioning formula, $\sum_k r_k \big(m_k + \alpha C_k S_k^{-1}(x - \alpha m_k)\big)$.
# `Oracle(mixture, process)` computes all of them in float64. We use the VP process
# (Eq. 33 of Song et al. 2021) in the data's own coordinates.

# %%
process = VP()
oracle = Oracle(mixture, process)

# A grid over the data, and the exact log-density and score at four noise levels.
grid_size = 120
lin = torch.linspace(-4.5, 4, grid_size, dtype=torch.float64)
gy, gx = torch.meshgrid(lin, lin, indexing="ij")
grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # (G^2, 2)
arrows = grid.reshape(grid_size, grid_size, 2)[4::14, 4::14].reshape(-1, 2)  # a coarse grid

times = [0.02, 0.2, 0.35, 0.6]
fig, axes = plt.subplots(1, 4, figsize=(14, 3.8), sharex=True, sharey=True, layout="constrained")
for ax, t in zip(axes, times, strict=True):
    density = oracle.log_prob(grid, t).exp().reshape(grid_size, grid_size)
    ax.contourf(lin, lin, density, levels=20, cmap="Blues")
    exact = oracle.exact(arrows, t)
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = process.alpha(tt).item(), process.sigma(tt).item()
    step = sigma**2 * exact.score  # sigma^2 grad log p = alpha E[x0 | x] - x (Tweedie)
    ax.quiver(*arrows.T, *step.T, angles="xy", scale_units="xy", scale=2, width=0.004)
    ax.set_title(f"t = {t}: alpha = {alpha:.2f}, sigma = {sigma:.2f}", fontsize=9)
fig.suptitle(r"exact $p_t$ (colour) and $\sigma^2 \nabla \log p_t$ (arrows, half length)")
plt.show()

# %% [markdown]
# The arrows are $\sigma^2 \nabla \log p_t(x) = \alpha\, \mathbb E[x_0 \mid x] - x$: from
# each point to the (scaled) best guess of the clean point. That identity is **Tweedie's
# formula** (Efron 2011), $\mathbb E[x_0 \mid x_t] = (x_t + \sigma^2 \nabla \log p_t) /
# \alpha$; with $\varepsilon = (x_t - \alpha x_0)/\sigma$ it gives
# $\mathbb E[\varepsilon \mid x_t] = -\sigma \nabla \log p_t$, the reason that predicting
# the noise is learning the score (Vincent 2011). The oracle computes the score and the
# denoiser by separate formulas, so we can check both identities, and the score against
# automatic differentiation of $\log p_t$:

# %%
generator = torch.Generator().manual_seed(SEED)
x = 2 * torch.randn(1000, 2, generator=generator, dtype=torch.float64)
t = 0.3
tt = torch.tensor(t, dtype=torch.float64)
alpha, sigma = process.alpha(tt).item(), process.sigma(tt).item()
exact = oracle.exact(x, t)
x_grad = x.clone().requires_grad_(True)
(autograd_score,) = torch.autograd.grad(oracle.log_prob(x_grad, t).sum(), x_grad)
tweedie = (x + sigma**2 * exact.score) / alpha
print(f"score vs autograd of log p_t:  {(exact.score - autograd_score).abs().max():.1e}")
print(f"denoiser vs Tweedie's formula: {(exact.x0 - tweedie).abs().max():.1e}")
assert torch.allclose(exact.score, autograd_score, atol=1e-9), "the score should match autograd"
assert torch.allclose(exact.x0, tweedie, atol=1e-9), "the denoiser should match Tweedie's formula"

# %% [markdown]
# ## Sampling with the exact score
#
# `oracle.denoiser()` plugs into every sampler exactly where a network would. With no
# learning error, the samples are as good as the sampler: DPM-Solver++(2M) on a grid even in
# log-SNR (Lu et al. 2022) at 40 evaluations scores like fresh data (the "control").

# %%
N = 4000
result = sample(
    oracle.denoiser(),
    (N, 2),
    sampler="dpm-solver++",
    steps=40,
    grid="logsnr",
    generator=torch.Generator().manual_seed(SEED + 1),
)
control = dataset.sample(N, torch.Generator().manual_seed(SEED + 5))  # a perfect sampler
sw_ratios = []
for name, points in [
    (f"exact score, {result.nfe} NFE", result.x),
    ("control: fresh data", control),
]:
    sw = compare_to_data(points, dataset.sample, torch.Generator().manual_seed(SEED + 2))
    sw = sw.sliced_wasserstein
    sw_ratios.append(sw.ratio)
    print(f"{name:22s} SW {sw.value:.4f}  floor {sw.floor:.4f}  ratio {sw.ratio:.2f}")

# %%
# Check the claim above (fails if it goes stale): 40 evaluations score like fresh data.
exact_ratio, control_ratio = sw_ratios
assert result.nfe == 40, f"the text says 40 evaluations; got {result.nfe}"
assert exact_ratio < 1.25 * control_ratio, (  # 1.36 against 1.43
    f"the exact score should score like fresh data; got {exact_ratio:.2f} vs {control_ratio:.2f}"
)

# %% [markdown]
# ## A trained model beside the exact one
#
# Now train a network on draws from the mixture. We use EDM (Karras et al. 2022) for
# variety: another Gaussian path, with its own noise levels and preconditioning.
# `exact_model` builds the exact answer in the same (standardised) coordinates and with the
# same process as the trained model, so the two can be swapped in any function. 1,000
# training steps (half the default) keep the notebook short and leave an error worth
# looking at.

# %%
config = TrainConfig(
    dataset=str(mixture_path),
    process="edm",
    train_steps=1000,
    n_train=20_000,
    snapshot_every=1000,
    snapshot_samples=200,
    checkpoint_every=0,
    seed=SEED,
    device="cpu",
)
assert TrainConfig(process="edm").train_steps == 2000, "the text says 1,000 is half the default"
start = time.perf_counter()
trained_result = train(config, dataset=dataset, progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s")
model = TrainedModel.from_result(trained_result)  # the EMA network, ready to sample
reference = exact_model(mixture, config, model.normalizer, process=model.process)

# %% [markdown]
# ## Likelihood through the probability-flow ODE
#
# Every Gaussian path has a deterministic ODE $dx/dt = v(x, t) = \alpha'\, \mathbb E[x_0
# \mid x] + \sigma'\, \mathbb E[\varepsilon \mid x]$ whose solutions carry $p_0$ to $p_1$
# (Eq. 13 of Song et al. 2021). Along a solution the log-density changes by the divergence
# (the instantaneous change of variables, Theorem 1 of Chen et al. 2018):
#
# $$
# \log p_0(x_0) = \log p_1(x_1) + \int_0^1 \nabla \cdot v(x_t, t)\, dt .
# $$
#
# `pf_ode_nll` integrates $x$ and the integral together with an adaptive Dormand-Prince
# solver. Run with the exact denoiser it must reproduce the exact NLL (a check of the
# machinery); run with the network it gives the model's NLL. Since the test points come from
# $p_0$, the mean gap $\mathbb E_{p_0}[\log p_0 - \log p_\theta]$ is a Monte Carlo estimate
# of $\mathrm{KL}(p_0 \,\|\, p_\theta) \ge 0$. 300 test points and a tolerance of $10^{-4}$
# keep this to seconds (the cell prints how many).

# %%
start = time.perf_counter()
x_test = dataset.sample(300, torch.Generator().manual_seed(SEED + 3))
nll_exact = exact_nll(mixture, x_test)  # -log p_0 in closed form
nll_ode_exact = pf_ode_nll(reference, x_test, rtol=1e-4, atol=1e-4)
nll_model = pf_ode_nll(model, x_test, rtol=1e-4, atol=1e-4)
print(f"exact, closed form:    {nll_exact.mean():.4f} nats per point")
print(f"exact score, PF-ODE:   {nll_ode_exact.mean:.4f}  ({nll_ode_exact.evaluations} evaluations)")
print(f"trained model, PF-ODE: {nll_model.mean:.4f} ± {nll_model.stderr:.4f}")
gap = nll_model.nll - nll_exact
kl_error = gap.std().item() / math.sqrt(len(gap))
print(f"KL(data || model) estimate: {gap.mean():.4f} ± {kl_error:.4f} nats")
print(f"three likelihoods in {time.perf_counter() - start:.1f} s")
gap_exact = abs(nll_ode_exact.mean - nll_exact.mean().item())  # 3e-4
assert gap_exact < 0.01, f"the PF-ODE should reproduce the exact NLL; off by {gap_exact:.4f}"

fig, ax = plt.subplots(figsize=(4.2, 4), layout="constrained")
ax.scatter(nll_exact, nll_model.nll, s=6, alpha=0.6, label="trained model")
ax.scatter(nll_exact, nll_ode_exact.nll, s=6, alpha=0.6, label="exact score, PF-ODE")
lims = [nll_exact.min().item() - 0.2, nll_exact.max().item() + 0.2]
ax.plot(lims, lims, color="0.5", lw=0.8)
ax.set_xlabel("exact NLL (nats)")
ax.set_ylabel("PF-ODE NLL (nats)")
ax.set_title("per-point negative log-likelihood")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Where in time is the network wrong?
#
# The exact denoiser is the conditional mean, so it is the minimiser of the training loss:
# for any prediction $f$, the squared error splits (a Pythagorean identity for conditional
# expectations) into
#
# $$
# \mathbb E \|y - f(x_t)\|^2
# = \underbrace{\mathbb E \|y - \mathbb E[y \mid x_t]\|^2}_{\text{irreducible}}
# + \underbrace{\mathbb E \|\mathbb E[y \mid x_t] - f(x_t)\|^2}_{\text{what learning left}},
# $$
#
# with $y$ the training target. `diagnostics.error_by_time` measures both terms in bins of
# time, plotted against the log signal-to-noise ratio $\log(\alpha^2 / \sigma^2)$ (Kingma
# et al. 2021), together with the error of the network's noise estimate.

# %%
fresh = dataset.sample(2000, torch.Generator().manual_seed(SEED + 4))
errors = diagnostics.error_by_time(model, reference, fresh, bins=16, seed=SEED)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
left.plot(errors.log_snr, errors.model_loss, "o-", ms=3, label="model: training loss")
left.plot(errors.log_snr, errors.reference_loss, "o-", ms=3, label="exact: irreducible part")
left.set_yscale("log")
left.legend(fontsize=8)
left.set_title("training loss per time bin")
right.plot(errors.log_snr, errors.eps_error, "o-", ms=3)
right.set_yscale("log")
right.set_title(r"what learning left: $E\,|\hat\epsilon - \epsilon^*|^2 / D$")
for ax in (left, right):
    ax.set_xlabel(r"log SNR  (noise $\leftarrow$ $\rightarrow$ data)")
    ax.grid(alpha=0.3)
plt.show()
summary = diagnostics.summary(errors)  # the bin with the largest excess loss
print(
    f"largest excess loss at t = {summary['worst_t']:.2f}, log SNR {summary['worst_log_snr']:.1f}"
)

# %% [markdown]
# Near the middle of the log-SNR axis the model's loss sits on the irreducible curve: there
# it has learned the exact denoiser. The excess is at the ends, and most of all near the
# data (large log SNR), where EDM's training distribution, $\ln \sigma \sim \mathcal
# N(-1.2, 1.2^2)$ (Table 1 of Karras et al. 2022), rarely draws a time. A large noise error
# there costs little when sampling: a step near the data moves $x$ by $\hat\varepsilon$
# times a tiny change of $\sigma$.

# %%
# Check the claims above (fails if they go stale): the relative excess loss per time bin.
excess = [(m - r) / r for m, r in zip(errors.model_loss, errors.reference_loss, strict=True)]
middle = max(e for e, snr in zip(excess, errors.log_snr, strict=True) if abs(snr) < 5)  # 0.011
assert middle < 0.02, f"mid log SNR the model should match the exact loss; got {middle:.3f}"
assert min(excess[0], excess[-1]) > 2 * middle, "the excess should be at the ends"  # 0.078, 0.046
assert summary["worst_log_snr"] == max(errors.log_snr), "the worst bin should be nearest the data"
assert (model.process.p_mean, model.process.p_std) == (-1.2, 1.2), "EDM's training law changed"

# %% [markdown]
# ## Discretisation error against learning error
#
# `diagnostics.nfe_curve` samples the model and the exact reference with the same sampler,
# grid and prior draw at several step counts. The reference's curve is discretisation error
# alone; the gap above it is the network's ([notebook 2](02_samplers.py) does this for every
# sampler). `prior_mismatch` measures the last source of error, a prior that is not exactly
# the terminal marginal: $\mathrm{KL}(q_1 \,\|\, \mathcal N(0, \sigma(1)^2 I))$.

# %%
# Heun, named: its discretisation error is visible over more steps than that of edm's default
# (DEIS-3, at the floor from about 15 evaluations on).
curve = diagnostics.nfe_curve(
    model, reference, dataset, steps=[2, 4, 8, 16, 32], n=2000, sampler="heun"
)
fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
ax.plot(curve.nfe, curve.model, "o-", label="model: discretisation + learning")
ax.plot(curve.nfe, curve.reference, "o-", label="exact: discretisation only")
ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xticks(curve.nfe, [str(n) for n in curve.nfe])
ax.minorticks_off()
ax.set_xlabel("network evaluations (NFE)")
ax.set_ylabel("SW ratio to the data floor")
ax.set_title(f"{curve.sampler}, {curve.grid} grid", fontsize=10)
ax.legend(fontsize=8)
plt.show()
mismatch = diagnostics.prior_mismatch(reference, n=20_000, seed=SEED)
print(f"KL(q_1 || prior) = {mismatch.kl:.1e} ± {mismatch.stderr:.0e} nats")

# %% [markdown]
# With this model the two curves nearly coincide: Heun's discretisation error dominates up
# to ~30 evaluations, and beyond that both sit at the floor. The network's error is below
# what a sample metric on 2,000 points can resolve, while the likelihood above still
# measures it (a KL of hundredths of a nat, above zero by more than its standard error):
# likelihoods see finer errors than sample distances do.

# %%
# Check the claims above (fails if they go stale). Model / exact: 1.03 to 1.21.
assert curve.sampler == "heun"
for nfe, ratio_model, ratio_exact in zip(curve.nfe, curve.model, curve.reference, strict=True):
    assert 0.8 < ratio_model / ratio_exact < 1.4, f"the curves should coincide at {nfe} NFE"
    if nfe < 30:  # discretisation dominates: far above the floor (>= 4.2 at 15 NFE)
        assert ratio_exact > 2, f"{nfe} NFE should be far from the floor; got {ratio_exact:.2f}"
    else:  # at the floor (1.44 and 1.21 at 31 NFE, 1.17 and 1.06 at 63)
        assert max(ratio_model, ratio_exact) < 2, f"{nfe} NFE should be at the floor"
kl = gap.mean().item()  # 0.019 ± 0.0088
assert 0.005 < kl < 0.1, f"the KL should be hundredths of a nat; got {kl:.4f}"
assert kl > kl_error, f"the KL should exceed its standard error; got {kl:.4f} ± {kl_error:.4f}"

# %% [markdown]
# ## The density the model learned
#
# `diagnostics.density_grid` evaluates the model's PF-ODE density on a grid beside the exact
# density: where the network puts too much or too little mass is visible at a glance. A
# 28 × 28 grid and a loose tolerance keep this cheap.

# %%
limits = ((-4.5, 3.5), (-4.0, 3.5))
density = diagnostics.density_grid(model, mixture, limits, size=28, rtol=1e-3)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True, sharey=True, layout="constrained")
top = density.reference.max().item()
for ax, values, title in [
    (axes[0], density.reference, "exact density"),
    (axes[1], density.model, "model density (PF-ODE)"),
]:
    image = ax.pcolormesh(density.x, density.y, values, vmin=0, vmax=top, cmap="Blues")
    ax.set_title(title)
fig.colorbar(image, ax=axes[:2], shrink=0.8)
difference = density.model - density.reference
bound = difference.abs().max().item()
image = axes[2].pcolormesh(density.x, density.y, difference, vmin=-bound, vmax=bound, cmap="RdBu_r")
axes[2].set_title("model - exact")
fig.colorbar(image, ax=axes[2], shrink=0.8)
plt.show()

# %% [markdown]
# The command line does each of these for a run: `diffusion sample --oracle` samples with
# the exact score, `diffusion nll --run RUN` prints the PF-ODE likelihood beside the exact
# one, and `diffusion diagnose --run RUN` writes all the pictures above (and a memorisation
# test) into `RUN/diagnostics/`.
#
# Next: [notebook 4](04_flow_and_poisson.py) puts flow matching and Poisson flow side by
# side.

# %%
print(f"this run took {time.perf_counter() - NOTEBOOK_START:.0f} s")
