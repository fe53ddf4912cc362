"""Fingerprints of fixed-seed training runs: weights, samples' metrics and the loss record.

Used to check that a refactoring changes nothing, bit for bit: run it on the old commit and on
the new one (each with its own source tree first on PYTHONPATH) and compare the JSON::

    PYTHONPATH=/path/to/old/src python benchmarks/bitexact.py --legacy --out old.json
    python benchmarks/bitexact.py --out new.json
    python benchmarks/bitexact.py --compare old.json new.json

or both in one run, alternating old and new for each case so that both see the same machine
(`--seeds` repeats the default recipe over seeds 0..N-1; the old tree uses the old spelling):

    python benchmarks/bitexact.py --against /path/to/old/src --seeds 20 --out both.json

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


def train_once(out: Path, options: list[str], legacy: bool, src: str | None) -> dict:
    """One `diffusion train` run (with `src` first on PYTHONPATH, if given); its fingerprint."""
    cmd = [sys.executable, "-m", "diffusion", "train", "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if src is not None:
        env["PYTHONPATH"] = src
    subprocess.run(cmd + spelled(options, legacy), check=True, env=env, stdout=subprocess.DEVNULL)
    return fingerprint(out)


def run_cases(legacy: bool, cases: list) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in cases:
            results[name] = found = train_once(Path(tmp) / name, options, legacy, None)
            print(f"{name}: {found['weights_sha256'][:16]} SW ratio "
                  f"{found['metrics']['sliced_wasserstein']['ratio']:.4f} "
                  f"({found['train_seconds']} s)", flush=True)  # fmt: skip
    return results


def run_against(old_src: str, cases: list) -> dict:
    """Each case on the old tree, then on this one, in turn; returns {"old": ..., "new": ...}."""
    results: dict = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in cases:
            old = train_once(Path(tmp) / f"old-{name}", options, True, old_src)
            new = train_once(Path(tmp) / f"new-{name}", options, False, None)
            results["old"][name], results["new"][name] = old, new
            same = (
                old["weights_sha256"] == new["weights_sha256"] and old["metrics"] == new["metrics"]
            )
            print(f"{name:<12} {'identical' if same else 'DIFFER'}  SW ratio "
                  f"{new['metrics']['sliced_wasserstein']['ratio']:.4f}  train "
                  f"{old['train_seconds']:.2f} s old, {new['train_seconds']:.2f} s new", flush=True)  # fmt: skip
    return results


def summary(results: dict) -> None:
    """Medians over the default recipe's seeds: SW ratio and training time, old and new."""
    import statistics

    names = [n for n in results["new"] if n.startswith("seed-")]
    if not names:
        return
    for side in ("old", "new"):
        ratios = [results[side][n]["metrics"]["sliced_wasserstein"]["ratio"] for n in names]
        times = [results[side][n]["train_seconds"] for n in names]
        print(f"{side}: median SW ratio {statistics.median(ratios):.3f}, median training time "
              f"{statistics.median(times):.2f} s over {len(names)} seeds")  # fmt: skip
    old_t = statistics.median(results["old"][n]["train_seconds"] for n in names)
    new_t = statistics.median(results["new"][n]["train_seconds"] for n in names)
    print(f"training time new / old: {new_t / old_t:.3f}")


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
    parser.add_argument("--against", metavar="OLD_SRC", help="the old tree's src directory")
    parser.add_argument("--seeds", type=int, default=0,
                        help="also the default recipe with seeds 0..N-1 (instead of the cases)")  # fmt: skip
    args = parser.parse_args()
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        return compare(old, new)
    cases = [(f"seed-{s}", ["--seed", str(s)]) for s in range(args.seeds)] or CASES
    if args.against:
        results = run_against(args.against, cases)
        summary(results)
        bad = compare(results["old"], results["new"])
    else:
        results, bad = run_cases(args.legacy, cases), 0
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return bad


if __name__ == "__main__":
    sys.exit(main())
