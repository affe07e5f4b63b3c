"""Explorers of Chapter 7 (Regularization): capacity and penalties, seen on a fit and on its errors.

- :func:`polynomial_explorer`: polynomial degree and L2 strength -> the ridge
  fit, and training and validation errors across degrees.
- :func:`classifier_explorer`: L2 strength and dropout rate -> a small MLP's
  decision boundary on noisy two moons, with its training and validation curves.

The numbers behind each (:func:`polynomial_errors`, :func:`classifier_runs`)
are public, so the chapter can check what its text says about them.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import plots
from .. import regularize as R
from ..data import Split
from . import Choice, Explorer, Slider, registered

MAX_DEGREE = 15
L2_OPTIONS = (0.0, 1e-2, 3e-2)
DROPOUT_OPTIONS = (0.0, 0.3, 0.6)


# --- 1. polynomial degree and L2 strength ---------------------------------------------------

@lru_cache(maxsize=1)
def _polynomial_data():
    prob = R.polynomial_problem(n_train=20, n_val=200, noise=0.3, seed=0)
    feats = {
        "train": R.legendre_features(prob.train.x, MAX_DEGREE),  # (n, 16): a degree-d model uses the first d + 1
        "val": R.legendre_features(prob.val.x, MAX_DEGREE),
        "grid": R.legendre_features(prob.x_grid, MAX_DEGREE),
    }
    return prob, feats


#: The static book's L2 strengths (every degree 1..15 is offered at each).
POLY_STRENGTHS = (1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 0.1, 1.0, 10.0)


@lru_cache(maxsize=32)
def polynomial_errors(strength: float) -> dict[str, torch.Tensor]:
    """Ridge fits of every degree 0..15 to the explorer's 20 training points, and their errors (cached: do not
    modify the tensors).

    Returns ``coef`` (16, 16) (row d: the degree-d fit, zero-padded) and
    ``train_rmse``, ``val_rmse`` (15,) for degrees 1..15.
    """
    prob, feats = _polynomial_data()
    W = R.ridge_fit_degrees(feats["train"], prob.train.y, float(strength))  # (16, 16): row d = degree-d fit
    train_err = (((W @ feats["train"].T) - prob.train.y) ** 2).mean(1).sqrt()[1:]  # (15,): degrees 1..15
    val_err = (((W @ feats["val"].T) - prob.val.y) ** 2).mean(1).sqrt()[1:]  # (15,)
    return {"coef": W, "train_rmse": train_err, "val_rmse": val_err}


_CANVAS: dict = {}


def _polynomial_canvas():
    """The explorer's figure, built once and updated in place by every frame (a new two-panel figure costs tens of
    milliseconds, most of a frame). The figure one call returns is changed by the next call."""
    if "poly" not in _CANVAS:
        prob, feats = _polynomial_data()
        fig, (ax, ax2) = plots.figure(1, 2, size=(9.0, 3.6), layout="fixed")
        ax.scatter(prob.val.x[:100], prob.val.y[:100], s=6, color="0.75", label="validation")
        ax.plot(prob.x_grid, prob.f_grid, color="0.3", lw=1, ls="--", label="true $f$")
        fit, = ax.plot([], [], color=plots.PALETTE[0], lw=2, label="fit")
        ax.scatter(prob.train.x, prob.train.y, s=18, color=plots.PALETTE[1], zorder=3, label="training")
        ax.set(xlim=(-1, 1), ylim=(-3.5, 3.5), xlabel="x", ylabel="y")
        ax.legend(loc="upper left", fontsize=8, ncol=2)
        degrees = list(range(1, MAX_DEGREE + 1))
        tr, = ax2.plot(degrees, [1.0] * MAX_DEGREE, "o-", ms=3, color=plots.PALETTE[1], label="training")
        va, = ax2.plot(degrees, [1.0] * MAX_DEGREE, "o-", ms=3, color=plots.PALETTE[0], label="validation")
        ax2.axhline(prob.noise, color="0.5", lw=0.8, ls=":", label="noise level")
        at = ax2.axvline(1, color="0.3", lw=0.8)
        ax2.set(yscale="log", ylim=(0.05, 10), xlabel="polynomial degree", ylabel="RMSE")
        ax2.set_title("errors across degrees at this $\\lambda$", fontsize=10)
        ax2.legend(loc="upper right", fontsize=8)
        keep = np.unique(np.linspace(0, len(prob.x_grid) - 1, min(len(prob.x_grid), 121)).round().astype(int))
        _CANVAS["poly"] = (fig, ax, fit, tr, va, at, keep)
    return _CANVAS["poly"]


def render_polynomial(degree: int, strength: float) -> Figure:
    """Left: the ridge fit of the given degree; right: training and validation RMSE for every degree."""
    prob, feats = _polynomial_data()
    errors = polynomial_errors(strength)
    train_err, val_err = errors["train_rmse"].tolist(), errors["val_rmse"].tolist()
    fig, ax, fit, tr, va, at, keep = _polynomial_canvas()
    curve = feats["grid"] @ errors["coef"][degree]  # (G,)
    fit.set_data(prob.x_grid[keep].numpy(), curve[keep].numpy())  # about 120 of the grid's points
    tr.set_ydata(train_err)
    va.set_ydata(val_err)
    at.set_xdata([degree, degree])
    ax.set_title(f"degree {degree}, $\\lambda$ = {strength:.0e}: train {train_err[degree - 1]:.2f}, "
                 f"val {val_err[degree - 1]:.2f}", fontsize=10)
    return fig


def _polynomial_alt(degree: int, strength: float) -> str:
    prob, _ = _polynomial_data()
    e = polynomial_errors(strength)
    tr, va = e["train_rmse"], e["val_rmse"]
    best = int(va.argmin())
    return (f"Left: the degree-{degree} ridge fit with L2 strength {strength:g} to 20 noisy points of a sine-like "
            f"curve: training RMSE {float(tr[degree - 1]):.2f}, validation RMSE {float(va[degree - 1]):.2f} (the noise "
            f"level is {prob.noise:g}). Right: at this strength, over degrees 1 to 15 the training RMSE goes from "
            f"{float(tr[0]):.2f} to {float(tr[-1]):.2f} and the validation RMSE from {float(va[0]):.2f} to "
            f"{float(va[-1]):.2f}, lowest at degree {best + 1} ({float(va[best]):.2f})")


@registered
def polynomial_explorer() -> Explorer:
    for strength in POLY_STRENGTHS:  # the static grid's fits, once (a live update then only draws)
        polynomial_errors(strength)
    return Explorer(
        "reg.polynomial-capacity",
        render_polynomial,
        controls={
            "degree": Slider(1, MAX_DEGREE, default=9, integer=True, step=1, static=list(range(1, MAX_DEGREE + 1)),
                             label="degree", fill=False),
            "strength": Slider(1e-6, 10.0, default=1e-6, log=True, static=list(POLY_STRENGTHS), label="L2 strength λ",
                               fill=False),
        },
        title="Capacity and L2: polynomial degree and ridge strength",
        alt=_polynomial_alt,
    )


# --- 2. a 2-D classifier: L2 strength and dropout -------------------------------------------

def moons(n: int, *, seed: int, noise: float = 0.35) -> Split:
    """scikit-learn's two interleaved half-moons (generated, seeded), as float32 tensors."""
    from sklearn.datasets import make_moons  # noqa: PLC0415

    x, y = make_moons(n, noise=noise, random_state=seed)
    return Split(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64))


