"""The numbers a page glues, compared between two runs: two devices, or two sets of dependencies.

A page's prose quotes numbers its cells compute (``losslab.glue``). When the
same page runs on a GPU instead of a CPU, or with newer PyTorch than the
book's pins, those numbers may move: by rounding, which is fine, or by more,
which a reader would notice. This module executes pages and compares their
glued values against the tolerances in ``book/tolerances.toml``, where each
looser rule says why a value may move more.

- ``python -m losslab.glued save OUT.json [--pages ...] [--device cpu]``:
  execute every page of ``_toc.yml`` (claims strict) and save its glued values.
- ``python -m losslab.glued compare A.json B.json --kind versions``: compare
  two saved runs; exit 1 if a value moved beyond its tolerance or a page failed.

The scheduled drift workflow saves the pinned environment's values and the
newest dependencies' values and compares them (``--kind versions``);
``python -m losslab.gpucheck`` compares a CPU and a GPU run (``--kind devices``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time
from pathlib import Path

from .reader import book_pages, glued_values

__all__ = ["load_tolerances", "compare_glued", "execute_page", "save", "compare_runs", "main"]

KINDS = ("devices", "versions")


def load_tolerances(path: Path, *, kind: str) -> dict:
    """The rules that apply to comparisons of ``kind`` ("devices" or "versions").

    The file has ``default_rtol``, ``default_atol`` and ``[[rule]]`` entries
    with ``page`` and ``names`` (glob patterns), ``rtol``/``atol`` or
    ``skip = true``, a ``reason``, and optionally ``only = "devices"`` or
    ``"versions"`` (a rule without ``only`` applies to both).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    try:
        import tomllib  # noqa: PLC0415
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # noqa: PLC0415
    spec = tomllib.loads(Path(path).read_text(encoding="utf-8")) if Path(path).exists() else {}
    for i, rule in enumerate(spec.get("rule", [])):
        if "page" not in rule or "names" not in rule or "reason" not in rule:
            raise ValueError(f"{path}: rule {i} needs page, names and reason")
        if not rule.get("skip") and "rtol" not in rule and "atol" not in rule:
            raise ValueError(f"{path}: rule {i} needs rtol/atol or skip = true")
        if rule.get("only", kind) not in KINDS:
            raise ValueError(f"{path}: rule {i}: only must be one of {KINDS}, got {rule['only']!r}")
    spec["rule"] = [r for r in spec.get("rule", []) if r.get("only", kind) == kind]
    return spec


def _tolerance(spec: dict, page: str, name: str) -> tuple[float, float, bool, str]:
    for rule in spec.get("rule", []):
        if fnmatch.fnmatch(page, rule["page"]) and any(fnmatch.fnmatch(name, pat) for pat in rule["names"]):
            return float(rule.get("rtol", 0.0)), float(rule.get("atol", 0.0)), bool(rule.get("skip")), rule["reason"]
    return float(spec.get("default_rtol", 1e-4)), float(spec.get("default_atol", 1e-9)), False, "default"


def _as_number(text: str) -> float | None:
    text = text.strip().strip("'\"")
    for prefix in ("np.float64(", "np.float32(", "tensor(", "np.int64("):
        if text.startswith(prefix) and text.endswith(")"):
            text = text[len(prefix):-1].split(",")[0]
    try:
        return float(text)
    except ValueError:
        return None


def compare_glued(page: str, a: dict[str, str], b: dict[str, str], spec: dict) -> list[dict]:
    """Compare the glued values of two runs of ``page`` (``a`` is the reference); one dict per value with ``ok``."""
    rows = []
    for name in sorted(set(a) | set(b)):
        rtol, atol, skip, reason = _tolerance(spec, page, name)
        va, vb = a.get(name), b.get(name)
        row = {"page": page, "name": name, "a": va, "b": vb, "rtol": rtol, "atol": atol, "reason": reason}
        if va is None or vb is None:
            row.update(ok=False, why="glued in one run only")
        elif skip:
            row.update(ok=True, why=f"not compared: {reason}")
        else:
            xa, xb = _as_number(va), _as_number(vb)
            if xa is None or xb is None:
                row.update(ok=(va == vb), why="text differs" if va != vb else "same text")
            elif math.isnan(xa) or math.isnan(xb):
                row.update(ok=math.isnan(xa) and math.isnan(xb), why="NaN")
            else:
                gap = abs(xa - xb)
                row.update(ok=gap <= atol + rtol * abs(xa), why=f"|diff| {gap:.3g}", rel=gap / abs(xa) if xa else gap)
        rows.append(row)
    return rows


