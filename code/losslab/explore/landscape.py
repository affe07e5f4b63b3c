"""Explorers of Chapter 2 (book/02_loss_landscapes.ipynb): test functions and slices of real networks.

- :func:`test_function_explorer`: a test function and a point on it: contours
  with the gradient arrow (its length proportional to the gradient's, none
  where the gradient vanishes) and the Hessian's eigenvectors (solid: curving
  up, dashed: curving down, dotted: flat), the eigenvalues and the point's
  type. :func:`point_geometry` computes what is drawn, and the alt text of
  each frame (:func:`function_point_alt`) says it in words.
- :func:`network_slice_explorer`: a 2-D slice of a trained network's loss on
  the digits along two random directions, with a 1-D profile; choose the
  model, the normalization of the directions and the scale. The networks are
  trained to the same training loss (:func:`network_models`).
  :func:`slice_view` computes what a frame draws and states, for the figure
  and its alt text alike.

Heavy work (training the networks, the scans) happens once in the factory;
``render`` only slices precomputed arrays and draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import data, landscapes, plots
from . import Choice, Explorer, Slider, registered

__all__ = ["render_test_function", "test_function_explorer", "function_point_alt", "point_geometry", "PointGeometry",
           "CURVATURE_STYLE", "function_label", "network_models", "network_scans", "render_network_slice", "slice_view",
           "SliceView", "network_slice_alt", "network_slice_explorer", "POINTS", "NETWORKS", "TARGET_LOSS"]

#: The kinds of point the test-function explorer can show.
POINTS = ("global minimum", "another critical point", "an ordinary point")


def _chosen_point(fn: landscapes.TestFunction, point: str) -> tuple[tuple[float, float], str]:
    """The point of ``fn`` that the option ``point`` names, and a note for the title."""
    (x0, x1), (y0, y1) = fn.domain
    if point == "global minimum":
        if fn.minima:
            return fn.minima[0], ""
        return fn.critical_points[0][0], "no minimum (unbounded below); "
    if point == "another critical point":
        others = [(p, k) for p, k in fn.critical_points if k != "minimum" or p not in fn.minima]
        if not others:
            return fn.minima[0], "the minimum is the only critical point; "
        # prefer a saddle: the most instructive kind
        others.sort(key=lambda pk: {"saddle": 0, "degenerate": 1, "maximum": 2, "minimum": 3}[pk[1]])
        return others[0][0], ""
    return (x0 + 0.3 * (x1 - x0), y0 + 0.72 * (y1 - y0)), ""


@lru_cache(maxsize=16)
def _surface(name: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The function on an n x n grid over its domain, and the median of |grad f| there."""
    fn = landscapes.get(name)
    xs, ys, z = landscapes.evaluate_grid(fn, n=n)
    _, _, pts = landscapes.grid_points(fn.domain, n)
    g_ref = float(torch.quantile(fn.grad(pts).norm(dim=-1).reshape(-1), 0.5))
    return xs.numpy(), ys.numpy(), z.numpy(), g_ref


#: How the contour panel draws an eigenvector of each sign of curvature: (line style, words).
CURVATURE_STYLE = {"up": ("-", "curves up"), "down": ("--", "curves down"), "flat": (":", "flat")}


@dataclass(frozen=True)
class PointGeometry:
    """What the test-function explorer draws at a point (see :func:`point_geometry`).

    Attributes
    ----------
    point : (float, float)
    note : str
        Said in the title when the option asked for does not exist (e.g. no minimum).
    value : float
    grad : ndarray [2]
    grad_norm : float
    critical : bool
        The gradient vanishes here (to rounding): no arrow is drawn.
    arrow : ndarray [2]
        The drawn arrow: the gradient scaled to ``span * min(1, |grad| / g_ref)``,
        where ``g_ref`` is the median of |grad f| over the domain and
        ``span`` 16% of the domain's smaller side; zero at a critical point.
    capped : bool
        The gradient is longer than ``g_ref``, so the arrow has the maximum length.
    eig : ndarray [2]
        Hessian eigenvalues, ascending.
    vec : ndarray [2, 2]
        The matching unit eigenvectors as columns.
    curvature : (str, str)
        For each eigenvalue: ``"up"`` (positive), ``"down"`` (negative) or
        ``"flat"`` (zero to within ``1e-8 * max(1, max |eigenvalue|)``, the
        tolerance of :func:`losslab.landscapes.classify`).
    kind : str
        The point's type (:func:`losslab.landscapes.classify`) or ``"not a critical point"``.
    """

    point: tuple[float, float]
    note: str
    value: float
    grad: np.ndarray
    grad_norm: float
    critical: bool
    arrow: np.ndarray
    capped: bool
    eig: np.ndarray
    vec: np.ndarray
    curvature: tuple[str, str]
    kind: str


