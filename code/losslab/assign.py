"""Assignments from the book: choose items, write student, instructor and nbgrader notebooks.

Every quiz question (``losslab/bank/<prefix>.toml``) and every exercise
(``losslab/exercises/<prefix>.py``) has a stable id ``<prefix>.<name>``.
An assignment is a list of those ids, chosen by id, by chapter prefix, by
tag, or by the order in which a chapter notebook uses them. From one
assignment :func:`write_assignment` writes:

``student/<name>.ipynb``
    What students get: each question's prompt and choices with an answer
    cell ``answer("<id>", None)``; each exercise's task, its stub and a
    visible check cell. No answer, explanation, choice feedback or
    solution appears in it: not in the cells, not in the metadata, and it
    has no outputs.
``instructor/<name>.ipynb``
    The same notebook with the answer key filled in, the explanations, and
    the reference solutions. Graded, it scores full marks.
``instructor/<name>.assignment.json``
    The manifest :mod:`losslab.grade` reads: the item ids, their points,
    and for run-dependent questions the key expression. Answers and checks
    are not copied into it: the grader takes them from the package.
``nbgrader/source/<name>/<name>.ipynb``
    An nbgrader source notebook (cell metadata, ``### BEGIN SOLUTION`` /
    ``### END SOLUTION`` and ``### BEGIN HIDDEN TESTS`` markers) for
    ``nbgrader generate_assignment``.

Answers are recorded in the notebook, not in widget state: a student edits
``answer("demo.gradient-sign", None)`` into ``answer("demo.gradient-sign", "a")``
(a letter for one choice, letters for several, a number for a numeric
question). The grader reads the literal from the cell's source, or, when
the answer is an expression, the value it had when the cell ran.

Questions whose right answer depends on the student's own run
("which of *your* learning rates diverged?") are :class:`RunQuestion`:
a bank question, or one written in the assignment file, plus a key: a
Python expression evaluated in the student's namespace right after their
answer cell ran (for example ``float(losses[-1])``, or
``[i for i, l in enumerate(final) if l != l]`` for "which diverged",
giving 0-based choice indices or letters).

Assignment file (TOML), all keys optional::

    name = "hw1"
    title = "Homework 1: gradients"
    ids = ["demo.gradient-sign", "demo.relu"]
    chapters = ["demo"]               # every question and exercise of these prefixes
    tags = ["gradient"]               # every question with one of these tags
    notebook = "book/how_this_book_works.ipynb"   # the items this page uses, in its order
    context = true                    # keep the page's prose and code around the items
    points = { "demo.relu" = 2 }      # default 1 per item

    [[run_question]]
    id = "course.max-slope"
    kind = "numeric"
    prompt = "What is the largest slope your cell measured?"
    key = "float(slope.max())"
    tolerance = 1e-6

See Chapter "Teaching with this book".
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import secrets as _secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import nbformat

from .exercises import CheckOutcome, Exercise, Report, all_exercises, exercise
from .grade import _clone, _hidden_twin
from .questions import ID_PATTERN, Choice, Question, load_bank, question

__all__ = [
    "Item",
    "RunQuestion",
    "Assignment",
    "select",
    "ids_in_notebook",
    "load_spec",
    "write_assignment",
    "student_notebook",
    "instructor_notebook",
    "nbgrader_notebook",
    "answer",
    "expect",
    "require",
    "parse_response",
    "judge",
    "MANIFEST_FORMAT",
    "SOLUTIONS_ENV",
    "shown_question",
    "order_seed",
    "exercise_tags",
    "catalogue",
    "read_roster",
    "for_students",
]

MANIFEST_FORMAT = 2
#: Set to ``0`` (for example ``LOSSLAB_SOLUTIONS=0 make book``) to leave solutions out of the book.
SOLUTIONS_ENV = "LOSSLAB_SOLUTIONS"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


# --- what an assignment holds ----------------------------------------------------

@dataclass(frozen=True)
class RunQuestion:
    """A question whose right answer comes from the student's own run.

    Parameters
    ----------
    question : Question
        Prompt, kind, choices and tolerances. Its own ``correct`` flags and
        ``answer`` are placeholders: the key replaces them.
    key : str
        A Python expression evaluated in the student's namespace right after
        their answer cell ran. For ``numeric``: a number. For ``single``: a
        0-based choice index or a letter. For ``multiple``: an iterable of
        indices or letters (possibly empty).
    run : str
        Optional code placed before the question in the student notebook
        (the experiment whose outcome the question asks about).
    """

    question: Question
    key: str
    run: str = ""
    after: str = ""  # text of the page's code cell the question follows (default: the last cell defining the key's names)

    def __post_init__(self) -> None:
        try:
            ast.parse(self.key, mode="eval")
        except SyntaxError as err:
            raise ValueError(f"key: expected a Python expression for {self.question.id!r}, got {self.key!r} ({err.msg})") from None

    @property
    def id(self) -> str:
        return self.question.id


@dataclass(frozen=True)
class Item:
    """One graded item: a bank question, a run-dependent question or an exercise."""

    id: str
    points: float = 1.0
    run_question: RunQuestion | None = None

    @property
    def type(self) -> str:
        return "question" if self.is_question else "exercise"

    @property
    def is_question(self) -> bool:
        return self.run_question is not None or self.id in load_bank()

    def question(self) -> Question:
        return self.run_question.question if self.run_question else question(self.id)

    def exercise(self) -> Exercise:
        return exercise(self.id)


@dataclass
class Assignment:
    """A named, ordered list of items, optionally set inside a chapter's own cells."""

    name: str
    items: list[Item]
    title: str = ""
    notebook: Path | None = None
    context: bool = False
    students: list[str] = field(default_factory=list)
    secret: str = ""

    def __post_init__(self) -> None:
        self.secret = self.secret or _secrets.token_hex(16)
        bad = [s for s in self.students if not isinstance(s, str) or not s.strip()]
        if bad or len(set(self.students)) != len(self.students):
            raise ValueError(f"students: expected distinct non-empty names, got {self.students!r}")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", self.name):
            raise ValueError(f"name: expected letters, digits, '_', '-', '.', got {self.name!r}")
        if not self.items:
            raise ValueError("items: the assignment selects no question and no exercise")
        ids = [i.id for i in self.items]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"items: listed twice: {dup}")
        for it in self.items:
            if it.points <= 0 or not math.isfinite(it.points):
                raise ValueError(f"points: expected a positive number for {it.id!r}, got {it.points!r}")
            if it.run_question is None:
                it.question() if it.is_question else it.exercise()  # KeyError naming close ids
        self.title = self.title or self.name

    def manifest(self) -> dict:
        """What the grader needs (no answers: those come from the package)."""
        items = []
        for it in self.items:
            row: dict[str, Any] = {"id": it.id, "type": it.type, "points": it.points}
            if it.is_question:
                row["kind"] = it.question().kind
            else:
                row["entry"] = it.exercise().entry
            if it.run_question:
                q = it.run_question.question
                row["run"] = {"key": it.run_question.key, "question": _question_to_raw(q)}
            items.append(row)
        return {"format": MANIFEST_FORMAT, "name": self.name, "title": self.title, "items": items,
                "students": list(self.students), "secret": self.secret}


