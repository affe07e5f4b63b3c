"""Markdown with $math$ to HTML, for quiz and exercise text shown in outputs.

Math is emitted with MathJax's own delimiters, ``\\(...\\)`` and ``\\[...\\]``,
which the static book's MathJax and JupyterLab typeset when the output is
shown. Raw HTML in the source is escaped, never passed through.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.dollarmath import dollarmath_plugin

__all__ = ["to_html", "to_inline_html"]


def _math(content: str, options: dict[str, Any]) -> str:
    if options.get("display_mode"):
        return r"\[" + escapeHtml(content) + r"\]"
    return r"\(" + escapeHtml(content) + r"\)"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False})
    dollarmath_plugin(md, allow_digits=False, renderer=_math)
    return md


def to_html(text: str) -> str:
    """Render block markdown (paragraphs, lists, code, math) to HTML."""
    return _parser().render(text.strip())


def to_inline_html(text: str) -> str:
    """Render one line of markdown without a surrounding paragraph."""
    return _parser().renderInline(text.strip())