_NAMES = {"rosenbrock": "Rosenbrock", "himmelblau": "Himmelblau", "beale": "Beale", "rastrigin": "Rastrigin",
          "six_hump_camel": "six-hump camel"}


def function_label(function: str) -> str:
    """How the text names a test function: ``"Rosenbrock"``, ``"six-hump camel"`` (never ``six_hump_camel``)."""
    return _NAMES.get(function, function.replace("_", " "))


@lru_cache(maxsize=64)
def point_geometry(function: str, point: str) -> PointGeometry:
    """The gradient arrow, eigenvalues, eigenvectors and type at the point ``point`` (one of :data:`POINTS`).

    Cached: the frame and its alt text read the same result (treat its arrays as read-only).
    """
    fn = landscapes.get(function)
    if point not in POINTS:
        raise ValueError(f"point: expected one of {POINTS}, got {point!r}")
    (px, py), note = _chosen_point(fn, point)
    p = torch.tensor([px, py], dtype=torch.float64)
    value, g, h = float(fn.f(p)), fn.grad(p).numpy(), fn.hessian(p)
    eig, vec = torch.linalg.eigh(h)
    eig, vec = eig.numpy() + 0.0, vec.numpy()  # + 0.0 turns -0.0 into 0.0
    gnorm = float(np.linalg.norm(g))
    critical = gnorm <= 1e-6 * max(1.0, abs(value))
    kind = landscapes.classify(h) if critical else "not a critical point"
    (x0, x1), (y0, y1) = fn.domain
    span = 0.16 * min(x1 - x0, y1 - y0)
    g_ref = _surface(function, 75)[3]
    capped = gnorm > g_ref
    arrow = np.zeros(2) if critical else g / gnorm * span * min(1.0, gnorm / g_ref)
    zero = 1e-8 * max(1.0, float(np.abs(eig).max()))
    curvature = tuple("up" if e > zero else "down" if e < -zero else "flat" for e in eig)
    return PointGeometry((px, py), note, value, g, gnorm, critical, arrow, capped and not critical,
                         eig, vec, curvature, kind)  # type: ignore[arg-type]


def render_test_function(function: str, point: str) -> Figure:
    """Contours with the gradient and the Hessian's eigenvectors at a point.

    The arrow's length is proportional to the gradient's (capped at 16% of the
    domain), and absent where the gradient vanishes; each eigenvector is drawn
    solid where the function curves up along it, dashed where it curves down
    and dotted where it is flat; the legend says which is which. (A 3-D view
    is left out: the book draws its explorers with plotly.js's cartesian
    bundle, which has no surfaces, and the contours carry the same heights.)
    """
    geo = point_geometry(function, point)
    fn = landscapes.get(function)
    xs, ys, z, _ = _surface(function, 75)
    px, py = geo.point

    # about square, so that the equal-aspect panel fills the width of a phone (the browser keeps the aspect)
    fig = Figure(figsize=(4.8, 5.4), layout="none")
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.09, top=0.8)
    ax = fig.add_subplot(1, 1, 1)
    # contour levels at quantiles: even spacing in "how much of the plane lies below"
    levels = np.unique(np.quantile(z, np.linspace(0.0, 0.97, 22)))
    ax.contourf(xs, ys, z, levels=levels, cmap="viridis", extend="max")
    (x0, x1), (y0, y1) = fn.domain
    span = 0.16 * min(x1 - x0, y1 - y0)
    # every legend entry is a drawn, labelled artist, so that the browser's legend (figure descriptions
    # read the axes' artists, not proxy handles) says the same as matplotlib's
    if geo.critical:
        ax.plot([px], [py], "o", color="white", mec="black", ms=7, zorder=4, label="gradient = 0 here: no arrow")
    else:
        scale = "longest arrow: gradient capped" if geo.capped else "length proportional to |grad f|"
        ax.plot([px, px + geo.arrow[0]], [py, py + geo.arrow[1]], color="#D55E00", lw=2, zorder=5,
                label=f"gradient ({scale})")
        ax.annotate("", xy=(px + geo.arrow[0], py + geo.arrow[1]), xytext=(px, py),
                    arrowprops=dict(arrowstyle="-|>", color="#D55E00", lw=2), zorder=6)  # the head, on top
    for j, colour in ((0, "#56B4E9"), (1, "#CC79A7")):
        style, words = CURVATURE_STYLE[geo.curvature[j]]
        v = geo.vec[:, j] * span * 0.8
        ax.plot([px - v[0], px + v[0]], [py - v[1], py + v[1]], color=colour, lw=2.2, ls=style, zorder=3,
                label=f"eigenvector, eigenvalue {geo.eig[j]:.4g}: {words}")
    if not geo.critical:
        ax.plot([px], [py], "o", color="white", mec="black", ms=7, zorder=4)
    for m in fn.minima:
        ax.plot([m[0]], [m[1]], "*", color="white", ms=9, mec="black", mew=0.6)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y")
    ax.set_aspect("equal", adjustable="box")  # right angles look right
    ax.grid(False)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), fontsize=7.5, frameon=False,
              borderaxespad=0.0, handlelength=2.6)
    fig.suptitle(
        f"{function_label(function)} at ({px:.3g}, {py:.3g}): f = {geo.value:.4g}, |grad f| = {geo.grad_norm:.3g}\n"
        f"Hessian eigenvalues {geo.eig[0]:.4g}, {geo.eig[1]:.4g}: {geo.note}{geo.kind}", fontsize=10)
    return fig


