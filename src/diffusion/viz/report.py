"""report.html: one static page that ties a run's files together, or puts several runs side
by side.

The page shows the pictures (training.gif, reverse.gif, samples.png, loss.png), the metrics
with their floors and a sentence on how to read a ratio, the timings, the configuration and
the command that reproduces the run. It is plain HTML with inline CSS and no script: the
pictures are linked by relative paths, so the page works from the file system (no server,
no network) as long as it stays beside the runs it shows.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from diffusion.utils import atomic_write_text

REPORT_NAME = "report.html"
PICTURES = (
    ("training.gif", "Training: samples of the EMA model at each snapshot"),
    ("reverse.gif", "Sampling: from noise to data"),
    ("samples.png", "Data and samples"),
    ("loss.png", "Training loss"),
)
TIMINGS = (
    ("train_seconds", "training (s)"),
    ("sample_seconds", "sampling the evaluation set (s)"),
    ("nfe", "network evaluations per sample"),
    ("n_samples", "evaluation samples"),
    ("skipped_steps", "skipped steps (non-finite loss)"),
    ("final_loss", "loss, mean of the last 100 steps"),
)
FILES = ("log.csv", "config.toml", "config.json", "metrics.json", "model.safetensors")
HOW_TO_READ = (
    "Each distance is measured between the samples and fresh data, and next to it its floor: "
    "the same distance between two fresh draws of the data, of the same size. The ratio is "
    "distance / floor: 1 means the samples are as close to the data as the data's own "
    "sampling noise allows (nothing better can be seen with this many samples); 1.5 means "
    "50% farther than that. The Fréchet ratio (images) compares features of a small "
    "classifier trained on the data set, not Inception features: it is not FID. A "
    "memorisation ratio well below 1 means samples sit closer to training images than "
    "fresh images do."
)
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; font-size: 1.25em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 520px; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
.note { color: #444; max-width: 60em; }
.missing { color: #a00; }
"""


class ReportError(ValueError):
    """A folder given to the report is not a run."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} cannot be read: {exc}") from None


def _run(run_dir: Path) -> dict:
    """What the report shows of one run: its config and metrics (as saved)."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a folder")
    saved = _read_json(run_dir / "config.json")
    if not saved:
        raise ReportError(f"{run_dir} is not a run: it has no config.json")
    return {"dir": run_dir, "config": saved.get("config", {}),
            "metrics": _read_json(run_dir / "metrics.json")}  # fmt: skip


def _href(target: Path, page_dir: Path) -> str:
    return quote(Path(os.path.relpath(target, page_dir)).as_posix())


def _number(value: object) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _metric_rows(metrics: dict) -> dict[str, dict]:
    """The metrics that come with a floor: {name: {"value", "floor", "ratio"}}."""
    return {k: v for k, v in metrics.items() if isinstance(v, dict) and "ratio" in v}


def _title(run: dict) -> str:
    config = run["config"]
    return f"{config.get('dataset', '?')} · {config.get('process', '?')} · {run['dir'].name}"


def _command(run: dict) -> str:
    """The command that trains the same run again (config.toml holds every setting, the
    seed included)."""
    return f"diffusion train --config {run['dir'] / 'config.toml'} --out runs/again"


