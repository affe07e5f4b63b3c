"""The reader edition in JupyterLab, as a reader meets it: headless Chromium runs a page, moves a control, answers a quiz.

The built book is checked in a browser (tests/test_built_book.py); this is the
same check for "runs in Jupyter". One page (the demo page,
``book/how_this_book_works.ipynb``) is executed here once, offline, so the
reader edition can write its glued numbers in; that edition is opened in a
JupyterLab server started for the test, and Chromium

1. runs every cell (Run > Run All Cells; JupyterLab 4.6 asks which kernel
   to start on the first run, and the test answers "Select" as a reader
   does) and waits for the last one, failing on any traceback;
2. moves the explorer's "weight w" slider with the keyboard, as a reader
   would, and waits for the figure to redraw;
3. answers the first quiz question and waits for the "Correct." feedback.

With ipywidgets 7 in the kernel (``.venv-jlab7``, the last 7.x) the package's
requirement (ipywidgets 8) is not met: there the test checks that the setup
cell says in one line how to upgrade and restart
(``%pip install -q 'ipywidgets>=8,<9'``, :func:`losslab.book.widgets_advice`),
and that the quiz, plain HTML and script, works; the explorer is not driven.

Controls are found the way ipywidgets draws them in every version (a
``.widget-slider`` box whose ``.widget-label`` reads "weight w", then its
handle: ``[role=slider]`` in ipywidgets 8, ``.ui-slider-handle`` in 7),
and "redrawn" means that the explorer's picture changed, whatever draws it
(``img`` sources, ``svg`` and ``canvas`` content in the output area): the
test does not depend on how an explorer draws its figure.

JupyterLab is not part of the pinned environment: ``make jupyterlab-test``
builds one (``.venv-jlab``, and ``.venv-jlab7`` with ipywidgets 7) and runs
``pytest -m jupyterlab`` in each; ``make test`` deselects these tests
(tests/conftest.py), and without JupyterLab they skip. Timings go to
``_build/jupyterlab-timings-ipywidgets<major>.json`` and the test's output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.jupyterlab

ROOT = Path(__file__).resolve().parents[1]
PAGE = "how_this_book_works"
SLIDER_LABEL = "weight w"          # the demo explorer's Slider(label=...)
QUESTION = "demo.gradient-sign"     # a single-choice question on the page
RIGHT_CHOICE = "Down, towards 3"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMINGS: dict[str, float] = {}


def _needs():
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed here: run `make jupyterlab-test` "
                                             "(it builds .venv-jlab with jupyterlab==4.6.6)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reader_page(tmp_path_factory):
    """The reader edition of the demo page, from one offline, static execution of it (the build's run)."""
    _needs()
    from nbclient import NotebookClient

    from losslab import reader

    out = tmp_path_factory.mktemp("lab")
    src = ROOT / "book" / f"{PAGE}.ipynb"

    def executed_for(path: Path):
        nb = nbformat.read(str(path), as_version=4)
        env = dict(os.environ, LOSSLAB_STATIC="1")
        old = os.environ.copy()
        os.environ.update(env)
        try:
            NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(old)
        return nb

    t0 = time.perf_counter()
    [written] = reader.write_edition(ROOT, out, [src], executed_for)
    TIMINGS["reader_edition_s"] = time.perf_counter() - t0
    edition = nbformat.read(str(written), as_version=4)
    assert not reader.leftover_markup(edition)
    assert not any(c.get("outputs") for c in edition.cells if c.cell_type == "code"), "the reader edition ships without outputs"
    return written


@pytest.fixture(scope="module")
def lab(reader_page, tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving the reader edition's folder; yields its base URL and token."""
    home = tmp_path_factory.mktemp("jupyter-home")
    settings = home / "settings"
    # every cell in the DOM (no virtualised notebook), no news or update checks
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        pkg, name = plugin.rsplit("/", 1)
        (settings / pkg).mkdir(parents=True, exist_ok=True)
        (settings / pkg / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(os.environ)
    env.pop("LOSSLAB_STATIC", None)  # live explorers, as in a reader's kernel
    env.update({
        "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "code"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    log = (home / "server.log").open("w")
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.root_dir={reader_page.parent}", f"--IdentityProvider.token={token}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("JupyterLab did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.25)
        TIMINGS["server_start_s"] = time.perf_counter() - t0
        yield base, token, home / "server.log"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _kernel_connected(base: str, token: str) -> bool:
    """True once the server has a session for the page whose kernel is idle with a client connected."""
    try:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
            sessions = json.load(r)
    except OSError:
        return False
    return any(s.get("path", "").endswith(f"{PAGE}.ipynb") and s["kernel"].get("execution_state") == "idle"
               and s["kernel"].get("connections", 0) >= 1 for s in sessions)


def _picture(output_area) -> str:
    """What the explorer draws, whatever draws it: image sources, svg and canvas content in its output area."""
    return output_area.evaluate(
        """el => [...el.querySelectorAll('img')].map(i => i.src).join('|') + '#' +
               [...el.querySelectorAll('svg')].filter(s => !s.closest('.widget-slider'))
                   .map(s => s.outerHTML.length + ':' + s.textContent).join('|') + '#' +
               [...el.querySelectorAll('canvas')].map(c => { try { return c.toDataURL().length } catch (e) { return 0 } }).join('|')"""
    )


def test_reader_edition_runs_in_jupyterlab(lab, reader_page):
    from playwright.sync_api import expect, sync_playwright

    import ipywidgets

    base, token, server_log = lab
    widgets_major = int(ipywidgets.__version__.split(".")[0])
    n_code = sum(c.cell_type == "code" for c in nbformat.read(str(reader_page), as_version=4).cells)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        # nothing leaves this machine: requests elsewhere are recorded (and fail the test); not intercepted
        # with page.route, which holds every request (and the kernel's websocket) on a Python round trip
        blocked: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:", "ws://127.0.0.1"))
                else blocked.append(r.url))
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        try:
            _drive(page, base, token, n_code, widgets_major)
        except Exception:
            shot = ROOT / "_build" / f"jupyterlab-failure-ipywidgets{widgets_major}.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot of the failure: {shot}\ntimings so far: {TIMINGS}\nblocked requests: {blocked}\nserver log:\n"
                  + server_log.read_text()[-3000:])
            raise
        finally:
            chromium.close()
    assert not blocked, f"the page requested addresses outside the local server: {blocked[:5]}"

    TIMINGS["ipywidgets"] = ipywidgets.__version__
    out = ROOT / "_build" / f"jupyterlab-timings-ipywidgets{widgets_major}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(TIMINGS, indent=1))
    print("\nJupyterLab test timings: " + ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in TIMINGS.items()))


def _drive(page, base: str, token: str, n_code: int, widgets_major: int) -> None:
    from playwright.sync_api import expect

    t0 = time.perf_counter()
    page.goto(f"{base}/lab/tree/{PAGE}.ipynb?reset&token={token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook).to_be_visible()
    TIMINGS["open_s"] = time.perf_counter() - t0

    # 1. Run > Run All Cells. JupyterLab 4.6 starts no kernel on opening a notebook: start one first,
    # as a reader does, then run all cells once it is connected and idle
    def run_all() -> None:
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    t0 = time.perf_counter()
    prompts = notebook.locator(".jp-CodeCell .jp-InputArea-prompt")
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    # start the kernel once, as a reader does when asked: the toolbar's kernel button, then "Select"
    # (several overlapping starts leave the page talking to a kernel it has dropped)
    expect(dialog).to_have_count(0)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").locator(".jp-KernelName, .jp-Toolbar-kernelName").first.click()
    dialog.locator("button.jp-mod-accept").click()
    deadline = time.monotonic() + 240
    idle_polls = 0
    while idle_polls < 4:  # connected and idle for 2 s
        idle_polls = idle_polls + 1 if _kernel_connected(base, token) else 0
        assert time.monotonic() < deadline, "the notebook's kernel did not start, connect and settle within 240 s"
        time.sleep(0.5)
    expect(page.locator(".jp-StatusBar-Widget", has_text="Idle").first).to_be_visible()
    TIMINGS["kernel_start_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_all()
    time.sleep(1.5)  # let the kernel turn busy: the loop below waits for it to be idle again
    deadline = time.monotonic() + 300
    while True:
        texts = prompts.all_inner_texts()
        done = [t for t in texts if t.strip().strip("[]:").strip().isdigit()]
        if len(texts) == n_code and len(done) == n_code and _kernel_connected(base, token):
            break
        assert time.monotonic() < deadline, f"cells did not finish in 300 s: prompts {texts}"
        time.sleep(0.25)
    TIMINGS["run_all_s"] = time.perf_counter() - t0
    outputs = notebook.locator(".jp-OutputArea-output")
    text = "\n".join(outputs.all_inner_texts())
    assert "Traceback" not in text and "Error:" not in text.replace("ClaimError:", ""), text[-3000:]
    if widgets_major >= 8:
        assert "ipywidgets" not in text, "setup() advised about ipywidgets although the kernel has 8:\n" + text[:2000]
    else:
        # the package needs ipywidgets 8: with 7 the setup cell says, in one line, how to upgrade and restart
        advice = [line for line in text.splitlines() if "ipywidgets" in line]
        assert advice and "%pip install -q 'ipywidgets>=8,<9'" in advice[0] and "restart the kernel" in advice[0], text[:2000]
        TIMINGS["advice"] = advice[0]

    if widgets_major >= 8:
        _move_the_explorer(page, notebook)
    _answer_the_quiz(page, notebook)


def _move_the_explorer(page, notebook) -> None:
    from playwright.sync_api import expect

    # 2. the explorer: its "weight w" slider, moved with the keyboard; the picture must redraw
    slider_in = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=SLIDER_LABEL))
    slider = notebook.locator(".widget-slider", has=page.locator(".widget-label", has_text=SLIDER_LABEL))
    expect(slider).to_have_count(1)
    handle = slider.locator("[role=slider], .ui-slider-handle").first
    area = notebook.locator(".jp-Cell-outputArea", has=slider_in)
    before = _picture(area)
    assert before.strip("#|"), "the explorer shows no picture"
    readout = slider.locator(".widget-readout")
    readout_before = readout.inner_text()
    t0 = time.perf_counter()
    handle.focus()
    handle.press("End")
    expect(readout).not_to_have_text(readout_before)
    deadline = time.monotonic() + 60
    while _picture(area) == before:
        assert time.monotonic() < deadline, "the explorer did not redraw within 60 s of moving its slider"
        time.sleep(0.1)
    TIMINGS["control_s"] = time.perf_counter() - t0
    TIMINGS["readout_after"] = readout.inner_text()


def _answer_the_quiz(page, notebook) -> None:
    from playwright.sync_api import expect

    # 3. the quiz: answer its first question right, and see the feedback
    question = notebook.locator(f"[data-qid='{QUESTION}']")
    t0 = time.perf_counter()
    question.get_by_role("radio", name=RIGHT_CHOICE).check()
    question.get_by_role("button", name="Check").click()
    expect(question.locator(".llq-right")).to_be_visible()
    expect(question.get_by_role("status")).to_have_text("Correct.")  # what a screen reader hears
    TIMINGS["quiz_s"] = time.perf_counter() - t0
