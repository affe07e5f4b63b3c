"""Round trip on a real page of the book: assign -> students fill it in -> grade -> grades.csv.

Expected scores are written here from the known answers (the bank's correct
choices, the reference solution, hand-counted checks of a known-wrong
version), never read back from the grader.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import nbformat
import pytest

import bookfiles as bf
import students
from losslab import assign as A
from losslab.__main__ import main
from losslab.exercises import all_exercises, exercise
from losslab.grade import Limits, grade
from losslab.questions import load_bank, question

PAGE = bf.ROOT / "book" / "how_this_book_works.ipynb"
PROMPT = {"id": "course.max-slope", "kind": "numeric", "tolerance": 1e-6,
          "prompt": "What is the largest slope that *your* run of the cell above measured?"}
# The page's own measurement, as a run cell handed out with the question (the
# round trip with the page's full context is test_round_trip_with_the_page_context).
RUN = ("import torch\nz = torch.linspace(-6, 6, 1201, dtype=torch.float64, requires_grad=True)  # (1201,)\n"
       "torch.sigmoid(z).sum().backward()\nslope = z.grad  # sigmoid'(z)")
RUN_Q = A.run_question_from_raw(PROMPT, key="float(slope.max())", run=RUN)
RELU_OK = exercise("demo.relu").solution
RELU_ABS = "import torch\ndef relu(x):\n    return torch.abs(x)\n"  # passes 'shape and dtype' and 'does not modify': 2/4
RELU_ID = "def relu(x):\n    return x\n"


def letters(a, qid: str, correct: bool = True, student: str = "") -> str:
    """The letters of the right (or wrong) choices of ``qid`` as ``student``'s notebook shows them."""
    item = next(it for it in a.items if it.id == qid)
    q = A.shown_question(item, a.secret, student)
    return "".join("abcdefgh"[i] for i, c in enumerate(q.choices) if c.correct == correct)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    a = A.build("demo-hw", notebook=PAGE, run_questions=[RUN_Q], title="Demo homework")
    CORRECT.update({"demo.gradient-sign": repr(letters(a, "demo.gradient-sign")),
                    "demo.differentiable": repr(list(letters(a, "demo.differentiable")))})
    WRONG.update({"demo.gradient-sign": repr(letters(a, "demo.gradient-sign", False)[0]),
                  "demo.differentiable": repr(letters(a, "demo.differentiable")[0])})
    return a, A.write_assignment(a, out)


_fill = students.fill


# The letters follow the order each notebook shows (seeded by the assignment's secret): the demo fixture fills them in.
CORRECT = {"demo.sigmoid-slope": "0.09", "course.max-slope": "0.25"}
WRONG: dict[str, str] = {}


