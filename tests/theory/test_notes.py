"""The theory notes keep their promises: every note names code that exists and tests that
exist (and check an identity it states), in the order the issue set out, and the notation
page lists each symbol once, only symbols the notes use, and sits in the nav after them."""

from __future__ import annotations

import ast
import collections
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTES = sorted((ROOT / "docs" / "theory").glob("[0-9][0-9]-*.md"))
NOTATION = ROOT / "docs" / "theory" / "notation.md"
CODE_REF = re.compile(r"\]\[(diffusion(?:\.\w+)+)\]")  # autorefs: [text][diffusion.x.y]
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def resolve(path: str) -> object:
    """Import the longest module prefix of a dotted path, then walk its attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(path)


def test_the_ten_notes_are_there_in_order():
    numbers = [note.name[:2] for note in NOTES]
    assert numbers == [f"{i:02d}" for i in range(1, 11)]


def test_the_nav_lists_the_notes_in_order_then_the_notation():
    # mkdocs.yml holds !ENV tags that yaml.safe_load refuses: read the theory lines as text.
    nav = re.findall(r"^\s*- (theory/\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert nav == [f"theory/{note.name}" for note in NOTES] + ["theory/notation.md"]


def notation_symbols(text: str) -> list[str]:
    """The symbols the notation tables define: each $...$ of a row's first cell, up to its
    first " = " or " \\in " (so "$\\kappa = \\tfrac12 g^2$" defines "\\kappa")."""
    symbols = []
    for line in text.splitlines():
        if line.startswith("| $"):
            for span in re.findall(r"\$([^$]+)\$", line.split("|")[1]):
                symbols.append(re.split(r"\s=\s|\s\\in\s", span)[0].strip())
    return symbols


def notation_problems(notation: str, notes: str) -> list[str]:
    """Symbols the notation page lists twice, or that no note uses (spaces ignored)."""
    symbols = notation_symbols(notation)
    flat = re.sub(r"\s+", "", notes)
    repeated = [f"twice: {s}" for s, k in collections.Counter(symbols).items() if k > 1]
    return repeated + [f"unused: {s}" for s in symbols if re.sub(r"\s+", "", s) not in flat]


def test_notation_lists_each_symbol_once_and_only_symbols_the_notes_use():
    notation = NOTATION.read_text()
    assert len(notation_symbols(notation)) > 40
    notes = "".join(note.read_text() for note in NOTES)
    assert notation_problems(notation, notes) == []


def test_the_notation_check_finds_a_symbol_with_two_meanings_and_an_unused_one():
    notation = "| $\\gamma$ | the Langevin step |\n| $\\gamma$ | the guidance scale |\n"
    notation += "| $\\kappa = \\tfrac12 g^2$ | a coefficient |\n"
    assert notation_problems(notation, "a step $\\gamma$") == ["twice: \\gamma", "unused: \\kappa"]


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.stem)
def test_every_code_reference_resolves(note):
    refs = set(CODE_REF.findall(note.read_text()))
    assert refs, f"{note.name} names no code"
    missing = []
    for ref in sorted(refs):
        try:
            resolve(ref)
        except (AttributeError, ModuleNotFoundError):
            missing.append(ref)
    assert not missing, f"{note.name} names code that does not exist: {missing}"


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.stem)
def test_every_named_test_exists(note):
    refs = set(TEST_REF.findall(note.read_text()))
    assert refs, f"{note.name} names no test that checks it"
    missing = []
    for path, name in sorted(refs):
        file = ROOT / path
        tree = ast.parse(file.read_text()) if file.exists() else ast.Module(body=[])
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert not missing, f"{note.name} names tests that do not exist: {missing}"


def test_resolve_fails_on_a_missing_name():
    with pytest.raises(AttributeError):
        resolve("diffusion.measure.oracle.NoSuchThing")
    with pytest.raises(ModuleNotFoundError):
        resolve("nosuchpackage.x")
