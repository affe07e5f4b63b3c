"""Grade submitted assignment notebooks safely: one process per task, limits, hidden checks.

:func:`grade` reads an assignment manifest (written by
:func:`losslab.assign.write_assignment`) and a folder of submitted notebooks,
and writes ``grades.csv`` (one row per student, one column per item, the
total) and ``feedback/<student>.md``.

How each item is graded
-----------------------
- **Questions.** The answer is the literal in the student's answer cell
  ``answer("<id>", ...)``, read from the source without running it, and is
  judged against the bank in the installed package. An answer written as an
  expression, and every run-dependent question, needs the student's run:
  the whole notebook executes once (an IPython shell in its own process)
  and the key expression is evaluated in the student's namespace right
  after their answer cell ran.
- **Exercises.** The answer cell (the stub the student completed) runs alone
  in a fresh process, and the package's checks (not the ones shown in the
  notebook) are applied to the function it defines. Score: the fraction of
  checks passed, times the item's points. The visible check cell must be
  unchanged: a deleted or edited check cell, or a cell that redefines the
  checker, gives zero on the exercises it concerns, with the reason.

Isolation
---------
Every task (one exercise of one student, or one student's run) is a
separate process forked from a server that imported ``torch`` and
``losslab`` once. The process starts a new session, runs in its own
temporary folder with one thread, under ``RLIMIT_AS`` (the memory cap on
top of what the imports use) and ``RLIMIT_CPU``; the parent kills its whole
process group at the wall-clock limit or when its resident memory passes the
cap. A task that raises, loops, exhausts memory, exits, or changes library
code (``torch``, ``builtins``, ``losslab``: compared before and after the
answer cell) scores zero on that item only, with the reason.

Trust: grading runs students' code. The limits stop accidents and the usual
tricks; a determined attacker who is root can lift resource limits, so grade
as an unprivileged user (or in a container) when it matters.

See Chapter "Teaching with this book".
"""

from __future__ import annotations

import ast
import csv
import json
import math
import multiprocessing
import os
import re
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["ItemResult", "Submission", "grade", "find_submissions", "Limits"]

_PRELOAD = ["losslab.grade", "losslab.assign", "torch", "IPython.core.interactiveshell"]


@dataclass(frozen=True)
class Limits:
    """Per-task limits: wall-clock seconds, extra memory in MiB, parallel tasks."""

    time_s: float = 60.0
    memory_mb: int = 2048
    workers: int = 1

    def __post_init__(self) -> None:
        if not (self.time_s > 0 and math.isfinite(self.time_s)):
            raise ValueError(f"time_s: expected a positive number of seconds, got {self.time_s!r}")
        if not (isinstance(self.memory_mb, int) and self.memory_mb >= 64):
            raise ValueError(f"memory_mb: expected an integer >= 64, got {self.memory_mb!r}")
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"workers: expected an integer >= 1, got {self.workers!r}")


@dataclass
class ItemResult:
    """One item of one submission: score out of points, and why."""

    id: str
    points: float
    score: float = 0.0
    status: str = "pending"
    message: str = ""


@dataclass
class Submission:
    student: str
    path: Path
    items: list[ItemResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(sum(i.score for i in self.items), 6)

    @property
    def max(self) -> float:
        return sum(i.points for i in self.items)


# --- reading a submission (parent side: parsing only, never executing) ---------------

def _src(cell: Any) -> str:
    s = cell.get("source", "")
    return s if isinstance(s, str) else "".join(s)


def _meta(cell: Any) -> dict:
    m = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    m = m.get("losslab", {}) if isinstance(m, dict) else {}
    return m if isinstance(m, dict) else {}


def _literal_answer(src: str, qid: str) -> tuple[str, Any]:
    """``("literal", value)``, ``("expression", None)`` or ``("missing", None)`` for ``answer(qid, ...)`` in ``src``."""
    from .assign import _parse  # noqa: PLC0415

    tree = _parse(src)
    if tree is None:
        return ("syntax", None)
    found: tuple[str, Any] = ("missing", None)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
                and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == "answer"
                and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and node.args[0].value == qid):
            try:
                found = ("literal", ast.literal_eval(node.args[1]))
            except (ValueError, TypeError, SyntaxError, RecursionError):
                found = ("expression", None)
    return found


