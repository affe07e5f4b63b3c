"""Explorers and drawings of Chapter 5 (Backpropagation).

- :func:`draw_graph` draws a computational graph of :class:`losslab.autograd.Value`
  nodes with matplotlib alone (no Graphviz binary): one box per node with its
  value and, once known, its gradient.
- :func:`step_explorer`: a backward pass one rule at a time.
- :func:`cost_explorer`: what a full gradient costs by finite differences,
  forward mode and reverse mode, measured on the reader's machine.
- :func:`gradcheck_explorer`: the relative error of central differences
  against the step size, in float64 and float32, on a smooth function and at a kink.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath

from .. import plots
from ..autograd import GradientCosts, GraphLayout, Value, backward_trace, gradient_costs, graph_layout, numerical_gradient
from . import Choice, Explorer, Slider, registered

__all__ = ["draw_graph", "edge_routes", "bezier", "example_expression", "step_explorer", "cost_explorer", "gradcheck_explorer",
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
_BOX_W, _BOX_H = 1.55, 0.82


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
        ax.text(x, y + 0.2, head, ha="center", va="center", fontsize=8.5, fontweight="bold")
        ax.text(x, y - 0.02, f"data {v.data:.3g}", ha="center", va="center", fontsize=8)
        ax.text(x, y - 0.24, g, ha="center", va="center", fontsize=8, color="#8a3a00" if grads[k] is not None else "0.5")
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


def render_steps(step: int) -> Figure:
    """The example graph after ``step`` steps of backward (0: forward values only)."""
    layout, steps = _trace()
    nodes = layout.nodes
    fig, ax = plots.figure(size=(8.6, 3.1), layout="fixed")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.1, top=0.9)
    if step == 0:
        draw_graph(ax, layout, grads=[None] * len(nodes))
        title = "Step 0: the forward pass has computed every value; no gradient is known yet"
        note = "Each box holds the value computed left to right; backward will fill in dL/d(node) right to left."
    else:
        s = steps[step - 1]
        known = set()
        for t in steps[:step]:
            known.update(t.received)
        grads = [s.grads[i] if i in known else None for i in range(len(nodes))]
        draw_graph(ax, layout, grads=grads, rule=s.node, received=s.received)
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
    ax.set_title(title, fontsize=10)
    fig.text(0.5, 0.04, note, ha="center", fontsize=8.5, color="0.25")
    return fig


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
        alt="Computational graph of L = (v tanh(w x + b) + x) squared after backward step {step}: "
            "boxes show each node's value and the gradients known so far",
    )


# --- explorer 2: what a gradient costs ---------------------------------------------

_METHODS = (("finite_diff_s", "finite differences (2P forward passes)", 1),
            ("forward_mode_s", "forward mode (P JVP passes)", 3),
            ("reverse_s", "reverse mode (1 forward + 1 backward)", 0),
            ("forward_s", "one forward pass", 7))


def render_costs(costs: GradientCosts, size: int, forward_mode: bool) -> Figure:
    """Time of a full gradient against the number of parameters, and at ``size`` in forward passes."""
    n = np.array(costs.n_params, dtype=float)
    k = costs.n_params.index(size)
    fig, (ax, bx) = plots.figure(1, 2, size=(8.6, 3.5), layout="fixed")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.86, wspace=0.42)
    shown = [m for m in _METHODS if forward_mode or m[0] != "forward_mode_s"]
    for key, label, c in shown:
        t = np.array(getattr(costs, key)) * 1e3
        ax.loglog(n, t, "o-", color=plots.PALETTE[c], label=label, ms=4)
        ax.plot(n[k], t[k], "o", color=plots.PALETTE[c], ms=9, mfc="none", mew=1.5)
    ax.axvline(n[k], color="0.7", lw=0.8, ls=":")
    ax.set(xlabel="number of parameters P", ylabel="milliseconds per gradient",
           ylim=(min(costs.forward_s) * 1e3 / 3, max(costs.finite_diff_s) * 1e3 * 3))
    ax.legend(loc="upper left", fontsize=7.5)
    fwd = costs.forward_s[k]
    bars = [(label.split(" (")[0], getattr(costs, key)[k] / fwd, plots.PALETTE[c]) for key, label, c in shown if key != "forward_s"]
    bx.barh([b[0] for b in bars][::-1], [b[1] for b in bars][::-1], color=[b[2] for b in bars][::-1])
    bx.set_xscale("log")
    bx.set_xlim(0.5, max(costs.finite_diff_s[j] / costs.forward_s[j] for j in range(len(n))) * 4)
    for i, (_, r, _) in enumerate(bars[::-1]):
        bx.text(r * 1.15, i, f"{r:,.1f}x" if r < 100 else f"{r:,.0f}x", va="center", fontsize=8)
    bx.set_xlabel("cost in forward passes (measured)")
    bx.tick_params(axis="y", labelsize=8)
    bx.grid(axis="y", visible=False)
    fig.suptitle(f"P = {size:,} parameters: reverse mode costs {costs.reverse_s[k] / fwd:.1f} forward passes, "
                 f"finite differences {costs.finite_diff_s[k] / fwd:,.0f}", fontsize=10)
    return fig


@registered
def cost_explorer(costs: GradientCosts | None = None) -> Explorer:
    """Explorer over measured gradient costs; measures them (about a second) unless ``costs`` is given."""
    if costs is None:
        costs = gradient_costs()
    sizes = list(costs.n_params)
    return Explorer(
        "backprop.gradient-cost",
        lambda size: render_costs(costs, size, True),
        controls={"size": Choice(sizes, default=sizes[-1], labels=[f"{s:,}" for s in sizes], label="parameters P")},
        title="What a full gradient costs: finite differences and forward mode grow with P, reverse mode does not",
        alt="Log-log plot of milliseconds per gradient against the number of parameters for finite differences, "
            "forward mode and reverse mode, and bars of their cost in forward passes at P = {size}",
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


def render_gradcheck(log10_h: float, kind: str) -> Figure:
    steps, sweeps = gradcheck_sweeps()
    data = sweeps[kind]
    fig, ax = plots.figure(size=(7.0, 3.6), layout="fixed")
    h = 10 ** log10_h
    j = int(np.argmin(np.abs(np.log10(steps) - log10_h)))
    for c, name in ((0, "float64"), (1, "float32")):
        e = np.maximum(data[name], 1e-17)
        ax.loglog(steps, e, "-", color=plots.PALETTE[c], label=name)
        ax.plot(steps[j], e[j], "o", color=plots.PALETTE[c], ms=7)
    ax.axvline(h, color="0.6", lw=0.8, ls=":")
    ax.axhline(1e-6, color="0.5", lw=0.8, ls="--")
    ax.text(steps[0], 1.6e-6, "typical float64 pass line", fontsize=7.5, color="0.4")
    ax.set(xlabel="step s", ylabel="relative error of the gradient", ylim=(1e-17, 3))
    ax.legend(loc="lower right")
    e64, e32 = data["float64"][j], data["float32"][j]
    ax.set_title(f"{kind}: s = {h:.0e}, relative error {e64:.1e} (float64), {e32:.1e} (float32)", fontsize=10)
    return fig


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
        alt="Relative error of a central-difference gradient against the step size s, in float64 and float32, "
            "for the {kind} function, with s = 10^{log10_h:.2g} marked",
    )
