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
:func:`digits_logits`; every ``render`` only computes a little and draws, on a
figure made once and reused (:func:`canvas`: a fresh two-panel figure costs
most of a frame, and the static book describes every point of a 9 x 9 grid).
Each explorer's alt text is a function of the settings that states the
numbers its frame shows, computed by the same cached functions as the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from matplotlib.colors import to_rgba as matplotlib_colour
from matplotlib.figure import Figure

from .. import backend, data, losses, plots
from ..backend import device, generator
from . import Choice, Explorer, Slider, bars, canvas, legend, registered

__all__ = [
    "outlier_data", "outlier_fits", "outlier_alt", "render_outliers", "outlier_explorer",
    "OUTLIER_SHIFTS", "HUBER_DELTAS",
    "logit_values", "logit_alt", "render_logit", "logit_explorer",
    "SOFTMAX_RIVALS", "SOFTMAX_LOGITS", "SOFTMAX_TEMPERATURES", "softmax_values", "softmax_alt", "render_softmax", "softmax_explorer",
    "DigitsLogits", "digits_logits", "calibration_at", "calibration_alt", "render_calibration", "calibration_explorer",
]

C = plots.PALETTE

def _two_panels(key: str, size: tuple[float, float] = (8.0, 3.2)) -> tuple[Figure, object, object]:
    fig = canvas(key, lambda: plots.figure(1, 2, size=size, layout="fixed")[0])
    ax, bx = fig.axes
    return fig, ax, bx


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


@lru_cache(maxsize=32)
def _line_fit(outlier: float, loss: str, delta: float = 1.0) -> torch.Tensor:
    x, y, _ = outlier_data(outlier)
    return losses.fit_line(x, y, loss, delta=delta)


def outlier_fits(outlier: float, delta: float) -> dict[str, torch.Tensor]:
    """Intercept and slope (2,) of the lines fitted under MSE, MAE and Huber(``delta``) to :func:`outlier_data` (cached)."""
    return {"mse": _line_fit(float(outlier), "mse"), "mae": _line_fit(float(outlier), "mae"),
            "huber": _line_fit(float(outlier), "huber", float(delta))}


def outlier_alt(outlier: float, delta: float) -> str:
    """What a frame of :func:`outlier_explorer` shows: the three slopes and the outliers' share of the squared error."""
    x, y, is_out = outlier_data(outlier)
    fits = outlier_fits(outlier, delta)
    r = y - (fits["mse"][0] + fits["mse"][1] * x)
    share = float((r[is_out] ** 2).sum() / (r**2).sum())
    moved = f"the 5 rightmost shifted up by {outlier:.3g}" if outlier else "none shifted"
    return (f"Left, 40 points near a line of slope 0.8, {moved}, and the fitted lines: slope "
            f"{float(fits['mse'][1]):.2f} under MSE, {float(fits['mae'][1]):.2f} under MAE and "
            f"{float(fits['huber'][1]):.2f} under Huber with delta {delta:.3g}. Right, the loss each fit assigns to "
            f"each point; the 5 rightmost carry {100 * share:.0f}% of the squared error at the MSE line.")


def render_outliers(outlier: float, delta: float) -> Figure:
    """Left: the data and the lines fitted under MSE, MAE and Huber(delta). Right: each loss per point."""
    x, y, is_out = outlier_data(outlier)
    fits = outlier_fits(outlier, delta)
    labels = {"mse": "MSE", "mae": "MAE", "huber": f"Huber δ={delta:.2g}"}
    fig, ax, bx = _two_panels("loss.outliers")
    ax.plot(x[~is_out], y[~is_out], "o", ms=3.7, color="0.35", label="data")
    ax.plot(x[is_out], y[is_out], "D", ms=4.7, color=C[3], label="outliers")
    grid = torch.tensor([-3.2, 3.2], dtype=torch.float64)
    ax.plot(grid, 1 + 0.8 * grid, color="0.6", ls=":", lw=1, label="true line")
    for (name, coef), col in zip(fits.items(), (C[1], C[0], C[2])):
        ax.plot(grid, coef[0] + coef[1] * grid, color=col, lw=2, label=f"{labels[name]}: slope {float(coef[1]):.2f}")
    ax.set(xlabel="x", ylabel="y", ylim=(-3.5, max(6.0, 4.5 + outlier)))
    legend(ax, loc="upper left", fontsize=8)
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
        bx.plot(idx, per, mk, ms=3.5, color=col, label=labels[name])
    bx.axvspan(len(x) - 5 - 0.5, len(x) - 0.5, color=C[3], alpha=0.12, lw=0)
    bx.set_yscale("symlog", linthresh=0.1)
    bx.set(xlabel="point (outliers shaded)", ylabel="loss of the point at its fit")
    bx.set_title("Per-point loss (r²/2, |r|, Huber)")
    legend(bx, loc="upper left", fontsize=8)
    return fig


