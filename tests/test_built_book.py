"""Checks on the built HTML (`make book` first; `make test` runs these after it).

The browser tests drive every page in headless Chromium (Debian's package,
which .ci/run installs) with Playwright, served from a local server with every
other address blocked; without Chromium they are skipped with the reason
shown. They also write screenshots of every chapter at laptop and phone widths
to _build/screenshots/ for reviewers.
"""

from __future__ import annotations

import functools
import os
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest
import yaml

import bookfiles as bf
from losslab.book import read_repository

pytestmark = pytest.mark.built

HTML = bf.ROOT / "_build" / "html"
SHOTS = bf.ROOT / "_build" / "screenshots"
SCREENSHOTS = os.environ.get("LOSSLAB_SCREENSHOTS") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def page_of(path: Path) -> Path:
    return HTML / path.relative_to(bf.ROOT).with_suffix(".html")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book under _build/html: run `make book` first")


@pytest.mark.parametrize("path", bf.by_page(bf.toc_files()))
def test_every_page_is_built(path):
    assert page_of(path).exists()


@pytest.mark.parametrize("path", bf.by_page(bf.notebooks()))
def test_pages_carry_static_interactives_not_blank_widgets(path):
    html = page_of(path).read_text(encoding="utf-8")
    assert "application/vnd.jupyter.widget-view+json" not in html
    if path in bf.chapters() or path.stem == "how_this_book_works":  # appendices need neither
        assert 'class="llq tex2jax_process"' in html, "no quiz rendered"
        assert 'class="lle"' in html, "no explorer rendered"
    for frame in re.findall(r'<div class="lle-frame"[^>]*>', html):
        assert re.search(r'role="img" aria-label="[^"]{10,}"', frame), f"explorer frame without alt text: {frame[:120]}"
    assert "Traceback" not in html


@pytest.mark.parametrize("path", bf.by_page(bf.notebooks()))
def test_launch_buttons_point_at_this_notebook(path):
    html = page_of(path).read_text(encoding="utf-8")
    url, branch = read_repository(bf.ROOT / "_config.yml")
    reader = yaml.safe_load((bf.ROOT / "_config.yml").read_text())["sphinx"]["config"]["losslab_reader_branch"]
    repo = url.removeprefix("https://github.com/")
    rel = path.relative_to(bf.ROOT).as_posix()
    # Colab and Binder open the reader edition (MyST converted); editing goes to the source.
    assert f"https://colab.research.google.com/github/{repo}/blob/{reader}/{rel}" in html
    assert f"https://mybinder.org/v2/gh/{repo}/{reader}?urlpath=lab/tree/{rel}" in html
    assert f"{url}/edit/{branch}/{rel}" in html


def test_glued_numbers_reach_the_prose():
    html = page_of(bf.ROOT / "book" / "how_this_book_works.ipynb").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", html)
    assert re.search(r"The largest slope of the sigmoid is\s+0\.2500,\s+at\s+\S{0,12}z\s*=\S{0,12}\s*0\.00", text)



