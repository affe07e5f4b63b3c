"""Explorers and drawings of Chapter 5 (Backpropagation).

- :func:`draw_graph` draws a computational graph of :class:`losslab.autograd.Value`
  nodes with matplotlib alone (no Graphviz binary): one box per node with its
  value and, once known, its gradient.
- :func:`step_explorer`: a backward pass one rule at a time.
- :func:`cost_explorer`: the reader sets a network's depth and width and sees
  what a full gradient costs by backprop and by finite differences, measured
  on the reader's machine (:func:`depth_width_costs`).
- :func:`gradcheck_explorer`: the relative error of central differences
  against the step size, in float64 and float32, on a smooth function and at a kink.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath

from .. import plots
from ..autograd import (GradientCosts, GraphLayout, Value, backward_trace, central_difference_probe, graph_layout, init_mlp,
                        mlp_forward, mlp_loss_and_grads, mse, numerical_gradient)
from ..backend import single_thread
from . import Choice, Explorer, Slider, registered

__all__ = ["draw_graph", "edge_routes", "bezier", "example_expression", "step_explorer", "cost_explorer", "depth_width_costs", "gradcheck_explorer",
           "gradcheck_sweep", "gradcheck_sweeps"]

_DONE, _NEW, _RULE, _EDGE = "#e8f1fa", "#fbd9bf", "#0072B2", "#8895a7"


def example_expression() -> Value:
    """The chapter's running example: a tanh unit with a skip connection, squared.

    ``L = (v * tanh(w * x + b) + x) ** 2`` at ``x = 0.5, w = -1.5, b = 2, v = 1.2``;
    ``x`` is used twice, so its gradient is a sum over two paths.
    """
    x, w, b, v = Value(0.5, "x"), Value(-1.5, "w"), Value(2.0, "b"), Value(1.2, "v")
    wx = w * x; wx.label = "wx"
    z = wx + b; z.label = "z"
    a = z.tanh(); a.label = "a"
    va = v * a; va.label = "va"
    r = va + x; r.label = "r"
    L = r ** 2; L.label = "L"
    return L


_SX, _SY = 2.3, 1.25      # spacing of columns and rows in drawing units
_BOX_W, _BOX_H = 1.55, 0.95  # three lines of at least 10 CSS px each, without touching, at 700 px wide


def _positions(layout: GraphLayout) -> list[tuple[float, float]]:
    return [(x * _SX, y * _SY) for x, y in layout.xy]


def edge_routes(layout: GraphLayout) -> list[np.ndarray]:
    """The points of the line that draws each edge of ``layout``, in drawing units.

    An edge between neighbouring columns is an S-curve from the right side of
    its input's box to the left side of its user's box, inside the gap
    between the two columns. An edge that skips columns (the skip connection
    ``x -> r`` of the running example) would run behind the boxes in between,
    so it climbs to a lane above every box, crosses there and comes down to
    its user: it leaves its input through the top of the box when nothing
    sits above it in its column (else from the right side, up the gap between
    columns), and enters its user from above when nothing sits above that one
    (else down the gap on its left and in from the side). Each such edge gets
    its own lane; corners are rounded. No edge crosses a box it does not join.

    Returns
    -------
    list of ndarray, shape (N, 2)
        One polyline per ``layout.edges`` entry, from the input to the user.
    """
    pos = _positions(layout)
    top = max(y for _, y in pos) + _BOX_H / 2
    col = [round(x / _SX) for x, _ in pos]

    def top_free(k: int) -> bool:
        return not any(col[m] == col[k] and pos[m][1] > pos[k][1] for m in range(len(pos)))

    routes, lane = [], 0
    for i, j in layout.edges:
        (x0, y0), (x1, y1) = pos[i], pos[j]
        if col[j] - col[i] <= 1:
            a, b = (x0 + _BOX_W / 2, y0), (x1 - _BOX_W / 2, y1)
            mid = (a[0] + b[0]) / 2
            routes.append(bezier(np.array([a, (mid, y0), (mid, y1), b])))
            continue
        lane += 1
        ylane = top + (0.25 + 0.3 * lane) * _SY
        shift = 0.12 * (lane - 1)                              # edges sharing a gap do not overlap
        if top_free(i):
            way = [(x0, y0 + _BOX_H / 2), (x0, ylane)]
        else:
            gap = x0 + _SX / 2 - shift
            way = [(x0 + _BOX_W / 2, y0), (gap, y0), (gap, ylane)]
        if top_free(j):
            way += [(x1, ylane), (x1, y1 + _BOX_H / 2)]
        else:
            gap = x1 - _SX / 2 + shift
            way += [(gap, ylane), (gap, y1), (x1 - _BOX_W / 2, y1)]
        routes.append(_rounded(np.array(way, dtype=float), radius=0.3))
    return routes


def bezier(points: np.ndarray, n: int = 64) -> np.ndarray:
    """``n`` points along the cubic Bezier curve with control ``points`` (4, 2): shape (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]                     # (n, 1)
    p0, p1, p2, p3 = points
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def _rounded(way: np.ndarray, radius: float, n: int = 9) -> np.ndarray:
    """The polyline through ``way`` (K, 2) with each inner corner replaced by a quadratic arc of ``radius``."""
    out = [way[0]]
    for k in range(1, len(way) - 1):
        p, a, b = way[k], way[k - 1], way[k + 1]
        r = min(radius, np.linalg.norm(p - a) / 2, np.linalg.norm(b - p) / 2)
        u = p - r * (p - a) / np.linalg.norm(p - a)            # where the arc starts
        v = p + r * (b - p) / np.linalg.norm(b - p)            # and ends; p is its control point
        t = np.linspace(0.0, 1.0, n)[:, None]
        out.extend((1 - t) ** 2 * u + 2 * (1 - t) * t * p + t ** 2 * v)
    out.append(way[-1])
    return np.array(out)