def execute_page(path: Path, device: str | None = None, timeout: int = 900):
    """Execute ``path`` as the build does (static, claims strict), on ``device`` if given.

    Returns ``(executed notebook, seconds, error text or None)``.
    """
    import nbformat  # noqa: PLC0415
    from nbclient import NotebookClient  # noqa: PLC0415
    from nbclient.exceptions import CellExecutionError  # noqa: PLC0415

    nb = nbformat.read(str(path), as_version=4)
    env = dict(os.environ, LOSSLAB_STATIC="1", LOSSLAB_CLAIMS="strict")
    if device:
        env["LOSSLAB_DEVICE"] = device
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start, error = time.perf_counter(), None
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        error = str(err)[-3000:]
    return nb, time.perf_counter() - start, error


def save(root: Path, out: Path, *, pages: list[str] | None = None, device: str | None = None) -> dict:
    """Execute the pages and write ``{"pages": {stem: {"seconds", "error", "values"}}}`` to ``out``."""
    import torch  # noqa: PLC0415

    result = {"torch": torch.__version__, "device": device or "default", "pages": {}}
    for path in book_pages(root):
        if pages and path.stem not in pages:
            continue
        nb, seconds, error = execute_page(path, device)
        result["pages"][path.stem] = {"seconds": seconds, "error": error, "values": glued_values(nb)}
        print(f"{path.stem}: {seconds:.1f} s{' ERROR' if error else ''}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def compare_runs(a: dict, b: dict, spec: dict) -> tuple[list[dict], list[str]]:
    """Every glued value of two saved runs compared; and the pages that failed in either."""
    rows, failed = [], []
    for page in sorted(set(a["pages"]) | set(b["pages"])):
        pa, pb = a["pages"].get(page), b["pages"].get(page)
        if not pa or not pb or pa.get("error") or pb.get("error"):
            failed.append(page)
            continue
        rows += compare_glued(page, pa["values"], pb["values"], spec)
    return rows, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m losslab.glued", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_save = sub.add_parser("save", help="execute the pages and save their glued values")
    p_save.add_argument("out", type=Path)
    p_save.add_argument("--pages", nargs="*")
    p_save.add_argument("--device", default=None)
    p_cmp = sub.add_parser("compare", help="compare two saved runs")
    p_cmp.add_argument("a", type=Path, help="the reference run (e.g. the pinned environment)")
    p_cmp.add_argument("b", type=Path)
    p_cmp.add_argument("--kind", choices=KINDS, required=True)
    p_cmp.add_argument("--tolerances", type=Path, default=Path("book/tolerances.toml"))
    args = parser.parse_args(argv)
    if args.command == "save":
        result = save(Path.cwd(), args.out, pages=args.pages, device=args.device)
        return 1 if any(p["error"] for p in result["pages"].values()) else 0
    a, b = (json.loads(p.read_text()) for p in (args.a, args.b))
    rows, failed = compare_runs(a, b, load_tolerances(args.tolerances, kind=args.kind))
    beyond = [r for r in rows if not r["ok"]]
    print(f"{len(rows)} glued values compared ({a.get('torch')} vs {b.get('torch')}); "
          f"{len(beyond)} beyond tolerance; pages failed: {failed or 'none'}")
    for r in beyond:
        print(f"  {r['page']} {r['name']}: {r['a']} vs {r['b']} ({r['why']}; rtol {r['rtol']}, atol {r['atol']})")
    return 1 if beyond or failed else 0


if __name__ == "__main__":
    sys.exit(main())