#: The static book's positions: shifts 0 to 20, and deltas from below the inliers' noise to past the outliers' residuals.
OUTLIER_SHIFTS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0)
HUBER_DELTAS = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)


@registered
def outlier_explorer() -> Explorer:
    return Explorer(
        "loss.outliers",
        render_outliers,
        controls={
            "outlier": Slider(0.0, 20.0, default=8.0, static=OUTLIER_SHIFTS, label="outlier shift", fill=False),
            "delta": Slider(0.1, 20.0, default=1.0, log=True, static=HUBER_DELTAS, label="Huber delta", fill=False),
        },
        title="Regression with outliers: MSE follows them, MAE ignores them, Huber is in between",
        alt=outlier_alt,
    )


# --- 2. one logit -------------------------------------------------------------------

def logit_values(z: float, label: int) -> dict[str, float]:
    """At one logit: ``p`` = sigmoid(z), the losses ``bce`` and ``mse`` = (p - y)^2, and their gradients ``g_bce``, ``g_mse`` in z."""
    zt, yt = torch.tensor([z], dtype=torch.float64), torch.tensor([float(label)], dtype=torch.float64)
    p = float(torch.sigmoid(zt))
    return {"p": p, "bce": float(losses.binary_cross_entropy_with_logits(zt, yt)), "mse": (p - label) ** 2,
            "g_bce": float(losses.bce_with_logits_grad(zt, yt, "sum")), "g_mse": float(losses.sigmoid_mse_grad(zt, yt, "sum"))}


def logit_alt(z: float, label: int) -> str:
    """What a frame of :func:`logit_explorer` shows: the probability, both losses and both gradients at the marked logit."""
    v = logit_values(z, label)
    return (f"Cross-entropy and squared error through a sigmoid against label {label} as functions of the logit, and "
            f"their gradients. At the marked logit {z:.3g}: p = {v['p']:.3g}, cross-entropy {v['bce']:.3g}, squared "
            f"error {v['mse']:.3g}; gradient {v['g_bce']:+.3g} for cross-entropy and {v['g_mse']:+.3g} for squared error.")


def render_logit(z: float, label: int) -> Figure:
    """Cross-entropy and squared error of ``sigmoid(z)`` against ``label``, and their gradients in z."""
    zs = torch.linspace(-8, 8, 321, dtype=torch.float64)  # (321,)
    ys = torch.full_like(zs, float(label))
    bce = losses.binary_cross_entropy_with_logits(zs, ys, reduction="none")
    mse = (torch.sigmoid(zs) - ys) ** 2
    g_bce = losses.bce_with_logits_grad(zs, ys, reduction="sum")
    g_mse = losses.sigmoid_mse_grad(zs, ys, reduction="sum")
    at = logit_values(z, label)
    p = at["p"]
    fig, ax, bx = _two_panels("loss.logit")
    ax.plot(zs, bce, color=C[0], lw=2, label="cross-entropy")
    ax.plot(zs, mse, color=C[1], lw=2, label="squared error (σ(z) − y)²")
    ax.plot(zs, torch.sigmoid(zs), color="0.6", ls=":", label="p = σ(z)")
    ax.plot([z, z], [at["bce"], at["mse"]], "o", color="k", ms=5)
    ax.axvline(z, color="0.5", lw=0.8)
    ax.set(xlabel="logit z", ylabel="loss", ylim=(-0.1, 8.5))
    ax.set_title(f"y = {label}, p = σ(z) = {p:.3g}: CE {at['bce']:.3g}, SE {at['mse']:.3g}", fontsize=10)
    legend(ax, loc="upper center", fontsize=8)
    bx.plot(zs, g_bce, color=C[0], lw=2, label="CE: σ(z) − y")
    bx.plot(zs, g_mse, color=C[1], lw=2, label="SE: 2(σ − y) σ(1 − σ)")
    bx.plot([z, z], [at["g_bce"], at["g_mse"]], "o", color="k", ms=5)
    bx.axvline(z, color="0.5", lw=0.8)
    bx.axhline(0, color="0.5", lw=0.6)
    bx.set(xlabel="logit z", ylabel="d loss / dz", ylim=(-1.1, 1.1))
    bx.set_title(f"gradient: CE {at['g_bce']:+.3g}, SE {at['g_mse']:+.3g}")
    legend(bx, loc="lower left" if label == 1 else "upper left", fontsize=8)
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
        alt=logit_alt,
    )


