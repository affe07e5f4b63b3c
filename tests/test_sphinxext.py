"""The build steps of losslab.sphinxext that lighten the pages, on small built outputs of their own.

The built book is checked in test_built_web.py; here each step runs on a folder laid out like
Sphinx's output, with the package's real explorer and quiz HTML, so a wrong step fails without a
book build.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

from sphinx.errors import ExtensionError  # noqa: E402

from losslab import questions, sphinxext  # noqa: E402
from losslab.explore import Choice, Explorer, Slider  # noqa: E402
from losslab.explore.demo import render_sigmoid  # noqa: E402

PYGMENTS = """html[data-theme="light"] .highlight pre { line-height: 125%; }
html[data-theme="light"] .highlight .hll { background-color: #fae4c2 }
html[data-theme="light"] .highlight { background: #fefefe; color: #080808 }
html[data-theme="light"] .highlight .n { color: #080808 } /* Name */
html[data-theme="light"] .highlight .p { color: #080808 } /* Punctuation */
html[data-theme="light"] .highlight .k { color: #6730C5 } /* Keyword */
html[data-theme="light"] .highlight .nb { color: #080808; font-weight: bold } /* Name.Builtin */
html[data-theme="light"] .highlight .o { color: #080808 } /* Operator */
html[data-theme="light"] .highlight .gp { color: #080808 } /* Generic.Prompt */
html[data-theme="light"] .highlight .w { color: #080808 } /* Text.Whitespace */
html[data-theme="dark"] .highlight { background: #2b2b2b; color: #F8F8F2 }
html[data-theme="dark"] .highlight .n { color: #F8F8F2 } /* Name */
html[data-theme="dark"] .highlight .p { color: #f8f8f2 } /* Punctuation */
html[data-theme="dark"] .highlight .k { color: #DCC6E0 } /* Keyword */
html[data-theme="dark"] .highlight .nb { color: #F8F8F2; font-weight: bold } /* Name.Builtin */
html[data-theme="dark"] .highlight .o { color: #ABE338 } /* Operator */
html[data-theme="dark"] .highlight .gp { color: #F8F8F2 } /* Generic.Prompt */
"""


def test_plain_token_classes_are_those_drawn_in_the_codes_own_colour_in_both_modes():
    # n and p: the base colour in both modes (case does not matter); k: its own colours; nb: bold;
    # o: plain in light mode only; w: no dark rule (so its dark colour is not known to be plain);
    # gp: the prompt, which sphinx-copybutton finds by its class.
    assert sphinxext._plain_token_classes(PYGMENTS) == {"n", "p"}


def _page(outdir: Path, name: str, body: str) -> Path:
    page = outdir / "book" / name
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>", encoding="utf-8")
    return page


def _text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_plain_code_tokens_unwraps_only_plain_spans_inside_highlighted_code(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "pygments.css").write_text(PYGMENTS, encoding="utf-8")
    code = ('<div class="highlight"><pre><span></span><span class="k">for</span> <span class="n">x</span> '
            '<span class="ow">in</span> <span class="n">xs</span><span class="p">:</span>\n'
            '    <span class="nb">print</span><span class="p">(</span><span class="n">x</span>'
            '<span class="o">&lt;</span><span class="mi">1</span><span class="p">)</span>\n</pre></div>')
    prose = '<p><span class="n">not code</span></p>'
    page = _page(tmp_path, "a.html", code + prose)
    before = page.read_text(encoding="utf-8")

    assert sphinxext.plain_code_tokens(tmp_path) == 6  # x, xs, x and ":", "(", ")"
    after = page.read_text(encoding="utf-8")
    assert _text(after) == _text(before)  # the same text, character for character
    assert '<span class="n">' not in after.split("<p>")[0] and '<span class="p">' not in after
    for kept in ('<span class="k">for</span>', '<span class="nb">print</span>', '<span class="o">&lt;</span>',
                 '<span class="mi">1</span>', prose):
        assert kept in after


def test_plain_code_tokens_refuses_a_stylesheet_without_the_two_colour_modes(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "pygments.css").write_text(".highlight .n { color: #000 }", encoding="utf-8")
    _page(tmp_path, "a.html", '<div class="highlight"><pre><span class="n">x</span></pre></div>')
    with pytest.raises(ExtensionError, match="no light and dark rules"):
        sphinxext.plain_code_tokens(tmp_path)


def _small_explorer(name: str) -> Explorer:
    return Explorer(name, lambda w, kind: render_sigmoid(w, 0.0, kind == "slope"),
                    {"w": Slider(0.5, 2.0, default=1.0, static=[0.5, 1.0, 2.0]), "kind": Choice(["curve", "slope"])},
                    title="t", alt="sigmoid with w = {w} ({kind})")


def test_interactive_blocks_share_one_script_each_and_explorer_data_moves_to_files(tmp_path):
    blocks = [_small_explorer("t.one").static_html(), _small_explorer("t.two").static_html(),
              questions.render_html(questions.questions()[:2])]
    inline_data = [json.loads(m) for m in re.findall(r'class="lle-data">(.*?)</script>', "".join(blocks), re.S)]
    page = _page(tmp_path, "ch.html", "".join(blocks))

    counts = sphinxext.share_interactive_assets(tmp_path)
    assert counts["copies"] == 3 and counts["data"] == 2 and counts["pages"] == 1
    text = page.read_text(encoding="utf-8")
    # no copy of either script left in the page; each loaded once, deferred, from _static/losslab
    assert "window.losslabExplorer = window.losslabExplorer" not in text and "window.losslabQuiz = " not in text
    head = text.split("</head>")[0]
    for kind, asset in (("explorer", "explorer.js"), ("quiz", "quiz.js")):
        src = re.findall(rf'<script defer src="(\.\./_static/losslab/{kind}\.\w+\.js)"></script>', head)
        assert len(src) == 1, f"{kind}: {src}"
        shared = (page.parent / src[0]).read_text(encoding="utf-8")
        assert shared.startswith((Path(sphinxext.__file__).parent / "assets" / asset).read_text(encoding="utf-8"))
        assert f'[data-losslab="{kind}"]' in shared  # it mounts every block of its kind
    # one copy of each style
    assert text.count(".lle-title {") == 1 and text.count(".llq-q {") == 1
    # each explorer's data in a file of its own, handed to the explorer unchanged
    files = re.findall(r'class="lle-data" data-id="(\w+)" data-src="([^"]+)"></script>', text)
    assert len(files) == 2
    for (key, src), data in zip(files, inline_data):
        body = (page.parent / src).read_text(encoding="utf-8")
        m = re.fullmatch(r'window\.losslabExplorer\.deliver\("(\w+)", JSON\.parse\((".*")\)\);\n', body, re.S)
        assert m and m.group(1) == key
        assert json.loads(json.loads(m.group(2))) == data


def test_files_no_page_refers_to_any_more_are_removed_and_the_rest_kept(tmp_path):
    """An incremental build: one page rebuilt with a new explorer, one page left as an earlier build wrote
    it (its own data and script files are kept), and files of builds before that (removed)."""
    static = tmp_path / "_static" / "losslab"
    (static / "data").mkdir(parents=True)
    kept_data, kept_script = static / "data" / ("a" * 16 + ".js"), static / "explorer.0123456789.js"
    gone_data, gone_script = static / "data" / ("b" * 16 + ".js"), static / "quiz.9876543210.js"
    other = static / "data" / "notes.js"  # not a file this step writes: left alone
    for f in (kept_data, kept_script, gone_data, gone_script, other):
        f.write_text("//", encoding="utf-8")
    _page(tmp_path, "old.html", f'<script defer src="../_static/losslab/{kept_script.name}"></script>'
                                f'<script type="application/json" class="lle-data" data-id="{"a" * 16}" '
                                f'data-src="../_static/losslab/data/{kept_data.name}"></script>')
    new = _page(tmp_path, "new.html", _small_explorer("t.one").static_html())

    counts = sphinxext.share_interactive_assets(tmp_path)
    assert counts["removed"] == 3  # and this build's quiz script, which no page loads
    assert kept_data.exists() and kept_script.exists() and other.exists()
    assert not gone_data.exists() and not gone_script.exists() and not list(static.glob("quiz.*.js"))
    for src in re.findall(r'(?:src|data-src)="([^"]+)"', new.read_text(encoding="utf-8")):
        assert (new.parent / src).exists(), src  # the rebuilt page's own files are there


def test_a_block_whose_script_differs_from_the_package_fails_the_build(tmp_path):
    stale = _small_explorer("t.one").static_html().replace("var MIN_PANEL = 300;", "var MIN_PANEL = 250;")
    _page(tmp_path, "ch.html", stale)
    with pytest.raises(ExtensionError, match="differs from the package's explorer script"):
        sphinxext.share_interactive_assets(tmp_path)


def _theme_script() -> Path:
    theme = pytest.importorskip("pydata_sphinx_theme")
    found = [p for p in Path(theme.__file__).parent.rglob("pydata-sphinx-theme.js") if "static" in p.parts]
    if not found:
        pytest.skip("pydata-sphinx-theme ships no built script")
    return found[0]


def test_the_themes_page_wide_measuring_of_scrollables_is_removed_and_the_script_still_parses(tmp_path):
    target = tmp_path / sphinxext._THEME_SCRIPT
    target.parent.mkdir(parents=True)
    shutil.copy(_theme_script(), target)
    original = target.read_text(encoding="utf-8")
    assert "scrollWidth>e.clientWidth" in original

    sphinxext.lazy_theme_scrollables(tmp_path)
    patched = target.read_text(encoding="utf-8")
    assert "scrollWidth>e.clientWidth" not in patched and ".pst-scrollable-table-container" not in patched
    assert "new MutationObserver(t).observe(document.getElementById(\"main-content\")" not in patched
    assert len(original) - len(patched) < 600  # that function only
    node = shutil.which("node") or shutil.which("nodejs")
    if node:
        done = subprocess.run([node, "--check", str(target)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    target.write_text("(function(){})();", encoding="utf-8")  # another theme version
    with pytest.raises(ExtensionError, match="scrollable-region function was not found"):
        sphinxext.lazy_theme_scrollables(tmp_path)