def _students(paths) -> dict[str, tuple[object, float, dict]]:
    """name -> (notebook or raw text, expected total, expected per-item scores that differ from 1)."""
    s = paths["student"]

    def drop(pred):
        return lambda nb: setattr(nb, "cells", [c for c in nb.cells if not pred(c)])

    def set_check(text):
        def f(nb):
            for c in nb.cells:
                if c.metadata.get("losslab", {}).get("check") == "demo.relu":
                    c.source = text
        return f

    def own_run(nb):  # the student changes the experiment: their key changes with it
        for c in nb.cells:
            if c.cell_type == "code" and "slope = z.grad" in c.source:
                c.source = c.source.replace("slope = z.grad", "slope = 2 * z.grad")

    def loop_before_last(nb):
        i = next(k for k, c in enumerate(nb.cells) if c.metadata.get("losslab", {}).get("answer") == "course.max-slope")
        nb.cells.insert(i, nbformat.v4.new_code_cell("while True:\n    pass"))

    def redefine_checker(nb):
        nb.cells.insert(3, nbformat.v4.new_code_cell("losslab.check = lambda *a, **k: print('demo.relu: 4/4 checks passed')"))

    zero = {k: 0 for k in ("demo.gradient-sign", "demo.differentiable", "demo.sigmoid-slope", "demo.relu", "course.max-slope")}
    return {
        # the answer key itself, as the instructor notebook holds it
        "instructor": (nbformat.read(str(paths["instructor"]), as_version=4), 5, {}),
        "all-correct": (_fill(s, CORRECT, {"demo.relu": RELU_OK}), 5, {}),
        "blank": (_fill(s), 0, zero),
        # b is wrong; abs passes 2 of relu's 4 checks; the run gives 0.25, not 0.3
        "partly": (_fill(s, {**CORRECT, "demo.gradient-sign": WRONG["demo.gradient-sign"], "course.max-slope": "0.3"}, {"demo.relu": RELU_ABS}),
                   2.5, {"demo.gradient-sign": 0, "demo.relu": 0.5, "course.max-slope": 0}),
        # a multiple-choice answer missing one right choice; an answer computed by an expression
        "computed": (_fill(s, {**CORRECT, "demo.differentiable": WRONG["demo.differentiable"], "demo.sigmoid-slope": "0.9 * (1 - 0.9)",
                               "course.max-slope": "float(slope.max())"}, {"demo.relu": RELU_OK}), 4, {"demo.differentiable": 0}),
        # the key follows the student's own run: doubled slopes, answered 0.5, is right; 0.25 is then wrong
        "own-run": (_fill(s, {**CORRECT, "course.max-slope": "0.5"}, {"demo.relu": RELU_OK}, edit=own_run), 5, {}),
        "own-run-stale": (_fill(s, CORRECT, {"demo.relu": RELU_OK}, edit=own_run), 4, {"course.max-slope": 0}),
        # raises: in an answer cell (expression) and at the top of the exercise cell
        "raises": (_fill(s, {**CORRECT, "demo.sigmoid-slope": "1 / 0"}, {"demo.relu": "raise RuntimeError('oops')\n" + RELU_OK}),
                   3, {"demo.sigmoid-slope": 0, "demo.relu": 0}),
        # loops forever: inside the function, and in a cell before the run-dependent answer
        "loops": (_fill(s, CORRECT, {"demo.relu": "def relu(x):\n    while True:\n        pass\n"}, edit=loop_before_last),
                  3, {"demo.relu": 0, "course.max-slope": 0}),
        "memory": (_fill(s, CORRECT, {"demo.relu": "hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))\n" + RELU_OK}),
                   4, {"demo.relu": 0}),
        # the visible check cell faked, deleted; the checker redefined; torch patched from the answer cell
        "edited-check": (_fill(s, CORRECT, {"demo.relu": RELU_ID}, edit=set_check("print('demo.relu: 4/4 checks passed')")),
                         4, {"demo.relu": 0}),
        "deleted-check": (_fill(s, CORRECT, {"demo.relu": RELU_OK}, edit=drop(lambda c: c.metadata.get("losslab", {}).get("check"))),
                          4, {"demo.relu": 0}),
        "redefined-checker": (_fill(s, CORRECT, {"demo.relu": RELU_ID}, edit=redefine_checker), 4, {"demo.relu": 0}),
        "patches-torch": (_fill(s, CORRECT, {"demo.relu": "import torch\ntorch.equal = lambda a, b: True\n" + RELU_ID}),
                          4, {"demo.relu": 0}),
        "deleted-answer": (_fill(s, CORRECT, {"demo.relu": RELU_OK},
                                 edit=drop(lambda c: c.metadata.get("losslab", {}).get("answer") == "demo.gradient-sign")),
                           4, {"demo.gradient-sign": 0}),
        "not-a-notebook": ('{"cells": [oops', 0, zero),
    }


