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
# # 1. DDPM on the swiss roll, line by line
#
# This is the original demo (`python -m diffusion.ddpm.main`) taken apart: a denoising
# diffusion probabilistic model (DDPM, Ho et al. 2020) learns a 2-D swiss roll. We build
# every piece with the Python API and write the training loop out in full:
#
# 1. the data, standardised;
# 2. the forward process that turns data into noise, and what $x_t$ looks like;
# 3. the network and the loss;
# 4. the training loop, with an exponential moving average (EMA) of the weights;
# 5. the ancestral sampler, by the library and by hand;
# 6. the animation of samples over training;
# 7. the metric, always beside its statistical floor.
#
# Theory: [the forward process](../docs/theory/03-forward-process.md) and
# [the reverse process](../docs/theory/04-reverse-process.md). The notebook runs in about a
# minute on 2 CPU cores (its last cell prints how long this run took): it trains for 1,500
# steps, where `diffusion train --process ddpm` trains for 2,000.

# %%
import base64
import copy
import itertools
import math
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, display

from diffusion.data import get_dataset
from diffusion.data.normalize import Normalizer
from diffusion.measure.metrics import compare_to_data
from diffusion.models import TimeMLP
from diffusion.processes import DDPM, TerminalSignalError
from diffusion.samplers import sample
from diffusion.training.config import TrainConfig
from diffusion.training.loop import lr_factor
from diffusion.viz.gif import training_gif
from diffusion.viz.plots import compute_limits, ema_smooth, samples_figure

SEED = 0  # every random draw below comes from a generator seeded from this
OUT = Path(tempfile.mkdtemp(prefix="diffusion-01-"))  # files written here, nowhere else
print("outputs in", OUT)
NOTEBOOK_START = time.perf_counter()


