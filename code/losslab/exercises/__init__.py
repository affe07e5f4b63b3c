"""Coding exercises with automatic checks.

An exercise is a stub the reader fills in and a set of checks run against
the reader's function. Each lives in ``losslab/exercises/<prefix>.py`` under
a stable id ``<prefix>.<name>`` and holds, as data:

- ``stub``: the source the reader starts from (shown verbatim in the chapter;
  assignments hand it out). The part to write is marked the way nbgrader
  marks it: ``# YOUR CODE HERE`` then ``raise NotImplementedError()``.
- ``solution``: a reference solution (instructor notebooks, the book's
  "Show solution", and the tests that prove each check accepts it).
- ``wrong``: known-wrong versions that some check must reject (tested).
- ``checks``: small functions ``check(f, ref)`` that raise ``AssertionError``
  with a message when the candidate ``f`` is wrong; ``ref`` is the compiled
  reference solution.

In a chapter::

    check("demo.relu", relu)

shows what passed, what failed and a hint. It never raises because of the
reader's code, so the book executes with every stub unfilled.

Writing an exercise::

    relu = Exercise(id="demo.relu", title="ReLU", entry="relu", prompt="...",
                    stub=STUB, solution=SOLUTION, wrong=(WRONG1, WRONG2))

    @relu.check("keeps positive inputs", hint="max(x, 0) is x when x > 0.")
    def _(f, ref):
        x = torch.tensor([0.5, 3.0])
        assert torch.equal(f(x), x), f"relu({x.tolist()}) gave {f(x).tolist()}"
"""

from __future__ import annotations

import html
import importlib
import os
import pkgutil
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import _markdown

__all__ = ["Exercise", "CheckOutcome", "Report", "check", "show_solution", "exercise", "all_exercises", "EXERCISE_MODULES"]

_ID = re.compile(r"^[a-z][a-z0-9]*\.[a-z0-9][a-z0-9-]*$")
_REGISTRY: dict[str, "Exercise"] = {}



def _exercise_modules() -> tuple[str, ...]:
    """Modules of this package that define exercises: one per chapter prefix, found on disk."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


EXERCISE_MODULES = _exercise_modules()


@dataclass(frozen=True)
class _Check:
    name: str
    fn: Callable[[Callable, Callable], None]
    hint: str


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: ``status`` is ``"pass"``, ``"fail"`` or ``"todo"`` (not implemented yet)."""

    name: str
    status: str
    message: str = ""
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class Report:
    """All checks of one exercise against one candidate."""

    exercise_id: str
    outcomes: tuple[CheckOutcome, ...]

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def attempted(self) -> bool:
        return not any(o.status == "todo" for o in self.outcomes)

    def summary(self) -> str:
        if not self.attempted and self.passed == 0:
            return f"{self.exercise_id}: not attempted yet (the stub still raises NotImplementedError)"
        return f"{self.exercise_id}: {self.passed}/{self.total} checks passed"

    def to_text(self) -> str:
        mark = {"pass": "PASS", "fail": "FAIL", "todo": "TODO"}
        lines = [self.summary()]
        for o in self.outcomes:
            line = f"  [{mark[o.status]}] {o.name}"
            if o.status == "fail":
                line += f": {o.message}"
                if o.hint:
                    line += f"\n         hint: {o.hint}"
            lines.append(line)
        return "\n".join(lines)

    def to_html(self) -> str:
        e = html.escape
        icon = {"pass": "&#10004;", "fail": "&#10008;", "todo": "&#8230;"}
        colour = {"pass": "#006b4f", "fail": "#8a3a00", "todo": "#4a5568"}
        rows = []
        for o in self.outcomes:
            detail = ""
            if o.status == "fail":
                detail = f'<div style="margin-left:1.6em">{e(o.message)}</div>'
                if o.hint:
                    detail += f'<div style="margin-left:1.6em;color:#4a5568"><em>Hint:</em> {_markdown.to_inline_html(o.hint)}</div>'
            rows.append(
                f'<li style="list-style:none;color:{colour[o.status]}"><span aria-hidden="true">{icon[o.status]}</span> '
                f"{e(o.name)}{detail}</li>"
            )
        border = "#009E73" if self.ok else ("#b7c2cf" if not self.attempted else "#D55E00")
        return (
            f'<div class="llx tex2jax_process" data-losslab="exercise" data-id="{e(self.exercise_id)}" '
            f'style="border:1px solid #c8d1dc;border-left:4px solid {border};border-radius:6px;padding:0.5em 0.9em;margin:0.5em 0;background:#fbfcfe;color:#1d2430">'
            f"<strong>{e(self.summary())}</strong><ul style='padding-left:0.2em;margin:0.3em 0'>{''.join(rows)}</ul></div>"
        )


