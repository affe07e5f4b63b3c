"""Sphinx extension loaded by the book build (``_config.yml``: sphinx.extra_extensions).

- It marks the build as static: kernels started by the build inherit
  ``LOSSLAB_STATIC=1``, so explorers render their kernel-free HTML version
  instead of live widgets (which render blank without a kernel).
- It asks Sphinx to load MathJax on every page, because quiz and exercise
  outputs carry math even on pages whose prose has none.
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


def setup(app):  # noqa: ANN001, ANN201  (Sphinx's extension entry point)
    os.environ[STATIC_ENV] = "1"
    app.set_html_assets_policy("always")
    app.connect("html-page-context", dedupe_scripts, priority=100)  # before any handler that returns a template
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