def draw_graph(ax: Axes, layout: GraphLayout, *, grads: list[float | None] | None = None,
               rule: int | None = None, received: tuple[int, ...] = ()) -> None:
    """Draw ``layout`` on ``ax``: boxes (name, operation, value, gradient) joined by arrows.

    Edges follow :func:`edge_routes`: an edge that skips columns runs in a
    lane over the top of the graph, so no edge runs behind a box.

    Parameters
    ----------
    ax : Axes
    layout : GraphLayout
        From :func:`losslab.autograd.graph_layout`.
    grads : list of float or None, optional
        Gradient to print in each box (``None``: not known yet). Default: each node's ``.grad``.
    rule : int, optional
        Index of the node whose backward rule just ran (drawn with a thick blue border).
    received : tuple of int
        Nodes whose gradient the rule just changed (filled orange).
    """
    nodes = layout.nodes
    if grads is None:
        grads = [v.grad for v in nodes]
    pos = _positions(layout)
    w, h = _BOX_W, _BOX_H
    routes = edge_routes(layout)
    for line in routes:
        ax.add_patch(FancyArrowPatch(path=MplPath(line), arrowstyle="-|>", mutation_scale=10,
                                     color=_EDGE, lw=1.1, shrinkA=1, shrinkB=1))
    for k, (v, (x, y)) in enumerate(zip(nodes, pos)):
        fill = _NEW if k in received else (_DONE if grads[k] is not None else "white")
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=fill, edgecolor=_RULE if k == rule else "0.35",
                                    lw=2.6 if k == rule else 0.9))
        name = v.label or "?"
        head = f"{name} = {v._op}" if v._op else name
        g = "grad  ?" if grads[k] is None else f"grad {grads[k]:.3g}"
        ax.text(x, y + 0.29, head, ha="center", va="center", fontsize=8.5, fontweight="bold")
        ax.text(x, y, f"data {v.data:.3g}", ha="center", va="center", fontsize=8)
        ax.text(x, y - 0.29, g, ha="center", va="center", fontsize=8, color="#8a3a00" if grads[k] is not None else "0.5")
    for (i, j), line in zip(layout.edges, routes):
        if round((pos[j][0] - pos[i][0]) / _SX) > 1:                  # a lane over the top: say what it is
            ax.text((pos[i][0] + pos[j][0]) / 2, line[:, 1].max() + 0.06, "skip connection", ha="center",
                    va="bottom", fontsize=7.5, color="0.35")
    curves = np.concatenate(routes) if routes else np.zeros((0, 2))
    xs = [p[0] for p in pos] + list(curves[:, 0])
    ys = [p[1] for p in pos] + list(curves[:, 1])
    ax.set_xlim(min(xs) - w, max(xs) + w)
    ax.set_ylim(min(ys) - h, max(ys) + 0.7 * h)
    ax.set_aspect("equal")
    ax.axis("off")


# --- explorer 1: backward, one rule at a time ------------------------------------

@lru_cache(maxsize=1)
def _trace():
    root = example_expression()
    layout = graph_layout(root)
    _, steps = backward_trace(root)
    return layout, steps


