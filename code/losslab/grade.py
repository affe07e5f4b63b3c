"""Grade submitted assignment notebooks: the student's code only produces outputs; the grader judges.

:func:`grade` reads an assignment manifest (written by
:func:`losslab.assign.write_assignment`) and a folder of submitted notebooks,
and writes ``grades.csv`` (one row per student, one column per item, the
total), ``grades.json`` and ``feedback/<student>.md``.

How each item is graded
-----------------------
- **Questions.** The answer is the literal in the student's answer cell
  ``answer("<id>", ...)`` (found by the id in its source, not by cell
  metadata), read without running it, and judged in this process against
  the bank and the choice order that this student was shown. An answer
  written as an expression, and every run-dependent question, needs the
  student's run: the notebook executes once in a sandbox and sends back the
  recorded values as plain data.
- **Exercises.** The answer cell runs alone in a sandbox. From then on the
  sandbox only *computes*: each check runs here, in the grader's process,
  and every call it makes to the student's function sends the inputs to the
  sandbox and gets the outputs back as plain data (:mod:`losslab._wire`:
  numbers, strings, arrays; no pickle). Every comparison happens here, with
  this process's ``torch``: nothing the student's code patches, subclasses
  or rewrites in its own process can change a verdict.
- **Hidden checks.** Each visible check has a hidden twin: its calls are
  repeated on inputs drawn at grading time (tensors and lists rescaled,
  generators reseeded) from the assignment's secret, which lives only in the
  instructor's manifest, and the outputs must match the reference solution
  run here on the same inputs. A twin applies to the calls on which the
  student's function agreed with the reference on the visible inputs.

Score of an exercise: the fraction of checks (visible and hidden) passed,
times the item's points.

Isolation
---------
Each task (one exercise of one student, or one student's notebook run) is
a process forked from a server that imported ``torch`` and ``losslab``
once. When the grader runs as root, each concurrent task slot has its own
unprivileged system user (``losslab-grade0``, ``losslab-grade1``...,
created with ``useradd --system`` on first use; a grading run holds its
slots under exclusive locks, so two runs on one machine never share a user);
a task runs as that user,
in its own empty folder, in a private mount namespace in which the
instructor's folder, the submissions, the output folder and the package's
question bank and exercise modules (with their solutions) are empty. It
cannot write to the grader (results travel over a pipe that the grader
reads, and only as data), cannot read the grader's files through ``/proc``
(another user's), and cannot outlive its task: when the task ends every
process of its user is killed and the grader checks that none is left
before the slot is reused and before any result is written. ``RLIMIT_AS``,
``RLIMIT_CPU``, ``RLIMIT_NPROC`` and a wall-clock limit bound each task. A
task that loops, exhausts memory or exits scores zero on that item only,
with the reason.

Not as root, tasks run as the grader's own user with the limits but
without the separate user and mount namespace; the grader says so.

See Chapter "Teaching with this book".
"""

from __future__ import annotations

import ast
import csv
import ctypes
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .exercises import CheckOutcome

__all__ = ["ItemResult", "Submission", "grade", "find_submissions", "Limits", "isolation"]

_PRELOAD = ["torch", "numpy", "losslab", "losslab.grade", "losslab.assign", "losslab.autograd", "IPython.core.interactiveshell"]
_USER_PREFIX = "losslab-grade"


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
    feedback: str = ""  # file name under feedback/
    variant: str = ""  # whose choice order and numbers were graded

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


def find_submissions(folder: str | Path) -> list[tuple[str, Path]]:
    """``(student, notebook)`` pairs: ``<student>.ipynb`` files, or ``<student>/**/*.ipynb``.

    A student with both a ``<student>.ipynb`` and a ``<student>/`` folder, or
    several notebooks in the folder, gets one clearly named row per notebook
    (``dave [dave.ipynb]``, ``dave [dave/hw.ipynb]``) instead of stopping the
    run. Symlinks are listed too: :func:`grade` refuses them with the reason.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"submissions: expected a folder of notebooks, got {str(folder)!r}")
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints" and not d.startswith("."))
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        for name in sorted(filenames) + links:
            p = here / name
            if not name.endswith(".ipynb") and p not in [here / d for d in links]:
                continue
            rel = p.relative_to(folder)
            student = rel.stem if len(rel.parts) == 1 else rel.parts[0]
            found.setdefault(student, []).append(p)
    pairs = []
    for student, paths in found.items():
        if len(paths) == 1:
            pairs.append((student, paths[0]))
        else:
            pairs += [(f"{student} [{p.relative_to(folder).as_posix()}]", p) for p in paths]
    return sorted(pairs)


def _refusal(path: Path, root: Path | None) -> str:
    """Why a submission path is not graded (``""`` when it is a regular file inside the folder)."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"is a symbolic link (to {os.readlink(path)!r}): hand in the notebook file itself"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if root is not None:
        cur = path.parent
        while cur != root and root in cur.parents:
            if cur.is_symlink():
                return f"lies under a symbolic link ({cur.name})"
            cur = cur.parent
    if st.st_size > 64 * 1024 * 1024:
        return f"is {st.st_size // 2**20} MiB, over the 64 MiB limit"
    return ""


