"""Explorers of Chapter 1, "Loss functions".

1. :func:`outlier_explorer`: lines fitted under MSE, MAE and Huber as one
   group of points is pushed away, and the per-point loss each assigns.
2. :func:`logit_explorer`: one logit and its label; cross-entropy and
   squared error through a sigmoid, and their gradients side by side.
3. :func:`softmax_explorer`: logits of five classes, a temperature, and the
   cross-entropy, which reads only the true class's probability.
4. :func:`calibration_explorer`: a small network trained on scikit-learn's
   digits; temperature against its reliability diagram and ECE.

The heavy part (training the digits network) runs once and is cached by
:func:`digits_logits`; every ``render`` only computes a little and draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from matplotlib.figure import Figure

from .. import backend, data, losses, plots
from ..backend import device, generator
from . import Choice, Explorer, Slider, registered

__all__ = [
    "outlier_data", "render_outliers", "outlier_explorer",
    "render_logit", "logit_explorer",
    "SOFTMAX_RIVALS", "render_softmax", "softmax_explorer",
    "DigitsLogits", "digits_logits", "render_calibration", "calibration_explorer",
]

C = plots.PALETTE


# --- 1. regression with outliers ----------------------------------------------------

def outlier_data(outlier: float, *, n: int = 40, n_out: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points near the line ``y = 1 + 0.8 x`` (x in [-3, 3]); the ``n_out`` points with the largest x get ``+outlier``.

    Returns
    -------
    (x, y, is_outlier) : (N,), (N,), (N,) bool
    """
    g = generator(seed)
    x = torch.linspace(-3, 3, n, dtype=torch.float64)  # (N,)
    y = 1 + 0.8 * x + 0.4 * torch.randn(n, generator=g, dtype=torch.float64)  # (N,)
    is_out = torch.zeros(n, dtype=torch.bool)
    is_out[-n_out:] = True
    return x, y + outlier * is_out, is_out


def render_outliers(outlier: float, delta: float) -> Figure:
    """Left: the data and the lines fitted under MSE, MAE and Huber(delta). Right: each loss per point."""
    x, y, is_out = outlier_data(outlier)
    fits = {name: losses.fit_line(x, y, name, delta=delta) for name in ("mse", "mae", "huber")}
    labels = {"mse": "MSE", "mae": "MAE", "huber": f"Huber δ={delta:.2g}"}
    fig, (ax, bx) = plots.figure(1, 2, size=(8.0, 3.2), layout="fixed")
    ax.scatter(x[~is_out], y[~is_out], s=14, color="0.35", label="data")
    ax.scatter(x[is_out], y[is_out], s=22, color=C[3], marker="D", label="outliers")
    grid = torch.tensor([-3.2, 3.2], dtype=torch.float64)
    ax.plot(grid, 1 + 0.8 * grid, color="0.6", ls=":", lw=1, label="true line")
    for (name, coef), col in zip(fits.items(), (C[1], C[0], C[2])):
        ax.plot(grid, coef[0] + coef[1] * grid, color=col, lw=2, label=f"{labels[name]}: slope {float(coef[1]):.2f}")
    ax.set(xlabel="x", ylabel="y", ylim=(-3.5, max(6.0, 4.5 + outlier)))
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Outliers shifted by {outlier:.3g}")
    # per-point loss of each fit, at its own residuals, in a common unit (each loss at its own line)
    idx = torch.arange(len(x))
    for (name, coef), col, mk in zip(fits.items(), (C[1], C[0], C[2]), ("o", "s", "^")):
        r = y - (coef[0] + coef[1] * x)
        if name == "mse":
            per = 0.5 * r**2
        elif name == "mae":
            per = r.abs()
        else:
            per = losses.huber_loss(coef[0] + coef[1] * x, y, "none", delta=delta)
        bx.scatter(idx, per, s=12, color=col, marker=mk, label=labels[name])
    bx.axvspan(len(x) - 5 - 0.5, len(x) - 0.5, color=C[3], alpha=0.12, lw=0)
    bx.set_yscale("symlog", linthresh=0.1)
    bx.set(xlabel="point (outliers shaded)", ylabel="loss of the point at its fit")
    bx.set_title("Per-point loss (r²/2, |r|, Huber)")
    bx.legend(loc="upper left", fontsize=8)
    return fig


