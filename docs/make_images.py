"""Regenerate the README pictures from a default training run.

    python docs/make_images.py [--run DIR] [--compare-runs DIR ...]
                               [--only main|compare|diagnostics|gallery]

Trains `diffusion train` with its defaults into a temporary run directory (or uses --run),
then copies training.gif, reverse.gif and samples.png into docs/images/. Then runs
`diffusion compare` on the vp, edm, flow and poisson recipes (trained here, or the runs
given with --compare-runs) and copies compare.png and compare.gif. Then trains the edm
recipe on docs/examples/mixture.json, runs `diffusion diagnose` on it and copies its pictures
into docs/images/diagnostics/. Last, trains the README gallery's recipes (`GALLERY_RUNS`: the
defaults of `diffusion train`, DDIM for DDPM) and copies their GIFs into docs/images/gallery/,
refusing (exit status 1) any GIF over `GALLERY_MAX_BYTES`.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="an existing default run to copy from")
    parser.add_argument("--compare-runs", nargs="*", default=None, help="runs to compare")
    parser.add_argument(
        "--only",
        choices=("main", "compare", "diagnostics", "gallery"),
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