_CHECKER_NAMES = {"check", "run", "checks", "exercise", "require", "_REGISTRY"}


def _redefines_checker(src: str) -> str:
    """What a cell's source does to the checker (``""`` when nothing)."""
    from .assign import _parse  # noqa: PLC0415

    tree = _parse(src)
    if tree is None:
        return ""

    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return dotted(node.value) + "." + node.attr
        if isinstance(node, ast.Subscript):
            return dotted(node.value) + "[...]"
        return "?"

    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == "check":
            return f"defines its own {node.name}()"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if (alias.asname or alias.name) == "check" and alias.name != "check":
                    return f"imports {alias.name} as check"
        elif isinstance(node, ast.Call) and dotted(node.func).endswith("setattr") and node.args:
            name = dotted(node.args[0])
            if "losslab" in name or "Exercise" in name:
                return f"calls setattr on {name}"
        for t in targets:
            for leaf in ast.walk(t):
                name = dotted(leaf) if isinstance(leaf, (ast.Name, ast.Attribute, ast.Subscript)) else ""
                last = name.split(".")[-1].replace("[...]", "")
                if name == "check" or (("losslab" in name or "Exercise" in name) and last in _CHECKER_NAMES):
                    return f"assigns to {name}"
    return ""


@dataclass
class _Parsed:
    nb: Any = None
    error: str = ""
    cells: list[tuple[int, str, dict]] = field(default_factory=list)  # (index, source, losslab metadata) of code cells