_CURVES = {"up": "curves up", "down": "curves down", "flat": "is flat"}
_LINE = {"-": "solid", "--": "dashed", ":": "dotted"}


def function_point_alt(function: str, point: str) -> str:
    """The alt text of one frame of :func:`test_function_explorer`: what :func:`point_geometry` found there."""
    geo = point_geometry(function, point)
    px, py = geo.point
    where = "its global minimum" if point == "global minimum" else point
    head = (f"Contour plot of the {function_label(function)} test function at {where}, ({px:.3g}, {py:.3g})"
            f"{' (' + geo.note.rstrip('; ') + ')' if geo.note else ''}: f = {geo.value:.4g}; ")
    if geo.critical:
        grad = "the gradient is zero, so no arrow is drawn; "
    else:
        d = geo.grad / geo.grad_norm
        grad = (f"an arrow shows the gradient, of length {geo.grad_norm:.3g}, pointing along ({d[0]:.2f}, {d[1]:.2f})"
                f"{' (drawn at the longest arrow length)' if geo.capped else ''}; ")
    curves = [f"{_CURVES[c]} along the {which} eigenvector (eigenvalue {e:.4g}, {_LINE[CURVATURE_STYLE[c][0]]} line)"
              for which, c, e in zip(("first", "second"), geo.curvature, geo.eig)]
    return head + grad + "the function " + " and ".join(curves) + f": {geo.kind}"


@registered
def test_function_explorer() -> Explorer:
    names = [n for n in landscapes.TEST_FUNCTIONS if n not in ("quadratic", "rastrigin")]  # those two appear in figures
    return Explorer(
        "landscape.test-functions",
        render_test_function,
        controls={
            "function": Choice(names, default="himmelblau", labels=[n.replace("_", " ") for n in names],
                               label="function"),
            "point": Choice(list(POINTS), default="another critical point", label="point"),
        },
        title="Test functions: gradient, Hessian eigenvalues and the type of a point",
        alt=function_point_alt,
        dpi=72,
    )


# ---- network slices -------------------------------------------------------------

#: The networks of the slice explorer: name -> (sizes, skip).
NETWORKS: dict[str, tuple[tuple[int, ...], bool]] = {
    "narrow (64-8-10)": ((64, 8, 10), False),
    "wide (64-128-10)": ((64, 128, 10), False),
    "deep (4 x 32)": ((64, 32, 32, 32, 32, 10), False),
    "deep + skip (4 x 32)": ((64, 32, 32, 32, 32, 10), True),
}


#: The training loss every network of the slice explorer is trained down to, so that the slices compare like with like.
TARGET_LOSS = 0.1


