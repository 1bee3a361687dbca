"""The site checker must fail on each defect it promises to catch, and pass a clean page.

A small site is written to a temporary folder: one clean page with typeset math,
an image and working links, and one page per defect.  The browser must report
each defect on its page and nothing on the clean one.  Run by ``make browser``
before the check of the book (``pytest tests`` does not collect it: it needs
Chromium).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import check_site  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def _mathjax_dir() -> Path:
    """MathJax as the book ships it: the copy in the sphinx-mathjax-offline package."""
    for p in map(Path, sys.path):
        d = p / "sphinx-mathjax-offline" / "static" / "mathjax"
        if d.is_dir():
            return d
    raise RuntimeError("sphinx-mathjax-offline is not installed")


HEAD = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<link rel="icon" href="data:,">{extra}</head><body>{body}</body></html>"""

MATHJAX_TAG = '<script defer src="_static/mathjax/tex-chtml.js"></script>'
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f3d8"
    "b40000000049454e44ae426082"
)

# page -> (extra head, body, a phrase its report must contain)
DEFECTS = {
    "console.html": ("", "<script>console.error('broken on purpose')</script>", "console error: broken on purpose"),
    "exception.html": ("", "<script>undefinedFunction()</script>", "JavaScript exception"),
    "missing_script.html": ('<script src="nope.js"></script>', "", "HTTP 404"),
    "cdn.html": ('<script src="https://cdn.example.org/lib.js"></script>', "", "non-local host"),
    "thebe_text.html": ("<script>const URL0 = 'https://unpkg.com/thebe/lib/index.js'</script>", "",
                        "script text names https://unpkg.com"),
    "font.html": ('<link rel="stylesheet" href="https://fonts.example.org/css?family=X">', "", "non-local host"),
    "broken_image.html": ("", '<img src="no_such.png" alt="x">', "image did not load"),
    "untypeset.html": ("", '<p><span class="math">\\(x^2\\)</span></p>', "formula not typeset"),
    "raw_tex.html": (MATHJAX_TAG, "<p>The mean is $$\\mu$$ here, written badly \\frac</p>", "TeX left as text"),
    "tex_error.html": (MATHJAX_TAG, '<p><span class="math">\\(x^1^2\\)</span></p>', "MathJax error: 'Double exponent"),
    "tex_macro.html": (MATHJAX_TAG, '<p><span class="math">\\(\\nosuchmacro x\\)</span></p>',
                       "undefined macro"),
    "tex_unclosed.html": (MATHJAX_TAG, '<p><span class="math">\\(\\frac{x\\)</span></p>', "formula not typeset"),
    "dead_link.html": ("", '<a href="nowhere.html">x</a>', "link to a missing page"),
    "dead_anchor.html": ("", '<a href="index.html#no-such-id">x</a>', "link to a missing anchor"),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make browser` installs it (apt-get install chromium)")
    root = tmp_path_factory.mktemp("site")
    (root / "_static").mkdir()
    (root / "_static" / "mathjax").symlink_to(_mathjax_dir(), target_is_directory=True)
    (root / "dot.png").write_bytes(PNG)
    good = (
        '<h1 id="top">Clean</h1><p>Inline <span class="math">\\(\\hat x = \\frac{x-\\mu}{\\sigma}\\)</span>.</p>'
        '<div class="math">\\[\\sum_i x_i\\]</div><img src="dot.png" alt="dot">'
        '<a href="#top">up</a> <a href="index.html#top">self</a> <a href="https://example.org/">out</a>'
        '<pre>$$ in code is fine \\(</pre>'
    )
    (root / "index.html").write_text(HEAD.format(extra=MATHJAX_TAG, body=good))
    for name, (extra, body, _) in DEFECTS.items():
        (root / name).write_text(HEAD.format(extra=extra, body=body))
    (root / "warn.html").write_text(HEAD.format(extra="", body="<script>console.warn('only a warning')</script>"))
    return check_site.inspect_site(root, tmp_path_factory.mktemp("shots"), CHROMIUM, timeout_ms=15000)


def test_every_page_is_opened(report):
    assert set(report.pages) == {"index.html", "warn.html", *DEFECTS}


def test_clean_page_passes_with_typeset_math(report):
    assert report.bad.get("index.html") is None, report.bad.get("index.html")
    assert report.n_math >= 2  # the clean page's two formulas were typeset


@pytest.mark.parametrize("page", sorted(DEFECTS))
def test_each_defect_is_reported(report, page):
    phrase = DEFECTS[page][2]
    msgs = report.bad.get(page, [])
    assert any(phrase in m for m in msgs), f"{page}: expected {phrase!r} in {msgs}"


def test_console_warning_is_noted_not_failed(report):
    assert "warn.html" not in report.bad
    assert any("only a warning" in m for m in report.notes.get("warn.html", []))
