"""Fingerprints of fixed-seed training runs: weights, samples' metrics and the loss record.

Used to check that a refactoring changes nothing, bit for bit: run it on the old commit and on
the new one (each with its own source tree first on PYTHONPATH) and compare the JSON::

    PYTHONPATH=/path/to/old/src python benchmarks/bitexact.py --legacy --out old.json
    python benchmarks/bitexact.py --out new.json
    python benchmarks/bitexact.py --compare old.json new.json

`--legacy` spells the options as the command did before the restructuring (`--steps` for
training steps). Each case is a real `diffusion train` run in a temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: (name, options) of each run: the default recipe in full, then short runs of every family.
CASES = [
    ("default", []),
    ("ddpm", ["--process", "ddpm", "--steps", "300"]),
    ("vp-pc", ["--process", "vp", "--sampler", "pc", "--steps", "300"]),
    ("edm", ["--process", "edm", "--steps", "300", "--dataset", "moons"]),
    ("ncsn", ["--process", "ncsn", "--steps", "200", "--eval-samples", "2000"]),
    ("poisson", ["--process", "poisson", "--steps", "200", "--dataset", "eight_gaussians"]),
    ("flow-indep", ["--coupling", "independent", "--steps", "300", "--checkpoint-every", "100"]),
]
#: metrics that measure time, not results.
TIMINGS = {"train_seconds", "sample_seconds"}


def spelled(options: list[str], legacy: bool) -> list[str]:
    """The options as this version of the command spells them."""
    if legacy:
        return options
    renames = {"--steps": "--train-steps"}
    return [renames.get(o, o) for o in options]


def fingerprint(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(run_dir / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + tensors[name].contiguous().numpy().tobytes())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "weights_sha256": h.hexdigest(),
        "metrics": {k: v for k, v in metrics.items() if k not in TIMINGS},
        "train_seconds": metrics["train_seconds"],
    }


def run_cases(legacy: bool) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in CASES:
            out = Path(tmp) / name
            cmd = [sys.executable, "-m", "diffusion", "train", "--quiet", "--out", str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            subprocess.run(cmd + spelled(options, legacy), check=True, env=env,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            results[name] = fingerprint(out)
            print(f"{name}: {results[name]['weights_sha256'][:16]} "
                  f"SW ratio {results[name]['metrics']['sliced_wasserstein']['ratio']:.4f} "
                  f"({results[name]['train_seconds']} s)", flush=True)  # fmt: skip
    return results


def compare(old: dict, new: dict) -> int:
    bad = 0
    for name in old:
        same = old[name]["weights_sha256"] == new.get(name, {}).get("weights_sha256")
        same_metrics = old[name]["metrics"] == new.get(name, {}).get("metrics")
        print(f"{name:<12} weights {'identical' if same else 'DIFFER'}, "
              f"metrics {'identical' if same_metrics else 'DIFFER'}, train time "
              f"{old[name]['train_seconds']} s -> {new.get(name, {}).get('train_seconds')} s")  # fmt: skip
        bad += not (same and same_metrics)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legacy", action="store_true", help="the old spelling of options")
    parser.add_argument("--out", help="write the fingerprints here (JSON)")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        return compare(old, new)
    results = run_cases(args.legacy)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
