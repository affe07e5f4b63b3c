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


def polynomial_errors(strength: float) -> dict[str, torch.Tensor]:
    """Ridge fits of every degree 0..15 to the explorer's 20 training points, and their errors.

    Returns ``coef`` (16, 16) (row d: the degree-d fit, zero-padded) and
    ``train_rmse``, ``val_rmse`` (15,) for degrees 1..15.
    """
    prob, feats = _polynomial_data()
    W = R.ridge_fit_degrees(feats["train"], prob.train.y, strength)  # (16, 16): row d = degree-d fit
    train_err = (((W @ feats["train"].T) - prob.train.y) ** 2).mean(1).sqrt()[1:]  # (15,): degrees 1..15
    val_err = (((W @ feats["val"].T) - prob.val.y) ** 2).mean(1).sqrt()[1:]  # (15,)
    return {"coef": W, "train_rmse": train_err, "val_rmse": val_err}


def render_polynomial(degree: int, strength: float) -> Figure:
    """Left: the ridge fit of the given degree; right: training and validation RMSE for every degree."""
    prob, feats = _polynomial_data()
    degrees = range(1, MAX_DEGREE + 1)
    errors = polynomial_errors(strength)
    train_err, val_err = errors["train_rmse"].tolist(), errors["val_rmse"].tolist()
    fit = feats["grid"] @ errors["coef"][degree]  # (G,)
    fig, (ax, ax2) = plots.figure(1, 2, size=(9.0, 3.6), layout="fixed")
    ax.scatter(prob.val.x[:100], prob.val.y[:100], s=6, color="0.75", label="validation")
    ax.plot(prob.x_grid, prob.f_grid, color="0.3", lw=1, ls="--", label="true $f$")
    ax.plot(prob.x_grid, fit, color=plots.PALETTE[0], lw=2, label="fit")
    ax.scatter(prob.train.x, prob.train.y, s=18, color=plots.PALETTE[1], zorder=3, label="training")
    ax.set(xlim=(-1, 1), ylim=(-3.5, 3.5), xlabel="x", ylabel="y")
    ax.set_title(f"degree {degree}, $\\lambda$ = {strength:.0e}: train {train_err[degree - 1]:.2f}, "
                 f"val {val_err[degree - 1]:.2f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    ax2.plot(list(degrees), train_err, "o-", ms=3, color=plots.PALETTE[1], label="training")
    ax2.plot(list(degrees), val_err, "o-", ms=3, color=plots.PALETTE[0], label="validation")
    ax2.axhline(prob.noise, color="0.5", lw=0.8, ls=":", label="noise level")
    ax2.axvline(degree, color="0.3", lw=0.8)
    ax2.set(yscale="log", ylim=(0.05, 10), xlabel="polynomial degree", ylabel="RMSE")
    ax2.set_title("errors across degrees at this $\\lambda$", fontsize=10)
    ax2.legend(loc="upper right", fontsize=8)
    return fig


@registered
def polynomial_explorer() -> Explorer:
    _polynomial_data()
    return Explorer(
        "reg.polynomial-capacity",
        render_polynomial,
        controls={
            "degree": Slider(1, MAX_DEGREE, default=9, integer=True, step=1, static=[1, 3, 9, 15], label="degree", fill=False),
            "strength": Slider(1e-6, 10.0, default=1e-6, log=True, static=[1e-6, 1e-2, 10.0], label="L2 strength λ", fill=False),
        },
        title="Capacity and L2: polynomial degree and ridge strength",
        alt=("Ridge fit of degree {degree} with L2 strength {strength:.0e} to 20 noisy points, beside training "
             "and validation RMSE against polynomial degree"),
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
        alt=("Decision boundary of a two-hidden-layer network trained on 60 noisy two-moons points with L2 "
             "strength {strength:g} and dropout {p:g}, beside its loss curves: the training loss of each step as "
             "trained (dropout on, when p > 0), and the training and validation losses in evaluation mode"),
    )
