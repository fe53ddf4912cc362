"""report.html: written by every run, regenerated (or made for several runs) by `diffusion
report`, and checked in a headless Chromium without network: every picture loads, the
metrics table is there, the console is clean. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil

import pytest

from diffusion.cli import main
from diffusion.viz.report import REPORT_NAME

#: what a reader must see: every image loaded, the metrics table with its three metrics
IMAGES = "[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
METRICS = (
    "[...document.querySelectorAll('table.metrics tr th:first-child')].map(t => t.textContent)"
)


def problems(browser, page) -> list[str]:
    """Everything wrong with a report as a browser shows it (empty: all is well)."""
    tab = browser.open(page)
    found = [f"image {src} did not load" for src, ok in tab.evaluate(IMAGES) if not ok]
    if len(tab.evaluate(IMAGES)) < 4:
        found.append("fewer than 4 pictures")
    metrics = tab.evaluate(METRICS)
    found += [f"no {m} row" for m in ("sliced_wasserstein", "mmd", "energy") if m not in metrics]
    found += [f"console: {e}" for e in tab.errors]
    return found


def test_a_run_writes_a_report_that_a_browser_shows_whole(tiny_run, browser, artifacts):
    run_dir, _ = tiny_run
    page = run_dir / REPORT_NAME
    assert page.exists()
    assert problems(browser, page) == []
    text = page.read_text()
    assert "floor" in text and "diffusion train --config" in text and "config.toml" in text
    browser.open(page).screenshot(artifacts / "report.png")


def test_the_check_fails_on_a_broken_image_path(tiny_run, browser, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    (run_dir / "samples.png").rename(run_dir / "moved.png")
    found = problems(browser, run_dir / REPORT_NAME)
    assert any("samples.png did not load" in p for p in found)
    assert any("console" in p and "samples.png" in p for p in found)


def test_report_puts_runs_side_by_side(tiny_run, browser, tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_run[0], first)
    shutil.copytree(tiny_run[0], second)
    (first / REPORT_NAME).unlink()
    assert main(["report", str(first)]) == 0  # regenerated in the run
    assert (first / REPORT_NAME).exists()
    page = tmp_path / "pages" / "both.html"
    page.parent.mkdir()
    assert main(["report", str(first), str(second), "--out", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    tab = browser.open(page)
    assert len(tab.evaluate(IMAGES)) == 8 and all(ok for _, ok in tab.evaluate(IMAGES))
    assert tab.errors == []
    # the same configuration: the page says so instead of listing every setting twice
    assert "same configuration" in page.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "{tmp}/nothing"], "is not a folder"),
        (["report", "{tmp}"], "is not a run: it has no config.json"),
        (["report", "{run}", "{run}"], "several runs: say where the report goes"),
        (["report", "{run}", "--out", "{tmp}"], "is a folder"),
        (["report", "{run}", "--out", "{tmp}/no/such/page.html"], "does not exist"),
    ],
)
def test_report_bad_input_is_one_line_and_exit_2(argv, message, tiny_run, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, run=tiny_run[0]) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