def _read(path: Path) -> _Parsed:
    import nbformat  # noqa: PLC0415

    try:
        with open(path, encoding="utf-8") as f:
            nb = nbformat.read(f, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001  (any failure to read is the submission's)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return _Parsed(error=f"not a valid notebook ({type(err).__name__}: {msg[:200]})")
    cells = [(i, _src(c), _meta(c)) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    return _Parsed(nb=nb, cells=cells)


def find_submissions(folder: str | Path) -> list[tuple[str, Path]]:
    """``(student, notebook)`` pairs: ``<student>.ipynb`` files, or ``<student>/**/*.ipynb``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"submissions: expected a folder of notebooks, got {str(folder)!r}")
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in p.parts:
            continue
        rel = p.relative_to(folder)
        student = rel.stem if len(rel.parts) == 1 else rel.parts[0]
        if student in found:
            raise ValueError(f"submissions: two notebooks for {student!r}: {found[student]} and {p}")
        found[student] = p
    return sorted(found.items())


# --- tasks (child side) -------------------------------------------------------------------

def _vm_kb(pid: int | str = "self", field_name: str = "VmSize") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _sandbox(workdir: str, memory_mb: int, cpu_s: float) -> None:
    """Enter the task's limits: new session, own folder, quiet output, one thread, rlimits."""
    import resource  # noqa: PLC0415

    os.setsid()
    os.chdir(workdir)
    log = os.open(os.path.join(workdir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    os.environ.pop("LOSSLAB_STATIC", None)
    try:
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)
    except Exception:  # noqa: BLE001
        pass
    base = _vm_kb() * 1024
    limit = base + memory_mb * 1024 * 1024
    if base:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = int(math.ceil(cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024 * 1024, 256 * 1024 * 1024))


def _watched() -> dict[str, Any]:
    """What the checks rely on: modules and classes, by name."""
    import builtins  # noqa: PLC0415
    import sys  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from .exercises import CheckOutcome, Exercise, Report  # noqa: PLC0415

    watched: dict[str, Any] = {"builtins": builtins, "torch": torch, "torch.nn.functional": torch.nn.functional, "math": math}
    for extra in ("numpy", "torch.testing", "torch.linalg"):
        if extra in sys.modules:
            watched[extra] = sys.modules[extra]
    watched.update({k: m for k, m in list(sys.modules.items()) if k.startswith("losslab") and m is not None})
    for cls in (torch.Tensor, Exercise, Report, CheckOutcome):
        watched[f"class {cls.__module__}.{cls.__qualname__}"] = cls
    return watched


def _snapshot() -> dict[str, dict[str, int]]:
    """Identities of the watched names, to detect an answer cell that patches them."""
    import sys  # noqa: PLC0415

    snap = {name: {k: id(v) for k, v in vars(obj).items()} for name, obj in _watched().items()}
    snap["sys.modules"] = {k: id(m) for k, m in list(sys.modules.items()) if k in snap}
    return snap


def _student_made(v: Any) -> bool:
    """Whether ``v`` was defined by the student's code (the answer cell runs as ``__main__``)."""
    if getattr(v, "__module__", None) == "__main__":
        return True
    code = getattr(v, "__code__", None) or getattr(getattr(v, "__func__", None), "__code__", None)
    return bool(code is not None and str(code.co_filename).startswith("<answer cell"))


def _tampered(before: dict[str, dict[str, int]]) -> list[str]:
    """Watched names the student's code replaced or deleted.

    In ``losslab`` every change counts. In ``torch``, ``numpy`` and the
    standard library, which rebind some of their own names lazily on first
    use, a deletion counts, and a change counts when the new value was
    defined by the student's code.
    """
    import sys  # noqa: PLC0415

    watched = _watched()
    changed = []
    for scope, names in before.items():
        if scope == "sys.modules":
            changed += [f"sys.modules[{k!r}]" for k, v in names.items() if id(sys.modules.get(k)) != v]
            continue
        obj = watched.get(scope)
        if obj is None:
            continue
        now = vars(obj)
        ours = scope.startswith(("losslab", "class losslab"))
        for k, v in names.items():
            if k not in now:
                changed.append(f"{scope}.{k} (deleted)")
            elif id(now[k]) != v and (ours or _student_made(now[k])):
                changed.append(f"{scope}.{k}")
        if scope.startswith("class "):
            changed += [f"{scope}.{k}" for k in now if k not in names and (ours or _student_made(now[k]))]
    return sorted(set(changed))


def _emitter(path: str):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    dumps, write = json.dumps, os.write

    def emit(obj: dict) -> None:
        write(fd, (dumps(obj, default=repr) + "\n").encode())

    return emit


def _exercise_task(eid: str, source: str, result: str, workdir: str, memory_mb: int, cpu_s: float) -> None:
    """Child: run one answer cell alone, then the package's checks on its function."""
    emit = _emitter(result)
    _sandbox(workdir, memory_mb, cpu_s)
    from .exercises import Exercise, exercise  # noqa: PLC0415

    ex = exercise(eid)
    run = Exercise.run
    ex.reference()  # compiled once before the student's code can touch anything
    before = _snapshot()
    emit({"stage": "answer cell"})
    try:
        code = compile(source, f"<answer cell {eid}>", "exec")
    except SyntaxError as err:
        emit({"status": "error", "message": f"the answer cell has a syntax error (line {err.lineno}: {err.msg})"})
        return
    ns: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(code, ns)  # noqa: S102  (in the sandbox)
    except BaseException as err:  # noqa: BLE001  (SystemExit and KeyboardInterrupt included)
        emit({"status": "error", "message": f"the answer cell raised {type(err).__name__}: {str(err)[:300]}"})
        return
    changed = _tampered(before)
    if changed:
        emit({"status": "tampered", "message": "the answer cell changes library or grader code: " + ", ".join(changed[:5])})
        return
    fn = ns.get(ex.entry)
    if not callable(fn):
        emit({"status": "error", "message": f"the answer cell does not define the function {ex.entry}"})
        return
    emit({"stage": "checks"})
    report = run(ex, fn)
    changed = _tampered(before)
    if changed:
        emit({"status": "tampered", "message": "the function changes library or grader code when called: " + ", ".join(changed[:5])})
        return
    emit({"status": "checked", "passed": report.passed, "total": report.total, "message": report.to_text()})


def _plain(v: Any, depth: int = 0) -> Any:
    if depth > 3:
        raise ValueError("too deeply nested")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if hasattr(v, "tolist"):
        return _plain(v.tolist(), depth + 1)
    if isinstance(v, (list, tuple, set, frozenset)):
        if len(v) > 1000:
            raise ValueError("too long")
        return [_plain(x, depth + 1) for x in (sorted(v) if isinstance(v, (set, frozenset)) else v)]
    return float(v)


def _run_task(cells: list[tuple[int, str, str]], keys: dict[str, str], result: str, workdir: str, memory_mb: int, cpu_s: float) -> None:
    """Child: execute the notebook's code cells in order; record answers and run-dependent keys."""
    emit = _emitter(result)
    _sandbox(workdir, memory_mb, cpu_s)
    from IPython.core.interactiveshell import InteractiveShell  # noqa: PLC0415

    from . import assign  # noqa: PLC0415

    recorded = assign._RECORDED  # noqa: SLF001
    shell = InteractiveShell.instance()
    done_keys: set[str] = set()

    def eval_key(qid: str) -> None:
        done_keys.add(qid)
        try:
            emit({"key": qid, "value": _plain(eval(keys[qid], shell.user_ns))})  # noqa: S307  (the instructor's key)
        except BaseException as err:  # noqa: BLE001
            emit({"key": qid, "error": f"{type(err).__name__}: {str(err)[:200]}"})

    for index, source, aid in cells:
        emit({"cell": index, "stage": "start"})
        res = shell.run_cell(source, store_history=False)
        err = res.error_before_exec or res.error_in_exec
        emit({"cell": index, "error": f"{type(err).__name__}: {str(err)[:300]}" if err else None})
        if aid:
            if aid in recorded:
                try:
                    emit({"answer": aid, "value": _plain(recorded[aid])})
                except (TypeError, ValueError) as e:
                    emit({"answer": aid, "error": f"the recorded answer is not a plain value ({e})"})
            if aid in keys:
                eval_key(aid)
    for qid in keys:
        if qid not in done_keys:
            eval_key(qid)
    emit({"stage": "done"})


# --- running tasks (parent side) -----------------------------------------------------------

@dataclass
class _Task:
    student: str
    kind: str  # "exercise" or "run"
    target: Any
    args: tuple
    limit: float
    result: str = ""
    workdir: str = ""
    outcome: str = ""  # "", "timeout", "memory", "exit <code>"
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _start_without_main(p: Any) -> None:
    """Start ``p`` without re-running the caller's ``__main__`` in the child.

    multiprocessing re-imports the main script in each child unless it is
    guarded by ``if __name__ == "__main__"``; a grading task needs nothing
    from it, so the child is told there is none.
    """
    import sys  # noqa: PLC0415
    import types  # noqa: PLC0415

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        p.start()
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _kill(pid: int) -> None:
    for fn in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            fn()
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _run_all(tasks: list[_Task], limits: Limits, root: Path) -> None:
    ctx = _context()
    pending = list(tasks)
    running: dict[int, tuple[_Task, Any, float]] = {}
    rss_cap_kb = (limits.memory_mb + 1536) * 1024
    n = 0
    while pending or running:
        while pending and len(running) < limits.workers:
            t = pending.pop(0)
            n += 1
            d = root / f"task{n}"
            (d / "work").mkdir(parents=True)
            t.result, t.workdir = str(d / "result.jsonl"), str(d / "work")
            p = ctx.Process(target=t.target, args=(*t.args, t.result, t.workdir, limits.memory_mb, t.limit + 1), daemon=True)
            _start_without_main(p)
            running[p.pid] = (t, p, time.monotonic())
        time.sleep(0.02)
        for pid, (t, p, start) in list(running.items()):
            if not p.is_alive():
                p.join()
                if p.exitcode:
                    t.outcome = t.outcome or f"exit {p.exitcode}"
            elif time.monotonic() - start > t.limit:
                t.outcome = "timeout"
                _kill(pid)
                p.join(5)
            elif _vm_kb(pid, "VmRSS") > rss_cap_kb:
                t.outcome = "memory"
                _kill(pid)
                p.join(5)
            else:
                continue
            _kill(pid)  # whatever the student's code started in its session
            t.seconds = time.monotonic() - start
            del running[pid]
            try:
                with open(t.result) as f:
                    t.records = [json.loads(line) for line in f if line.strip()]
            except (OSError, ValueError):
                t.records = []


# --- grading ----------------------------------------------------------------------------------

_MEMORY = re.compile(r"MemoryError|can't allocate memory|out of memory|std::bad_alloc", re.I)


def _status_of_task(t: _Task, limits: Limits) -> tuple[str, str] | None:
    if t.outcome == "timeout":
        return "timeout", f"stopped after the time limit of {limits.time_s:g} s (an infinite loop?)"
    if t.outcome == "memory":
        return "memory", f"stopped for using more than the memory limit of {limits.memory_mb} MiB"
    if t.outcome.startswith("exit"):
        code = int(t.outcome.split()[1])
        if code == -signal.SIGXCPU:
            return "timeout", f"stopped after using {limits.time_s:g} s of CPU time"
        if code < 0:
            return "error", f"the process was killed by signal {-code}"
    return None


def _grade_exercise(it: Any, t: _Task, limits: Limits) -> tuple[float, str, str]:
    final = [r for r in t.records if "status" in r]
    if not final:
        bad = _status_of_task(t, limits)
        if bad:
            return 0.0, bad[0], bad[1]
        return 0.0, "error", f"the answer cell ended the process without a result ({t.outcome or 'exit 0'})"
    r = final[-1]
    msg = r.get("message", "")
    if r["status"] == "checked":
        total = r.get("total") or 0
        passed = r.get("passed") or 0
        if _MEMORY.search(msg) and passed < total:
            return it.points * passed / total if total else 0.0, "memory", f"ran out of memory (limit {limits.memory_mb} MiB) in some checks\n{msg}"
        status = "correct" if total and passed == total else "partial" if passed else "wrong"
        if "not attempted" in msg.splitlines()[0]:
            status = "unanswered"
        return (it.points * passed / total if total else 0.0), status, msg
    if _MEMORY.search(msg):
        return 0.0, "memory", f"ran out of memory (limit {limits.memory_mb} MiB): {msg}"
    return 0.0, r["status"], msg


def grade(manifest: str | Path | dict, submissions: str | Path | Sequence[tuple[str, str | Path]], out: str | Path,
          *, limits: Limits | None = None, strict_checks: bool = True) -> list[Submission]:
    """Grade every submission and write ``grades.csv`` and ``feedback/<student>.md`` under ``out``.

    Parameters
    ----------
    manifest : path or dict
        The assignment manifest (``<name>.assignment.json``).
    submissions : folder or sequence of (student, path)
        A folder as :func:`find_submissions` reads it, or explicit pairs.
    out : path
        Where to write the grade sheet and the feedback.
    limits : Limits
        Wall-clock seconds and memory per task, and how many tasks run at once.
    strict_checks : bool
        If True (the default), a deleted or edited visible check cell, or a
        cell that redefines the checker, gives zero on the exercises concerned.

    Returns
    -------
    list of Submission
        In the order of the grade sheet.

    Raises
    ------
    ValueError
        If the manifest or the submissions folder is unusable (never because
        of what a submission contains).
    """
    from .assign import assignment_from_manifest, judge, parse_response  # noqa: PLC0415

    limits = limits or Limits()
    if not isinstance(manifest, dict):
        manifest = json.loads(Path(manifest).read_text(encoding="utf-8"))
    items = assignment_from_manifest(manifest)
    pairs = find_submissions(submissions) if isinstance(submissions, (str, Path)) else [(s, Path(p)) for s, p in submissions]
    out = Path(out)
    (out / "feedback").mkdir(parents=True, exist_ok=True)

    results: list[Submission] = []
    tasks: list[_Task] = []
    plan: dict[str, dict] = {}
    for student, path in pairs:
        sub = Submission(student, path, [ItemResult(it.id, it.points) for it in items])
        results.append(sub)
        parsed = _read(path)
        state: dict[str, Any] = {"parsed": parsed, "answers": {}, "exercise_tasks": {}, "run": None}
        plan[student] = state
        if parsed.error:
            for r in sub.items:
                r.status, r.message = "invalid", parsed.error
            continue
        cells = parsed.cells
        checker = [(i, why) for i, s, _ in cells if (why := _redefines_checker(s))]
        need_run = False
        for it, r in zip(items, sub.items):
            answer_cells = [(i, s) for i, s, m in cells if m.get("answer") == it.id]
            if it.is_question:
                if not answer_cells:
                    answer_cells = [(i, s) for i, s, _ in cells if _literal_answer(s, it.id)[0] != "missing"]
                if not answer_cells:
                    r.status, r.message = "missing", f"no answer cell: answer({it.id!r}, ...) is not in the notebook"
                    continue
                how, value = _literal_answer(answer_cells[-1][1], it.id)
                state["answers"][it.id] = (answer_cells[-1][0], how, value)
                if how == "expression" or it.run_question is not None:
                    need_run = True
            else:
                ex = it.exercise()
                if not answer_cells:
                    answer_cells = [(i, s) for i, s, m in cells if f"def {ex.entry}(" in s and not m.get("check")]
                if not answer_cells:
                    r.status, r.message = "missing", f"no cell defines {ex.entry}(): the answer cell was deleted"
                    continue
                expected = f"losslab.check({ex.id!r}, {ex.entry})"
                check_cells = [s for _, s, m in cells if m.get("check") == ex.id] or [s for _, s, _ in cells if s.strip() == expected]
                if strict_checks and not check_cells:
                    r.status, r.message = "check-cell", f"the check cell `{expected}` was deleted"
                    continue
                if strict_checks and check_cells[-1].strip() != expected and expected not in check_cells[-1]:
                    r.status, r.message = "check-cell", f"the check cell was edited (it must stay `{expected}`)"
                    continue
                if strict_checks and checker:
                    i, why = checker[0]
                    r.status, r.message = "checker", f"code cell {i} {why}: redefining the checker gives zero on exercises"
                    continue
                t = _Task(student, "exercise", _exercise_task, (ex.id, answer_cells[-1][1]), limits.time_s)
                state["exercise_tasks"][it.id] = t
                tasks.append(t)
        if need_run:
            keys = {it.id: it.run_question.key for it in items if it.run_question is not None}
            aid = {i: m.get("answer") for i, _, m in cells if m.get("answer")}
            for qid, (i, _, _) in state["answers"].items():
                aid.setdefault(i, qid)
            run_cells = [(i, s, aid.get(i, "")) for i, s, _ in cells]
            t = _Task(student, "run", _run_task, (run_cells, keys), limits.time_s)
            state["run"] = t
            tasks.append(t)

    with tempfile.TemporaryDirectory(prefix="losslab-grade-") as tmp:
        _run_all(tasks, limits, Path(tmp))

    for sub in results:
        state = plan[sub.student]
        run: _Task | None = state["run"]
        run_answers = {r["answer"]: r for r in run.records if "answer" in r} if run else {}
        run_keys = {r["key"]: r for r in run.records if "key" in r} if run else {}
        run_cells = {r["cell"]: r for r in run.records if "cell" in r and "error" in r} if run else {}
        if run is not None:
            stopped = _status_of_task(run, limits)
            for i, r in sorted(run_cells.items()):
                if r.get("error"):
                    sub.notes.append(f"code cell {i} raised {r['error']}")
            if stopped:
                started = [r["cell"] for r in run.records if r.get("stage") == "start"]
                sub.notes.append(f"the notebook run stopped at code cell {started[-1] if started else '?'}: {stopped[1]}")
        for it, r in zip(items, sub.items):
            if r.status != "pending":
                continue
            if not it.is_question:
                r.score, r.status, r.message = _grade_exercise(it, state["exercise_tasks"][it.id], limits)
                continue
            q = it.question()
            cell, how, value = state["answers"][it.id]
            why_run = ""
            if run is not None and (how != "literal" or it.run_question is not None):
                if cell in run_cells and run_cells[cell].get("error"):
                    why_run = f"the answer cell raised {run_cells[cell]['error']}"
                elif cell not in run_cells:
                    stopped = _status_of_task(run, limits) or ("error", "the run ended early")
                    why_run = f"the notebook run never finished the answer cell: {stopped[1]}"
            if how == "syntax":
                r.status, r.message = "error", "the answer cell has a syntax error"
                continue
            if how == "expression":
                if why_run:
                    r.status, r.message = "error", why_run
                    continue
                rec = run_answers.get(it.id, {})
                if "value" not in rec:
                    r.status, r.message = "error", rec.get("error", "the answer cell ran but recorded no answer")
                    continue
                value = rec["value"]
            try:
                response = parse_response(q, value)
            except ValueError as err:
                r.status, r.message = "invalid-answer", str(err)
                continue
            key = None
            if it.run_question is not None:
                if response is None:
                    r.status, r.message = "unanswered", "not answered"
                    continue
                rk = run_keys.get(it.id, {})
                if "value" not in rk:
                    why = why_run or f"the key could not be computed from your run ({rk.get('error', 'the run stopped before it')})"
                    r.status, r.message = "error", why
                    continue
                try:
                    key = parse_response(q, rk["value"], key=True)
                except ValueError as err:
                    r.status, r.message = "error", f"your run gives no usable key: {err}"
                    continue
            ok, msg = judge(q, response, key)
            r.score = it.points if ok else 0.0
            r.status = "correct" if ok else ("unanswered" if response is None else "wrong")
            r.message = msg
    _write(out, manifest, items, results, limits)
    return results


def _fmt(x: float) -> str:
    return f"{round(x, 4):g}"


def _write(out: Path, manifest: dict, items: list, results: list[Submission], limits: Limits) -> None:
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *[it.id for it in items], "total"])
        w.writerow(["(max)", *[_fmt(it.points) for it in items], _fmt(sum(it.points for it in items))])
        for sub in results:
            w.writerow([sub.student, *[_fmt(r.score) for r in sub.items], _fmt(sub.total)])
    for sub in results:
        lines = [f"# {manifest.get('title', manifest.get('name', 'Assignment'))}: feedback for {sub.student}", "",
                 f"Total: **{_fmt(sub.total)} / {_fmt(sub.max)}**", ""]
        for r in sub.items:
            lines += [f"## `{r.id}`: {_fmt(r.score)} / {_fmt(r.points)} ({r.status})", "", r.message.strip() or "-", ""]
        if sub.notes:
            lines += ["## Notes on the run", ""] + [f"- {n}" for n in sub.notes] + [""]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sub.student)
        (out / "feedback" / f"{safe}.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "grades.json").write_text(json.dumps(
        [{"student": s.student, "total": s.total, "items": [vars(r) for r in s.items], "notes": s.notes} for s in results],
        indent=1, default=str) + "\n", encoding="utf-8")

