"""Performance report: quality per second of training and per network evaluation.

    python benchmarks/perf.py                        # everything (about 55 min on 2 cores)
    python benchmarks/perf.py --sections default peer
    python benchmarks/perf.py --quick                # a smaller version of every section
    python benchmarks/perf.py --markdown             # print the tables of the saved JSON

Sections (see docs/performance.md for what each measures and why):
  default     the default `diffusion train`, several seeds: training time and SW ratio, with
              its own sampler and with DPM-Solver++ at 10 and 25 steps
  peer        our default against the common recipe (diffusers' DDPM scheduler, small MLP)
              trained on the same data in the same run: time to SW ratio <= 1.5
  ttq         time to SW ratio <= 1.1 for every family's default recipe on three toy sets
  nfe         quality against NFE for every sampler, on the default model and on the exact
              score of a mixture; the smallest NFE reaching <= 1.3 and <= 1.1
  throughput  training samples/s against batch size, independent and OT-coupled
  sampling    `diffusion sample` at 10^4, 10^5, 10^6 points: time and peak memory
  dim         cost and quality against data dimension (mixtures in 2, 8, 32, 128 dims)
  settings    thread counts and torch.compile, per training step

Every quality figure is the sliced-Wasserstein distance of 10,000 samples to fresh data divided
by the data-vs-data floor (median over sample sets). Times are wall-clock seconds of the
training loop only (scoring excluded). Results are merged into --json section by section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "perfkit"))

import quality
import report
import scale
from common import machine
from peer import peer_comparison

SECTIONS = ("default", "peer", "ttq", "nfe", "throughput", "sampling", "dim", "settings")
DEFAULT_JSON = Path(__file__).resolve().parent / "perf.json"


def log(message: str) -> None:
    print(message, flush=True)


def run_section(name: str, args: argparse.Namespace):
    if name == "default":
        return quality.default_recipe(args.seeds, log)
    if name == "peer":
        return peer_comparison(args.peer_seconds, 1.5, log)
    if name == "ttq":
        return quality.time_to_quality(args.datasets, args.processes, 1.1, log)
    if name == "nfe":
        return quality.quality_vs_nfe(log)
    if name == "throughput":
        return scale.training_throughput(log)
    if name == "sampling":
        return scale.sampling_scale(log)
    if name == "dim":
        return scale.dimension_scale(log)
    return scale.settings(args.compile, log)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, help="default: all")
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the default recipe")
    parser.add_argument("--datasets", nargs="+", default=["swissroll", "moons", "checkerboard"])
    parser.add_argument("--processes", nargs="+", default=quality.TTQ_PROCESSES)
    parser.add_argument(
        "--peer-seconds", type=float, default=90.0, help="training time given to the peer recipe"
    )
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip the torch.compile measurement (about a minute)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 seeds, the swiss roll, 3 families, a 30 s peer, no compile",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables of --json and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        print(report.markdown(json.loads(args.json.read_text()), args.sections))
        return 0
    if args.quick:
        args.seeds, args.datasets, args.peer_seconds, args.compile = 2, ["swissroll"], 30.0, False
        args.processes = ["flow", "ddpm", "edm"]
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results["machine"] = machine()
    for name in args.sections or SECTIONS:
        log(f"\n== {name} ==")
        start = time.perf_counter()
        result = run_section(name, args)
        results[name] = {
            "result": result,
            "seconds": round(time.perf_counter() - start, 1),
            "date": datetime.date.today().isoformat(),
            "quick": args.quick,
        }
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        log("\n" + "\n".join(report.TABLES[name](result)))
    log(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
