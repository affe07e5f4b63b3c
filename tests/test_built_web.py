"""The built book as a web page on a phone and on paper (`make book` first).

- Light pages: no page loads the theme's full Font Awesome (script or fonts); the
  icons come from two small fonts (book/_static/icons, tools/icons.py) that hold
  every icon the pages use; MathJax is the lean set of components the book needs
  (_config.yml), with every formula typeset; the head's scripts are deferred.
- Print: on a page with quizzes and an explorer, printed (print media, and a PDF):
  code wraps, each quiz question prints with its answer and explanation and no
  controls, and each explorer prints its current frame with its settings.

Lighthouse scores are a benchmark, not a test: tools/lighthouse.py.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest

import bookfiles as bf
from test_built_book import HTML, _move, _movable_control, browser, page_of  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.built

ICONS = bf.ROOT / "book" / "_static" / "icons"
# A page with code, quizzes (single, multiple and numeric) and an explorer, and light enough to print fast.
PRINTED = bf.ROOT / "book" / "how_this_book_works.ipynb"


@pytest.fixture(scope="module", autouse=True)
def built():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book under _build/html: run `make book` first")


def _icons_tool():
    spec = importlib.util.spec_from_file_location("book_icons", bf.ROOT / "tools" / "icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_icon_the_pages_use_is_in_the_book_icon_fonts():
    ttlib = pytest.importorskip("fontTools.ttLib")
    solid, brands = _icons_tool().glyphs_needed(HTML)
    for name, needed in {"solid": solid, "brands": brands}.items():
        have = set(ttlib.TTFont(ICONS / f"book-icons-{name}.woff").getBestCmap())
        missing = sorted(hex(c) for c in needed - have)
        assert not missing, f"book-icons-{name}.woff lacks glyphs the pages use: {missing} (run tools/icons.py)"


@pytest.mark.parametrize("path", bf.by_page(bf.toc_files()))
def test_pages_load_light_assets_and_defer_their_scripts(path):
    html = page_of(path).read_text(encoding="utf-8")
    assert "fontawesome.js" not in html, "the theme's full Font Awesome script is back"
    assert "tex-chtml-full" not in html and "mathjax/es5/startup.js" in html
    head = html[: html.index("</head>")]
    blocking = [src for attrs, src in re.findall(r'<script([^>]*)src="([^"]+)"', head)
                if not re.search(r"\b(defer|async)\b", attrs) and "documentation_options.js" not in src]
    assert not blocking, f"render-blocking scripts in the head: {blocking}"


def _open(browser, url: str, width: int = 1366, height: int = 900):
    """A page in a fresh context, every request recorded; requests off the local server are refused."""
    base, chromium = browser
    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((base, "data:")) else r.abort())
    page.goto(urljoin(base, url), wait_until="load")
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("() => MathJax.startup.promise")
    page.evaluate("() => document.fonts.ready.then(() => true)")
    return context, page, requests, errors


def test_printed_page_wraps_code_and_shows_quiz_answers_and_the_explorers_current_frame(browser, tmp_path):
    url = page_of(PRINTED).relative_to(HTML).as_posix()
    context, page, requests, errors = _open(browser, url)
    try:
        # On screen: icons from the book's small fonts, none of Font Awesome's files, math typeset.
        assert not [u for u in requests if "fontawesome" in u or "/webfonts/" in u], "Font Awesome was fetched"
        assert page.evaluate("() => document.fonts.check('900 16px \"Book Icons\"')"), "the icon font did not load"
        assert page.locator("mjx-container").count() > 0 and page.locator("mjx-merror").count() == 0
        assert not errors, f"JavaScript errors: {errors}"

        # The reader moves an explorer, then prints.
        explorer = page.locator(".lle").first
        frame = explorer.locator(".lle-frame").first  # the drawn frame, keyed by its settings
        before = frame.get_attribute("data-key")
        _move(*_movable_control(explorer))
        assert frame.get_attribute("data-key") != before
        settings = explorer.locator("select, input").evaluate_all("els => els.map(e => e.value)")
        page.emulate_media(media="print")
        page.set_viewport_size({"width": 700, "height": 900})  # about an A4 page's text width

        # Code wraps: no code block is wider than its box.
        cut = page.evaluate("""() => Array.from(document.querySelectorAll('div.highlight pre'))
            .filter(p => p.scrollWidth > p.clientWidth + 1).length""")
        assert page.locator("div.highlight pre").count() > 0 and cut == 0, f"{cut} code blocks are cut at the edge"

        # Quizzes: every question shows its answer with its explanation; no inputs or buttons.
        questions = page.locator(".llq-q")
        assert questions.count() > 0
        for i in range(questions.count()):
            answer = questions.nth(i).locator(".llq-answer")
            assert answer.is_visible() and len(answer.inner_text()) > 20, f"question {i + 1}: no printed answer"
        shown = page.locator(".llq input, .llq button").evaluate_all(
            "els => els.filter(e => e.getClientRects().length).length")
        assert shown == 0, "quiz controls print"
        assert page.locator(".llq-right:visible, .llq-wrong:visible").count() == 0

        # Explorers: the frame the reader chose prints whole, in the page, kept with its settings.
        assert frame.is_visible() and frame.get_attribute("data-key") != before
        box = frame.bounding_box()
        assert box["width"] > 100 and box["x"] + box["width"] <= 700 + 1
        assert explorer.locator("select, input").evaluate_all("els => els.map(e => e.value)") == settings
        assert explorer.evaluate("el => getComputedStyle(el).breakInside") == "avoid"
        assert page.evaluate("""() => Array.from(document.querySelectorAll('figure'))
            .every(f => getComputedStyle(f).breakInside === 'avoid')""")
        assert not page.locator(".bd-header").is_visible()

        pdf = tmp_path / "printed.pdf"
        page.pdf(path=str(pdf), format="A4", print_background=False)
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000
    finally:
        context.close()
