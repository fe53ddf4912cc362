"""The common recipe, as a side-by-side peer: diffusers' DDPM noise schedule (linear betas,
T = 1000, eps prediction) with a small MLP, the set-up of most swiss-roll tutorials.

It trains on the same normalised training points as our default recipe, in the same
process, with the same clock (training loop only) and the same scorer. Its samples are
drawn with diffusers' DPM-Solver++ at 20 steps (the best of its samplers on this task) and
with its own DDPM ancestral sampler at 1000 steps. diffusers is a test/benchmark extra
(`pip install -e '.[test]'`), never a dependency of the toolkit.
"""

from __future__ import annotations

import math
import time

import torch
from common import Curve, Scorer, train_with_curve
from torch import nn

from diffusion.data import get_dataset
from diffusion.models.mlp import seeded
from diffusion.training.config import TrainConfig
from diffusion.utils import make_generator

PEER_WIDTH = 128  # hidden units, three hidden layers
PEER_BATCH = 256
PEER_LR = 1e-3
PEER_EVERY = 2000  # steps between scores
PEER_SAMPLE_STEPS = 20


class PeerMLP(nn.Module):
    """x and a sinusoidal embedding of the integer timestep, concatenated, through a ReLU MLP."""

    def __init__(self, dim: int, width: int = PEER_WIDTH, time_dim: int = 32) -> None:
        super().__init__()
        half = time_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10_000) * torch.arange(half) / half))
        self.net = nn.Sequential(
            nn.Linear(dim + time_dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, dim),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None, :]
        return self.net(torch.cat([x, angles.sin(), angles.cos()], dim=1))


def _sample(model, scheduler, n: int, dim: int, steps: int, generator) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    x = torch.randn(n, dim, generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, t.expand(n))
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x


def train_peer(points: torch.Tensor, normalizer, scorer: Scorer, seconds: float, log) -> dict:
    """Train the peer for about `seconds` of training time, scoring every PEER_EVERY steps
    with both of its samplers; return its curves."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    x_train = normalizer.normalize(points)
    with seeded(0):  # the peer's initialisation, without touching the caller's RNG
        model = PeerMLP(x_train.shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEER_LR)
    train_schedule = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    samplers = {
        f"dpm-solver++ {PEER_SAMPLE_STEPS}": (
            DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear"),
            PEER_SAMPLE_STEPS,
        ),
        # clip_sample off: diffusers clips x0 to [-1, 1] by default, and standardised data
        # reach beyond that.
        "ddpm 1000": (
            DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False),
            1000,
        ),
    }
    generator = make_generator(1)
    curves: dict[str, list] = {name: [] for name in samplers}
    step, clock = 0, 0.0
    while clock < seconds:
        start = time.perf_counter()
        for _ in range(PEER_EVERY):
            idx = torch.randint(0, x_train.shape[0], (PEER_BATCH,), generator=generator)
            x0 = x_train[idx]
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, 1000, (PEER_BATCH,), generator=generator)
            loss = nn.functional.mse_loss(model(train_schedule.add_noise(x0, noise, t), t), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        step += PEER_EVERY
        clock += time.perf_counter() - start
        line = []
        for name, (scheduler, steps) in samplers.items():

            def draw(n, gen, scheduler=scheduler, steps=steps):
                x = _sample(model, scheduler, n, x_train.shape[1], steps, gen)
                return normalizer.denormalize(x)

            ratio = scorer(draw)
            curves[name].append((step, clock, ratio))
            line.append(f"{name} {ratio:.2f}")
        log(f"  peer step {step:6d} ({clock:5.1f} s): " + ", ".join(line))
    return {name: Curve(points) for name, points in curves.items()}


def peer_comparison(seconds: float, bar: float, log) -> dict:
    """Our default recipe and the peer on the swiss roll, in one run: time to ratio <= bar."""
    config = TrainConfig().validate()
    dataset = get_dataset(config.dataset)
    scorer = Scorer(dataset)
    ours_trainer, ours = train_with_curve(config, scorer, evaluations=20, dataset=dataset)
    log(f"  ours: {' '.join(f'{s:.1f}s:{r:.2f}' for _, s, r in ours.points)}")
    peer = train_peer(ours_trainer.data, ours_trainer.normalizer, scorer, seconds, log)
    best_name = min(peer, key=lambda k: min(r for _, _, r in peer[k].points))
    peer_time = min(
        (t for t in (c.time_to(bar) for c in peer.values()) if t is not None), default=None
    )
    ours_time = ours.time_to(bar)
    peer_budget = max(s for c in peer.values() for _, s, _ in c.points)
    speedup = None
    if ours_time is not None:
        speedup = (peer_time if peer_time is not None else peer_budget) / ours_time
    return {
        "bar": bar,
        "ours": {
            "time_to": ours_time,
            "curve": ours.to_json(),
            "train_s": round(ours_trainer.seconds, 2),
        },
        "peer": {
            "recipe": f"diffusers DDPMScheduler (linear, T=1000, eps), MLP 3x{PEER_WIDTH} ReLU, "
            f"batch {PEER_BATCH}, AdamW lr {PEER_LR}, no EMA",
            "time_to": peer_time,
            "trained_s": round(peer_budget, 2),
            "best_sampler": best_name,
            "best": min(r for _, _, r in peer[best_name].points),
            "curves": {k: c.to_json() for k, c in peer.items()},
        },
        # peer time / our time; a lower bound when the peer never reached the bar
        "speedup": speedup,
        "speedup_is_lower_bound": peer_time is None,
    }
