"""Self-check questions: one bank of data serving the book, assignments and grading.

Every question lives in ``losslab/bank/<prefix>.toml`` under a stable id
``<prefix>.<name>`` (for example ``loss.mse-outliers``), where ``<prefix>`` is
the chapter's short name. A chapter shows questions with :func:`quiz`; an
instructor's tools select them by id, chapter or tag and grade answers with
:meth:`Question.grade`.

Three kinds of question:

``single``
    one correct choice; each wrong choice says why it is wrong.
``multiple``
    any non-empty set of correct choices; the answer is the exact set.
``numeric``
    a number, correct within ``tolerance + rtol * |answer|``.

Authors write the choices in any order (the correct one may come first):
every view shows them in a seeded shuffled order (:func:`choice_order`),
seeded by the question id in the book, and by the assignment's secret and
the student in graded work.

The output is self-contained HTML (markup, style and a small script) that
gives feedback when clicked in live Jupyter, in Colab, and in the static
book with no kernel. All feedback text is in the markup from the start, so
MathJax typesets it with the rest of the page; the script only shows and
hides it. The text/plain form never contains an answer.

File format (TOML)::

    [[question]]
    id = "demo.gradient-sign"
    kind = "single"
    tags = ["gradient"]
    prompt = '''Markdown with $math$.'''
    explanation = '''Why the right answer is right.'''
    choices = [
      { text = "...", correct = true },
      { text = "...", feedback = "Why this is wrong." },
    ]

    [[question]]
    id = "demo.sigmoid-slope"
    kind = "numeric"
    prompt = '''...'''
    answer = 0.25
    tolerance = 0.005
    hint = '''Shown after a wrong answer.'''
    explanation = '''...'''
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable, Literal, Sequence

from . import _markdown

__all__ = [
    "Choice",
    "Question",
    "Feedback",
    "quiz",
    "question",
    "questions",
    "load_bank",
    "render_html",
    "render_text",
    "ID_PATTERN",
    "choice_order",
]

ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*\.[a-z0-9][a-z0-9-]*$")
Kind = Literal["single", "multiple", "numeric"]
_KINDS = ("single", "multiple", "numeric")


@dataclass(frozen=True)
class Choice:
    """One answer option: its markdown text, whether it is correct, and why."""

    text: str
    correct: bool = False
    feedback: str = ""


@dataclass(frozen=True)
class Feedback:
    """The verdict on one response."""

    correct: bool
    message: str


@dataclass(frozen=True)
class Question:
    """A self-check question. Build from the bank (:func:`question`), not by hand.

    Attributes
    ----------
    id : str
        Stable id ``<prefix>.<name>``; never reuse or rename one that was published.
    kind : {"single", "multiple", "numeric"}
    prompt, explanation : str
        Markdown with ``$math$``. The explanation is shown once answered correctly.
    choices : tuple of Choice
        For ``single`` and ``multiple``.
    answer, tolerance, rtol : float
        For ``numeric``: correct when ``|x - answer| <= tolerance + rtol * |answer|``.
    hint : str
        Shown after a wrong numeric answer.
    solution : str
        Optional worked solution (markdown), for the chapters' Problems:
        shown folded away by :func:`losslab.show_solution` and left out of an
        edition built with ``LOSSLAB_SOLUTIONS=0``.
    tags : tuple of str
        Topics, for selecting questions into assignments.
    """

    id: str
    kind: Kind
    prompt: str
    explanation: str
    choices: tuple[Choice, ...] = ()
    answer: float | None = None
    tolerance: float = 0.0
    rtol: float = 0.0
    hint: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    solution: str = ""
    params: tuple[tuple[str, tuple[float, ...]], ...] = ()
    answer_expr: str = ""

    def __post_init__(self) -> None:
        where = f"question {self.id!r}"
        if self.params:
            if self.kind != "numeric":
                raise ValueError(f"{where}: only numeric questions take drawn params")
            for name, values in self.params:
                if not name.isidentifier() or name in _FUNCTIONS or name == "answer":
                    raise ValueError(f"{where}: param name {name!r} must be a new identifier")
                if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                    raise ValueError(f"{where}: param {name!r} needs a non-empty list of finite numbers, got {values!r}")
            if not self.answer_expr:
                raise ValueError(f"{where}: a question with params needs answer = '<expression in the params>'")
            names = {n for n, _ in self.params}
            for text in (self.prompt, self.explanation, self.hint, self.solution):
                unknown = set(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", text)) - names - {"answer"}
                if unknown:
                    raise ValueError(f"{where}: {{{{...}}}} names unknown params {sorted(unknown)}")
            for k in range(len(self.params) and 20):
                value = _evaluate(self.answer_expr, self._draw(f"check-{k}"), where)
                if not math.isfinite(value):
                    raise ValueError(f"{where}: the answer expression gives {value} for some drawn params")
        if not isinstance(self.id, str) or not ID_PATTERN.match(self.id):
            raise ValueError(f"id: expected '<prefix>.<name>' in lowercase, digits and '-', got {self.id!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"{where}: kind must be one of {_KINDS}, got {self.kind!r}")
        if not self.prompt.strip():
            raise ValueError(f"{where}: prompt is empty")
        if not self.explanation.strip():
            raise ValueError(f"{where}: explanation is empty")
        if self.kind == "numeric":
            if self.choices:
                raise ValueError(f"{where}: a numeric question has no choices")
            if self.params:
                pass
            elif not isinstance(self.answer, (int, float)) or not math.isfinite(self.answer):
                raise ValueError(f"{where}: answer must be a finite number, got {self.answer!r}")
            if self.tolerance < 0 or self.rtol < 0 or (self.tolerance == 0 and self.rtol == 0):
                raise ValueError(
                    f"{where}: give tolerance >= 0 and/or rtol >= 0, not both zero "
                    f"(got tolerance={self.tolerance}, rtol={self.rtol})"
                )
        else:
            if len(self.choices) < 2:
                raise ValueError(f"{where}: a {self.kind} question needs at least 2 choices")
            n_correct = sum(c.correct for c in self.choices)
            if self.kind == "single" and n_correct != 1:
                raise ValueError(f"{where}: a single-choice question needs exactly 1 correct choice, has {n_correct}")
            if self.kind == "multiple" and n_correct < 1:
                raise ValueError(f"{where}: a multiple-choice question needs at least 1 correct choice")
            texts = [c.text.strip() for c in self.choices]
            if len(set(texts)) != len(texts):
                raise ValueError(f"{where}: two choices have the same text")
            if self.answer is not None:
                raise ValueError(f"{where}: only numeric questions have an answer value")

    @property
    def prefix(self) -> str:
        """The chapter prefix of the id (``loss`` in ``loss.mse-outliers``)."""
        return self.id.split(".", 1)[0]

    @property
    def correct_indices(self) -> tuple[int, ...]:
        """Indices of the correct choices (empty for numeric questions)."""
        return tuple(i for i, c in enumerate(self.choices) if c.correct)

    def _draw(self, seed: str) -> dict[str, float]:
        rng = random.Random(int.from_bytes(hashlib.sha256(f"losslab-params:{seed}".encode()).digest()[:8], "big"))
        return {name: values[rng.randrange(len(values))] for name, values in self.params}

    def instance(self, seed: str | None = None) -> "Question":
        """The question as one reader or student sees it: drawn params filled in, choices shuffled.

        ``seed`` picks the variant (the question id by default: the book's
        variant, the same in every build). A question without params only
        has its choices shuffled (:meth:`shuffled`).
        """
        seed = self.id if seed is None else seed
        if not self.params:
            return self.shuffled(seed)
        import dataclasses  # noqa: PLC0415

        values = self._draw(seed)
        answer = _evaluate(self.answer_expr, values, f"question {self.id!r}")
        fill = {**values, "answer": answer}

        def sub(text: str) -> str:
            return re.sub(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", lambda m: f"{fill[m.group(1)]:.6g}", text)

        return dataclasses.replace(self, prompt=sub(self.prompt), explanation=sub(self.explanation), hint=sub(self.hint),
                                   solution=sub(self.solution),
                                   answer=answer, params=(), answer_expr="")

    def shuffled(self, seed: str | None = None) -> "Question":
        """The same question with its choices in a seeded shuffled order.

        ``seed`` names the order: the book uses the question id (the
        default), so the order is the same in every build, in live Jupyter
        and in Colab; an assignment uses one derived from the assignment's
        secret and the student. Numeric questions come back unchanged.
        """
        if not self.choices:
            return self
        order = choice_order(len(self.choices), self.id if seed is None else seed)
        return _replace_choices(self, tuple(self.choices[i] for i in order))

    def grade(self, response: int | Iterable[int] | float | str) -> Feedback:
        """Judge a response.

        Parameters
        ----------
        response
            ``single``: the index of the chosen choice. ``multiple``: an
            iterable of chosen indices. ``numeric``: a number (or a string
            that parses as one).

        Raises
        ------
        ValueError, TypeError
            If the response has the wrong form (an index out of range, a
            non-number for a numeric question...).
        """
        if self.params:  # graded as the book's variant
            return self.instance().grade(response)
        if self.kind == "numeric":
            try:
                x = float(response)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"response: expected a number for {self.id!r}, got {response!r}") from None
            if not math.isfinite(x):
                return Feedback(False, "Not a finite number.")
            ok = abs(x - self.answer) <= self.tolerance + self.rtol * abs(self.answer)  # type: ignore[operator]
            return Feedback(ok, self.explanation if ok else (self.hint or "Not quite."))
        n = len(self.choices)
        if self.kind == "single":
            if isinstance(response, bool) or not isinstance(response, int):
                raise TypeError(f"response: expected a choice index for {self.id!r}, got {response!r}")
            if not 0 <= response < n:
                raise ValueError(f"response: expected an index in 0..{n - 1} for {self.id!r}, got {response}")
            chosen = self.choices[response]
            return Feedback(chosen.correct, self.explanation if chosen.correct else (chosen.feedback or "Not quite."))
        if isinstance(response, (str, bytes)) or not isinstance(response, Iterable):
            raise TypeError(f"response: expected an iterable of choice indices for {self.id!r}, got {response!r}")
        picked = set()
        for i in response:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"response: expected indices in 0..{n - 1} for {self.id!r}, got {i!r}")
            picked.add(i)
        ok = picked == set(self.correct_indices)
        if ok:
            return Feedback(True, self.explanation)
        wrong = [self.choices[i].feedback for i in sorted(picked - set(self.correct_indices)) if self.choices[i].feedback]
        missed = len(set(self.correct_indices) - picked)
        parts = wrong + ([f"{missed} correct choice(s) not selected."] if missed else [])
        return Feedback(False, " ".join(parts) or "Not quite.")


_FUNCTIONS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "tanh": math.tanh, "cos": math.cos, "sin": math.sin,
              "abs": abs, "min": min, "max": max, "ceil": math.ceil, "floor": math.floor, "pi": math.pi}


def _evaluate(expr: str, values: dict[str, float], where: str) -> float:
    """An answer expression: numbers, the params, + - * / ** and a few math functions; nothing else."""
    import ast  # noqa: PLC0415

    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"{where}: the answer expression {expr!r} is not valid ({err.msg})") from None
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name) and node.id in values:
            return values[node.id]
        if isinstance(node, ast.Name) and node.id == "pi":
            return math.pi
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords:
            return _FUNCTIONS[node.func.id](*[ev(a) for a in node.args])
        raise ValueError(f"{where}: the answer expression may use numbers, the params {sorted(values)}, + - * / ** "
                         f"and {sorted(_FUNCTIONS)}; got {ast.unparse(node)!r}")

    try:
        return float(ev(tree))
    except (ArithmeticError, ValueError, TypeError) as err:
        if str(err).startswith(where):
            raise
        raise ValueError(f"{where}: the answer expression {expr!r} fails for {values}: {err}") from None


def choice_order(n: int, seed: str) -> tuple[int, ...]:
    """A permutation of ``range(n)`` that depends only on the string ``seed``.

    The authored order of a bank question's choices is never shown: every
    place that shows choices shows ``[choices[i] for i in choice_order(n, seed)]``.
    """
    if not isinstance(seed, str):
        raise TypeError(f"seed: expected a string, got {type(seed).__name__}")
    rng = random.Random(int.from_bytes(hashlib.sha256(f"losslab-order:{seed}".encode()).digest()[:8], "big"))
    order = list(range(n))
    rng.shuffle(order)
    return tuple(order)


def _replace_choices(q: Question, choices: tuple[Choice, ...]) -> Question:
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(q, choices=choices)


# --- the bank -------------------------------------------------------------------

def _parse_question(raw: dict, source: str) -> Question:
    known = {"id", "kind", "prompt", "explanation", "choices", "answer", "tolerance", "rtol", "hint", "tags", "params", "solution"}
    unknown = set(raw) - known
    qid = raw.get("id", "<no id>")
    if unknown:
        raise ValueError(f"{source}: question {qid!r} has unknown keys {sorted(unknown)}")
    choices = []
    for c in raw.get("choices", []):
        extra = set(c) - {"text", "correct", "feedback"}
        if extra or "text" not in c:
            raise ValueError(f"{source}: question {qid!r}: each choice needs 'text' (and may have 'correct', 'feedback'), got keys {sorted(c)}")
        choices.append(Choice(text=c["text"], correct=bool(c.get("correct", False)), feedback=c.get("feedback", "")))
    try:
        return Question(
            id=raw.get("id", ""),
            kind=raw.get("kind", ""),
            prompt=raw.get("prompt", ""),
            explanation=raw.get("explanation", ""),
            choices=tuple(choices),
            answer=None if isinstance(raw.get("answer"), str) else raw.get("answer"),
            tolerance=float(raw.get("tolerance", 0.0)),
            rtol=float(raw.get("rtol", 0.0)),
            hint=raw.get("hint", ""),
            tags=tuple(raw.get("tags", ())),
            solution=raw.get("solution", ""),
            params=tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in sorted(raw.get("params", {}).items())),
            answer_expr=raw.get("answer") if isinstance(raw.get("answer"), str) else "",
        )
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def parse_bank(text: str, prefix: str, source: str = "<string>") -> dict[str, Question]:
    """Parse one bank file's TOML text; every id must start with ``prefix + '.'``."""
    data = tomllib.loads(text)
    extra = set(data) - {"question"}
    if extra:
        raise ValueError(f"{source}: unknown top-level keys {sorted(extra)}; expected only [[question]] tables")
    bank: dict[str, Question] = {}
    for raw in data.get("question", []):
        q = _parse_question(raw, source)
        if q.prefix != prefix:
            raise ValueError(f"{source}: question id {q.id!r} must start with '{prefix}.'")
        if q.id in bank:
            raise ValueError(f"{source}: duplicate question id {q.id!r}")
        bank[q.id] = q
    return bank