@dataclass
class Exercise:
    """A coding exercise: stub, reference solution, known-wrong versions, checks.

    Parameters
    ----------
    id : str
        Stable id ``<prefix>.<name>``.
    title, prompt : str
        Short title and the task in markdown.
    entry : str
        Name of the function the stub and solution define.
    stub, solution : str
        Python sources; each defines ``entry`` and imports what it needs.
    wrong : tuple of str
        Known-wrong sources; the tests require that some check rejects each.
    """

    id: str
    title: str
    prompt: str
    entry: str
    stub: str
    solution: str
    wrong: tuple[str, ...] = ()
    checks: list[_Check] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"id: expected '<prefix>.<name>' in lowercase, digits and '-', got {self.id!r}")
        if not self.entry.isidentifier():
            raise ValueError(f"entry: expected a function name, got {self.entry!r}")
        for name in ("stub", "solution"):
            src = getattr(self, name)
            if f"def {self.entry}(" not in src:
                raise ValueError(f"{self.id}: {name} must define {self.entry}(...)")
        if "# YOUR CODE HERE" not in self.stub or "raise NotImplementedError()" not in self.stub:
            raise ValueError(f"{self.id}: stub must contain '# YOUR CODE HERE' and 'raise NotImplementedError()'")
        self.stub = self.stub.strip("\n")
        self.solution = self.solution.strip("\n")
        if self.id in _REGISTRY:
            raise ValueError(f"id: exercise {self.id!r} is defined twice")
        _REGISTRY[self.id] = self

    def __repr__(self) -> str:
        return f"Exercise({self.id!r}, checks={len(self.checks)}, wrong={len(self.wrong)})"

    def check(self, name: str, *, hint: str = "") -> Callable:
        """Decorator registering ``fn(f, ref)`` as a check named ``name``."""

        def register(fn: Callable[[Callable, Callable], None]) -> Callable:
            self.checks.append(_Check(name, fn, hint))
            return fn

        return register

    def compile(self, source: str) -> Callable:
        """Execute ``source`` in a fresh namespace and return its ``entry`` function."""
        namespace: dict[str, Any] = {"__name__": f"losslab_exercise_{self.entry}"}
        exec(compile(source, f"<{self.id}>", "exec"), namespace)  # noqa: S102 (the book's own sources)
        fn = namespace.get(self.entry)
        if not callable(fn):
            raise ValueError(f"{self.id}: source does not define a function {self.entry!r}")
        return fn

    def reference(self) -> Callable:
        """The compiled reference solution."""
        return self.compile(self.solution)

    def run(self, candidate: Any) -> Report:
        """Run every check against ``candidate``; never raises because of the candidate."""
        if not self.checks:
            raise RuntimeError(f"{self.id}: has no checks")
        if not callable(candidate):
            msg = f"expected the function {self.entry}, got {type(candidate).__name__}"
            return Report(self.id, tuple(CheckOutcome(c.name, "fail", msg, c.hint) for c in self.checks))
        ref = self.reference()
        outcomes = [self.run_check(c, candidate, ref) for c in self.checks]
        return Report(self.id, tuple(outcomes))

    @staticmethod
    def run_check(c: "_Check", candidate: Callable, ref: Callable) -> CheckOutcome:
        """One check against ``candidate``: pass, fail (with the message) or todo; never raises an ``Exception``."""
        try:
            c.fn(candidate, ref)
        except NotImplementedError:
            return CheckOutcome(c.name, "todo")
        except AssertionError as err:
            return CheckOutcome(c.name, "fail", str(err) or "the result is wrong", c.hint)
        except Exception as err:  # the reader's code raised: report, never propagate
            tb = traceback.extract_tb(err.__traceback__)
            frame = tb[-1] if tb else None
            where = f" (line {frame.lineno})" if frame is not None and frame.filename.startswith("<ipython") else ""
            return CheckOutcome(c.name, "fail", f"raised {type(err).__name__}: {err}{where}", c.hint)
        return CheckOutcome(c.name, "pass")


