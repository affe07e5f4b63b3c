"""Instructions per step in the trajectory kernel's loop, read from its SASS, without a GPU.

The trajectory kernel is bound by the instructions each step issues (1e6 starts x 1000 steps
is 1e9 steps of a few floating-point operations each), so the count of machine instructions
per step is the figure to watch between GPU runs. This compiles ``trajectories.cu`` to an
sm_90 cubin with NVRTC (the ``nvidia-cuda-nvrtc-cu12`` wheel, no driver needed), with one
small probe kernel per rule (GD, heavy ball, Nesterov, damped momentum with weight decay,
Adam, AdamW) that runs the kernel's own loop (``ll_run``) for that rule, disassembles it with
``nvdisasm`` (``pip install nvidia-cuda-nvdisasm``), and prints the instructions per step of
the loop that makes the most steps per pass (the unrolled body): its instructions, leaving out
the blocks that store a kept position (not run when no path is kept), divided by its steps
(each step tests ``|x| <= bound`` and ``|y| <= bound``). With ``--source`` (an older kernel,
without ``ll_run`` to probe) it prints the cheapest such loop of each whole kernel instead:
GD for SGD, Adam without weight decay.

    pip install nvidia-cuda-nvdisasm
    python tools/sass_loops.py [--json code/losslab/measured/sass_trajectories.json]
    python tools/sass_loops.py --scan [--source OLD_scan_mlp.cu]   # the scan kernel's product loops

The book's GPU appendix reads that file; a test checks that it was written for the kernel source
as it is (its digest, comments left out), so a change to the loop comes with new counts.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import glob
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from losslab import kernels  # noqa: E402

INSTR = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?);")
LABEL = re.compile(r"^(\.L_x_\d+):")


def _nvrtc() -> ctypes.CDLL:
    import nvidia.cuda_nvrtc  # noqa: PLC0415

    for base in nvidia.cuda_nvrtc.__path__:
        found = sorted(glob.glob(f"{base}/lib/libnvrtc.so*"))
        if found:
            return ctypes.CDLL(found[0])
    raise SystemExit("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12")


def cubin(src: str, filename: str, options: list[str]) -> bytes:
    """``src`` compiled by NVRTC to a cubin (the real machine code of the architecture in ``options``).

    Through libnvrtc itself: CuPy's ``nvrtc.getCUBIN`` (which losslab.kernels' PTX check could have
    shared) returned a cut-off image here that neither nvdisasm nor cuobjdump would read."""
    nv = _nvrtc()
    prog = ctypes.c_void_p()
    if nv.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), filename.encode(), 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    if nv.nvrtcCompileProgram(prog, len(options), opts):
        size = ctypes.c_size_t()
        nv.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nv.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(log.value.decode())
    size = ctypes.c_size_t()
    nv.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    out = ctypes.create_string_buffer(size.value)
    nv.nvrtcGetCUBIN(prog, out)
    nv.nvrtcDestroyProgram(ctypes.byref(prog))
    return out.raw


def functions(sass: str) -> dict[str, list[tuple[int, str | None, str]]]:
    """Each function's instructions as (address, label that starts here or None, text)."""
    funcs: dict[str, list] = {}
    current, label = None, None
    for line in sass.splitlines():
        m = re.match(r"^\s*\.text\.(\w+):", line)
        if m:
            current, label = m.group(1), None
            funcs[current] = []
            continue
        m = LABEL.match(line)
        if m:
            label = m.group(1)
            continue
        m = INSTR.match(line)
        if m and current:
            funcs[current].append((int(m.group(1), 16), label, m.group(2).strip()))
            label = None
    return funcs


def loops(code: list[tuple[int, str | None, str]]) -> list[tuple[int, int]]:
    """Loops as (index of the first instruction, index of the backward branch)."""
    where = {lab: k for k, (_, lab, _) in enumerate(code) if lab}
    spans = []
    for k, (_, _, text) in enumerate(code):
        m = re.search(r"BRA `\((\.L_x_\d+)\)", text)
        if m and m.group(1) in where and where[m.group(1)] <= k:
            spans.append((where[m.group(1)], k))
    return spans


