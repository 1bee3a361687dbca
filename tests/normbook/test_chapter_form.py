"""What every chapter of the book owes its reader, checked on the committed notebooks:
code that fits the page, a summary, exercises with solutions, and saved outputs."""
from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
WIDTH = 88  # the page shows this many columns of code without a scroll bar
# an exercise directive (backtick or colon fence) and its :label: among its options
EXERCISE = re.compile(r"[`:]{3,}\{exercise\}[^\n]*\n(?::[\w-]+:[^\n]*\n)*?:label:\s*(\S+)")


def _cells(path: pathlib.Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_chapters():
    assert len(CHAPTERS) >= 14


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_in_88_columns(path):
    wide = [
        f"cell {i}: {line[:60]}… ({len(line)} columns)"
        for i, cell in enumerate(_cells(path))
        if cell["cell_type"] == "code"
        for line in _source(cell).splitlines()
        if len(line) > WIDTH
    ]
    assert not wide, f"{path.name} has code lines wider than {WIDTH}: {wide}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_was_executed(path):
    never = [
        i
        for i, cell in enumerate(_cells(path))
        if cell["cell_type"] == "code" and _source(cell).strip() and cell.get("execution_count") is None
    ]
    assert not never, f"{path.name}: code cells {never} carry no saved output (run the notebook)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_ends_with_a_summary_and_exercises_with_solutions(path):
    text = "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    assert re.search(r"^##\s+Summary", text, re.M), f"{path.name} has no '## Summary' section"
    labels = re.findall(EXERCISE, text)
    solved = set(re.findall(r"\{solution-start\}\s+(\S+)", text))
    assert 3 <= len(labels) <= 8, f"{path.name}: {len(labels)} exercises, expected 3 to 6"
    assert set(labels) <= solved, f"{path.name}: exercises without a solution: {set(labels) - solved}"
    assert text.count("{solution-start}") == text.count("{solution-end}")


def test_exercise_labels_are_unique_across_the_book():
    seen: dict[str, str] = {}
    for path in NOTEBOOKS:
        for cell in _cells(path):
            if cell["cell_type"] != "markdown":
                continue
            for label in re.findall(EXERCISE, _source(cell)):
                assert label not in seen, f"label {label} in {path.name} and {seen[label]}"
                seen[label] = path.name
