"""Explorers of book/03_gradient_descent.ipynb: an optimizer race, momentum on a quadratic, the step size on a bowl.

See Chapter 3. Trajectories come from :func:`losslab.optim.run_trajectories`
on the test functions of :mod:`losslab.landscapes`; each explorer caches the
runs it has made, so the static book computes each one once and a live
control that only slices a run (steps, which start) costs only the drawing.

The chapter's sentences about these explorers are computed from the same
runs: :func:`race_results` and :func:`saddle_escape` summarize the race's
frames, :func:`momentum_run` returns the measured and theoretical rates that
the momentum explorer draws; each explorer's alt text states the numbers of
its frame from the same runs (:func:`race_alt`, :func:`momentum_alt`,
:func:`bowl_alt`).

The static book offers every combination of at least nine positions per
slider (243 race frames, 81 momentum frames), so the runs of a whole grid
are one batch (:func:`losslab.optim.run_trajectories` with a learning rate
and a momentum per row), the contours are traced once per function, long
paths are thinned to the points that move the drawing (:func:`thin`), and
every frame is drawn on one reused figure (:func:`losslab.explore.canvas`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import landscapes, optim, plots
from ..backend import single_thread
from . import Choice, Explorer, Slider, canvas, legend, registered


def _panels(key: str, n: int, size: tuple[float, float], **adjust) -> tuple:
    def make() -> Figure:
        fig, _ = plots.figure(1, n, size=size, layout="fixed")
        fig.subplots_adjust(**adjust)
        return fig
    fig = canvas(key, make)
    return (fig, *fig.axes)


def thin(x: np.ndarray, y: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Indices of the points of a drawn line worth keeping (Ramer-Douglas-Peucker): the line through them passes
    within ``dx`` across and ``dy`` up or down (about a pixel of the panel) of every point left out. A straight
    stretch keeps its ends, a zig-zag every corner. A line with a non-finite point keeps every point."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n <= 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return np.arange(n)
    px, py = x / dx, y / dy  # in units of the tolerance
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    todo = [(0, n - 1)]
    while todo:
        i, j = todo.pop()
        if j <= i + 1:
            continue
        ux, uy = px[j] - px[i], py[j] - py[i]
        norm = math.hypot(ux, uy)
        qx, qy = px[i + 1 : j] - px[i], py[i + 1 : j] - py[i]
        d = np.abs(qx * uy - qy * ux) / norm if norm > 0 else np.hypot(qx, qy)  # distance to the chord
        k = int(np.argmax(d))
        if d[k] > 1.0:
            keep[i + 1 + k] = True
            todo += [(i, i + 1 + k), (i + 1 + k, j)]
    return np.nonzero(keep)[0]


@lru_cache(maxsize=16)
def _contour_lines(key: str, xs: tuple, ys: tuple, z_bytes: bytes, shape: tuple, levels: tuple, shades: int = 3):
    """Contour lines of a grid, traced once: ``shades`` (x, y) arrays, each the levels of one grey joined by NaN gaps."""
    import contourpy  # noqa: PLC0415  (matplotlib's own contour tracer)

    z = np.frombuffer(z_bytes, dtype=np.float64).reshape(shape)
    gen = contourpy.contour_generator(np.asarray(xs), np.asarray(ys), z, line_type="Separate")
    dx, dy = (xs[-1] - xs[0]) / 250, (ys[-1] - ys[0]) / 200  # about a pixel of the panel
    out = [([], []) for _ in range(shades)]
    for k, level in enumerate(levels):
        group = min(shades - 1, k * shades // len(levels))
        for seg in gen.lines(level):
            seg = seg[thin(seg[:, 0], seg[:, 1], dx, dy)]
            out[group][0].extend(seg[:, 0].tolist() + [np.nan])
            out[group][1].extend(seg[:, 1].tolist() + [np.nan])
    return [(np.array(x), np.array(y)) for x, y in out]


def _draw_contours(ax, key: str, xs: np.ndarray, ys: np.ndarray, z: np.ndarray, levels: np.ndarray) -> None:
    lines = _contour_lines(key, tuple(xs.tolist()), tuple(ys.tolist()), np.ascontiguousarray(z, dtype=np.float64).tobytes(),
                           z.shape, tuple(float(v) for v in levels))
    for k, (x, y) in enumerate(lines):
        ax.plot(x, y, color=str(0.75 - 0.25 * k), lw=0.6)

# --- 1. the race -------------------------------------------------------------------

#: Per function: the box drawn, three starts, and each optimizer's base learning rate
#: (tuned once per function so that at scale 1 no method diverges from the first start;
#: on Rosenbrock GD's step is 0.9 times 2/L at the first start (the largest curvature there),
#: and the two momentum methods use about the same step with beta = 0.9).
RACE = {
    "rosenbrock": dict(
        fn=landscapes.rosenbrock(), domain=((-2.0, 2.0), (-1.0, 3.0)),
        starts=((-1.2, 1.0), (-1.5, 2.5), (1.8, 0.5)),
        lr=dict(gd=1.2e-3, momentum=1e-3, nesterov=1e-3, rmsprop=3e-2, adam=0.2)),
    "six_hump_camel": dict(
        fn=landscapes.six_hump_camel(), domain=((-2.0, 2.0), (-1.1, 1.1)),
        # close to the set of starts from which gradient descent (lr 0.02) runs into the
        # saddle at the origin (y = 0.03363 at x = 0.5, near its stable direction (1, 0.062)),
        # 2.3e-4 below it, so that GD lingers at the saddle; the second start is the mirror image
        starts=((0.5, 0.0334), (-0.5, -0.0334), (0.9, 0.8)),
        lr=dict(gd=2e-2, momentum=4e-3, nesterov=4e-3, rmsprop=1e-2, adam=3e-2)),
    "rastrigin": dict(
        fn=landscapes.rastrigin(), domain=((-5.12, 5.12), (-5.12, 5.12)),
        starts=((4.3, 3.6), (-2.6, 3.2), (1.4, -4.2)),
        lr=dict(gd=2e-3, momentum=4e-4, nesterov=4e-4, rmsprop=5e-2, adam=2e-1)),
}
RACE_LABELS = {"rosenbrock": "Rosenbrock valley", "six_hump_camel": "saddle (six-hump camel)", "rastrigin": "Rastrigin egg crate"}
METHOD_LABELS = {"gd": "GD", "momentum": "heavy ball", "nesterov": "Nesterov", "rmsprop": "RMSProp", "adam": "Adam"}
#: The static book's positions: learning rates from a tenth to ten times the tuned ones (the chapter's x 1 and x 3
#: among them), and momentum (heavy ball and Nesterov) from none to 0.99 (the chapter's 0.9 among them).
LR_SCALES = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
RACE_MOMENTA = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
_WITH_MOMENTUM = ("momentum", "nesterov")


def _race_update(method: str, lr: torch.Tensor, momentum: torch.Tensor | float) -> optim.Update:
    if method == "gd":
        return optim.optimizer("sgd", lr=lr, label="GD")
    if method in _WITH_MOMENTUM:
        m = torch.as_tensor(momentum, dtype=torch.float64)
        m = m.clamp_min(1e-6) if method == "nesterov" else m  # PyTorch's Nesterov needs momentum > 0
        return optim.optimizer("sgd", lr=lr, momentum=m, nesterov=method == "nesterov")
    return optim.optimizer(method, lr=lr)


RACE_STEPS = 200
#: The loss-gap axis per function (fixed, so that every frame of a function shares one layout).
RACE_GAP_RANGE = {"rosenbrock": (1e-7, 1e5), "six_hump_camel": (1e-12, 1e1), "rastrigin": (1.0, 1e3)}


@lru_cache(maxsize=64)
def _race_batch(function: str, method: str, scales: tuple, momenta: tuple, start: int):
    """One batched run from one start: a row per (scale, momentum) pair, scale-major (momentum only where it is used)."""
    cfg = RACE[function]
    if method not in _WITH_MOMENTUM:
        momenta = (0.0,)
    pairs = [(s, m) for s in scales for m in momenta]
    x0 = torch.tensor([cfg["starts"][start]] * len(pairs), dtype=torch.float64)  # (S M, 2)
    lrs = torch.tensor([cfg["lr"][method] * s for s, _ in pairs], dtype=torch.float64)  # (S M,)
    update = _race_update(method, lrs, torch.tensor([m for _, m in pairs], dtype=torch.float64))
    with single_thread("cpu"):  # a few hundred rows of two numbers: threads would only wait for each other
        return optim.run_trajectories(cfg["fn"], x0, update, RACE_STEPS, bound=1e3, device="cpu")


def race_run(function: str, method: str, lr_scale: float, momentum: float, start: int):
    """One optimizer's path [RACE_STEPS + 1, 2], its loss [RACE_STEPS + 1] and the step it diverged at (-1: never).

    Every static (scale, momentum) pair runs in one batch per function, method and start (cached); any other setting
    runs alone. Momentum is used by heavy ball and Nesterov only.
    """
    uses = method in _WITH_MOMENTUM
    if lr_scale in LR_SCALES and (momentum in RACE_MOMENTA or not uses):
        run = _race_batch(function, method, LR_SCALES, RACE_MOMENTA, start)
        i = LR_SCALES.index(lr_scale) * (len(RACE_MOMENTA) if uses else 1) + (RACE_MOMENTA.index(momentum) if uses else 0)
    else:
        run, i = _race_batch(function, method, (lr_scale,), (momentum,), start), 0
    return run.path[:, i], run.loss[:, i], int(run.diverged_at[i])


def race_results(function: str, lr_scale: float, momentum: float = 0.9, start: int = 0,
                 steps: int = RACE_STEPS) -> dict[str, dict]:
    """What one frame of the race shows, per method: the numbers the chapter's sentences are built from.

    Returns
    -------
    dict
        ``{method: {"gap": f - f_min after ``steps`` (inf if it diverged), "diverged_at": step or -1,
        "end": (x, y), "below_half": first step whose gap is below half the starting gap (-1: never),
        "near_origin": number of steps spent within 0.1 of the origin}}``, in the order of
        :data:`METHOD_LABELS`.
    """
    if function not in RACE:
        raise ValueError(f"function: expected one of {list(RACE)}, got {function!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= RACE_STEPS:
        raise ValueError(f"steps: expected an int in [1, {RACE_STEPS}], got {steps!r}")
    fmin = RACE[function]["fn"].f_min or 0.0
    out = {}
    for method in METHOD_LABELS:
        path, loss, div = race_run(function, method, float(lr_scale), float(momentum), int(start))
        path, gap = path[: steps + 1], (loss[: steps + 1] - fmin)
        diverged = 0 <= div <= steps
        half = (gap < gap[0] / 2).nonzero()
        out[method] = {
            "gap": math.inf if diverged else float(gap[-1]),
            "diverged_at": div if diverged else -1,
            "end": (float(path[-1, 0]), float(path[-1, 1])),
            "below_half": int(half[0]) if len(half) else -1,
            "near_origin": int((path.norm(dim=-1) < 0.1).sum()),
        }
    return out


def race_alt(function: str, lr_scale: float, momentum: float, steps: int, start: int) -> str:
    """What a frame of the race shows, from its runs: where each method ends, best first, and which diverge."""
    res = race_results(function, lr_scale, momentum, start, steps)
    x0, y0 = RACE[function]["starts"][start]
    ended = sorted((m for m in res if res[m]["diverged_at"] < 0), key=lambda m: res[m]["gap"])
    gone = [m for m in res if res[m]["diverged_at"] >= 0]
    parts = [f"{METHOD_LABELS[m]} {res[m]['gap']:.2g}" for m in ended]
    text = (f"Contour plot of the {RACE_LABELS[function]} with the paths of gradient descent (GD), heavy-ball and "
            f"Nesterov momentum, RMSProp and Adam from ({x0:g}, {y0:g}), learning rates x {lr_scale:.2g}, momentum "
            f"{momentum:.2g}; beside it the loss gap per step on a log scale. After {steps} steps")
    if parts:
        text += " the gap above the minimum is " + ", ".join(parts)
    if gone:
        text += ("; " if parts else " ") + ", ".join(f"{METHOD_LABELS[m]} diverges at step {res[m]['diverged_at']}" for m in gone)
    return text + "."


def saddle_escape(lr_scale: float = 1.0, start: int = 0, radius: float = 0.1) -> tuple[int, float, float]:
    r"""Gradient descent at the saddle of the six-hump camel: how long it stays, and how fast it leaves.

    Near the saddle at the origin the loss is close to its quadratic model, so
    the component of the error along the Hessian's negative-curvature
    eigenvector is multiplied by :math:`1 + \eta|\lambda_{\min}|` at every step.

    Returns
    -------
    (steps, growth, theory)
        Steps the race's GD run spends within ``radius`` of the saddle; the measured
        growth factor per step of that component, from the first to the last of
        those steps; and :math:`1 + \eta|\lambda_{\min}|`.
    """
    fn = RACE["six_hump_camel"]["fn"]
    path, _, _ = race_run("six_hump_camel", "gd", float(lr_scale), 0.9, int(start))
    lam, vec = torch.linalg.eigh(fn.hessian(torch.zeros(2, dtype=torch.float64)))  # ascending: lam[0] < 0
    inside = (path.norm(dim=-1) < radius).nonzero().flatten()
    if len(inside) < 2:
        raise ValueError(f"start {start}: gradient descent does not stay within {radius} of the saddle")
    a, b = int(inside[0]), int(inside[-1])
    offset = (path @ vec[:, 0]).abs()  # (T + 1,) distance along the unstable direction
    growth = float((offset[b] / offset[a]) ** (1.0 / (b - a)))
    lr = RACE["six_hump_camel"]["lr"]["gd"] * float(lr_scale)
    return len(inside), growth, 1.0 + lr * float(-lam[0])


@lru_cache(maxsize=8)
def _contour(function: str, n: int = 90):
    cfg = RACE[function]
    xs, ys, z = landscapes.evaluate_grid(cfg["fn"], cfg["domain"], n)
    fmin = cfg["fn"].f_min or 0.0
    return xs.numpy(), ys.numpy(), (z - fmin).numpy() + 1e-3


@lru_cache(maxsize=4096)
def _race_drawn(function: str, method: str, lr_scale: float, momentum: float, steps: int, start: int):
    """The thinned path (x, y) and loss-gap curve (step, gap) of one method as drawn, and its label."""
    cfg = RACE[function]
    path, loss, div = race_run(function, method, lr_scale, momentum, start)
    path = path[: steps + 1].numpy()
    (x0, x1), (y0, y1) = cfg["domain"]
    keep = thin(path[:, 0], path[:, 1], (x1 - x0) / 200, (y1 - y0) / 160)
    gap = (loss[: steps + 1] - (cfg["fn"].f_min or 0.0)).clamp_min(1e-12).numpy()
    if 0 <= div <= steps:
        gap = gap[:div]
    lg = np.log10(gap)
    kg = thin(np.arange(len(gap), dtype=float), lg, steps / 100, 0.05)  # 0.05 decade: about 1 px
    label = METHOD_LABELS[method] + (f" (diverged at {div})" if 0 <= div <= steps else "")
    return path[keep], (kg, gap[kg]), label


_RACE_FIGURE: dict = {}


def _race_figure() -> dict:
    """The race's figure and its lines, made once: each frame sets their data (a new line costs about 1 ms)."""
    if not _RACE_FIGURE:
        fig, (ax, bx) = plots.figure(1, 2, size=(9.6, 3.9), layout="fixed")
        fig.subplots_adjust(left=0.06, right=0.985, bottom=0.13, top=0.9, wspace=0.22)
        art = {"fig": fig, "ax": ax, "bx": bx}
        art["contours"] = [ax.plot([], [], color=str(0.75 - 0.25 * k), lw=0.6)[0] for k in range(3)]
        art["minima"] = ax.plot([], [], marker="*", color="k", ms=9, ls="none")[0]
        art["paths"], art["ends"], art["gaps"] = [], [], []
        for k, method in enumerate(METHOD_LABELS):
            art["paths"].append(ax.plot([], [], color=plots.PALETTE[k], lw=1.3, label=METHOD_LABELS[method])[0])
            art["ends"].append(ax.plot([], [], "o", color=plots.PALETTE[k], ms=4)[0])
            art["gaps"].append(bx.plot([], [], color=plots.PALETTE[k], lw=1.3)[0])
        art["start"] = ax.plot([], [], "s", color="k", ms=5)[0]
        bx.set_yscale("log")
        art["legend"] = bx.legend(art["paths"], list(METHOD_LABELS.values()), loc="upper right", fontsize=7.5)
        ax.set(xlabel="x", ylabel="y")
        bx.set(xlabel="step", ylabel=r"$f - f^\star$")
        bx.set_title("loss gap per step", fontsize=10)
        _RACE_FIGURE.update(art)
    return _RACE_FIGURE


