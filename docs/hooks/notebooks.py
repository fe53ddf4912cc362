"""MkDocs hook: publish the tutorial notebooks in notebooks/ as pages under notebooks/.

The notebooks live at the repository root as jupytext percent-format .py files, the one
source that people review and run. This hook adds each of them to the site's files as
`notebooks/<name>.py` (as if it sat in docs/notebooks/), so that the nav and relative links
can name them and mkdocs-jupyter renders (and, with `execute: true`, runs) them. A symlink
docs/notebooks -> ../notebooks would do the same, but breaks in checkouts without symlinks
(Windows by default, source archives), and would publish whatever else the folder holds.

MkDocs rewrites and checks the links of Markdown pages only; a notebook page is HTML made by
nbconvert. So the hook does the same for the notebooks' relative links to .md and .py files:
each becomes the URL of the page it names, and a link to no page is a warning (an error
under --strict).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority, get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

NOTEBOOKS = "notebooks"  # folder at the repository root, and the pages' folder in the site
# href="target.md#anchor" or href="target.py", relative (no scheme, no leading slash).
LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|/|#)([^"#]+\.(?:md|py))(#[^"]*)?"')

log = get_plugin_logger("notebooks")


@event_priority(100)  # before mkdocs-jupyter (priority 0)
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every notebooks/*.py to the site's files."""
    root = Path(config.docs_dir).resolve().parent  # docs/ sits at the repository root
    for path in sorted((root / NOTEBOOKS).glob("[0-9]*.py")):
        # A plain File whose source folder is the repository root (not File.generated:
        # mkdocs-jupyter's wrapper cannot see a generated file's source path).
        files.append(
            File(f"{NOTEBOOKS}/{path.name}", str(root), config.site_dir, config.use_directory_urls)
        )
    return files


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point a notebook's relative links at the pages they name; warn about the rest."""
    src = page.file.src_uri
    if not (src.startswith(f"{NOTEBOOKS}/") and src.endswith(".py")):
        return html

    def rewrite(match: re.Match[str]) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        # Relative to the notebook; "../docs/theory/x.md" (right on GitHub, where notebooks/
        # sits beside docs/) and "../theory/x.md" (right in the site) name the same page.
        uri = posixpath.normpath(posixpath.join(posixpath.dirname(src), target))
        uri = uri.removeprefix("docs/")
        file = files.get_file_from_path(uri)
        if file is None:
            log.warning(f"Notebook '{src}' links to '{target}', which is not a page of the site.")
            return match.group(0)
        return f'href="{file.url_relative_to(page.file)}{anchor}"'

    return LINK.sub(rewrite, html)
