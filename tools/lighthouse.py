"""Lighthouse (mobile) on the built book: a benchmark that prints scores, not a test.

It builds nothing: build the book first (`make book`), then

    python tools/lighthouse.py                      # the preface and the two heaviest chapters
    python tools/lighthouse.py book/03_gradient_descent.html --runs 3
    python tools/lighthouse.py --plain              # serve without gzip (as `python -m http.server`)
    python tools/lighthouse.py --html /other/_build/html   # another build, e.g. before a change

It serves `_build/html` on a local port (gzip-compressed like GitHub Pages, which
publishes the book, unless --plain) and runs Lighthouse's default mobile audit
(a mid-range phone on a slow 4G network, simulated) with the system Chromium,
printing per page: the performance and accessibility scores, Largest Contentful
Paint, Total Blocking Time, the bytes transferred and the number of requests.
With --runs N it reports the median run by performance score. Scores move from
run to run, more so on a busy machine: compare before and after on the same machine.

Setup, once (an ignored folder; Node 20 and Chromium from the system):

    cd tools/node && npm i -E lighthouse@12.2.3

CHROME_PATH picks another Chromium (default: /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
LIGHTHOUSE = ROOT / "tools" / "node" / "node_modules" / "lighthouse" / "cli" / "index.js"
PAGES = ["book/preface.html"]  # and the two heaviest chapters, found by size (see heaviest_chapters)
COMPRESSIBLE = {".html", ".js", ".css", ".json", ".svg", ".txt", ".map"}


def heaviest_chapters(html: Path, n: int = 2) -> list[str]:
    chapters = sorted((html / "book").glob("[0-9][0-9]_*.html"), key=lambda p: p.stat().st_size, reverse=True)
    return [p.relative_to(html).as_posix() for p in chapters[:n]]


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, gzip-compressed for text types when the browser accepts it (unless plain)."""

    plain = False

    def log_message(self, *args):  # noqa: ANN002
        pass

    def send_head(self):  # noqa: ANN201
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if (self.plain or path.suffix not in COMPRESSIBLE or not path.is_file()
                or "gzip" not in self.headers.get("Accept-Encoding", "")):
            return super().send_head()
        body = gzip.compress(path.read_bytes(), compresslevel=6)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=600")
        self.end_headers()
        return io.BytesIO(body)


def serve(plain: bool, root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(type("H", (Handler,), {"plain": plain}), directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def run_lighthouse(url: str, out: Path, chrome: str) -> dict:
    cmd = ["node", str(LIGHTHOUSE), url, "--quiet", "--output=json", f"--output-path={out}",
           "--only-categories=performance,accessibility",
           "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage"]
    subprocess.run(cmd, check=True, env={**os.environ, "CHROME_PATH": chrome}, timeout=300)
    return json.loads(out.read_text(encoding="utf-8"))


def summary(report: dict) -> dict:
    audits, cats = report["audits"], report["categories"]
    requests = audits["network-requests"]["details"]["items"]
    errors = audits.get("errors-in-console", {}).get("details", {}).get("items", [])
    return {
        "performance": round(100 * (cats["performance"]["score"] or 0)),
        "accessibility": round(100 * (cats["accessibility"]["score"] or 0)),
        "fcp_s": audits["first-contentful-paint"]["numericValue"] / 1000,
        "lcp_s": audits["largest-contentful-paint"]["numericValue"] / 1000,
        "tbt_ms": audits["total-blocking-time"]["numericValue"],
        "cls": audits["cumulative-layout-shift"]["numericValue"],
        "kib": audits["total-byte-weight"]["numericValue"] / 1024,
        "requests": len(requests),
        "console_errors": len(errors),
        "biggest": sorted(((r.get("transferSize", 0), r["url"].split("/", 3)[-1].split("?")[0]) for r in requests),
                          reverse=True)[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages under _build/html (default: the preface and the two heaviest chapters)")
    parser.add_argument("--runs", type=int, default=1, help="runs per page; the median by performance is shown")
    parser.add_argument("--plain", action="store_true", help="serve without compression")
    parser.add_argument("--json", type=Path, help="also write the summaries to this file")
    parser.add_argument("--top", action="store_true", help="also list each page's five largest transfers")
    parser.add_argument("--html", type=Path, help="the built book to serve (default: _build/html)")
    parser.add_argument("--save", type=Path, help="keep Lighthouse's full reports (JSON) in this folder")
    args = parser.parse_args(argv)

    html = (args.html or HTML).resolve()
    if not (html / "index.html").exists():
        sys.exit("no built book under _build/html: build it first (make book)")
    if not LIGHTHOUSE.exists():
        sys.exit(f"Lighthouse is not installed: cd {LIGHTHOUSE.parents[3]} && npm i -E lighthouse@12.2.3")
    chrome = os.environ.get("CHROME_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    pages = args.pages or PAGES + heaviest_chapters(html)

    server, base = serve(args.plain, html)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.save or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            for page in pages:
                stem = Path(page).stem
                runs = [summary(run_lighthouse(base + page, folder / f"{stem}-{i}.json", chrome)) for i in range(args.runs)]
                runs.sort(key=lambda r: r["performance"])
                results[page] = runs[len(runs) // 2]
                if args.runs > 1:
                    results[page]["performance_runs"] = [r["performance"] for r in runs]
    finally:
        server.shutdown()

    print(f"Lighthouse mobile, {'plain' if args.plain else 'gzip'}, median of {args.runs} run(s)")
    print(f"{'page':34} {'perf':>4} {'a11y':>4} {'FCP s':>6} {'LCP s':>6} {'TBT ms':>7} {'CLS':>5} {'KiB':>7} {'req':>4} {'err':>3}")
    for page, r in results.items():
        print(f"{page:34} {r['performance']:4d} {r['accessibility']:4d} {r['fcp_s']:6.1f} {r['lcp_s']:6.1f} "
              f"{r['tbt_ms']:7.0f} {r['cls']:5.2f} {r['kib']:7.0f} {r['requests']:4d} {r['console_errors']:3d}")
        if args.top:
            for size, url in r["biggest"]:
                print(f"{'':6}{size / 1024:8.0f} KiB  {url}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
