"""`diffusion compare`: several runs (trained here or loaded) side by side.

Writes into the output directory ``compare.png`` (data, then each run's samples, with its
process, sampler, NFE and sliced-Wasserstein ratio in the title), ``compare.gif`` (their
reverse processes side by side) and ``compare.json`` (the figures).
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusion.data import get_dataset
from diffusion.io.runs import load_model
from diffusion.training.config import TrainConfig
from diffusion.utils import atomic_write_text, default_device, make_generator
from diffusion.viz.compare import compare_gif, plot_compare
from diffusion.workflows.run import evaluate, reverse_trajectory, run_training


def compare_runs(
    run_dirs: list[Path],
    out: Path,
    *,
    n: int = 5000,
    seed: int = 1,
    train: list[TrainConfig] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train each config of `train` into out/<process>, then compare those runs and `run_dirs`."""
    out = Path(out)
    device = default_device()
    models = [(run_dir, load_model(run_dir)) for run_dir in run_dirs]  # bad runs fail first
    for config in train or []:
        run_dir = out / config.process
        if progress:
            print(f"training {config.process} on {config.dataset} -> {run_dir}", flush=True)
        run_training(config, run_dir, progress=progress)
        models.append((run_dir, load_model(run_dir)))
    datasets = {m.config.dataset for _, m in models}
    if len(datasets) > 1:
        raise ValueError(f"runs of different data sets cannot share a picture: {sorted(datasets)}")
    dataset = get_dataset(datasets.pop())
    rows, panels, tracks = [], [], []
    for run_dir, model in models:
        result = evaluate(model, dataset, n=n, seed=seed, device=device)
        ratio = result.metrics.sliced_wasserstein.ratio
        c = model.config
        label = f"{c.process}, {c.sampler} ({result.nfe} NFE)"
        panels.append((f"{label}\nSW ratio {ratio:.2f}", result.samples))
        tracks.append((c.process, reverse_trajectory(model, seed=seed, device=device)))
        rows.append({"run": str(run_dir), "process": c.process, "sampler": c.sampler,
                     "steps": c.sample_steps, "nfe": result.nfe, "sw_ratio": ratio})  # fmt: skip
    data = dataset.sample(5000, make_generator(seed)) if dataset.points is None else dataset.points
    plot_compare(data, panels, out / "compare.png")
    compare_gif(data, tracks, out / "compare.gif")
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    return rows