def _question_to_raw(q: Question) -> dict:
    raw = {"id": q.id, "kind": q.kind, "prompt": q.prompt, "explanation": q.explanation,
           "tolerance": q.tolerance, "rtol": q.rtol, "hint": q.hint, "tags": list(q.tags)}
    if q.choices:
        raw["choices"] = [{"text": c.text, "feedback": c.feedback} for c in q.choices]
    return raw


def read_roster(path: str | Path) -> list[str]:
    """Student names, one per line (blank lines and ``#`` comments skipped)."""
    names = [line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"students: {path} names no student")
    return names


def order_seed(secret: str, student: str, qid: str) -> str:
    """The seed of the choice order that ``student`` sees for ``qid`` (``""``: the assignment's common order).

    Derived from the assignment's secret, so it cannot be computed from the
    student notebook or the package.
    """
    return hmac.new(secret.encode(), f"order\0{student}\0{qid}".encode(), hashlib.sha256).hexdigest()


def shown_question(it: "Item", secret: str, student: str = "") -> Question:
    """The question as this student's notebook shows it: choices in their seeded order.

    Run-dependent questions keep their written order (their keys name
    choices by position). Without a secret (a format-1 manifest) the order
    is the one written in the bank.
    """
    q = it.question()
    if it.run_question is not None:
        return q
    if not secret:
        return q.instance() if q.params else q
    return q.instance(order_seed(secret, student, q.id))


def run_question_from_raw(raw: dict, key: str, run: str = "", after: str = "") -> RunQuestion:
    """Build a :class:`RunQuestion` from a bank id (``{"id": ...}``) or a full definition."""
    qid = raw.get("id")
    if not isinstance(qid, str) or not ID_PATTERN.match(qid):
        raise ValueError(f"run_question: id must look like 'course.name', got {qid!r}")
    if set(raw) <= {"id"} and qid in load_bank():
        base = question(qid)
    else:
        kind = raw.get("kind")
        if kind not in ("single", "multiple", "numeric"):
            raise ValueError(f"run_question {qid!r}: kind must be single, multiple or numeric, got {kind!r}")
        choices = tuple(
            Choice(text=c["text"] if isinstance(c, dict) else str(c), correct=(i == 0), feedback=(c.get("feedback", "") if isinstance(c, dict) else ""))
            for i, c in enumerate(raw.get("choices", ()))
        )
        tol, rtol = float(raw.get("tolerance", 0.0)), float(raw.get("rtol", 0.0))
        if kind == "numeric" and tol == 0 and rtol == 0:
            tol = 1e-9
        base = Question(
            id=qid, kind=kind, prompt=raw.get("prompt", ""),
            explanation=raw.get("explanation") or "The key is computed from your own run.",
            choices=choices, answer=0.0 if kind == "numeric" else None,
            tolerance=tol, rtol=rtol, hint=raw.get("hint", ""), tags=tuple(raw.get("tags", ())),
        )
    return RunQuestion(base, key=key, run=run, after=after)


# --- selection --------------------------------------------------------------------

def exercise_tags(ex: Exercise) -> tuple[str, ...]:
    """An exercise's tags: its own ``tags`` if it has them, else those of its chapter's question tags
    that its id, title or prompt names (``reg.inverted-dropout`` -> ``dropout``), plus ``exercise``."""
    own = tuple(getattr(ex, "tags", ()) or ())
    if own:
        return own + ("exercise",)
    text = " ".join((ex.id, ex.title, ex.prompt)).lower().replace("_", "-")
    chapter = {t for q in load_bank().values() if q.prefix == ex.id.split(".")[0] for t in q.tags}
    found = sorted(t for t in chapter if t != "variant" and re.search(r"(?<![a-z])" + re.escape(t) + r"(?![a-z])", text))
    return tuple(found) + ("exercise",)


