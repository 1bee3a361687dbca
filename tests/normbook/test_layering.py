"""The two rooms of the tree: normlib (the library) never imports normbook (the book's
helpers), and importing normlib pulls in none of the book's extra dependencies."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BOOK_ONLY = ("normbook", "matplotlib", "sklearn", "PIL", "tqdm")


def _imported_modules(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_normlib_sources_never_import_the_book_or_its_extras():
    offenders = {
        f"{p.relative_to(ROOT)}: {m}"
        for p in sorted((ROOT / "normlib").rglob("*.py"))
        for m in _imported_modules(p)
        if m.split(".")[0] in BOOK_ONLY
    }
    assert not offenders, sorted(offenders)


def test_importing_normlib_loads_no_book_dependency():
    # torch itself imports tqdm when it is installed: count only what normlib adds.
    code = (
        "import sys, numpy, torch, array_api_compat\n"
        "before = set(sys.modules)\n"
        "import normlib, normlib.nn, normlib.functional\n"
        f"bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {BOOK_ONLY!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
