"""Markdown tables from the JSON that `benchmarks/perf.py` writes (for the README and docs)."""

from __future__ import annotations

from diffusion.training.config import MAX_OT_BATCH


def fmt(value: float | None, digits: int = 2, missing: str = "-") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _time(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def default_table(section: dict) -> list[str]:
    rows = section["rows"]
    config = section["config"]
    lines = [
        f"Default recipe: {config['process']}, width {config['width']}, depth {config['depth']}, "
        f"{config['steps']} steps of batch {config['batch_size']}, lr {config['lr']}; sampled "
        f"with {config['sampler']} at {config['sample_steps']} steps. SW ratio to the data "
        f"floor, median of {section.get('sets', 3)} sets of 10,000 samples.",
        "",
        "| seed | training | default sampler | DPM-Solver++ 10 | DPM-Solver++ 25 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in [*rows, dict(section["median"], seed="median")]:
        lines.append(
            f"| {r['seed']} | {r['train_s']:.1f} s | {r['default']:.2f} | "
            f"{r['dpm-solver++ 10']:.2f} | {r['dpm-solver++ 25']:.2f} |"
        )
    if "control" in section:
        lines.append(f"| control: fresh data as samples | - | {section['control']:.2f} | | |")
    return lines


def ttq_table(rows: list[dict]) -> list[str]:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lines = [
        "Time to quality: training seconds until the EMA model's samples (the family's "
        "default sampler) first scored SW ratio <= 1.1; in brackets the ratio after the full "
        "default run and its training time. One seed per cell.",
        "",
        "| family (sampler, steps) | " + " | ".join(datasets) + " |",
        "| --- |" + " --- |" * len(datasets),
    ]
    for process in dict.fromkeys(r["process"] for r in rows):
        mine = {r["dataset"]: r for r in rows if r["process"] == process}
        first = next(iter(mine.values()))
        cells = []
        for d in datasets:
            r = mine.get(d)
            cells.append(
                ""
                if r is None
                else f"{_time(r['time_to']['1.1'])} ({r['final']:.2f}, {r['train_s']:.0f} s)"
            )
        lines.append(
            f"| {process} ({first['sampler']}, {first['sample_steps']}) | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def peer_table(section: dict) -> list[str]:
    peer, ours = section["peer"], section["ours"]
    bar = section["bar"]
    speed = section["speedup"]
    speed_text = (
        "-"
        if speed is None
        else (f">= {speed:.1f}x" if section["speedup_is_lower_bound"] else f"{speed:.1f}x")
    )
    return [
        f"Peer (same data, same run): time to SW ratio <= {bar}.",
        "",
        "| recipe | time to <= " + f"{bar} | best ratio | trained |",
        "| --- | --- | --- | --- |",
        f"| ours (default) | {_time(ours['time_to'])} | "
        f"{min(p[2] for p in ours['curve']):.2f} | {ours['train_s']:.1f} s |",
        f"| {peer['recipe']}; best sampler {peer['best_sampler']} | {_time(peer['time_to'])} | "
        f"{peer['best']:.2f} | {peer['trained_s']:.1f} s |",
        "",
        f"Speed-up to <= {bar}: {speed_text}.",
    ]


def nfe_table(section: dict) -> list[str]:
    lines = [
        f"Smallest NFE reaching SW ratio <= 1.3 / <= 1.1 ({section['process']}): the default "
        "model on the swiss roll, and the exact score of docs/examples/mixture.json.",
        "",
        "| sampler | model <= 1.3 | model <= 1.1 | exact <= 1.3 | exact <= 1.1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    model, exact = section["model"]["smallest_nfe"], section["oracle"]["smallest_nfe"]
    for sampler in dict.fromkeys(list(model) + list(exact)):
        m, e = model.get(sampler, {}), exact.get(sampler, {})
        lines.append(
            f"| {sampler} | {fmt(m.get('1.3'), 0)} | {fmt(m.get('1.1'), 0)} | "
            f"{fmt(e.get('1.3'), 0)} | {fmt(e.get('1.1'), 0)} |"
        )
    refused = [r["sampler"] for r in section["model"]["rows"] if "refused" in r]
    if refused:
        lines += ["", f"Refused for this process: {', '.join(refused)}."]
    return lines


def throughput_table(rows: list[dict]) -> list[str]:
    lines = [
        "| batch size | ms per step, independent | samples/s | ms per step, OT coupling | samples/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "ms_per_step_ot" in r:
            ot = f"{r['ms_per_step_ot']:.2f} | {r['samples_per_s_ot']:,}"
        elif r["batch_size"] > MAX_OT_BATCH:
            ot = "(refused: plan too large) | -"
        else:
            ot = "- | -"  # not measured (runs before the coupling existed)
        lines.append(
            f"| {r['batch_size']} | {r['ms_per_step']:.2f} | {r['samples_per_s']:,} | {ot} |"
        )
    return lines


def sampling_table(rows: list[dict]) -> list[str]:
    lines = [
        "| `diffusion sample --n` | wall time | samples/s after start-up | peak memory |",
        "| --- | --- | --- | --- |",
    ]
    start_up = rows[0]["seconds"] if rows[0]["n"] == 1 else 0.0
    for r in rows:
        if "samples_per_s" not in r:
            rate = "(start-up only)"
        elif r["samples_per_s"] is None or r["seconds"] < 2 * start_up:  # mostly start-up
            rate = "-"
        else:
            rate = f"{r['samples_per_s']:,}"
        lines.append(f"| {r['n']:,} | {r['seconds']:.1f} s | {rate} | {r['peak_mib']} MiB |")
    return lines


def dimension_table(rows: list[dict]) -> list[str]:
    lines = [
        "| dimension | training | ms per step | 10k samples | SW ratio | exact score |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['dim']} | {r['train_s']:.1f} s | {r['ms_per_step']:.2f} | "
        f"{r['sample_s_10k']:.2f} s | {r['ratio']:.2f} | {r['exact_ratio']:.2f} |"
        for r in rows
    ]
    return lines


def settings_table(section: dict) -> list[str]:
    lines = ["| setting | ms per training step |", "| --- | --- |"]
    lines += [f"| {r['threads']} thread(s) | {r['ms_per_step']:.2f} |" for r in section["threads"]]
    if "compile" in section:
        c = section["compile"]
        lines += [
            f"| eager | {c['eager_ms']:.2f} |",
            f"| torch.compile (first steps {c['first_steps_s']:.0f} s) | {c['compiled_ms']:.2f} |",
        ]
    if "shared_time" in section:
        s = section["shared_time"]
        lines += [
            "",
            f"Sampling {s['n']:,} points ({s['sampler']}, {s['steps']} steps): "
            f"{s['shared_s']:.2f} s with the sampler's time embedded once per step, "
            f"{s['per_row_s']:.2f} s with it embedded per row.",
        ]
    return lines


TABLES = {
    "default": default_table,
    "peer": peer_table,
    "ttq": ttq_table,
    "nfe": nfe_table,
    "throughput": throughput_table,
    "sampling": sampling_table,
    "dim": dimension_table,
    "settings": settings_table,
}


TITLES = {
    "default": "The default recipe", "peer": "Against the common recipe",
    "ttq": "Time to quality, every family", "nfe": "Quality against network evaluations",
    "throughput": "Training throughput", "sampling": "Sampling at scale",
    "dim": "Cost against dimension", "settings": "Threads, torch.compile and the shared time",
}  # fmt: skip


def markdown(results: dict, sections: list[str] | None = None) -> str:
    """The sections of `results` (all present ones by default), as Markdown."""
    parts = []
    for name in sections or list(TABLES):
        if name in results:
            entry = results[name]
            stamp = f"({entry['date']}{', --quick' if entry.get('quick') else ''})"
            body = "\n".join(TABLES[name](entry["result"]))
            parts.append(f"### {TITLES[name]}\n\n{body}\n\n{stamp}")
    machine = results.get("machine")
    if machine:
        cuda = f", {machine['cuda']}" if machine["cuda"] else ", no GPU"
        parts.append(
            f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} "
            f"torch threads, Python {machine['python']}, torch {machine['torch']}{cuda}."
        )
    return "\n\n".join(parts) + "\n"