def catalogue(*, chapter: str | None = None, tag: str | None = None, kind: str | None = None) -> list[dict]:
    """Everything that can be assigned: id, chapter, kind, tags, default points, checks, variant; filtered."""
    rows = []
    for q in load_bank().values():
        rows.append({"id": q.id, "chapter": q.prefix, "kind": q.kind, "tags": list(q.tags), "points": 1.0,
                     "checks": 0, "variant": bool(q.params) or len(q.choices) > 1})
    for ex in all_exercises().values():
        rows.append({"id": ex.id, "chapter": ex.id.split(".")[0], "kind": "exercise", "tags": list(exercise_tags(ex)),
                     "points": 1.0, "checks": len(ex.checks), "variant": True})
    rows = [r for r in rows if (chapter is None or r["chapter"] == chapter) and (tag is None or tag in r["tags"])
            and (kind is None or r["kind"] == kind)]
    return sorted(rows, key=lambda r: (r["chapter"], r["kind"] == "exercise", r["id"]))


def select(ids: Sequence[str] = (), *, chapters: Sequence[str] = (), tags: Sequence[str] = (),
           notebook: str | Path | None = None) -> list[str]:
    """Item ids chosen by id, chapter prefix, tag, or a chapter notebook, without repeats.

    Order: the notebook's items in page order, then explicit ids, then each
    chapter's questions (bank order) and exercises, then tagged questions.

    Raises
    ------
    KeyError
        For an id that is neither a question nor an exercise (naming close ids).
    ValueError
        For a chapter prefix or tag that selects nothing.
    """
    bank = load_bank()
    exercises = all_exercises()
    chosen: list[str] = []

    def add(i: str) -> None:
        if i not in chosen:
            chosen.append(i)

    if notebook is not None:
        for i in ids_in_notebook(notebook):
            add(i)
    for i in ids:
        if i not in bank and i not in exercises:
            import difflib  # noqa: PLC0415

            close = difflib.get_close_matches(i, list(bank) + list(exercises), n=3)
            raise KeyError(f"ids: no question or exercise {i!r}" + (f"; did you mean {close}?" if close else ""))
        add(i)
    for prefix in chapters:
        found = [q for q in bank if q.split(".", 1)[0] == prefix] + [e for e in exercises if e.split(".", 1)[0] == prefix]
        if not found:
            known = sorted({k.split(".", 1)[0] for k in list(bank) + list(exercises)})
            raise ValueError(f"chapters: no question or exercise has prefix {prefix!r}; known prefixes: {known}")
        for i in found:
            add(i)
    for tag in tags:
        found = [q.id for q in bank.values() if tag in q.tags] + [e.id for e in exercises.values() if tag in exercise_tags(e)]
        if not found:
            raise ValueError(f"tags: nothing is tagged {tag!r}")
        for i in found:
            add(i)
    return chosen


