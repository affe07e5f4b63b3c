"""Explorers of Chapter 2 (book/02_loss_landscapes.ipynb): test functions and slices of real networks.

- :func:`test_function_explorer`: a test function and a point on it: contours
  with the gradient arrow and the Hessian's eigenvectors, the 3-D surface,
  the eigenvalues and the point's type.
- :func:`network_slice_explorer`: a 2-D slice of a trained network's loss on
  the digits along two random directions, with a 1-D profile; choose the
  model, the normalization of the directions and the scale.

Heavy work (training the networks, the scans) happens once in the factory;
``render`` only slices precomputed arrays and draws.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import data, landscapes, plots
from . import Choice, Explorer, Slider, registered

__all__ = ["render_test_function", "test_function_explorer", "network_models", "network_scans",
           "render_network_slice", "network_slice_explorer", "POINTS"]

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
def _surface(name: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, z = landscapes.evaluate_grid(landscapes.get(name), n=n)
    return xs.numpy(), ys.numpy(), z.numpy()


def render_test_function(function: str, point: str) -> Figure:
    """Contours with gradient and Hessian eigenvectors at a point, beside the 3-D surface."""
    fn = landscapes.get(function)
    xs, ys, z = _surface(function, 75)
    (px, py), note = _chosen_point(fn, point)
    p = torch.tensor([px, py], dtype=torch.float64)
    value, g, h = float(fn.f(p)), fn.grad(p).numpy(), fn.hessian(p)
    eig, vec = torch.linalg.eigh(h)
    eig, vec = eig.numpy(), vec.numpy()
    gnorm = float(np.linalg.norm(g))
    kind = landscapes.classify(h) if gnorm <= 1e-6 * max(1.0, abs(value)) else "not a critical point"

    fig = Figure(figsize=(8.6, 3.9), layout="none")
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.13, top=0.8, wspace=0.12)
    ax = fig.add_subplot(1, 2, 1)
    # contour levels at quantiles: even spacing in "how much of the plane lies below"
    levels = np.unique(np.quantile(z, np.linspace(0.0, 0.97, 22)))
    ax.contourf(xs, ys, z, levels=levels, cmap="viridis", extend="max")
    (x0, x1), (y0, y1) = fn.domain
    span = 0.16 * min(x1 - x0, y1 - y0)
    if gnorm > 0:
        u = g / gnorm * span
        ax.annotate("", xy=(px + u[0], py + u[1]), xytext=(px, py),
                    arrowprops=dict(arrowstyle="-|>", color="#D55E00", lw=2))
    for j, colour in ((0, "#56B4E9"), (1, "#F0E442")):
        v = vec[:, j] * span * 0.8
        ax.plot([px - v[0], px + v[0]], [py - v[1], py + v[1]], color=colour, lw=2.2,
                ls="-" if eig[j] > 0 else "--")
    ax.plot([px], [py], "o", color="white", mec="black", ms=7)
    for m in fn.minima:
        ax.plot([m[0]], [m[1]], "*", color="white", ms=9, mec="black", mew=0.6)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y")
    ax.set_aspect("auto")
    ax.grid(False)
    ax.set_title("orange: gradient; blue/yellow: Hessian eigenvectors\n(solid: curving up, dashed: curving down)",
                 fontsize=8.5)

    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    step = max(1, len(xs) // 15)
    X, Y = np.meshgrid(xs[::step], ys[::step])
    top = np.quantile(z, 0.97)
    Z = np.minimum(z[::step, ::step], top)
    ax3.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=False, rstride=1, cstride=1)
    ax3.scatter([px], [py], [min(value, top)], color="#D55E00", s=30, depthshade=False)
    ax3.set(xlabel="x", ylabel="y")
    ax3.tick_params(labelsize=7)
    ax3.view_init(elev=35, azim=-60)

    fig.suptitle(
        f"{function.replace('_', ' ')} at ({px:.3g}, {py:.3g}): f = {value:.4g}, |grad f| = {gnorm:.3g}\n"
        f"Hessian eigenvalues {eig[0]:.4g}, {eig[1]:.4g}: {note}{kind}", fontsize=10)
    return fig


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
        alt="Contour plot and 3-D surface of the {function} test function, with the gradient arrow and the "
            "Hessian eigenvector directions drawn at {point}; the title gives the eigenvalues and the point's type",
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


def network_models(*, steps: int = 80, seed: int = 0) -> tuple[dict[str, landscapes.MLP], data.Split]:
    """Train the networks of :data:`NETWORKS` on the digits (same data, seed and schedule).

    Returns
    -------
    models : dict of str to MLP
    train : Split
        The training split they were trained on.
    """
    train, _, _ = data.digits(1000, 397, seed=seed)
    models = {}
    for name, (sizes, skip) in NETWORKS.items():
        m = landscapes.MLP(sizes, skip=skip, seed=seed)
        landscapes.train_classifier(m, train.x, train.y, steps=steps, lr=0.05, batch_size=96, seed=seed)
        models[name] = m
    return models, train


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


def render_network_slice(scans: Mapping[tuple[str, str], np.ndarray], span: float, model: str,
                         normalization: str, scale: float) -> Figure:
    """Contours of one precomputed slice, cropped to ``|a|, |b| <= scale``, and its profile along ``d1``."""
    z = scans[(model, normalization)]
    n = z.shape[0]
    coords = np.linspace(-span, span, n)
    keep = np.abs(coords) <= scale + 1e-9
    c, zc = coords[keep], z[np.ix_(keep, keep)]
    fig = Figure(figsize=(8.4, 3.5), layout="none")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.82, wspace=0.45)
    ax = fig.add_subplot(1, 2, 1)
    levels = np.unique(np.quantile(np.log10(zc), np.linspace(0, 1, 16)))
    if len(levels) < 2:
        levels = 2
    cs = ax.contourf(c, c, np.log10(zc), levels=levels, cmap="viridis")
    ax.plot([0], [0], "*", color="white", mec="black", ms=10)
    ax.set(xlabel=r"$\alpha$ (direction $d_1$)", ylabel=r"$\beta$ (direction $d_2$)")
    ax.grid(False)
    cb = fig.colorbar(cs, ax=ax, pad=0.02)
    cb.set_label(r"$\log_{10}$ loss")
    ax.set_title("2-D slice (star: trained weights)", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    mid = n // 2
    for other, colour in ((m, plots.PALETTE[i % len(plots.PALETTE)]) for i, m in enumerate(NETWORKS)):
        prof = scans[(other, normalization)][mid][keep]
        ax2.plot(c, prof, color=colour, lw=2.4 if other == model else 1.0, alpha=1 if other == model else 0.5,
                 label=other)
    ax2.set(yscale="log", xlabel=r"$\alpha$ ($\beta = 0$)", ylabel="training loss")
    ax2.legend(fontsize=7, loc="upper center")
    ax2.set_title("1-D profiles of all four models (bold: chosen)", fontsize=9)
    centre = float(z[mid, mid])
    fig.suptitle(f"{model}, {normalization} directions, scale {scale:.2g}: loss {centre:.3g} at the centre, "
                 f"{float(zc.max()):.3g} at worst", fontsize=10)
    return fig


@registered
def network_slice_explorer(scans: Mapping[tuple[str, str], np.ndarray] | None = None, span: float = 2.0) -> Explorer:
    """The slice explorer; pass ``scans`` from :func:`network_scans` to reuse models trained in the chapter."""
    if scans is None:
        models, train = network_models()
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
            "scale": Slider(0.5, span, default=1.0, static=[1.0], label="scale (live only)"),
        },
        title="Slices of a trained network's loss on the digits",
        alt="Contour plot of the log training loss of the {model} network over a plane through its trained "
            "weights along two {normalization} random directions, within plus or minus {scale:.2g}, beside the "
            "loss along one direction for all four networks",
        dpi=72,
    )
