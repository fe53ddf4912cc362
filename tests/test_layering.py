"""The layering rule, read from the imports of every module under src/diffusion.

Arrows point down only: a package never imports one above it. Numerics (parametrize,
processes, samplers, models, data, measure) never import training, files, workflows or the
CLI; processes never import samplers. Imports inside functions count; imports under
``if TYPE_CHECKING:`` (annotations only) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import diffusion

SOURCE = Path(diffusion.__file__).parent

#: each top-level part of the package and its layer: a module may import its own layer and
#: those below, never one above. The bare package (``import diffusion``, for the version)
#: counts as the bottom layer; its lazy public API (``diffusion.__init__``) is the top.
LAYERS: dict[str, int] = {
    "errors": 0,
    "utils": 0,
    "streams": 0,
    "parametrize": 1,
    "data": 1,
    "models": 1,
    "processes": 2,
    "samplers": 3,
    "measure": 4,
    "viz": 4,
    "training": 5,
    "io": 6,
    "workflows": 7,
    "cli": 8,
    "ddpm": 8,
    "__main__": 8,
    "__init__": 9,
}
NAMES = {0: "helpers", 1: "numerics", 2: "numerics", 3: "numerics", 4: "numerics and pictures",
         5: "training", 6: "files", 7: "workflows", 8: "the CLI", 9: "the public API"}  # fmt: skip


def part_of(module: str) -> str:
    """The top-level part of a dotted module name: diffusion.samplers.ode -> samplers."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, module) of every `diffusion` import in `source`, skipping TYPE_CHECKING blocks."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("diffusion")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "diffusion":  # from diffusion import x: x is a submodule
                found += [(node.lineno, f"diffusion.{a.name}") for a in node.names]
            elif node.module.startswith("diffusion."):
                found.append((node.lineno, node.module))
    return found


def violations(modules: dict[str, str]) -> list[str]:
    """Every import in `modules` (name -> source) that points up the layers."""
    problems = []
    for module, source in sorted(modules.items()):
        own = LAYERS[part_of(module)]
        for line, target in imported_modules(source, module):
            if target == "diffusion":  # the bare package: its version
                continue
            layer = LAYERS[part_of(target)]
            if layer > own:
                problems.append(
                    f"{module}:{line} imports {target} ({NAMES[own]} may not import {NAMES[layer]})"
                )
    return problems


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in SOURCE.rglob("*.py")}


def test_every_part_of_the_package_has_a_layer():
    parts = {part_of(name) for name in package_sources()}
    assert parts <= set(LAYERS), f"no layer for {sorted(parts - set(LAYERS))}"


def test_no_module_imports_a_layer_above_it():
    assert violations(package_sources()) == []


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("diffusion.processes.base", "from diffusion.samplers import sample"),
        ("diffusion.measure.oracle", "from diffusion.training.config import TrainConfig"),
        ("diffusion.samplers.ode", "import diffusion.io.runs"),
        ("diffusion.training.loop", "from diffusion.io.checkpoints import save_checkpoint"),
        ("diffusion.data.toy", "from diffusion import workflows"),
    ],
)
def test_a_forbidden_import_is_caught(module, line):
    """The check fails when a forbidden import is added, also inside a function."""
    sources = package_sources()
    sources[module] += f"\n\ndef _added():\n    {line}\n"
    found = violations(sources)
    assert len(found) == 1 and found[0].startswith(module), found


def test_type_checking_imports_are_annotations_only():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from diffusion.training.config import TrainConfig\n"
    )
    assert violations({"diffusion.processes.fake": source}) == []