@dataclass(frozen=True)
class StepView:
    """What frame ``step`` of the step-through explorer shows (see :func:`step_view`).

    Attributes
    ----------
    step : int
    grads : list of float or None
        Each node's gradient as known after ``step`` steps (``None``: not reached yet).
    rule : int or None
        The node whose backward rule ran at this step (``None`` at step 0 and for the seed).
    received : tuple of int
        The nodes whose gradient this step changed.
    title, note : str
        The figure's title and the line beneath it.
    """

    step: int
    grads: list
    rule: int | None
    received: tuple
    title: str
    note: str


@lru_cache(maxsize=None)
def step_view(step: int) -> StepView:
    """The state of the example graph after ``step`` steps of backward (0: forward values only); cached."""
    layout, steps = _trace()
    nodes = layout.nodes
    if not 0 <= step <= len(steps):
        raise ValueError(f"step: expected 0 to {len(steps)}, got {step}")
    if step == 0:
        return StepView(0, [None] * len(nodes), None, (),
                        "Step 0: the forward pass has computed every value; no gradient is known yet",
                        "Each box holds the value computed left to right; backward will fill in dL/d(node) right to left.")
    s = steps[step - 1]
    known = set()
    for t in steps[:step]:
        known.update(t.received)
    grads = [s.grads[i] if i in known else None for i in range(len(nodes))]
    if s.node is None:
        title = "Step 1: seed dL/dL = 1 at the output"
        note = "Reverse mode starts from the scalar loss: its gradient with respect to itself is 1."
    else:
        v = nodes[s.node]
        title = f"Step {step}: the rule of {v.label} = {v._op} sends {v.label}.grad = {s.grads[s.node]:.3g} to its inputs"
        parts = [f"{nodes[i].label}.grad -> {s.grads[i]:.3g}" for i in s.received]
        note = "local derivative x upstream gradient, added (+=) into each input: " + ",  ".join(parts)
        if any(nodes[i].label == "x" for i in s.received) and step == len(steps):
            note += "  (x's two paths summed)"
    return StepView(step, grads, s.node, tuple(s.received), title, note)


def render_steps(step: int) -> Figure:
    """The example graph after ``step`` steps of backward (0: forward values only)."""
    layout, _ = _trace()
    view = step_view(step)
    fig, ax = plots.figure(size=(8.6, 3.5), layout="fixed")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.84)
    draw_graph(ax, layout, grads=view.grads, rule=view.rule, received=view.received)
    # the note is the title's second line: a figure-level text would not reach the browser's drawing,
    # and a title wraps there to the width it has
    ax.set_title(f"{view.title}\n{view.note}", fontsize=10)
    return fig


_OP_WORDS = {"**2": "a square", "+": "a sum", "*": "a product", "tanh": "a tanh"}


def step_alt(step: int) -> str:
    """The alt text of frame ``step`` of :func:`step_explorer`, from :func:`step_view`."""
    layout, steps = _trace()
    nodes, view = layout.nodes, step_view(step)
    head = f"Computational graph of L = (v tanh(w x + b) + x) squared, step {step} of {len(steps)}: "
    if step == 0:
        values = ", ".join(f"{v.label} = {v.data:.3g}" for v in nodes)
        return head + f"the forward pass has computed every value ({values}); no gradient is known yet"
    before = step_view(step - 1).grads
    got = ", ".join(f"{nodes[i].label}.grad = {view.grads[i]:.3g}"
                    + (" (a second contribution added to the first)" if before[i] is not None else "")
                    for i in view.received)
    if view.rule is None:
        did = f"the seed sets {got} at the output"
    else:
        v = nodes[view.rule]
        did = (f"the rule of {v.label}, {_OP_WORDS.get(v._op, v._op)}, sends its gradient {view.grads[view.rule]:.3g} "
               f"into its inputs, giving {got}")
    known = [v.label for v, g in zip(nodes, view.grads) if g is not None]
    waiting = [v.label for v, g in zip(nodes, view.grads) if g is None]
    rest = f"; gradients known so far: {', '.join(known)}" + (f"; not yet reached: {', '.join(waiting)}" if waiting else
                                                              "; every gradient is now final")
    return head + did + rest


