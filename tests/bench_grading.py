"""Benchmark: time `losslab grade` on N synthetic submissions (a benchmark, not a test).

    python tests/bench_grading.py 30 200 [--workers 2]

Each submission answers three questions (one with drawn numbers) and three
exercises (demo.relu, gd.sgd-momentum, loss.stable-ce): a third correct, a
third partly wrong, a sixth blank, a sixth computing an answer (so the
notebook runs once). Prints seconds per run and per submission.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from losslab import assign as A
from losslab.exercises import exercise
from losslab.grade import Limits, grade, isolation

IDS = ["demo.gradient-sign", "demo.differentiable", "demo.sigmoid-slope-at", "demo.relu", "gd.sgd-momentum", "loss.stable-ce"]


def submissions(a, paths, n: int, folder: Path) -> None:
    q = {it.id: A.shown_question(it, a.secret) for it in a.items if it.is_question}
    right = {i: repr("".join("abcd"[k] for k, c in enumerate(v.choices) if c.correct)) for i, v in q.items() if v.choices}
    right["demo.sigmoid-slope-at"] = repr(q["demo.sigmoid-slope-at"].answer)
    sol = {i: exercise(i).solution for i in IDS[3:]}
    wrong = {"demo.relu": "import torch\ndef relu(x):\n    return torch.abs(x)\n",
             "gd.sgd-momentum": sol["gd.sgd-momentum"].replace("params - lr * buf", "params + lr * buf"),
             "loss.stable-ce": sol["loss.stable-ce"]}
    for k in range(n):
        nb = nbformat.read(str(paths["student"]), as_version=4)
        kind = k % 6
        for cell in nb.cells:
            m = cell.metadata.get("losslab", {})
            i = m.get("answer")
            if i in right and kind != 4:
                cell.source = f"answer({i!r}, {right[i] if kind != 5 else '0.5 * 0.5' if i == 'demo.sigmoid-slope-at' else right[i]})"
            if i in sol and kind != 4:
                cell.source = sol[i] if kind in (0, 1, 5) else wrong[i]
        nbformat.write(nb, str(folder / f"student{k:03d}.ipynb"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("sizes", type=int, nargs="+")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(f"isolation: {isolation()}; workers: {args.workers}")
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="losslab-bench-"))
        try:
            a = A.build("bench", ids=IDS)
            paths = A.write_assignment(a, tmp / "a")
            (tmp / "s").mkdir()
            submissions(a, paths, n, tmp / "s")
            start = time.perf_counter()
            results = grade(paths["manifest"], tmp / "s", tmp / "g", limits=Limits(time_s=60, workers=args.workers))
            seconds = time.perf_counter() - start
            print(f"{n:4d} submissions ({len(IDS)} items, {3 * n} exercise tasks): {seconds:7.1f} s, "
                  f"{seconds / n:.2f} s per submission; mean total {sum(r.total for r in results) / n:.2f} / {len(IDS)}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