@lru_cache(maxsize=1)
def load_bank() -> dict[str, Question]:
    """Every question in ``losslab/bank/*.toml``, by id (read once, then cached).

    A chapter's questions may be split over several files: ``<prefix>.toml``
    and ``<prefix>_<anything>.toml`` (for example ``gd_variants.toml``) all
    hold ids ``<prefix>.<name>``; an id defined in two files is an error.
    """
    return load_folder(resources.files("losslab") / "bank")


def load_folder(folder) -> dict[str, Question]:
    """The questions of every ``*.toml`` bank file in ``folder`` (see :func:`load_bank`)."""
    bank: dict[str, Question] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        prefix = entry.name[: -len(".toml")].split("_", 1)[0]
        part = parse_bank(entry.read_text(encoding="utf-8"), prefix, f"bank/{entry.name}")
        twice = sorted(set(part) & set(bank))
        if twice:
            raise ValueError(f"bank/{entry.name}: question ids defined in another bank file too: {twice}")
        bank.update(part)
    return bank


def question(qid: str) -> Question:
    """The question with id ``qid``.

    Raises
    ------
    KeyError
        With the closest known ids, if there is no such question.
    """
    bank = load_bank()
    if qid not in bank:
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(str(qid), bank, n=3)
        raise KeyError(f"qid: no question {qid!r}" + (f"; did you mean {close}?" if close else ""))
    return bank[qid]


