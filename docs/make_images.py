"""Regenerate the README pictures from a default training run.

    python docs/make_images.py [--run DIR] [--compare-runs DIR ...]
                               [--only main|compare|diagnostics|gallery|guidance]

Trains `diffusion train` with its defaults into a temporary run directory (or uses --run),
then copies training.gif, reverse.gif and samples.png into docs/images/. Then runs
`diffusion compare` on the vp, edm, flow and poisson recipes (trained here, or the runs
given with --compare-runs) and copies compare.png and compare.gif. Then trains the edm
recipe on docs/examples/mixture.json, runs `diffusion diagnose` on it and copies its pictures
into docs/images/diagnostics/. Last, trains the README gallery's recipes (`GALLERY_RUNS`: the
defaults of `diffusion train`, DDIM for DDPM) and copies their GIFs into docs/images/gallery/,
refusing (exit status 1) any GIF over `GALLERY_MAX_BYTES`. `--only guidance` draws the
exact guided reverse process on a three-class mixture (docs/images/guidance/, no training).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from diffusion.cli import main as cli

IMAGES = Path(__file__).resolve().parent / "images"
FILES = ("training.gif", "reverse.gif", "samples.png")
MIXTURE = Path(__file__).resolve().parent / "examples" / "mixture.json"
DIAGNOSTICS = ("error_by_time.png", "nfe_curve.png", "memorisation.png", "density.png", "field.gif")
GALLERY = IMAGES / "gallery"
GALLERY_MAX_BYTES = 400_000  # the README loads every gallery GIF at once: keep each small
# (process, data set, options, GIFs to copy): one family per toy set, trained with the CLI's
# defaults and these options.
GALLERY_RUNS = (
    ("flow", "pinwheel", (), ("reverse.gif",)),
    ("edm", "moons", (), ("reverse.gif",)),
    ("poisson", "checkerboard", (), ("reverse.gif", "training.gif")),
    # DDIM (eta = 0): ancestral sampling draws fresh noise at every step, so its frames differ
    # pixel by pixel and its reverse.gif is over 500 kB.
    (
        "ddpm",
        "eight_gaussians",
        ("--sampler", "ddim", "--sample-steps", "50"),
        ("reverse.gif", "training.gif"),
    ),
)


def diagnostics_images(tmp: Path) -> None:
    """Train the edm recipe on the example mixture, diagnose it, copy the pictures."""
    run = tmp / "mixture-run"
    if cli(["train", "--dataset", str(MIXTURE), "--process", "edm", "--out", str(run),
            "--quiet"]) != 0:  # fmt: skip
        raise SystemExit("training on the mixture failed")
    if cli(["diagnose", "--run", str(run), "--quiet"]) != 0:
        raise SystemExit("diagnose failed")
    (IMAGES / "diagnostics").mkdir(parents=True, exist_ok=True)
    for name in DIAGNOSTICS:
        shutil.copyfile(run / "diagnostics" / name, IMAGES / "diagnostics" / name)
        print(f"wrote {IMAGES / 'diagnostics' / name}")


def gallery_images(tmp: Path) -> None:
    """Train each gallery recipe, copy its GIFs as docs/images/gallery/<process>-<data>-<gif>."""
    GALLERY.mkdir(parents=True, exist_ok=True)
    too_big = []
    for process, dataset, options, names in GALLERY_RUNS:
        run = tmp / f"gallery-{process}-{dataset}"
        argv = ["train", "--process", process, "--dataset", dataset, *options]
        if cli([*argv, "--out", str(run), "--quiet"]) != 0:
            raise SystemExit(f"training {process} on {dataset} failed")
        for name in names:
            target = GALLERY / f"{process}-{dataset}-{name}"
            shutil.copyfile(run / name, target)
            size = target.stat().st_size
            print(f"wrote {target} ({size / 1000:.0f} kB)")
            if size > GALLERY_MAX_BYTES:
                too_big.append(f"{target.name} ({size / 1000:.0f} kB)")
    if too_big:
        raise SystemExit(f"over {GALLERY_MAX_BYTES / 1000:.0f} kB: {', '.join(too_big)}")


def compare_images(tmp: Path, compare_runs: list[str] | None) -> None:
    """`diffusion compare` on the vp, edm, flow and poisson recipes (or the given runs)."""
    out = tmp / "compare"
    argv = ["compare", "--out", str(out), "--quiet"]
    if compare_runs:
        argv += [a for run_dir in compare_runs for a in ("--run", run_dir)]
    else:
        argv += ["--process", "vp", "edm", "flow", "poisson"]
    if cli(argv) != 0:
        raise SystemExit("compare failed")
    for name in ("compare.png", "compare.gif"):
        shutil.copyfile(out / name, IMAGES / name)
        print(f"wrote {IMAGES / name}")


#: the three-class mixture of the guidance notebook (notebooks/05_guidance_exactly.py).
THREE_CLASSES = {
    "weights": [0.4, 0.3, 0.3],
    "means": [[0.0, 0.0], [2.0, 0.5], [-2.0, 0.5]],
    "covariances": [[[0.8, 0.2], [0.2, 0.5]], [[0.4, 0.0], [0.0, 0.4]], [[0.4, -0.1], [-0.1, 0.3]]],
}


def guidance_images(tmp: Path) -> None:
    """The exact guided reverse process for class 0 of THREE_CLASSES at w = 1 and w = 3:
    the same 1,000 particles from the same noise, flowing over the data."""
    import json

    import torch

    from diffusion.data import get_dataset
    from diffusion.training.config import TrainConfig
    from diffusion.viz.gif import reverse_gif
    from diffusion.workflows.exact import exact_model

    path = tmp / "three.json"
    path.write_text(json.dumps(THREE_CLASSES))
    data = get_dataset(str(path))
    model = exact_model(data.mixture, TrainConfig(dataset=str(path), process="flow"))
    points = data.sample(3000, torch.Generator().manual_seed(0))
    (IMAGES / "guidance").mkdir(parents=True, exist_ok=True)
    for w in (1, 3):
        frames = []
        prior = model.process.prior((1000, 2), generator=torch.Generator().manual_seed(1))
        frames.append((1.0, model.to_data(prior)))
        model.sample(1000, label=torch.zeros(1000, dtype=torch.long), guidance=float(w),
                     sampler="dpm-solver++", steps=20, grid="logsnr",
                     generator=torch.Generator().manual_seed(1),
                     callback=lambda step, frames=frames: frames.append(
                         (step.s, model.to_data(step.x))))  # fmt: skip
        target = IMAGES / "guidance" / f"reverse-w{w}.gif"
        reverse_gif(frames, points, target, limits=((-4, 4), (-3, 3)))
        print(f"wrote {target} ({target.stat().st_size / 1000:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="an existing default run to copy from")
    parser.add_argument("--compare-runs", nargs="*", default=None, help="runs to compare")
    parser.add_argument(
        "--only",
        choices=("main", "compare", "diagnostics", "gallery", "guidance"),
        help="make only these pictures",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only == "diagnostics":
            diagnostics_images(Path(tmp))
            return
        if args.only == "gallery":
            gallery_images(Path(tmp))
            return
        if args.only == "guidance":
            guidance_images(Path(tmp))
            return
        if args.only == "compare":
            compare_images(Path(tmp), args.compare_runs)
            return
        run = Path(args.run) if args.run else Path(tmp) / "run"
        if args.run is None and cli(["train", "--out", str(run)]) != 0:
            raise SystemExit("training failed")
        IMAGES.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(run / name, IMAGES / name)
            print(f"wrote {IMAGES / name}")
        if args.only == "main":
            return
        compare_images(Path(tmp), args.compare_runs)
        diagnostics_images(Path(tmp))
        gallery_images(Path(tmp))


if __name__ == "__main__":
    main()
