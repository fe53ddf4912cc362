"""`diffusion compare`: several runs (trained here or loaded) side by side.

Writes into the output directory ``compare.png`` (data, then each run's samples, with its
process, sampler, NFE and sliced-Wasserstein ratio in the title), ``compare.gif`` (their
reverse processes side by side; points only) and ``compare.json`` (the figures). For images
the panels are image grids and the title gives the Fréchet ratio.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusion.data import get_dataset
from diffusion.io.runs import load_model
from diffusion.training.config import TrainConfig
from diffusion.training.trained import TrainedModel
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
    loaded: list[tuple[str, TrainedModel]] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train each config of `train` into out/<process>, then compare those runs, `run_dirs`
    and the `loaded` (name, model) pairs (e.g. a diffusers model opened on the same data)."""
    out = Path(out)
    device = default_device()
    models = [(run_dir, load_model(run_dir)) for run_dir in run_dirs]  # bad runs fail first
    models += list(loaded or [])
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
        row = {"run": str(run_dir), "process": c.process, "sampler": c.sampler,
               "steps": c.sample_steps, "nfe": result.nfe, "sw_ratio": ratio}  # fmt: skip
        if result.image is not None:
            row["frechet_ratio"] = result.image["frechet"]["ratio"]
            panels.append((f"{label}\nFréchet ratio {row['frechet_ratio']:.2f}", result.samples))
        else:
            panels.append((f"{label}\nSW ratio {ratio:.2f}", result.samples))
            tracks.append((c.process, reverse_trajectory(model, seed=seed, device=device)))
        rows.append(row)
    if dataset.is_image:
        data = ("data", dataset.sample(64, make_generator(seed)))
        save_image_panels(dataset, [data, *panels], slice(64), out / "compare.png",
                          title=f"{dataset.name}: samples side by side")  # fmt: skip
    else:
        data = points_to_show(dataset, seed)
        plot_compare(data, panels, out / "compare.png")
        compare_gif(data, tracks, out / "compare.gif")
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    return rows


def compare_guidance(
    run_dir: Path, scales: list[float], out: Path, *, n: int = 5000, seed: int = 1
) -> list[dict]:
    """One conditional run sampled at each guidance scale w of `scales`, side by side.

    Every scale samples the same classes (drawn in the data's proportions, as `evaluate`
    does) from the same prior draw, so the panels differ by w alone. Per scale: the NFE, the
    sliced-Wasserstein ratio of all samples against fresh data (at w = 1 the data law itself
    is sampled), for a mixture the median over classes of each class's ratio against its own
    component, and for images the Fréchet ratio and the share of samples the toolkit's
    classifier assigns to the class asked for. Writes compare.png and compare.json into
    `out`."""
    import statistics

    import torch

    from diffusion.measure.metrics import compare_to_data
    from diffusion.streams import stream
    from diffusion.workflows.run import class_draws

    out = Path(out)
    model = load_model(run_dir)
    if not model.classes:
        raise ValueError(f"--guidance needs a run trained with labels; {run_dir} is "
                         "unconditional")  # fmt: skip
    dataset = get_dataset(model.config.dataset)
    device = default_device()
    label = class_draws(model, dataset, n, seed)
    if dataset.is_image:
        from diffusion.workflows.image_metrics import feature_net, image_metrics, to_unit_range

        classifier = feature_net(dataset)
    rows, panels = [], []
    for w in scales:
        result = model.sample(n, label=label, guidance=w, generator=stream(seed, "eval", device),
                              device=device)  # fmt: skip
        samples = result.x.cpu()
        ratio = compare_to_data(
            samples, dataset.sample, stream(seed, "metrics")
        ).sliced_wasserstein.ratio
        row = {"run": str(run_dir), "guidance": w, "nfe": result.nfe, "sw_ratio": ratio}
        if dataset.mixture is not None:  # each class against its own component
            per_class = []
            for c in range(model.classes):
                own = dataset.mixture.select([c])
                mine = samples[label == c]
                if mine.shape[0] >= 2:
                    report = compare_to_data(mine, own.sample, stream(seed, "metrics"))
                    per_class.append(report.sliced_wasserstein.ratio)
            row["class_sw_ratio_median"] = statistics.median(per_class)
        if dataset.is_image:
            metrics = image_metrics(samples, dataset, stream(seed, "metrics.images"))
            row["frechet_ratio"] = metrics["frechet"]["ratio"]
            images = to_unit_range(samples.round(), dataset)
            row["accuracy"] = float((classifier(images).argmax(1) == label).double().mean())
        rows.append(row)
        title = f"w = {w:g} ({result.nfe} NFE)\nSW ratio {ratio:.2f}"
        if "accuracy" in row:
            title = (
                f"w = {w:g}: Fréchet {row['frechet_ratio']:.2f}, {100 * row['accuracy']:.1f}% right"
            )
        panels.append((title, samples))
    if dataset.is_image:
        order = torch.argsort(label, stable=True)[:: max(1, n // 64)][:64]  # sorted by class
        save_image_panels(dataset, panels, order, out / "compare.png",
                          title=f"{model.config.dataset}: guidance scales")  # fmt: skip
    else:
        plot_compare(points_to_show(dataset, seed), panels, out / "compare.png")
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    return rows


def points_to_show(dataset, seed: int):
    """The data points drawn beside the samples: a finite set's own, else 5,000 fresh ones."""
    return dataset.sample(5000, make_generator(seed)) if dataset.points is None else dataset.points


def save_image_panels(dataset, panels, pick, path: Path, *, title: str) -> None:
    """One image grid per (title, images) panel, each showing the rows `pick` selects."""
    from diffusion.viz.images import grids_figure, image_grid
    from diffusion.viz.plots import save_png

    grids = [(name, image_grid(x[pick], dataset.shape, dataset.value_range))
             for name, x in panels]  # fmt: skip
    save_png(grids_figure(grids, title=title), path)