def render_race(function: str, lr_scale: float, momentum: float, steps: int, start: int) -> Figure:
    """Paths of GD, heavy ball, Nesterov, RMSProp and Adam on a contour plot, and the loss gap versus step.

    The figure is made once and its lines updated in place: read the returned figure before the next call.
    """
    cfg = RACE[function]
    xs, ys, z = _contour(function)
    art = _race_figure()
    ax, bx = art["ax"], art["bx"]
    lines = _contour_lines(function, tuple(xs.tolist()), tuple(ys.tolist()), np.ascontiguousarray(z).tobytes(), z.shape,
                           tuple(float(v) for v in np.geomspace(z.min() * 1.01, z.max(), 12)))
    for line, (x, y) in zip(art["contours"], lines):
        line.set_data(x, y)
    mins = np.asarray(cfg["fn"].minima, dtype=float).reshape(-1, 2)
    art["minima"].set_data(mins[:, 0], mins[:, 1])
    for k, method in enumerate(METHOD_LABELS):
        used = float(momentum) if method in _WITH_MOMENTUM else 0.0  # the others' runs do not depend on it: drawn once
        path, (steps_kept, gap), label = _race_drawn(function, method, float(lr_scale), used, int(steps), int(start))
        art["paths"][k].set_data(path[:, 0], path[:, 1])
        art["paths"][k].set_label(label)
        art["legend"].get_texts()[k].set_text(label)
        art["ends"][k].set_data(path[-1:, 0], path[-1:, 1])
        art["gaps"][k].set_data(steps_kept, gap)
    art["start"].set_data([cfg["starts"][start][0]], [cfg["starts"][start][1]])
    (x0, x1), (y0, y1) = cfg["domain"]
    ax.set(xlim=(x0, x1), ylim=(y0, y1))
    # titles and ranges that depend only on the function: the controls show the settings, and frames share a layout
    ax.set_title(RACE_LABELS[function], fontsize=10)
    bx.set(xlim=(0, steps), ylim=RACE_GAP_RANGE[function])
    return art["fig"]