def network_models(*, target_loss: float = TARGET_LOSS, lr: float = 0.1, max_steps: int = 800, check_every: int = 10,
                   seed: int = 0) -> tuple[dict[str, landscapes.MLP], data.Split, dict[str, tuple[int, float]]]:
    """Train the networks of :data:`NETWORKS` on the digits until each reaches the same training loss.

    Every network gets the same data, seed, optimizer (SGD with momentum 0.9,
    batches of 96) and learning rate ``lr``, and trains until its full-batch
    training loss first falls to ``target_loss`` or below (checked every
    ``check_every`` steps; each check restarts the optimizer), so that slices of
    different architectures compare networks that fit the data equally well
    rather than networks that were given equally many steps (a deep network
    without skip connections needs more steps to get going).

    Returns
    -------
    models : dict of str to MLP
    train : Split
        The training split they were trained on.
    reached : dict of str to (int, float)
        For each network, the steps it took and its final training loss
        (at most ``target_loss`` unless ``max_steps`` ran out first).
    """
    train, _, _ = data.digits(1000, 397, seed=seed)
    models, reached = {}, {}
    for name, (sizes, skip) in NETWORKS.items():
        m = landscapes.MLP(sizes, skip=skip, seed=seed)
        steps, loss = 0, float(landscapes.loss_at(m, train.x, train.y))
        while loss > target_loss and steps < max_steps:
            landscapes.train_classifier(m, train.x, train.y, steps=check_every, lr=lr, batch_size=96,
                                        seed=seed + steps)
            steps += check_every
            loss = float(landscapes.loss_at(m, train.x, train.y))
        models[name], reached[name] = m, (steps, loss)
    return models, train, reached


def network_scans(models: Mapping[str, landscapes.MLP], x: torch.Tensor, y: torch.Tensor, *,
                  span: float = 2.0, n: int = 29, seed: int = 1) -> dict[tuple[str, str], np.ndarray]:
    """Loss over the plane ``theta + a d1 + b d2``, ``|a|, |b| <= span``, for each model and normalization.

    The same seeds give the same raw Gaussian directions for every model;
    "filter" rescales them filter by filter (:func:`losslab.landscapes.filter_normalize`),
    "none" leaves them raw.

    Returns
    -------
    dict of (model name, normalization) to ndarray [n, n]
    """
    coords = torch.linspace(-span, span, n)
    out = {}
    for name, m in models.items():
        for norm in ("filter", "none"):
            d1 = landscapes.random_direction(m, normalization=norm, seed=seed)
            d2 = landscapes.random_direction(m, normalization=norm, seed=seed + 1)
            out[(name, norm)] = landscapes.scan_2d(m, x, y, d1, d2, coords, coords).numpy()
    return out


@dataclass(frozen=True)
class SliceView:
    """What one frame of the slice explorer draws (see :func:`slice_view`).

    Attributes
    ----------
    coords : ndarray [k]
        The slice's coordinates within ``|alpha| <= scale``.
    z : ndarray [k, k]
        The loss there (row: ``alpha_2``, column: ``alpha_1``).
    profiles : dict of str to ndarray [k]
        Every network's loss along ``d1`` (``alpha_2 = 0``), same normalization.
    centre, worst : float
        The loss at the trained weights and the largest loss in the cropped plane.
    """

    coords: np.ndarray
    z: np.ndarray
    profiles: dict
    centre: float
    worst: float


def slice_view(scans: Mapping[tuple[str, str], np.ndarray], span: float, model: str, normalization: str,
               scale: float) -> SliceView:
    """Crop the precomputed slice of ``model`` to ``|alpha_1|, |alpha_2| <= scale`` and take every network's profile."""
    z = scans[(model, normalization)]
    n = z.shape[0]
    coords = np.linspace(-span, span, n)
    keep = np.abs(coords) <= scale + 1e-9
    mid = n // 2
    profiles = {m: scans[(m, normalization)][mid][keep] for m in NETWORKS if (m, normalization) in scans}
    return SliceView(coords[keep], z[np.ix_(keep, keep)], profiles, float(z[mid, mid]),
                     float(z[np.ix_(keep, keep)].max()))


_DIRECTION_WORDS = {"filter": "filter-normalized", "none": "raw Gaussian"}


