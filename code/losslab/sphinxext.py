"""Sphinx extension loaded by the book build (``_config.yml``: sphinx.extra_extensions).

It marks the build as static: kernels started by the build inherit
``LOSSLAB_STATIC=1``, so explorers render their kernel-free HTML version
instead of live widgets (which render blank without a kernel). It also asks
Sphinx to load MathJax on every page, because quiz and exercise outputs carry
math even on pages whose prose has none.
"""

from __future__ import annotations

import os

from .book import STATIC_ENV


def setup(app):  # noqa: ANN001, ANN201  (Sphinx's extension entry point)
    os.environ[STATIC_ENV] = "1"
    app.set_html_assets_policy("always")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