def per_step(code, span, spans) -> tuple[int, float]:
    """(instructions run per pass without a kept path, steps per pass) of one loop.

    Left out: the blocks that store a kept position (a forward branch over a store) and the
    loops nested inside (the slow path of a sine's argument reduction, for huge arguments).
    A step tests |x| and |y| against the bound: two compares of an absolute value with a
    register (the library's own range checks compare with constants).
    """
    lo, hi = span
    skip = set()
    for a, b in spans:
        if (a, b) != span and lo <= a and b <= hi:
            skip.update(range(a, b + 1))
    for k in range(lo, hi + 1):
        m = re.search(r"^@!?U?P\d BRA `\((\.L_x_\d+)\)", code[k][2])
        if not m:
            continue
        end = next((j for j in range(k + 1, hi + 1) if code[j][1] == m.group(1)), None)
        if end is not None and any("STG" in code[j][2] for j in range(k + 1, end)):
            skip.update(range(k + 1, end))
    run = [code[k][2] for k in range(lo, hi + 1) if k not in skip]
    steps = sum(1 for t in run if re.match(r"^(@!?P\d )?[FD]SETP(\.\w+)+ P\d, PT, \|R\d+\|(\.reuse)?, U?R\d+", t)) / 2
    return len(run), steps


PROBE = r"""
extern "C" __global__ void probe_{name}_{suffix}({T} *xy, int *dead, {T} *path, long long n, int nsteps, int every_k,
        double prm0, double prm1, double prm2, double prm3, double h0, double h1, double h2, double h3, double h4,
        double bound) {{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    {T} x = xy[2 * i], y = xy[2 * i + 1];
    const {T} p[4] = {{({T})prm0, ({T})prm1, ({T})prm2, ({T})prm3}};
    int d = -1;
    ll_run<{T}, {flags}>(x, y, d, path, i, n, nsteps, every_k, p, ({T})bound, h0, h1, h2, h3, h4);
    xy[2 * i] = x; xy[2 * i + 1] = y; dead[i] = d;
}}
"""

#: The rules the benchmark times, as the template flags of ll_run in trajectories.cu.
RULES = {"sgd": {"gd": "0", "momentum": "LL_MOM", "nesterov": "LL_MOM | LL_NESTEROV",
                 "damped_decay": "LL_MOM | LL_DAMPED | LL_DECAY"},
         "adam": {"adam": "0", "adamw": "LL_DECAY | LL_DECOUPLED"}}


W = 9  # column width


def main_loop(code) -> float | None:
    """Instructions per step of the loop that makes the most steps per pass (the unrolled body)."""
    spans = loops(code)
    best = None
    for span in spans:
        n, steps = per_step(code, span, spans)
        if steps and (best is None or steps > best[1] or (steps == best[1] and n / steps < best[0])):
            best = (n / steps, steps)
    return None if best is None else best[0]


def table(src: str, options: tuple[str, ...], nvdisasm: str, probes: bool) -> dict:
    """{rule: {function: {dtype: instructions per step}}} for trajectories source ``src``."""
    out: dict = {}
    for fn, fn_id in kernels.FUNCTIONS.items():
        for method, m_id in (("sgd", 0), ("adam", 1)):
            text = src
            if probes:
                text += "".join(PROBE.format(name=rule, suffix=suffix, T=T, flags=flags)
                                for rule, flags in RULES[method].items()
                                for suffix, T in (("f32", "float"), ("f64", "double")))
            opts = ["--gpu-architecture=sm_90", "-std=c++17", *options, f"-DFN={fn_id}", f"-DMETHOD={m_id}"]
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "k.cubin"
                path.write_bytes(cubin(text, "trajectories.cu", opts))
                sass = subprocess.run([nvdisasm, "-c", str(path)], capture_output=True, text=True, check=True).stdout
            funcs = functions(sass)
            for rule in (RULES[method] if probes else ["gd" if method == "sgd" else "adam"]):
                for d, dtype in (("f32", "float32"), ("f64", "float64")):
                    if probes:
                        count = main_loop(funcs[f"probe_{rule}_{d}"])
                    else:  # the cheapest main loop of the whole kernel: GD, or Adam without weight decay
                        code = funcs[f"trajectories_{d}"]
                        spans = loops(code)
                        counts = [per_step(code, sp, spans) for sp in spans]
                        top = max((st for _, st in counts), default=0)
                        count = min((n / st for n, st in counts if st == top and st), default=None)
                    out.setdefault(rule, {}).setdefault(fn, {})[dtype] = count
    return out


