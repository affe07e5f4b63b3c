"""The chapter contract (DESIGN.md "A chapter"), checked for every page in _toc.yml.

Static checks read the stored notebooks. The `chapters`-marked checks execute
each notebook once (offline, timed, as the build does) and share the result.
"""

from __future__ import annotations

import re

import pytest

import bookfiles as bf
from losslab.book import read_repository, setup_cell
from losslab.exercises import exercise
from losslab.questions import question

NOTEBOOKS = bf.notebooks()
CHAPTERS = bf.chapters()
ids = [p.stem for p in NOTEBOOKS]


by_page = bf.by_page

MIN_EXPLORERS, MIN_QUESTIONS, MIN_EXERCISES = 2, 5, 2
MIN_CLAIMS = 10  # executed checks of what the prose says about the page's results
CLAIM_CALL = re.compile(r"\bclaim\(\s*[\"']([\w.-]+)[\"']")
# A raw value left in a page: 0.14096502606708886, np.float64(0.14), tensor(0.1409).
BARE_NUMBER = re.compile(r"^\s*(np\.\w+\(|tensor\()?[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\)?\s*$")


def headings(nb) -> list[str]:
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += [m.group(1).strip() for m in re.finditer(r"^#{1,3}\s+(.+)$", bf.source(cell), re.M)]
    return found


def test_toc_lists_pages_that_exist():
    files = bf.toc_files()
    assert files[0].name == "preface.md"
    assert NOTEBOOKS, "_toc.yml lists no notebook"
    assert len(set(files)) == len(files), "_toc.yml lists a page twice"


def test_every_book_notebook_is_in_the_toc():
    listed = set(NOTEBOOKS)
    stray = [p.name for p in (bf.ROOT / "book").glob("*.ipynb") if p not in listed]
    assert not stray, f"notebooks in book/ missing from _toc.yml (they would not be built): {stray}"


@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_outputs_are_stripped_in_git(path):
    nb = bf.read(path)
    assert not bf.stored_outputs(nb), f"{path.name}: code cells {bf.stored_outputs(nb)} are stored with outputs; clear them"
    assert "widgets" not in nb.metadata, f"{path.name}: stored widget state in the notebook metadata; clear it"


@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_title_objectives_and_setup_cell_come_first(path):
    nb = bf.read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and bf.source(first).startswith("# "), f"{path.name}: must open with a '# Title' markdown cell"
    assert re.search(r"^##\s+Learning objectives\s*$", bf.source(first), re.M), f"{path.name}: the first cell needs a '## Learning objectives' section"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name}: no code cells"
    url, branch = read_repository(bf.ROOT / "_config.yml")
    src = bf.source(code[0])
    m = re.search(r"losslab\.setup\(seed=(\d+)\)", src)
    assert m, f"{path.name}: the first code cell must be the setup cell (`python -m losslab sync-setup` writes it)"
    assert src == setup_cell(url, branch, seed=int(m.group(1))), (
        f"{path.name}: the setup cell differs from the one _config.yml implies; run `python -m losslab sync-setup`"
    )


@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_summary_and_references_close_the_page(path):
    nb = bf.read(path)
    heads = headings(nb)
    assert "Summary" in heads, f"{path.name}: needs a '## Summary' section"
    assert "References" in heads, f"{path.name}: needs a '## References' section"
    assert heads.index("References") > heads.index("Summary"), f"{path.name}: References come after the Summary"
    last = bf.source(nb.cells[-1])
    assert "{footbibliography}" in last or "{bibliography}" in last, f"{path.name}: the last cell must hold the bibliography directive"


MIN_PROBLEMS, MIN_DERIVATIONS, MIN_EXPERIMENTS = 6, 2, 2
PROBLEM_HEADING = re.compile(r"^###\s+Problem\s+(\d+)\.(\d+):\s+.+\((derivation|experiment)\)\s*$")
ITEM_CALL = re.compile(r"\b(quiz|check|show_solution)\(\s*\"([\w.-]+)\"")


def problems(nb) -> list[dict]:
    """The chapter's problems: heading, kind, and the bank ids its cells quiz, check and solve."""
    found: list[dict] = []
    inside = False
    for cell in nb.cells:
        src = bf.source(cell)
        if cell.cell_type == "markdown":
            for line in src.splitlines():
                if re.match(r"^##\s+Problems\s*$", line):
                    inside = True
                elif re.match(r"^##\s+", line):
                    inside = False
                m = PROBLEM_HEADING.match(line)
                if inside and m:
                    found.append({"title": line, "chapter": int(m.group(1)), "k": int(m.group(2)), "kind": m.group(3),
                                  "quiz": set(), "check": set(), "show_solution": set()})
        elif inside and found:
            for m in ITEM_CALL.finditer(src):
                found[-1][m.group(1)].add(m.group(2))
    return found