def questions(*, prefix: str | None = None, tag: str | None = None) -> list[Question]:
    """Questions filtered by chapter prefix and/or tag, in bank order."""
    return [
        q for q in load_bank().values()
        if (prefix is None or q.prefix == prefix) and (tag is None or tag in q.tags)
    ]


# --- rendering ------------------------------------------------------------------

def _asset(name: str) -> str:
    return (resources.files("losslab") / "assets" / name).read_text(encoding="utf-8")


_TEX_WORDS = {r"\cdot": " times ", r"\times": " times ", r"\le": " <= ", r"\ge": " >= ", r"\approx": " about ",
              r"\sqrt": " square root of ", r"\frac": " fraction ", r"\,": " ", r"\;": " ", r"\!": ""}


def _math_name(text: str) -> str:
    """An ``aria-label`` for a choice that holds math: its words, with the TeX spelled out plainly.

    MathJax's rendering is not a name a screen reader gets from the ``<label>``
    (axe: "label", critical), so a choice like ``\\(10\\,\\eta g\\)`` is named
    "10 eta g". Choices without math keep their label as their name.
    """
    if not re.search(r"\\\(|\\\[|\$", text):
        return ""
    plain = re.sub(r"\\\(|\\\)|\\\[|\\\]|\$", " ", text)
    for tex, word in _TEX_WORDS.items():
        plain = plain.replace(tex, word)
    plain = re.sub(r"\\(?:mathrm|mathbf|text|operatorname|left|right|big|Big)\b", " ", plain)
    plain = re.sub(r"\\([A-Za-z]+)", r" \1 ", plain)  # \eta -> eta
    plain = re.sub(r"[{}]", " ", plain).replace("`", "")
    plain = " ".join(plain.split())
    return f' aria-label="{html.escape(plain, quote=True)}"'


