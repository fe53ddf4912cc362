"""Classifier-free guidance, measured: exactly on a 2-D mixture, and on the digits.

    python benchmarks/guidance.py --json benchmarks/guidance.json     # ~9 min on 2 cores
    python benchmarks/guidance.py --part exact                        # the mixture part, ~1 min
    python benchmarks/guidance.py --part digits --curves docs/images/guidance/curves.png
    python benchmarks/guidance.py --redraw --json benchmarks/guidance.json \
        --points-curve docs/images/guidance/points_curve.png         # pictures only

**Exact (2-D).** A random 5-component full-covariance mixture (not an example file), each
component a class. With the exact guided field (`GuidedOracleDenoiser`):
(a) w = 1 samples of each class against the class's own component: sliced-Wasserstein ratio,
10 draws of 4,000 a class, for vp, edm and flow, at 20 and 39 evaluations (DPM-Solver++ on
the log-SNR grid) and at 39 (Heun on the Karras grid and on the process's own). The figure
is the median over classes and draws, next to the same for fresh draws of each class (what
a perfect sampler scores); one draw's ratio spreads by about +-20% either way;
(b) w > 1 samples against the "tilted" law p(x | c)^w p(x)^(1 - w), normalised on a fine grid
and drawn from it: how far guided sampling is from the law it is often said to sample, next
to how far it is from the class itself. `--figure` draws both.

**Points.** A conditional network on `eight_gaussians` (the default recipe, 8 classes):
per-class SW ratio against the class's own component, against w.

**Digits.** The default digits run (conditional, label dropout 0.3) and the same recipe
without labels, trained in this process. For w in 0, 1, 1.5, 2, 3, 4: the share of samples
(classes in equal shares) that the toolkit's digits classifier assigns to the class asked
for, and the Fréchet ratio of all of them (`image_metrics`; median of 3 draws, of 10 for
w = 0 and the network trained without labels, which the bar compares to 10%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from oracle import random_mixture  # benchmarks/oracle.py

from diffusion.data import get_dataset
from diffusion.measure.metrics import SlicedWassersteinRatio, compare_to_data
from diffusion.measure.oracle import Oracle
from diffusion.streams import stream
from diffusion.training.config import TrainConfig
from diffusion.utils import make_generator
from diffusion.workflows.exact import exact_model

N = 4000
#: draws per class: one draw's ratio spreads by about +-20% even for a perfect sampler
#: (`compare_to_data`), so each figure is a median over draws
DRAWS = 10
RECIPES = (
    ("dpm-solver++", 20, "logsnr"),
    ("dpm-solver++", 39, "logsnr"),
    ("heun", 20, "karras"),
    ("heun", 20, None),
)
SCALES = (2.0, 4.0)
GRID = 500  # cells per side of the grid the tilted law is drawn on
#: draws for the rows compared with the unconditional network (w = 0 and that network)
UNCONDITIONAL_DRAWS = 10


def tilted_sampler(mixture, c: int, w: float, box: tuple[float, float, float, float]):
    """A sampler of p(x | c)^w p(x)^(1 - w) (n, 2), normalised on a GRID x GRID grid over box:
    each draw picks a cell by its mass, then a uniform point inside it."""
    x0, x1, y0, y1 = box
    xs, ys = torch.linspace(x0, x1, GRID + 1), torch.linspace(y0, y1, GRID + 1)
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    points = torch.stack(torch.meshgrid(cx, cy, indexing="ij"), -1).reshape(-1, 2).double()
    ones, zeros = torch.ones(points.shape[0]), torch.zeros(points.shape[0])
    log_p = Oracle(mixture).exact_at(points, ones, zeros).log_prob
    log_c = Oracle(mixture.select([c])).exact_at(points, ones, zeros).log_prob
    weights = torch.softmax(w * log_c + (1 - w) * log_p, 0)
    dx, dy = float(xs[1] - xs[0]), float(ys[1] - ys[0])

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        cells = torch.multinomial(weights, n, replacement=True, generator=generator)
        jitter = torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5
        return (points[cells] + jitter * torch.tensor([dx, dy])).float()

    return draw


def exact_part(seed: int, figure: Path | None) -> dict:
    spec = random_mixture(seed, k=5)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixture.json"
        path.write_text(json.dumps(spec))
        dataset = get_dataset(path)
    mixture = dataset.mixture
    k = mixture.n_components
    out = {"mixture": spec, "conditional": [], "tilted": []}
    print(f"(a) w = 1 against each class's own component: SW ratio, {DRAWS} draws a class")

    # draw r of class c is scored against data draws and directions of its own (as
    # `compare_to_data` does), the same ones for every sampler
    scores = {(c, r): SlicedWassersteinRatio(mixture.select([c]).sample, N,
                                             stream(100 * c + r, "metrics"))
              for c in range(k) for r in range(DRAWS)}  # fmt: skip

    def ratios_of(draw) -> dict:
        """Ratios of `DRAWS` draws of every class: the median over all of them, and per class."""
        per_class = [[scores[c, r](draw(c, r)) for r in range(DRAWS)] for c in range(k)]
        pooled = [ratio for ratios in per_class for ratio in ratios]
        return {"median": round(statistics.median(pooled), 3),
                "per_class": [round(statistics.median(r), 3) for r in per_class]}  # fmt: skip

    def show(name: str, row: dict) -> None:
        print(f"  {name:38s} median {row['median']:.3f}  worst class "
              f"{max(row['per_class']):.3f}  per class {row['per_class']}", flush=True)  # fmt: skip

    # fresh draws of the class in place of samples: what a perfect sampler scores
    out["control"] = ratios_of(
        lambda c, r: mixture.select([c]).sample(N, make_generator(600 + 10 * r + c))
    )
    show("fresh class draws (a perfect sampler)", out["control"])
    for process in ("vp", "edm", "flow"):
        model = exact_model(mixture, TrainConfig(dataset=str(path), process=process))
        for sampler, steps, grid in RECIPES:
            nfe = []

            def draw(c: int, r: int, model=model, recipe=(sampler, steps, grid), nfe=nfe):
                result = model.sample(N, label=torch.full((N,), c), guidance=1.0,
                                      sampler=recipe[0], steps=recipe[1], grid=recipe[2],
                                      generator=make_generator(100 + 10 * r + c))  # fmt: skip
                nfe.append(result.nfe)
                return result.x

            row = {"process": process, "sampler": sampler, "steps": steps,
                   "grid": grid or model.config.sample_grid, **ratios_of(draw)}  # fmt: skip
            row["nfe"] = nfe[0]
            out["conditional"].append(row)
            show(f"{process} {sampler} {steps} {row['grid']} (NFE {row['nfe']})", row)
    print("(b) w > 1 (flow, exact, DPM-Solver++ 20 log-SNR): SW ratio against the tilted law "
          "p(x|c)^w p(x)^(1-w) and against the class")  # fmt: skip
    model = exact_model(mixture, TrainConfig(dataset=str(path), process="flow"))
    lo = (mixture.means - 4 * mixture.eigenvalues.sqrt().max()).min(0).values
    hi = (mixture.means + 4 * mixture.eigenvalues.sqrt().max()).max(0).values
    box = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    drawn = {}
    for w in SCALES:
        for c in range(k):
            guided = model.sample(N, label=torch.full((N,), c), guidance=w, sampler="dpm-solver++",
                                  steps=20, grid="logsnr", generator=make_generator(200 + c)).x  # fmt: skip
            tilted = tilted_sampler(mixture, c, w, box)
            to_tilted = compare_to_data(guided, tilted, make_generator(500 + c))
            control = compare_to_data(tilted(N, make_generator(300 + c)), tilted,
                                      make_generator(500 + c))  # fmt: skip
            to_class = compare_to_data(guided, mixture.select([c]).sample, stream(c, "metrics"))
            row = {"w": w, "class": c,
                   "sw_ratio_to_tilted": round(to_tilted.sliced_wasserstein.ratio, 2),
                   "sw_ratio_tilted_draws_to_tilted": round(control.sliced_wasserstein.ratio, 2),
                   "sw_ratio_to_class": round(to_class.sliced_wasserstein.ratio, 2),
                   "guided_std": [round(v, 3) for v in guided.std(0).tolist()],
                   "tilted_std": [round(v, 3) for v in tilted(N, make_generator(1)).std(0).tolist()],
                   "class_std": [round(v, 3) for v in mixture.select([c]).sample(N, make_generator(2)).std(0).tolist()]}  # fmt: skip
            out["tilted"].append(row)
            drawn[(w, c)] = (guided, tilted(N, make_generator(400 + c)))
            print(f"  w {w:g} class {c}: to tilted {row['sw_ratio_to_tilted']:7.2f} (tilted draws "
                  f"{row['sw_ratio_tilted_draws_to_tilted']:.2f}), to class "
                  f"{row['sw_ratio_to_class']:7.2f}; std guided {row['guided_std']} tilted "
                  f"{row['tilted_std']} class {row['class_std']}", flush=True)  # fmt: skip
    if figure is not None:
        draw_figure(mixture, drawn, box, figure)
    return out


def draw_figure(mixture, drawn: dict, box, path: Path) -> None:
    from diffusion.viz.plots import new_figure, save_png

    scales = sorted({w for w, _ in drawn})
    c = max(range(mixture.n_components), key=lambda k: float(mixture.weights[k]))
    fig = new_figure(4.2 * len(scales), 4.2)
    axes = fig.subplots(1, len(scales), squeeze=False)[0]
    data = mixture.sample(3000, make_generator(5))
    for ax, w in zip(axes, scales, strict=True):
        guided, tilted = drawn[(w, c)]
        ax.scatter(*data.T, s=1, c="0.8", label="data (all classes)")
        ax.scatter(*tilted[:1500].T, s=2, c="tab:orange", alpha=0.5,
                   label="p(x|c)^w p(x)^(1-w)")  # fmt: skip
        ax.scatter(*guided[:1500].T, s=2, c="tab:blue", alpha=0.5, label="guided samples")
        ax.set_title(f"class {c}, w = {w:g}", fontsize=10)
        ax.set_xlim(box[0], box[1])
        ax.set_ylim(box[2], box[3])
        ax.set_aspect("equal")
    axes[0].legend(loc="lower left", fontsize=8, markerscale=4)
    fig.suptitle("Exact classifier-free guidance does not sample the tilted law", fontsize=11)
    save_png(fig, path)


def draw_curves(out: dict, path: Path) -> None:
    """Accuracy and Fréchet ratios of the conditional digits network against w."""
    from diffusion.viz.plots import new_figure, save_png

    rows = [row for row in out["rows"] if row["model"] == "conditional" and row["w"]]
    scales = [row["w"] for row in rows]
    fig = new_figure(9, 3.6)
    left, right = fig.subplots(1, 2)
    left.plot(scales, [100 * row["accuracy"] for row in rows], "o-", c="tab:blue")
    left.axhline(100 * out["classifier_accuracy_on_held_out"], c="0.5", ls="--", lw=1,
                 label="the classifier on real digits")  # fmt: skip
    left.set(xlabel="guidance scale w", ylabel="samples of the class asked for (%)")
    left.legend(fontsize=8, loc="lower right")
    right.plot(scales, [row["frechet_ratio"] for row in rows], "o-", label="all classes")
    right.plot(scales, [row["class_frechet_median"] for row in rows], "s--",
               label="per class (median)")  # fmt: skip
    unconditional = next(r for r in out["rows"] if r["model"] == "unconditional")
    right.axhline(unconditional["frechet_ratio"], c="0.5", ls=":", lw=1,
                  label="network trained without labels")  # fmt: skip
    right.axhline(1, c="0.7", lw=0.8)
    right.set(xlabel="guidance scale w", ylabel="Fréchet ratio (1 = real vs real)")
    right.legend(fontsize=8)
    fig.suptitle("Conditional digits: fidelity against diversity", fontsize=11)
    save_png(fig, path)


def draw_points_curve(out: dict, path: Path) -> None:
    """Per-class SW ratios of the conditional eight_gaussians network against w."""
    from diffusion.viz.plots import new_figure, save_png

    rows = out["rows"]
    scales = [row["w"] for row in rows]
    fig = new_figure(5, 3.6)
    ax = fig.subplots()
    low = [min(row["sw_ratio_per_class"]) for row in rows]
    high = [max(row["sw_ratio_per_class"]) for row in rows]
    ax.fill_between(scales, low, high, color="tab:blue", alpha=0.2, label="classes, min to max")
    ax.plot(scales, [row["median"] for row in rows], "o-", c="tab:blue", label="median class")
    ax.axhline(1, c="0.5", lw=0.8, ls="--", label="the statistical floor")
    ax.set(yscale="log", xlabel="guidance scale w",
           ylabel="SW ratio against the class's own component")  # fmt: skip
    ax.legend(fontsize=8)
    ax.set_title("eight_gaussians, conditional: each class against w", fontsize=10)
    save_png(fig, path)


def digits_part(seeds: int = 3) -> dict:
    from diffusion.workflows import api
    from diffusion.workflows.image_metrics import feature_net, image_metrics, to_unit_range

    dataset = get_dataset("digits")
    net = feature_net(dataset)
    real = to_unit_range(torch.cat([dataset.points, dataset.held_out]), dataset)
    real_labels = torch.cat([dataset.labels, get_held_out_labels(dataset)])
    out = {}
    runs = {}
    for name, settings in (("conditional", {}), ("unconditional", {"labels": "off"})):
        tic = time.perf_counter()
        runs[name] = api.train("digits", progress=False, **settings)
        out[f"{name}_train_seconds"] = round(time.perf_counter() - tic, 1)
        print(f"trained the {name} digits model in {out[name + '_train_seconds']} s", flush=True)
    rows = []
    for name, w in [
        ("unconditional", None),
        *[("conditional", w) for w in (0.0, 1.0, 1.5, 2.0, 3.0, 4.0)],
    ]:
        model = runs[name].model
        ratios, accuracies, per_class, nfe = [], [], [], 0
        # w = 0 and the unconditional network: one draw's Fréchet ratio spreads by +-20%, and
        # the bar compares the two to 10%, so these rows take the median of UNCONDITIONAL_DRAWS
        draws = seeds if w else UNCONDITIONAL_DRAWS
        for seed in range(1, draws + 1):
            label = None if not w else torch.arange(2000) * 10 // 2000
            result = model.sample(2000, label=label, guidance=w or 1.0,
                                  generator=stream(seed, "eval"))  # fmt: skip
            metrics = image_metrics(result.x, dataset, stream(seed, "metrics.images"))
            ratios.append(metrics["frechet"]["ratio"])
            nfe = result.nfe
            if label is not None:
                images = to_unit_range(result.x.round(), dataset)
                accuracies.append(float((net(images).argmax(1) == label).double().mean()))
                per_class.append(class_frechet(net, images, label, real, real_labels,
                                               stream(seed, "metrics.classes")))  # fmt: skip
        row = {"model": name, "w": w, "nfe": nfe, "frechet_ratio": statistics.median(ratios),
               "frechet_ratios": [round(r, 3) for r in ratios],
               "accuracy": statistics.median(accuracies) if accuracies else None}  # fmt: skip
        if per_class:  # per class: the median over draws; then the median over classes
            row["class_frechet_ratios"] = [round(statistics.median(draws), 2)
                                           for draws in zip(*per_class, strict=True)]  # fmt: skip
            row["class_frechet_median"] = statistics.median(row["class_frechet_ratios"])
        rows.append(row)
        shown = f"{row['accuracy']:.3f}" if row["accuracy"] is not None else "  -  "
        by_class = (f"  per class median {row['class_frechet_median']:.2f} "
                    f"{row['class_frechet_ratios']}" if per_class else "")  # fmt: skip
        print(f"  {name:13s} w {'-' if w is None else f'{w:g}':>3s}  NFE {nfe:3d}  accuracy {shown}  "
              f"FD ratio {row['frechet_ratio']:.3f} {row['frechet_ratios']}{by_class}", flush=True)  # fmt: skip
    held = to_unit_range(dataset.held_out, dataset)
    out["classifier_accuracy_on_held_out"] = float(
        (net(held).argmax(1) == get_held_out_labels(dataset)).double().mean()
    )
    print(
        f"  (the classifier on the held-out real digits: {out['classifier_accuracy_on_held_out']:.3f})"
    )
    out["rows"] = rows
    return out


def class_frechet(net, images, labels, real, real_labels, generator) -> list[float]:
    """The Fréchet ratio of each class's samples against the real images of that class (all
    1,797 digits, ~180 a class: every set cut to ~90 images, so noisier than the overall
    ratio; medians of 25 splits as always)."""
    from diffusion.measure.images import frechet_ratio

    return [frechet_ratio(net, images[labels == c], real[real_labels == c], generator).ratio
            for c in range(int(real_labels.max()) + 1)]  # fmt: skip


def get_held_out_labels(dataset) -> torch.Tensor:
    """The labels of the digits' held-out split (the data set keeps the training labels)."""
    from diffusion.data import held_out_split
    from diffusion.data.images import load_digits

    images = load_digits()
    return images.labels[held_out_split(images.pixels.shape[0])[1]]