def _pictures(run: dict, page_dir: Path) -> str:
    parts = []
    for name, caption in PICTURES:
        path = run["dir"] / name
        if path.exists():
            parts.append(
                f'<figure><img src="{_href(path, page_dir)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return "".join(parts) or '<p class="missing">No pictures yet (the run has not finished).</p>'


def _metrics_table(runs: list[dict]) -> str:
    names = []
    for run in runs:
        names += [n for n in _metric_rows(run["metrics"]) if n not in names]
    if not names:
        return '<p class="missing">No metrics yet (metrics.json is written last).</p>'
    several = len(runs) > 1
    head = "<tr><th>metric</th>" + "".join(
        f"<th>{html.escape(run['dir'].name)}: {h}</th>" if several else f"<th>{h}</th>"
        for run in runs
        for h in ("value", "floor", "ratio")
    )
    rows = []
    for name in names:
        cells = []
        for run in runs:
            entry = _metric_rows(run["metrics"]).get(name, {})
            cells += [
                f'<td class="num">{_number(entry.get(k))}</td>' for k in ("value", "floor", "ratio")
            ]
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return f'<table class="metrics">{head}</tr>{"".join(rows)}</table>'


def _timings_table(runs: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(r['dir'].name)}</th>" for r in runs)
    rows = []
    for key, label in TIMINGS:
        if any(key in r["metrics"] for r in runs):
            cells = "".join(f'<td class="num">{_number(r["metrics"].get(key))}</td>' for r in runs)
            rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    if not rows:
        return '<p class="missing">No timings yet.</p>'
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _config_table(runs: list[dict]) -> str:
    """Every setting of one run; with several runs, only the settings that differ."""
    keys = list(dict.fromkeys(k for r in runs for k in r["config"]))
    if len(runs) > 1:
        keys = [k for k in keys if len({json.dumps(r["config"].get(k)) for r in runs}) > 1]
        if not keys:
            return "<p>The runs have the same configuration.</p>"
    head = "".join(f"<th>{html.escape(r['dir'].name)}</th>" for r in runs)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th>"
        + "".join(f"<td>{_number(r['config'].get(k))}</td>" for r in runs)
        + "</tr>"
        for k in keys
    )
    return f"<table><tr><th>setting</th>{head}</tr>{rows}</table>"


def _files(run: dict, page_dir: Path) -> str:
    links = [
        f'<a href="{_href(run["dir"] / name, page_dir)}">{name}</a>'
        for name in FILES
        if (run["dir"] / name).exists()
    ]
    return " · ".join(links)


def render_report(run_dirs: list[Path], page: Path) -> str:
    """The HTML of a report on `run_dirs`, to be written at `page` (links are relative to
    its folder)."""
    runs = [_run(Path(d)) for d in run_dirs]
    page_dir = page.resolve().parent
    for run in runs:
        run["dir"] = run["dir"].resolve()
    title = _title(runs[0]) if len(runs) == 1 else f"{len(runs)} runs side by side"
    sections = [f"<h1>{html.escape(title)}</h1>"]
    if len(runs) > 1:
        sections.append("<ul>" + "".join(f"<li>{html.escape(_title(r))}</li>" for r in runs)
                        + "</ul>")  # fmt: skip
    sections += ["<h2>Metrics</h2>", _metrics_table(runs), f'<p class="note">{HOW_TO_READ}</p>']
    sections += ["<h2>Timings</h2>", _timings_table(runs)]
    for run in runs:
        heading = "Pictures" if len(runs) == 1 else f"Pictures: {_title(run)}"
        sections += [f"<h2>{html.escape(heading)}</h2>", _pictures(run, page_dir)]
    sections += ["<h2>Configuration</h2>", _config_table(runs)]
    sections.append("<h2>Reproduce</h2>")
    for run in runs:
        sections.append(f"<pre>{html.escape(_command(run))}</pre>")
        files = _files(run, page_dir)
        if files:
            sections.append(f"<p>Files of {html.escape(run['dir'].name)}: {files}</p>")
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(run_dirs: list[str | Path], page: str | Path | None = None) -> Path:
    """Write report.html for one run (into the run, by default) or for several side by side
    (`page` required then); return its path. ReportError if a folder is not a run."""
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ReportError("no run given")
    if page is None:
        if len(dirs) > 1:
            raise ReportError("several runs: say where the report goes (--out FILE)")
        page = dirs[0] / REPORT_NAME
    page = Path(page)
    text = render_report(dirs, page)
    atomic_write_text(page, text)
    return page