def test_student_notebook_holds_no_answers(demo):
    a, paths = demo
    text = paths["student"].read_text()
    nb = json.loads(text)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
    for it in a.items:
        if it.is_question:
            q = it.question()
            assert q.explanation.strip() not in text
            assert not any(c.feedback and c.feedback in text for c in q.choices)
        else:
            ex = it.exercise()
            for line in set(ex.solution.splitlines()) - set(ex.stub.splitlines()):
                assert line.strip() not in text, line
    assert RUN_Q.key not in text and "correct" not in text and "show_solution" not in text
    instructor = paths["instructor"].read_text()
    assert "torch.where(x < 0" in instructor and RUN_Q.key in instructor


def test_round_trip_on_the_demo_page(demo, tmp_path):
    a, paths = demo
    students = _students(paths)
    subs = tmp_path / "submitted"
    subs.mkdir()
    for name, (nb, _, _) in students.items():
        target = subs / f"{name}.ipynb"
        target.write_text(nb) if isinstance(nb, str) else nbformat.write(nb, str(target))
    start = time.perf_counter()
    results = grade(paths["manifest"], subs, tmp_path / "graded", limits=Limits(time_s=6, memory_mb=512, workers=2))
    seconds = time.perf_counter() - start
    print(f"graded {len(results)} submissions in {seconds:.1f} s")
    rows = list(csv.DictReader(open(tmp_path / "graded" / "grades.csv")))
    assert rows[0]["student"] == "(max)" and float(rows[0]["total"]) == sum(it.points for it in a.items)
    got = {r["student"]: r for r in rows[1:]}
    assert set(got) == set(students)
    ids = [it.id for it in a.items]
    for name, (_, total, per_item) in students.items():
        expected = {i: per_item.get(i, 1) for i in ids}
        assert {i: float(got[name][i]) for i in ids} == pytest.approx(expected), name
        assert float(got[name]["total"]) == pytest.approx(total), name
    feedback = {p.stem: p.read_text() for p in (tmp_path / "graded" / "feedback").glob("*.md")}
    reasons = {
        "loops": "time limit", "memory": "memory", "raises": "RuntimeError", "edited-check": "edited",
        "deleted-check": "deleted", "redefined-checker": "redefin", "patches-torch": "torch.equal",
        "not-a-notebook": "not a valid notebook", "deleted-answer": "no answer cell", "partly": "[FAIL]",
        "own-run-stale": "your run produced 0.5",
    }
    for name, why in reasons.items():
        assert why in feedback[name], (name, feedback[name])


def test_round_trip_with_the_page_context(demo, tmp_path):
    """The whole page handed out around its items: the key comes from the page's own cell."""
    a = A.build("page", notebook=PAGE, context=True, run_questions=[A.run_question_from_raw(PROMPT, "float(slope.max())")],
                secret=demo[0].secret)  # the same secret: the same choice order as the demo fixture's letters
    paths = A.write_assignment(a, tmp_path / "a")
    student = nbformat.read(str(paths["student"]), as_version=4)
    assert any("sigmoid_explorer().show()" in c.source for c in student.cells)
    assert not any("show_solution" in c.source or "losslab.quiz(" in c.source for c in student.cells)
    students = {k: v for k, v in _students(paths).items() if k in ("instructor", "own-run", "own-run-stale")}
    subs = tmp_path / "s"
    subs.mkdir()
    for name, (nb, _, _) in students.items():
        nbformat.write(nb, str(subs / f"{name}.ipynb"))
    results = {r.student: r.total for r in grade(paths["manifest"], subs, tmp_path / "g", limits=Limits(time_s=30, workers=2))}
    assert results == {name: total for name, (_, total, _) in students.items()}


def test_other_chapters_round_trip(tmp_path):
    """Every chapter present in the bank: the answer key scores full marks, the blank notebook zero."""
    prefixes = sorted({i.split(".")[0] for i in list(load_bank()) + list(all_exercises())} - {"demo"})
    if not prefixes:
        pytest.skip("no chapter besides the demo page is in the bank yet")
    a = A.build("chapters", chapters=prefixes)
    paths = A.write_assignment(a, tmp_path / "a")
    subs = tmp_path / "submitted"
    subs.mkdir()
    shutil.copy(paths["instructor"], subs / "key.ipynb")
    shutil.copy(paths["student"], subs / "blank.ipynb")
    results = {r.student: r for r in grade(paths["manifest"], subs, tmp_path / "g", limits=Limits(time_s=30, workers=2))}
    bad = [(r.id, r.status, r.message[:300]) for r in results["key"].items if r.score != r.points]
    assert not bad
    assert results["blank"].total == 0


