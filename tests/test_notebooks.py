"""The tutorial notebooks (notebooks/*.py, jupytext percent format).

The structural tests are fast: each notebook parses, has prose and code, stores no outputs,
imports nothing beyond the package, numpy, torch, matplotlib, IPython and the standard
library, links only to pages that exist, and uses the example mixture file's numbers. The
execution tests (marked slow) run every notebook top to bottom in a fresh kernel, in a
temporary working directory, and fail on any error.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
import sys
import time
from pathlib import Path

import jupytext  # in the test extra
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
ALLOWED_IMPORTS = {"diffusion", "numpy", "torch", "matplotlib", "IPython"}
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
#: seconds one cell may run in the execution test (the slowest cell trains a model; the
#: margin covers a CPU shared with other jobs).
CELL_TIMEOUT = 600


def ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def read(path: Path):
    return jupytext.read(path, fmt="py:percent")


def code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_the_five_tutorials_exist():
    assert [path.name for path in NOTEBOOKS] == [
        "01_ddpm_swiss_roll.py",
        "02_samplers.py",
        "03_exact_ground_truth.py",
        "04_flow_and_poisson.py",
        "05_guidance_exactly.py",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_structure(path: Path):
    notebook = read(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown", "a notebook opens with prose"
    assert kinds.count("markdown") >= 5 and kinds.count("code") >= 5
    assert notebook.cells[0].source.startswith("# "), "the first cell is a title"
    for cell in notebook.cells:
        assert cell.source.strip(), "empty cell"
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_imports(path: Path):
    modules = set()
    for source in code_cells(read(path)):
        for node in ast.walk(ast.parse(source)):  # a syntax error fails here too
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, "no relative imports"
                modules.add(node.module.split(".")[0])
    assert "diffusion" in modules
    extra = modules - ALLOWED_IMPORTS - set(sys.stdlib_module_names)
    assert not extra, f"imports beyond the allowed packages: {sorted(extra)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_links_name_pages_of_the_site(path: Path):
    """Relative links are written as from notebooks/ (right on GitHub; the site's hook maps
    ../docs/x.md to its page): each must name a docs page or a sibling notebook."""
    targets = []
    for cell in read(path).cells:
        if cell.cell_type == "markdown":
            targets += LINK.findall(cell.source)
    assert any(t.startswith("../docs/theory/0") for t in targets), "link to a theory note"
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        uri = posixpath.normpath(posixpath.join("notebooks", target.split("#")[0]))
        page = uri.startswith("docs/") and uri.endswith(".md")
        notebook = uri.startswith("notebooks/") and uri.endswith(".py")
        assert (page or notebook) and (ROOT / uri).is_file(), (
            f"{path.name} links to {target}, which is not a page"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_mixture_is_the_example_file(path: Path):
    """A notebook that writes the example mixture inline uses the numbers of
    docs/examples/mixture.json (it writes them out so it runs from any directory)."""
    found = []
    for source in code_cells(read(path)):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "MIXTURE" for target in node.targets
            ):
                found.append(ast.literal_eval(node.value))
    if "mixture.json" not in path.read_text():
        return
    assert found, "the notebook names mixture.json but defines no MIXTURE"
    expected = json.loads((ROOT / "docs" / "examples" / "mixture.json").read_text())
    assert all(mixture == expected for mixture in found)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Execute the notebook top to bottom in a fresh kernel; any error fails the test."""
    nbclient = pytest.importorskip("nbclient")
    # The kernel inherits the environment: one intra-op thread (as tests/conftest.py sets for
    # the suite: small tensor ops on a shared CPU only wait for each other with more), and
    # the notebook's temporary files under tmp_path, which pytest cleans up.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the working directory
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    print(f"{path.name}: {seconds:.0f} s")