@registered
def step_explorer() -> Explorer:
    """Step through backprop on ``L = (v tanh(w x + b) + x)^2``."""
    _, steps = _trace()
    n = len(steps)
    return Explorer(
        "backprop.step-through",
        render_steps,
        controls={"step": Slider(0, n, default=0, integer=True, step=1, static=list(range(n + 1)), label="backward step")},
        title="Backprop one rule at a time: forward values first, then gradients from the output back",
        alt=step_alt,
        min_width=700,  # seven columns of boxes, drawn as on a laptop: narrower, their labels overlap (a phone scrolls it)
    )


# --- explorer 2: what a gradient costs ---------------------------------------------

#: The gradient-cost explorer's grid: 1 to 9 hidden layers (a slider of 9 positions), four widths (a choice).
COST_DEPTHS = tuple(range(1, 10))
COST_WIDTHS = (4, 16, 64, 256)


@dataclass(frozen=True)
class DepthWidthCosts:
    """Measured seconds per full gradient of ``[n_in] + [width] * depth + [1]`` tanh MLPs (arrays [depth, width]).

    Each time is the fastest of several runs (a busy machine only ever adds time);
    ``finite_diff_s`` is central differences: the fastest of ``coords`` coordinates' two
    forward passes, times the number of parameters ``n_params``.
    """

    depths: tuple
    widths: tuple
    n_params: np.ndarray
    forward_s: np.ndarray
    reverse_s: np.ndarray
    finite_diff_s: np.ndarray


@lru_cache(maxsize=2)
def depth_width_costs(depths: tuple = COST_DEPTHS, widths: tuple = COST_WIDTHS, *, n_in: int = 8, batch: int = 64,
                      repeats: int = 5, coords: int = 6, seed: int = 0) -> DepthWidthCosts:
    """Time one forward pass, reverse mode (forward + backward) and central differences for every depth and width.

    On the CPU, with one thread (as :func:`losslab.autograd.gradient_costs`). Each time is the
    fastest of its runs, so that a moment of load elsewhere on the machine does not enter the
    ratios (cost in forward passes), which are what the explorer shows.
    """
    for name, vals in (("depths", depths), ("widths", widths)):
        if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
            raise ValueError(f"{name}: expected positive ints, got {vals!r}")
    import time  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=g, dtype=torch.float64)  # (B, n_in)
    t = torch.randn(batch, 1, generator=g, dtype=torch.float64)  # (B, 1)
    shape = (len(depths), len(widths))
    n_params = np.zeros(shape, dtype=np.int64)
    fwd, rev, fd = (np.zeros(shape) for _ in range(3))

    def timed(fn, n):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    with single_thread("cpu"):
        for i, d in enumerate(depths):
            for j, w in enumerate(widths):
                net = init_mlp([n_in] + [w] * d + [1], seed=seed + i * len(widths) + j)
                fd_coordinate = central_difference_probe(net, x, t)  # two forward passes per parameter
                timed(lambda: mlp_loss_and_grads(net, x, t), 2)  # warm-up
                n_params[i, j] = net.n_params
                fwd[i, j] = timed(lambda: mse(mlp_forward(net, x)[0], t)[0].item(), repeats)
                rev[i, j] = timed(lambda: mlp_loss_and_grads(net, x, t)[1][0].sum().item(), repeats)
                step = max(1, net.n_params // coords)
                fd[i, j] = min(timed(lambda: fd_coordinate(k), 1) for k in range(0, net.n_params, step)[:coords]) * net.n_params
    return DepthWidthCosts(tuple(depths), tuple(widths), n_params, fwd, rev, fd)


def render_costs(costs: DepthWidthCosts, depth: int, width: int) -> Figure:
    """Milliseconds per gradient against the parameter count at ``depth``, and the costs at (depth, width) in forward passes."""
    i, j = costs.depths.index(depth), costs.widths.index(width)
    n = costs.n_params[i].astype(float)
    fig, (ax, bx) = plots.figure(1, 2, size=(8.6, 3.6), layout="fixed")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.84, wspace=0.42)
    for key, label, c in (("finite_diff_s", "finite differences (2P forward passes)", 1),
                          ("reverse_s", "reverse mode (forward + backward)", 0), ("forward_s", "one forward pass", 7)):
        ms = getattr(costs, key)[i] * 1e3
        ax.loglog(n, ms, "o-", color=plots.PALETTE[c], label=label, ms=4)
        ax.plot([n[j]], [ms[j]], "o", color=plots.PALETTE[c], ms=10, mfc="none", mew=1.5)
    ax.set(xlabel="number of parameters P", ylabel="milliseconds per gradient",
           ylim=(float(costs.forward_s.min()) * 1e3 / 3, float(costs.finite_diff_s.max()) * 1e3 * 3))
    ax.set_title(f"{depth} hidden layer{'s' if depth > 1 else ''}, widths {costs.widths[0]} to {costs.widths[-1]}", fontsize=10)
    ax.legend(loc="upper left", fontsize=7.5)
    f = costs.forward_s[i, j]
    ratios = [("backprop", costs.reverse_s[i, j] / f, plots.PALETTE[0]), ("finite differences", costs.finite_diff_s[i, j] / f, plots.PALETTE[1])]
    bx.bar([r[0] for r in ratios], [r[1] for r in ratios], color=[r[2] for r in ratios], width=0.6)
    bx.set_yscale("log")
    bx.set_ylim(0.5, float((costs.finite_diff_s / costs.forward_s).max()) * 4)
    for k, (_, r, _) in enumerate(ratios):
        bx.text(k, r * 1.2, f"{r:,.1f}" if r < 100 else f"{r:,.0f}", ha="center", va="bottom", fontsize=9)
    bx.set_ylabel("cost in forward passes (measured)")
    bx.set_title(f"width {width}: P = {int(costs.n_params[i, j]):,}", fontsize=10)
    bx.grid(axis="x", visible=False)
    return fig


