"""The theory notes keep their promises: every note names code that exists and tests that
exist (and check an identity it states), in the order the issue set out."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTES = sorted((ROOT / "docs" / "theory").glob("[0-9][0-9]-*.md"))
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


def test_the_eight_notes_are_there_in_order():
    numbers = [note.name[:2] for note in NOTES]
    assert numbers == [f"{i:02d}" for i in range(1, 9)]


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