def show_gif(path: Path) -> None:
    """Show a GIF inline as a data URL (the site's notebook renderer drops GIF images)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    display(HTML(f'<img src="data:image/gif;base64,{data}" alt="{Path(path).name}">'))


# %% [markdown]
# ## 1. Data
#
# `get_dataset` returns a `Dataset` whose `sample(n, generator)` draws fresh points. We
# draw a fixed training set once, and standardise it to zero mean and unit variance per
# coordinate: the process ends in $\mathcal N(0, I)$, so the data should live on the same
# scale. Samples are mapped back with `normalizer.denormalize`.

# %%
dataset = get_dataset("swissroll")
x_data = dataset.sample(20_000, torch.Generator().manual_seed(SEED))  # (n, 2)
normalizer = Normalizer.fit(x_data)
x_train = normalizer.normalize(x_data)  # (n, 2), mean 0 and std 1 per coordinate

fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(*x_data[:4000].T, s=2, alpha=0.5)
ax.set_title(f"swiss roll, {len(x_data):,} training points (4,000 shown)")
ax.set_aspect("equal")
plt.show()

# %% [markdown]
# ## 2. The forward process
#
# DDPM adds a little Gaussian noise at each of $T$ steps,
# $q(x_k \mid x_{k-1}) = \mathcal N(\sqrt{1-\beta_k}\, x_{k-1}, \beta_k I)$ (Eq. 2 of Ho et
# al. 2020). Composing the steps gives the marginal in closed form (Eq. 4 of Ho et al.):
#
# $$
# q(x_k \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_k}\, x_0,\ (1 - \bar\alpha_k) I\big),
# \qquad \bar\alpha_k = \prod_{i \le k} (1 - \beta_i).
# $$
#
# The library puts step $k$ at continuous time $t = k / T$ and writes every process as
# $x_t = \alpha(t)\, x_0 + \sigma(t)\, \varepsilon$, here with $\alpha = \sqrt{\bar\alpha}$
# and $\sigma = \sqrt{1 - \bar\alpha}$. We use $T = 1000$ and the cosine schedule
# $\bar\alpha(t) = f(t) / f(0)$, $f(t) = \cos^2\!\big(\tfrac{t + s}{1 + s} \tfrac{\pi}{2}\big)$
# (Eq. 17 of Nichol & Dhariwal 2021), and train the network to predict $v$ (below).

# %%
process = DDPM(steps=1000, schedule="cosine", prediction="v")

t = torch.linspace(0, 1, 201, dtype=torch.float64)
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(t, process.alpha(t), label=r"$\alpha(t) = \sqrt{\bar\alpha}$")
left.plot(t, process.sigma(t), label=r"$\sigma(t) = \sqrt{1 - \bar\alpha}$")
left.set_xlabel("t  (0: data, 1: noise)")
left.legend()
right.plot(t[1:-1], process.snr(t[1:-1]).log(), color="tab:green")
right.set_xlabel("t")
right.set_title(r"log SNR = $\log \alpha^2 / \sigma^2$")
plt.show()
print(f"signal left at t = 1: sqrt(alpha_bar_T) = {process.alpha(torch.tensor(1.0)):.1e}")

# %% [markdown]
# $x_t$ at a few times, from the same data points and the same noise draw: the roll blurs,
# shrinks by $\alpha(t)$ and dissolves into $\mathcal N(0, I)$.

# %%
times = [0.0, 0.1, 0.3, 0.5, 0.7, 1.0]
x0 = x_train[:2000]
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(SEED + 1))
fig, axes = plt.subplots(
    1, len(times), figsize=(2.6 * len(times), 3), sharex=True, sharey=True, layout="constrained"
)
for ax, time_value in zip(axes, times, strict=True):
    t_batch = torch.full((len(x0),), time_value)  # (B,)
    x_t = process.marginal(x0, t_batch, noise)  # alpha(t) x0 + sigma(t) noise
    ax.scatter(*x_t.T, s=1, alpha=0.4)
    alpha = process.alpha(torch.tensor(time_value)).item()
    ax.set_title(f"t = {time_value}\nalpha = {alpha:.2f}", fontsize=9)
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-3.5, 3.5)
fig.suptitle("the forward process q(x_t | x_0), standardised coordinates")
plt.show()

# %% [markdown]
# The original repository used 100 steps with $\beta$ from $10^{-5}$ to $5 \cdot 10^{-3}$.
# That schedule keeps most of the data at $t = 1$, so sampling from $\mathcal N(0, I)$ starts
# from the wrong distribution. The library refuses it, and its message says how much of the
# data is left, $\sqrt{\bar\alpha_T}$:

# %%
try:
    DDPM(steps=100, schedule="linear", beta_start=1e-5, beta_end=5e-3)
except TerminalSignalError as error:
    print(error)

# %% [markdown]
# ## 3. The network and the loss
#
# `TimeMLP` is a residual MLP $f_\theta(x_t, t)$ with a sinusoidal embedding of $t$. It
# predicts $v = \alpha\, \varepsilon - \sigma\, x_0$ (Eq. 8 of Salimans & Ho 2022), which
# stays well scaled at both ends of the schedule; the library turns any target into the
# pair $(\hat x_0, \hat\varepsilon)$ that samplers use (`diffusion.parametrize`). The loss
# is the "simple" loss of Ho et al. (Eq. 14) with $v$ in place of $\varepsilon$:
#
# $$
# L(\theta) = \mathbb E_{k \sim U\{1..T\},\, x_0,\, \varepsilon}
# \big\| v - f_\theta(x_t, t) \big\|^2 .
# $$
#
# Why regressing on the noise learns the score $\nabla \log p_t$ is the subject of
# [the reverse process](../docs/theory/04-reverse-process.md) (Vincent 2011).

# %%
model = TimeMLP(dim=2, width=96, depth=3, seed=SEED)  # seed: its initial weights
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# `process.loss(model, x0, generator=g)` draws the times and the noise from `g`. Here it is
# unrolled, line by line, from a generator in the same state: the two numbers agree.

# %%
x0 = x_train[:512]
loss = process.loss(model, x0, generator=torch.Generator().manual_seed(123))

generator = torch.Generator().manual_seed(123)
t = process.sample_time(len(x0), generator=generator)  # k ~ U{1..T} as t = k / T (Alg. 1, Ho)
noise = process.noise(x0.shape, generator=generator)  # eps ~ N(0, I)
x_t = process.marginal(x0, t, noise)  # Eq. 4 of Ho et al.
alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]  # (B, 1)
v = alpha * noise - sigma * x0  # the target
v_hat = model(process.model_input(x_t, t), t)  # DDPM's input needs no scaling: var(x_t) = 1
by_hand = (v_hat - v).pow(2).mean()
print(f"process.loss: {loss.item():.6f}   by hand: {by_hand.item():.6f}")
assert math.isclose(loss.item(), by_hand.item(), rel_tol=1e-5)

# %% [markdown]
# ## 4. The training loop
#
# Plain AdamW with gradient clipping, a linear warmup then cosine decay of the learning
# rate (`lr_factor`, the library's schedule), and an EMA of the weights (Polyak averaging):
# sampling uses the average, which is much smoother than the last iterate. Each frame of
# the training animation samples the EMA model from the *same* prior draw, so what changes
# between frames is the model alone. The frames use 50 sampling steps (cheap); the final
# samples use 200.

# %%
STEPS = 1500  # the CLI's 2,000 would take a third longer for a small gain in quality
BATCH = 512
LR = 3e-3  # peak learning rate (the CLI default)
WARMUP = 100  # steps of linear warmup
EMA_DECAY = 0.999  # the average spans about 1 / (1 - 0.999) = 1,000 steps
SNAPSHOT_EVERY = 100  # training steps between frames of the animation
assert TrainConfig(process="ddpm").train_steps == 2000, "the text quotes the CLI's 2,000 steps"

optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
ema = copy.deepcopy(model).requires_grad_(False)  # the averaged weights
train_generator = torch.Generator().manual_seed(SEED + 2)  # batches, times and noise
losses, snapshots = [], []


def snapshot(step: int) -> None:
    """Sample the EMA model from a fixed prior draw and keep the samples in data space."""
    frame_generator = torch.Generator().manual_seed(SEED + 3)  # the same draw every frame
    x = sample(process.denoiser(ema), (1000, 2), steps=50, generator=frame_generator).x
    snapshots.append((step, normalizer.denormalize(x)))


start = time.perf_counter()
for step in range(STEPS):
    idx = torch.randint(len(x_train), (BATCH,), generator=train_generator)  # a minibatch
    loss = process.loss(model, x_train[idx], generator=train_generator)  # draws t and noise
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # gradients of the mean squared error on v
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)  # guard against spikes
    for group in optimizer.param_groups:  # warmup, then cosine decay to 5% of LR
        group["lr"] = LR * lr_factor(step, WARMUP, STEPS, min_ratio=0.05)
    optimizer.step()
    decay = min(EMA_DECAY, (1 + step) / (10 + step))  # short memory at first
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
            p_ema.lerp_(p, 1 - decay)  # ema <- decay * ema + (1 - decay) * p
    losses.append(loss.item())
    if step == 0 or (step + 1) % SNAPSHOT_EVERY == 0:
        snapshot(step + 1)
print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses, alpha=0.3, lw=0.8, label="loss per step")
ax.plot(ema_smooth(torch.tensor(losses).numpy()), color="tab:red", label="running mean")
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_title("training loss (v prediction)")
ax.legend()
plt.show()
final_loss = sum(losses[-100:]) / 100  # the mean of the last 100 steps
print(f"final loss {final_loss:.3f}")
assert final_loss > 0.5, "the text below says the loss stays well above zero"  # 0.89

# %% [markdown]
# The loss does not go to zero, and should not: $x_t$ does not determine the $x_0$ and the
# noise it was made of (near $t = 1$ it says almost nothing about $x_0$), so even the best
# possible prediction, $\mathbb E[v \mid x_t]$, leaves an irreducible error.
# [Notebook 3](03_exact_ground_truth.py) measures that floor exactly.
#
# ## 5. The ancestral sampler
#
# Sampling walks a time grid $1 = t_0 > t_1 > \dots > t_K = 0$ backwards from
# $x_{t_0} \sim \mathcal N(0, I)$. At each step $t \to s$ the network's estimate
# $\hat x_0$ stands in for $x_0$ in the Gaussian posterior $q(x_s \mid x_t, x_0)$
# (Algorithm 2 and Eqs. 6-7 of Ho et al.; for any pair of times, Eqs. 32-33 of Kingma et
# al. 2021): with $\alpha_{t|s} = \alpha_t / \alpha_s$ and
# $\sigma_{t|s}^2 = \sigma_t^2 - \alpha_{t|s}^2 \sigma_s^2$,
#
# $$
# x_s = \frac{\alpha_{t|s} \sigma_s^2}{\sigma_t^2}\, x_t
# + \frac{\alpha_s \sigma_{t|s}^2}{\sigma_t^2}\, \hat x_0
# + \sqrt{\frac{\sigma_{t|s}^2 \sigma_s^2}{\sigma_t^2}}\; z,
# \qquad z \sim \mathcal N(0, I),
# $$
#
# with no noise on the last step. 200 steps of the 1,000 keep the result near the metric's
# floor ([notebook 2](02_samplers.py) trades steps for quality). The `callback` sees the
# state after every step; we keep a few to watch the reverse process.

# %%
N = 4000  # samples to draw and score
SAMPLE_STEPS = 200
kept = {}


def keep(step) -> None:
    """Callback: record x at a few times of the reverse process (in data space)."""
    if step.index in (0, 120, 160, 180, 190, SAMPLE_STEPS - 1):
        kept[step.s] = normalizer.denormalize(step.x)


result = sample(
    process.denoiser(ema),
    (N, 2),
    sampler="ancestral",
    steps=SAMPLE_STEPS,
    generator=torch.Generator().manual_seed(SEED + 4),
    callback=keep,
)
samples = normalizer.denormalize(result.x)
print(f"{N} samples, {result.nfe} network evaluations")

fig, axes = plt.subplots(
    1, len(kept), figsize=(2.6 * len(kept), 3), sharex=True, sharey=True, layout="constrained"
)
for ax, (s, x) in zip(axes, sorted(kept.items(), reverse=True), strict=True):
    ax.scatter(*x[:2000].T, s=1, alpha=0.4)
    ax.set_title(f"t = {s:.2f}", fontsize=9)
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
fig.suptitle("the reverse process: noise to data")
plt.show()

# %% [markdown]
# The same algorithm by hand, in one short function. `process.denoiser(ema)` is the network
# seen through the process: it turns the $v$ prediction into $(\hat x_0, \hat\varepsilon)$.
# From a generator in the same state it gives the library's samples.


# %%
def ancestral_by_hand(denoiser, x, times, generator):
    for t, s in itertools.pairwise(times):
        alpha_t, sigma_t = process.alpha(t).item(), process.sigma(t).item()
        alpha_s, sigma_s = process.alpha(s).item(), process.sigma(s).item()
        x0_hat = denoiser(x, t).x0
        alpha_ts = alpha_t / alpha_s
        var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2  # variance of q(x_t | x_s)
        x = (alpha_ts * sigma_s**2 / sigma_t**2) * x + (alpha_s * var_ts / sigma_t**2) * x0_hat
        if s > 0:  # Eq. 7 of Ho et al.: the posterior variance
            x = x + math.sqrt(var_ts * sigma_s**2 / sigma_t**2) * torch.randn(
                x.shape, generator=generator
            )
    return x


generator = torch.Generator().manual_seed(SEED + 4)
x1 = process.prior((N, 2), generator=generator)  # sigma(1) * N(0, I)
by_hand = ancestral_by_hand(process.denoiser(ema), x1, process.time_grid(SAMPLE_STEPS), generator)
print(f"largest difference from the library: {(by_hand - result.x).abs().max():.1e}")
assert torch.allclose(by_hand, result.x, atol=1e-5), "the text says the two samplers agree"

# %% [markdown]
# ## 6. Samples over training
#
# `training_gif` draws each snapshot over the data (grey) with the same axis limits, and
# writes the GIF; `show_gif` (defined at the top) shows the file.

# %%
limits = compute_limits(x_data)
gif = training_gif(snapshots, x_data, OUT / "training.gif", limits=limits)
show_gif(gif)

# %%
display(samples_figure(x_data, samples, limits=limits, title="DDPM, ancestral, 200 steps"))

# %% [markdown]
# ## 7. Measuring, with the floor
#
# A distance between samples and data means little alone: two independent draws of the
# *data* are at a positive distance too, shrinking with their size. `compare_to_data`
# reports each distance (sliced Wasserstein-2, MMD, energy distance) beside its **floor**,
# the same distance between two fresh data draws of the same size, and the ratio. A ratio
# near 1 means the samples are as close to the data as the data is to itself. The ratio is
# itself noisy (`compare_to_data`'s documentation reports about ±25% for sliced Wasserstein
# on the swiss roll, and reads MMD and energy ratios up to ~3 as consistent with a perfect
# model), so we also score fresh data as if it were samples: the "control" is what a perfect
# model gets. More in [measuring](../docs/theory/07-measuring.md).

# %%
reports = {
    "DDPM samples": compare_to_data(samples, dataset.sample, torch.Generator().manual_seed(5)),
    "control: fresh data": compare_to_data(
        dataset.sample(N, torch.Generator().manual_seed(SEED + 6)),
        dataset.sample,
        torch.Generator().manual_seed(5),
    ),
}
for name, report in reports.items():
    print(name)
    for metric, value in [
        ("sliced W2", report.sliced_wasserstein),
        ("MMD^2", report.mmd),
        ("energy", report.energy),
    ]:
        print(f"  {metric:10s} {value.value:.3e}  floor {value.floor:.3e}  ratio {value.ratio:.2f}")

# %% [markdown]
# Read each ratio against the control's. In the run printed above, sliced W2 and MMD sit at
# the control's level, while the energy distance is several times its floor (above the ~3
# that a perfect model may reach) and fresh data's is not: 1,500 steps leave a difference
# that one metric sees and the others do not, which is why all three are reported.

# %%
# Check the claims above (fails if they go stale).
samples_report, control_report = reports["DDPM samples"], reports["control: fresh data"]
sw, mmd, energy = (samples_report.sliced_wasserstein, samples_report.mmd, samples_report.energy)
assert sw.ratio < 1.6, f"SW should sit at the control's level; got {sw.ratio:.2f}"  # 1.27
assert mmd.ratio < 3, f"MMD should sit at the floor (< 3); got {mmd.ratio:.2f}"  # 0.68
assert energy.ratio > 3, f"energy should be well above its floor; got {energy.ratio:.2f}"  # 4.11
assert control_report.energy.ratio < 2, "fresh data's energy ratio should be near 1"  # 0.86

# %% [markdown]
# The command line does all of this in one call, and writes every picture into a run
# directory:
#
# ```bash
# diffusion train --process ddpm --out runs/ddpm    # or: python -m diffusion.ddpm.main
# ```
#
# Next: [notebook 2](02_samplers.py) compares every sampler on one model.

# %%
print(f"this run took {time.perf_counter() - NOTEBOOK_START:.0f} s")
