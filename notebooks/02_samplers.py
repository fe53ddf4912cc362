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
# # 2. Samplers: quality against cost
#
# A trained diffusion model gives a denoiser, $(\hat x_0, \hat\varepsilon)$ at any
# $(x_t, t)$; a *sampler* turns it into samples by walking a time grid from $t = 1$ (noise)
# to $t = 0$ (data). Samplers differ in how they step, and so in how many network
# evaluations (NFE) they need for a given quality. Here we train one model and run every
# sampler its family supports at several step counts, then do the same with the **exact**
# denoiser of the data. The exact denoiser has no learning error, so its curve is the
# discretisation error alone; the gap between the two curves is what the network has not
# learned.
#
# Theory: [the reverse process](../docs/theory/04-reverse-process.md) (reverse SDE,
# probability-flow ODE) and [the design space](../docs/theory/05-design-space.md) (samplers and
# their orders of accuracy). The notebook runs in one to two minutes on 2 CPU cores (its last
# cell prints how long this run took).

# %%
import inspect
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from diffusion.data import get_dataset
from diffusion.measure.metrics import SlicedWassersteinRatio
from diffusion.models import TimeMLP
from diffusion.processes import PROCESSES
from diffusion.samplers import SAMPLERS, sample
from diffusion.training.config import TrainConfig
from diffusion.training.loop import train
from diffusion.training.trained import TrainedModel
from diffusion.workflows.exact import exact_model

SEED = 0
OUT = Path(tempfile.mkdtemp(prefix="diffusion-02-"))
print("outputs in", OUT)
NOTEBOOK_START = time.perf_counter()

# %% [markdown]
# ## The data: a Gaussian mixture with a known answer
#
# We use the mixture of `docs/examples/mixture.json`: three Gaussians with full
# covariances. Because the data law is a Gaussian mixture, its noised density, score and
# denoiser are known in closed form at every $t$ ([exact ground truth](../docs/exact.md),
# [notebook 3](03_exact_ground_truth.py)). We write it to a file and load it as a user's
# data set would be loaded.

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
dataset = get_dataset(mixture_path)  # a Dataset with .sample and the exact .mixture
print(dataset.mixture.n_components, "components in", dataset.dim, "dimensions")

# %% [markdown]
# ## Which samplers work with which family
#
# Every sampler has one signature, `sampler(denoiser, x, times, *, generator, callback)`,
# and works from $(\hat x_0, \hat\varepsilon)$, so most samplers run on most families. The
# exceptions are refused with a reason: the reverse SDE's drift $\alpha'/\alpha$ is infinite
# at $t = 1$ of flow matching ($\alpha(1) = 0$), Poisson flow's marginals are not
# Gaussian, and flow matching's default minibatch optimal-transport coupling means its
# network no longer learns the score that the stochastic samplers need (`FlowMatching(
# coupling="independent")` brings them back, all but the two that need the drift). We ask the
# library by drawing 8 points with an untrained network (the weights do not matter for the
# question).

# %%
torch.manual_seed(SEED)  # nn.Linear's initial weights come from torch's global generator
untrained = TimeMLP(dim=2, width=16, depth=1)
supported = {}
for family, make_process in PROCESSES.items():
    supported[family] = []
    for name in SAMPLERS:
        try:
            generator = torch.Generator().manual_seed(SEED)
            denoiser = make_process().denoiser(untrained)
            sample(denoiser, (8, 2), sampler=name, steps=2, generator=generator)
            supported[family].append(name)
        except ValueError:
            pass
for family, names in supported.items():
    refused = [name for name in SAMPLERS if name not in names]
    print(f"{family:8s} {len(names)} of {len(SAMPLERS)}; refuses: {', '.join(refused) or '-'}")
try:
    sample(
        PROCESSES["flow"](coupling="independent").denoiser(untrained),
        (8, 2),
        sampler="euler-maruyama",
        steps=2,
        generator=generator,
    )
except ValueError as error:
    print("\nflow + euler-maruyama:", error)

# %%
# Check the claims above (fails if they go stale).
assert supported["vp"] == list(SAMPLERS), "vp, trained below, should support every sampler"
independent = []  # the samplers that flow matching with independent coupling still refuses
for name in SAMPLERS:
    try:
        flow = PROCESSES["flow"](coupling="independent").denoiser(untrained)
        sample(flow, (8, 2), sampler=name, steps=2, generator=torch.Generator().manual_seed(SEED))
    except ValueError:
        independent.append(name)
assert independent == ["euler-maruyama", "pc"], f"the two that need the drift; got {independent}"

