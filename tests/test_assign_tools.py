"""Instructor tools: listing, selecting by tag, rosters, and assignment notebooks cleaned of book-only text."""

from __future__ import annotations

import nbformat

import bookfiles as bf
from losslab import assign as A
from losslab.__main__ import main
from losslab.exercises import all_exercises

PAGE = bf.ROOT / "book" / "how_this_book_works.ipynb"
CONVERGENCE = bf.ROOT / "book" / "08_convergence.ipynb"


def test_list_shows_ids_chapters_kinds_tags_and_filters(capsys):
    assert main(["list", "--tag", "dropout"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()[1:-1]]
    ids = {row[0] for row in lines}
    assert "reg.inverted-dropout" in ids and "reg.dropout-scale" in ids  # an exercise and a question
    assert all(row[1] == "reg" for row in lines) and {row[2] for row in lines} >= {"exercise", "numeric"}
    assert main(["list", "--chapter", "demo", "--kind", "exercise"]) == 0
    out = capsys.readouterr().out
    assert "demo.relu" in out and "demo.gradient-sign" not in out and "(4 checks)" in out
    assert main(["list", "--tag", "no-such-tag"]) == 2


def test_tags_select_exercises_too():
    chosen = A.select(tags=["dropout"])
    assert "reg.inverted-dropout" in chosen and "reg.dropout-eval" in chosen
    for ex in all_exercises().values():
        assert "exercise" in A.exercise_tags(ex)


def test_a_roster_gives_each_student_a_notebook(tmp_path, capsys):
    roster = tmp_path / "roster.txt"
    roster.write_text("ann\n# a comment\n\nbo\n")
    assert main(["assign", "demo.gradient-sign", "gd.one-step", "--students", str(roster), "--name", "hw", "--out", str(tmp_path / "a")]) == 0
    ann = nbformat.read(str(tmp_path / "a" / "student" / "hw" / "ann.ipynb"), as_version=4)
    bo = nbformat.read(str(tmp_path / "a" / "student" / "hw" / "bo.ipynb"), as_version=4)
    assert ann.metadata["losslab"]["student"] == "ann" and bo.metadata["losslab"]["student"] == "bo"
    import json  # noqa: PLC0415

    manifest = json.loads((tmp_path / "a" / "instructor" / "hw.assignment.json").read_text())
    assert manifest["students"] == ["ann", "bo"] and len(manifest["secret"]) >= 32
    assert (tmp_path / "a" / "instructor" / "hw.assignment.json").stat().st_mode & 0o077 == 0
    assert manifest["secret"] not in (tmp_path / "a" / "student" / "hw" / "ann.ipynb").read_text()
    # building again keeps the secret, so handed-out notebooks keep their order and numbers
    assert main(["assign", "demo.gradient-sign", "gd.one-step", "--students", str(roster), "--name", "hw", "--out", str(tmp_path / "a")]) == 0
    again = json.loads((tmp_path / "a" / "instructor" / "hw.assignment.json").read_text())
    assert again["secret"] == manifest["secret"]
    assert main(["assign", "demo.gradient-sign", "--students", str(tmp_path / "none.txt"), "--out", str(tmp_path / "b")]) == 2


def test_markdown_for_students_drops_roles_and_book_only_sentences():
    bib = {"kingma2015adam": "Kingma and Ba, 2015"}
    text = ("Pick an answer: feedback appears at once, also on the static web page. Adam {footcite:p}`kingma2015adam` "
            "works; {footcite:t}`kingma2015adam` say so. The loss is {glue:text}`loss:.3f`. See {doc}`the guide <intro>`.\n\n"
            "```{footbibliography}\n```\n")
    out = A.for_students(text, bib)
    assert "feedback appears at once" not in out and "{" not in out and "footbibliography" not in out
    assert "Adam (Kingma and Ba, 2015) works; Kingma and Ba (2015) say so." in out
    assert "*(computed above)*" in out and "See the guide." in out


def test_page_context_assignment_is_clean_and_places_run_questions(tmp_path):
    rq = A.run_question_from_raw({"id": "course.max-slope", "kind": "numeric", "tolerance": 1e-6,
                                  "prompt": "What is the largest slope that *your* run of the cell above measured?"},
                                 "float(slope.max())")
    a = A.build("page", notebook=PAGE, context=True, run_questions=[rq])
    nb = A.student_notebook(a)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for book_only in ("{glue", "{footcite", "feedback appears at once", "static web page"):
        assert book_only not in text, book_only
    k = next(i for i, c in enumerate(nb.cells) if "`course.max-slope`" in c.source)
    above = next(c for c in reversed(nb.cells[:k]) if c.cell_type == "code")
    assert "slope" in A._names_defined(above.source)  # "the cell above" is the cell that measures the slope


def test_an_exercise_that_reads_a_figure_carries_it(tmp_path):
    a = A.build("fig", ids=["train.diagnose-runs"], notebook=CONVERGENCE)
    nb = A.student_notebook(a)
    k = next(i for i, c in enumerate(nb.cells) if (c.metadata.get("losslab") or {}).get("answer") == "train.diagnose-runs")
    figure = [c for c in nb.cells[:k] if (c.metadata.get("losslab") or {}).get("role") == "figure"]
    assert figure and "mystery_histories" in figure[0].source
    setup = nb.cells[1].source
    assert "plots" in setup  # the figure cell's imports come with it


def test_problems_are_assignable_with_their_worked_solutions_for_the_instructor_only(tmp_path, capsys):
    from losslab.questions import load_bank

    assert main(["list", "--tag", "problem"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]}
    chapters = {i.split(".")[0] for i in listed if ".problem-" in i}
    assert len(chapters) >= 4, f"problems of only {sorted(chapters)} are tagged 'problem'"
    worked = sorted(q.id for q in load_bank().values() if q.solution.strip() and q.params)
    assert worked, "no derivation with per-student numbers and a worked solution"
    qid = worked[0]
    assert main(["assign", qid, "--name", "hw", "--out", str(tmp_path / "a")]) == 0
    texts = {p.relative_to(tmp_path / "a").parts[0]: p.read_text() for p in (tmp_path / "a").rglob("*.ipynb")}
    assert "Worked solution" in texts["instructor"] and "Worked solution" not in texts["student"]
    assert "{{" not in texts["instructor"], "the worked solution must show the student's numbers, not placeholders"