# --- 3. softmax and cross-entropy ---------------------------------------------------

_RIVALS = torch.tensor([1.5, 0.5, 0.0, -1.0], dtype=torch.float64)  # logits of the four wrong classes
SOFTMAX_RIVALS = _RIVALS  # public name: the chapter checks what it says about this explorer on the same logits


#: The static book's positions: every whole true-class logit from -4 to 6, temperatures from 1/4 to 4.
SOFTMAX_LOGITS = tuple(float(v) for v in range(-4, 7))
SOFTMAX_TEMPERATURES = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.0)


def softmax_values(true_logit: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The five logits (5,) (class 0 true), their softmax at ``temperature`` (5,), and the loss -log p_0."""
    z = torch.cat([torch.tensor([true_logit], dtype=torch.float64), _RIVALS])  # (5,)
    return z, losses.softmax(z / temperature), float(losses.cross_entropy(z / temperature, torch.tensor(0)))


def softmax_alt(true_logit: float, temperature: float) -> str:
    """What a frame of :func:`softmax_explorer` shows: the five probabilities and the loss."""
    z, p, loss = softmax_values(true_logit, temperature)
    others = ", ".join(f"{float(p[i]):.2f}" for i in range(1, 5))
    return (f"Bars of the softmax probabilities of five classes at temperature {temperature:.3g}: the true class, at "
            f"logit {true_logit:.3g}, gets {float(p[0]):.2f}; the others, at logits 1.5, 0.5, 0 and -1, get {others}. "
            f"The loss -log p(true) is {loss:.3f}, marked on the cross-entropy curve as the true-class logit moves.")


@lru_cache(maxsize=16)
def _softmax_curve(temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    zs = torch.linspace(-6, 8, 141, dtype=torch.float64)  # (141,) step 0.1: the curve is smooth
    grid = torch.cat([zs[:, None], _RIVALS.expand(len(zs), 4)], dim=1)  # (141, 5)
    return zs, losses.cross_entropy(grid / temperature, torch.zeros(len(zs), dtype=torch.long), reduction="none")


def render_softmax(true_logit: float, temperature: float) -> Figure:
    """Five classes, class 0 true: logits, softmax(z / tau) and the loss -log p_0 as a function of z_0."""
    z, p, loss = softmax_values(true_logit, temperature)
    fig, ax, bx = _two_panels("loss.softmax")
    k = torch.arange(5)
    bars(ax, [0], p[:1], width=0.6, facecolors=C[2], edgecolors="none")
    bars(ax, k[1:], p[1:], width=0.6, facecolors="0.55", edgecolors="none")
    for i in range(5):
        ax.text(i, float(p[i]) + 0.02, f"{float(p[i]):.2f}", ha="center", fontsize=8)
    ax.set_xticks(k.tolist(), [f"{'true' if i == 0 else f'class {i}'}\nz={float(z[i]):.3g}" for i in range(5)])
    ax.set(xlim=(-0.5, 4.5), ylim=(0, 1.05), ylabel="softmax(z / τ)")
    ax.set_title(f"τ = {temperature:.3g}: loss = -log p(true) = {loss:.3f}", fontsize=10)
    zs, curve = _softmax_curve(float(temperature))
    bx.plot(zs, curve, color=C[0], lw=2, label=f"τ = {temperature:.3g}")
    if temperature != 1.0:
        bx.plot(*_softmax_curve(1.0), color="0.6", ls="--", label="τ = 1")
    bx.axhline(math.log(5), color="0.6", lw=0.8, ls=":")
    bx.text(-5.8, math.log(5) + 0.15, "log 5", fontsize=8, color="0.4")
    bx.plot([true_logit], [loss], "o", color="k")
    bx.set(xlabel="true-class logit z₀", ylabel="cross-entropy", ylim=(0, 12))
    bx.set_title("loss as the true-class logit moves")
    legend(bx, loc="upper right", fontsize=8)
    return fig


@registered
def softmax_explorer() -> Explorer:
    return Explorer(
        "loss.softmax",
        render_softmax,
        controls={
            "true_logit": Slider(-4.0, 6.0, default=1.0, static=SOFTMAX_LOGITS, label="true-class logit", fill=False),
            "temperature": Slider(0.25, 4.0, default=1.0, log=True, static=SOFTMAX_TEMPERATURES, label="temperature τ", fill=False),
        },
        title="Softmax cross-entropy: only the probability of the true class enters the loss",
        alt=softmax_alt,
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


@lru_cache(maxsize=32)
def calibration_at(temperature: float):
    """The digits network's test predictions at ``temperature``: ``(probs (N, 10), bins, ece, nll, accuracy)``."""
    d = digits_logits()
    probs = losses.softmax(d.test_logits / temperature)  # (N, 10)
    bins = losses.reliability_bins(probs, d.test_labels, n_bins=10)
    ece = float(losses.expected_calibration_error(probs, d.test_labels, n_bins=10))
    nll = float(losses.cross_entropy(d.test_logits / temperature, d.test_labels))
    acc = float((probs.argmax(1) == d.test_labels).double().mean())
    return probs, bins, ece, nll, acc


def calibration_alt(temperature: float) -> str:
    """What a frame of :func:`calibration_explorer` shows: ECE, NLL, accuracy and mean confidence at ``temperature``."""
    probs, _, ece, nll, acc = calibration_at(float(temperature))
    conf = float(probs.max(1).values.mean())
    verdict = "overconfident" if conf > acc else "underconfident"
    return (f"Reliability diagram (accuracy against confidence in ten bins) and a histogram of confidences for a "
            f"network's test predictions on the digits data at temperature {temperature:.3g}: accuracy {acc:.3f}, "
            f"mean confidence {conf:.3f} ({verdict}), ECE {ece:.3f}, NLL {nll:.3f}.")


def render_calibration(temperature: float) -> Figure:
    """Reliability diagram and confidence histogram of the digits network's test predictions at ``temperature``."""
    d = digits_logits()
    probs, bins, ece, nll, acc = calibration_at(float(temperature))
    fig, ax, bx = _two_panels("loss.calibration")
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    filled = bins.count > 0
    bars(ax, centres[filled], bins.accuracy[filled], width=0.1, facecolors=C[0], edgecolors="white", label="accuracy in bin")
    bars(ax, centres[filled], (bins.confidence - bins.accuracy)[filled], bottom=bins.accuracy[filled], width=0.1,
         facecolors=matplotlib_colour(C[1], 0.35), edgecolors=C[1], label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")
    ax.set_title(f"τ = {temperature:.3g}: ECE = {ece:.3f}, NLL = {nll:.3f}")
    legend(ax, loc="upper left", fontsize=8)
    conf = probs.max(1).values
    counts = torch.histc(conf, bins=20, min=0.0, max=1.0)  # (20,)
    bars(bx, torch.arange(20).mul(0.05).add(0.025).numpy(), (counts / counts.sum()).numpy(), width=0.05, facecolors=C[2],
         edgecolors="none")
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
        alt=calibration_alt,
    )
