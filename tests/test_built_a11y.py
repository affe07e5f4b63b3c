"""The built pages by keyboard and screen reader: axe-core's WCAG 2.1 A and AA rules in light and dark mode, and the Tab order.

Split from ``test_built_book.py`` (whose helpers it uses) so that the two files run on the two
pytest-xdist workers of ``make test``; each file opens every page once.
"""

from __future__ import annotations

import pytest

import bookfiles as bf
from test_built_book import (  # noqa: F401  (browser, opened and built are fixtures)
    _answer_wrong_then_right, _axe_violations, _set_mode, browser, built, opened,
)

pytestmark = pytest.mark.built


@pytest.mark.parametrize("path", bf.by_page(bf.toc_files()))
def test_no_wcag_violations_in_light_and_dark_mode(opened, path):
    """axe-core's WCAG 2.1 A and AA rules, on the page as a reader leaves it (quizzes answered), in both colour modes."""
    page = opened(path).page
    questions = page.locator(".llq-q")
    for i in range(questions.count()):  # the reader's state: every question answered, wrong then right
        q = questions.nth(i)
        _answer_wrong_then_right(q, q.get_attribute("data-kind"))
    found = {}
    try:
        _set_mode(page, "light")
        found["light"] = _axe_violations(page)
        # The colour mode changes colours only: in dark mode, the rules about colour. The theme's dark
        # palette is checked on whole pages (the front matter and the appendices); on the chapters, the
        # colours the book sets itself (quizzes, explorers, boxes, code), where the audit found its
        # dark-mode failures. (Contrast on a whole chapter costs about 7 s of the browser's time.)
        _set_mode(page, "dark")
        own = [".llq", ".lle", ".admonition", "article code"] if path in bf.chapters() else None
        found["dark"] = _axe_violations(page, ["color-contrast", "link-in-text-block"], include=own)
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
