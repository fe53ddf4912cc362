"""Paired comparison of two training recipes over many seeds: is a change really better?

    python benchmarks/sweep.py --change depth=6 width=64                 # 20 seeds, 2 jobs
    python benchmarks/sweep.py --change train_times=low-noise --seeds 40
    python benchmarks/sweep.py --base lr=0.005 --change lr=0.005 min_lr_ratio=0 --jobs 1

Each seed trains the base recipe (the defaults, plus --base) and the changed one (the base
plus --change) and scores both EMA models the way `perf.py`'s `default` section does: the
sliced-Wasserstein ratio, median of --sets sample sets of 10,000 points, with the recipe's
own sampler and with DPM-Solver++ at 25 steps. The summary pairs the two scores of each
seed: the mean change with its standard error, and on how many seeds the change was better.

Why pairs and many seeds: one recipe's seeds spread from about 1.05 to 1.30 on the swiss
roll (standard deviation 0.08), so medians of ten seeds differ by 0.05 between two halves of
the same recipe's seeds (docs/performance.md, "Twenty seeds"). Jobs run as separate
processes with one torch thread each; training times are printed but only comparable
within one job count.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "perfkit"))

from quality import DEFAULT_SETS as SAMPLE_SETS  # scored as the `default` section scores
from quality import FEW_STEPS as BAR_STEPS

FEW_STEPS = max(BAR_STEPS)  # DPM-Solver++ steps of the second quality bar (25)


def parse_settings(items: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs as config settings; values are read as JSON where they parse
    (numbers, true/false, null) and kept as strings otherwise (low-noise, ddpm)."""
    settings: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        settings[key.replace("-", "_")] = value
    return settings


def paired_summary(base: list[float], changed: list[float]) -> dict[str, float | int]:
    """Medians of both, the mean of changed - base with its standard error, and how many
    seeds got better (lower) and worse; equal scores count as neither."""
    if len(base) != len(changed) or not base:
        raise ValueError("need the same positive number of base and changed scores")
    diffs = [c - b for b, c in zip(base, changed, strict=True)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return {
        "seeds": len(diffs),
        "base_median": statistics.median(base),
        "changed_median": statistics.median(changed),
        "mean_change": statistics.fmean(diffs),
        "standard_error": se,
        "better": sum(d < 0 for d in diffs),
        "worse": sum(d > 0 for d in diffs),
    }


def train_and_score(settings: dict[str, object], seed: int, sets: int) -> dict[str, float]:
    """Train one recipe at one seed (one torch thread) and score its EMA model as the
    `default` section does (`quality.train_and_score`)."""
    import quality
    import torch

    from diffusion.training.config import TrainConfig

    torch.set_num_threads(1)
    config = TrainConfig.from_dict({**settings, "seed": seed})
    row = quality.train_and_score(config, sets, (FEW_STEPS,))
    return {
        "train_s": row["train_s"],
        "default": row["default"],
        "dpm25": row[f"dpm-solver++ {FEW_STEPS}"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--change", nargs="+", required=True, metavar="KEY=VALUE")
    parser.add_argument("--base", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--sets", type=int, default=SAMPLE_SETS, help="sample sets per score")
    parser.add_argument("--jobs", type=int, default=2, help="processes, one thread each")
    parser.add_argument("--json", type=Path, help="write every score and the summary here")
    args = parser.parse_args()
    try:
        base = parse_settings(args.base)
        changed = {**base, **parse_settings(args.change)}
        from diffusion.training.config import ConfigError, TrainConfig

        for settings in (base, changed):
            TrainConfig.from_dict(settings)
    except (ValueError, TypeError, ConfigError) as exc:
        print(f"sweep.py: error: {exc}", file=sys.stderr)
        return 2
    if args.seeds < 2 or args.sets < 1 or args.jobs < 1:
        print("sweep.py: error: need --seeds >= 2, --sets >= 1, --jobs >= 1", file=sys.stderr)
        return 2
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    recipes = {"base": base, "changed": changed}
    print(
        f"base {base or 'the defaults'}; changed {changed}; seeds {seeds.start}..{seeds.stop - 1}"
    )
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            (name, seed): pool.submit(train_and_score, settings, seed, args.sets)
            for seed in seeds
            for name, settings in recipes.items()
        }
        rows = []
        for seed in seeds:
            row = {"seed": seed, **{n: futures[(n, seed)].result() for n in recipes}}
            rows.append(row)
            b, c = row["base"], row["changed"]
            print(f"  seed {seed}: base {b['default']:.3f} / {b['dpm25']:.3f} "
                  f"({b['train_s']:.1f} s), changed {c['default']:.3f} / {c['dpm25']:.3f} "
                  f"({c['train_s']:.1f} s)", flush=True)  # fmt: skip
    summary = {
        key: paired_summary([r["base"][key] for r in rows], [r["changed"][key] for r in rows])
        for key in ("default", "dpm25")
    }
    for key, label in (("default", "own sampler"), ("dpm25", f"DPM-Solver++ {FEW_STEPS}")):
        s = summary[key]
        print(f"{label}: median {s['base_median']:.3f} -> {s['changed_median']:.3f}; "
              f"mean change {s['mean_change']:+.3f} +- {s['standard_error']:.3f} (one standard "
              f"error); better on {s['better']} of {s['seeds']} seeds, worse on {s['worse']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"base": base, "changed": changed, "rows": rows,
                                         "summary": summary}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