def _load(prefix: str) -> None:
    if prefix in EXERCISE_MODULES:
        importlib.import_module(f"{__name__}.{prefix}")


def exercise(exercise_id: str) -> Exercise:
    """The exercise with id ``exercise_id`` (importing its chapter's module on first use)."""
    if not isinstance(exercise_id, str):
        raise TypeError(f"exercise_id: expected a string like 'loss.mse', got {type(exercise_id).__name__}")
    _load(exercise_id.split(".", 1)[0])
    if exercise_id not in _REGISTRY:
        import difflib  # noqa: PLC0415

        for prefix in EXERCISE_MODULES:
            _load(prefix)
        close = difflib.get_close_matches(exercise_id, _REGISTRY, n=3)
        raise KeyError(f"exercise_id: no exercise {exercise_id!r}" + (f"; did you mean {close}?" if close else ""))
    return _REGISTRY[exercise_id]


def all_exercises() -> dict[str, Exercise]:
    """Every exercise in the package, by id."""
    for prefix in EXERCISE_MODULES:
        _load(prefix)
    return dict(_REGISTRY)


def check(exercise_id: str, candidate: Any) -> None:
    """Check the reader's ``candidate`` against exercise ``exercise_id`` and show the result.

    Shows each check as passed, failed (with the message and a hint) or not
    attempted. Never raises because of ``candidate``; an unknown id is a
    ``KeyError`` naming the closest ids.
    """
    report = exercise(exercise_id).run(candidate)
    from IPython.display import display  # noqa: PLC0415

    display(
        {"text/html": report.to_html(), "text/plain": report.to_text()},
        raw=True,
        metadata={"losslab": {"kind": "exercise", "id": exercise_id, "passed": report.passed, "total": report.total}},
    )


def _bank_question_with_solution(item_id: str):
    """The bank question ``item_id`` if it is one (it must then carry a worked ``solution``), else None."""
    from ..questions import load_bank  # noqa: PLC0415

    if not isinstance(item_id, str):
        raise TypeError(f"exercise_id: expected a string like 'loss.mse', got {type(item_id).__name__}")
    q = load_bank().get(item_id)
    if q is not None and not q.solution.strip():
        raise ValueError(f"exercise_id: bank question {item_id!r} has no worked `solution` to show")
    return None if q is None else q.instance()  # the book's variant: the numbers its quiz shows


def show_solution(exercise_id: str) -> None:
    """Show the reference solution folded away, for readers who want to compare.

    ``exercise_id`` names an exercise (its solution code is shown) or a bank
    question with a worked ``solution`` (a Problem's derivation, shown as text).

    An instructor's build leaves every solution out with ``LOSSLAB_SOLUTIONS=0``
    in the environment of the build (``LOSSLAB_SOLUTIONS=0 make book``).
    """
    from IPython.display import display  # noqa: PLC0415

    question = _bank_question_with_solution(exercise_id)
    ex = exercise(exercise_id) if question is None else None
    if os.environ.get("LOSSLAB_SOLUTIONS", "1").strip().lower() in ("0", "false", "no", "off"):
        display(
            {"text/plain": f"(the solution to {exercise_id} is left out of this edition)"},
            raw=True,
            metadata={"losslab": {"kind": "solution", "id": exercise_id, "omitted": True}},
        )
        return
    if question is not None:
        display(
            {
                "text/html": '<details class="llx-solution"><summary>Show a worked solution</summary>'
                f'<div class="llx-worked">{_markdown.to_html(question.solution)}</div></details>',
                "text/plain": f"(worked solution to {exercise_id} hidden; open it in the HTML view)",
            },
            raw=True,
            metadata={"losslab": {"kind": "solution", "id": exercise_id}},
        )
        return

    code = html.escape(ex.solution)
    display(
        {
            "text/html": f'<details class="llx-solution"><summary>Show a solution to <em>{html.escape(ex.title)}</em></summary>'
            f'<pre style="padding:0.5em;background:#f6f8fa;border-radius:4px;overflow-x:auto"><code>{code}</code></pre></details>',
            "text/plain": f"(solution to {ex.id} hidden; open it in the HTML view)",
        },
        raw=True,
        metadata={"losslab": {"kind": "solution", "id": exercise_id}},
    )