# %% [markdown]
# ## One trained model
#
# We train the variance-preserving SDE (`vp`, Eq. 11 of Song et al. 2021; its marginal is
# their Eq. 33) because it supports every sampler. `train` runs the library's training loop
# (the one [notebook 1](01_ddpm_swiss_roll.py) writes out by hand) and returns the EMA
# network and the data normaliser; `TrainedModel` bundles them with the process to sample in
# data coordinates. 1,000 training steps (the default is 2,000) keep the notebook short, and
# leave a model that is good but not perfect; how much of its error a sample metric can see
# is the question below.

# %%
assert TrainConfig(process="vp").train_steps == 2000, "the text says the default is 2,000"
config = TrainConfig(
    dataset=str(mixture_path),
    process="vp",
    train_steps=1000,
    n_train=20_000,  # a fixed training set drawn once from the mixture
    snapshot_every=1000,  # no animation needed here: frames only at the first and last step
    snapshot_samples=200,
    checkpoint_every=0,
    seed=SEED,
    device="cpu",
)
start = time.perf_counter()
result = train(config, dataset=dataset, progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s")
model = TrainedModel.from_result(result)  # the EMA network, ready to sample
# The exact denoiser of the mixture, in the same standardised coordinates and process.
exact = exact_model(dataset.mixture, config, result.normalizer, process=result.process)

# %% [markdown]
# ## The samplers
#
# | sampler | what one step does | NFE for $K$ steps |
# | --- | --- | --- |
# | `ancestral` | draws from the posterior $q(x_s \mid x_t, \hat x_0)$ (Alg. 2 of Ho et al. 2020) | $K$ |
# | `ddim` | deterministic DDIM, $\eta = 0$ (Eq. 12 of Song, Meng & Ermon 2021) | $K$ |
# | `euler-maruyama` | the reverse SDE (Anderson 1982; Eq. 6 of Song et al. 2021) | $K$ |
# | `pc` | Euler-Maruyama predictor + one Langevin corrector step (Alg. 1 of Song et al. 2021) | $2K - 1$ |
# | `euler` | Euler on the probability-flow ODE (Eq. 13 of Song et al. 2021) | $K$ |
# | `heun` | Heun's second-order method (Alg. 1 of Karras et al. 2022, deterministic) | $2K - 1$ |
# | `rk45` | adaptive Dormand-Prince; the tolerance sets the cost | adaptive |
# | `dpm-solver++` | DPM-Solver++(2M), second order in log-SNR (Alg. 2 of Lu et al. 2022) | $K$ |
# | `unipc` | UniPC-2 (bh2): multistep predictor and corrector (Zhao et al. 2023) | $K$ |
# | `deis` | DEIS multistep, second order in $\log \rho$ (Zhang & Chen 2023) | $K$ |
# | `dpm-solver` | singlestep DPM-Solver++(3S): three evaluations inside each step, third order (Lu et al. 2022a, Alg. 2, on $\hat x_0$) | $3(K - 1) + 1$ |
# | `langevin` | annealed Langevin dynamics (Alg. 1 of Song & Ermon 2019) | $K n + 1$ |
#
# First-order methods (Euler, DDIM, Euler-Maruyama, ancestral) have a global error that
# shrinks like $1/K$; second-order ones (Heun, DPM-Solver++, and UniPC and DEIS at their
# default order 2) like $1/K^2$, and singlestep DPM-Solver (order 3 by default) like $1/K^3$,
# at three evaluations per step (the last step, to $t = 0$, takes one). Every sample set is scored by the sliced-Wasserstein ratio
# to the data floor, against one fixed set of data draws (`SlicedWassersteinRatio`), so all
# numbers are comparable: 1 means "as close to the data as fresh data". To keep the run
# short, annealed Langevin takes 5 steps per noise level instead of its default 100 (and
# stops at 16 levels), and the sample sets hold 4,000 points. `ddim` and `euler` draw the
# same curve: Euler's method on the ODE in the variables $x/\alpha$ and $\sigma/\alpha$ *is*
# DDIM with $\eta = 0$ (Sec. 4.3 of Song, Meng & Ermon 2021).

# %%
N = 4000  # points per sample set
STEPS = [4, 8, 16, 32, 64]
RK45_TOLERANCES = [1e-1, 1e-2, 1e-3]  # rk45 picks its own steps
LANGEVIN_STEPS = 5  # Langevin steps per noise level (the default, 100, is 20 times slower)
langevin_default = inspect.signature(SAMPLERS["langevin"]).parameters["langevin_steps"].default
assert langevin_default == 100, "the text quotes the default of 100 Langevin steps per level"
score = SlicedWassersteinRatio(dataset.sample, N, torch.Generator().manual_seed(SEED + 1))


def sweep(trained, name):
    """(NFE, SW ratio) of one sampler over the step counts (or tolerances, for rk45)."""
    if name == "rk45":  # steps=1000 only sets where it stops: t = 1/1000, then denoises
        settings = [{"steps": 1000, "rtol": tol, "atol": tol} for tol in RK45_TOLERANCES]
    elif name == "langevin":
        settings = [{"steps": k, "langevin_steps": LANGEVIN_STEPS} for k in STEPS[:3]]
    else:
        settings = [{"steps": k} for k in STEPS]
    points = []
    for setting in settings:
        generator = torch.Generator().manual_seed(SEED + 2)  # the same prior draw for all
        drawn = trained.sample(N, sampler=name, generator=generator, **setting)
        points.append((drawn.nfe, score(drawn.x)))
    return points


start = time.perf_counter()
curves = {"model": {}, "exact": {}}
for name in SAMPLERS:
    curves["model"][name] = sweep(model, name)
    curves["exact"][name] = sweep(exact, name)
print(f"{2 * len(SAMPLERS)} sweeps in {time.perf_counter() - start:.1f} s")

# What a perfect sampler scores: fresh data draws in place of samples.
control = [score(dataset.sample(N, torch.Generator().manual_seed(100 + i))) for i in range(10)]
print(f"fresh data: SW ratio {min(control):.2f} to {max(control):.2f} over 10 draws")

# ddim (eta = 0) and euler are one map from the prior draw to the samples:
ddim, euler = (
    model.sample(N, sampler=name, steps=8, generator=torch.Generator().manual_seed(1)).x
    for name in ("ddim", "euler")
)
print(f"ddim vs euler, 8 steps: largest difference {(ddim - euler).abs().max():.1e}")

# %%
# Check the claims above (fails if they go stale): the table's NFE, and ddim = euler.
nfe_for = {"pc": lambda k: 2 * k - 1, "heun": lambda k: 2 * k - 1}
nfe_for["dpm-solver"] = lambda k: 3 * (k - 1) + 1
nfe_for["langevin"] = lambda k: k * LANGEVIN_STEPS + 1
for name in SAMPLERS:
    if name != "rk45":  # adaptive
        expected = [nfe_for.get(name, lambda k: k)(k) for k in STEPS]
        measured = [nfe for nfe, _ in curves["model"][name]]
        assert measured == expected[: len(measured)], f"{name}: NFE {measured}, not {expected}"
assert torch.allclose(ddim, euler, atol=1e-3), "ddim and euler should be one map"  # 5.1e-06
for kind in curves:  # (NFE, ratio) pairs
    ddim_curve, euler_curve = (torch.tensor(curves[kind][name]) for name in ("ddim", "euler"))
    assert torch.allclose(ddim_curve, euler_curve, rtol=1e-3), "ddim and euler: one curve"

# %%
colors = dict(zip(SAMPLERS, plt.cm.tab10.colors + plt.cm.Dark2.colors, strict=False))
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True, layout="constrained")
titles = {
    "model": "trained network: discretisation + learning",
    "exact": "exact denoiser: discretisation only",
}
for ax, (kind, title) in zip(axes, titles.items(), strict=True):
    for name, points in curves[kind].items():
        nfe, ratio = zip(*points, strict=True)
        ax.plot(nfe, ratio, "o-", ms=3, color=colors[name], label=name)
    ax.axhspan(min(control), max(control), color="0.85", label="fresh data (range)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
axes[0].set_ylabel("sliced-Wasserstein ratio to the data floor")
axes[1].legend(fontsize=8, ncol=2)
plt.show()

# %% [markdown]
# How to read it:
#
# - On the right, with the exact denoiser, the curves fall into the grey band as the steps
#   grow: with no learning error, enough steps reproduce the data. DPM-Solver++, UniPC and
#   DEIS, second order at one evaluation per step, fall fastest; annealed Langevin with only
#   5 steps per level stays well above the others.
# - On the left, the same samplers with the network. At small NFE the curves look like
#   their exact twins: discretisation dominates. At large NFE they reach the band together
#   with their exact twins: on 4,000 points this metric cannot see what this network has not
#   learned (notebook 3 measures it with a likelihood). A network with a visible error would
#   level off above its twin, and no sampler would remove that gap; spending more
#   evaluations once a curve has levelled off buys nothing.
# - The ratio is itself a noisy estimate: fresh data alone spreads over the grey band (its
#   range is printed above the figure), so differences between samplers smaller than the
#   band's width are not meaningful.
#
# The best figure of each sampler, model beside exact:

# %%
print(f"{'sampler':15s} {'model':>14s} {'exact':>14s}")
for name in SAMPLERS:
    best = {kind: min(curves[kind][name], key=lambda p: p[1]) for kind in curves}
    model_nfe, model_ratio = best["model"]
    exact_nfe, exact_ratio = best["exact"]
    print(f"{name:15s} {model_ratio:6.2f} @{model_nfe:5d}  {exact_ratio:6.2f} @{exact_nfe:5d} NFE")

# %%
# Check the claims above (fails if they go stale).
band = max(control)  # the top of the grey band (1.85)
first_ratio = {kind: {name: curves[kind][name][0][1] for name in SAMPLERS} for kind in curves}
best_ratio = {
    kind: {name: min(r for _, r in curves[kind][name]) for name in SAMPLERS} for kind in curves
}
exact_at = {name: dict(points) for name, points in curves["exact"].items()}  # {NFE: ratio}
second_order = max(exact_at[name][8] for name in ("dpm-solver++", "unipc", "deis"))  # 2.74
first_order = min(exact_at[name][8] for name in ("ancestral", "ddim", "euler-maruyama", "euler"))
assert second_order < 0.8 * first_order, "the second-order multistep samplers fall fastest"  # 3.84
assert second_order < exact_at["heun"][7], "... faster than heun too"  # 4.13 at 7 NFE
others = max(best_ratio["exact"][name] for name in SAMPLERS if name != "langevin")  # 1.47
assert best_ratio["exact"]["langevin"] > 1.3 * others, "langevin should stay well above"  # 2.24
for name in SAMPLERS:
    small = first_ratio["model"][name] / first_ratio["exact"][name]  # 0.88 to 1.03
    if name != "rk45":  # rk45 has no small-NFE end: one point per tolerance
        assert 0.75 < small < 1.33, f"{name}: twins at small NFE; got {small:.2f}"
    if name != "langevin":  # the curves that reach the band
        large = best_ratio["model"][name] / best_ratio["exact"][name]  # 0.95 to 1.03
        assert best_ratio["exact"][name] < band, f"{name} should reach the band"
        assert 0.8 < large < 1.25, f"{name}: twins at large NFE; got {large:.2f}"

# %% [markdown]
# ## What few steps look like
#
# At 8 steps, with the network (top) and the exact denoiser (bottom), from the same prior
# draw. The errors are in the shapes: mass left on bridges between the components, and
# components of the wrong width. At this budget the two rows look alike (the titles give
# their ratios): nearly all of the error is the sampler's, not the network's.

# %%
show = ["euler", "ancestral", "heun", "dpm-solver++"]
data = dataset.sample(N, torch.Generator().manual_seed(SEED + 3))
size = (2.8 * (len(show) + 1), 5.8)
fig, axes = plt.subplots(
    2, len(show) + 1, figsize=size, sharex=True, sharey=True, layout="constrained"
)
at_8_steps = {}  # (kind, sampler) -> SW ratio
for row, (kind, trained) in enumerate([("network", model), ("exact", exact)]):
    axes[row, 0].scatter(*data.T, s=1, alpha=0.4, color="0.3")
    axes[row, 0].set_title("data", fontsize=10)
    for ax, name in zip(axes[row, 1:], show, strict=True):
        generator = torch.Generator().manual_seed(SEED)
        drawn = trained.sample(N, sampler=name, steps=8, generator=generator)
        ax.scatter(*data.T, s=1, alpha=0.2, color="0.8")
        ax.scatter(*drawn.x.T, s=1, alpha=0.4, color="tab:blue" if row == 0 else "tab:orange")
        ratio = at_8_steps[kind, name] = score(drawn.x)
        ax.set_title(f"{kind}: {name}\n{drawn.nfe} NFE, SW ratio {ratio:.2f}", fontsize=9)
plt.show()

# %%
# Check the claim above (fails if it goes stale): the two rows score alike (within 11%), and
# far above the band (2.59 or more).
for name in show:
    network, exact_ratio = at_8_steps["network", name], at_8_steps["exact", name]
    assert 0.8 < network / exact_ratio < 1.25, f"{name}: {network:.2f} vs {exact_ratio:.2f}"
    assert exact_ratio > band, f"{name}: 8 steps should leave a visible error"

# %% [markdown]
# The command line runs the same comparison for any run, model beside exact, with
# `diffusion diagnose --run RUN` (`nfe_curve.png`), and a single sampler with
# `diffusion evaluate --run RUN --sampler heun --sample-steps 16`.
#
# Next: [notebook 3](03_exact_ground_truth.py) uses the exact answer for more than
# sampling: likelihoods and the error of the network at each noise level.

# %%
print(f"this run took {time.perf_counter() - NOTEBOOK_START:.0f} s")