def test_selection_by_id_chapter_tag_and_page():
    assert A.select(["demo.relu", "demo.gradient-sign"]) == ["demo.relu", "demo.gradient-sign"]
    assert set(A.select(chapters=["demo"])) == {"demo.gradient-sign", "demo.differentiable", "demo.sigmoid-slope",
                                                "demo.sigmoid-slope-at", "demo.relu"}
    tagged = A.select(tags=["gradient"])
    assert [i for i in tagged if i.startswith("demo.")] == ["demo.gradient-sign", "demo.sigmoid-slope", "demo.sigmoid-slope-at"]
    bank, exercises = load_bank(), all_exercises()
    assert all("gradient" in (question(i).tags if i in bank else A.exercise_tags(exercises[i])) for i in tagged)
    assert any(i in exercises for i in tagged)  # a tag selects exercises as well as questions
    assert A.select(notebook=PAGE) == ["demo.gradient-sign", "demo.differentiable", "demo.sigmoid-slope", "demo.relu"]
    with pytest.raises(KeyError, match="did you mean"):
        A.select(["demo.rleu"])
    with pytest.raises(ValueError, match="prefix"):
        A.select(chapters=["nochapter"])


def test_answers_parse_and_judge():
    single, multiple, numeric = (question(i) for i in ("demo.gradient-sign", "demo.differentiable", "demo.sigmoid-slope"))
    assert A.judge(single, A.parse_response(single, "A"))[0]
    assert not A.judge(single, A.parse_response(single, "(b)"))[0]
    assert A.judge(multiple, A.parse_response(multiple, "b, a"))[0]
    assert not A.judge(multiple, A.parse_response(multiple, "abc"))[0]
    assert A.judge(numeric, A.parse_response(numeric, "0.0905"))[0]
    assert not A.judge(numeric, A.parse_response(numeric, 0.1))[0]
    assert A.judge(numeric, 0.5, key=0.5)[0] and not A.judge(numeric, 0.25, key=0.5)[0]
    assert A.judge(multiple, frozenset(), key=frozenset())[0]  # "none of your runs diverged"
    for q, bad in ((single, "z"), (single, 0), (multiple, 3.5), (numeric, "many")):
        with pytest.raises(ValueError, match=q.id):
            A.parse_response(q, bad)


def test_nbgrader_source_has_markers_and_releases_to_the_stub(demo):
    a, paths = demo
    nb = nbformat.read(str(paths["nbgrader"]), as_version=4)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded) == len(a.items) and all("### BEGIN HIDDEN TESTS" in c.source for c in graded)
    relu = next(c for c in nb.cells if c.metadata.get("losslab", {}).get("answer") == "demo.relu")
    released = relu.source.replace(
        "    ### BEGIN SOLUTION\n    return torch.where(x < 0, torch.zeros_like(x), x)  # NaN < 0 is False: NaN passes through, as in F.relu\n    ### END SOLUTION",
        "    # YOUR CODE HERE\n    raise NotImplementedError()")
    assert released == exercise("demo.relu").stub


