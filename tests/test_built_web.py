"""The built book as a web page on a phone and on paper (`make book` first).

- Light pages: no page loads the theme's full Font Awesome (script or fonts); the
  icons come from two small fonts (book/_static/icons, tools/icons.py) that hold
  every icon the pages use; no page loads MathJax: the build typeset every formula
  (tools/mathjax/prerender.js), none is left as TeX, each carries the hidden MathML
  that screen readers read, and the shared stylesheet has a rule for every character
  the pages draw; figures are image files loaded lazily, with their size; the head's
  scripts are deferred.
- Speed on a phone (losslab.sphinxext; book/_static/sections.js, scrollables.js): each page
  loads the explorers' and quizzes' script once, not a copy per block; an explorer's
  figure data is a file of its own, fetched (with plotly.js) only as the explorer nears
  the screen; plain code tokens carry no <span>; off-screen sections are skipped by the
  browser (content-visibility), yet links into the page land on their target, and on a
  page just opened every region that scrolls sideways is already reachable by keyboard
  and no control is reported on top of another (axe's scrollable-region-focusable and
  target-size, before any key is pressed).
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
from test_built_book import HTML, measure_scrollables, _move, _movable_control, browser, page_of  # noqa: F401 (browser: a fixture)

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
    assert "window.MathJax" not in html and not re.search(r'<script[^>]*src="[^"]*mathjax', html, re.I), \
        "the page loads MathJax (its math is typeset at build time)"
    # Figures are image files fetched as they near the screen, with their size (no layout shift), not base64 in the page.
    assert 'src="data:image/' not in html, "a figure is embedded in the page as base64"
    for img in re.findall(r'<img class="ll-figure"[^>]*>', html):
        src = re.search(r'src="([^"]+)"', img).group(1)
        assert (page_of(path).parent / src).is_file(), f"missing figure file {src}"
        assert re.search(r'\swidth="\d+" height="\d+"', img) and 'loading="lazy"' in img, f"figure not lazy or unsized: {img[:160]}"
    head = html[: html.index("</head>")]
    blocking = [src for attrs, src in re.findall(r'<script([^>]*)src="([^"]+)"', head)
                if not re.search(r"\b(defer|async)\b", attrs) and "documentation_options.js" not in src]
    assert not blocking, f"render-blocking scripts in the head: {blocking}"


MATH_CSS = HTML / "_static" / "mathjax" / "chtml.css"
# Where TeX delimiters may stay as they are: code, scripts, styles, and the typeset formulas themselves.
_NOT_TEXT = re.compile(r"<(script|style|pre|code|textarea|mjx-container)\b.*?</\1>", re.S | re.I)
_DELIMITERS = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{")


@pytest.mark.parametrize("path", bf.by_page(bf.toc_files()))
def test_math_is_typeset_at_build_time_with_mathml_for_screen_readers(path):
    """Every formula was typeset by the build (MathJax's finished output in the page), none is left as
    TeX, each carries the hidden MathML a screen reader reads and stays out of the Tab order, and the
    page links the shared stylesheet, which has a rule for every character the page draws."""
    import html as html_lib

    page = page_of(path)
    html = page.read_text(encoding="utf-8")
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", _NOT_TEXT.sub(" ", html[html.index("<body"):])))
    raw = [text[max(0, m.start() - 40): m.end() + 40] for m in _DELIMITERS.finditer(text)]
    assert not raw, f"math left as TeX: {raw[:5]}"
    # Sphinx's math elements (prose formulas) each hold a typeset formula.
    math_nodes = re.findall(r'<(?:span|div) class="math[ "][^>]*>\s*(<[a-z-]+)?', html)
    assert all(tag == "<mjx-container" for tag in math_nodes), "a math element without its typeset formula"
    containers = re.findall(r"<mjx-container\b([^>]*)>(.*?)</mjx-container>", html, re.S)
    if not containers:
        assert "data-prerendered-math" not in html
        return
    for attrs, inner in containers:
        assert "tabindex" not in attrs, "a formula is in the Tab order"
        assert "<mjx-merror" not in inner, f"MathJax could not typeset a formula: {inner[:200]}"
        assert re.match(r'<mjx-math [^>]*aria-hidden="true"', inner), "the drawn formula is not hidden from screen readers"
        assert re.search(r"<mjx-assistive-mml [^>]*><math [^>]*>.+</math></mjx-assistive-mml>$", inner, re.S), \
            "a formula without the MathML that screen readers read"
    link = re.search(r'<link rel="stylesheet" type="text/css" href="([^"?]+)\?v=[0-9a-f]+" data-prerendered-math', html)
    assert link, "a page with math does not link the math stylesheet"
    assert (page.parent / link.group(1)).resolve() == MATH_CSS.resolve()
    css = MATH_CSS.read_text(encoding="utf-8")
    drawn = set(re.findall(r'<mjx-c class="(mjx-c[0-9A-F]+(?: [A-Z0-9-]+)?)"', html))
    missing = sorted(c for c in drawn if f"mjx-c.{c.replace(' ', '.')}::before" not in css)
    assert not missing, f"characters without a rule in {MATH_CSS.name}: {missing[:10]}"
    fonts = set(re.findall(r"url\(\"?([^\")]+\.woff)", css))
    assert fonts and all((MATH_CSS.parent / f).exists() for f in fonts), f"math fonts missing: {fonts}"


PRERENDER = bf.ROOT / "tools" / "mathjax" / "prerender.js"
_PAGE = """<!DOCTYPE html>
<html><head><title>t</title></head><body>
<section class="tex2jax_ignore mathjax_ignore"><p>Prose \\(x\\) is ignored, <span class="math notranslate">\\(a &lt; b\\)</span> is not.</p>
<div class="llq tex2jax_process"><p>Quiz \\(y_1\\) and $$\\frac{1}{2}$$, <code>\\(q\\)</code> stays code.</p></div></section>
</body></html>
"""


def test_prerender_typesets_what_mathjax_finds_and_leaves_the_rest_of_the_page(tmp_path):
    """tools/mathjax/prerender.js on a small page: the math MathJax's settings select is typeset (prose math,
    quiz math with both delimiters, entities decoded), ignored prose and code keep their text, the rest of
    the page is byte for byte what it was, and an undefined macro fails with the page and the formula named."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("no Node.js on this machine")
    page, css = tmp_path / "page.html", tmp_path / "_static" / "mathjax" / "chtml.css"
    page.write_text(_PAGE, encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mathjax": {"loader": {"load": ["input/tex", "output/chtml", "a11y/assistive-mml"]},
                                              "options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}},
                                  "css": str(css), "fonts": "woff-v2"}))
    done = subprocess.run([node, str(PRERENDER), str(config), str(page)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = page.read_text(encoding="utf-8")
    formulas = re.findall(r"<mjx-container\b.*?</mjx-container>", html, re.S)
    assert len(formulas) == 3 and 'display="true"' in formulas[2]
    assert "<mo>&lt;</mo>" in formulas[0] and "<mfrac>" in formulas[2]
    rest = re.sub(r"<mjx-container\b.*?</mjx-container>", "@", html, flags=re.S)
    link = '<link rel="stylesheet" type="text/css" href="_static/mathjax/chtml.css?v='
    assert rest.startswith(_PAGE.split("</head>")[0] + link)
    expected = re.sub(r"\\\(a &lt; b\\\)|\\\(y_1\\\)|\$\$\\frac\{1\}\{2\}\$\$", "@", _PAGE.split("</head>")[1])
    assert rest.split("</head>", 1)[1] == expected
    assert "mjx-c.mjx-c1D44E.TEX-I::before" in css.read_text(encoding="utf-8")  # the a of a < b

    page.write_text(_PAGE.replace("y_1", "\\undefinedmacro"), encoding="utf-8")
    done = subprocess.run([node, str(PRERENDER), str(config), str(page)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "page.html" in done.stderr and "undefinedmacro" in done.stderr


def _open(browser, url: str, width: int = 1366, height: int = 900, keyboard: bool = True):
    """A page in a fresh context, every request recorded; requests off the local server are refused.
    With ``keyboard``, as a keyboard reader has it (measure_scrollables); else just loaded, untouched."""
    base, chromium = browser
    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((base, "data:")) else r.abort())
    page.goto(urljoin(base, url), wait_until="load")
    if keyboard:
        measure_scrollables(page)
    else:
        page.evaluate("() => document.fonts.ready.then(() => true)")
    return context, page, requests, errors


def test_printed_page_wraps_code_and_shows_quiz_answers_and_the_explorers_current_frame(browser, tmp_path):
    url = page_of(PRINTED).relative_to(HTML).as_posix()
    context, page, requests, errors = _open(browser, url)
    try:
        # On screen: icons from the book's small fonts, none of Font Awesome's files, math typeset (by the build).
        assert not [u for u in requests if "fontawesome" in u or "/webfonts/" in u], "Font Awesome was fetched"
        assert page.evaluate("() => document.fonts.check('900 16px \"Book Icons\"')"), "the icon font did not load"
        assert page.locator("mjx-container").count() > 0 and page.locator("mjx-merror").count() == 0
        assert page.evaluate("() => document.fonts.check('16px MJXTEX')"), "the math font did not load"
        assert not [u for u in requests if re.search(r"mathjax/.*\.js", u)], "MathJax's JavaScript was fetched"
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


@pytest.mark.parametrize("path", bf.by_page(bf.chapters()))
def test_interactive_blocks_share_their_scripts_and_code_tokens_stay_light(path):
    page = page_of(path)
    html = page.read_text(encoding="utf-8")
    assert "window.losslabExplorer = window.losslabExplorer" not in html, "a copy of the explorer script in the page"
    assert "window.losslabQuiz = window.losslabQuiz" not in html, "a copy of the quiz script in the page"
    for kind in ("explorer", "quiz"):
        assert len(re.findall(rf'<script defer src="[^"]*_static/losslab/{kind}\.\w+\.js"', html)) == 1, kind
    data = re.findall(r'<script type="application/json" class="lle-data"([^>]*)>(.*?)</script>', html, re.S)
    assert data and all(not body and "data-src=" in attrs for attrs, body in data), "explorer data left in the page"
    for attrs, _ in data:
        assert (page.parent / re.search(r'data-src="([^"]+)"', attrs).group(1)).is_file()
    plain = re.findall(r'<span class="(?:n|p|w)">', "".join(re.findall(r'<div class="highlight">.*?</pre>', html, re.S)))
    assert not plain, f"{len(plain)} plain code tokens still wrapped in <span>"


def test_explorer_data_and_plotly_load_only_as_an_explorer_nears_the_screen(browser):  # noqa: F811
    url = page_of(bf.ROOT / "book" / "01_loss_functions.ipynb").relative_to(HTML).as_posix()
    context, page, requests, errors = _open(browser, url, 390, 844, keyboard=False)
    try:
        page.wait_for_timeout(500)
        early = [u for u in requests if "/_static/losslab/data/" in u or "plotly" in u]
        assert not early, f"fetched before any explorer neared the screen: {early}"
        # scroll to it as a reader does, until it is drawn (a first jump may land short while the sections
        # around it are laid out)
        assert page.evaluate("""async () => { const b = document.querySelector('.lle .lle-frame'), t0 = performance.now();
          while (b.dataset.drawn !== b.dataset.key && performance.now() - t0 < 15000) {
            b.scrollIntoView({block: 'center'}); await new Promise(r => setTimeout(r, 200)); }
          return b.dataset.drawn === b.dataset.key; }"""), "the first explorer was not drawn"
        fetched = [u for u in requests if "/_static/losslab/data/" in u]
        assert len(fetched) >= 1 and sum("plotly" in u for u in requests) == 1
        assert len(fetched) < page.locator(".lle").count(), "every explorer's data was fetched at once"
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("path", bf.by_page(bf.chapters()))
def test_a_page_just_opened_passes_the_checks_that_measure_it(browser, path):  # noqa: F811
    """Before any key is pressed, at phone width, where most code and many formulas scroll, and most of
    the page is still skipped by the browser: axe finds no region out of the keyboard's reach
    (scrollables.js has only estimated, from the text, which regions scroll), and no control that
    overlaps another (target-size, which Lighthouse runs on a page just opened: a skipped section's
    content must not be reported on top of the next section's)."""
    from test_built_book import _axe_violations  # noqa: PLC0415

    context, page, _, errors = _open(browser, page_of(path).relative_to(HTML).as_posix(), 390, 844, keyboard=False)
    try:
        page.wait_for_function("() => document.querySelector('pre[data-scrolls], mjx-container[data-scrolls]')")
        assert page.evaluate("() => document.documentElement.dataset.sections") is None, "laid out without a reader"
        found = _axe_violations(page, ["scrollable-region-focusable", "target-size"])
        assert not found, found
        assert not errors, errors
    finally:
        context.close()


def test_links_into_a_page_land_on_their_target(browser):  # noqa: F811
    """Sections off screen are skipped by the browser with a guessed height: opening a page at an anchor far
    down, and following a link in the page, still brings the target to the top of the view (below the header)."""
    path = bf.ROOT / "book" / "03_gradient_descent.ipynb"
    url = page_of(path).relative_to(HTML).as_posix()
    context, page, _, errors = _open(browser, url, 390, 844, keyboard=False)
    try:
        ids = page.evaluate("() => Array.from(document.querySelectorAll('.bd-article section section[id]')).map(s => s.id)")
        far, back = ids[-2], ids[len(ids) // 2]
        top = "(id) => document.getElementById(id).getBoundingClientRect().top"
        page.goto(urljoin(page.url.split("#")[0], f"#{far}"), wait_until="load")
        page.wait_for_timeout(800)
        assert 0 <= page.evaluate(top, far) < 150, f"#{far} is at {page.evaluate(top, far)} px"
        page.evaluate("(id) => { const a = document.createElement('a'); a.href = '#' + id; a.textContent = 'x';"
                      " document.querySelector('.bd-article').prepend(a); a.click(); }", back)
        page.wait_for_timeout(800)
        assert 0 <= page.evaluate(top, back) < 150, f"#{back} is at {page.evaluate(top, back)} px"
        page.wait_for_function("() => document.documentElement.dataset.sections === 'done'", timeout=20_000)
        skippable = page.evaluate("() => Array.from(document.querySelectorAll('.bd-article *'))"
                                  ".filter(e => getComputedStyle(e).contentVisibility === 'auto').length")
        assert skippable == 0, f"{skippable} blocks left skippable after the layout finished (book.css skips more than sections.js shows?)"
        assert 0 <= page.evaluate(top, back) < 150, "the view moved while the sections were laid out"
        assert not errors, errors
    finally:
        context.close()