def _call_ids(tree: ast.AST, names: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """``(function, [string args])`` for each call ``losslab.<name>(...)`` or ``<name>(...)``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if fname in names:
                args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                found.append((fname, args))
    return found


def _parse(src: str) -> ast.AST | None:
    try:
        return ast.parse(_strip_magics(src))
    except SyntaxError:
        return None


def _strip_magics(src: str) -> str:
    """IPython magics and shell escapes become ``pass`` so that ``ast`` can read the rest."""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in src.splitlines())


def ids_in_notebook(path: str | Path) -> list[str]:
    """The question and exercise ids a chapter notebook uses, in page order."""
    nb = nbformat.read(str(path), as_version=4)
    ids: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        for fname, args in _call_ids(tree, ("quiz", "check")):
            for a in args if fname == "quiz" else args[:1]:
                if a not in ids:
                    ids.append(a)
    return ids


def load_spec(path: str | Path, **overrides: Any) -> Assignment:
    """Read an assignment file (TOML, see the module docstring); ``overrides`` win."""
    path = Path(path)
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    known = {"name", "title", "ids", "chapters", "tags", "notebook", "context", "points", "run_question", "students"}
    extra = set(spec) - known
    if extra:
        raise ValueError(f"{path}: unknown keys {sorted(extra)}; expected some of {sorted(known)}")
    spec.update({k: v for k, v in overrides.items() if v not in (None, (), [])})
    notebook = spec.get("notebook")
    if notebook is not None and not Path(notebook).is_absolute():
        nb_path = (path.parent / notebook)
        notebook = nb_path if nb_path.exists() else Path(notebook)
    return build(
        name=spec.get("name", path.stem), title=spec.get("title", ""), ids=spec.get("ids", ()),
        chapters=spec.get("chapters", ()), tags=spec.get("tags", ()), notebook=notebook,
        context=bool(spec.get("context", False)), points=spec.get("points", {}), students=spec.get("students", ()),
        run_questions=[run_question_from_raw({k: v for k, v in r.items() if k not in ("key", "run", "after")}, r["key"],
                                             r.get("run", ""), r.get("after", ""))
                       for r in spec.get("run_question", [])],
    )


def build(name: str, *, ids: Sequence[str] = (), chapters: Sequence[str] = (), tags: Sequence[str] = (),
          notebook: str | Path | None = None, context: bool = False, title: str = "",
          points: dict[str, float] | None = None, run_questions: Sequence[RunQuestion] = (),
          students: Sequence[str] = (), secret: str = "") -> Assignment:
    """An :class:`Assignment` from a selection (see :func:`select`) plus run-dependent questions."""
    points = dict(points or {})
    runs = {r.id: r for r in run_questions}
    chosen = select(ids=[i for i in ids if i not in runs], chapters=chapters, tags=tags, notebook=notebook) if (ids or chapters or tags or notebook) else []
    items = [Item(i, float(points.pop(i, 1.0)), runs.pop(i, None)) for i in chosen]
    items += [Item(r.id, float(points.pop(r.id, 1.0)), r) for r in runs.values()]
    if points:
        raise ValueError(f"points: given for ids that are not in the assignment: {sorted(points)}")
    return Assignment(name=name, items=items, title=title, notebook=Path(notebook) if notebook else None, context=context,
                      students=list(students), secret=secret)


# --- answers in the notebook ----------------------------------------------------------

_RECORDED: dict[str, Any] = {}


def parse_response(q: Question, value: Any, *, key: bool = False) -> Any:
    """A recorded answer in the form :func:`judge` compares.

    Returns ``None`` for "not answered", an ``int`` choice index (single),
    a ``frozenset`` of indices (multiple) or a ``float`` (numeric).

    Raises
    ------
    ValueError
        If the value has the wrong form for the question (with what was expected).
    """
    if value is None:
        return None
    n = len(q.choices)
    if q.kind == "numeric":
        if isinstance(value, bool):
            raise ValueError(f"{q.id}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{q.id}: expected a number, got {value!r}") from None

    def one(v: Any) -> int:
        if isinstance(v, str) and len(v.strip().strip("()").strip()) == 1:
            i = _LETTERS.find(v.strip().strip("()").strip().lower())
            if 0 <= i < n:
                return i
        if key and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n:
            return v
        raise ValueError(f"{q.id}: expected a letter from a to {_LETTERS[n - 1]}, got {v!r}")

    if q.kind == "single":
        return one(value)
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,;]+", value.strip()) if p]
        if len(parts) == 1 and len(parts[0]) > 1 and parts[0].isalpha():
            parts = list(parts[0])
        value = parts
    try:
        return frozenset(one(v) for v in value)
    except TypeError:
        raise ValueError(f"{q.id}: expected letters such as 'ac' or ['a', 'c'], got {value!r}") from None


def _letters(idx: Iterable[int]) -> str:
    return ", ".join(f"({_LETTERS[i]})" for i in sorted(idx))


def judge(q: Question, response: Any, key: Any = None) -> tuple[bool, str]:
    """Is ``response`` (from :func:`parse_response`) right? Returns ``(correct, message)``.

    With ``key`` (parsed the same way) the key replaces the question's own answer.
    """
    if response is None:
        return False, "not answered"
    if key is None:
        if q.kind == "single":
            fb = q.grade(int(response))
        elif q.kind == "multiple":
            fb = q.grade(sorted(response))
        else:
            fb = q.grade(float(response))
        return fb.correct, fb.message.strip()
    if q.kind == "numeric":
        if not math.isfinite(response):
            return False, "not a finite number"
        ok = abs(response - key) <= q.tolerance + q.rtol * abs(key)
        return ok, ("matches the value your run produced" if ok else f"your run produced {key:g}; you answered {response:g}")
    want = {key} if q.kind == "single" else set(key)
    got = {response} if q.kind == "single" else set(response)
    ok = got == want
    return ok, ("matches what your run produced" if ok else f"your run gives {_letters(want) or 'none'}; you answered {_letters(got) or 'none'}")


def answer(qid: str, value: Any) -> None:
    """Record the answer to question ``qid`` in a graded assignment (no feedback is given).

    Parameters
    ----------
    qid : str
        The question's id, as printed above the answer cell.
    value
        ``None`` (not answered yet), a letter ``"b"`` (one choice), letters
        ``"ac"`` or ``["a", "c"]`` (several choices), or a number.

    The grader reads the value written in the cell; this call only checks
    its form and says what was recorded.
    """
    try:
        q = question(qid)
    except KeyError:
        q = None
    text = f"{qid}: "
    if value is None:
        text += "not answered yet"
    elif q is not None:
        try:
            r = parse_response(q, value)
        except ValueError as err:
            text += f"NOT recorded: {err}"
        else:
            text += "recorded " + (f"{r:g}" if q.kind == "numeric" else _letters([r] if q.kind == "single" else r))
            _RECORDED[qid] = value
    else:
        text += f"recorded {value!r}"
        _RECORDED[qid] = value
    print(text)


def expect(qid: str, key: Any = None, question_def: dict | None = None, order: Sequence[int] | None = None,
           recorded: dict | None = None) -> None:
    """nbgrader hidden test: raise ``AssertionError`` unless the recorded answer to ``qid`` is right.

    ``key`` is the right answer computed from the student's run, for
    run-dependent questions; ``question_def`` defines a question that is not
    in the bank (as in an assignment file's ``[[run_question]]``).
    """
    recorded = _RECORDED if recorded is None else recorded
    if qid not in recorded:
        raise AssertionError(f"{qid}: no answer recorded; run the cell answer({qid!r}, ...)")
    if question_def is not None:
        q = run_question_from_raw(question_def, key="None").question
    elif qid in load_bank():
        q = question(qid)
        if order is not None:
            if sorted(order) != list(range(len(q.choices))):
                raise AssertionError(f"{qid}: the choice order {order!r} does not fit the question")
            q = dataclasses.replace(q, choices=tuple(q.choices[i] for i in order))
    else:
        raise AssertionError(f"{qid}: not a question of the installed losslab")
    ok, msg = judge(q, parse_response(q, recorded[qid]), None if key is None else parse_response(q, key, key=True))
    assert ok, f"{qid}: {msg}"


def require(exercise_id: str, candidate: Any, seed: int | None = None) -> None:
    """nbgrader hidden test: raise ``AssertionError`` unless ``candidate`` passes every check.

    With ``seed`` (written into the hidden test cell, so students never see
    it), each check's hidden twin also runs: its calls repeated on inputs
    drawn from the seed, compared with the reference solution's outputs.
    """
    # Names bound when this module was loaded: a hidden test loads a fresh copy, whose names are fresh too.
    ex = exercise(exercise_id)
    if not callable(candidate):
        raise AssertionError(f"{exercise_id}: expected the function {ex.entry}, got {type(candidate).__name__}")
    ref = ex.reference()

    class Recorder:
        def __init__(self) -> None:
            self.calls: list = []

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            before = (_clone(args), _clone(kwargs))
            out = candidate(*args, **kwargs)
            self.calls.append((*before, _clone(out)))
            return out

    rec = Recorder()
    outcomes: list[CheckOutcome] = []
    visible = []
    for c in ex.checks:
        rec.calls = []
        outcomes.append(Exercise.run_check(c, rec, ref))
        visible.append((c, rec.calls))
    if seed is not None:
        import random  # noqa: PLC0415

        rng = random.Random(seed)
        for c, calls in visible:
            twin = _hidden_twin(c, calls, rec, ref, rng)
            if twin is not None:
                outcomes.append(twin)
    report = Report(ex.id, tuple(outcomes))
    assert report.ok, report.to_text()


# --- notebooks --------------------------------------------------------------------------

_SETUP = "import losslab\nimport losslab.assign\nfrom losslab.assign import answer"

# The start of every nbgrader hidden test: the checker is loaded afresh from the installed files, as new
# module objects, so a student's cell that patched losslab.assign, losslab.questions, losslab.exercises
# or losslab.grade (expect = lambda *a, **k: None) does not change what the hidden test runs.
_FRESH = """import importlib.util as _u, sys as _s
_A_recorded = dict(_s.modules["losslab.assign"]._RECORDED)
_saved = {}
def _fresh(n):
    _saved.setdefault(n, _s.modules.get(n))
    _spec = _u.find_spec(n)
    _m = _u.module_from_spec(_spec)
    _s.modules[n] = _m
    _spec.loader.exec_module(_m)
    return _m
try:
    _fresh("losslab.questions")
    for _p in _fresh("losslab.exercises").EXERCISE_MODULES:
        _fresh("losslab.exercises." + _p)
    _fresh("losslab.grade")
    _A = _fresh("losslab.assign")
finally:
    for _n, _m in _saved.items():
        if _m is None:
            _s.modules.pop(_n, None)
        else:
            _s.modules[_n] = _m
"""


def _meta(**kw: Any) -> dict:
    return {"losslab": kw}


def _question_md(q: Question, number: int, points: float, run: bool) -> str:
    lines = [f"**Question {number}** `{q.id}` ({points:g} point{'s' if points != 1 else ''})", "", q.prompt.strip(), ""]
    for i, c in enumerate(q.choices):
        lines.append(f"- ({_LETTERS[i]}) {c.text.strip()}")
    how = {"single": 'one letter, for example `"b"`', "multiple": 'every right letter, for example `"ac"`',
           "numeric": "a number"}[q.kind]
    lines += ["", f"*Answer with {how} in the cell below.*" + (" *The right answer depends on your own run above.*" if run else "")]
    return "\n".join(lines)


def _key_source(q: Question) -> str:
    if q.kind == "numeric":
        return repr(q.answer)
    if q.kind == "single":
        return repr(_LETTERS[q.correct_indices[0]])
    return repr("".join(_LETTERS[i] for i in q.correct_indices))


def _explanation_md(q: Question) -> str:
    worked = f"\n\n**Worked solution.** {q.solution.strip()}" if q.solution.strip() else ""
    return f"**Answer key** `{q.id}`: {q.explanation.strip()}{worked}"


def _items_by_id(a: Assignment) -> dict[str, Item]:
    return {it.id: it for it in a.items}


def _cells(a: Assignment, role: str, student: str = "") -> list:
    """The notebook's cells for ``role`` in {"student", "instructor", "nbgrader"}."""
    v4 = nbformat.v4
    cells = [v4.new_markdown_cell(
        f"# {a.title}\n\n"
        "Answer each question by editing its answer cell, for example `answer(\"demo.gradient-sign\", \"b\")`, "
        "and complete each function where it says `# YOUR CODE HERE`. Keep a function and the imports it needs "
        "in its own cell, keep its name, and keep the ids in the answer cells: the grader reads them. "
        "The check cells show how you are doing; when the assignment is graded, every check is also run on "
        "inputs drawn at grading time that this notebook does not show. "
        "Run the whole notebook before you hand it in.")]
    setup = v4.new_code_cell(_SETUP, metadata=_meta(role="setup"))
    if role == "nbgrader":
        setup.metadata["nbgrader"] = _nbg(False, False, True, "setup")
    cells.append(setup)
    numbers = {it.id: k + 1 for k, it in enumerate(a.items)}

    def block(it: Item) -> list:
        out = []
        n = numbers[it.id]
        if it.is_question:
            q = shown_question(it, a.secret, student)
            rq = it.run_question
            if rq is not None and rq.run:
                c = v4.new_code_cell(rq.run.strip("\n"), metadata=_meta(role="run", id=it.id))
                if role == "nbgrader":
                    c.metadata["nbgrader"] = _nbg(False, False, False, f"{_gid(it.id)}-run")
                out.append(c)
            out.append(v4.new_markdown_cell(_question_md(q, n, it.points, rq is not None)))
            if role == "student":
                src = f"answer({it.id!r}, None)"
            else:
                key = rq.key if rq is not None else _key_source(q)
                src = f"answer({it.id!r}, {key})"
            if role == "nbgrader":
                src = f"# answer({it.id!r}, ...)\n### BEGIN SOLUTION\n{src}\n### END SOLUTION"
            c = v4.new_code_cell(src, metadata=_meta(answer=it.id))
            if role == "nbgrader":
                c.metadata["nbgrader"] = _nbg(False, True, False, f"{_gid(it.id)}-answer")
            out.append(c)
            if role == "instructor":
                out.append(v4.new_markdown_cell(_explanation_md(q)))
            if role == "nbgrader":
                keyarg = f", {rq.key}" if rq is not None else ""
                if rq is None and q.choices:
                    base = it.question()
                    keyarg += f", order={[base.choices.index(c) for c in q.choices]!r}"
                if rq is None and it.question().params:
                    keyarg += f", {q.answer!r}"  # this notebook's drawn numbers give this answer
                if rq is not None and it.id not in load_bank():
                    keyarg += f", question_def={_question_to_raw(q)!r}"
                t = v4.new_code_cell(
                    f"# Your answer is checked when the assignment is graded.\n### BEGIN HIDDEN TESTS\n"
                    f"{_FRESH}_A.expect({it.id!r}{keyarg}, recorded=_A_recorded)\n### END HIDDEN TESTS",
                    metadata=_meta(test=it.id))
                t.metadata["nbgrader"] = _nbg(True, False, True, f"{_gid(it.id)}-test", it.points)
                out.append(t)
        else:
            ex = it.exercise()
            out.append(v4.new_markdown_cell(f"**Exercise {n}** `{ex.id}`: {ex.title} ({it.points:g} point{'s' if it.points != 1 else ''})\n\n{ex.prompt.strip()}"))
            src = {"student": ex.stub, "instructor": ex.solution, "nbgrader": _nbgrader_solution(ex)}[role]
            c = v4.new_code_cell(src, metadata=_meta(answer=ex.id))
            if role == "nbgrader":
                c.metadata["nbgrader"] = _nbg(False, True, False, f"{_gid(ex.id)}-answer")
            out.append(c)
            check = f"losslab.check({ex.id!r}, {ex.entry})"
            if role == "nbgrader":
                seed = int.from_bytes(hashlib.sha256(f"{a.secret}\0nbgrader\0{ex.id}".encode()).digest()[:6], "big")
                check += (f"\n### BEGIN HIDDEN TESTS\n{_FRESH}"
                          f"_A.require({ex.id!r}, {ex.entry}, seed={seed})\n### END HIDDEN TESTS")
            c = v4.new_code_cell(check, metadata=_meta(check=ex.id))
            if role == "nbgrader":
                c.metadata["nbgrader"] = _nbg(True, False, True, f"{_gid(ex.id)}-test", it.points)
            out.append(c)
        return out

    placed: set[str] = set()
    if a.notebook is not None and a.context:
        page = nbformat.read(str(a.notebook), as_version=4)
        bib = _bibliography(Path(a.notebook).parent)
        by_id = _items_by_id(a)
        anchors = _run_anchors(page, [it for it in a.items if it.run_question is not None and not it.run_question.run])
        first_code = True
        for k, cell in enumerate(page.cells):
            if cell.cell_type != "code":
                if cell.cell_type == "markdown":
                    text = for_students(cell.source, bib)
                    if text.strip():
                        cells.append(v4.new_markdown_cell(text))
                else:
                    cells.append(v4.new_raw_cell(cell.source))
                continue
            if first_code and "losslab.setup(" in cell.source:
                first_code = False
                cells[1].source = cell.source + "\n" + _SETUP.replace("import losslab\n", "", 1)
                continue
            first_code = False
            tree = _parse(cell.source)
            calls = _call_ids(tree, ("quiz", "check", "show_solution")) if tree is not None else []
            fnames = {f for f, _ in calls}
            if "show_solution" in fnames:
                continue  # never in an assignment
            if "quiz" in fnames or "check" in fnames:
                for _, args in calls:
                    for i in args:
                        if i in by_id and i not in placed:
                            cells.extend(block(by_id[i]))
                            placed.add(i)
                continue  # an unselected quiz is left out: its output would show answers
            if _is_stub_of_selected(cell.source, by_id):
                continue  # the exercise block brings the stub
            cells.append(v4.new_code_cell(cell.source))
            for qid, at in anchors.items():
                if at == k and qid not in placed:  # a run-dependent question right after the cell it asks about
                    cells.extend(block(by_id[qid]))
                    placed.add(qid)
    elif a.notebook is not None:
        figures = _figure_cells(nbformat.read(str(a.notebook), as_version=4),
                                [it.exercise() for it in a.items if not it.is_question])
        if figures:
            cells[1].source += "\n" + "\n".join(figures.pop("__imports__", []))
        for it in a.items:
            for src in figures.get(it.id, []):
                cells.extend([v4.new_code_cell(src, metadata=_meta(role="figure", id=it.id))])
            cells.extend(block(it))
            placed.add(it.id)
    for it in a.items:
        if it.id not in placed:
            cells.extend(block(it))
    return cells


def _names_defined(src: str) -> set[str]:
    tree = _parse(src)
    names: set[str] = set()
    if tree is None:
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((al.asname or al.name).split(".")[0] for al in node.names)
    return names


def _run_anchors(page: Any, items: list[Item]) -> dict[str, int]:
    """For each run-dependent question, the index of the page cell it follows: the one its ``after``
    text names, else the last code cell that defines a name its key reads ("the cell above")."""
    anchors = {}
    for it in items:
        rq = it.run_question
        reads = {n.id for n in ast.walk(ast.parse(rq.key, mode="eval")) if isinstance(n, ast.Name)}
        best = None
        for k, cell in enumerate(page.cells):
            if cell.cell_type != "code":
                continue
            if rq.after:
                if rq.after in cell.source:
                    best = k
            elif reads & _names_defined(cell.source):
                best = k
        if best is not None:
            anchors[it.id] = best
    return anchors


def _figure_cells(page: Any, exercises: list[Exercise]) -> dict[str, list[str]]:
    """The page's figure cells just above each exercise (a figure the task asks students to read),
    and the page's import lines they need (``"__imports__"``)."""
    out: dict[str, list[str]] = {}
    code = [(k, c) for k, c in enumerate(page.cells) if c.cell_type == "code"]
    for ex in exercises:
        at = next((k for k, c in code if c.source.strip() == ex.stub.strip()
                   or f"check({ex.id!r}" in c.source or f'check("{ex.id}"' in c.source), None)
        if at is None:
            continue
        found = []
        for k in range(at - 1, -1, -1):
            c = page.cells[k]
            if c.cell_type == "markdown":
                break
            if c.cell_type == "code" and re.search(r"plots\.show\(|plt\.show\(|\.savefig\(|display\(fig", c.source):
                found.insert(0, c.source)
        if found:
            out[ex.id] = found
    if out:
        imports = []
        for k, c in code[1:]:  # the setup cell is already there
            for line in c.source.splitlines():
                if re.match(r"^(import |from \S+ import )", line) and line not in imports:
                    imports.append(line)
        out["__imports__"] = imports
    return out


_BOOK_ONLY = re.compile(
    r"[^.!?\n]*(feedback appears at once|static (web )?(page|book)|Show (a solution|answer)|read its feedback)[^.!?\n]*[.!?]?[ \t]*",
    re.IGNORECASE)


def for_students(md: str, bib: dict[str, str] | None = None) -> str:
    """A book page's markdown as an assignment shows it: MyST roles resolved or dropped, book-only sentences out.

    ``{glue:text}`x:.3f``` (a number the build fills in) becomes *(computed above)*;
    citations become "(Author, year)" from ``bib`` or are dropped; ``{doc}``, ``{ref}``
    and other roles keep their text; a ``{footbibliography}`` block goes; sentences that
    only make sense in the book ("feedback appears at once") go.
    """
    bib = bib or {}
    md = re.sub(r"```\{footbibliography\}[^`]*```\n?", "", md)
    md = re.sub(r"\{glue(:text|:md)?\}`[^`]+`", "*(computed above)*", md)

    def cite(m: re.Match) -> str:
        keys = [k.strip() for k in m.group(2).split(",")]
        names = [bib[k] for k in keys if k in bib]
        if not names:
            return ""
        if m.group(1) in (":t", ":ts"):
            return m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip())] + "; ".join(n.replace(", ", " (", 1) + ")" for n in names)
        return " (" + "; ".join(names) + ")"

    md = re.sub(r"\s?\{(?:foot)?cite(:t|:p|:ps|:ts)?\}`([^`]+)`", cite, md)
    md = re.sub(r"\{(?:doc|ref|numref|term|download)\}`([^`<]+?)\s*<[^`]+>`", r"\1", md)
    md = re.sub(r"\{math\}`([^`]+)`", r"$\1$", md)
    md = re.sub(r"\{[a-z:]+\}`([^`]+)`", r"\1", md)
    md = _BOOK_ONLY.sub("", md)
    return re.sub(r"\n{3,}", "\n\n", md)