@pytest.mark.parametrize("path", by_page(CHAPTERS))
def test_problems_close_the_chapter_as_assignable_items(path):
    """At least six Problems after the Summary, derivations and experiments, each a bank item with its solution."""
    nb = bf.read(path)
    heads = headings(nb)
    assert "Problems" in heads, f"{path.name}: needs a '## Problems' section"
    assert heads.index("Summary") < heads.index("Problems") < heads.index("References"), \
        f"{path.name}: Problems come after the Summary and before the References"
    found = problems(nb)
    number = int(path.stem.split("_")[0])
    kinds = [p["kind"] for p in found]
    assert len(found) >= MIN_PROBLEMS, f"{path.name}: {len(found)} problems, expected at least {MIN_PROBLEMS}"
    assert kinds.count("derivation") >= MIN_DERIVATIONS and kinds.count("experiment") >= MIN_EXPERIMENTS, \
        f"{path.name}: {kinds.count('derivation')} derivations and {kinds.count('experiment')} experiments"
    assert [(p["chapter"], p["k"]) for p in found] == [(number, k) for k in range(1, len(found) + 1)], \
        f"{path.name}: problems must be numbered {number}.1, {number}.2, ... in order"
    for p in found:
        items = p["quiz"] | p["check"]
        assert len(items) == 1, f"{path.name}: {p['title']!r} must quiz or check exactly one bank item, found {sorted(items)}"
        (item,) = items
        assert p["show_solution"] == {item}, f"{path.name}: {p['title']!r} must show the solution of {item}"
        if p["quiz"]:
            q = question(item)
            assert q.kind == "numeric" and q.solution.strip(), \
                f"{path.name}: {item} answers a problem: a numeric question with a worked solution"
        else:
            exercise(item)  # raises if the id is unknown


@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_exercise_stubs_are_the_bank_stubs(path):
    """The stub a reader sees is the one assignments hand out: one source."""
    nb = bf.read(path)
    sources = [bf.source(c) for c in nb.cells if c.cell_type == "code"]
    for i, src in enumerate(sources):
        for m in re.finditer(r"check\(\s*\"([^\"]+)\"\s*,\s*(\w+)\s*\)", src):
            ex = exercise(m.group(1))
            assert any(s.strip() == ex.stub for s in sources[:i]), (
                f"{path.name}: check({m.group(1)!r}) needs a cell before it whose source is exactly that exercise's stub"
            )


def claim_names(nb) -> list[str]:
    return [m.group(1) for c in nb.cells if c.cell_type == "code" for m in CLAIM_CALL.finditer(bf.source(c))]


@pytest.mark.parametrize("path", by_page(CHAPTERS))
def test_the_prose_is_backed_by_claims(path):
    """Each chapter states what its prose says about its results as executed claims (losslab.claim)."""
    names = claim_names(bf.read(path))
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"{path.name}: claim names used twice: {dupes}"
    assert len(names) >= MIN_CLAIMS, f"{path.name}: {len(names)} claims ({names}); a chapter needs at least {MIN_CLAIMS}"


# --- executed -------------------------------------------------------------------

_EXECUTED: dict = {}


def executed(path) -> bf.Execution:
    if path not in _EXECUTED:
        _EXECUTED[path] = bf.execute(path)
    return _EXECUTED[path]


@pytest.mark.chapters
@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_executes_offline_within_the_time_limit(path, request):
    run = executed(path)
    bf.TIMES[path.name] = run.seconds
    request.node.user_properties.append(("notebook_seconds", (path.name, run.seconds)))  # reaches xdist's controller
    assert run.error is None, f"{path.name} failed to execute:\n{run.error}"
    assert not run.network, f"{path.name} tried to use the network: {run.network}"
    assert run.seconds <= bf.TIME_GUARD_S, (
        f"{path.name} took {run.seconds:.1f} s: far over its {bf.TIME_LIMIT_S:.0f} s budget "
        f"(the test fails past {bf.TIME_GUARD_S:.0f} s, a guard for loaded machines)"
    )