@registered
def race_explorer() -> Explorer:
    """Optimizer race on Rosenbrock, a saddle and Rastrigin."""
    return Explorer(
        "gd.race",
        render_race,
        controls={
            "function": Choice(list(RACE), default="rosenbrock", labels=[RACE_LABELS[k] for k in RACE], label="function"),
            "lr_scale": Slider(0.1, 10.0, default=1.0, log=True, static=LR_SCALES, label="learning rates x", fill=False),
            "momentum": Slider(0.0, 0.99, default=0.9, static=RACE_MOMENTA, label="momentum", fill=False),
            # the static book shows every step of the first start; steps and start move in Jupyter or Colab
            "steps": Slider(10, RACE_STEPS, default=RACE_STEPS, integer=True, static=[RACE_STEPS], label="steps", fill=False),
            "start": Slider(0, 2, default=0, integer=True, step=1, static=[0], label="start", fill=False),
        },
        title="An optimizer race: the same start, five update rules",
        alt=race_alt,
        max_frames=len(RACE) * len(LR_SCALES) * len(RACE_MOMENTA),
    )


# --- 2. momentum on a quadratic --------------------------------------------------------

#: Steps per run: enough that the measured rate is taken well after the transient (see :func:`momentum_run`).
MOMENTUM_STEPS = 1000
#: The static frames' condition number, and Polyak's best (lr x L, beta) for it.
MOMENTUM_KAPPA = 100.0


