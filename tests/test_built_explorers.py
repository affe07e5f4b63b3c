"""The built book's explorers as instruments (issue 19), in headless Chromium.

Per chapter page, every quiz gives feedback (wrong, then right) and every explorer responds
to its controls and records them in the address. Every explorer:

- ships its figure data, drawn by the vendored plotly.js (no PNG frames, no CDN);
- at a 390 px phone width, has no text smaller than 10 CSS px (controls, labels
  and the figure's own SVG text), no panel narrower than 200 px (panels stack),
  no figure labels drawn over each other (a figure that cannot stack keeps a
  minimum width and scrolls sideways in its own box), and nothing wider than
  the page;
- at a 1366 px laptop width, overflows nothing;
- moves every control through every position: each position selects a frame
  that exists, is drawn, and carries its own alt text (different from the
  previous position's);
- offers at least :data:`MIN_POSITIONS` positions on every numeric slider it
  shows (a control with a single position is not shown in the static book).

A page is opened once per width and every explorer on it is measured there.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import pytest

import bookfiles as bf
from test_built_book import (  # noqa: F401  (browser and opened are fixtures)
    _ANSWER_WRONG_THEN_RIGHT, HTML, Visit, _answer_wrong_then_right, _movable_control, _move, browser, opened,
    page_of, rel_url,
)

pytestmark = pytest.mark.built

MIN_POSITIONS = 9
MIN_TEXT_PX = 10
MIN_PANEL_PX = 200
PHONE, LAPTOP = (390, 844), (1366, 900)


PAGES = [p for p in bf.notebooks() if 'class="lle"' in (page_of(p).read_text(encoding="utf-8") if page_of(p).exists() else "")]

# Each explorer scrolled into view (an explorer draws, and redraws after a resize, near the screen only)
# until it shows its frame at its current width.
_DRAW_ALL = """async () => {
  const done = box => box.dataset.drawn === box.dataset.key && box.dataset.width === String(box.clientWidth);
  const boxes = Array.from(document.querySelectorAll('.lle .lle-frame'));
  for (const box of boxes) {
    box.scrollIntoView();
    const t0 = performance.now();
    while (!done(box) && performance.now() - t0 < 15000) await new Promise(r => setTimeout(r, 25));
  }
  window.scrollTo(0, 0);
  return boxes.filter(b => !done(b)).map(b => b.closest('.lle').dataset.name);
}"""

_MEASURE = """(minPanel) => Array.from(document.querySelectorAll('.lle')).map(ex => {
  const visible = el => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden';
  const texts = Array.from(ex.querySelectorAll('*')).filter(el =>
      visible(el) && Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim()));
  const small = texts.map(el => [el.textContent.trim().slice(0, 30), parseFloat(getComputedStyle(el).fontSize)])
      .filter(([, px]) => px < %d);
  const page = document.documentElement.clientWidth;
  const r = ex.getBoundingClientRect();
  const panels = Array.from(ex.querySelectorAll('.nsewdrag')).map(d => d.getBoundingClientRect().width);
  // Labels that cover each other are not legible at any size: pairs of figure texts whose boxes
  // overlap by more than a third of the smaller one.
  const boxes = Array.from(ex.querySelectorAll('svg text')).filter(t => visible(t) && t.textContent.trim())
      .map(t => [t.textContent.trim().slice(0, 20), t.getBoundingClientRect()]).filter(([, b]) => b.width && b.height);
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [ta, a] = boxes[i], [tb, b] = boxes[j];
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 0 && h > 0 && w * h > Math.min(a.width * a.height, b.width * b.height) / 3) overlaps.push(ta + ' / ' + tb);
  }
  return {name: ex.dataset.name, small: small.slice(0, 5), overflow: ex.scrollWidth - ex.clientWidth,
          outside: Math.max(0, r.right - page, -r.left), narrow: panels.filter(w => w < minPanel),
          svgText: ex.querySelectorAll('svg text').length, overlaps: overlaps.slice(0, 5)};
})""" % MIN_TEXT_PX


@pytest.fixture(scope="module")
def visits(browser):  # noqa: F811
    """Each page opened once; ``get(path, size)`` sizes it and scrolls to each explorer until it is drawn at that width."""
    opened: dict = {}

    def get(path, size):
        if path not in opened:
            opened[path] = Visit(browser, rel_url(path), *size)
            opened[path].wait_for_math()
        visit = opened[path]
        visit.page.set_viewport_size({"width": size[0], "height": size[1]})
        undrawn = visit.page.evaluate(_DRAW_ALL)
        assert not undrawn, f"explorers not drawn at {size[0]} px: {undrawn}"
        return visit

    yield get
    for v in opened.values():
        v.close()


@pytest.mark.parametrize("path", bf.by_page(PAGES))
def test_explorers_are_legible_on_a_phone_and_fit_a_laptop(visits, path):
    for size in (PHONE, LAPTOP):
        visit = visits(path, size)
        assert not visit.errors, f"JavaScript errors: {visit.errors}"
        assert not visit.outside, f"requests leaving the local server: {visit.outside}"
        for m in visit.page.evaluate(_MEASURE, MIN_PANEL_PX):
            where = f"{m['name']} at {size[0]} px"
            assert m["svgText"] > 0, f"{where}: no figure text drawn"
            assert not m["small"], f"{where}: text smaller than {MIN_TEXT_PX} px: {m['small']}"
            assert m["overflow"] <= 1 and m["outside"] <= 1, f"{where}: overflows by {m['overflow']} / {m['outside']} px"
            assert not m["overlaps"], f"{where}: labels drawn over each other: {m['overlaps']}"
            if size == PHONE:
                assert not m["narrow"], f"{where}: panels narrower than {MIN_PANEL_PX} px: {m['narrow']}"


_SWEEP = """async (minPositions) => {
  const out = [];
  const wait = async (box) => { const t0 = performance.now();
    while (box.dataset.drawn !== box.dataset.key && performance.now() - t0 < 10000) await new Promise(r => setTimeout(r, 10)); };
  for (const ex of document.querySelectorAll('.lle')) {
    const box = ex.querySelector('.lle-frame');
    const data = await window.losslabExplorer.dataOf(ex);  // from its data file, as the explorer loads it
    const res = {name: ex.dataset.name, problems: [], sliders: [], moves: 0};
    box.scrollIntoView();
    for (const el of ex.querySelectorAll('[data-j]')) {
      if (el.type === 'hidden') continue;
      const n = el.type === 'checkbox' ? 2 : el.tagName === 'SELECT' ? el.options.length : parseInt(el.max, 10) + 1;
      if (el.type === 'range' && !el.dataset.complete) res.sliders.push([el.dataset.name, n]);  // complete: every value it has
      if (n < 2) res.problems.push(`${el.dataset.name}: a control shown with one position`);
      let before = box.getAttribute('aria-label');
      const start = el.type === 'checkbox' ? (el.checked ? 1 : 0) : parseInt(el.value, 10);
      for (let k = 1; k <= n; k++) {
        const i = (start + k) % n;
        if (el.type === 'checkbox') el.checked = i === 1; else el.value = String(i);
        el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true}));
        await wait(box);
        res.moves++;
        const key = box.dataset.key, alt = box.getAttribute('aria-label');
        if (!data.frames[key]) res.problems.push(`${el.dataset.name}=${i}: no frame ${key}`);
        if (box.dataset.drawn !== key) res.problems.push(`${el.dataset.name}=${i}: frame ${key} not drawn`);
        if (alt !== data.alts[key] || alt.length < 20) res.problems.push(`${el.dataset.name}=${i}: alt text missing`);
        if (alt === before && n > 1) res.problems.push(`${el.dataset.name}=${i}: alt text did not change`);
        if (/[a-z]+_[a-z_]+/.test(alt)) res.problems.push(`${el.dataset.name}=${i}: raw identifier in alt text: ${alt.match(/[a-z]+_[a-z_]+/)[0]}`);
        before = alt;
      }
    }
    out.push(res);
  }
  return out;
}"""


@pytest.mark.parametrize("path", bf.by_page(PAGES))
def test_every_control_moves_through_every_position(visits, path):
    visit = visits(path, LAPTOP)
    results = visit.page.evaluate(_SWEEP, MIN_POSITIONS)
    assert results, "no explorer on the page"
    for r in results:
        assert r["moves"] > 0, f"{r['name']}: no control to move"
        assert not r["problems"], f"{r['name']}: {r['problems'][:6]}"
        few = [s for s in r["sliders"] if s[1] < MIN_POSITIONS]
        assert not few, f"{r['name']}: sliders with fewer than {MIN_POSITIONS} positions: {few}"
    assert not visit.errors, f"JavaScript errors: {visit.errors}"


def test_plotly_is_vendored_once_and_pages_stay_under_4_mb():
    plotly = HTML / "_static" / "plotly-cartesian.min.js"
    assert plotly.exists() and plotly.stat().st_size > 500_000, "plotly.js is not vendored into _static"
    heavy = {}
    for path in bf.notebooks():
        page = page_of(path)
        html = page.read_text(encoding="utf-8")
        assert "cdn.plot.ly" not in html and "<script src=\"https://" not in html
        # The explorers' data is in files of its own, loaded as each explorer nears the screen.
        data = [page.parent / src for src in re.findall(r'class="lle-data" data-id="\w+" data-src="([^"]+)"', html)]
        assert len(data) == html.count('class="lle-data"'), f"{path.stem}: explorer data left in the page"
        weight = len(html.encode("utf-8")) + sum(f.stat().st_size for f in data)
        if weight > 4_000_000:
            heavy[path.stem] = weight
    assert not heavy, f"pages over 4 MB (HTML with its explorers' data): {heavy}"
    assert json.dumps(heavy) == "{}"


# Here rather than in test_built_book.py so that the two test workers (one file each) share the browser work.
@pytest.mark.parametrize("path", bf.by_page(bf.notebooks()))
def test_every_quiz_gives_feedback_and_every_explorer_responds(browser, opened, path):
    visit = opened(path)
    page = visit.page
    questions = page.locator(".llq-q")
    interactive = path in bf.chapters() or path.stem == "how_this_book_works"  # appendices may have neither
    if not interactive and not questions.count() and not page.locator(".lle").count():
        pytest.skip(f"{path.stem} has no quiz or explorer")
    assert questions.count() > 0
    # The first question of each kind is answered as a reader does (Playwright's clicks and typing);
    # the rest by the same steps in one script (the same handlers, without a browser round trip per
    # click: about 0.5 s a question on this machine).
    kinds = [questions.nth(i).get_attribute("data-kind") for i in range(questions.count())]
    by_hand = [kinds.index(k) for k in dict.fromkeys(kinds)]
    for i in by_hand:
        _answer_wrong_then_right(questions.nth(i), kinds[i])
    failures = page.evaluate(_ANSWER_WRONG_THEN_RIGHT, [i for i in range(len(kinds)) if i not in by_hand])
    assert not failures, f"quiz feedback: {failures}"
    if page.locator(".llq .math").count():
        assert page.locator(".llq .math:not(:has(mjx-container))").count() == 0, "quiz math was not typeset"

    explorers = page.locator(".lle")
    assert explorers.count() > 0
    shown = {}
    for i in range(explorers.count()):
        ex = explorers.nth(i)
        name = ex.get_attribute("data-name")
        img = ex.locator(".lle-frame")
        before_src, before_alt = img.get_attribute("data-key"), img.get_attribute("aria-label")
        _move(*_movable_control(ex))
        assert img.get_attribute("data-key") != before_src, f"explorer {name}: the figure did not change"
        # the alt text comes with the figure's data, which the explorer loads as it nears the screen
        pytest.importorskip("playwright.sync_api").expect(img).not_to_have_attribute("aria-label", before_alt,
                                                                                     timeout=10_000)
        assert f"{name}." in unquote(page.url), f"explorer {name}: the page address does not record its settings"
        shown[name] = img.get_attribute("data-key")
    assert not visit.errors, f"JavaScript errors: {visit.errors}"

    # The address reproduces the view: reopen it and find the same frame in every explorer.
    again = Visit(browser, page.url.split("/", 3)[3])
    try:
        for name, src in shown.items():
            same = again.page.locator(f'.lle[data-name="{name}"] .lle-frame').get_attribute("data-key")
            assert same == src, f"explorer {name}: opening the recorded address shows another frame"
    finally:
        again.close()
