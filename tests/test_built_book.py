"""Checks on the built HTML (`make book` first; `make test` runs these after it).

The browser test drives the pages in headless Chromium (Debian's package,
which .ci/run installs) with Playwright; without them it is skipped with the
reason shown.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest

import bookfiles as bf
from losslab.book import read_repository

pytestmark = pytest.mark.built

HTML = bf.ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def page_of(path: Path) -> Path:
    return HTML / path.relative_to(bf.ROOT).with_suffix(".html")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book under _build/html: run `make book` first")


@pytest.mark.parametrize("path", bf.toc_files(), ids=lambda p: p.stem)
def test_every_page_is_built(path):
    assert page_of(path).exists()


@pytest.mark.parametrize("path", bf.notebooks(), ids=lambda p: p.stem)
def test_pages_carry_static_interactives_not_blank_widgets(path):
    html = page_of(path).read_text(encoding="utf-8")
    assert "application/vnd.jupyter.widget-view+json" not in html
    assert 'class="llq tex2jax_process"' in html, "no quiz rendered"
    assert 'class="lle"' in html, "no explorer rendered"
    for img in re.findall(r'<img class="lle-frame"[^>]*>', html):
        assert re.search(r'alt="[^"]{10,}"', img), f"explorer frame without alt text: {img[:120]}"
    assert "Traceback" not in html


@pytest.mark.parametrize("path", bf.notebooks(), ids=lambda p: p.stem)
def test_launch_buttons_point_at_this_notebook(path):
    html = page_of(path).read_text(encoding="utf-8")
    url, branch = read_repository(bf.ROOT / "_config.yml")
    repo = url.removeprefix("https://github.com/")
    rel = path.relative_to(bf.ROOT).as_posix()
    assert f"https://colab.research.google.com/github/{repo}/blob/{branch}/{rel}" in html
    assert f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=lab/tree/{rel}" in html


def test_glued_numbers_reach_the_prose():
    html = page_of(bf.ROOT / "book" / "how_this_book_works.ipynb").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", html)
    assert re.search(r"The largest slope of the sigmoid is\s+0\.2500,\s+at\s+\S{0,12}z\s*=\S{0,12}\s*0\.00", text)


@pytest.fixture(scope="module")
def browser_page():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield base, page, errors
        browser.close()
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


def test_demo_quiz_and_explorer_respond_without_a_kernel(browser_page):
    base, page, errors = browser_page
    page.goto(f"{base}/book/how_this_book_works.html")
    single = page.locator('.llq-q[data-kind="single"]').first
    choices = single.locator(".llq-choice")
    wrong = [i for i in range(choices.count()) if choices.nth(i).get_attribute("data-correct") == "0"][0]
    right = [i for i in range(choices.count()) if choices.nth(i).get_attribute("data-correct") == "1"][0]
    choices.nth(wrong).click()
    assert single.locator(".llq-wrong").is_visible() and not single.locator(".llq-right").is_visible()
    choices.nth(right).click()
    assert single.locator(".llq-right").is_visible() and not single.locator(".llq-wrong").is_visible()

    multi = page.locator('.llq-q[data-kind="multiple"]').first
    boxes = multi.locator(".llq-choice")
    for i in range(boxes.count()):
        if boxes.nth(i).get_attribute("data-correct") == "1":
            boxes.nth(i).locator("input").check()
    multi.locator(".llq-check").click()
    assert multi.locator(".llq-right").is_visible()

    numeric = page.locator('.llq-q[data-kind="numeric"]').first
    answer = float(numeric.locator("input").get_attribute("data-answer"))
    numeric.locator("input").fill(str(answer * 2 + 1))
    numeric.locator(".llq-check").click()
    assert "too high" in numeric.locator(".llq-wrong").inner_text()
    numeric.locator("input").fill(str(answer))
    numeric.locator("input").press("Enter")
    assert numeric.locator(".llq-right").is_visible()

    explorer = page.locator(".lle").first
    img = explorer.locator("img.lle-frame")
    before, alt_before = img.get_attribute("src"), img.get_attribute("alt")
    slider = explorer.locator('input[type="range"]').first
    slider.fill(slider.get_attribute("max"))
    assert img.get_attribute("src") != before
    assert img.get_attribute("alt") != alt_before
    ours = [e for e in errors if "losslab" in e or "llq" in e or "lle" in e]
    assert not ours, ours
