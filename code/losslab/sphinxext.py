"""Sphinx extension loaded by the book build (``_config.yml``: sphinx.extra_extensions).

- It marks the build as static: kernels started by the build inherit
  ``LOSSLAB_STATIC=1``, so explorers render their kernel-free HTML version
  instead of live widgets (which render blank without a kernel).
- It typesets the mathematics at build time: when the build finishes, MathJax
  runs in Node (``tools/mathjax/prerender.js``, with MathJax's own vendored
  components and the book's MathJax configuration) over every page, finding
  the math as it did in the browser (prose, quiz and exercise outputs) and
  writing its output, with the hidden MathML screen readers read, into the
  page; the pages link one shared stylesheet and the fonts
  (``book/_static/mathjax``) and load no MathJax JavaScript. The build fails
  where Node is missing or a formula does not typeset. Before that, figures
  embedded in the pages as base64 become image files, loaded lazily; the
  explorers' and quizzes' scripts become one shared file each, and each
  explorer's figure data a file loaded as it nears the screen; code tokens
  drawn in the code's own colour lose their ``<span>``; and the theme's
  page-wide measuring of scrollable regions gives way to
  ``book/_static/scrollables.js``, which measures them lazily.
- It points the Colab and Binder launch buttons at the *reader edition*
  (:mod:`losslab.reader`), published on the branch named by the Sphinx
  option ``losslab_reader_branch`` (``_config.yml``), so a reader who
  launches a page gets prose that Jupyter and Colab render. The edit and
  source buttons keep pointing at the source on the main branch.
- It makes pages lighter and more accessible (with the templates in
  ``book/_templates``, which also keep the search scripts to the search
  page): every page gets a ``<meta name="description">`` from its first paragraph;
  the colour mode defaults to the reader's system setting (an empty default
  made the theme log "Got invalid theme mode" on every page).
- It defers the scripts in the page's head (all but Sphinx's
  ``documentation_options.js``, which inline scripts use at once), so none of
  them blocks the first paint, and drops sphinx-thebe's script and stylesheet
  when no page has a Thebe launch button (the book has none).
- It drops duplicate script tags: Jupyter Book registers sphinx-thebe's inline
  configuration script once per read pass, and a second copy redeclares its
  ``const`` variables, a JavaScript error on every page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from .book import STATIC_ENV


def _script_key(js) -> tuple:
    attributes = getattr(js, "attributes", {}) or {}
    filename = getattr(js, "filename", js) or ""  # inline scripts come as None or ""
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001 (Sphinx event)
    """Keep the first of identical script entries on each page, in order."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


# Read by inline scripts as the page parses (DOCUMENTATION_OPTIONS.pagename = ...): stays blocking.
_BLOCKING = ("documentation_options.js",)


def _uses_thebe(app) -> bool:  # noqa: ANN001
    buttons = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    return bool(buttons.get("thebe"))