def test_internal_links_and_anchors_resolve():
    from bs4 import BeautifulSoup

    ids: dict[Path, set[str]] = {}

    def anchors(path: Path) -> set[str]:
        if path not in ids:
            soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
            ids[path] = {tag["id"] for tag in soup.find_all(id=True)} | {a["name"] for a in soup.find_all("a", attrs={"name": True})}
        return ids[path]

    broken = []
    for page in sorted(HTML.rglob("*.html")):
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for a in soup.find_all("a", href=True):
            href = a["href"]
            parsed = urlparse(href)
            if parsed.scheme or href.startswith(("mailto:", "javascript:", "//")):
                continue
            target = page if not parsed.path else (page.parent / unquote(parsed.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(HTML)}: {href} (no such file)")
            elif parsed.fragment and target.suffix == ".html" and unquote(parsed.fragment) not in anchors(target):
                broken.append(f"{page.relative_to(HTML)}: {href} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


# --- in a browser ----------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield base, chromium
        chromium.close()
    server.shutdown()


# book/_static/scrollables.js measures the regions that may scroll sideways (wide formulas, code, outputs) as they
# near the view, and all of them once a reader presses Tab; book/_static/sections.js lays out the sections the
# browser skipped off screen from a reader's first key or scroll on. The tests read the page as a keyboard reader
# has it once both are done.
SCROLLABLES_MEASURED = """() => document.readyState === 'complete' && window.losslabScrollables
  && document.documentElement.dataset.scrollables === 'done'
  && (document.documentElement.dataset.sections === 'done' || !document.querySelector('.bd-article section section, .bd-article div.cell'))"""


def measure_scrollables(page) -> None:
    """Wait for the fonts (the math's too), press Tab as a keyboard reader does (scrollables.js then measures
    every region that may scroll sideways, and sections.js lays out every section once) and wait until both have."""
    page.evaluate("() => document.fonts.ready.then(() => true)")
    page.wait_for_function("() => document.readyState === 'complete' && !!window.losslabScrollables")
    page.evaluate("() => document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Tab', bubbles: true}))")
    page.wait_for_function(SCROLLABLES_MEASURED)


class Visit:
    """One page in a fresh browser context: every request leaving the local server is blocked and recorded."""

    def __init__(self, browser, url: str, width: int = 1280, height: int = 900):
        base, chromium = browser
        self.context = chromium.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))

        def route(r):
            if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.goto(urljoin(base, url), wait_until="load")

    def wait_for_math(self):
        """The math is typeset by the build; wait for its fonts, then press Tab as a keyboard reader does
        (scrollables.js then measures every region that may scroll sideways) and wait for that to finish."""
        measure_scrollables(self.page)

    def close(self):
        self.context.close()


def rel_url(path: Path) -> str:
    return page_of(path).relative_to(HTML).as_posix()


@pytest.fixture(scope="module")
def opened(browser):
    """Each page opened once (laptop width, math typeset) and shared by the tests below, in file order."""
    visits: dict[Path, Visit] = {}

    def get(path: Path) -> Visit:
        if path not in visits:
            visits[path] = Visit(browser, rel_url(path), *LAPTOP)
            visits[path].wait_for_math()
        return visits[path]

    yield get
    for visit in visits.values():
        visit.close()


LAPTOP, PHONE = (1366, 900), (390, 844)


@pytest.mark.parametrize("path", bf.by_page(bf.toc_files()))
def test_page_loads_offline_without_errors_and_every_image_has_alt_text(opened, path):
    visit = opened(path)
    assert not visit.errors, f"JavaScript errors: {visit.errors}"
    assert not visit.outside, f"requests leaving the local server: {visit.outside}"
    assert not visit.failed, f"failed requests: {visit.failed}"
    missing = visit.page.eval_on_selector_all(
        "article img", "imgs => imgs.filter(i => !(i.getAttribute('alt') || '').trim()).map(i => i.outerHTML.slice(0, 120))"
    )
    assert not missing, f"images without alt text: {missing}"
    if visit.page.locator(".math").count():
        # Typeset by the build: every math element holds MathJax's output, and no MathJax script ran.
        assert visit.page.locator(".math:not(:has(mjx-container))").count() == 0, "the build did not typeset the page's math"
        assert visit.page.evaluate("() => !window.MathJax"), "the page loaded MathJax"


