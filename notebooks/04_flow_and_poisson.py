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
# # 4. Flow matching and Poisson flow, side by side
#
# Two families that reach the same goal as DDPM by other pictures:
#
# - **Flow matching** (Lipman et al. 2023; rectified flow, Liu et al. 2023) draws a straight
#   line from each data point to a noise point and learns the velocity along it.
# - **Poisson flow** (PFGM++, Xu et al. 2023) treats the data as electric charges and
#   follows the field lines of their electric field, out to a far-away sphere and back.
#
# We look at each picture, train both on the same swiss roll, watch their reverse
# processes, and measure them. Theory, with the derivations:
# [flow matching and Poisson flow](../docs/theory/06-flow-and-poisson.md). The notebook runs in
# about a minute on 2 CPU cores (its last cell prints how long this run took).

# %%
import base64
import itertools
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, display

from diffusion.data import get_dataset
from diffusion.processes import FlowMatching, PoissonFlow
from diffusion.training.config import TrainConfig
from diffusion.training.loop import train
from diffusion.training.trained import TrainedModel
from diffusion.viz.gif import reverse_gif
from diffusion.viz.plots import compute_limits
from diffusion.workflows.run import evaluate, reverse_trajectory

SEED = 0
OUT = Path(tempfile.mkdtemp(prefix="diffusion-04-"))
print("outputs in", OUT)
NOTEBOOK_START = time.perf_counter()