def best_setting(kappa: float) -> tuple[float, float]:
    """Polyak's best heavy-ball setting on the explorer's quadratic: (lr x L, beta)."""
    lr, beta, _ = optim.heavy_ball_best(1.0, float(kappa))
    return lr * float(kappa), beta


def measurement_window(err: torch.Tensor) -> tuple[int, int]:
    """The steps ``(start, stop)`` over which :func:`momentum_run` measures a rate.

    ``stop`` is the last step whose error is still a normal float64 above 1e-250
    (a fast run reaches that before :data:`MOMENTUM_STEPS`), ``start = stop // 4``:
    the first quarter, where the slower eigenvalue has not yet taken over (and, at
    the best setting, the factor t of t rho^t still changes fast), is left out.
    """
    alive = (err > 1e-250).nonzero().flatten()
    stop = int(alive[-1]) if len(alive) else 0
    return stop // 4, stop


def _rates(err: torch.Tensor, diverged: torch.Tensor) -> torch.Tensor:
    """The measured rate of each column of ``err`` [T + 1, N] over :func:`measurement_window` (NaN: diverged or no window)."""
    measured = torch.full((err.shape[1],), math.nan, dtype=torch.float64)
    for k in range(err.shape[1]):
        start, stop = measurement_window(err[:, k])
        if not bool(diverged[k]) and stop - start >= 8:
            measured[k] = optim.measured_rate(err[:, k], start=start, stop=stop)
    return measured