def _bibliography(folder: Path) -> dict[str, str]:
    """``key -> "Surname, year"`` (or "Surname et al., year") from ``references.bib`` beside the page."""
    path = folder / "references.bib"
    if not path.exists():
        return {}
    out = {}
    for m in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", path.read_text(encoding="utf-8"), re.S):
        body = m.group(2)
        author = re.search(r"author\s*=\s*[{\"](.+?)[}\"],?\s*\n", body, re.S)
        year = re.search(r"year\s*=\s*[{\"]?(\d{4})", body)
        if not author or not year:
            continue
        people = [p.strip() for p in re.sub(r"[{}]", "", author.group(1)).split(" and ")]
        first = people[0].split(",")[0].strip() if "," in people[0] else people[0].split()[-1]
        out[m.group(1)] = f"{first}{' et al.' if len(people) > 2 else (' and ' + (people[1].split(',')[0].strip() if ',' in people[1] else people[1].split()[-1]) if len(people) == 2 else '')}, {year.group(1)}"
    return out


def _is_stub_of_selected(src: str, by_id: dict[str, Item]) -> bool:
    for it in by_id.values():
        if not it.is_question and src.strip() == it.exercise().stub.strip():
            return True
    return False


def _gid(i: str) -> str:
    return i.replace(".", "_")