@pytest.mark.parametrize("path", bf.by_page(bf.notebooks()))
def test_screenshots_at_laptop_and_phone_width(opened, path):
    """Before anything is clicked, so the screenshots show what a reader first sees."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = opened(path).page
    try:
        for label, (width, height) in {"laptop": LAPTOP, "phone": PHONE}.items():
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(150)  # let the theme's responsive layout settle
            if SCREENSHOTS:  # for a person to look at (LOSSLAB_SCREENSHOTS=1); CI keeps its time for the checks
                out = SHOTS / f"{path.stem}-{label}.jpg"
                # the top of the page, at most 6,000 px (a JPEG holds at most 65,535 px, and a long chapter
                # at phone width is taller than that: the file then comes out empty)
                tall = min(page.evaluate("() => document.documentElement.scrollHeight"), 6_000)
                page.screenshot(path=str(out), full_page=True, type="jpeg", quality=50,
                                clip={"x": 0, "y": 0, "width": width, "height": tall})
                assert out.stat().st_size > 10_000
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{label}: the page scrolls sideways by {overflow}px"
    finally:
        page.set_viewport_size({"width": LAPTOP[0], "height": LAPTOP[1]})


def _answer_wrong_then_right(q, kind: str) -> None:
    choices = q.locator(".llq-choice")
    if kind == "numeric":
        inp = q.locator("input.llq-input")
        answer = float(inp.get_attribute("data-answer"))
        tol = float(inp.get_attribute("data-tol")) + float(inp.get_attribute("data-rtol")) * abs(answer)
        inp.fill(repr(answer + 10 * tol + 1))
        q.locator(".llq-check").click()
        assert q.locator(".llq-wrong").is_visible() and "too high" in q.locator(".llq-wrong").inner_text()
        inp.fill(repr(answer))
        q.locator(".llq-check").click()
    else:
        flags = [choices.nth(i).get_attribute("data-correct") == "1" for i in range(choices.count())]
        wrong = flags.index(False)
        choices.nth(wrong).locator("input").check()
        # Selecting is not answering: nothing is graded until Check (arrow keys must not reveal the key).
        assert not q.locator(".llq-wrong").is_visible() and not q.locator(".llq-right").is_visible()
        q.locator(".llq-check").click()
        assert q.locator(".llq-wrong").is_visible() and not q.locator(".llq-right").is_visible()
        if choices.nth(wrong).locator(".llq-why").count():
            assert choices.nth(wrong).locator(".llq-why").is_visible()
        for i, good in enumerate(flags):
            box = choices.nth(i).locator("input")
            if good:
                box.check()
            elif kind == "multiple":
                box.uncheck()
        q.locator(".llq-check").click()
    assert q.locator(".llq-right").is_visible() and not q.locator(".llq-wrong").is_visible()


# The steps of _answer_wrong_then_right, in the page: returns what went wrong, per question.
_ANSWER_WRONG_THEN_RIGHT = """(indices) => {
  const qs = document.querySelectorAll('.llq-q'), out = [];
  const shown = el => !!el && el.checkVisibility({visibilityProperty: true}) && el.getClientRects().length > 0;
  const right = q => q.querySelector(':scope > .llq-right'), wrong = q => q.querySelector(':scope > .llq-wrong');
  for (const i of indices) {
    const q = qs[i], kind = q.dataset.kind, id = q.dataset.id || i, check = q.querySelector('.llq-check');
    const fail = msg => out.push(id + ': ' + msg);
    if (kind === 'numeric') {
      const inp = q.querySelector('input.llq-input'), a = Number(inp.dataset.answer);
      const tol = Number(inp.dataset.tol) + Number(inp.dataset.rtol) * Math.abs(a);
      inp.value = String(a + 10 * tol + 1); check.click();
      if (!shown(wrong(q)) || !wrong(q).innerText.includes('too high')) fail('a high answer is not called too high');
      inp.value = String(a); check.click();
    } else {
      const choices = Array.from(q.querySelectorAll('.llq-choice')), flags = choices.map(c => c.dataset.correct === '1');
      const bad = choices[flags.indexOf(false)];
      bad.querySelector('input').checked = true;
      if (shown(wrong(q)) || shown(right(q))) fail('graded before Check');
      check.click();
      if (!shown(wrong(q)) || shown(right(q))) fail('a wrong choice is not called wrong');
      const why = bad.querySelector('.llq-why');
      if (why && !shown(why)) fail("the wrong choice's explanation is not shown");
      choices.forEach((c, k) => { const box = c.querySelector('input');
        if (flags[k]) box.checked = true; else if (kind === 'multiple') box.checked = false; });
      check.click();
    }
    if (!shown(right(q)) || shown(wrong(q))) fail('the right answer is not called right');
  }
  return out;
}"""


def _movable_control(explorer):
    """The first control of an explorer that has more than one value in the static book."""
    controls = explorer.locator("[data-j]")
    for k in range(controls.count()):
        control = controls.nth(k)
        kind = control.evaluate("el => el.type")
        if kind == "checkbox" or (kind == "range" and int(control.get_attribute("max")) > 0) \
                or (kind.startswith("select") and control.locator("option").count() > 1):
            return control, kind
    raise AssertionError(f"explorer {explorer.get_attribute('data-name')}: no control can change the figure")


def _move(control, kind: str) -> None:
    if kind == "checkbox":
        control.click()
    elif kind == "range":
        top = control.get_attribute("max")
        control.fill("0" if control.input_value() == top else top)
    else:
        options = control.locator("option")
        current = control.input_value()
        other = next(options.nth(k).get_attribute("value") for k in range(options.count())
                     if options.nth(k).get_attribute("value") != current)
        control.select_option(other)


# --- accessibility ------------------------------------------------------------------

WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


# One token of each colour in the highlighted code, marked data-axe-sample (the marks of the other colour
# mode are dropped first: a token's colour differs between the modes).
_MARK_CODE_SAMPLES = """() => {
  document.querySelectorAll('[data-axe-sample]').forEach(el => el.removeAttribute('data-axe-sample'));
  const seen = new Set();
  for (const el of document.querySelectorAll('.highlight span')) {
    if (el.children.length || !el.textContent.trim()) continue;
    const s = getComputedStyle(el), key = [el.className, s.color, s.fontWeight, s.fontStyle].join('|');
    if (!seen.has(key)) { seen.add(key); el.setAttribute('data-axe-sample', ''); }
  }
  return seen.size;
}"""


def _axe_violations(page, rules: list[str] | None = None, include: list[str] | None = None,
                    exclude: list[str] | None = None) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page (or only ``rules``; only inside ``include``
    selectors, and not inside ``exclude`` ones unless an ``include`` selector names the element itself)."""
    axe = pytest.importorskip("axe_playwright_python", reason="axe-playwright-python (axe-core) is not installed")
    if not page.evaluate("() => !!window.axe"):
        page.evaluate((Path(axe.__file__).parent / "axe.min.js").read_text(encoding="utf-8"))
    only = {"type": "rule", "values": rules} if rules else {"type": "tag", "values": WCAG}
    context = {"include": [[sel] for sel in include or ["html"]], "exclude": [[sel] for sel in exclude or []]} \
        if include or exclude else None
    result = page.evaluate("([only, context]) => axe.run(context || document, {runOnly: only, resultTypes: ['violations']})",
                           [only, context])
    return [f"{v['id']} ({v['impact']}, {len(v['nodes'])}x): {v['help']}; e.g. {v['nodes'][0]['target']}"
            for v in result["violations"]]


