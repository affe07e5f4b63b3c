"""``python -m losslab.bench``: the package's heavy operations against what a reader would write.

Each row runs ours and the baseline side by side, in one process, on the
current device (``LOSSLAB_DEVICE`` picks it), and prints the times and their
ratio (baseline / ours: above 1 means ours is faster), with the bandwidth
achieved where an operation is memory-bound, against the device's measured
copy bandwidth. It is a benchmark, not a test: nothing here passes or fails.

Sizes follow the device: on a GPU the sizes the appendix *Running on a GPU*
quotes (8192 x 50257 logits, a 101 x 101 scan, 1e6 starts x 1000 steps); on a
CPU smaller ones that finish in about a minute on two cores.

Options: ``--quick`` (smaller sizes, fewer repeats), ``--json PATH`` (write
the rows as JSON too), ``--device cpu|cuda``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import backend, kernels, landscapes, losses, optim

__all__ = ["Row", "timeit", "copy_bandwidth", "run", "main"]


@dataclass
class Row:
    """One benchmark row: ours against a baseline, measured in the same run."""

    work: str
    ours: str
    ours_ms: float
    baseline: str
    baseline_ms: float
    gbps: float | None = None  # achieved by ours, for memory-bound work

    @property
    def ratio(self) -> float:
        return self.baseline_ms / self.ours_ms


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timeit(fn: Callable[[], object], dev: torch.device, *, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds (the device synchronized around each call)."""
    return timeit_side_by_side([fn], dev, rounds=repeat, warmup=warmup)[0]