def _nbg(grade: bool, solution: bool, locked: bool, grade_id: str, points: float | None = None) -> dict:
    m: dict[str, Any] = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id, "schema_version": 3}
    if grade:
        m["points"] = points
    return m


def _nbgrader_solution(ex: Exercise) -> str:
    """The solution with ``### BEGIN/END SOLUTION`` around what the stub leaves out.

    When the stub is the solution with its middle replaced by ``# YOUR CODE
    HERE`` / ``raise NotImplementedError()``, only that middle is marked, so
    nbgrader's release version is exactly the stub; otherwise the whole
    cell is marked.
    """
    stub, sol = ex.stub.splitlines(), ex.solution.splitlines()
    for k, line in enumerate(stub):
        if line.strip() == "# YOUR CODE HERE" and k + 1 < len(stub) and stub[k + 1].strip() == "raise NotImplementedError()":
            head, tail = stub[:k], stub[k + 2:]
            indent = line[: len(line) - len(line.lstrip())]
            if sol[: len(head)] == head and (not tail or sol[-len(tail):] == tail) and len(sol) > len(head) + len(tail):
                middle = sol[len(head): len(sol) - len(tail)]
                return "\n".join(head + [indent + "### BEGIN SOLUTION"] + middle + [indent + "### END SOLUTION"] + tail)
            break
    return "### BEGIN SOLUTION\n" + ex.solution + "\n### END SOLUTION"