def _set_mode(page, mode: str) -> None:
    """Switch the colour mode and let the colours settle (the theme animates them; axe must not catch one mid-change)."""
    page.evaluate("m => { if (!document.getElementById('no-transitions')) { const s = document.createElement('style');"
                  " s.id = 'no-transitions'; s.textContent = '*, *::before, *::after { transition: none !important; }';"
                  " document.head.appendChild(s); }"
                  " localStorage.setItem('mode', m); localStorage.setItem('theme', m);"
                  " document.documentElement.dataset.mode = m; document.documentElement.dataset.theme = m; }", mode)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


@pytest.mark.parametrize("path", bf.by_page(bf.toc_files()))
def test_no_wcag_violations_in_light_and_dark_mode(opened, path):
    """axe-core's WCAG 2.1 A and AA rules, on the page as a reader leaves it (quizzes answered), in both colour modes."""
    page = opened(path).page
    found = {}
    try:
        _set_mode(page, "light")
        # Highlighted code is thousands of tokens in a few dozen colours: the contrast of each colour
        # (token class, colour, weight, style) is checked on one token that carries it, and the rest of
        # the code is left out (checking every token took 8-10 s of a chapter's 13 s).
        page.evaluate(_MARK_CODE_SAMPLES)
        found["light"] = _axe_violations(page, include=["html", "[data-axe-sample]"], exclude=[".highlight"])
        # The colour mode changes colours only: in dark mode, the rules about colour. The theme's dark
        # palette is checked on whole pages (the front matter and the appendices); on the chapters, the
        # colours the book sets itself (quizzes, explorers, boxes, code), where the audit found its
        # dark-mode failures.
        _set_mode(page, "dark")
        page.evaluate(_MARK_CODE_SAMPLES)
        if path in bf.chapters():
            found["dark"] = _axe_violations(page, ["color-contrast", "link-in-text-block"],
                                            include=[".llq", ".lle", ".admonition", "article code", "[data-axe-sample]"],
                                            exclude=[".highlight"])
        else:
            found["dark"] = _axe_violations(page, ["color-contrast", "link-in-text-block"],
                                            include=["html", "[data-axe-sample]"], exclude=[".highlight"])
    finally:
        _set_mode(page, "light")
    assert not found["light"] and not found["dark"], f"axe violations: {found}"