def scan_report(nvdisasm: str, source: Path | None = None) -> None:
    """The scan kernel's innermost loops with 16 multiply-adds or more (its products): instructions and
    shared-memory loads per multiply-add, for sm_90."""
    src = kernels.source("scan_mlp")
    if source:
        src = (Path(kernels.__file__).parent / "prelude.cu").read_text() + "\n" + source.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin(src, "scan_mlp.cu", ["--gpu-architecture=sm_90", "-std=c++17"]))
        sass = subprocess.run([nvdisasm, "-c", str(path)], capture_output=True, text=True, check=True).stdout
    print("scan_mlp.cu, innermost loops with 16 multiply-adds or more (sm_90 SASS)")
    for name, code in sorted(functions(sass).items()):
        spans = loops(code)
        for lo, hi in spans:
            if any(o != (lo, hi) and lo <= o[0] and o[1] <= hi for o in spans):
                continue
            body = [code[k][2] for k in range(lo, hi + 1)]
            fma = sum(1 for t in body if re.search(r"\b[FD]FMA\b", t))
            lds = [t for t in body if re.search(r"\bLDS\b", t)]
            if fma >= 16:
                wide = sum(1 for t in lds if "LDS.128" in t or "LDS.64" in t)
                print(f"  {name}: {len(body)} instructions, {fma} multiply-adds, {len(lds)} shared loads ({wide} of "
                      f"them 8 or 16 bytes): {len(body) / fma:.2f} instructions and {len(lds) / fma:.3f} loads per multiply-add")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="another trajectories.cu (an older one): the cheapest main loop "
                    "of each whole kernel is counted (GD; Adam without weight decay) instead of one per rule")
    ap.add_argument("--options", help="NVRTC options instead of the package's (for an older source)")
    ap.add_argument("--json", type=Path, help="also write the table into this file, under --key")
    ap.add_argument("--key", default="after", help="'after' (also records the source's digest) or 'before'")
    ap.add_argument("--scan", action="store_true", help="report the scan kernel's product loops instead "
                    "(of --source if given)")
    ap.add_argument("--nvdisasm", default=shutil.which("nvdisasm") or next(
        iter(glob.glob(f"{sys.prefix}/lib/python3*/site-packages/nvidia/cu*/bin/nvdisasm")), "nvdisasm"))
    args = ap.parse_args()
    if args.scan:
        scan_report(args.nvdisasm, args.source)
        return
    src = kernels.source("trajectories")
    if args.source:
        prelude = (Path(kernels.__file__).parent / "prelude.cu").read_text()
        src = prelude + "\n" + args.source.read_text()
    options = tuple(args.options.split()) if args.options is not None else kernels._OPTIONS.get("trajectories", ())
    counts = table(src, options, args.nvdisasm, probes=args.source is None)
    print(f"instructions per step in the main loop (sm_90 SASS, no kept path; options {' '.join(options)})")
    print(f"{'function':<16}" + "".join(f"{r:>{2 * W}}" for r in counts))
    print(f"{'':<16}" + "".join(f"{d:>{W}}" for _ in counts for d in ("float32", "float64")))
    for fn in kernels.FUNCTIONS:
        cells = [counts[r][fn][d] for r in counts for d in ("float32", "float64")]
        print(f"{fn:<16}" + "".join(f"{c:>{W}.1f}" if c is not None else f"{'-':>{W}}" for c in cells))
    if args.json:
        record = json.loads(args.json.read_text()) if args.json.exists() else {}
        record[args.key] = counts
        if args.key == "after":
            record["date"] = datetime.date.today().isoformat()
            record["source_digest"] = kernels.source_digest("trajectories")
        args.json.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
