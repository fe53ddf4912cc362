"""Regenerate the README pictures from a default training run.

    python docs/make_images.py [--run DIR] [--compare-runs DIR ...] [--only main|diagnostics]

Trains `diffusion train` with its defaults into a temporary run directory (or uses --run),
then copies training.gif, reverse.gif and samples.png into docs/images/. Then runs
`diffusion compare` on the vp, edm, flow and poisson recipes (trained here, or the runs
given with --compare-runs) and copies compare.png and compare.gif. Last, trains the edm
recipe on docs/examples/mixture.json, runs `diffusion diagnose` on it and copies its pictures
into docs/images/diagnostics/.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="an existing default run to copy from")
    parser.add_argument("--compare-runs", nargs="*", default=None, help="runs to compare")
    parser.add_argument("--only", choices=("main", "diagnostics"), help="make only these pictures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only == "diagnostics":
            diagnostics_images(Path(tmp))
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
        out = Path(tmp) / "compare"
        argv = ["compare", "--out", str(out), "--quiet"]
        if args.compare_runs:
            argv += [a for run_dir in args.compare_runs for a in ("--run", run_dir)]
        else:
            argv += ["--process", "vp", "edm", "flow", "poisson"]
        if cli(argv) != 0:
            raise SystemExit("compare failed")
        for name in ("compare.png", "compare.gif"):
            shutil.copyfile(out / name, IMAGES / name)
            print(f"wrote {IMAGES / name}")
        diagnostics_images(Path(tmp))


if __name__ == "__main__":
    main()