def defer_scripts(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001 (Sphinx event)
    """Every script file in the head without ``async`` or ``defer`` gets ``defer`` (in order, after parsing)."""
    from sphinx.builders.html._assets import _JavaScript  # noqa: PLC0415

    thebe = _uses_thebe(app)
    scripts = context.get("script_files") or []
    kept = []
    for js in scripts:
        filename = str(getattr(js, "filename", js) or "")
        attributes = dict(getattr(js, "attributes", {}) or {})
        if not thebe and (filename.endswith("sphinx-thebe.js") or "THEBE_JS_URL" in attributes.get("body", "")):
            continue
        if (filename and isinstance(js, _JavaScript) and not filename.endswith(_BLOCKING)
                and "async" not in attributes and "defer" not in attributes
                and attributes.get("type", "text/javascript") in ("text/javascript", "module")):
            js = _JavaScript(js.filename, priority=js.priority, **attributes, defer="defer")
        kept.append(js)
    scripts[:] = kept
    if not thebe and context.get("css_files"):
        context["css_files"][:] = [css for css in context["css_files"]
                                   if not str(getattr(css, "filename", css) or "").endswith("sphinx-thebe.css")]


def reader_launch_links(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001 (Sphinx event)
    """Rewrite the Colab and Binder launch URLs from the source branch to the reader-edition branch."""
    reader = app.config.losslab_reader_branch
    branch = (app.config.html_theme_options or {}).get("repository_branch") or ""
    if not reader or not branch or reader == branch:
        return
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url", "")
            if button.get("text") == "Colab":
                button["url"] = url.replace(f"/blob/{branch}/", f"/blob/{reader}/", 1)
            elif button.get("text") == "Binder":
                button["url"] = url.replace(f"/{branch}?urlpath=", f"/{reader}?urlpath=", 1)


def _first_paragraph(doctree) -> str:  # noqa: ANN001
    from docutils import nodes  # noqa: PLC0415

    for para in doctree.findall(nodes.paragraph):
        if para.next_node(nodes.raw) is not None:
            continue
        text = " ".join(para.astext().split())
        if len(text) >= 40:
            return text
    return ""


def meta_description(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001
    """``<meta name="description">`` from the page's first real paragraph (at most about 160 characters)."""
    import html  # noqa: PLC0415

    if doctree is None:
        return
    text = _first_paragraph(doctree)
    if not text:
        text = f"{context.get('title', '')} - {app.config.project}".strip(" -")
    if len(text) > 160:
        text = text[:157].rsplit(" ", 1)[0] + "..."
    context["metatags"] = context.get("metatags", "") + f'\n<meta name="description" content="{html.escape(text, quote=True)}" />'


def default_colour_mode(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001
    """The theme's templates read ``default_mode``, which nothing sets: empty, the theme logs
    "Got invalid theme mode" on every page. Follow the reader's system setting."""
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def drop_runtime_mathjax(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001 (Sphinx event)
    """No MathJax script or configuration on the pages: their math is typeset when the build finishes."""
    path = app.config.mathjax_path
    scripts = context.get("script_files")
    if scripts:
        scripts[:] = [js for js in scripts
                      if str(getattr(js, "filename", js) or "") != path
                      and not str((getattr(js, "attributes", {}) or {}).get("body", "")).startswith("window.MathJax")]


def _pages(outdir: Path):
    for page in sorted(outdir.rglob("*.html")):
        if page.relative_to(outdir).parts[0] not in ("_static", "_sources"):
            yield page


def _rewrite_pages(outdir: Path, change) -> None:  # noqa: ANN001 (change: (page, text) -> text)
    """Apply ``change(page, text)`` to the text of every page, writing back the pages it changed."""
    for page in _pages(outdir):
        text = page.read_text(encoding="utf-8")
        new = change(page, text)
        if new != text:
            page.write_text(new, encoding="utf-8")


def _rel(target: Path, page: Path) -> str:
    return os.path.relpath(target, page.parent).replace(os.sep, "/")


_INLINE_IMG = re.compile(r'<img\b([^>]*?)\ssrc="data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/=\s]+)"([^>]*)>')


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def externalize_images(outdir: Path) -> int:
    """Figures embedded in the pages as base64 (``losslab.plots.show``: the notebook carries them so, for
    Jupyter and Colab) become image files under ``_images``, loaded lazily (``loading="lazy"``), with
    their width and height, so a chapter's HTML is its text (about a third of its bytes) and a phone
    fetches a figure when it nears the screen."""
    images = outdir / "_images"
    moved = 0

    def change(page: Path, text: str) -> str:
        def replace(m: re.Match) -> str:
            nonlocal moved
            before, kind, b64, after = m.groups()
            data = base64.b64decode(b64)
            name = f"inline-{hashlib.sha1(data).hexdigest()[:20]}.{'jpg' if kind == 'jpeg' else kind}"
            images.mkdir(exist_ok=True)
            if not (images / name).exists():
                (images / name).write_bytes(data)
            attrs = before + after
            extra = ""
            size = _png_size(data) if kind == "png" else None
            if size and not re.search(r"\swidth=", attrs):
                extra += f' width="{size[0]}" height="{size[1]}"'
            if "loading=" not in attrs:
                extra += ' loading="lazy" decoding="async"'
            moved += 1
            return f'<img{before} src="{_rel(images / name, page)}"{extra}{after}>'

        return _INLINE_IMG.sub(replace, text) if 'src="data:image/' in text else text

    _rewrite_pages(outdir, change)
    return moved


# The interactive blocks (losslab.explore, losslab.questions) each carry their own copy of their script and
# style, and an explorer its figure data, so that one notebook output works alone in Jupyter and Colab.
_INTERACTIVES = (("explorer", "explorer.js", "explorer.css", "losslabExplorer"),
                 ("quiz", "quiz.js", "quiz.css", "losslabQuiz"))
_EXPLORER_DATA = re.compile(r'<script type="application/json" class="lle-data">(.*?)</script>', re.S)
_LOSSLAB_REF = re.compile(r'(?:src|data-src)="([^"]*_static/losslab/[^"]+\.js)"')  # a page loading a shared file


def share_interactive_assets(outdir: Path) -> dict:
    """In the built book, each page loads the explorers' and quizzes' script once, from ``_static/losslab``
    (deferred, cached across pages), in place of a copy per block; keeps one copy of each style; and moves
    each explorer's figure data (up to about 0.8 MB of frames) to a script file of its own that the
    explorer loads when it nears the screen (``data-src``; explorer.js), so a chapter's HTML is its text.

    A page whose block carries a script that differs from the package's (an execution cache older than
    the package) fails the build rather than mixing two versions. Shared scripts and data files that no
    page loads any more (left by earlier incremental builds) are removed."""
    from importlib import resources  # noqa: PLC0415

    from sphinx.errors import ExtensionError  # noqa: PLC0415

    static = outdir / "_static" / "losslab"
    (static / "data").mkdir(parents=True, exist_ok=True)
    shared = []
    for kind, js, css, obj in _INTERACTIVES:
        code = (resources.files("losslab") / "assets" / js).read_text(encoding="utf-8")
        style = "<style>" + (resources.files("losslab") / "assets" / css).read_text(encoding="utf-8") + "</style>"
        body = (code + f"\n// The built book loads this file once per page, deferred: mount every {kind} on the page.\n"
                f"document.querySelectorAll('[data-losslab=\"{kind}\"]').forEach(function (el) {{ window.{obj}.mount(el.id); }});\n")
        name = static / f"{kind}.{hashlib.sha1(body.encode()).hexdigest()[:10]}.js"
        name.write_text(body, encoding="utf-8")
        inline = re.compile("<script>" + re.escape(code) + r"\nwindow\." + obj + r'\.mount\("[\w-]+"\);</script>')
        shared.append((kind, obj, name, inline, style))
    counts = {"pages": 0, "copies": 0, "data": 0, "data_bytes": 0}
    referenced: set[Path] = set()  # the shared files some page loads, as the pages stand after this step

    def change(page: Path, text: str) -> str:
        loads = []
        for kind, obj, name, inline, style in shared:
            text, n = inline.subn("", text)
            if f"window.{obj}.mount(" in text:
                raise ExtensionError(f"{page.name}: a {kind} carries a script that differs from the package's "
                                     f"{kind} script (an execution cache older than the package? make clean)")
            if n:
                loads.append(f'<script defer src="{_rel(name, page)}"></script>')
                counts["copies"] += n
            first = text.find(style)
            if first >= 0:
                end = first + len(style)
                text = text[:end] + text[end:].replace(style, "")

        def data_file(m: re.Match) -> str:
            body = m.group(1)
            json.loads(body)  # valid JSON, or the build stops here
            key = hashlib.sha1(body.encode()).hexdigest()[:16]
            target = static / "data" / f"{key}.js"
            if not target.exists():
                target.write_text(f'window.losslabExplorer.deliver("{key}", JSON.parse({json.dumps(body)}));\n',
                                  encoding="utf-8")
            counts["data"] += 1
            counts["data_bytes"] += len(body)
            return (f'<script type="application/json" class="lle-data" data-id="{key}" '
                    f'data-src="{_rel(target, page)}"></script>')

        text = _EXPLORER_DATA.sub(data_file, text)
        if loads:
            text = text.replace("</head>", "".join(loads) + "\n</head>", 1)
            counts["pages"] += 1
        referenced.update((page.parent / m.group(1)).resolve() for m in _LOSSLAB_REF.finditer(text))
        return text

    _rewrite_pages(outdir, change)
    counts["removed"] = _remove_unreferenced(static, [kind for kind, *_ in shared], referenced)
    return counts


def _remove_unreferenced(static: Path, kinds: list[str], referenced: set[Path]) -> int:
    """Delete the shared scripts and data files not in ``referenced`` (what the pages load); return how many.

    An incremental build rewrites only the pages it rebuilt, so the files an earlier build wrote
    for other versions of the package or of an explorer stay behind, unless removed here (a page it
    did not rebuild still refers to its own files, which are kept)."""
    ours = [f for f in (static / "data").glob("*.js") if re.fullmatch(r"[0-9a-f]{16}\.js", f.name)]
    ours += [f for kind in kinds for f in static.glob(f"{kind}.*.js") if re.fullmatch(rf"{kind}\.[0-9a-f]{{10}}\.js", f.name)]
    removed = [f for f in ours if f.resolve() not in referenced]
    for f in removed:
        f.unlink()
    return len(removed)


_PYGMENTS_RULE = re.compile(r'html\[data-theme="(light|dark)"\] \.highlight(?: \.([\w-]+))? \{([^}]*)\}')
_KEEP_TOKENS = {"gp", "go", "hll", "linenos"}  # the prompt and output classes sphinx-copybutton reads


def _plain_token_classes(css: str) -> set[str]:
    """Pygments token classes styled only with the code's own colour in both colour modes."""
    base, styled = {}, {}
    for mode, cls, decl in _PYGMENTS_RULE.findall(css):
        props = dict(tuple(x.strip().lower() for x in d.split(":", 1)) for d in decl.split(";") if ":" in d)
        if not cls:
            base[mode] = props.get("color")
        else:
            styled.setdefault(cls, {})[mode] = props
    return {cls for cls, modes in styled.items()
            if cls not in _KEEP_TOKENS and set(modes) == {"light", "dark"}
            and all(base.get(m) and props == {"color": base[m]} for m, props in modes.items())}


_HIGHLIGHT = re.compile(r'<div class="highlight"><pre>.*?</pre>', re.S)


def plain_code_tokens(outdir: Path) -> int:
    """Unwrap the highlighted code's tokens that look like the code around them (names, punctuation and
    spaces are drawn in the code's own colour in both colour modes: ``pygments.css``): a chapter's code is
    thousands of such ``<span>`` elements, a third of the page's elements outside the math, which the
    browser must style and lay out. The text is unchanged, and the coloured tokens keep their spans."""
    from sphinx.errors import ExtensionError  # noqa: PLC0415

    css = (outdir / "_static" / "pygments.css").read_text(encoding="utf-8")
    if not _PYGMENTS_RULE.search(css):
        raise ExtensionError("_static/pygments.css has no light and dark rules (html[data-theme=...] .highlight): "
                             "was it read before pydata-sphinx-theme wrote it? see losslab.sphinxext.plain_code_tokens")
    plain = _plain_token_classes(css)
    if not plain:
        return 0
    token = re.compile(r'<span class="(?:' + "|".join(sorted(map(re.escape, plain))) + r')">([^<]*)</span>')
    removed = 0

    def unwrap(m: re.Match) -> str:
        nonlocal removed
        out, n = token.subn(r"\1", m.group(0))
        removed += n
        return out

    _rewrite_pages(outdir, lambda page, text: _HIGHLIGHT.sub(unwrap, text))
    return removed


_THEME_SCRIPT = Path("_static") / "scripts" / "pydata-sphinx-theme.js"
_THEME_SCROLLABLES = '".pst-scrollable-table-container"].join(", ")'


def lazy_theme_scrollables(outdir: Path) -> None:
    """Replace the theme's measuring of every scrollable element (at load, and again after any change in
    the article, each time a layout of the whole page) by nothing: book/_static/scrollables.js does the
    same lazily. The build fails if the theme's script no longer has that function (a new theme version)."""
    from sphinx.errors import ExtensionError  # noqa: PLC0415

    path = outdir / _THEME_SCRIPT
    code = path.read_text(encoding="utf-8")
    at = code.find(_THEME_SCROLLABLES)
    start = code.rfind("function ", 0, at)
    head = re.match(r"function (\w+)\(\)\{", code[start:]) if at > 0 and start >= 0 else None
    if head is None:
        raise ExtensionError(f"{_THEME_SCRIPT}: the theme's scrollable-region function was not found "
                             "(pydata-sphinx-theme changed?): see losslab.sphinxext.lazy_theme_scrollables")
    depth, end = 0, start + head.end() - 1
    for end in range(start + head.end() - 1, len(code)):
        depth += {"{": 1, "}": -1}.get(code[end], 0)
        if depth == 0:
            break
    path.write_text(code[:start] + f"function {head.group(1)}(){{/* losslab: book/_static/scrollables.js */}}"
                    + code[end + 1:], encoding="utf-8")


PRERENDER = Path("tools") / "mathjax" / "prerender.js"  # in the book's source folder (the repository)
MATH_CSS = "_static/mathjax/chtml.css"  # the shared stylesheet; the fonts are book/_static/mathjax/woff-v2


def _prerender_tools(app) -> tuple[str, Path]:  # noqa: ANN001
    from sphinx.errors import ExtensionError  # noqa: PLC0415

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise ExtensionError("the book's math is typeset at build time with Node.js, which is not installed "
                             "(Debian: apt-get install nodejs; or https://nodejs.org)")
    script = Path(app.srcdir) / PRERENDER
    if not script.exists():
        raise ExtensionError(f"the math typesetting script is missing: {script}")
    return node, script


def require_node(app) -> None:  # noqa: ANN001 (Sphinx event)
    """Fail at the start of an HTML build, not after the chapters have run, where Node.js is missing."""
    if app.builder.format == "html":
        _prerender_tools(app)


def prerender_math(app, exception) -> None:  # noqa: ANN001 (Sphinx event)
    """Lighten the pages (externalize_images, share_interactive_assets, plain_code_tokens,
    lazy_theme_scrollables), then typeset every page's math with MathJax in Node
    (tools/mathjax/prerender.js)."""
    from sphinx.errors import ExtensionError  # noqa: PLC0415
    from sphinx.util import logging  # noqa: PLC0415

    if exception is not None or app.builder.format != "html":
        return
    log = logging.getLogger(__name__)
    moved = externalize_images(Path(app.outdir))
    if moved:
        log.info(f"{moved} embedded figures written to _images, loaded lazily")
    shared = share_interactive_assets(Path(app.outdir))
    log.info(f"{shared['copies']} copies of the explorer and quiz scripts replaced by shared files on {shared['pages']} pages; "
             f"{shared['data']} explorers' data ({shared['data_bytes'] / 1e6:.1f} MB) in files loaded as they near the screen")
    if shared["removed"]:
        log.info(f"{shared['removed']} shared scripts and data files of earlier builds removed (no page loads them)")
    log.info(f"{plain_code_tokens(Path(app.outdir))} plain code tokens unwrapped")
    lazy_theme_scrollables(Path(app.outdir))
    node, script = _prerender_tools(app)
    out = Path(app.outdir)
    pages = [str(p) for p in _pages(out)]
    settings = {"mathjax": app.config.mathjax3_config or {}, "css": str(out / MATH_CSS), "fonts": "woff-v2"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(settings, f)
    try:
        done = subprocess.run([node, str(script), f.name, *pages], capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise ExtensionError(f"typesetting the math failed:\n{done.stderr.strip()}")
    log.info(done.stdout.strip())


def setup(app):  # noqa: ANN001, ANN201  (Sphinx's extension entry point)
    os.environ[STATIC_ENV] = "1"
    app.add_config_value("losslab_reader_branch", "", "html")
    app.connect("html-page-context", dedupe_scripts, priority=100)  # before any handler that returns a template
    app.connect("html-page-context", defer_scripts, priority=900)  # after every handler that adds a script
    app.connect("html-page-context", reader_launch_links, priority=502)  # after the theme adds the buttons (501)
    app.connect("html-page-context", drop_runtime_mathjax, priority=900)  # after Sphinx's MathJax adds its script
    app.connect("builder-inited", require_node)
    # after pydata-sphinx-theme's own build-finished handler (priority 500), which writes the light and
    # dark pygments.css that plain_code_tokens reads
    app.connect("build-finished", prerender_math, priority=800)
    app.connect("html-page-context", meta_description, priority=100)
    app.connect("html-page-context", default_colour_mode, priority=100)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