@registered
def outlier_explorer() -> Explorer:
    return Explorer(
        "loss.outliers",
        render_outliers,
        controls={
            "outlier": Slider(0.0, 20.0, default=8.0, static=[0.0, 8.0, 16.0], label="outlier shift", fill=False),
            "delta": Slider(0.1, 5.0, default=1.0, log=True, static=[0.3, 1.0, 3.0], label="Huber delta", fill=False),
        },
        title="Regression with outliers: MSE follows them, MAE ignores them, Huber is in between",
        alt="Left, 40 points with the 5 rightmost shifted up by {outlier:.3g} and lines fitted under MSE, MAE and "
            "Huber with delta {delta:.3g}; right, the loss each fit assigns to each point, the outliers shaded.",
    )


# --- 2. one logit -------------------------------------------------------------------

def render_logit(z: float, label: int) -> Figure:
    """Cross-entropy and squared error of ``sigmoid(z)`` against ``label``, and their gradients in z."""
    zs = torch.linspace(-8, 8, 321, dtype=torch.float64)  # (321,)
    ys = torch.full_like(zs, float(label))
    bce = losses.binary_cross_entropy_with_logits(zs, ys, reduction="none")
    mse = (torch.sigmoid(zs) - ys) ** 2
    g_bce = losses.bce_with_logits_grad(zs, ys, reduction="sum")
    g_mse = losses.sigmoid_mse_grad(zs, ys, reduction="sum")
    zt, yt = torch.tensor([z], dtype=torch.float64), torch.tensor([float(label)], dtype=torch.float64)
    p = float(torch.sigmoid(zt))
    at = {
        "bce": float(losses.binary_cross_entropy_with_logits(zt, yt)),
        "mse": (p - label) ** 2,
        "g_bce": float(losses.bce_with_logits_grad(zt, yt, "sum")),
        "g_mse": float(losses.sigmoid_mse_grad(zt, yt, "sum")),
    }
    fig, (ax, bx) = plots.figure(1, 2, size=(8.0, 3.2), layout="fixed")
    ax.plot(zs, bce, color=C[0], lw=2, label="cross-entropy")
    ax.plot(zs, mse, color=C[1], lw=2, label="squared error (σ(z) − y)²")
    ax.plot(zs, torch.sigmoid(zs), color="0.6", ls=":", label="p = σ(z)")
    ax.plot([z, z], [at["bce"], at["mse"]], "o", color="k", ms=5)
    ax.axvline(z, color="0.5", lw=0.8)
    ax.set(xlabel="logit z", ylabel="loss", ylim=(-0.1, 8.5))
    ax.set_title(f"y = {label}, p = σ(z) = {p:.3g}: CE {at['bce']:.3g}, SE {at['mse']:.3g}", fontsize=10)
    ax.legend(loc="upper center", fontsize=8)
    bx.plot(zs, g_bce, color=C[0], lw=2, label="CE: σ(z) − y")
    bx.plot(zs, g_mse, color=C[1], lw=2, label="SE: 2(σ − y) σ(1 − σ)")
    bx.plot([z, z], [at["g_bce"], at["g_mse"]], "o", color="k", ms=5)
    bx.axvline(z, color="0.5", lw=0.8)
    bx.axhline(0, color="0.5", lw=0.6)
    bx.set(xlabel="logit z", ylabel="d loss / dz", ylim=(-1.1, 1.1))
    bx.set_title(f"gradient: CE {at['g_bce']:+.3g}, SE {at['g_mse']:+.3g}")
    bx.legend(loc="lower left" if label == 1 else "upper left", fontsize=8)
    return fig


@registered
def logit_explorer() -> Explorer:
    return Explorer(
        "loss.logit",
        render_logit,
        controls={
            "z": Slider(-8.0, 8.0, default=-4.0, static=[-6.0, -4.0, -1.0, 0.0, 3.0], label="logit z"),
            "label": Choice([1, 0], default=1, labels=["y = 1", "y = 0"], label="label"),
        },
        title="One logit: cross-entropy keeps pushing when confidently wrong; squared error through a sigmoid stalls",
        alt="Cross-entropy and squared error of sigmoid(z) against label {label} as functions of the logit, and "
            "their gradients, with the logit z = {z:.3g} marked on both panels.",
    )