def _cost_alt(costs: DepthWidthCosts, depth: int, width: int) -> str:
    i, j = costs.depths.index(depth), costs.widths.index(width)
    f = costs.forward_s[i, j]
    return (f"For a tanh network with {depth} hidden layer{'s' if depth > 1 else ''} of width {width} "
            f"({int(costs.n_params[i, j]):,} parameters), a full gradient by backprop took {costs.reverse_s[i, j] / f:.1f} "
            f"forward passes ({costs.reverse_s[i, j] * 1e3:.2g} ms) and by finite differences {costs.finite_diff_s[i, j] / f:,.0f} "
            f"({costs.finite_diff_s[i, j] * 1e3:,.3g} ms); beside it, milliseconds per gradient against the parameter count "
            f"for all widths at this depth on log-log axes")


@registered
def cost_explorer(costs: GradientCosts | None = None, *, measured: DepthWidthCosts | None = None) -> Explorer:
    """The reader sets depth and width and sees the measured cost of a gradient by backprop and by finite differences.

    Measures :func:`depth_width_costs` (a few seconds, once per session) unless ``measured`` gives them.
    ``costs``, the chapter's one-hidden-layer measurements, is accepted for the chapter's call and not needed.
    """
    dw = depth_width_costs() if measured is None else measured
    return Explorer(
        "backprop.gradient-cost",
        lambda depth, width: render_costs(dw, depth, width),
        controls={
            "depth": Slider(1, len(COST_DEPTHS), default=2, integer=True, step=1, label="hidden layers"),
            "width": Choice(list(COST_WIDTHS), default=64, labels=[str(w) for w in COST_WIDTHS], label="width"),  # 9 x 4 frames
        },
        title="What a full gradient costs: set the network's depth and width",
        alt=lambda depth, width: _cost_alt(dw, depth, width),
    )


# --- explorer 3: the step size of a gradient check -----------------------------------

_FUNCS = {
    "smooth": (lambda x: (torch.tanh(x) * x ** 2).sum(), lambda x: (1 - torch.tanh(x) ** 2) * x ** 2 + 2 * x * torch.tanh(x)),
    "kink": (lambda x: (torch.relu(x) * 3 + x ** 2).sum(), lambda x: 3 * (x > 0).to(x.dtype) + 2 * x),
}


def gradcheck_sweep(kind: str, steps: np.ndarray) -> dict[str, np.ndarray]:
    """Relative error of central differences for each step ``h``, in float64 and float32.

    The point is ``x = (0.7, -1.3, 2e-4)`` for ``kind="smooth"`` (``f = sum tanh(x) x^2``)
    and for ``kind="kink"`` (``f = sum 3 relu(x) + x^2``, whose third coordinate
    sits 2e-4 from the kink of the ReLU). The true gradient is computed in float64.
    """
    if kind not in _FUNCS:
        raise ValueError(f"kind: expected one of {sorted(_FUNCS)}, got {kind!r}")
    f, df = _FUNCS[kind]
    x64 = torch.tensor([0.7, -1.3, 2e-4], dtype=torch.float64)
    true = df(x64)
    out = {}
    for dtype in (torch.float64, torch.float32):
        x = x64.to(dtype)
        errs = []
        for h in steps:
            try:
                g = numerical_gradient(f, x, eps=float(h)).to(torch.float64)
                errs.append(float((g - true).norm() / (g.norm() + true.norm())))
            except ValueError:                        # the step vanished in rounding
                errs.append(np.nan)
        out[str(dtype).split(".")[1]] = np.array(errs)
    return out