def show_gif(path: Path) -> None:
    """Show a GIF inline as a data URL (the site's notebook renderer drops GIF images)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    display(HTML(f'<img src="data:image/gif;base64,{data}" alt="{Path(path).name}">'))


# %% [markdown]
# ## Flow matching: a straight path
#
# The path is the straight line between a data point and a noise point,
#
# $$
# x_t = (1 - t)\, x_0 + t\, \varepsilon, \qquad
# \frac{d x_t}{dt} = \varepsilon - x_0 ,
# $$
#
# a Gaussian path with $\alpha = 1 - t$ and $\sigma = t$. The network $u_\theta(x_t, t)$
# regresses the conditional velocity $\varepsilon - x_0$ (Eq. 23 of Lipman et al. 2023 with
# $\sigma_{\min} = 0$; Eq. 1 of Liu et al. 2023). The minimiser is the *marginal* velocity
# $\mathbb E[\varepsilon - x_0 \mid x_t]$, whose ODE carries noise to data with the right
# marginals at every $t$. The individual lines cross; the marginal flow cannot, so its paths
# bend where lines from different data points meet.

# %%
flow = FlowMatching()
generator = torch.Generator().manual_seed(SEED)
x0 = get_dataset("swissroll").sample(40, generator)  # (40, 2) data points
noise = torch.randn(x0.shape, generator=generator)  # (40, 2) their noise partners
t = torch.linspace(0, 1, 21)
lines = [flow.marginal(x0, t_k.expand(len(x0)), noise) for t_k in t]  # x_t along each line
lines = torch.stack(lines)  # (21, 40, 2)

fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
ax.plot(lines[:, :, 0], lines[:, :, 1], color="0.6", lw=0.7)
ax.scatter(*x0.T, s=12, label="data x0 (t = 0)", zorder=3)
ax.scatter(*noise.T, s=12, label="noise (t = 1)", zorder=3)
ax.set_title("conditional paths: straight lines")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Poisson flow: field lines of the data's charges
#
# Put the $d$-dimensional data in a space of $d + D$ dimensions, on the plane where the
# extra $D$ coordinates are zero, and give every data point a positive unit charge. In
# $d + D$ dimensions the field of a charge falls off as $1/\text{distance}^{d+D-1}$, so the
# field of the data is
#
# $$
# E(\tilde x) \propto \sum_i \frac{\tilde x - \tilde y_i}{\|\tilde x - \tilde y_i\|^{d + D}}
# $$
#
# (minus the gradient of the Green's function of Poisson's equation in $d + D$ dimensions: PFGM,
# Xu et al. 2022, uses $D = 1$; PFGM++ any $D$). Follow
# the field lines away from the charges: far away every line points radially outward, and
# the lines arrive spread evenly over a large hemisphere, whatever the data. Reversing them
# carries a simple distribution on that hemisphere back to the data. The picture below is
# the smallest case, 1-D data ($d = 1$) and $D = 1$: the field in the half-plane above the
# charges.

# %%
charges = torch.tensor([-1.6, -1.2, -1.0, 0.3, 0.5, 1.4])  # 1-D data points
xs = torch.linspace(-3, 3, 61)
rs = torch.linspace(0.02, 3, 41)  # the extra coordinate r > 0
gr, gx = torch.meshgrid(rs, xs, indexing="ij")
dx = gx[..., None] - charges  # (41, 61, charges)
dist_sq = dx**2 + gr[..., None] ** 2
power = 2 / 2  # ||.||^(d + D) = (dist^2)^((d + D) / 2), here d + D = 2
field_x = (dx / dist_sq**power).sum(-1)
field_r = (gr[..., None] / dist_sq**power).sum(-1)

fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.streamplot(xs.numpy(), rs.numpy(), field_x.numpy(), field_r.numpy(), density=1.2, color="0.4")
ax.scatter(charges, torch.zeros_like(charges), color="tab:red", s=30, zorder=3, label="data")
ax.set_xlabel("data coordinate x")
ax.set_ylabel("extra coordinate r")
ax.set_title("field lines of the data's charges (d = 1, D = 1)")
ax.legend(fontsize=8, loc="upper left", framealpha=1)
plt.show()

# %% [markdown]
# Training needs the distribution of $x$ at each radius $r$ of the extra coordinates. PFGM++
# shows that it is the kernel $p_r(x \mid y) \propto (\|x - y\|^2 + r^2)^{-(d + D)/2}$
# (Eq. 4 of Xu et al. 2023). With $r = \sigma \sqrt D$ (their alignment, Sec. 4) this is a
# multivariate Student-t with $D$ degrees of freedom and scale $\sigma$: so Poisson flow is
# EDM's $x = y + \sigma\, n$ with heavy-tailed noise $n$, and everything else (noise
# levels, preconditioning, ODE) is EDM's. As $D \to \infty$ the noise becomes Gaussian and
# PFGM++ becomes EDM (Prop. 3.1 of Xu et al.). `PoissonFlow.noise` draws $n$; its tails:

# %%
n_draws = 200_000
fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
radius = torch.linspace(0, 8, 200)
tails = {}  # D -> P(|n| > radius)
for dim in [1, 4, 32, 128]:
    n = PoissonFlow(augment_dim=dim).noise((n_draws, 2), generator=torch.Generator().manual_seed(1))
    tails[dim] = (n.norm(dim=1)[:, None] > radius).float().mean(0)  # P(|n| > radius)
    ax.plot(radius, tails[dim], label=f"Poisson flow, D = {dim}")
gauss = torch.randn(n_draws, 2, generator=torch.Generator().manual_seed(1))
tails["Gaussian"] = (gauss.norm(dim=1)[:, None] > radius).float().mean(0)
ax.plot(radius, tails["Gaussian"], "k--", label="Gaussian")
ax.set_yscale("log")
ax.set_ylim(1e-5, 1.2)
ax.set_xlabel("radius |n|")
ax.set_ylabel("P(|n| > radius)")
ax.set_title("noise of the path: heavy tails for small D")
ax.legend(fontsize=8)
plt.show()

# %%
# Check the claims above (fails if they go stale): P(|n| > 3) and P(|n| > 4) for each D.
at_3, at_4 = (int((radius - r).abs().argmin()) for r in (3.0, 4.0))
assert tails[1][at_4] > 50 * tails["Gaussian"][at_4], "small D: heavy tails"  # 0.24 vs 0.00044
dims = [1, 4, 32, 128]  # tails shrink as D grows (0.24, 0.039, 0.0014, 0.00056 at radius 4)
assert all(tails[a][at_4] > tails[b][at_4] for a, b in itertools.pairwise(dims))
assert tails[128][at_3] < 1.3 * tails["Gaussian"][at_3], "large D: Gaussian"  # 0.0128, 0.0111

# %% [markdown]
# ## Train both on the same data
#
# Same swiss roll, same network (the default: three residual blocks of width 96), same
# optimiser and seed; only the process differs. Poisson flow uses the library's default
# $D = 128$. 1,000 training steps each (the default is 2,000) keep the notebook near a
# minute; the last section measures how close the samples then are to the data.

# %%
common = dict(
    dataset="swissroll",
    train_steps=1000,
    n_train=20_000,
    snapshot_every=1000,  # no training animation here
    snapshot_samples=200,
    checkpoint_every=0,
    seed=SEED,
    device="cpu",
)
models = {}
for name, process in [("flow matching", "flow"), ("Poisson flow", "poisson")]:
    config = TrainConfig(process=process, **common)
    start = time.perf_counter()
    result = train(config, progress=False)
    print(f"{name}: {time.perf_counter() - start:.1f} s, {config.sampler} {config.sample_steps}")
    models[name] = TrainedModel.from_result(result)
dataset = result.dataset
# Check the claims above (fails if they go stale): the defaults the text quotes.
config = models["Poisson flow"].config
assert (config.width, config.depth, config.augment_dim) == (96, 3, 128), "network or D changed"
assert TrainConfig(process="flow").train_steps == 2000, "the text says 2,000 is the default"

# %% [markdown]
# Poisson flow's marginals are not Gaussian, so samplers that draw Gaussian noise are
# refused; the deterministic ODE samplers work:

# %%
try:
    models["Poisson flow"].sample(10, sampler="ancestral", steps=10)
except ValueError as error:
    print(error)

# %% [markdown]
# ## The reverse processes
#
# `reverse_trajectory` samples 2,000 particles with each model's default sampler (UniPC-2
# for flow matching, Zhao et al. 2023; Heun, Algorithm 1 of Karras et al. 2022, for Poisson
# flow) and keeps their states along the way. Flow matching
# starts from $\mathcal N(0, I)$ at $t = 1$; Poisson flow starts at EDM's largest noise
# level, $\sigma = 80$, with heavy-tailed noise, so its particles come in from far outside
# the picture. `reverse_gif` animates them over the data (grey), at the data's axis limits.

# %%
trajectories = {name: reverse_trajectory(model, seed=SEED) for name, model in models.items()}
defaults = {"flow matching": "unipc", "Poisson flow": "heun"}  # the text above
for name, model in models.items():  # 2,000 particles, the default samplers, sigma = 80
    assert trajectories[name][0][1].shape == (2000, 2) and model.config.sampler == defaults[name]
assert models["Poisson flow"].process.sigma_max == 80
data = dataset.sample(5000, torch.Generator().manual_seed(SEED + 1))
limits = compute_limits(data)  # fixed to the data: particles still far away are off screen
for name, frames in trajectories.items():
    path = OUT / f"reverse-{models[name].config.process}.gif"
    print(name)
    show_gif(reverse_gif(frames, data, path, limits=limits))

# %% [markdown]
# The same particles as paths: 150 of them, from their start to their sample (dots). The
# flow-matching paths are nearly straight; the Poisson-flow paths arrive from far away
# along nearly radial field lines and bend only at the end, near the data.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True, layout="constrained")
for ax, (name, frames) in zip(axes, trajectories.items(), strict=True):
    paths = torch.stack([x[:150] for _, x in frames])  # (frames, 150, 2)
    ax.scatter(*data.T, s=1, color="0.85")
    ax.plot(paths[:, :, 0], paths[:, :, 1], lw=0.5, color="tab:blue", alpha=0.6)
    ax.scatter(*paths[-1].T, s=6, color="tab:red", zorder=3)
    ax.set_title(f"{name}: paths from t = 1 to t = 0")
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
plt.show()


# %%
# Check the claims above (fails if they go stale): how straight the paths are.
def bending(paths: torch.Tensor) -> float:
    """Median over particles of (length of the path) / (distance from start to end)."""
    length = paths.diff(dim=0).norm(dim=-1).sum(0)  # (particles,)
    return (length / (paths[-1] - paths[0]).norm(dim=-1)).median().item()


flow_paths, poisson_paths = (torch.stack([x for _, x in f]) for f in trajectories.values())
start_radius = poisson_paths[0].norm(dim=-1).median()  # 63
early = poisson_paths[: len(poisson_paths) * 3 // 4]  # the first three quarters of the frames
inward = torch.nn.functional.cosine_similarity(early[-1] - early[0], -early[0], dim=-1).median()
assert bending(flow_paths) < 1.1, "flow matching: nearly straight paths"  # 1.003
assert start_radius > 10, f"Poisson flow should start far outside the picture: {start_radius:.0f}"
assert bending(early) < 1.01, "Poisson flow: straight until near the data"  # 1.0001
assert inward > 0.99, "Poisson flow: radial, towards the origin, until near the data"  # 1.0000

# %% [markdown]
# ## Measured
#
# `evaluate` draws 4,000 samples with each model's default sampler and scores them against
# fresh data, each distance beside its floor (see [notebook 1](01_ddpm_swiss_roll.py)).

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True, layout="constrained")
evaluations = {}
for ax, (name, model) in zip(axes, models.items(), strict=True):
    evaluation = evaluations[name] = evaluate(model, dataset, n=4000, seed=SEED)
    metrics = evaluation.metrics
    print(
        f"{name:14s} {evaluation.nfe} NFE  SW ratio {metrics.sliced_wasserstein.ratio:.2f}  "
        f"MMD ratio {metrics.mmd.ratio:.2f}  energy ratio {metrics.energy.ratio:.2f}"
    )
    ax.scatter(*data.T, s=1, color="0.85")
    ax.scatter(*evaluation.samples.T, s=1, alpha=0.5)
    ratio = metrics.sliced_wasserstein.ratio
    ax.set_title(f"{name}: {evaluation.nfe} NFE, SW ratio {ratio:.2f}", fontsize=10)
plt.show()

# %% [markdown]
# Both come close to the data in a few dozen evaluations (printed above): their sliced W2
# and energy ratios sit at the floor, and their MMD ratios, higher, are still far from the 10
# or more of a real mismatch. What to take away:
#
# - Flow matching's straight conditional paths give a flow that is nearly straight, so
#   few ODE steps suffice; that is its appeal. Here each batch's data are also paired with
#   its noise by minibatch optimal transport (the default `coupling="ot"`), so the lines of
#   a batch hardly cross and 10 steps of UniPC-2 are enough; with `coupling="independent"` the
#   paths bend more (theory note 6; Liu et al. 2023 straighten them by "reflow" instead).
# - Poisson flow is EDM with heavier-tailed noise; $D$ trades robustness (small $D$, heavy
#   tails) against ease of training (large $D$, Gaussian). Xu et al. 2023 report that
#   intermediate values of $D$ beat both ends on images.

# %%
# Check the claims above (fails if they go stale).
assert (models["flow matching"].config.sample_steps, evaluations["flow matching"].nfe) == (10, 10)
for name, evaluation in evaluations.items():
    metrics = evaluation.metrics
    assert evaluation.nfe < 100, f"{name}: a few dozen evaluations; got {evaluation.nfe}"  # 10, 63
    assert metrics.sliced_wasserstein.ratio < 1.6, f"{name}: SW at the floor"  # 1.16, 1.21
    assert metrics.energy.ratio < 2, f"{name}: energy at the floor"  # 0.62, 0.73
    assert metrics.mmd.ratio < 5, f"{name}: MMD far from a real mismatch"  # 2.43, 2.96

# %% [markdown]
# On the command line: `diffusion compare --process flow poisson --out runs/compare` trains
# both and writes this comparison (`compare.png`, `compare.gif`); `--augment-dim` sets $D$.

# %%
print(f"this run took {time.perf_counter() - NOTEBOOK_START:.0f} s")