# --- 3. softmax and cross-entropy ---------------------------------------------------

_RIVALS = torch.tensor([1.5, 0.5, 0.0, -1.0], dtype=torch.float64)  # logits of the four wrong classes
SOFTMAX_RIVALS = _RIVALS  # public name: the chapter checks what it says about this explorer on the same logits


def render_softmax(true_logit: float, temperature: float) -> Figure:
    """Five classes, class 0 true: logits, softmax(z / tau) and the loss -log p_0 as a function of z_0."""
    z = torch.cat([torch.tensor([true_logit], dtype=torch.float64), _RIVALS])  # (5,)
    p = losses.softmax(z / temperature)
    loss = float(losses.cross_entropy(z / temperature, torch.tensor(0)))
    fig, (ax, bx) = plots.figure(1, 2, size=(8.0, 3.2), layout="fixed")
    k = torch.arange(5)
    colours = [C[2]] + ["0.55"] * 4
    ax.bar(k, p, width=0.6, color=colours)
    for i in range(5):
        ax.text(i, float(p[i]) + 0.02, f"{float(p[i]):.2f}", ha="center", fontsize=8)
    ax.set_xticks(k.tolist(), [f"{'true' if i == 0 else f'class {i}'}\nz={float(z[i]):.3g}" for i in range(5)])
    ax.set(ylim=(0, 1.05), ylabel="softmax(z / τ)")
    ax.set_title(f"τ = {temperature:.3g}: loss = -log p(true) = {loss:.3f}", fontsize=10)
    zs = torch.linspace(-6, 8, 281, dtype=torch.float64)  # (281,)
    grid = torch.cat([zs[:, None], _RIVALS.expand(len(zs), 4)], dim=1)  # (281, 5)
    target = torch.zeros(len(zs), dtype=torch.long)
    bx.plot(zs, losses.cross_entropy(grid / temperature, target, reduction="none"), color=C[0], lw=2, label=f"τ = {temperature:.3g}")
    if temperature != 1.0:
        bx.plot(zs, losses.cross_entropy(grid, target, reduction="none"), color="0.6", ls="--", label="τ = 1")
    bx.axhline(math.log(5), color="0.6", lw=0.8, ls=":")
    bx.text(-5.8, math.log(5) + 0.15, "log 5", fontsize=8, color="0.4")
    bx.plot([true_logit], [loss], "o", color="k")
    bx.set(xlabel="true-class logit z₀", ylabel="cross-entropy", ylim=(0, 12))
    bx.set_title("loss as the true-class logit moves")
    bx.legend(loc="upper right", fontsize=8)
    return fig


@registered
def softmax_explorer() -> Explorer:
    return Explorer(
        "loss.softmax",
        render_softmax,
        controls={
            "true_logit": Slider(-4.0, 6.0, default=1.0, static=[-2.0, 1.0, 4.0], label="true-class logit", fill=False),
            "temperature": Slider(0.25, 4.0, default=1.0, log=True, static=[0.5, 1.0, 2.0], label="temperature τ", fill=False),
        },
        title="Softmax cross-entropy: only the probability of the true class enters the loss",
        alt="Bars of five logits and their softmax probabilities at temperature {temperature:.3g} with the true "
            "class at logit {true_logit:.3g}, and the cross-entropy as a function of the true-class logit.",
    )


# --- 4. calibration -----------------------------------------------------------------

@dataclass(frozen=True)
class DigitsLogits:
    """Logits of a small network trained on scikit-learn's digits, on held-out splits."""

    val_logits: torch.Tensor  # (N_val, 10)
    val_labels: torch.Tensor  # (N_val,)
    test_logits: torch.Tensor  # (N_test, 10)
    test_labels: torch.Tensor  # (N_test,)
    temperature: float  # fitted on the validation split
    train_loss: float  # mean cross-entropy on the training digits after training

    def __repr__(self) -> str:
        return (f"DigitsLogits(val={len(self.val_labels)}, test={len(self.test_labels)}, T={self.temperature:.3f}, "
                f"train_loss={self.train_loss:.2g})")