@lru_cache(maxsize=1)
def gradcheck_sweeps() -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """The explorer's data: 49 steps ``h`` from 1e-12 to 1 and :func:`gradcheck_sweep` of each function.

    Returns
    -------
    steps : ndarray, shape (49,)
    sweeps : dict
        ``{"smooth" | "kink": {"float64" | "float32": relative errors (49,)}}`` (NaN where
        the step vanished in rounding). Computed once per process.
    """
    steps = np.logspace(-12, 0, 49)
    return steps, {k: gradcheck_sweep(k, steps) for k in _FUNCS}


def gradcheck_view(log10_h: float, kind: str) -> tuple[float, float, float]:
    """What frame ``(log10_h, kind)`` of the gradient-check explorer marks: the step ``s`` of the sweep nearest
    ``10**log10_h`` and the relative errors there in float64 and float32 (NaN: the step vanished in rounding)."""
    steps, sweeps = gradcheck_sweeps()
    j = int(np.argmin(np.abs(np.log10(steps) - log10_h)))
    return float(steps[j]), float(sweeps[kind]["float64"][j]), float(sweeps[kind]["float32"][j])


def render_gradcheck(log10_h: float, kind: str) -> Figure:
    steps, sweeps = gradcheck_sweeps()
    data = sweeps[kind]
    fig, ax = plots.figure(size=(7.0, 3.6), layout="fixed")
    h = 10 ** log10_h
    s_j, e64, e32 = gradcheck_view(log10_h, kind)
    for c, name in ((0, "float64"), (1, "float32")):
        e = np.maximum(data[name], 1e-17)
        ax.loglog(steps, e, "-", color=plots.PALETTE[c], label=name)
        ax.plot(s_j, max(e64 if name == "float64" else e32, 1e-17), "o", color=plots.PALETTE[c], ms=7)
    ax.axvline(h, color="0.6", lw=0.8, ls=":")
    ax.axhline(1e-6, color="0.5", lw=0.8, ls="--")
    ax.text(steps[0], 1.6e-6, "typical float64 pass line", fontsize=7.5, color="0.4")
    ax.set(xlabel="step s", ylabel="relative error of the gradient", ylim=(1e-17, 3))
    ax.legend(loc="lower right")
    ax.set_title(f"{kind}: s = {h:.0e}, relative error {e64:.1e} (float64), {e32:.1e} (float32)", fontsize=10)
    return fig


def _error_words(e: float) -> str:
    return "no estimate (the step vanishes in rounding)" if not np.isfinite(e) else f"{e:.1e}"


def gradcheck_alt(log10_h: float, kind: str) -> str:
    """The alt text of one frame of :func:`gradcheck_explorer`: the errors at the marked step and the best steps."""
    steps, sweeps = gradcheck_sweeps()
    s_j, e64, e32 = gradcheck_view(log10_h, kind)
    best = []
    for name in ("float64", "float32"):
        e = sweeps[kind][name]
        k = int(np.nanargmin(e))
        best.append(f"{e[k]:.1e} at s = {steps[k]:.0e} in {name}")
    fn = {"smooth": "the smooth function (sum of tanh(x) x squared)",
          "kink": "the function with a kink (sum of 3 relu(x) + x squared, 0.0002 from the kink)"}[kind]
    verdict = ("passes" if np.isfinite(e64) and e64 < 1e-6 else "fails") + " the typical float64 line of 1e-6"
    return (f"Relative error of a central-difference gradient against the step size s, for {fn}. At the marked step "
            f"s = {s_j:.0e} the error is {_error_words(e64)} in float64, which {verdict}, and {_error_words(e32)} in "
            f"float32. The smallest errors are {best[0]} and {best[1]}")


@registered
def gradcheck_explorer() -> Explorer:
    """Relative error of central differences against the step size."""
    return Explorer(
        "backprop.gradcheck-step",
        render_gradcheck,
        controls={"log10_h": Slider(-12.0, 0.0, default=-5.0, step=0.25, static=[-10.0, -7.0, -5.0, -3.0],
                                    label="log10 step s"),
                  "kind": Choice(["smooth", "kink"], default="smooth", label="function")},
        title="Gradient checking: too small a step drowns in rounding, too large a step in curvature or a kink",
        alt=gradcheck_alt,
    )
