"""Command line: ``python -m losslab <command>`` (also installed as ``losslab``).

Commands
--------
sync-setup [--config _config.yml] [--book book]
    Rewrite the setup cell of every chapter notebook from the repository URL
    and branch in ``_config.yml`` (the one place they are written).
explorer-latency
    Time one live update (render + PNG) of every registered explorer: the
    book's target is under 100 ms on a laptop CPU. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
from pathlib import Path

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


def explorer_latency() -> list[tuple[str, float]]:
    from . import explore  # noqa: PLC0415

    for mod in pkgutil.iter_modules(explore.__path__):
        importlib.import_module(f"{explore.__name__}.{mod.name}")
    from .plots import use_book_style  # noqa: PLC0415

    use_book_style()
    rows = []
    for key, factory in sorted(explore.REGISTRY.items()):
        ex = factory()
        ex.frame()  # warm-up: imports, font cache
        rows.append((ex.name, ex.time_render(repeats=5)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="losslab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync-setup", help="rewrite chapters' setup cells from _config.yml")
    p.add_argument("--config", type=Path, default=Path("_config.yml"))
    p.add_argument("--book", type=Path, default=Path("book"))
    sub.add_parser("explorer-latency", help="time one live update of every explorer")
    args = parser.parse_args(argv)
    if args.command == "sync-setup":
        changed = sync_setup(args.config, args.book)
        print("\n".join(f"rewrote {p}" for p in changed) or "every setup cell is up to date")
    elif args.command == "explorer-latency":
        print(f"{'explorer':40s} {'ms per update':>14s}  (target < 100 ms)")
        for name, seconds in explorer_latency():
            print(f"{name:40s} {seconds * 1e3:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
