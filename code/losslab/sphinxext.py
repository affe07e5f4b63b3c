"""Sphinx extension loaded by the book build (``_config.yml``: sphinx.extra_extensions).

- It marks the build as static: kernels started by the build inherit
  ``LOSSLAB_STATIC=1``, so explorers render their kernel-free HTML version
  instead of live widgets (which render blank without a kernel).
- It asks Sphinx to load MathJax on every page, because quiz and exercise
  outputs carry math even on pages whose prose has none.
- It points the Colab and Binder launch buttons at the *reader edition*
  (:mod:`losslab.reader`), published on the branch named by the Sphinx
  option ``losslab_reader_branch`` (``_config.yml``), so a reader who
  launches a page gets prose that Jupyter and Colab render. The edit and
  source buttons keep pointing at the source on the main branch.
- It makes pages lighter and more accessible (with the templates in
  ``book/_templates``, which also keep the search scripts to the search
  page): every page gets a ``<meta name="description">`` from its first paragraph;
  the colour mode defaults to the reader's system setting (an empty default
  made the theme log "Got invalid theme mode" on every page); formulas stay
  out of the Tab order (MathJax's menu remains on right-click).
- It drops duplicate script tags: Jupyter Book registers sphinx-thebe's inline
  configuration script once per read pass, and a second copy redeclares its
  ``const`` variables, a JavaScript error on every page.
"""

from __future__ import annotations

import os

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


def theme_defaults(app, config) -> None:  # noqa: ANN001
    """MathJax options Jupyter Book's configuration cannot set without replacing its own."""
    mathjax = dict(config.mathjax3_config or {})
    menu = mathjax.setdefault("options", {}).setdefault("menuOptions", {}).setdefault("settings", {})
    menu.setdefault("inTabOrder", False)  # formulas out of the Tab order: keyboard users reach the controls
    config.mathjax3_config = mathjax


def setup(app):  # noqa: ANN001, ANN201  (Sphinx's extension entry point)
    os.environ[STATIC_ENV] = "1"
    app.set_html_assets_policy("always")
    app.add_config_value("losslab_reader_branch", "", "html")
    app.connect("html-page-context", dedupe_scripts, priority=100)  # before any handler that returns a template
    app.connect("html-page-context", reader_launch_links, priority=502)  # after the theme adds the buttons (501)
    app.connect("config-inited", theme_defaults)
    app.connect("html-page-context", meta_description, priority=100)
    app.connect("html-page-context", default_colour_mode, priority=100)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