@lru_cache(maxsize=1)
def _classifier_runs():
    train, val = moons(60, seed=0), moons(400, seed=1)
    grid = list(itertools.product(L2_OPTIONS, DROPOUT_OPTIONS))
    res = R.train_ensemble(train, val, hidden=(64, 64), weight_decay=[a for a, _ in grid],
                           dropout=[b for _, b in grid], decoupled=False, lr=1e-2, steps=200, eval_every=20, seed=0)
    xs = torch.linspace(-2.0, 3.0, 80)
    ys = torch.linspace(-1.5, 2.0, 60)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # (60, 80)
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (4800, 2)
    prob = torch.softmax(R.ensemble_logits(res.params, points), dim=2)[..., 1]  # (K, 4800)
    return train, val, grid, res, gx, gy, prob.reshape(len(grid), *gx.shape)


def classifier_runs() -> dict:
    """The explorer's nine two-moons runs (computed once; do not modify them).

    Returns ``settings``: the (L2 strength, dropout rate) of each model;
    ``result``: the :class:`losslab.regularize.EnsembleResult`; ``prob``
    (9, 60, 80): each model's P(class 1) on a grid over ``x1`` (80 columns)
    and ``x2`` (60 rows); ``train``, ``val``: the data.
    """
    train, val, grid, res, gx, gy, prob = _classifier_runs()
    return {"settings": list(grid), "result": res, "prob": prob, "train": train, "val": val}


