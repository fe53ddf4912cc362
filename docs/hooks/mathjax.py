"""MkDocs hook: serve MathJax from the site itself, so that the math renders offline.

The pages' math (pymdownx.arithmatex: \\( \\) and \\[ \\]; the notebooks: $ and $$) is
typeset in the browser by MathJax 2.7, which the `jupyter-server-mathjax` package (PyPI, in
the docs extra) ships as static files. After the build this hook copies those files into
`site/mathjax/` and writes the site's own settings as the MathJax configuration file
`config/local/site.js`. Every page loads `mathjax/MathJax.js?config=...,local/site`
(`extra_javascript` in mkdocs.yml; the notebooks through mkdocs-jupyter's
`custom_mathjax_url`), so nothing comes from a CDN and a site opened from the file system
without a network shows typeset math.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError

PACKAGE = "jupyter_server_mathjax"
TARGET = "mathjax"  # the folder in the site

# The site's settings, loaded after the combined configuration TeX-AMS-MML_HTMLorMML-full:
# both kinds of delimiter; the package has only the STIX-Web fonts, so the HTML-CSS output
# is told to use them (its default, the TeX fonts, is not there), and the styles of the
# hidden MathML copies (for screen readers) ask for no TeX font either.
SITE_CONFIG = r"""MathJax.Hub.Config({
  tex2jax: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  TeX: {extensions: ["AMSmath.js", "AMSsymbols.js", "noErrors.js", "noUndefined.js"]},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  SVG: {font: "STIX-Web"},
  NativeMML: {styles: {
    '[mathvariant="double-struck"]': {"font-family": "serif"},
    '[mathvariant="script"]': {"font-family": "serif"},
    '[mathvariant="fraktur"]': {"font-family": "serif"},
    '[mathvariant="bold-script"]': {"font-family": "serif"},
    '[mathvariant="bold-fraktur"]': {"font-family": "serif"}
  }},
  messageStyle: "none"
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/site.js");
"""


def mathjax_files() -> Path:
    """The folder of MathJax's static files in the installed package (not imported: its
    __init__ needs jupyter_server, which the files do not)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PluginError(
            f"{PACKAGE} is not installed: it ships the MathJax the site serves; "
            "pip install -e '.[docs]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def on_post_build(config: MkDocsConfig) -> None:
    target = Path(config.site_dir) / TARGET
    # the interface's translations are not needed (the menu is in English)
    shutil.copytree(mathjax_files(), target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("localization"))  # fmt: skip
    (target / "config" / "local").mkdir(parents=True, exist_ok=True)
    (target / "config" / "local" / "site.js").write_text(SITE_CONFIG, encoding="utf-8")
