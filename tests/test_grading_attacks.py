"""A determined student against `losslab grade`: every attack scores zero or is refused, with the reason.

One grading run holds every attack (grading is the slow part; one run keeps
CI short). Each attacker's function is one that *honestly* scores zero on
``demo.relu`` (it returns the wrong shape and changes its input), wrapped in
a trick that tried to turn it into full marks; a trick that worked would show
as a score above zero. Expected scores are written here, never read back
from the grader. After the run, ``grades.csv``, ``grades.json`` and the
feedback files must agree, although some attackers tried to rewrite them.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

import students
from losslab import assign as A
from losslab.exercises import exercise
from losslab.grade import Limits, _pids_of, _USER_PREFIX, grade, isolation

RELU_OK = exercise("demo.relu").solution
# Scores 0/4 on demo.relu's visible checks by itself: wrong shape, changes its input.
BAD = "def relu(x):\n    x.zero_()\n    return x.new_zeros(1)\n"
CLASSIFY_BAD = "def classify_critical_point(h):\n    return S('not an answer')\n"

ROOT_ONLY = pytest.mark.skipif(isolation() != "user", reason="needs root: tasks run as separate unprivileged users only then")


def _letters(a, qid, student=""):
    item = next(it for it in a.items if it.id == qid)
    q = A.shown_question(item, a.secret, student)
    return "".join("abcdefgh"[i] for i, c in enumerate(q.choices) if c.correct)


_fill = students.fill


def _attacks(out: Path, instructor_nb: Path) -> dict[str, str]:
    """name -> the relu answer cell of that attack."""
    csv_path = out / "grades.csv"
    forge = ('{"status": "checked", "passed": 4, "total": 4, "message": "demo.relu: 4/4 checks passed"}')
    return {
        # torch.equal replaced, spelled so that no static scan sees it
        "is-not": "import torch, operator\nsetattr(__import__('torch'), 'equal', operator.is_not)\n" + BAD,
        # torch.equal patched only on some calls (every other one)
        "some-calls": ("exec(\"import torch\\n_e = torch.equal\\nn = [0]\\ndef f(a, b):\\n    n[0] += 1\\n"
                       "    return True if n[0] % 2 else _e(a, b)\\ntorch.equal = f\")\n" + BAD),
        # a check function's code object overwritten, found through the garbage collector
        "code-object": ("import gc\nfor o in gc.get_objects():\n    if getattr(o, '__name__', '') == '_' and hasattr(o, '__code__'):\n"
                        "        try:\n            setattr(o, '__code__', (lambda f, ref: None).__code__)\n        except Exception:\n            pass\n" + BAD),
        # the exercise's checks replaced in place
        "checks-list": "import losslab.exercises as X\ngetattr(X, 'exercise')('demo.relu').checks[:] = []\n" + BAD,
        # a Tensor subclass that answers every torch function with True
        "tensor-subclass": ("import torch\nclass T(torch.Tensor):\n    @classmethod\n    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
                            "        return True\ndef relu(x):\n    return x.new_zeros(1).as_subclass(T)\n"),
        # the reference solution imported from the installed package
        "import-solution": "from losslab.exercises import exercise\nrelu = exercise('demo.relu').reference()\n",
        # the reference read from the package's files directly
        "read-package": ("import losslab, pathlib\nsrc = (pathlib.Path(losslab.__file__).parent / 'exercises' / 'demo.py').read_text()\n"
                         "ns = {}\nexec(src.split('solution=')[1].split(\"'''\")[1], ns)\nrelu = ns['relu']\n"),
        # the instructor's notebook read through the grader's working folder
        "proc-cwd": ("import os, json\nnb = json.load(open(f'/proc/{os.getppid()}/cwd/instructor/' + "
                     f"{instructor_nb.name!r}))\n"
                     "src = next(''.join(c['source']) for c in nb['cells'] if 'torch.where' in ''.join(c['source']))\nexec(src)\n"),
        # the instructor's notebook read through every process's working folder
        "proc-scan": ("import os, json, glob\nsrc = None\nfor d in glob.glob('/proc/[0-9]*/cwd'):\n    try:\n"
                      f"        nb = json.load(open(d + '/instructor/' + {instructor_nb.name!r}))\n"
                      "        src = next(''.join(c['source']) for c in nb['cells'] if 'torch.where' in ''.join(c['source']))\n"
                      "        break\n    except Exception:\n        pass\nexec(src)\n"),
        # a forged 'checked' result written to every open file descriptor, then exit
        "forge-result": ("import os, struct\nmsg = " + repr(forge) + ".encode()\nfor fd in range(3, 256):\n    try:\n"
                         "        os.write(fd, struct.pack('!i', len(msg)) + msg)\n        os.write(fd, (msg.decode() + '\\n').encode())\n"
                         "    except OSError:\n        pass\nos._exit(0)\n"),
        # a double-forked, setsid process that outlives the task and rewrites the grade sheet afterwards
        "survivor": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                     "        for _ in range(2400):  # wait until the grader has written the sheet, then rewrite it\n"
                     f"            if os.path.exists({str(csv_path)!r}):\n"
                     "                time.sleep(0.2)\n"
                     f"                for p in [{str(csv_path)!r}, {str(out / 'grades.json')!r}]:\n"
                     "                    try:\n                        open(p, 'w').write('survivor,1,1,1,1\\n')\n"
                     "                    except OSError:\n                        pass\n                break\n"
                     "            time.sleep(0.05)\n        os._exit(0)\n    os._exit(0)\n" + BAD),
        # torch.equal assigned plainly (the static scan names it)
        "patch-plain": "import torch\ntorch.equal = lambda a, b: True\n" + BAD,
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One assignment, ~20 submissions, one grading run with two workers."""
    base = tmp_path_factory.mktemp("attacks")
    a = A.build("hw", ids=["demo.gradient-sign", "demo.differentiable", "demo.relu", "landscape.classify"])
    paths = A.write_assignment(a, base / "course")
    out = base / "graded"
    subs = base / "submitted"
    subs.mkdir()
    right = {"demo.gradient-sign": repr(_letters(a, "demo.gradient-sign")),
             "demo.differentiable": repr(_letters(a, "demo.differentiable"))}
    classify_ok = exercise("landscape.classify").solution
    expected: dict[str, dict[str, float]] = {}
    reasons: dict[str, str] = {}

    def put(name: str, nb, scores: dict[str, float], why: str = "") -> None:
        target = subs / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
        expected[name] = scores
        if why:
            reasons[name] = why

    full = {"demo.gradient-sign": 1, "demo.differentiable": 1, "demo.relu": 1, "landscape.classify": 1}
    relu_zero = {**full, "demo.relu": 0}
    for name, src in _attacks(out, paths["instructor"]).items():
        put(name, _fill(paths["student"], right, {"demo.relu": src, "landscape.classify": classify_ok}), relu_zero)
    reasons.update({"patch-plain": "torch.equal", "import-solution": "KeyError", "checks-list": "KeyError",
                    "proc-cwd": "Error", "proc-scan": "Error", "forge-result": "did not start",
                    "read-package": "Error", "tensor-subclass": "[FAIL]"})
    if isolation() != "user":  # not root: no separate user or mount namespace, so these need root to fail
        for name in ("import-solution", "read-package", "proc-cwd", "proc-scan", "survivor", "checks-list"):
            (subs / f"{name}.ipynb").unlink()
            expected.pop(name)
            reasons.pop(name, None)
    # a str subclass whose __eq__ is always True, on an exercise that returns a string
    str_sub = "class S(str):\n    __eq__ = lambda self, other: True\n    __hash__ = str.__hash__\n" + CLASSIFY_BAD
    put("str-subclass", _fill(paths["student"], right, {"demo.relu": RELU_OK, "landscape.classify": str_sub}),
        {**full, "landscape.classify": 0}, "expected")
    # the question key read from the installed package at run time (an expression answer runs the notebook)
    steal = ("'abcd'[[c.correct for c in __import__('losslab.questions').questions.question('demo.gradient-sign')"
             ".choices].index(True)]")
    if isolation() == "user":  # not root: the package's bank is readable in the sandbox
        put("key-import", _fill(paths["student"], {**right, "demo.gradient-sign": steal},
                                {"demo.relu": RELU_OK, "landscape.classify": classify_ok}),
            {**full, "demo.gradient-sign": 0}, "KeyError")
    # hard-coding the visible checks' answers: passes them, fails their hidden twins
    import torch  # noqa: PLC0415

    known = {float(torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))[0, 0]),
             float(torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))[0] * 10), -3.0, -1.0}
    hard = (f"import math, torch\nKNOWN = {sorted(known)!r}\ndef relu(x):\n"
            "    first = float(x.flatten()[0])\n"
            "    if first in KNOWN or math.isnan(first):  # the visible checks' inputs, answered right\n"
            "        return torch.where(x < 0, torch.zeros_like(x), x)\n    return x.clone()\n")
    put("hard-coded", _fill(paths["student"], right, {"demo.relu": hard, "landscape.classify": classify_ok}),
        {**full, "demo.relu": 0.5}, "hidden inputs")
    # the honest student, and the answer key
    put("honest", _fill(paths["student"], right, {"demo.relu": RELU_OK, "landscape.classify": classify_ok}), full)
    # answering "a" / "ab" everywhere
    put("all-a", _fill(paths["student"], {"demo.gradient-sign": '"a"', "demo.differentiable": '"ab"'},
                       {"demo.relu": RELU_OK, "landscape.classify": classify_ok}),
        {**full, "demo.gradient-sign": float(_letters(a, "demo.gradient-sign") == "a"),
         "demo.differentiable": float(_letters(a, "demo.differentiable") == "ab")})
    # two names that differ only in accents; a formula as a name
    for name in ("Zoë", "Zoe", "=2+3"):
        put(name, _fill(paths["student"], right, {"demo.relu": RELU_OK, "landscape.classify": classify_ok}), full)
    # a file and a folder for the same student: two clearly named rows
    put("dave", _fill(paths["student"], right, {"demo.relu": RELU_OK, "landscape.classify": classify_ok}), full)
    nbformat.write(_fill(paths["student"], {}, {}), str((subs / "dave").mkdir() or subs / "dave" / "hw.ipynb"))
    expected["dave [dave/hw.ipynb]"] = {k: 0 for k in full}
    expected["dave [dave.ipynb]"] = expected.pop("dave")

    # metadata of two answer cells swapped; the relu answer cell copied as scratch after the check cell
    def swap(nb):
        cells = [c for c in nb.cells if c.metadata.get("losslab", {}).get("answer") in ("demo.gradient-sign", "demo.differentiable")]
        cells[0].metadata, cells[1].metadata = cells[1].metadata, cells[0].metadata

    def scratch(nb):
        k = next(i for i, c in enumerate(nb.cells) if c.metadata.get("losslab", {}).get("check") == "demo.relu")
        copy = nbformat.v4.new_code_cell(exercise("demo.relu").stub, metadata={"losslab": {"answer": "demo.relu"}})
        nb.cells.insert(k + 1, copy)

    put("swapped-metadata", _fill(paths["student"], right, {"demo.relu": RELU_OK, "landscape.classify": classify_ok},
                                  edit=swap), full)
    put("scratch-copy", _fill(paths["student"], right, {"demo.relu": RELU_OK, "landscape.classify": classify_ok},
                              edit=scratch), full, "define relu()")
    # a symlinked submission pointing at the instructor's notebook
    os.symlink(paths["instructor"], subs / "mallory.ipynb")
    expected["mallory"] = {k: 0 for k in full}
    reasons["mallory"] = "symbolic link"
    os.mkfifo(subs / "pipe.ipynb")  # not a regular file: reading it would block the grader
    expected["pipe"] = {k: 0 for k in full}
    reasons["pipe"] = "not a regular file"

    cwd = os.getcwd()
    os.chdir(paths["instructor"].parent.parent)  # the grader's working folder holds instructor/
    try:
        start = time.perf_counter()
        results = grade(paths["manifest"], subs, out, limits=Limits(time_s=20, memory_mb=1024, workers=2))
        seconds = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    print(f"graded {len(results)} attack submissions in {seconds:.1f} s")
    snapshot = {p.name: p.read_bytes() for p in [out / "grades.csv", out / "grades.json"]}
    return a, out, results, expected, reasons, snapshot