@lru_cache(maxsize=4)
def digits_logits(seed: int = 0, steps: int = 100, hidden: int = 128) -> DigitsLogits:
    """Train a 64-``hidden``-10 ReLU network on 200 digits (full-batch Adam, no regularization), once per arguments.

    Trained to near-zero training loss, such a network is typically
    overconfident on new data: a case for temperature scaling. See Chapter 1.
    """
    dev = device()
    train, val, test = data.digits(n_train=200, n_val=600, seed=seed, device=dev)
    g = generator(seed)
    w1 = (torch.randn(64, hidden, generator=g) * math.sqrt(2 / 64)).to(dev).requires_grad_()
    b1 = torch.zeros(hidden, device=dev, requires_grad=True)
    w2 = (torch.randn(hidden, 10, generator=g) * math.sqrt(1 / hidden)).to(dev).requires_grad_()
    b2 = torch.zeros(10, device=dev, requires_grad=True)

    def net(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ w1 + b1) @ w2 + b2  # (N, 10)

    opt = torch.optim.Adam([w1, b1, w2, b2], lr=1e-2)
    with backend.single_thread(dev):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(train.x), train.y).backward()
            opt.step()
        with torch.no_grad():
            zv, zt = net(val.x).double().cpu(), net(test.x).double().cpu()
            train_loss = float(torch.nn.functional.cross_entropy(net(train.x), train.y))
        t = losses.fit_temperature(zv, val.y.cpu())
    return DigitsLogits(zv, val.y.cpu(), zt, test.y.cpu(), t, train_loss)


def render_calibration(temperature: float) -> Figure:
    """Reliability diagram and confidence histogram of the digits network's test predictions at ``temperature``."""
    d = digits_logits()
    probs = losses.softmax(d.test_logits / temperature)  # (N, 10)
    bins = losses.reliability_bins(probs, d.test_labels, n_bins=10)
    ece = float(losses.expected_calibration_error(probs, d.test_labels, n_bins=10))
    nll = float(losses.cross_entropy(d.test_logits / temperature, d.test_labels))
    acc = float((probs.argmax(1) == d.test_labels).double().mean())
    fig, (ax, bx) = plots.figure(1, 2, size=(8.0, 3.2), layout="fixed")
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    filled = bins.count > 0
    ax.bar(centres[filled], bins.accuracy[filled], width=0.1, color=C[0], edgecolor="white", label="accuracy in bin")
    ax.bar(centres[filled], (bins.confidence - bins.accuracy)[filled], bottom=bins.accuracy[filled], width=0.1,
           color=C[1], alpha=0.35, edgecolor=C[1], label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")
    ax.set_title(f"τ = {temperature:.3g}: ECE = {ece:.3f}, NLL = {nll:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    conf = probs.max(1).values
    counts = torch.histc(conf, bins=20, min=0.0, max=1.0)  # (20,)
    bx.bar(torch.arange(20).mul(0.05).add(0.025).tolist(), (counts / counts.sum()).tolist(), width=0.05, color=C[2])
    bx.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="fraction of test examples")
    bx.set_title(f"accuracy {acc:.3f} at any τ; τ* = {d.temperature:.2f}", fontsize=10)
    return fig


@registered
def calibration_explorer() -> Explorer:
    t_star = round(digits_logits().temperature, 2)
    return Explorer(
        "loss.calibration",
        render_calibration,
        controls={
            "temperature": Slider(0.25, 8.0, default=1.0, log=True,
                                  static=sorted({0.5, 1.0, 2.0, 4.0, min(max(t_star, 0.25), 8.0)}), label="temperature τ"),
        },
        title="Calibration of a digits classifier: temperature changes confidence, never the predicted class",
        alt="Reliability diagram (accuracy against confidence in ten bins) and a histogram of confidences for a "
            "network's test predictions on the digits data at temperature {temperature:.3g}.",
    )