# Tab stops of the prose: a code cell's own stops (its scrollable code and its copy button, two per
# cell, the reader's way into the code) are not counted.
_FOCUSABLE = """() => Array.from(document.querySelectorAll(
    'a[href], button, input, select, textarea, summary, [tabindex]'))
  .filter(el => el.tabIndex >= 0 && !el.disabled && el.getClientRects().length
          && getComputedStyle(el).visibility !== 'hidden' && !el.closest('.cell_input'))"""


@pytest.mark.parametrize("path", bf.by_page(bf.notebooks()))
def test_keyboard_reaches_each_explorer_and_quiz_feedback_is_announced(opened, path):
    page = opened(path).page
    # Formulas are out of the Tab order, except a display formula too wide for the column, which
    # scrolls and so must be reachable (it is then a named region).
    assert page.locator("mjx-container[tabindex='0']:not([role='region'])").count() == 0, "formulas are in the Tab order"
    # From the heading of the section an explorer sits in to its first control: a few Tab presses.
    gaps = page.evaluate("""(focusable) => {
      const all = (%s)();
      const heads = Array.from(document.querySelectorAll('article h1, article h2, article h3'));
      return Array.from(document.querySelectorAll('.lle')).map(ex => {
        const head = heads.filter(h => h.compareDocumentPosition(ex) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
        const first = all.findIndex(el => ex.contains(el));
        const after = all.findIndex(el => head && (head.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING));
        return [ex.dataset.name, first - after];
      });
    }""" % _FOCUSABLE, None)
    far = [(name, n) for name, n in gaps if n > 10]
    assert not far, f"Tab stops from a section heading to its explorer (at most 10): {far}"
    # Feedback is announced: every quiz's feedback sits in a live region.
    silent = page.evaluate("""() => Array.from(document.querySelectorAll('.llq-q')).filter(q =>
        !q.querySelector('[aria-live], [role=status]')).map(q => q.dataset.id || q.id)""")
    assert not silent, f"quiz feedback without a live region: {silent}"



def test_search_scripts_load_on_the_search_page_only():
    chapter = page_of(bf.chapters()[0]).read_text(encoding="utf-8")
    assert "searchtools.js" not in chapter and "searchindex.js" not in chapter
    assert "searchtools.js" in (HTML / "search.html").read_text(encoding="utf-8")
    assert re.search(r'<meta name="description" content="[^"]{40,}"', chapter), "no meta description"
