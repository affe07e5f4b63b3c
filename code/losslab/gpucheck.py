"""``python -m losslab.gpucheck``: verify the package and the book on an NVIDIA GPU, in one command.

Run it from the repository root on a machine with a CUDA GPU (PyTorch with
CUDA, and CuPy for the kernels). It does, in order, and reports each:

1. the GPU tests (``pytest -m gpu``) and the unit tests with
   ``LOSSLAB_DEVICE=cuda`` (``pytest -m "not chapters and not built"``);
2. the benchmark (:mod:`losslab.bench`) on the GPU, as a table;
3. every page of the book executed twice, with ``LOSSLAB_DEVICE=cuda`` and
   with ``LOSSLAB_DEVICE=cpu``, claims strict (a claim that fails on either
   device fails the page), then every glued value compared between the two
   runs against the tolerances in ``book/tolerances.toml``.

On a machine that has PyTorch and CuPy but no Jupyter (no nbclient,
ipykernel, ...), pass ``--wheels DIR``: the wheels there are installed into a
private folder (``pip install --no-index --no-deps --target``) that this
process and the kernels it starts use. Results go to ``--out`` (default
``_build/gpucheck``): ``report.md``, ``bench.json``, ``pages.json``.
Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .glued import compare_glued, execute_page, load_tolerances
from .reader import book_pages, glued_values

__all__ = ["main"]


def _install_wheels(wheels: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="losslab-site-"))
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"--wheels: no .whl files in {wheels}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), *files], check=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m losslab.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="install these wheels first (for a machine without Jupyter)")
    parser.add_argument("--out", type=Path, default=Path("_build/gpucheck"))
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--pages", nargs="*", help="page stems to run (default: every notebook in _toc.yml)")
    parser.add_argument("--device", default="cuda", help="the device to compare with the CPU (default cuda)")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if not (root / "_toc.yml").exists():
        raise SystemExit("run python -m losslab.gpucheck from the repository root (where _toc.yml is)")
    if args.wheels:
        _install_wheels(args.wheels)
    args.out.mkdir(parents=True, exist_ok=True)
    import torch  # noqa: PLC0415

    report = [f"# losslab GPU check ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    ok = True
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: the GPU steps are skipped (the CPU page runs still run with --device cpu)")
        report.append("No CUDA device found.")
    else:
        from . import backend  # noqa: PLC0415

        report.append(f"Device: {backend.describe(torch.device(args.device))}")

    def step(title: str, cmd: list[str], env: dict | None = None) -> bool:
        print(f"== {title}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env=dict(os.environ, **(env or {}))).returncode
        report.append(f"- {title}: {'passed' if rc == 0 else f'FAILED (rc {rc})'} in {time.perf_counter() - t0:.0f} s")
        return rc in (0, 5)  # 5: pytest collected nothing (no GPU tests selected)

    if not args.skip_tests:
        ok &= step("GPU tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"])
        ok &= step(f"unit tests with LOSSLAB_DEVICE={args.device}",
                   [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not chapters and not built", "tests"],
                   {"LOSSLAB_DEVICE": args.device})
    if not args.skip_bench and torch.cuda.is_available():
        from . import bench  # noqa: PLC0415

        dev = torch.device(args.device)
        rows, bw = bench.run(dev)
        table = bench.format_rows(rows, bw, dev)
        print(table)
        report += ["", "## Benchmark", "", table, ""]
        (args.out / "bench.json").write_text(json.dumps({"copy_gbps": bw, "rows": [dict(r.__dict__, ratio=r.ratio) for r in rows]}, indent=1))
    if not args.skip_pages:
        spec = load_tolerances(root / "book" / "tolerances.toml", kind="devices")
        pages = [p for p in book_pages(root) if not args.pages or p.stem in args.pages]
        results, compared = [], []
        report += ["", "## Pages (cpu vs " + args.device + ")", "", "| page | cpu s | " + args.device + " s | glued values | beyond tolerance | errors |",
                   "|---|---|---|---|---|---|"]
        for path in pages:
            runs = {}
            for dev in ("cpu", args.device):
                print(f"== executing {path.name} on {dev}", flush=True)
                runs[dev] = execute_page(path, dev)
            (nb_c, s_c, e_c), (nb_g, s_g, e_g) = runs["cpu"], runs[args.device]
            rows = compare_glued(path.stem, glued_values(nb_c), glued_values(nb_g), spec) if not (e_c or e_g) else []
            bad = [r for r in rows if not r["ok"]]
            ok &= not (e_c or e_g or bad)
            compared += rows
            errors = "; ".join(f"{d}: {e.splitlines()[-1] if e else ''}" for d, e in (("cpu", e_c), (args.device, e_g)) if e)
            report.append(f"| {path.stem} | {s_c:.1f} | {s_g:.1f} | {len(rows)} | "
                          f"{', '.join(r['name'] for r in bad) or '-'} | {errors or '-'} |")
            results.append({"page": path.stem, "cpu_s": s_c, "device_s": s_g, "cpu_error": e_c, "device_error": e_g})
        (args.out / "pages.json").write_text(json.dumps({"pages": results, "values": compared}, indent=1, default=str))
        beyond = [r for r in compared if not r["ok"]]
        if beyond:
            report += ["", "Values beyond tolerance:", ""]
            report += [f"- {r['page']} {r['name']}: cpu {r['a']} vs {r['b']} ({r['why']}, rtol {r['rtol']})" for r in beyond]
    report.append("")
    report.append("ALL PASSED" if ok else "SOME STEPS FAILED")
    (args.out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
