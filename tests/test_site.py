"""The built documentation site, opened from the file system in a browser without network:
the math is typeset by the site's own MathJax (docs/hooks/mathjax.py), and no raw TeX is
left in the visible text. Marked `site`: .ci/run runs these after `mkdocs build --strict`
(`pytest -m site`); elsewhere build the site first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.site
SITE = Path(__file__).resolve().parents[1] / "site"
PAGES = [
    "theory/03-forward-process.html",  # \( \) and \[ \] from arithmatex
    "notebooks/05_guidance_exactly.html",  # $ and $$ in the notebook's Markdown cells
]
#: resolves once MathJax has typeset the page (false if it never loaded)
TYPESET = """new Promise(resolve => { const start = Date.now(); (function poll() {
  if (window.MathJax && MathJax.Hub && MathJax.isReady) MathJax.Hub.Queue(() => resolve(true));
  else if (Date.now() - start > 30000) resolve(false); else setTimeout(poll, 100); })(); })"""


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset_offline(page, browser, artifacts):
    path = SITE / page
    if not path.exists():
        pytest.fail(f"{path} is missing: build the site first (mkdocs build)")
    tab = browser.open(path)
    assert tab.evaluate(TYPESET), "MathJax did not load from the site"
    typeset = tab.evaluate("document.querySelectorAll('.MathJax, .MathJax_Display').length")
    assert typeset >= 10
    text = tab.evaluate("document.querySelector('article').innerText")
    for raw in ("\\(", "\\)", "\\[", "\\]", "$$", "\\frac", "\\sigma"):
        assert raw not in text, f"raw TeX {raw!r} in the visible text of {page}"
    # every file the page asks for is in the site (MathJax's scripts and fonts, the search)
    missing = [e for e in tab.errors if "ERR_FILE_NOT_FOUND" in e or "Math Processing" in e]
    assert not missing
    tab.screenshot(artifacts / f"site-{Path(page).stem}.png")


def test_no_rendered_notebook_shows_a_warning_or_a_traceback():
    pages = sorted((SITE / "notebooks").glob("*.html"))
    if not pages:
        pytest.fail(f"no notebook pages under {SITE}: build the site first (mkdocs build)")
    for page in pages:
        html = page.read_text(encoding="utf-8")
        # an output cell of stderr (the stylesheet names the same type in a selector)
        assert not re.search(r'<div[^>]*data-mime-type="application/vnd\.jupyter\.stderr"', html), (
            f"{page.name} shows stderr output"
        )
        for word in ("Traceback (most recent call last)", "Warning:"):
            assert word not in html, f"{page.name} shows {word!r}"
