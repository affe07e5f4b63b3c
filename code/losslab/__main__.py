"""Command line: ``python -m losslab <command>`` (also installed as ``losslab``).

Commands
--------
sync-setup [--config _config.yml] [--book book]
    Rewrite the setup cell of every chapter notebook from the repository URL
    and branch in ``_config.yml`` (the one place they are written).
explorer-latency
    Time one live update of every registered explorer (render, describe as
    Plotly traces, update a FigureWidget in place), median over settings
    spread across its static grid: the book's target is a median of at most
    60 ms and at most 150 ms for every explorer on a 2-core CPU. A
    benchmark, not a test.
assign [IDS ...] [--chapter P] [--tag T] [--notebook NB [--context]] [--spec FILE] [--students ROSTER] --name NAME --out DIR
    Write a student notebook (one per student with a roster: their own choice
    order and numbers), an instructor notebook with the answer key, the
    grading manifest and an nbgrader source notebook (``losslab.assign``).
list [--chapter P] [--tag T] [--kind K]
    What can be assigned: ids, chapters, kinds, tags, points.
grade MANIFEST SUBMISSIONS --out DIR [--time-limit S] [--memory-mb M] [--workers N]
    Grade a folder of submitted notebooks, each task in its own limited
    process; write grades.csv and feedback/<student>.md (``losslab.grade``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
from pathlib import Path

import numpy as np

from .book import read_repository, setup_cell

_SEED = re.compile(r"losslab\.setup\(seed=(\d+)\)")


def sync_setup(config: Path, book: Path) -> list[Path]:
    """Rewrite the first code cell of each ``book/*.ipynb`` whose source calls ``losslab.setup``."""
    url, branch = read_repository(config)
    changed = []
    for path in sorted(book.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if not code:
            continue
        src = "".join(code[0]["source"])
        m = _SEED.search(src)
        if not m:
            continue
        new = setup_cell(url, branch, seed=int(m.group(1)))
        if new != src:
            code[0]["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


def explorer_latency() -> list[tuple[str, float, float]]:
    """Per explorer: (name, seconds per live update, seconds per PNG frame as the live shell drew it before)."""
    from . import explore  # noqa: PLC0415

    for mod in pkgutil.iter_modules(explore.__path__):
        importlib.import_module(f"{explore.__name__}.{mod.name}")
    from .plots import use_book_style  # noqa: PLC0415

    use_book_style()
    rows = []
    for key, factory in sorted(explore.REGISTRY.items()):
        ex = factory()
        ex.time_update(repeats=2)  # warm-up: imports, font cache, each run's cache
        ex.frame()
        rows.append((ex.name, ex.time_update(repeats=5), ex.time_render(repeats=3)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="losslab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync-setup", help="rewrite chapters' setup cells from _config.yml")
    p.add_argument("--config", type=Path, default=Path("_config.yml"))
    p.add_argument("--book", type=Path, default=Path("book"))
    sub.add_parser("explorer-latency", help="time one live update of every explorer")
    p = sub.add_parser("assign", help="build student, instructor and nbgrader notebooks from question and exercise ids")
    p.add_argument("ids", nargs="*", help="question or exercise ids, e.g. demo.relu")
    p.add_argument("--chapter", action="append", default=[], metavar="PREFIX", help="every item of a chapter prefix (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="every question and exercise with this tag (repeatable)")
    p.add_argument("--notebook", type=Path, help="the items a book page uses, in page order")
    p.add_argument("--context", action="store_true", help="keep the page's own prose and code around the items")
    p.add_argument("--spec", type=Path, help="an assignment file (TOML); flags add to it")
    p.add_argument("--name", help="assignment name (file names); default: the spec's name or 'assignment'")
    p.add_argument("--title", default="", help="title shown in the notebooks")
    p.add_argument("--out", type=Path, default=Path("assignments"), help="output folder (default: assignments)")
    p.add_argument("--students", type=Path, help="a roster (one name per line): one notebook per student, with their own choice order and numbers")
    p = sub.add_parser("list", help="list the questions and exercises that can be assigned")
    p.add_argument("--chapter", help="only this chapter prefix")
    p.add_argument("--tag", help="only items with this tag (exercises included)")
    p.add_argument("--kind", choices=["single", "multiple", "numeric", "exercise"], help="only this kind")
    p = sub.add_parser("grade", help="grade submitted notebooks safely and write grades.csv and feedback")
    p.add_argument("manifest", type=Path, help="the <name>.assignment.json written by assign")
    p.add_argument("submissions", type=Path, help="folder of <student>.ipynb or <student>/.../*.ipynb")
    p.add_argument("--out", type=Path, default=Path("graded"), help="output folder (default: graded)")
    p.add_argument("--time-limit", type=float, default=60.0, help="wall-clock seconds per task (default 60)")
    p.add_argument("--memory-mb", type=int, default=2048, help="memory per task beyond the imports, MiB (default 2048)")
    p.add_argument("--workers", type=int, default=1, help="tasks run at once (default 1)")
    p.add_argument("--lenient-check-cells", action="store_true", help="grade exercises whose visible check cell was edited or deleted")
    args = parser.parse_args(argv)
    if args.command == "sync-setup":
        changed = sync_setup(args.config, args.book)
        print("\n".join(f"rewrote {p}" for p in changed) or "every setup cell is up to date")
    elif args.command == "explorer-latency":
        print("ms per live update (render, describe, update the FigureWidget in place), beside the PNG frame the live")
        print("shell drew before, measured in the same run. Target: median <= 60 ms, each <= 150 ms on a 2-core CPU.")
        print(f"{'explorer':32s} {'update':>8s} {'PNG frame':>10s} {'ratio':>6s}", flush=True)
        rows = explorer_latency()
        for name, update, png in rows:
            print(f"{name:32s} {update * 1e3:8.1f} {png * 1e3:10.1f} {png / update:6.1f}")
        med = [float(np.median([r[i] for r in rows])) * 1e3 for i in (1, 2)]
        print(f"{'median':32s} {med[0]:8.1f} {med[1]:10.1f}")
        print(f"{'max':32s} {max(r[1] for r in rows) * 1e3:8.1f} {max(r[2] for r in rows) * 1e3:10.1f}")
    elif args.command == "assign":
        return _assign(args)
    elif args.command == "list":
        return _list(args)
    elif args.command == "grade":
        return _grade(args)
    return 0


def _list(args: argparse.Namespace) -> int:
    from . import assign  # noqa: PLC0415

    rows = assign.catalogue(chapter=args.chapter, tag=args.tag, kind=args.kind)
    if not rows:
        print("losslab list: nothing matches", file=sys.stderr)
        return 2
    width = max(len(r["id"]) for r in rows)
    print(f"{'id':{width}s}  {'chapter':10s} {'kind':9s} {'points':>6s}  tags")
    for r in rows:
        extra = f" ({r['checks']} checks)" if r["kind"] == "exercise" else (" (drawn numbers)" if r["kind"] == "numeric" and r["variant"] else "")
        print(f"{r['id']:{width}s}  {r['chapter']:10s} {r['kind']:9s} {r['points']:6g}  {', '.join(r['tags'])}{extra}")
    print(f"{len(rows)} items")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from . import assign  # noqa: PLC0415

    try:
        students = assign.read_roster(args.students) if args.students else []
        if args.spec is not None:
            a = assign.load_spec(args.spec, name=args.name, title=args.title or None)
            extra = assign.select(args.ids, chapters=args.chapter, tags=args.tag, notebook=args.notebook) if (args.ids or args.chapter or args.tag or args.notebook) else []
            a.items += [assign.Item(i) for i in extra if i not in {it.id for it in a.items}]
            if args.context:
                a.context = True
            if args.notebook:
                a.notebook = args.notebook
            if students:
                a.students = students
        else:
            a = assign.build(args.name or "assignment", ids=args.ids, chapters=args.chapter, tags=args.tag,
                             notebook=args.notebook, context=args.context, title=args.title, students=students)
    except (KeyError, ValueError, OSError) as err:
        print(f"losslab assign: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    paths = assign.write_assignment(a, args.out)
    print(f"{a.name}: {len(a.items)} items ({', '.join(it.id for it in a.items)})")
    for role, path in paths.items():
        print(f"  {role:10s} {path}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from .grade import Limits, grade  # noqa: PLC0415

    try:
        limits = Limits(time_s=args.time_limit, memory_mb=args.memory_mb, workers=args.workers)
        results = grade(args.manifest, args.submissions, args.out, limits=limits, strict_checks=not args.lenient_check_cells)
    except (OSError, KeyError, ValueError) as err:
        print(f"losslab grade: {err}", file=sys.stderr)
        return 2
    for sub in results:
        flags = sorted({r.status for r in sub.items} - {"correct", "partial", "wrong", "unanswered"})
        print(f"{sub.student:24s} {sub.total:7.2f} / {sub.max:g}" + (f"   ({', '.join(flags)})" if flags else ""))
        for note in sub.notes:
            if "renamed" in note or "graded the last" in note or "roster" in note:
                print(f"    note: {note}")
    print(f"wrote {args.out / 'grades.csv'} and {len(results)} feedback files in {args.out / 'feedback'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