@lru_cache(maxsize=4)
def _momentum_batch(kappa: float, lrs: tuple, betas: tuple):
    """Gradient descent at each rate in ``lrs`` (x L) and the heavy ball at every (lr, beta) pair, as one batch.

    Rows: ``len(lrs)`` GD rows, then the heavy-ball rows lr-major. Returns (fn, run, err, measured, theory).
    """
    fn = landscapes.quadratic(kappa, angle=math.pi / 6)
    lr = torch.tensor([v / kappa for v in lrs] + [v / kappa for v in lrs for _ in betas], dtype=torch.float64)  # (N,)
    beta = torch.tensor([0.0] * len(lrs) + [b for _ in lrs for b in betas], dtype=torch.float64)  # (N,)
    x0 = torch.tensor([[-2.5, 2.0]], dtype=torch.float64).expand(len(lr), 2).contiguous()  # (N, 2)
    with single_thread("cpu"):  # about a hundred rows of two numbers: threads would only wait for each other
        run = optim.run_trajectories(fn, x0, optim.optimizer("sgd", lr=lr, momentum=beta), MOMENTUM_STEPS,
                                     bound=1e8, device="cpu")
    err = run.path.norm(dim=-1)  # (T + 1, N)
    return fn, run, err, _rates(err, run.diverged_at >= 0), optim.heavy_ball_rate(lr, beta, [1.0, kappa])