def points_part(seeds: int = 3) -> dict:
    """A conditional network on `eight_gaussians` (8 classes), default recipe: per-class SW
    ratio against the class's own component, against w (medians of `seeds` draws)."""
    from diffusion.workflows import api

    tic = time.perf_counter()
    run = api.train("eight_gaussians", progress=False)
    out = {"train_seconds": round(time.perf_counter() - tic, 1), "rows": []}
    print(f"trained the conditional eight_gaussians model in {out['train_seconds']} s")
    mixture = get_dataset("eight_gaussians").mixture
    for w in (0.0, 1.0, 1.5, 2.0, 3.0):
        per_class = []
        for c in range(8):
            ratios = []
            for seed in range(1, seeds + 1):
                x = run.model.sample(N, label=torch.full((N,), c), guidance=w,
                                     generator=make_generator(1000 * seed + c)).x  # fmt: skip
                report = compare_to_data(x, mixture.select([c]).sample, stream(seed, "metrics"))
                ratios.append(report.sliced_wasserstein.ratio)
            per_class.append(round(statistics.median(ratios), 2))
        row = {"w": w, "sw_ratio_per_class": per_class, "median": statistics.median(per_class)}
        out["rows"].append(row)
        print(f"  w {w:g}: per-class SW ratio median {row['median']:.2f}, per class {per_class}",
              flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("exact", "points", "digits", "all"), default="all")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random mixture")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the tilted-law figure")
    parser.add_argument("--curves", type=Path, default=None,
                        help="PNG of the digits' accuracy and Fréchet ratios against w")  # fmt: skip
    parser.add_argument("--points-curve", type=Path, default=None,
                        help="PNG of the 2-D per-class SW ratios against w")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write (or update) the figures here")
    parser.add_argument("--redraw", action="store_true",
                        help="measure nothing: draw --curves and --points-curve from --json")  # fmt: skip
    args = parser.parse_args()
    if args.redraw:
        saved = json.loads(args.json.read_text())
        if args.curves is not None:
            draw_curves(saved["digits"], args.curves)
        if args.points_curve is not None:
            draw_points_curve(saved["points"], args.points_curve)
        return
    torch.set_num_threads(2)
    report = {}
    if args.part in ("exact", "all"):
        report["exact"] = exact_part(args.seed, args.figure)
    if args.part in ("points", "all"):
        report["points"] = points_part()
        if args.points_curve is not None:
            draw_points_curve(report["points"], args.points_curve)
    if args.part in ("digits", "all"):
        report["digits"] = digits_part()
        if args.curves is not None:
            draw_curves(report["digits"], args.curves)
    if args.json:  # the parts run replace theirs; the others stay as they were
        kept = json.loads(args.json.read_text()) if args.json.exists() else {}
        args.json.write_text(json.dumps({**kept, **report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