def timeit_side_by_side(fns: Sequence[Callable[[], object]], dev: torch.device, *, rounds: int = 3,
                        warmup: int = 1) -> list[float]:
    """Median wall times in milliseconds of several functions (the device synchronized around each
    call), run in turn round after round, so a machine that slows down or speeds up during the run
    weighs on each the same way (their ratio is what a benchmark reports)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, times):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            out.append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def copy_bandwidth(dev: torch.device, *, mib: int = 256) -> float:
    """GB/s of a device-to-device copy, counting bytes read and written."""
    n = mib * (1 << 20) // 4
    src = torch.empty(n, dtype=torch.float32, device=dev).fill_(1.0)
    dst = torch.empty_like(src)
    ms = timeit(lambda: dst.copy_(src), dev, repeat=5)
    return 2 * n * 4 / (ms * 1e-3) / 1e9


def _eager(fn, x0: torch.Tensor, method: str, lr: float, steps: int, *, mu: float = 0.9,
           betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """What a reader writes: a plain loop of optimizer steps on the whole batch of starts."""
    x, buf = x0.clone(), torch.zeros_like(x0)
    v = torch.zeros_like(x0)
    for t in range(1, steps + 1):
        g = fn.grad(x)
        if method == "gd":
            x = x - lr * g
        elif method == "momentum":
            buf = mu * buf + g
            x = x - lr * buf
        elif method == "nesterov":
            buf = mu * buf + g
            x = x - lr * (g + mu * buf)
        elif method == "adam":
            buf = betas[0] * buf + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g * g
            x = x - lr * (buf / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
        else:
            raise ValueError(f"method: expected gd, momentum, nesterov or adam, got {method!r}")
    return x


def run(dev: torch.device, *, quick: bool = False) -> tuple[list[Row], float]:
    """Measure every row on ``dev``; returns the rows and the copy bandwidth (GB/s)."""
    gpu = dev.type == "cuda"
    rows: list[Row] = []
    bw = copy_bandwidth(dev, mib=64 if quick or not gpu else 1024)
    rep = 3 if quick else (20 if gpu else 5)
    torch.manual_seed(0)

    # 1. cross-entropy over a vocabulary
    b, v = (8192, 50257) if gpu and not quick else ((512, 50257) if not quick else (64, 50257))
    x = torch.randn(b, v, device=dev) * 3
    t = torch.randint(0, v, (b,), device=dev)
    fused = kernels.available(dev)
    name = "fused kernel" if fused else "kernels.cross_entropy (PyTorch fallback)"
    fns = [lambda: kernels.cross_entropy(x, t), lambda: F.cross_entropy(x, t)]
    if fused:  # and the row kernel launched by hand: what the public function's checks and reduction cost
        import cupy  # noqa: PLC0415

        per_row, lse = torch.empty(b, device=dev), torch.empty(b, device=dev)
        row_kernel = kernels._function("cross_entropy", "ce_forward_f32")
        fns.append(lambda: kernels._launch(row_kernel, b, kernels._BLOCK, (
            kernels._ptr(x), kernels._ptr(t), kernels._ptr(per_row), kernels._ptr(lse), cupy.int64(v), cupy.int64(-100))))
    ms, base, *alone = timeit_side_by_side(fns, dev, rounds=rep)
    work = f"cross-entropy forward, {b}x{v} fp32"
    rows.append(Row(work, name, ms, "F.cross_entropy", base, b * v * 4 / (ms * 1e-3) / 1e9))
    if alone:
        rows.append(Row(work, "its row kernel alone (no checks, no reduction)",
                        alone[0], "F.cross_entropy", base, b * v * 4 / (alone[0] * 1e-3) / 1e9))
    scratch = timeit(lambda: losses.cross_entropy(x, t), dev, repeat=rep)
    rows.append(Row(work, "losses.cross_entropy (from scratch)", scratch,
                    "F.cross_entropy", base))
    xg = x.clone().requires_grad_()

    def ours_fb():
        kernels.cross_entropy(xg, t).backward()
        xg.grad = None

    def base_fb():
        F.cross_entropy(xg, t).backward()
        xg.grad = None

    # (FORWARD_BACKWARD, rows in flight per SM for "l2", label, passes over memory at best)
    variants = [("auto", 1, name, 3)]
    if fused:  # the gradient written in the forward's read (rows in shared memory), from L2, or by two kernels
        variants = [("shared", 1, "fused kernel, gradient in the forward's read", 2),
                    ("l2", 1, "fused kernel, second read from L2 (1 row per SM)", 2),
                    ("l2", 2, "fused kernel, second read from L2 (2 rows per SM)", 2),
                    ("two", 1, "fused kernels, forward then backward", 3)]
        if not kernels._fused_grad_fits(xg):
            variants = variants[1:]

    def way(setting: str, per_sm: int) -> Callable[[], None]:
        def run() -> None:
            kernels.FORWARD_BACKWARD, kernels.L2_ROWS_PER_SM = setting, per_sm
            try:
                ours_fb()
            finally:
                kernels.FORWARD_BACKWARD, kernels.L2_ROWS_PER_SM = "auto", 1
        return run

    base, *times = timeit_side_by_side([base_fb] + [way(s, n) for s, n, _, _ in variants], dev, rounds=rep)
    for (_, _, label, passes), ms in zip(variants, times):
        rows.append(Row(f"cross-entropy forward+backward, {b}x{v} fp32", label, ms, "F.cross_entropy", base,
                        passes * b * v * 4 / (ms * 1e-3) / 1e9))
    del x, xg

    # 2. a landscape scan of a small MLP on the digits
    from . import data  # noqa: PLC0415

    train, _, _ = data.digits(n_train=1795, n_val=1, device=dev)  # all 1797 digits but two
    xd, yd = train.x, train.y
    model = landscapes.MLP([xd.shape[1], 64, 64, 10], seed=0).to(dev)
    d1 = landscapes.random_direction(model, seed=1)
    d2 = landscapes.random_direction(model, seed=2)
    r = 101 if gpu and not quick else (41 if not quick else 11)
    coords = torch.linspace(-1, 1, r, device=dev)
    # the per-point loop and vmap on a sample of the grid, scaled to the whole grid (same work per
    # point), and where it runs the fused kernel (scan_losses(method="kernel")): all timed in turn,
    # round after round (timeit_side_by_side)
    sample = min(r * r, 100)
    c = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), -1).reshape(-1, 2)[:sample]
    ms, loop, vm, *ms_k = timeit_side_by_side(
        [lambda: landscapes.scan_2d(model, xd, yd, d1, d2, coords, coords),
         lambda: landscapes.scan_losses(model, xd, yd, [d1, d2], c, method="loop"),
         lambda: landscapes.scan_losses(model, xd, yd, [d1, d2], c, method="vmap")]
        + ([lambda: landscapes.scan_2d(model, xd, yd, d1, d2, coords, coords, method="kernel")] if fused else []),
        dev, rounds=3 if not quick else 1)
    work, loop_label = f"scan_2d {r}x{r}, 64-64-10 MLP on {xd.shape[0]} digits", f"per-point loop ({sample} points, scaled)"
    rows.append(Row(work, "batched (affine path)", ms, loop_label, loop * (r * r) / sample))
    rows.append(Row(work, "batched (affine path)", ms, f"torch.func.vmap ({sample} points, scaled)", vm * (r * r) / sample))
    if fused:
        rows.append(Row(work, "fused kernel", ms_k[0], loop_label, loop * (r * r) / sample))
        rows.append(Row(work, "fused kernel", ms_k[0], "batched (affine path)", ms))

    # 3. optimizer trajectories from many starts
    n, steps = (1_000_000, 1000) if gpu and not quick else ((20_000, 200) if not quick else (2_000, 50))
    fn = landscapes.rosenbrock()
    x0 = torch.rand(n, 2, device=dev, dtype=torch.float32) * torch.tensor([3.0, 3.0], device=dev) - torch.tensor([1.5, 0.5], device=dev)
    label = "fused kernel (one launch)" if kernels.available(dev) else "kernels.trajectories (run_trajectories fallback)"
    setups = {  # every optimizer the kernel offers, each against the same loop written in plain PyTorch
        "SGD-momentum": ("momentum", 1e-4, optim.optimizer("sgd", lr=1e-4, momentum=0.9)),
        "GD": ("gd", 1e-4, optim.optimizer("sgd", lr=1e-4)),
        "Nesterov": ("nesterov", 1e-4, optim.optimizer("sgd", lr=1e-4, momentum=0.9, nesterov=True)),
        "Adam": ("adam", 1e-2, optim.optimizer("adam", lr=1e-2)),
    }
    for title, (method, lr, upd) in setups.items():
        if quick and title != "SGD-momentum":
            continue
        ms, base = timeit_side_by_side([lambda: kernels.trajectories("rosenbrock", x0, upd, steps),
                                        lambda: _eager(fn, x0, method, lr, steps)], dev, rounds=max(2, rep // 4))
        rows.append(Row(f"{title} on Rosenbrock, {n:.0e} starts x {steps} steps", label, ms, "eager torch loop", base))
    return rows, bw


def recorded(name: str = "bench_h100") -> tuple[dict, list[Row]]:
    """A benchmark run recorded on a machine CI does not have (``losslab/measured/<name>.json``).

    Returns the whole record (device, date, command, notes) and its rows.
    """
    from importlib import resources  # noqa: PLC0415

    path = resources.files("losslab") / "measured" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"name: no recorded benchmark {name!r} in losslab/measured")
    record = json.loads(path.read_text(encoding="utf-8"))
    fields = ("work", "ours", "ours_ms", "baseline", "baseline_ms", "gbps")
    return record, [Row(**{k: r.get(k) for k in fields}) for r in record["rows"]]


def format_rows(rows: list[Row], bw: float, dev: torch.device | str) -> str:
    """The rows as a markdown table; ``dev`` is a device, or the description of a recorded one."""
    where = dev if isinstance(dev, str) else backend.describe(dev)
    lines = [f"device: {where}; copy bandwidth {bw:.1f} GB/s (read + write)",
             "| work | ours | ms | baseline | ms | baseline / ours | ours GB/s (% of copy) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        gb = f"{r.gbps:.1f} ({100 * r.gbps / bw:.0f}%)" if r.gbps else ""
        lines.append(f"| {r.work} | {r.ours} | {r.ours_ms:.2f} | {r.baseline} | {r.baseline_ms:.2f} | {r.ratio:.2f} | {gb} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m losslab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke run)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: losslab.backend.device())")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    dev = backend.device(args.device) if args.device else backend.device()
    rows, bw = run(dev, quick=args.quick)
    print(format_rows(rows, bw, dev))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": backend.describe(dev), "copy_gbps": bw,
                       "rows": [dict(asdict(r), ratio=r.ratio) for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