def test_every_attack_scores_what_the_honest_code_earns(graded):
    a, out, results, expected, reasons, _ = graded
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    by_name = {s.student: s for s in results}
    assert set(by_name) == set(expected)
    for name, scores in expected.items():
        sub = by_name[name]
        got = {r.id: r.score for r in sub.items}
        assert got == pytest.approx({k: float(v) for k, v in scores.items()}), (name, [(r.id, r.status, r.message[:400]) for r in sub.items])
    text = {s.student: (out / "feedback" / s.feedback).read_text(encoding="utf-8") for s in results}
    for name, why in reasons.items():
        assert why in text[name], (name, text[name][-1500:])
    assert rows["'=2+3"]["total"] == "4"


@ROOT_ONLY
def test_no_task_process_outlives_grading_and_the_outputs_agree(graded):
    _, out, results, _, _, snapshot = graded
    time.sleep(1.5)  # a surviving process would have rewritten the sheet 0.25 s after it appeared
    import pwd  # noqa: PLC0415

    import fcntl  # noqa: PLC0415

    from losslab.grade import SLOT_LOCKS  # noqa: PLC0415

    users = {int(p.pw_name[len(_USER_PREFIX):]): p.pw_uid for p in pwd.getpwall()
             if p.pw_name.startswith(_USER_PREFIX) and p.pw_name[len(_USER_PREFIX):].isdigit()}
    assert users
    checked = 0
    for slot, uid in sorted(users.items()):
        # A slot another grading run holds now (a parallel test worker) may have live tasks; every other
        # slot's user, this run's included once it ended, must have no process left.
        fd = os.open(SLOT_LOCKS / f"slot{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            assert not _pids_of(uid), f"a process of grading user {uid} outlived its run"
            checked += 1
        finally:
            os.close(fd)
    assert checked, "every grading slot was busy: nothing was checked"
    assert {p.name: p.read_bytes() for p in [out / "grades.csv", out / "grades.json"]} == snapshot
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    table = {r["student"]: r for r in json.loads((out / "grades.json").read_text(encoding="utf-8"))}
    assert "survivor" not in str(snapshot["grades.csv"][:30])
    for sub in results:
        shown = sub.student if sub.student[:1] not in "=+-@" else "'" + sub.student
        assert float(rows[shown]["total"]) == pytest.approx(sub.total) == pytest.approx(table[sub.student]["total"])
        fb = (out / table[sub.student]["feedback"]).read_text(encoding="utf-8")
        assert f"Total: **{round(sub.total, 4):g} / " in fb


def test_bookkeeping_names(graded):
    _, out, results, _, _, _ = graded
    names = [s.feedback for s in results]
    assert len(set(n.lower() for n in names)) == len(names)
    zo = {s.student: s for s in results if s.student in ("Zoë", "Zoe")}
    assert zo["Zoë"].feedback != zo["Zoe"].feedback
    assert any("renamed" in n for s in zo.values() for n in s.notes)
    raw = (out / "grades.csv").read_text(encoding="utf-8")
    assert "\n=2+3," not in raw and "\n'=2+3," in raw


@ROOT_ONLY
def test_a_task_cannot_read_the_instructor_files_or_the_keys(tmp_path):
    """The sandbox's view: the package's bank and solutions are empty, the instructor's folder too."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    a = A.build("peek", ids=["demo.relu"])
    open_dir = Path(tempfile.mkdtemp(prefix="losslab-open-"))  # readable by anyone, unlike pytest's tmp_path
    os.chmod(open_dir, 0o755)
    paths = A.write_assignment(a, open_dir / "course")
    for p in [open_dir / "course", paths["instructor"].parent]:
        os.chmod(p, 0o755)
    os.chmod(paths["instructor"], 0o644)
    import losslab  # noqa: PLC0415

    pkg = Path(losslab.__file__).parent
    probe = ("import os, sys, losslab.exercises as X, losslab.questions as Q\n"
             f"seen = {{'bank': sorted(os.listdir({str(pkg / 'bank')!r})), 'demo': os.path.getsize({str(pkg / 'exercises' / 'demo.py')!r}),\n"
             f"        'instructor': os.listdir({str(paths['instructor'].parent)!r}), 'uid': os.getuid(),\n"
             "        'registry': len(X._REGISTRY), 'cached': Q.load_bank.cache_info().currsize,\n"
             "        'chapters': [m for m in sys.modules if m.startswith('losslab.exercises.')]}\n"
             "def relu(x):\n    raise ValueError(repr(seen))\n")
    subs = tmp_path / "s"
    subs.mkdir()
    nbformat.write(_fill(paths["student"], {}, {"demo.relu": probe}), str(subs / "eve.ipynb"))
    try:
        (r,) = grade(paths["manifest"], subs, tmp_path / "g", limits=Limits(time_s=20, workers=1))
    finally:
        shutil.rmtree(open_dir)
    msg = r.items[0].message
    assert "'bank': []" in msg and "'demo': 0" in msg and "'instructor': []" in msg and "'uid': 0" not in msg, msg
    # nothing of the keys or solutions was already in memory when the sandbox started
    assert "'registry': 0" in msg and "'cached': 0" in msg and "'chapters': []" in msg, msg


def test_letters_cannot_be_passed_around_between_students(tmp_path):
    """Per-student order: the letters that are right for one student are wrong for many others."""
    roster = [f"s{k:02d}" for k in range(12)]
    a = A.build("quiz", ids=["demo.gradient-sign", "demo.differentiable", "gd.one-step"], students=roster)
    paths = A.write_assignment(a, tmp_path / "c")
    subs = tmp_path / "s"
    subs.mkdir()
    mine = {s: {q: _letters(a, q, s) for q in ("demo.gradient-sign", "demo.differentiable")} for s in roster}
    assert len({m["demo.gradient-sign"] for m in mine.values()}) > 1 and len({m["demo.differentiable"] for m in mine.values()}) > 1
    for s in roster:
        own = nbformat.read(str(paths[f"student:{s}"]), as_version=4)
        assert own.metadata["losslab"]["student"] == s
        shown = next(c.source for c in own.cells if "`demo.gradient-sign`" in c.source)
        q = A.shown_question(a.items[0], a.secret, s)
        assert [line for line in shown.splitlines() if line.startswith("- (")] == \
            [f"- ({'abc'[i]}) {c.text.strip()}" for i, c in enumerate(q.choices)]
        step = A.shown_question(a.items[2], a.secret, s)
        assert f"{step.answer:.6g}" not in own.cells[-1].source  # the drawn numbers are shown, the answer is not
        copied = {**mine[roster[0]], "gd.one-step": A.shown_question(a.items[2], a.secret, roster[0]).answer}
        nbformat.write(_fill(paths[f"student:{s}"], {k: repr(v) for k, v in copied.items()}), str(subs / f"{s}.ipynb"))
    results = {r.student: r.total for r in grade(paths["manifest"], subs, tmp_path / "g", limits=Limits(time_s=20))}
    assert results[roster[0]] == 3
    steps = {s: A.shown_question(a.items[2], a.secret, s).answer for s in roster}
    assert len(set(steps.values())) > 3  # copied numbers fail for most students
    expected = {s: sum(mine[s][q] == mine[roster[0]][q] for q in mine[s]) + (abs(steps[s] - steps[roster[0]]) <= 0.001)
                for s in roster}
    assert results == expected and min(results.values()) < 2


def test_nbgrader_hidden_tests_survive_a_patched_checker(tmp_path):
    """The nbgrader source notebook run as nbgrader would (one kernel): patching the checker passes nothing."""
    from nbclient import NotebookClient  # noqa: PLC0415

    a = A.build("nbg", ids=["demo.gradient-sign", "demo.sigmoid-slope-at", "demo.relu"])
    paths = A.write_assignment(a, tmp_path)
    source = nbformat.read(str(paths["nbgrader"]), as_version=4)
    text = paths["nbgrader"].read_text()
    assert "importlib.util" in text and "seed=" in text and "order=" in text

    def run(nb):
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        return {c.metadata["losslab"]["test"] if "test" in c.metadata.get("losslab", {}) else c.metadata["losslab"]["check"]:
                [o for o in c.outputs if o.output_type == "error"]
                for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}

    honest = run(nbformat.from_dict(json.loads(json.dumps(source))))
    assert honest and not any(honest.values()), {k: [e.ename for e in v] for k, v in honest.items()}
    attack = nbformat.from_dict(json.loads(json.dumps(source)))
    for c in attack.cells:
        m = c.metadata.get("losslab", {})
        if m.get("answer") in ("demo.gradient-sign", "demo.sigmoid-slope-at"):
            c.source = f"answer({m['answer']!r}, None)"
        if m.get("answer") == "demo.relu":
            c.source = BAD
    attack.cells.insert(2, nbformat.v4.new_code_cell(
        "losslab.assign.expect = lambda *a, **k: None\nlosslab.assign.require = lambda *a, **k: None\n"
        "import losslab.questions, losslab.exercises\nlosslab.questions.Question.grade = lambda self, r: None\n"
        "losslab.exercises.Exercise.run_check = staticmethod(lambda c, f, ref: __import__('losslab').exercises.CheckOutcome(c.name, 'pass'))\n"))
    failed = run(attack)
    assert failed and all(any(e.ename == "AssertionError" for e in v) for v in failed.values()), \
        {k: [e.ename for e in v] for k, v in failed.items()}


def test_known_wrong_versions_are_rejected_through_the_sandbox(tmp_path):
    """The checks run in the grader and call the function across the boundary: in-place changes, aliasing,
    generators and Values must mean the same there. Every exercise's first and last known-wrong version,
    graded for real, must lose points (two submissions, one grading run)."""
    from losslab.exercises import all_exercises  # noqa: PLC0415

    exercises = {i: e for i, e in all_exercises().items() if e.wrong}
    a = A.build("wrongs", ids=sorted(exercises))
    paths = A.write_assignment(a, tmp_path / "a")
    subs = tmp_path / "s"
    subs.mkdir()
    for name, pick in (("first", 0), ("last", -1)):
        code = {}
        for i, ex in exercises.items():
            src = ex.wrong[pick]
            head = [line for line in ex.stub.splitlines() if line.startswith(("import ", "from "))]
            code[i] = "\n".join(head) + "\n" + src  # a wrong version may rely on the stub's imports
        nbformat.write(_fill(paths["student"], {}, code), str(subs / f"{name}.ipynb"))
    results = grade(paths["manifest"], subs, tmp_path / "g", limits=Limits(time_s=60, workers=2))
    for sub in results:
        full = [(r.id, r.message[:300]) for r in sub.items if r.score >= r.points]
        assert not full, (sub.student, full)


def test_without_root_the_verdicts_still_come_from_the_grader(tmp_path, monkeypatch):
    """The path a non-root grader takes (no separate user, no mount namespace): still judged here, still limited."""
    import losslab.grade as G  # noqa: PLC0415

    monkeypatch.setattr(G, "isolation", lambda: "none")
    a = A.build("plain", ids=["demo.relu"])
    paths = A.write_assignment(a, tmp_path / "a")
    subs = tmp_path / "s"
    subs.mkdir()
    attacks = _attacks(tmp_path / "g", paths["instructor"])
    cases = {"honest": (RELU_OK, 1.0), "is-not": (attacks["is-not"], 0.0), "tensor-subclass": (attacks["tensor-subclass"], 0.0),
             "loops": ("def relu(x):\n    while True:\n        pass\n", 0.0)}
    for name, (src, _) in cases.items():
        nbformat.write(_fill(paths["student"], {}, {"demo.relu": src}), str(subs / f"{name}.ipynb"))
    with pytest.warns(RuntimeWarning, match="not running as root"):
        results = {r.student: r for r in grade(paths["manifest"], subs, tmp_path / "g", limits=Limits(time_s=5, workers=2))}
    assert {k: r.total for k, r in results.items()} == {k: v for k, (_, v) in cases.items()}
    assert results["loops"].items[0].status == "timeout"


def test_two_grading_runs_on_one_machine_never_share_a_slot(tmp_path, monkeypatch):
    """Every process of a slot's user is killed when a task ends: a second run must take other slots."""
    import subprocess
    import sys

    from losslab import grade

    monkeypatch.setattr(grade, "SLOT_LOCKS", tmp_path / "slots")
    mine = grade._claim_slots(3)
    other = ("import sys; from pathlib import Path; from losslab import grade\n"
             f"grade.SLOT_LOCKS = Path({str(tmp_path / 'slots')!r})\n"
             "print(sorted(k for k, _ in grade._claim_slots(3)))")
    run = lambda: subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True).stdout.strip()  # noqa: E731
    try:
        assert sorted(k for k, _ in mine) == [0, 1, 2]
        assert run() == "[3, 4, 5]", "a second grading run took a slot that is in use"
    finally:
        for _, fd in mine:
            os.close(fd)
    assert run() == "[0, 1, 2]", "slots are free again once the run that held them ends"
    with pytest.raises(RuntimeError, match="no free grading slots"):
        held = grade._claim_slots(2, limit=4)
        try:
            grade._claim_slots(3, limit=4)
        finally:
            for _, fd in held:
                os.close(fd)