def _amount(x: float) -> str:
    """A loss in words a screen reader reads well: three significant digits, thousands written out (29,600, not 2.96e+04)."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def network_slice_alt(scans: Mapping[tuple[str, str], np.ndarray], span: float, model: str, normalization: str,
                      scale: float) -> str:
    """The alt text of one frame of :func:`network_slice_explorer`, from :func:`slice_view`."""
    v = slice_view(scans, span, model, normalization, scale)
    peak = float(v.profiles[model].max())
    others = [float(p.max()) for m, p in v.profiles.items() if m != model]
    rest = (f", against {_amount(min(others))} to {_amount(max(others))} for the other {len(others)} networks"
            if len(others) > 1 else f", against {_amount(others[0])} for the other network" if others else "")
    return (f"Contour plot of the log training loss of the {model} network over a plane through its trained weights "
            f"along two {_DIRECTION_WORDS.get(normalization, normalization)} random directions, within plus or minus "
            f"{scale:.2g}: the loss is {_amount(v.centre)} at the trained weights and {_amount(v.worst)} at the worst "
            f"point of the plane. Beside it, the loss along the first direction for every network: this one's rises "
            f"to {_amount(peak)}{rest}")


def render_network_slice(scans: Mapping[tuple[str, str], np.ndarray], span: float, model: str,
                         normalization: str, scale: float) -> Figure:
    """Contours of one precomputed slice, cropped to ``|a|, |b| <= scale``, and its profile along ``d1``."""
    v = slice_view(scans, span, model, normalization, scale)
    c, zc = v.coords, v.z
    fig = Figure(figsize=(8.4, 3.5), layout="none")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.82, wspace=0.45)
    ax = fig.add_subplot(1, 2, 1)
    levels = np.unique(np.quantile(np.log10(zc), np.linspace(0, 1, 16)))
    if len(levels) < 2:
        levels = 2
    cs = ax.contourf(c, c, np.log10(zc), levels=levels, cmap="viridis")
    ax.plot([0], [0], "*", color="white", mec="black", ms=10)
    ax.set(xlabel=r"$\alpha_1$ (direction $d_1$)", ylabel=r"$\alpha_2$ (direction $d_2$)")
    ax.grid(False)
    cb = fig.colorbar(cs, ax=ax, pad=0.02)
    cb.set_label(r"$\log_{10}$ loss")
    ax.set_title("2-D slice (star: trained weights)", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    for i, (other, prof) in enumerate(v.profiles.items()):
        colour = plots.PALETTE[list(NETWORKS).index(other) % len(plots.PALETTE)]
        ax2.plot(c, prof, color=colour, lw=2.4 if other == model else 1.0, alpha=1 if other == model else 0.5,
                 label=other)
    ax2.set(yscale="log", xlabel=r"$\alpha_1$ ($\alpha_2 = 0$)", ylabel="training loss")
    ax2.legend(fontsize=7, loc="upper center")
    ax2.set_title("1-D profiles of all four models (bold: chosen)", fontsize=9)
    fig.suptitle(f"{model}, {_DIRECTION_WORDS.get(normalization, normalization)} directions, scale {scale:.2g}: "
                 f"loss {v.centre:.3g} at the centre, {v.worst:.3g} at worst", fontsize=10)
    return fig


@registered
def network_slice_explorer(scans: Mapping[tuple[str, str], np.ndarray] | None = None, span: float = 2.0) -> Explorer:
    """The slice explorer; pass ``scans`` from :func:`network_scans` to reuse models trained in the chapter."""
    if scans is None:
        models, train, _ = network_models()
        scans = network_scans(models, train.x[:256], train.y[:256], span=span)
    scans = dict(scans)
    models = sorted({m for m, _ in scans}, key=list(NETWORKS).index)

    def render(model: str, normalization: str, scale: float) -> Figure:
        return render_network_slice(scans, span, model, normalization, scale)

    return Explorer(
        "landscape.network-slice",
        render,
        controls={
            "model": Choice(models, default=models[0], label="network"),
            "normalization": Choice(["filter", "none"], default="filter",
                                    labels=["filter-normalized", "raw Gaussian"], label="directions"),
            "scale": Slider(0.5, span, default=1.0, static=[1.0], label="scale (live only)", fill=False),
        },
        title="Slices of a trained network's loss on the digits",
        alt=lambda model, normalization, scale: network_slice_alt(scans, span, model, normalization, scale),
        dpi=72,
    )
