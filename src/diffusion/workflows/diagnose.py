"""`diffusion diagnose`: every diagnostic of `diffusion.measure.diagnostics` for one run, as files.

Writes into OUT (default RUN/diagnostics): error_by_time.png, nfe_curve.png,
memorisation.png, density.png and field.gif (2-D data only), and diagnostics.json with the
figures behind them. Without a mixture, the reference is the exact score of the training
set (at most `REFERENCE_POINTS` of its points, drawn at random), and "training point" in the
memorisation figure means a point of that subset.

The reference is always on the Gaussian path of independent noise. For a run trained with a
coupling (flow matching's default, minibatch optimal transport) the network learns another,
straighter field, so its error against the reference includes that difference; the printed
reference line and diagnostics.json say so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from diffusion.data import get_dataset
from diffusion.measure import diagnostics as dg
from diffusion.streams import stream, stream_seed
from diffusion.training.build import training_points
from diffusion.utils import atomic_write_text
from diffusion.viz import diagnostics as plots
from diffusion.viz.plots import compute_limits
from diffusion.workflows.exact import describe_reference, memoriser, reference

#: Training points kept for the training-set reference and the memoriser (a random subset
#: beyond this): each query of an empirical oracle costs one term per point.
REFERENCE_POINTS = 5000
#: Sampling steps of the quality-vs-NFE curve (capped at a DDPM's own steps).
CURVE_STEPS = (2, 4, 8, 16, 32, 64)
#: Noise levels sigma / alpha (standardised units) of the score-field frames, coarse to fine.
FIELD_NOISE = (3.0, 2.0, 1.4, 1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05)


def diagnose(trained, out: Path, *, n: int = 4000, seed: int = 0, progress: bool = True) -> dict:
    """Measure and draw where `trained` is wrong; returns the JSON summary written to OUT."""
    config = trained.config
    dataset = get_dataset(config.dataset)  # a run whose data are gone fails before any file
    out.mkdir(parents=True, exist_ok=True)
    train = training_points(config, dataset)[0]
    if train.shape[0] > REFERENCE_POINTS:  # the empirical oracle costs O(points) per query
        keep = torch.randperm(train.shape[0], generator=stream(seed, "diagnose.subset"))
        train = train[keep[:REFERENCE_POINTS]]
    exact, name = reference(trained, dataset, train)
    fresh = dataset.sample(n, stream(seed, "diagnose.fresh"))
    report: dict = {
        "run_dataset": config.dataset, "process": config.process,
        "coupling": trained.process.coupling, "reference": describe_reference(trained, name),
    }  # fmt: skip
    most = trained.process.discrete_steps  # a discrete process samples at most its own steps
    steps = [k for k in CURVE_STEPS if most is None or k <= most]
    tasks = ["error by time", "quality vs NFE", "prior mismatch", "memorisation"]
    if trained.dim == 2:
        tasks += ["density", "field"]
    bar = tqdm(tasks, desc="diagnose", disable=not progress)
    timings = {}
    for task in bar:
        bar.set_postfix_str(task)
        start = time.perf_counter()
        if task == "error by time":
            errors = dg.error_by_time(trained, exact, fresh, seed=seed)
            plots.plot_error_by_time(errors, out / "error_by_time.png", reference_name=name)
            report["error_by_time"] = {**errors.__dict__, **dg.summary(errors)}
        elif task == "quality vs NFE":
            curve = dg.nfe_curve(
                trained, exact, dataset, steps=steps, n=n, seed=stream_seed(seed, "diagnose.curve")
            )
            plots.plot_nfe_curve(curve, out / "nfe_curve.png", reference_name=name)
            report["nfe_curve"] = curve.__dict__
        elif task == "prior mismatch":
            report["prior_mismatch"] = dg.prior_mismatch(exact, n=n, seed=seed).__dict__
        elif task == "memorisation":
            samples = trained.sample(n, generator=stream(seed, "diagnose.samples")).x.cpu()
            memo = dg.memorisation(samples, fresh, train)
            copier = memoriser(trained, train)  # the training set's own exact score
            copied = copier.sample(min(n, 2000), generator=stream(seed, "diagnose.memoriser"))
            copies = dg.nearest_distances(copied.x.cpu(), train)
            plots.plot_memorisation(memo, out / "memorisation.png", copy_distances=copies)
            report["memorisation"] = {
                "median_ratio": memo.median_ratio,
                "memoriser_median_ratio": float(copies.median() / memo.fresh.median()),
                "median_sample_distance": float(memo.samples.median()),
                "median_fresh_distance": float(memo.fresh.median()),
            }
        elif task == "density":
            limits = compute_limits(fresh)
            grid = dg.density_grid(trained, dataset.mixture, limits)
            plots.plot_density(grid, out / "density.png", data=fresh.numpy())
            report["density"] = {"grid": len(grid.x), "limits": [list(limits.x), list(limits.y)]}
        elif task == "field":
            frames = dg.field_frames(
                trained, exact, compute_limits(fresh), noise_levels=list(FIELD_NOISE)
            )
            plots.field_gif(frames, out / "field.gif", reference_name=name)
        timings[task] = round(time.perf_counter() - start, 1)
    report["seconds"] = timings
    atomic_write_text(out / "diagnostics.json", json.dumps(report, indent=2) + "\n")
    return report