@lru_cache(maxsize=None)  # one figure per (L2 strength, dropout rate): a live update only reads it back
def render_classifier(strength: float, p: float) -> Figure:
    """Left: P(class 1) of the model trained with this L2 strength and dropout rate; right: its loss curves."""
    train, val, grid, res, gx, gy, prob = _classifier_runs()
    i = grid.index((strength, p))
    fig, (ax, ax2) = plots.figure(1, 2, size=(9.0, 3.6), layout="fixed")
    ax.contourf(gx, gy, prob[i], levels=[0, 0.1, 0.3, 0.5, 0.7, 0.9, 1], cmap="RdBu_r", alpha=0.55)
    ax.contour(gx, gy, prob[i], levels=[0.5], colors="k", linewidths=1.2)
    for c, color in ((0, plots.PALETTE[0]), (1, plots.PALETTE[1])):
        sel = train.y == c
        ax.scatter(train.x[sel, 0], train.x[sel, 1], s=16, color=color, edgecolor="k", linewidth=0.4)
    ax.set(xlim=(-2, 3), ylim=(-1.5, 2), xlabel="$x_1$", ylabel="$x_2$")
    ax.grid(False)
    ax.set_title(f"$\\lambda$ = {strength:g}, dropout p = {p:g}: val error {float(res.val_error[i, -1]):.3f}",
                 fontsize=10)
    # the loss each step trained on, at step t (before update t), as the evaluation-mode curves are recorded
    ax2.plot(range(res.step_loss.shape[1]), res.step_loss[i], color=plots.PALETTE[1], lw=0.6, alpha=0.7,
             label="training, as trained" + (" (dropout on)" if p > 0 else ""))
    ax2.plot(res.steps, res.train_loss[i], color=plots.PALETTE[1], lw=2, label="training, evaluation mode")
    ax2.plot(res.steps, res.val_loss[i], color=plots.PALETTE[0], lw=2, label="validation")
    ax2.set(yscale="log", ylim=(3e-3, 5), xlabel="step", ylabel="cross-entropy")
    ax2.set_title("losses during training", fontsize=10)
    ax2.legend(loc="lower left", fontsize=8)
    return fig


def _classifier_alt(strength: float, p: float) -> str:
    """What the frame for this L2 strength and dropout rate shows, read from the same run."""
    train, val, grid, res, gx, gy, prob = _classifier_runs()
    i = grid.index((strength, p))
    v = res.val_loss[i]
    lo = int(v.argmin())
    return (f"Left: the decision boundary of a two-hidden-layer network trained on 60 noisy two-moons points with L2 "
            f"strength {strength:g} and dropout {p:g}, over its predicted probabilities; its validation error is "
            f"{float(res.val_error[i, -1]):.3f}. Right: its losses over {res.step_loss.shape[1]} steps on a log scale: "
            f"the training loss in evaluation mode ends at {float(res.train_loss[i, -1]):.3f}, the validation loss "
            f"is lowest at step {int(res.steps[lo])} ({float(v[lo]):.2f}) and ends at {float(v[-1]):.2f}"
            + (f"; the loss of each step as trained, with dropout on, changes from step to step {_jitter(i) / _jitter(grid.index((strength, 0.0))):.1f} "
               "times as much as without dropout at this strength" if p > 0 else
               "; the thin line is the loss of each step as trained"))


def _jitter(i: int) -> float:
    """Typical step-to-step change of the log training-mode loss of model ``i`` over the second half of training."""
    res = _classifier_runs()[3]
    late = res.step_loss[i, res.step_loss.shape[1] // 2:].log()
    return float((late[1:] - late[:-1]).abs().mean())


@registered
def classifier_explorer() -> Explorer:
    _classifier_runs()
    return Explorer(
        "reg.classifier-l2-dropout",
        render_classifier,
        controls={
            "strength": Choice(list(L2_OPTIONS), default=0.0, labels=[f"{v:g}" for v in L2_OPTIONS], label="L2 strength λ"),
            "p": Choice(list(DROPOUT_OPTIONS), default=0.0, labels=[f"{v:g}" for v in DROPOUT_OPTIONS], label="dropout p"),
        },
        title="A small network on two moons: L2 strength and dropout rate",
        alt=_classifier_alt,
    )
