"""The reader edition: each page as a plain notebook that Jupyter and Colab render as the book does.

The book's markdown is MyST: ``{glue:text}`name:.3f``` pastes a number the
page computed, ``{footcite:p}`key``` cites, directives draw boxes. Jupyter and
Colab render none of that; they would show the raw roles, and every number in
the prose would be missing. :func:`convert` turns a page into what they do
render, from the page and its executed run (the build's):

- glued values are written in as text, formatted exactly as the book formats
  them (myst-nb's own formatter), and a note under the title says they come
  from the book's run and that re-running the cells recomputes them;
- citations become author-year text (``Smith and Jones 2020``), and the
  ``{footbibliography}`` directive a list of the works cited on the page;
- admonitions and other boxes become block quotes with their title in bold;
  ``{math}`` roles and directives become ``$...$`` and ``$$...$$``; ``(label)=``
  targets are dropped and ``{doc}``/``{ref}`` roles become plain text;
- outputs are stripped; the setup cell stays first.

``python -m losslab reader --out _build/reader`` writes the edition of every
page after ``make book`` (it reads the executions from the build's cache).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path

import nbformat

__all__ = ["glued_values", "convert", "leftover_markup", "Bibliography", "GLUE_NOTE"]

GLUE_NOTE = ("> *Reader edition.* The numbers in this page's text come from the book's own run of its cells; "
             "running the cells recomputes them (on another machine or device they can differ in the last digits).")

_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
_FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\s*\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
_LABEL = re.compile(r"^\(([\w.:-]+)\)=\s*$")
_OPTION = re.compile(r"^:[\w-]+:.*$")


def glued_values(nb) -> dict[str, str]:
    """``name -> text/plain`` of every value an executed notebook glued (myst-nb's glue outputs)."""
    found: dict[str, str] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                data = out.get("data", {})
                prefix = meta.get("mime_prefix", "")
                text = data.get(prefix + "text/plain", data.get("text/plain"))
                if text is not None:
                    found[meta["name"]] = text
    return found


class Bibliography:
    """Author-year text for the keys of a BibTeX file (pybtex, as sphinxcontrib-bibtex reads it)."""

    def __init__(self, path: str | Path) -> None:
        from pybtex.database import parse_file  # noqa: PLC0415  (a build dependency)

        self.data = parse_file(str(path))

    def _last_names(self, key: str) -> list[str]:
        entry = self.data.entries[key]
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = []
        for p in people:
            last = " ".join(p.prelast_names + p.last_names)
            names.append(_latex_to_text(last))
        return names or [_latex_to_text(entry.fields.get("organization", key))]

    def year(self, key: str) -> str:
        return self.data.entries[key].fields.get("year", "n.d.")

    def short(self, key: str) -> str:
        """``Smith 2020``, ``Smith and Jones 2020`` or ``Smith et al. 2020``."""
        if key not in self.data.entries:
            raise KeyError(f"citation {key!r} is not in the bibliography")
        names = self._last_names(key)
        who = names[0] if len(names) == 1 else (f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al.")
        return f"{who} {self.year(key)}"

    def cite(self, keys: list[str], *, textual: bool) -> str:
        if textual:  # {footcite:t}: "Smith (2020)"
            return "; ".join(f"{s.rsplit(' ', 1)[0]} ({s.rsplit(' ', 1)[1]})" for s in map(self.short, keys))
        return "(" + "; ".join(self.short(k) for k in keys) + ")"

    def reference(self, key: str) -> str:
        """One line of a reference list: authors (year). *Title*. Where."""
        entry = self.data.entries[key]
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        authors = ", ".join(_latex_to_text(" ".join(p.first_names + p.middle_names + p.prelast_names + p.last_names))
                            for p in people)
        title = _latex_to_text(entry.fields.get("title", ""))
        where = next((entry.fields[f] for f in ("journal", "booktitle", "publisher", "howpublished", "school")
                      if f in entry.fields), "")
        where = _latex_to_text(where)
        parts = [f"{authors} ({self.year(key)}). *{title}*."]
        if where:
            parts.append(f" {where}.")
        url = entry.fields.get("url") or (f"https://doi.org/{entry.fields['doi']}" if "doi" in entry.fields else "")
        if url:
            parts.append(f" <{url}>")
        return "".join(parts)


_LATEX_ACCENTS = {r"\'": "\u0301", r"\`": "\u0300", r'\"': "\u0308", r"\^": "\u0302", r"\~": "\u0303", r"\c": "\u0327"}


def _latex_to_text(s: str) -> str:
    import unicodedata  # noqa: PLC0415

    def accent(m: re.Match) -> str:
        return unicodedata.normalize("NFC", m.group(2) + _LATEX_ACCENTS[m.group(1)])

    s = re.sub(r"\{?(\\['`\"^~c])\{?(\w)\}?\}?", accent, s)
    s = re.sub(r"\\url\{([^}]*)\}", r"<\1>", s)
    s = re.sub(r"\\[a-zA-Z]+\s*(?=\{)", "", s)  # any other command: keep its argument
    s = s.replace("--", "\u2013").replace("\\&", "&")
    return re.sub(r"[{}]", "", s)


def _convert_roles(text: str, values: Mapping[str, str], bib: Bibliography | None, cited: list[str]) -> str:
    from myst_nb.core.variables import format_plain_text  # noqa: PLC0415  (exactly the book's formatting)

    def role(m: re.Match) -> str:
        name, body = m.group(1), m.group(2)
        if name in ("glue:text", "glue", "glue:"):
            key, _, spec = body.rpartition(":") if ":" in body else (body, "", "")
            if not key:
                key, spec = body, ""
            if key not in values:
                raise KeyError(f"glued value {key!r} is not in the page's run")
            return format_plain_text(values[key], spec or "s")
        if name.startswith("footcite") or name.startswith("cite"):
            keys = [k.strip() for k in body.split(",") if k.strip()]
            if bib is None:
                raise ValueError("a citation needs the bibliography")
            cited.extend(k for k in keys if k not in cited)
            return bib.cite(keys, textual=name.endswith(":t"))
        if name == "math":
            return f"${body}$"
        if name in ("doc", "ref", "numref", "term", "eq"):
            shown = re.match(r"^(.*?)\s*<[^>]*>$", body)
            return shown.group(1) if shown else body.split("/")[-1]
        raise ValueError(f"no reader-edition conversion for the role {{{name}}}")

    return _ROLE.sub(role, text)


def _convert_markdown(text: str, values: Mapping[str, str], bib: Bibliography | None, cited: list[str]) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if _LABEL.match(line.strip()):
            i += 1
            continue
        m = _FENCE_OPEN.match(line.strip())
        if not m:
            out.append(line)
            i += 1
            continue
        fence, name, arg = m.group("fence"), m.group("name"), m.group("arg").strip()
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        while body and _OPTION.match(body[0].strip()):
            body.pop(0)
        inner = _convert_markdown("\n".join(body), values, bib, cited)
        if name in ("footbibliography", "bibliography"):
            out.append("\n".join(f"- {bib.reference(k)}" for k in cited) if cited and bib else "")
        elif name in ("math",):
            out.append(f"$$\n{inner.strip()}\n$$")
        elif name in ("code", "code-block", "code-cell"):
            out.append(f"```{arg}\n{inner}\n```")
        elif name in ("figure", "image"):
            out.append(f"![{inner.strip()}]({arg})")
        else:  # admonition, note, warning, tip, important, dropdown, ... -> a block quote
            title = arg or name.capitalize()
            quoted = "\n".join(("> " + ln) if ln.strip() else ">" for ln in inner.strip().split("\n"))
            out.append(f"> **{_convert_roles(title, values, bib, cited)}**\n>\n{quoted}")
    return _convert_roles("\n".join(out), values, bib, cited)


def convert(source, executed, bib: Bibliography | None = None):
    """The reader edition of one page.

    Parameters
    ----------
    source : NotebookNode
        The page as stored (outputs stripped).
    executed : NotebookNode
        The same page executed (its glue outputs give the values).
    bib : Bibliography, optional
        Needed if the page cites.

    Returns
    -------
    NotebookNode
        Plain markdown cells, the code cells unchanged with no outputs.

    Raises
    ------
    KeyError
        If the text pastes a value the run did not glue, or cites a key the
        bibliography lacks.
    ValueError
        For a role with no conversion.
    """
    values = glued_values(executed)
    nb = copy.deepcopy(source)
    cited: list[str] = []
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    pastes = any("{glue" in (c.source if isinstance(c.source, str) else "".join(c.source)) for c in markdown)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            src = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            cell.source = _convert_markdown(src, values, bib, cited)
            if pastes and cell is markdown[0]:
                cell.source = cell.source.rstrip("\n") + "\n\n" + GLUE_NOTE
        elif cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def leftover_markup(nb) -> list[str]:
    """MyST roles or directives left in a notebook's markdown (empty for a good reader edition)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        src = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        found += [f"cell {i}: {{{m.group(1)}}}`{m.group(2)}`" for m in _ROLE.finditer(src)]
        found += [f"cell {i}: directive {m.group('name')}" for ln in src.split("\n") if (m := _FENCE_OPEN.match(ln.strip()))]
        found += [f"cell {i}: label {ln.strip()}" for ln in src.split("\n") if _LABEL.match(ln.strip())]
    return found


def write_edition(root: Path, out: Path, pages: list[Path], executed_for) -> list[Path]:
    """Write the reader edition of ``pages`` under ``out`` (same relative paths); return the files.

    ``executed_for(path) -> NotebookNode`` gives a page's executed run.
    """
    bib_path = root / "book" / "references.bib"
    bib = Bibliography(bib_path) if bib_path.exists() else None
    written = []
    for path in pages:
        edition = convert(nbformat.read(str(path), as_version=4), executed_for(path), bib)
        dest = out / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(edition, str(dest))
        written.append(dest)
    return written


def toc_names(root: Path) -> list[str]:
    """Every page named in ``root/_toc.yml`` (root first), as written there: no suffix."""
    import yaml  # noqa: PLC0415

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(entries) -> None:  # noqa: ANN001
        for e in entries or []:
            if "file" in e:
                names.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("chapters"))
    walk(toc.get("parts"))
    return names


def book_pages(root: Path) -> list[Path]:
    """The notebooks listed in ``root/_toc.yml``, in order."""
    return [root / f"{n}.ipynb" for n in toc_names(root) if (root / f"{n}.ipynb").exists()]


def executed_from_cache(cache_dir: Path):
    """``path -> executed notebook`` from the build's jupyter-cache (what ``make book`` stored)."""
    from jupyter_cache import get_cache  # noqa: PLC0415

    cache = get_cache(str(cache_dir))

    def executed_for(path: Path):
        try:
            record = cache.match_cache_notebook(nbformat.read(str(path), as_version=4))
        except KeyError as err:
            raise KeyError(f"{path.name}: no executed run in {cache_dir}; run `make book` first") from err
        return cache.get_cache_bundle(record.pk).nb

    return executed_for


def main(argv: list[str] | None = None) -> int:
    """``python -m losslab.reader [--out _build/reader]``: write the reader edition of every page."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m losslab.reader", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: here)")
    parser.add_argument("--out", type=Path, default=Path("_build/reader"))
    parser.add_argument("--cache", type=Path, default=None, help="default: ROOT/_build/.jupyter_cache")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    cache = args.cache or root / "_build" / ".jupyter_cache"
    written = write_edition(root, args.out, book_pages(root), executed_from_cache(cache))
    bad = {str(p): leftover_markup(nbformat.read(str(p), as_version=4)) for p in written}
    bad = {k: v for k, v in bad.items() if v}
    for path in written:
        print(f"wrote {path}")
    if bad:
        print(f"MyST markup left in the reader edition: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