def _question_html(q: Question, number: int | None) -> str:
    e = html.escape
    label = f"Question {number}" if number is not None else "Question"
    kind_note = {"single": "Choose one, then check.", "multiple": "Choose all that apply, then check.", "numeric": "Enter a number, then check."}[q.kind]
    parts = [
        f'<div class="llq-q" data-kind="{q.kind}" data-qid="{e(q.id)}">',
        f'<div class="llq-head"><span class="llq-label">{label}</span> <span class="llq-kind">{kind_note}</span></div>',
        f'<div class="llq-prompt">{_markdown.to_html(q.prompt)}</div>',
    ]
    if q.kind == "numeric":
        parts.append(
            '<div class="llq-numeric"><input type="text" inputmode="decimal" class="llq-input" '
            f'aria-label="{e(label)} answer" data-answer="{q.answer!r}" data-tol="{q.tolerance!r}" data-rtol="{q.rtol!r}">'
            '<button type="button" class="llq-check">Check</button></div>'
        )
        parts.append(f'<div class="llq-fb llq-wrong" hidden><strong>Not quite.</strong> <span class="llq-dir"></span> {_markdown.to_inline_html(q.hint) if q.hint else ""}</div>')
        parts.append('<div class="llq-fb llq-invalid" hidden>Please enter a number (for example 0.25 or 1e-3).</div>')
    else:
        parts.append('<div class="llq-choices">')
        for i, c in enumerate(q.choices):
            control = "radio" if q.kind == "single" else "checkbox"
            parts.append(
                f'<label class="llq-choice" data-i="{i}" data-correct="{int(c.correct)}">'
                f'<input type="{control}" name="CHOICE_GROUP" value="{i}"{_math_name(c.text)}> '
                f'<span class="llq-text">{_markdown.to_inline_html(c.text)}</span>'
                + (f'<span class="llq-fb llq-why" hidden>{_markdown.to_inline_html(c.feedback)}</span>' if c.feedback else "")
                + "</label>"
            )
        parts.append("</div>")
        parts.append('<div><button type="button" class="llq-check">Check</button></div>')
        parts.append('<div class="llq-fb llq-wrong" hidden><strong>Not quite.</strong> <span class="llq-dir"></span></div>')
    parts.append(f'<div class="llq-fb llq-right" hidden><strong>Correct.</strong> {_markdown.to_html(q.explanation)}</div>')
    parts.append('<div class="llq-reveal"><button type="button" class="llq-show">Show answer</button></div>')
    parts.append('<div class="llq-live" role="status" aria-live="polite"></div>')
    parts.append(f'<div class="llq-fb llq-answer" hidden><strong>Answer:</strong> {_answer_text(q)} {_markdown.to_html(q.explanation)}</div>')
    parts.append("</div>")
    return "\n".join(parts)