@lru_cache(maxsize=128)
def momentum_run(lr_L: float, beta: float, kappa: float):
    """GD (beta = 0) and heavy ball on the rotated quadratic with eigenvalues 1 and kappa: two rows.

    The static grid (:data:`MOMENTUM_LRS` x :data:`MOMENTUM_BETAS` at :data:`MOMENTUM_KAPPA`) runs as one batch
    (cached); any other setting runs its two rows alone.

    Returns
    -------
    (fn, run, err, measured, theory, diverged)
        ``err`` [T + 1, 2] is the distance to the minimum; ``measured`` [2] the rate
        ``(err[stop] / err[start]) ** (1 / (stop - start))`` over :func:`measurement_window`
        (NaN for a run that diverged or has no window); ``theory`` [2] the spectral radius
        from :func:`losslab.optim.heavy_ball_rate`; ``diverged`` [2] bool.
    """
    if kappa == MOMENTUM_KAPPA and lr_L in MOMENTUM_LRS and beta in MOMENTUM_BETAS:
        fn, big, err, measured, theory = _momentum_batch(MOMENTUM_KAPPA, MOMENTUM_LRS, MOMENTUM_BETAS)
        i = MOMENTUM_LRS.index(lr_L)
        rows = [i, len(MOMENTUM_LRS) + i * len(MOMENTUM_BETAS) + MOMENTUM_BETAS.index(beta)]
    else:
        fn, big, err, measured, theory = _momentum_batch(float(kappa), (float(lr_L),), (float(beta),))
        rows = [0, 1]
    with single_thread("cpu"):  # slicing small tensors: threads would only wait for each other
        idx = torch.tensor(rows)
        run = optim.Trajectories(path=big.path.index_select(1, idx), loss=big.loss.index_select(1, idx),
                                 final=big.final.index_select(0, idx), diverged_at=big.diverged_at.index_select(0, idx))
        return fn, run, err.index_select(1, idx), measured[idx], theory[idx], run.diverged_at >= 0


def momentum_alt(lr_L: float, beta: float, kappa: float) -> str:
    """What a frame of the momentum explorer shows, from its runs: each method's measured and theoretical rate."""
    _, run, _, measured, theory, diverged = momentum_run(float(lr_L), float(beta), float(kappa))
    words = []
    for k, name in enumerate(("gradient descent", f"the heavy ball with beta {beta:.3g}")):
        if bool(diverged[k]):
            words.append(f"{name} diverges at step {int(run.diverged_at[k])} (theoretical rate {float(theory[k]):.3f} per step)")
        elif math.isnan(float(measured[k])):
            words.append(f"{name} has the theoretical rate {float(theory[k]):.4f} per step")
        else:
            words.append(f"{name} shrinks the distance by {float(measured[k]):.4f} per step (theory {float(theory[k]):.4f})")
    best_lr_L, best_beta = best_setting(kappa)
    best_rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    return (f"On a quadratic with condition number {kappa:.3g} at learning rate {lr_L:.3g}/L, "
            f"{words[0]}; {words[1]}. Panels: the first steps' paths on the contours, the distance to the minimum per "
            f"step on a log scale, and the theoretical rate against beta, with Polyak's best setting (beta "
            f"{best_beta:.3f} at {best_lr_L:.3g}/L, rate {best_rate:.3f}) marked.")