def test_cli_assign_and_grade(tmp_path, capsys):
    assert main(["assign", "demo.relu", "demo.sigmoid-slope", "--name", "hw", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "student" / "hw.ipynb").exists() and (tmp_path / "a" / "nbgrader" / "source" / "hw" / "hw.ipynb").exists()
    (tmp_path / "s").mkdir()
    nbformat.write(_fill(tmp_path / "a" / "student" / "hw.ipynb", {"demo.sigmoid-slope": "0.09"}, {"demo.relu": RELU_ABS}),
                   str(tmp_path / "s" / "eve.ipynb"))
    assert main(["grade", str(tmp_path / "a" / "instructor" / "hw.assignment.json"), str(tmp_path / "s"),
                 "--out", str(tmp_path / "g"), "--time-limit", "20", "--workers", "2"]) == 0
    assert "eve" in capsys.readouterr().out
    rows = list(csv.reader(open(tmp_path / "g" / "grades.csv")))
    assert rows[0] == ["student", "demo.relu", "demo.sigmoid-slope", "total"]
    assert rows[2] == ["eve", "0.5", "1", "1.5"]
    assert main(["assign", "demo.nope", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean" in capsys.readouterr().err


# --- through real nbgrader ------------------------------------------------------------------

def _nbgrader_command() -> list[str] | None:
    """nbgrader in this environment, or the one named by LOSSLAB_NBGRADER (an executable)."""
    import importlib.util  # noqa: PLC0415
    import os  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if importlib.util.find_spec("nbgrader") is not None:
        return [sys.executable, "-m", "nbgrader"]
    exe = os.environ.get("LOSSLAB_NBGRADER")
    return [exe] if exe and Path(exe).exists() else None


def test_nbgrader_generate_and_autograde(demo, tmp_path):
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    cmd = _nbgrader_command()
    if cmd is None:
        pytest.skip("nbgrader is not installed (pip install nbgrader; see requirements.txt)")
    _, paths = demo
    course = tmp_path / "course"
    shutil.copytree(paths["nbgrader"].parent.parent, course / "source")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = %r\nc.CourseDirectory.course_id = 'demo'\n"
        "c.ExecutePreprocessor.timeout = 120\n" % str(course))
    # The kernel that autograde starts is this interpreter, which has losslab.
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps(
        {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "Python 3", "language": "python"}))
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path / "jupyter"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), PYTHONWARNINGS="ignore",
               # nbgrader runs `alembic` from PATH: put its environment's bin first
               PATH=os.pathsep.join([str(Path(cmd[0]).parent), os.environ.get("PATH", "")]))

    def nbg(*args):
        r = subprocess.run([*cmd, *args], cwd=course, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
        return r

    nbg("generate_assignment", "demo-hw", "--force")
    release = course / "release" / "demo-hw" / "demo-hw.ipynb"
    rel = nbformat.read(str(release), as_version=4)
    text = release.read_text()
    assert "BEGIN HIDDEN TESTS" not in text and "torch.where(x > 0" not in text and "float(slope.max())" not in text
    relu = next(c for c in rel.cells if c.metadata.get("losslab", {}).get("answer") == "demo.relu")
    assert relu.source == exercise("demo.relu").stub  # released exactly as the book's stub

    expected = {"ann": 5.0, "bo": 3.0, "cheat": 0.0}
    fills = {"ann": (CORRECT, RELU_OK), "bo": ({**CORRECT, "demo.gradient-sign": WRONG["demo.gradient-sign"]}, RELU_ABS),
             "cheat": ({}, RELU_ID)}

    def patch_checker(nb):  # a student cell that silences the checker nbgrader's hidden tests used to call
        nb.cells.insert(2, nbformat.v4.new_code_cell(
            "losslab.assign.expect = lambda *a, **k: None\nlosslab.assign.require = lambda *a, **k: None"))

    for student, (answers, relu_src) in fills.items():
        nb = _fill(release, answers, {"demo.relu": relu_src}, edit=patch_checker if student == "cheat" else None)
        target = course / "submitted" / student / "demo-hw" / "demo-hw.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, str(target))
        nbg("db", "student", "add", student)
    nbg("autograde", "demo-hw", "--force")
    nbg("export", "--to", str(tmp_path / "nbgrader-grades.csv"))
    rows = list(csv.DictReader(open(tmp_path / "nbgrader-grades.csv")))
    assert {r["student_id"]: float(r["score"]) for r in rows} == expected