def _answer_text(q: Question) -> str:
    if q.kind == "numeric":
        tol = q.tolerance + q.rtol * abs(q.answer)  # type: ignore[arg-type]
        return html.escape(f"{q.answer:g} (accepted within ±{tol:.3g}).")
    return "; ".join(_markdown.to_inline_html(q.choices[i].text) for i in q.correct_indices) + "."


def render_html(qs: Sequence[Question], *, start: int = 1, shuffle: bool = True) -> str:
    """Self-contained HTML for a block of questions (markup, style, script).

    Choices appear in the order :meth:`Question.shuffled` gives for the
    question's id (``shuffle=False`` keeps the order of ``qs`` as given, for
    questions that are already shuffled).
    """
    block_id = "llq-" + uuid.uuid4().hex[:12]
    body = []
    for k, q in enumerate(qs):
        q = q.instance() if shuffle else q
        qhtml = _question_html(q, start + k if len(qs) > 1 or start != 1 else None)
        body.append(qhtml.replace("CHOICE_GROUP", f"{block_id}-{k}"))
    ids = json.dumps([q.id for q in qs])
    return (
        f'<div class="llq tex2jax_process" id="{block_id}" data-losslab="quiz" data-ids="{html.escape(ids)}">\n'
        f"<style>{_asset('quiz.css')}</style>\n"
        + "\n".join(body)
        + f"\n<script>{_asset('quiz.js')}\nwindow.losslabQuiz.mount({json.dumps(block_id)});</script>\n</div>"
    )


def render_text(qs: Sequence[Question], *, shuffle: bool = True) -> str:
    """Plain-text form (no answers), for terminals and text-only viewers, in the shuffled order."""
    lines = []
    for q in qs:
        q = q.instance() if shuffle else q
        lines.append(f"[{q.id}] {q.prompt.strip()}")
        for i, c in enumerate(q.choices):
            lines.append(f"  ({chr(97 + i)}) {c.text.strip()}")
        if q.kind == "numeric":
            lines.append("  (answer with a number)")
    return "\n".join(lines)


def quiz(*ids: str) -> None:
    """Show the questions ``ids`` with immediate feedback (live kernel or static book).

    Example
    -------
    >>> quiz("demo.gradient-sign", "demo.sigmoid-slope")  # doctest: +SKIP
    """
    if not ids:
        raise ValueError("ids: give at least one question id")
    if len(set(ids)) != len(ids):
        raise ValueError(f"ids: the same question is listed twice in {ids}")
    qs = [question(i) for i in ids]
    from IPython.display import display  # noqa: PLC0415

    display(
        {"text/html": render_html(qs), "text/plain": render_text(qs)},
        raw=True,
        metadata={"losslab": {"kind": "quiz", "ids": list(ids)}},
    )