def render_momentum(lr_L: float, beta: float, kappa: float) -> Figure:
    """Paths of GD and heavy ball on a quadratic; distance to the minimum versus step; rate versus beta."""
    fn, run, err, measured, theory, diverged = momentum_run(float(lr_L), float(beta), float(kappa))
    fig, ax, bx, cx = _panels("gd.momentum", 3, (10.5, 3.6), left=0.05, right=0.99, bottom=0.15, top=0.86, wspace=0.28)
    xs, ys, z = _momentum_contour(float(kappa))
    _draw_contours(ax, f"quadratic {kappa}", xs, ys, z, np.geomspace(0.02, float(z.max()), 12))
    converged = err[:, ~diverged]
    low = max(1e-100, float(converged.min()) / 10) if converged.numel() else 1e-100
    high = 1e8 if bool(diverged.any()) else 1e2
    names = ["GD", f"heavy ball, beta {beta:.3g}"]
    shown = 120  # the path panel shows the first steps; the error panel shows all of them
    for k in range(2):
        div = int(run.diverged_at[k])
        stop = div if div >= 0 else err.shape[0]
        path = run.path[: min(stop, shown + 1), k]
        outside = (path.abs() > 3.5).any(1).nonzero()  # a diverging path is drawn until it leaves the box
        if div >= 0 and len(outside):
            path = path[: int(outside[0]) + 1]
        path = path.numpy()
        ax.plot(path[:, 0], path[:, 1], color=plots.PALETTE[k], lw=1.1, marker=".", ms=2.5)
        e = err[:stop, k].clamp_min(1e-300).numpy()
        keep = thin(np.arange(len(e), dtype=float), np.log10(e), MOMENTUM_STEPS / 120, math.log10(high / low) / 120)  # ~2 px
        if bool(diverged[k]):
            rate = f"diverges (theory {float(theory[k]):.3f})"
        elif math.isnan(float(measured[k])):
            rate = f"theory {float(theory[k]):.4f}"
        else:
            rate = f"measured {float(measured[k]):.4f}, theory {float(theory[k]):.4f}"
        bx.semilogy(keep, e[keep], color=plots.PALETTE[k], lw=1.3, label=f"{names[k]}: {rate}")
    if not bool(diverged[1]):
        start, stop = measurement_window(err[:, 1])
        bx.axvspan(start, stop, color=plots.PALETTE[1], alpha=0.08, lw=0, label="steps measured (heavy ball)")
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xlabel="x", ylabel="y")
    ax.set_title(f"kappa {kappa:.3g}, lr {lr_L:.3g}/L: first {shown} steps", fontsize=9)
    bx.set(xlabel="step", ylabel="distance to minimum", ylim=(low, high),
           xlim=(0, MOMENTUM_STEPS))
    stride = 5 if low > 1e-30 else 25
    bx.set_yticks([10.0**e for e in range(0, -101, -stride) if 10.0**e >= low])
    legend(bx, loc="lower left", fontsize=6.5)
    bx.set_title("error per step", fontsize=10)
    grid, curve = _rate_curve(float(lr_L), float(kappa))
    cx.plot(grid, curve, color="0.3", lw=1.2, label=f"theory at lr = {lr_L:.3g}/L")
    cx.plot(grid, np.sqrt(grid), color="0.6", lw=0.9, ls=":", label=r"$\sqrt{\beta}$ (floor)")
    best_lr_L, best_beta = best_setting(kappa)
    best_rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    cx.plot([best_beta], [best_rate], "*", color=plots.PALETTE[2], ms=10,
            label=f"best: beta {best_beta:.3f} at lr {best_lr_L:.3g}/L")
    if not math.isnan(float(measured[1])):
        cx.plot([beta], [float(measured[1])], "o", color=plots.PALETTE[1], ms=5, label="measured")
    cx.set(xlabel="momentum beta", ylabel="rate per step", ylim=(max(0.0, best_rate - 0.2), 1.05), xlim=(0, 1))
    legend(cx, loc="lower left", fontsize=6.5)
    cx.set_title(r"rate = max |eigenvalue| vs beta", fontsize=10)
    return fig


@lru_cache(maxsize=8)
def _momentum_contour(kappa: float):
    fn = landscapes.quadratic(kappa, angle=math.pi / 6)
    xs, ys, z = landscapes.evaluate_grid(fn, ((-3.0, 3.0), (-3.0, 3.0)), 80)
    return xs.numpy(), ys.numpy(), z.numpy()


@lru_cache(maxsize=32)
def _rate_curve(lr_L: float, kappa: float):
    grid = torch.linspace(0, 0.995, 120, dtype=torch.float64)
    return grid.numpy(), optim.heavy_ball_rate(torch.full_like(grid, lr_L / kappa), grid, [1.0, kappa]).numpy()


#: The static book's positions: learning rates (x L) and momenta around Polyak's best setting for kappa = 100.
_BEST_LR_L, _BEST_BETA = best_setting(MOMENTUM_KAPPA)
MOMENTUM_LRS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, _BEST_LR_L, 3.8)
MOMENTUM_BETAS = (0.0, 0.3, 0.5, _BEST_BETA, 0.8, 0.9, 0.95, 0.98, 0.99)


@registered
def momentum_explorer() -> Explorer:
    """Heavy-ball momentum on a quadratic, measured rate beside the theoretical one."""
    return Explorer(
        "gd.momentum",
        render_momentum,
        controls={
            # the static frames include Polyak's best setting for kappa = 100 (lr 3.31/L, beta 0.669)
            "lr_L": Slider(0.05, 4.0, default=1.0, static=MOMENTUM_LRS, label="learning rate x L", fill=False),
            "beta": Slider(0.0, 0.99, default=0.9, static=MOMENTUM_BETAS, label="momentum beta", fill=False),
            # one condition number in the static book (9 more would be 729 frames); it moves in Jupyter or Colab
            "kappa": Slider(2.0, 200.0, default=MOMENTUM_KAPPA, log=True, static=[MOMENTUM_KAPPA], label="condition number kappa", fill=False),
        },
        title="Momentum on an ill-conditioned quadratic",
        alt=momentum_alt,
    )


# --- 3. the step size on a bowl ----------------------------------------------------------

BOWL_KAPPA = 4.0
BOWL_STEPS = 40
#: The static book's positions (x L): crawling, about right, oscillating, 2/L where it stops converging, and beyond.
BOWL_LRS = (0.05, 0.2, 0.5, 1.0, 1.5, 1.8, 2.0, 2.1, 2.3)