def _notebook(cells: list) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for k, c in enumerate(nb.cells):
        c["id"] = f"cell-{k}"  # stable ids: the same assignment writes the same file
    return nb


def student_notebook(a: Assignment, student: str = "") -> nbformat.NotebookNode:
    """Questions, stubs and visible checks; no answers, explanations or solutions; no outputs.

    With ``student`` (a name on the roster), the choices are in that
    student's own order; without, in the assignment's common order.
    """
    nb = _notebook(_cells(a, "student", student))
    nb.metadata["losslab"] = {"assignment": a.name, "student": student}
    return nb


def instructor_notebook(a: Assignment) -> nbformat.NotebookNode:
    """The student notebook with the answer key, explanations and reference solutions."""
    return _notebook(_cells(a, "instructor"))


def nbgrader_notebook(a: Assignment) -> nbformat.NotebookNode:
    """A source notebook for ``nbgrader generate_assignment`` (solution and hidden-test markers)."""
    return _notebook(_cells(a, "nbgrader"))


def write_assignment(a: Assignment, out: str | Path) -> dict[str, Path]:
    """Write the student, instructor and nbgrader notebooks and the manifest under ``out``.

    Returns
    -------
    dict
        ``{"student", "instructor", "manifest", "nbgrader"}`` -> path.
    """
    out = Path(out)
    old = out / "instructor" / f"{a.name}.assignment.json"
    if old.exists():  # building again keeps the secret: handed-out notebooks keep their choice order
        try:
            a.secret = json.loads(old.read_text(encoding="utf-8")).get("secret") or a.secret
        except ValueError:
            pass
    paths = {
        "student": out / "student" / f"{a.name}.ipynb",
        "instructor": out / "instructor" / f"{a.name}.ipynb",
        "manifest": out / "instructor" / f"{a.name}.assignment.json",
        "nbgrader": out / "nbgrader" / "source" / a.name / f"{a.name}.ipynb",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    for role, make in (("student", student_notebook), ("instructor", instructor_notebook), ("nbgrader", nbgrader_notebook)):
        nb = make(a)
        nbformat.validate(nb)
        nbformat.write(nb, str(paths[role]))
    for student in a.students:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", student).strip("._") or "student"
        path = out / "student" / a.name / f"{safe}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_notebook(a, student), str(path))
        paths[f"student:{student}"] = path
    paths["manifest"].write_text(json.dumps(a.manifest(), indent=1) + "\n", encoding="utf-8")
    os.chmod(paths["manifest"], 0o600)  # it holds the assignment's secret
    return paths


def assignment_from_manifest(manifest: dict) -> list[Item]:
    """The items of a manifest, with run-dependent questions rebuilt."""
    if manifest.get("format") not in (1, MANIFEST_FORMAT):
        raise ValueError(f"manifest: expected format 1 or {MANIFEST_FORMAT}, got {manifest.get('format')!r}")
    items = []
    for row in manifest["items"]:
        rq = None
        if "run" in row:
            raw = copy.deepcopy(row["run"]["question"])
            if row["id"] in load_bank():
                raw = {"id": row["id"]}
            rq = run_question_from_raw(raw, row["run"]["key"])
        items.append(Item(row["id"], float(row["points"]), rq))
    return items