@pytest.mark.chapters
@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_no_errors_or_stray_warnings_in_outputs(path):
    run = executed(path)
    assert run.error is None, "did not execute"
    for i, cell in enumerate(run.notebook.cells):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name}: cell {i} shows an error"
            if out.output_type == "stream" and out.name == "stderr":
                raise AssertionError(f"{path.name}: cell {i} wrote to stderr (the build treats it as an error):\n{out.text}")
            plain = out.get("data", {}).get("text/plain", "")
            if out.output_type == "execute_result" and BARE_NUMBER.match(plain.strip("'\"")):
                raise AssertionError(f"{path.name}: cell {i} prints a stray value {plain!r} into the page")
            if "image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {}):
                raise AssertionError(
                    f"{path.name}: cell {i} shows a bare image, which has no alt text; show figures with "
                    "losslab.plots.show(fig, alt=...)"
                )


@pytest.mark.chapters
@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_interactive_elements_render_and_exist(path):
    run = executed(path)
    assert run.error is None, "did not execute"
    items = bf.losslab_outputs(run.notebook)
    explorers = [m for m in items if m["kind"] == "explorer"]
    quiz_ids = [q for m in items if m["kind"] == "quiz" for q in m["ids"]]
    exercise_ids = [m["id"] for m in items if m["kind"] == "exercise"]
    for qid in quiz_ids:
        question(qid)  # raises KeyError for an unknown id
    assert all(m["mode"] == "static" for m in explorers), "explorers must render static HTML in the build"
    assert len(quiz_ids) == len(set(quiz_ids)), f"{path.name}: a question is shown twice"
    if path in CHAPTERS:
        assert len(explorers) >= MIN_EXPLORERS, f"{path.name}: {len(explorers)} explorers, need {MIN_EXPLORERS}"
        assert len(set(quiz_ids)) >= MIN_QUESTIONS, f"{path.name}: {len(set(quiz_ids))} quiz questions, need {MIN_QUESTIONS}"
        assert len(set(exercise_ids)) >= MIN_EXERCISES, f"{path.name}: {len(set(exercise_ids))} checked exercises, need {MIN_EXERCISES}"
    elif path.stem == "how_this_book_works":
        assert explorers and quiz_ids and exercise_ids, f"{path.name}: the demo page shows one of each mechanism"
    html = bf.dumps_outputs(run.notebook)
    assert "application/vnd.jupyter.widget-view+json" not in html, f"{path.name}: live widgets in a static build render blank"


@pytest.mark.chapters
@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_the_build_will_find_this_execution_in_its_cache(path):
    """The build reuses the outputs stored here instead of executing the chapter again."""
    from jupyter_cache import get_cache

    assert executed(path).error is None, "did not execute"
    record = get_cache(str(bf.CACHE)).match_cache_notebook(bf.read(path))  # raises KeyError on a miss
    assert record.uri == str(path)


@pytest.mark.chapters
@pytest.mark.parametrize("path", by_page(NOTEBOOKS))
def test_the_reader_edition_has_no_myst_left(path):
    """Jupyter and Colab render the reader edition: every glued value and citation resolved, no role or directive left."""
    from losslab import reader

    run = executed(path)
    assert run.error is None, "did not execute"
    edition = reader.convert(bf.read(path), run.notebook, reader.Bibliography(bf.ROOT / "book" / "references.bib"))
    assert not reader.leftover_markup(edition), f"{path.name}: MyST left in the reader edition"
    assert not bf.stored_outputs(edition)


def test_notation_page_follows_teaching_and_lists_each_symbol_once():
    """book/notation.md: one row per symbol group, each symbol with one meaning, in the toc's first part."""
    names = [p.name for p in bf.toc_files()]
    assert "notation.md" in names, "_toc.yml must list book/notation"
    assert names.index("notation.md") == names.index("teaching_with_this_book.md") + 1
    text = (bf.ROOT / "book" / "notation.md").read_text()
    assert text.startswith("# Notation\n")
    rows = [line for line in text.splitlines() if line.startswith("| $")]
    assert len(rows) >= 40, f"only {len(rows)} symbol rows"
    symbols = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 3 and all(cells), f"a row needs symbol | meaning | introduced in (no '|' inside math): {row}"
        symbols += re.findall(r"\$([^$]+)\$", cells[0])
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    assert not dupes, f"symbols listed twice on the notation page: {dupes}"