def bowl_verdict(path: np.ndarray) -> str:
    """What a run on the bowl did, read off its path [T + 1, 2]: diverges, oscillates, crawls, or about right.

    It diverges if it ends farther from the minimum than it started; it oscillates if
    a coordinate changes sign from one step to the next, and converges only if the
    distance still shrinks over the second half of the run; it crawls if the distance
    shrinks by less than 10% per step on average; otherwise the step is about right.
    """
    dist = np.linalg.norm(path, axis=1)
    if not np.isfinite(dist).all() or dist[-1] > dist[0]:
        return "diverges"
    oscillates = bool((path[1:] * path[:-1] < 0).any())
    if dist[-1] >= 0.99 * dist[len(dist) // 2] > 0:
        return "oscillates, never converges" if oscillates else "stalls"
    if oscillates:
        return "oscillates, converges"
    rate = (dist[-1] / dist[0]) ** (1 / (len(dist) - 1)) if dist[-1] > 0 else 0.0
    return "too small: crawls" if rate > 0.9 else "about right"


@lru_cache(maxsize=64)
def bowl_run(lr_L: float) -> np.ndarray:
    """Gradient descent on the bowl 0.5 (x^2 + 4 y^2) from (-2.5, 1.5) with lr = lr_L / L: the path [BOWL_STEPS + 1, 2]."""
    fn = landscapes.quadratic(BOWL_KAPPA)
    with single_thread("cpu"):
        run = optim.run_trajectories(fn, torch.tensor([[-2.5, 1.5]], dtype=torch.float64),
                                     optim.optimizer("sgd", lr=lr_L / BOWL_KAPPA), BOWL_STEPS, bound=1e6, device="cpu")
    return run.path[:, 0].numpy()


def bowl_alt(lr_L: float) -> str:
    """What a frame of the bowl explorer shows, from its run: the verdict, the factors per step and the end distance."""
    path = bowl_run(float(lr_L))
    lr = lr_L / BOWL_KAPPA
    dist = np.linalg.norm(path, axis=1)
    return (f"Gradient descent on the bowl x²/2 + 2y² at learning rate {lr_L:.2g}/L: {bowl_verdict(path)}. Each step "
            f"multiplies the error by {1 - lr:.2f} along x and {1 - BOWL_KAPPA * lr:.2f} along y; after {BOWL_STEPS} "
            f"steps the distance to the minimum is {dist[-1]:.2g}, from {dist[0]:.2g} at the start. Left, the path on "
            "the contours; right, the distance per step on a log scale with the predicted rate.")


def render_bowl(lr_L: float) -> Figure:
    """Gradient descent on the bowl 0.5 (x^2 + 4 y^2) with lr = lr_L / L: path, and distance per step."""
    fn = landscapes.quadratic(BOWL_KAPPA)
    lr = lr_L / BOWL_KAPPA
    path = bowl_run(float(lr_L))
    fig, ax, bx = _panels("gd.bowl", 2, (9.0, 3.5), left=0.07, right=0.98, bottom=0.15, top=0.86, wspace=0.25)
    xs, ys, z = _bowl_contour()
    _draw_contours(ax, "bowl", xs, ys, z, np.geomspace(0.05, float(z.max()), 10))
    shown = path[: min(len(path), 25)]
    ax.plot(shown[:, 0], shown[:, 1], color=plots.PALETTE[0], marker="o", ms=3, lw=1)
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xlabel="x", ylabel="y")
    fx, fy = abs(1 - lr), abs(1 - lr * BOWL_KAPPA)
    dist = np.linalg.norm(path, axis=1)
    ax.set_title(f"lr = {lr_L:.2g}/L: {bowl_verdict(path)}", fontsize=10)
    bx.semilogy(np.arange(len(dist)), np.maximum(dist, 1e-300), color=plots.PALETTE[0], lw=1.4, label="distance")
    bx.semilogy(np.arange(len(dist)), dist[0] * max(fx, fy) ** np.arange(len(dist)), color=plots.PALETTE[1], ls="--",
                lw=1, label=f"rate max(|1 - lr|, |1 - 4 lr|) = {max(fx, fy):.3f}")
    bx.set(xlabel="step", ylabel="distance to minimum", ylim=(1e-12, 1e6))
    legend(bx, loc="lower left", fontsize=7.5)
    bx.set_title(f"factors per step: x {fx:.2f}, y {fy:.2f}", fontsize=10)
    return fig


@lru_cache(maxsize=1)
def _bowl_contour():
    xs, ys, z = landscapes.evaluate_grid(landscapes.quadratic(BOWL_KAPPA), ((-3.0, 3.0), (-3.0, 3.0)), 80)
    return xs.numpy(), ys.numpy(), z.numpy()


@registered
def bowl_explorer() -> Explorer:
    """Too small, right, too large: the learning rate on a bowl."""
    return Explorer(
        "gd.bowl",
        render_bowl,
        controls={"lr_L": Slider(0.05, 2.3, default=1.0, static=BOWL_LRS, label="learning rate x L", fill=False)},
        title="The learning rate on a bowl: too small, right, too large",
        alt=bowl_alt,
    )
