"""Images: time to quality of the default digits recipe beside the recipe a user would pick
instead (diffusers' UNet2DModel + DDPMScheduler, as its unconditional-training example does),
quality against network evaluations, and training cost against image size.

    python benchmarks/images.py --json benchmarks/images.json            # ~12 min on 2 cores
    python benchmarks/images.py --quick                                  # a smoke run, ~2 min

Both recipes train in this process on the same 1,527 training digits (scaled to [-1, 1]),
with the same clock (the training loop only; scoring pauses it) and the same scorer: the
toolkit's Fréchet ratio in its digits classifier's features (`diffusion.measure.images`;
1.0 = two halves of the real digits) at 2,000 samples. diffusers is a test/benchmark extra.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffusion.data import get_dataset
from diffusion.measure.images import frechet_ratio
from diffusion.models.mlp import seeded
from diffusion.streams import stream
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
from diffusion.training.trained import TrainedModel
from diffusion.workflows.image_metrics import feature_net, to_unit_range

N_SCORE = 2000  # samples per score


def score(samples: torch.Tensor, dataset, net) -> float:
    """The Fréchet ratio of samples (n, 64) in data units against all real digits, rounded to
    the 17 grey levels first as the run's own metric does (`image_metrics`)."""
    samples = samples.round() if dataset.quantised else samples
    pool = torch.cat([dataset.points, dataset.held_out])
    ratio = frechet_ratio(net, to_unit_range(samples, dataset), to_unit_range(pool, dataset),
                          torch.Generator().manual_seed(0))  # fmt: skip
    return ratio.ratio


def ours(dataset, net, every: int, log, steps: int | None = None) -> dict:
    """The default digits recipe (`steps` to cut it short), scored every `every` steps at its
    default sampler, at about 20 and at about 50 evaluations (Heun, 10 and 25 steps)."""
    config = TrainConfig(dataset="digits", snapshot_every=10**6, checkpoint_every=0)
    config.train_steps = steps or config.train_steps
    trainer = Trainer(config, dataset)
    curve = []
    while trainer.step < config.train_steps:
        trainer.run(progress=False, until=min(config.train_steps, trainer.step + every))
        trained = TrainedModel(config, trainer.process, trainer.ema, trainer.normalizer,
                               trainer.dim, trainer.shape)  # fmt: skip
        row = {"step": trainer.step, "train_seconds": round(trainer.seconds, 1)}
        for label, steps in (("default", None), ("nfe~20", 10), ("nfe~50", 25)):
            result = trained.sample(N_SCORE, steps=steps, generator=stream(0, "eval"))
            row[f"fd {label}"] = round(score(result.x, dataset, net), 3)
            row[f"nfe {label}"] = result.nfe
        log(f"ours  {row}")
        curve.append(row)
    return {"recipe": f"{config.process}, U-Net {config.unet_channels} channels, "
                      f"batch {config.batch_size}, lr {config.lr}, {config.train_steps} steps",
            "curve": curve}  # fmt: skip


def peer(dataset, net, seconds: float, every: float, log) -> dict:
    """diffusers' UNet2DModel (channels 32/64, attention at 4x4, 2 blocks per level: 0.7 M
    parameters) with DDPMScheduler (cosine betas, T = 1000, eps), AdamW 1e-3, batch 128,
    EMA 0.999 with warmup; sampled with DDIM at 50 and at 20 steps."""
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    x_train = to_unit_range(dataset.points, dataset)  # (N, 1, 8, 8)
    with seeded(0):
        model = UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, layers_per_block=2,
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
        )  # fmt: skip
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    generator = torch.Generator().manual_seed(0)
    params = sum(p.numel() for p in model.parameters())
    curve, trained_for, step, next_score = [], 0.0, 0, every
    while trained_for < seconds:
        start = time.perf_counter()
        index = torch.randint(x_train.shape[0], (128,), generator=generator)
        x0 = x_train[index]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(1000, (128,), generator=generator)
        loss = (model(schedule.add_noise(x0, noise, t), t).sample - noise).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema[k].lerp_(v, 1 - decay) if v.is_floating_point() else ema[k].copy_(v)
        trained_for += time.perf_counter() - start
        if trained_for >= next_score or trained_for >= seconds:
            next_score += every
            row = {"step": step, "train_seconds": round(trained_for, 1)}
            live = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)
            for steps in (50, 20):
                x = ddim(model, DDIMScheduler.from_config(schedule.config), steps)
                back = (x.clamp(-1, 1) + 1) * 8  # to grey levels 0..16
                row[f"fd ddim {steps}"] = round(score(back.reshape(N_SCORE, -1), dataset, net), 3)
            model.load_state_dict(live)
            log(f"peer  {row}")
            curve.append(row)
    return {"recipe": f"diffusers UNet2DModel ({params:_} parameters), DDPMScheduler cosine, "
                      "eps, AdamW 1e-3, batch 128, EMA 0.999; DDIM", "curve": curve}  # fmt: skip


def ddim(model, scheduler, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    x = torch.randn(N_SCORE, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t).sample, t, x).prev_sample
    return x


def time_to(curve: list[dict], key: str, target: float) -> float | None:
    """The first training time at which `key` reaches `target` or better."""
    return next((row["train_seconds"] for row in curve if row[key] <= target), None)


SIZE_SCRIPT = """
import resource, sys, time, torch
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
name = sys.argv[1]
config = TrainConfig(dataset=name, train_steps=30, n_train=2000, snapshot_every=10**6,
                     checkpoint_every=0)
trainer = Trainer(config)
trainer.run(progress=False, until=5)  # warm-up
start = time.perf_counter()
trainer.run(progress=False, until=30)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
params = sum(p.numel() for p in trainer.model.parameters())
print(f"{25 / seconds:.2f} {peak:.0f} {params}")
"""


def sizes(log) -> list[dict]:
    """Training steps per second and peak memory (RSS, one process each) per image size."""
    rows = []
    for name, side in (("digits", 8), ("shapes", 16), ("shapes32", 32)):
        out = subprocess.run([sys.executable, "-c", SIZE_SCRIPT, name], capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
        row = {"dataset": name, "side": side, "steps_per_second": float(out[0]),
               "peak_rss_mib": float(out[1]), "parameters": int(out[2])}  # fmt: skip
        log(f"size  {row}")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--peer-seconds", type=float, default=240.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = get_dataset("digits")
    net = feature_net(dataset)

    def log(text: str) -> None:
        print(text, flush=True)

    peer_seconds = 20.0 if args.quick else args.peer_seconds
    report = {"machine": f"{torch.get_num_threads()} threads", "n_score": N_SCORE}
    if args.quick:
        report["ours"] = ours(dataset, net, every=50, log=log, steps=100)
    else:
        report["ours"] = ours(dataset, net, every=150, log=log)
    report["peer"] = peer(dataset, net, peer_seconds, every=peer_seconds / 4, log=log)
    final = report["peer"]["curve"][-1]
    target = final["fd ddim 50"]
    reached = {key: time_to(report["ours"]["curve"], key, target)
               for key in ("fd default", "fd nfe~20", "fd nfe~50")}  # fmt: skip
    report["time_to_peer_final"] = {
        "peer_fd_ddim50": target, "peer_seconds": final["train_seconds"], "ours_seconds": reached,
        "speed_up": {k: (final["train_seconds"] / v if v else None) for k, v in reached.items()},
    }  # fmt: skip
    log(f"time to the peer's final quality {report['time_to_peer_final']}")
    if not args.quick:
        report["sizes"] = sizes(log)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