def _read_regular(path: Path) -> _Parsed:
    """Read a notebook without following a symlink (the file is opened with O_NOFOLLOW)."""
    import io  # noqa: PLC0415

    import nbformat  # noqa: PLC0415

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return _Parsed(error="not a regular file")
            text = f.read().decode("utf-8")
        nb = nbformat.read(io.StringIO(text), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001  (any failure to read is the submission's)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return _Parsed(error=f"not a valid notebook ({type(err).__name__}: {msg[:200]})")
    cells = [(i, _src(c), _meta(c)) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    return _Parsed(nb=nb, cells=cells)


def _defines(src: str, name: str) -> bool:
    from .assign import _parse  # noqa: PLC0415

    tree = _parse(src)
    if tree is None:
        return False
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name:
            return True
        if isinstance(n, (ast.Assign, ast.AnnAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(n, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in n.names):
            return True
    return False


def _question_cell(cells: list[tuple[int, str, dict]], qid: str) -> tuple[int | None, str]:
    """The code cell holding ``answer(qid, ...)``, found by the id in the source, and a note when ambiguous."""
    found = [(i, s) for i, s, _ in cells if _literal_answer(s, qid)[0] != "missing"]
    if not found:
        return None, ""
    note = ""
    if len(found) > 1:
        values = {_literal_answer(s, qid) for _, s in found if _literal_answer(s, qid)[0] == "literal"}
        if len({repr(v) for v in values}) > 1 or any(_literal_answer(s, qid)[0] != "literal" for _, s in found):
            note = (f"{len(found)} code cells ({', '.join(str(i) for i, _ in found)}) answer {qid}; "
                    f"graded the last one, cell {found[-1][0]}")
    return found[-1][0], note


def _exercise_cell(cells: list[tuple[int, str, dict]], eid: str, entry: str) -> tuple[int | None, str, str]:
    """The cell that defines ``entry`` as the check cell sees it: the last definition before the check cell."""
    check_at = next((i for i, s, _ in cells if f"check({eid!r}" in s or f'check("{eid}"' in s), None)
    defs = [(i, s) for i, s, _ in cells if _defines(s, entry)]
    if not defs:  # a cell that makes the function some other way (exec...): the one handed out for it
        defs = [(i, s) for i, s, m in cells if m.get("answer") == eid and not m.get("check") and i != check_at]
    before = [(i, s) for i, s in defs if check_at is None or i < check_at]
    pick = before or defs
    if not pick:
        return None, "", ""
    note = ""
    if len(defs) > 1:
        note = (f"{len(defs)} code cells ({', '.join(str(i) for i, _ in defs)}) define {entry}(); graded cell {pick[-1][0]}, "
                "the last one before the check cell")
    return pick[-1][0], pick[-1][1], note


def _static_tampering(src: str) -> str:
    """Assignments to library attributes in an answer cell (``torch.equal = ...``): a reason, or ``""``.

    Verdicts do not depend on this (they are computed in the grader's
    process); it names the attempt in the feedback.
    """
    from .assign import _parse  # noqa: PLC0415

    tree = _parse(src)
    if tree is None:
        return ""
    modules = {"torch", "numpy", "np", "builtins", "math", "operator", "losslab", "F", "functional", "sys", "json", "base64"}
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                imported.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args:
            targets = [node.args[0]]
        for t in targets:
            base = t
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name) and (base.id in modules or base.id in imported) and base is not t:
                return f"the answer cell changes library code ({ast.unparse(t)})"
            if isinstance(t, ast.Attribute) and t.attr in ("__code__", "__class__", "__torch_function__", "checks", "__eq__"):
                return f"the answer cell rewrites {ast.unparse(t)}"
    return ""


# --- the sandbox (child side) ------------------------------------------------------------------

@dataclass(frozen=True)
class _Jail:
    """How a task is confined: user, folder, what it cannot see, limits."""

    workdir: str
    memory_mb: int
    cpu_s: float
    uid: int | None = None
    gid: int | None = None
    hide_dirs: tuple[str, ...] = ()
    hide_files: tuple[str, ...] = ()
    empty_file: str = ""
    reopen: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (closed folder, the subfolders the interpreter needs)
    staging: str = ""


_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18


def _enter(jail: _Jail, keep: int) -> None:
    """Enter the task's confinement. Runs in the forked child before any student code.

    Every file descriptor the child inherited (the fork server's own pipes,
    the resource tracker's) is closed except ``keep``, the task's pipe.
    """
    import resource  # noqa: PLC0415

    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)
    os.setsid()
    if jail.uid is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "making mounts private failed")
        # The interpreter may live under a folder the task's user cannot enter (a Python under /root):
        # the folder becomes an empty one that it may cross, holding only what the interpreter needs.
        for k, (closed, needed) in enumerate(jail.reopen):
            kept = []
            for j, sub in enumerate(needed):
                spot = os.path.join(jail.staging, f"{k}-{j}")
                os.makedirs(spot, exist_ok=True)
                if libc.mount(sub.encode(), spot.encode(), None, _MS_BIND | _MS_REC, None) != 0:
                    raise OSError(ctypes.get_errno(), f"keeping {sub} failed")
                kept.append((sub, spot))
            if libc.mount(b"tmpfs", closed.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=64k,mode=0711") != 0:
                raise OSError(ctypes.get_errno(), f"closing {closed} failed")
            for sub, spot in kept:
                os.makedirs(sub, exist_ok=True)
                if libc.mount(spot.encode(), sub.encode(), None, _MS_BIND | _MS_REC, None) != 0:
                    raise OSError(ctypes.get_errno(), f"reopening {sub} failed")
        for d in jail.hide_dirs:
            if os.path.isdir(d) and libc.mount(b"tmpfs", d.encode(), b"tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                                               b"size=4k,mode=0555") != 0:
                raise OSError(ctypes.get_errno(), f"hiding {d} failed")
        for f in jail.hide_files:
            if os.path.isfile(f) and libc.mount(jail.empty_file.encode(), f.encode(), None, _MS_BIND, None) != 0:
                raise OSError(ctypes.get_errno(), f"hiding {f} failed")
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid program can give privileges back
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
        os.setgroups([])
        os.setgid(jail.gid)
        os.setuid(jail.uid)
    os.chdir(jail.workdir)
    log = os.open(os.path.join(jail.workdir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HOME=jail.workdir, TMPDIR=jail.workdir)
    # Tasks run on the CPU whatever the machine has: CUDA cannot start under RLIMIT_AS, and a
    # grade must not depend on the device. A student's own run may move the page's numbers,
    # so the page's claims warn there instead of stopping it.
    os.environ.update(LOSSLAB_DEVICE="cpu", CUDA_VISIBLE_DEVICES="", LOSSLAB_CLAIMS="warn")
    os.environ.pop("LOSSLAB_STATIC", None)
    try:
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)
    except Exception:  # noqa: BLE001
        pass
    base = _vm_kb() * 1024
    limit = base + jail.memory_mb * 1024 * 1024
    if base:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = int(math.ceil(jail.cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024 * 1024, 256 * 1024 * 1024))


def _vm_kb(pid: int | str = "self", field_name: str = "VmSize") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _state(o: Any) -> Any:
    """What the grader needs to mirror an input after the call (in-place changes)."""
    from ._wire import encode  # noqa: PLC0415

    if hasattr(o, "_backward") and hasattr(o, "grad"):
        return {"value": encode(float(o.data)), "grad": encode(float(o.grad))}
    return encode(o)


def _exercise_child(source: str, entry: str, conn: Any, jail: _Jail) -> None:
    """Child: run one answer cell alone, then compute outputs for the inputs the grader sends."""
    from ._wire import decode, dumps, encode, loads  # noqa: PLC0415

    send = conn.send_bytes
    try:
        _enter(jail, conn.fileno())
    except BaseException as err:  # noqa: BLE001
        send(dumps({"error": f"the sandbox could not start ({err})", "sandbox": True}))
        return
    try:
        code = compile(source, f"<answer cell {entry}>", "exec")
    except SyntaxError as err:
        send(dumps({"error": f"the answer cell has a syntax error (line {err.lineno}: {err.msg})"}))
        return
    ns: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(code, ns)  # noqa: S102  (in the sandbox)
    except BaseException as err:  # noqa: BLE001  (SystemExit and KeyboardInterrupt included)
        send(dumps({"error": f"the answer cell raised {type(err).__name__}: {str(err)[:300]}"}))
        return
    fn = ns.get(entry)
    if not callable(fn):
        send(dumps({"error": f"the answer cell does not define the function {entry}"}))
        return
    send(dumps({"ready": True}))
    while True:
        try:
            req = loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        objects: list = []
        try:
            args = decode(req["args"], objects, fresh=True)
            kwargs = decode(req["kwargs"], objects, fresh=True)
            out = fn(*args, **kwargs)
        except NotImplementedError:
            send(dumps({"todo": True}))
            continue
        except BaseException as err:  # noqa: BLE001
            send(dumps({"raised": type(err).__name__, "message": str(err)[:300]}))
            continue
        try:
            reply = {"ok": encode(out, objects, output=True), "state": [_state(o) for o in objects]}
        except NotImplementedError:  # a returned Value whose backward rule is still the stub
            reply = {"todo": True}
        except BaseException as err:  # noqa: BLE001
            reply = {"raised": "TypeError", "message": f"the result cannot be checked: {str(err)[:200]}"}
        send(dumps(reply))


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


def _run_child(cells: list[tuple[int, str, str]], keys: dict[str, str], conn: Any, jail: _Jail) -> None:
    """Child: execute the notebook's code cells in order; send answers and run-dependent keys as data."""
    from ._wire import dumps  # noqa: PLC0415

    send = conn.send_bytes

    def emit(obj: dict) -> None:
        send(dumps(obj))

    try:
        _enter(jail, conn.fileno())
    except BaseException as err:  # noqa: BLE001
        emit({"sandbox": f"the sandbox could not start ({err})"})
        return
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


# --- users, processes (parent side) -------------------------------------------------------------

def isolation() -> str:
    """``"user"`` when tasks run as separate unprivileged users in their own mount namespace, else ``"none"``."""
    return "user" if os.geteuid() == 0 and shutil.which("useradd") else "none"


def _grading_users(slots: Sequence[int]) -> list[tuple[int, int]]:
    """The unprivileged system users of these slots (created with ``useradd --system`` if missing)."""
    import pwd  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    users = []
    for k in slots:
        name = f"{_USER_PREFIX}{k}"
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                            "--comment", "losslab grading sandbox", name], check=True, capture_output=True)
            pw = pwd.getpwnam(name)
        if pw.pw_uid == 0:
            raise RuntimeError(f"{name} has uid 0; it must be an unprivileged user")
        users.append((pw.pw_uid, pw.pw_gid))
    return users


#: Where grading runs on one machine take their slots (root's, mode 0700).
SLOT_LOCKS = Path(tempfile.gettempdir()) / "losslab-grade-slots"


def _claim_slots(n: int, *, limit: int = 256) -> list[tuple[int, int]]:
    """``n`` slots no other grading run on this machine holds: ``(slot, fd)``, each under an exclusive lock.

    Every process of a slot's user is killed when a task ends, so two grading
    runs at once (two instructors, or parallel test workers) must never share
    a user. The lock lasts while the fd is open, also if the grader dies.
    """
    import fcntl  # noqa: PLC0415

    SLOT_LOCKS.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(SLOT_LOCKS)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise RuntimeError(f"{SLOT_LOCKS} must be a folder of the grader's own user with mode 0700")
    held: list[tuple[int, int]] = []
    for k in range(limit):
        if len(held) == n:
            break
        fd = os.open(SLOT_LOCKS / f"slot{k}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append((k, fd))
    if len(held) < n:
        for _, fd in held:
            os.close(fd)
        raise RuntimeError(f"no free grading slots: {limit} are held by other grading runs on this machine")
    return held


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", text, re.M)
        state = re.search(r"^State:\s+(\S)", text, re.M)
        if m and uid in {int(x) for x in m.groups()} and not (state and state.group(1) in "ZX"):
            pids.append(int(entry))
    return pids


def _kill_user(uid: int, timeout: float = 10.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left; True when none is."""
    end = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < end:
        pids = _pids_of(uid)
        if not pids:
            quiet += 1
            if quiet >= 2:
                return True
            time.sleep(0.01)
            continue
        quiet = 0
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)
    return not _pids_of(uid)


def _killpg(pid: int) -> None:
    for fn in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            fn()
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _hidden_paths(extra_dirs: Sequence[Path]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Folders and files a task must not see: the instructor's, the package's keys and solutions, git history."""
    import losslab  # noqa: PLC0415

    pkg = Path(losslab.__file__).resolve().parent
    dirs = [pkg / "bank", pkg / "exercises" / "__pycache__"]
    files = [p for p in sorted((pkg / "exercises").glob("*.py")) if p.name != "__init__.py"]
    for parent in pkg.parents:
        git = parent / ".git"
        if git.is_dir():
            dirs.append(git)
            break
        if git.is_file():
            m = re.match(r"gitdir:\s*(.+)", git.read_text().strip())
            if m:
                gitdir = Path(m.group(1)) if Path(m.group(1)).is_absolute() else parent / m.group(1)
                common = gitdir / "commondir"
                dirs.append((gitdir / common.read_text().strip()).resolve() if common.exists() else gitdir.resolve())
            break
    dirs += [Path(d).resolve() for d in extra_dirs]
    uniq = []
    for d in dirs:
        if d.is_dir() and str(d) not in uniq and str(d) != "/":
            uniq.append(str(d))
    return tuple(uniq), tuple(str(f) for f in files)


def _reopen_paths() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Folders the task's user cannot cross on the way to the interpreter and its libraries."""
    import sys  # noqa: PLC0415

    needed = {Path(p).resolve() for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable),
                                          *[q for q in sys.path if q]] if p and os.path.exists(p)}
    closed: dict[str, set[str]] = {}
    for n in needed:
        for a in reversed(n.parents):  # from / down
            if a == Path("/"):
                continue
            if not os.stat(a).st_mode & 0o001:
                rel = n.relative_to(a).parts
                if rel:
                    closed.setdefault(str(a), set()).add(str(a / rel[0]))
                break
    return tuple((a, tuple(sorted(subs))) for a, subs in sorted(closed.items()))


# --- running tasks (parent side) -----------------------------------------------------------

class _Stopped(BaseException):
    """The task's process is gone or was stopped: no further call can be answered."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class _Task:
    student: str
    kind: str  # "exercise" or "run"
    payload: tuple
    limit: float
    item: Any = None
    secret: str = ""
    records: list[dict] = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    stopped: tuple[str, str] | None = None
    error: str = ""
    seconds: float = 0.0
    conn: Any = None
    proc: Any = None
    deadline: float = 0.0  # a backstop: the limit counts only the time spent waiting for the sandbox (``used``)
    used: float = 0.0
    rss_cap_kb: int = 0
    limits: Any = None


_CHECKS = threading.Lock()  # grader-side check code runs one at a time (checks may seed torch's global RNG)
_START = threading.Lock()
_CTX: dict[str, Any] = {}


def _context():
    if "ctx" not in _CTX:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _CTX["ctx"] = ctx
    return _CTX["ctx"]


def _start_without_main(p: Any) -> None:
    """Start ``p`` without re-running the caller's ``__main__`` in the child."""
    import sys  # noqa: PLC0415
    import types  # noqa: PLC0415

    with _START:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            try:
                p.start()
            except (ConnectionError, EOFError):  # the fork server is gone: start a new one, once
                from multiprocessing import forkserver  # noqa: PLC0415

                fs = forkserver._forkserver  # noqa: SLF001
                fs._forkserver_address = None  # noqa: SLF001
                fs._forkserver_alive_fd = None  # noqa: SLF001
                fs._forkserver_pid = None  # noqa: SLF001
                p.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def _receive(t: _Task) -> dict:
    """The next message from the task's process, waiting at most until its deadline (data only)."""
    from ._wire import MAX_BYTES, WireError, loads  # noqa: PLC0415

    held = _CHECKS.locked() and getattr(_tls, "holds", False)
    if held:
        _tls.holds = False
        _CHECKS.release()
    began = time.monotonic()
    try:
        while True:
            if t.conn.poll(0.02):
                try:
                    raw = t.conn.recv_bytes(MAX_BYTES)
                except OSError as err:
                    if "too long" in str(err) or "bad message length" in str(err):
                        raise _Stopped("error", "the sandbox sent a message over the size limit") from None
                    raise _Stopped(*_exit_reason(t)) from None
                except EOFError:
                    raise _Stopped(*_exit_reason(t)) from None
                try:
                    msg = loads(raw)
                except WireError as err:
                    raise _Stopped("error", f"the sandbox sent something that is not data ({err})") from None
                if not isinstance(msg, dict):
                    raise _Stopped("error", "the sandbox sent something that is not a message")
                return msg
            if not t.proc.is_alive():
                if t.conn.poll(0):
                    continue
                raise _Stopped(*_exit_reason(t))
            now = time.monotonic()
            if t.used + (now - began) > t.limit or now > t.deadline:
                raise _Stopped("timeout", f"stopped after the time limit of {t.limits.time_s:g} s (an infinite loop?)")
            if _vm_kb(t.proc.pid, "VmRSS") > t.rss_cap_kb:
                raise _Stopped("memory", f"stopped for using more than the memory limit of {t.limits.memory_mb} MiB")
    finally:
        t.used += time.monotonic() - began
        if held:
            _CHECKS.acquire()
            _tls.holds = True


_tls = threading.local()


def _exit_reason(t: _Task) -> tuple[str, str]:
    t.proc.join(2)
    code = t.proc.exitcode
    if code == -signal.SIGXCPU:
        return "timeout", f"stopped after using {t.limits.time_s:g} s of CPU time"
    if code is not None and code < 0:
        return "error", f"the process was killed by signal {-code}"
    return "error", f"the code ended the process (exit {code})"


class _Remote:
    """The student's function as the grader's checks see it: every call is a round trip of plain data."""

    def __init__(self, t: _Task, entry: str) -> None:
        self.t, self.__name__ = t, entry
        self.calls: list[tuple[tuple, dict, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ._wire import WireError, decode, dumps, encode  # noqa: PLC0415

        before = (_clone(args), _clone(kwargs))
        objects: list = []
        try:
            payload = dumps({"args": encode(args, objects), "kwargs": encode(kwargs, objects)})
        except WireError as err:
            raise TypeError(f"this check's inputs cannot be sent to the sandbox ({err})") from None
        try:
            self.t.conn.send_bytes(payload)
        except (OSError, ValueError):
            raise _Stopped(*_exit_reason(self.t)) from None
        reply = _receive(self.t)
        if reply.get("todo") is True:
            raise NotImplementedError()
        if "raised" in reply:
            name = str(reply.get("raised"))
            name = name if name.isidentifier() else "Exception"
            raise type(name, (Exception,), {})(str(reply.get("message", ""))[:300])
        try:
            out = decode(reply["ok"], objects)
            states = reply["state"]
            if type(states) is not list or len(states) != len(objects):
                raise WireError("the inputs' state does not match the inputs")
            for obj, st in zip(objects, states):
                _apply_state(obj, st)
        except (WireError, KeyError, TypeError, ValueError) as err:
            raise TypeError(f"the output cannot be checked ({err})") from None
        self.calls.append((*before, out))
        return out


def _apply_state(obj: Any, st: Any) -> None:
    import torch  # noqa: PLC0415

    from ._wire import WireError, decode  # noqa: PLC0415

    if isinstance(obj, torch.Tensor):
        new = decode(st)
        if not isinstance(new, torch.Tensor):
            raise WireError("expected a tensor")
        with torch.no_grad():
            if new.shape == obj.shape and new.dtype == obj.dtype:
                if not torch.equal(new, obj.detach()):
                    obj.copy_(new)
            else:
                obj.data = new
    elif isinstance(obj, torch.Generator):
        new = decode(st)
        obj.set_state(new.get_state())
    else:  # a Value
        if type(st) is not dict or set(st) != {"value", "grad"}:
            raise WireError("expected a Value's state")
        from ._wire import _num  # noqa: PLC0415

        obj.data, obj.grad = _num(st["value"]), _num(st["grad"])


def _clone(x: Any) -> Any:
    """A deep copy of check inputs: tensors cloned, generators with the same state, Values copied."""
    import torch  # noqa: PLC0415

    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, torch.Generator):
        g = torch.Generator()
        g.set_state(x.get_state())
        return g
    if isinstance(x, (list, tuple)):
        items = [_clone(v) for v in x]
        return tuple(items) if isinstance(x, tuple) else items
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    if hasattr(x, "_backward") and hasattr(x, "grad") and hasattr(x, "data"):
        v = type(x)(float(x.data))
        v.grad = x.grad
        return v
    if hasattr(x, "copy") and type(x).__module__ == "numpy":
        return x.copy()
    return x


def _perturb(x: Any, rng: random.Random, changed: list) -> Any:
    """Hidden inputs: float tensors, arrays and float lists rescaled by a drawn factor, generators reseeded."""
    import torch  # noqa: PLC0415

    if isinstance(x, torch.Tensor):
        if x.is_floating_point() and x.numel() > 0:
            changed.append(1)
            return x * math.exp(rng.uniform(-0.5, 0.5))
        return x
    if isinstance(x, torch.Generator):
        changed.append(1)
        return torch.Generator().manual_seed(rng.getrandbits(62))
    if isinstance(x, list) and x and all(type(v) is float for v in x):
        changed.append(1)
        f = math.exp(rng.uniform(-0.5, 0.5))
        return [v * f for v in x]
    if isinstance(x, (list, tuple)):
        items = [_perturb(v, rng, changed) for v in x]
        return tuple(items) if isinstance(x, tuple) else items
    if isinstance(x, dict):
        return {k: _perturb(v, rng, changed) for k, v in x.items()}
    if type(x) is float and abs(x) > 1:
        changed.append(1)
        return x * math.exp(rng.uniform(-0.2, 0.2))
    if hasattr(x, "_backward") and hasattr(x, "grad") and hasattr(x, "data"):
        changed.append(1)
        return type(x)(float(x.data) * math.exp(rng.uniform(-0.5, 0.5)))
    if type(x).__module__ == "numpy" and getattr(x, "dtype", None) is not None and x.dtype.kind == "f":
        changed.append(1)
        return x * math.exp(rng.uniform(-0.5, 0.5))
    return x


def _same(a: Any, b: Any, where: str = "the output") -> str:
    """``""`` when ``a`` (the student's) matches ``b`` (the reference's), else what differs."""
    import torch  # noqa: PLC0415

    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            return f"{where}: expected a tensor, got {type(a).__name__}"
        if a.shape != b.shape:
            return f"{where}: shape {tuple(a.shape)}, expected {tuple(b.shape)}"
        if b.is_floating_point() or b.is_complex():
            tight = b.dtype == torch.float64 or b.dtype == torch.complex128
            ok = torch.allclose(a.detach().to(b.dtype), b.detach(), rtol=1e-6 if tight else 1e-4, atol=1e-9 if tight else 1e-6, equal_nan=True)
        else:
            ok = a.dtype == b.dtype and torch.equal(a.detach(), b.detach())
        return "" if ok else f"{where} differs from the reference solution's"
    if hasattr(b, "_backward") and hasattr(b, "grad") and hasattr(b, "data"):
        if not (hasattr(a, "_backward") and hasattr(a, "data")):
            return f"{where}: expected a Value, got {type(a).__name__}"
        if not math.isclose(float(a.data), float(b.data), rel_tol=1e-9, abs_tol=1e-12):
            return f"{where}: value {float(a.data):.6g}, expected {float(b.data):.6g}"
        grads = []
        for v in (a, b):
            for ch in v._prev:
                ch.grad = 0.0
            v.grad = 1.0
            v._backward()
            grads.append([float(ch.grad) for ch in v._prev])
        if len(grads[0]) != len(grads[1]) or not all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(*grads)):
            return f"{where}: the backward rule gives {grads[0]}, expected {grads[1]}"
        return ""
    if type(b) in (bool, type(None), str):
        return "" if type(a) is type(b) and a == b else f"{where}: {a!r}, expected {b!r}"
    if type(b) in (int, float):
        if type(a) not in (int, float) and not isinstance(a, torch.Tensor):
            return f"{where}: expected a number, got {type(a).__name__}"
        x, y = float(a), float(b)
        ok = (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-7, abs_tol=1e-10)
        return "" if ok else f"{where}: {x:.6g}, expected {y:.6g}"
    if isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or len(a) != len(b):
            return f"{where}: expected a sequence of length {len(b)}"
        for k, (x, y) in enumerate(zip(a, b)):
            why = _same(x, y, f"{where}[{k}]")
            if why:
                return why
        return ""
    if isinstance(b, dict):
        if not isinstance(a, dict) or set(a) != set(b):
            return f"{where}: expected a dict with keys {sorted(map(str, b))}"
        for k in b:
            why = _same(a[k], b[k], f"{where}[{k!r}]")
            if why:
                return why
        return ""
    if type(b).__module__ == "numpy":
        import numpy as np  # noqa: PLC0415

        try:
            ok = np.allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9, equal_nan=True)
        except (TypeError, ValueError):
            ok = False
        return "" if ok else f"{where} differs from the reference solution's"
    return "" if a == b else f"{where} differs from the reference solution's"


def _hidden_twin(c: Any, calls: list, remote: _Remote, ref: Any, rng: random.Random) -> Any:
    """The check ``c`` again, on inputs drawn from the secret, compared with the reference solution here."""
    name = f"{c.name} (hidden inputs)"
    applied = 0
    for args, kwargs, got_visible in calls[:6]:
        try:
            want_visible = ref(*_clone(args), **_clone(kwargs))
        except Exception:  # noqa: BLE001
            continue
        if _same(got_visible, want_visible):
            continue  # the visible check tolerates a different answer here (statistical, or another valid one)
        changed: list = []
        a2, k2 = _perturb(args, rng, changed), _perturb(kwargs, rng, changed)
        if not changed:
            continue
        try:
            want = ref(*_clone(a2), **_clone(k2))
            again = ref(*_clone(a2), **_clone(k2))
        except Exception:  # noqa: BLE001  (the drawn inputs are outside what the reference accepts)
            continue
        if _same(again, want):
            continue  # the reference itself is not repeatable on these inputs
        try:
            got = remote(*_clone(a2), **_clone(k2))
        except NotImplementedError:
            return CheckOutcome(name, "todo")
        except AssertionError as err:
            return CheckOutcome(name, "fail", f"on inputs drawn at grading time: {err}", c.hint)
        except Exception as err:  # noqa: BLE001
            return CheckOutcome(name, "fail", f"on inputs drawn at grading time, raised {type(err).__name__}: {err}", c.hint)
        applied += 1
        try:
            why = _same(got, want)
        except AssertionError as err:
            why = str(err)
        if why:
            return CheckOutcome(name, "fail", f"on inputs drawn at grading time, {why}", c.hint)
    return CheckOutcome(name, "pass") if applied else None


def _secret_rng(secret: str, *parts: str) -> random.Random:
    digest = hmac.new(secret.encode(), "\0".join(("hidden", *parts)).encode(), hashlib.sha256).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _drive_exercise(t: _Task) -> None:
    from .exercises import Exercise, exercise  # noqa: PLC0415

    first = _receive(t)
    if "error" in first:
        t.error = str(first["error"])[:500]
        if first.get("sandbox"):
            raise RuntimeError(t.error)
        return
    if first.get("ready") is not True:
        t.error = "the sandbox did not start the function"
        return
    ex = exercise(t.item)
    remote = _Remote(t, ex.entry)
    rng = _secret_rng(t.secret, t.student, ex.id)
    with _CHECKS:
        _tls.holds = True
        try:
            ref = ex.reference()
            visible = []
            for c in ex.checks:
                remote.calls = []
                t.outcomes.append(Exercise.run_check(c, remote, ref))
                visible.append((c, list(remote.calls)))
            if t.secret:
                for c, calls in visible:
                    twin = _hidden_twin(c, calls, remote, ref, rng)
                    if twin is not None:
                        t.outcomes.append(twin)
        finally:
            _tls.holds = False


def _drive_run(t: _Task) -> None:
    while True:
        msg = _receive(t)
        if "sandbox" in msg:
            raise RuntimeError(str(msg["sandbox"]))
        t.records.append(msg)
        if msg.get("stage") == "done":
            return


def _run_one(t: _Task, jail: _Jail, uid: int | None) -> None:
    ctx = _context()
    parent, child = ctx.Pipe(duplex=True)
    target = _exercise_child if t.kind == "exercise" else _run_child
    p = ctx.Process(target=target, args=(*t.payload, child, jail), daemon=True)
    _start_without_main(p)  # the first start waits for the server's imports: the clock starts after it
    start = time.monotonic()
    t.deadline = start + 10 * t.limit + 60  # the grader's own check code does not count against the student
    child.close()
    t.conn, t.proc = parent, p
    try:
        (_drive_exercise if t.kind == "exercise" else _drive_run)(t)
    except _Stopped as s:
        t.stopped = (s.status, s.message)
    finally:
        t.seconds = time.monotonic() - start
        try:
            parent.close()
        except OSError:
            pass
        if uid is not None:
            p.kill()
            if not _kill_user(uid):
                raise RuntimeError(f"processes of the grading user {uid} survive SIGKILL; stopping before writing results")
        else:
            _killpg(p.pid)
        p.join(10)


def _run_all(tasks: list[_Task], limits: Limits, root: Path, hide: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    """Run every task, ``limits.workers`` at a time, each in its own slot (user) and folder."""
    held = _claim_slots(limits.workers) if isolation() == "user" else []
    try:
        _run_in_slots(tasks, limits, root, hide, _grading_users([k for k, _ in held]) if held else [None] * limits.workers)
    finally:
        for _, fd in held:
            os.close(fd)


def _run_in_slots(tasks: list[_Task], limits: Limits, root: Path, hide: tuple[tuple[str, ...], tuple[str, ...]],
                  users: list) -> None:
    import queue  # noqa: PLC0415

    if isolation() == "user":
        for uid, _ in users:  # type: ignore[misc]
            if not _kill_user(uid):
                raise RuntimeError(f"cannot stop leftover processes of grading user {uid}")
    os.chmod(root, 0o711)
    empty = root / "empty"
    empty.write_text("")
    os.chmod(empty, 0o444)
    slots: queue.Queue = queue.Queue()
    for u in users:
        slots.put(u)
    work: queue.Queue = queue.Queue()
    for k, t in enumerate(tasks):
        t.limits = limits
        t.rss_cap_kb = (limits.memory_mb + 1536) * 1024
        work.put((k, t))
    failures: list[BaseException] = []

    def worker() -> None:
        while not failures:
            try:
                k, t = work.get_nowait()
            except queue.Empty:
                return
            user = slots.get()
            d = root / f"t{k}-{os.urandom(6).hex()}"
            d.mkdir(mode=0o700)
            uid = None
            if user is not None:
                uid, gid = user
                os.chown(d, uid, gid)
            staging = root / f"s{k}"
            staging.mkdir(mode=0o700)
            jail = _Jail(str(d), limits.memory_mb, limits.time_s + 1, uid, user[1] if user else None,
                         hide[0] if user else (), hide[1] if user else (), str(empty),
                         _reopen_paths() if user else (), str(staging))
            try:
                _run_one(t, jail, uid)
            except BaseException as err:  # noqa: BLE001
                failures.append(err)
            finally:
                shutil.rmtree(d, ignore_errors=True)
                slots.put(user)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(limits.workers, max(1, len(tasks))))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if failures:
        raise RuntimeError(f"grading stopped: {failures[0]}") from failures[0]
    if isolation() == "user":
        for uid, _ in users:  # type: ignore[misc]
            if not _kill_user(uid):
                raise RuntimeError(f"processes of grading user {uid} are still alive; no result was written")


# --- grading ----------------------------------------------------------------------------------

_MEMORY = re.compile(r"MemoryError|can't allocate memory|out of memory|std::bad_alloc", re.I)


def _grade_exercise(it: Any, t: _Task, limits: Limits) -> tuple[float, str, str]:
    from .exercises import Report  # noqa: PLC0415

    if t.stopped:
        return 0.0, t.stopped[0], t.stopped[1]
    if t.error:
        return 0.0, "memory" if _MEMORY.search(t.error) else "error", (
            f"ran out of memory (limit {limits.memory_mb} MiB): {t.error}" if _MEMORY.search(t.error) else t.error)
    report = Report(it.id, tuple(t.outcomes))
    msg = report.to_text()
    passed, total = report.passed, report.total
    if not report.attempted and passed == 0:
        return 0.0, "unanswered", msg
    status = "correct" if total and passed == total else "partial" if passed else "wrong"
    if _MEMORY.search(msg) and passed < total:
        status = "memory"
    return (it.points * passed / total if total else 0.0), status, msg
def _variant(manifest: dict, student: str, parsed: _Parsed) -> tuple[str, str]:
    """Whose per-student choice order and numbers this submission was given, and a note when not its own."""
    roster = manifest.get("students") or []
    if not roster:
        return "", ""
    base = student.split(" [", 1)[0]
    if base in roster:
        return base, ""
    meta = (parsed.nb.metadata.get("losslab", {}) if parsed.nb is not None else {}) or {}
    claimed = meta.get("student") if isinstance(meta, dict) else None
    if isinstance(claimed, str) and claimed in roster:
        return claimed, f"{base!r} is not in the roster: graded with the variant of {claimed!r} written in the notebook (check that it is theirs)"
    return "", f"{base!r} is not in the roster and the notebook names no student of it: graded with the common variant"


def grade(manifest: str | Path | dict, submissions: str | Path | Sequence[tuple[str, str | Path]], out: str | Path,
          *, limits: Limits | None = None, strict_checks: bool = True) -> list[Submission]:
    """Grade every submission and write ``grades.csv``, ``grades.json`` and ``feedback/`` under ``out``.

    Parameters
    ----------
    manifest : path or dict
        The assignment manifest (``<name>.assignment.json``), with the
        assignment's secret: keep it with the instructor.
    submissions : folder or sequence of (student, path)
        A folder as :func:`find_submissions` reads it, or explicit pairs.
    out : path
        Where to write the grade sheet and the feedback.
    limits : Limits
        Wall-clock seconds and memory per task, and how many tasks run at once.
    strict_checks : bool
        If True (the default), a deleted or edited visible check cell gives
        zero on the exercise concerned.

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
    from .assign import assignment_from_manifest, judge, parse_response, shown_question  # noqa: PLC0415

    limits = limits or Limits()
    manifest_path = None
    if not isinstance(manifest, dict):
        manifest_path = Path(manifest).resolve()
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    items = assignment_from_manifest(manifest)
    secret = str(manifest.get("secret", ""))
    root_folder = None
    if isinstance(submissions, (str, Path)):
        root_folder = Path(submissions).resolve()
        pairs = [(s, p) for s, p in find_submissions(root_folder)]
    else:
        pairs = [(s, Path(p)) for s, p in submissions]
    out = Path(out).resolve()
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    hide = [out]
    if manifest_path is not None:
        hide.append(manifest_path.parent)
    if root_folder is not None:
        hide.append(root_folder)
    hide += list({Path(p).resolve().parent for _, p in pairs if not Path(p).is_symlink()})

    results: list[Submission] = []
    tasks: list[_Task] = []
    plan: dict[int, dict] = {}
    for student, path in pairs:
        sub = Submission(student, path, [ItemResult(it.id, it.points) for it in items])
        results.append(sub)
        why = _refusal(path, root_folder)
        parsed = _Parsed(error=f"refused: the submission {why}") if why else _read_regular(path)
        state: dict[str, Any] = {"parsed": parsed, "answers": {}, "exercise_tasks": {}, "run": None}
        plan[id(sub)] = state
        if parsed.error:
            for r in sub.items:
                r.status, r.message = ("refused" if why else "invalid"), parsed.error
            continue
        sub.variant, note = _variant(manifest, student, parsed)
        if note:
            sub.notes.append(note)
        cells = parsed.cells
        checker = [(i, why) for i, s, _ in cells if (why := _redefines_checker(s))]
        need_run = False
        for it, r in zip(items, sub.items):
            if it.is_question:
                cell, note = _question_cell(cells, it.id)
                if note:
                    sub.notes.append(note)
                if cell is None:
                    r.status, r.message = "missing", f"no answer cell: answer({it.id!r}, ...) is not in the notebook"
                    continue
                src = next(s for i, s, _ in cells if i == cell)
                how, value = _literal_answer(src, it.id)
                state["answers"][it.id] = (cell, how, value)
                if how == "expression" or it.run_question is not None:
                    need_run = True
            else:
                ex = it.exercise()
                cell, src, note = _exercise_cell(cells, ex.id, ex.entry)
                if note:
                    sub.notes.append(note)
                if cell is None:
                    r.status, r.message = "missing", f"no cell defines {ex.entry}(): the answer cell was deleted"
                    continue
                expected = f"losslab.check({ex.id!r}, {ex.entry})"
                check_cells = [s for _, s, m in cells if m.get("check") == ex.id and ex.id in s] or \
                              [s for _, s, _ in cells if f"check({ex.id!r}" in s or f'check("{ex.id}"' in s]
                if strict_checks and not check_cells:
                    r.status, r.message = "check-cell", f"the check cell `{expected}` was deleted"
                    continue
                if strict_checks and expected not in check_cells[-1]:
                    r.status, r.message = "check-cell", f"the check cell was edited (it must stay `{expected}`)"
                    continue
                if strict_checks and checker:
                    i, why = checker[0]
                    r.status, r.message = "checker", f"code cell {i} {why}: redefining the checker gives zero on exercises"
                    continue
                tamper = _static_tampering(src)
                if tamper:
                    r.status, r.message = "tampered", tamper + ": the answer cell may only define the function"
                    continue
                t = _Task(student, "exercise", (src, ex.entry), limits.time_s, item=ex.id,
                          secret=(secret + "\0" + sub.variant) if secret else "")
                state["exercise_tasks"][it.id] = t
                tasks.append(t)
        if need_run:
            keys = {it.id: it.run_question.key for it in items if it.run_question is not None}
            aid = {cell: qid for qid, (cell, _, _) in state["answers"].items()}
            run_cells = [(i, s, aid.get(i, "")) for i, s, _ in cells]
            t = _Task(student, "run", (run_cells, keys), limits.time_s)
            state["run"] = t
            tasks.append(t)

    if isolation() != "user":
        import warnings  # noqa: PLC0415

        warnings.warn("losslab grade is not running as root: students' code runs as this user, without a separate "
                      "user and mount namespace (see the Teaching page's threat model)", RuntimeWarning, stacklevel=2)
    with tempfile.TemporaryDirectory(prefix="losslab-grade-") as tmp:
        _run_all(tasks, limits, Path(tmp), _hidden_paths(hide) if isolation() == "user" else ((), ()))

    for sub in results:
        state = plan[id(sub)]
        run: _Task | None = state["run"]
        records = run.records if run else []
        run_answers = {r["answer"]: r for r in records if "answer" in r}
        run_keys = {r["key"]: r for r in records if "key" in r}
        run_cells = {r["cell"]: r for r in records if "cell" in r and "error" in r}
        if run is not None:
            for i, r in sorted(run_cells.items(), key=lambda kv: str(kv[0])):
                if r.get("error"):
                    sub.notes.append(f"code cell {i} raised {r['error']}")
            if run.stopped:
                started = [r["cell"] for r in records if r.get("stage") == "start"]
                sub.notes.append(f"the notebook run stopped at code cell {started[-1] if started else '?'}: {run.stopped[1]}")
        for it, r in zip(items, sub.items):
            if r.status != "pending":
                continue
            if not it.is_question:
                r.score, r.status, r.message = _grade_exercise(it, state["exercise_tasks"][it.id], limits)
                continue
            q = shown_question(it, secret, sub.variant)
            cell, how, value = state["answers"][it.id]
            why_run = ""
            if run is not None and (how != "literal" or it.run_question is not None):
                if cell in run_cells and run_cells[cell].get("error"):
                    why_run = f"the answer cell raised {run_cells[cell]['error']}"
                elif cell not in run_cells:
                    why_run = f"the notebook run never finished the answer cell: {(run.stopped or ('error', 'the run ended early'))[1]}"
            if how == "syntax":
                r.status, r.message = "error", "the answer cell has a syntax error"
                continue
            if how == "expression":
                if why_run:
                    r.status, r.message = "error", why_run
                    continue
                rec = run_answers.get(it.id, {})
                if "value" not in rec:
                    r.status, r.message = "error", str(rec.get("error", "the answer cell ran but recorded no answer"))
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
                    r.status, r.message = "error", why_run or f"the key could not be computed from your run ({rk.get('error', 'the run stopped before it')})"
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
    _name_feedback(results)
    _write(out, manifest, items, results)
    return results


def _fmt(x: float) -> str:
    return f"{round(x, 4):g}"


def _cell(text: str) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r", "|", "%") else text


def _name_feedback(results: list[Submission]) -> None:
    """Unique feedback file names: ASCII-folded, safe, case-insensitively distinct; collisions get a suffix."""
    taken: dict[str, str] = {}
    for sub in results:
        folded = unicodedata.normalize("NFKD", sub.student).encode("ascii", "ignore").decode()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", folded).strip("._") or "student"
        name, k = safe, 1
        while name.lower() in taken:
            k += 1
            name = f"{safe}-{k}"
        if name != safe:
            sub.notes.append(f"feedback file renamed to {name}.md: {taken[safe.lower()]!r} already writes {safe}.md")
        taken[name.lower()] = sub.student
        sub.feedback = f"{name}.md"


def _write(out: Path, manifest: dict, items: list, results: list[Submission]) -> None:
    """grades.csv, grades.json and feedback/, all from the same results, written after every task is gone."""
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *[_cell(it.id) for it in items], "total"])
        w.writerow(["(max)", *[_fmt(it.points) for it in items], _fmt(sum(it.points for it in items))])
        for sub in results:
            w.writerow([_cell(sub.student), *[_fmt(r.score) for r in sub.items], _fmt(sub.total)])
    for sub in results:
        lines = [f"# {manifest.get('title', manifest.get('name', 'Assignment'))}: feedback for {sub.student}", "",
                 f"Total: **{_fmt(sub.total)} / {_fmt(sub.max)}**", ""]
        for r in sub.items:
            lines += [f"## `{r.id}`: {_fmt(r.score)} / {_fmt(r.points)} ({r.status})", "", r.message.strip() or "-", ""]
        if sub.notes:
            lines += ["## Notes on the run", ""] + [f"- {n}" for n in sub.notes] + [""]
        (out / "feedback" / sub.feedback).write_text("\n".join(lines), encoding="utf-8")
    (out / "grades.json").write_text(json.dumps(
        [{"student": s.student, "total": s.total, "feedback": f"feedback/{s.feedback}", "variant": s.variant,
          "items": [vars(r) for r in s.items], "notes": s.notes} for s in results],
        indent=1, default=str) + "\n", encoding="utf-8")
