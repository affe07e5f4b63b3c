"""Students' notebooks for the grading tests: an assignment's student notebook with answers filled in."""

from __future__ import annotations

from pathlib import Path

import nbformat


def fill(path: Path, answers: dict | None = None, code: dict | None = None, edit=None) -> nbformat.NotebookNode:
    """A student's notebook: answer cells set to ``answers``, exercise cells to ``code``, then ``edit(nb)``."""
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        m = cell.metadata.get("losslab", {})
        if m.get("answer") in (answers or {}):
            cell.source = f"answer({m['answer']!r}, {answers[m['answer']]})"
        if m.get("answer") in (code or {}):
            cell.source = code[m["answer"]]
    if edit:
        edit(nb)
    return nb
