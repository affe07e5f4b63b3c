"""Explorers of Chapter 8 (Convergence and training diagnostics).

- :func:`pathology_explorer`: pick a bug -> the loss curves and gradient norms
  of the digits MLP trained with it, and what :func:`losslab.train.diagnose`
  says, with the step whose weights early stopping would keep.
- :func:`rate_explorer`: condition number, learning rate and momentum -> the
  measured distance to the minimum of a quadratic against the theoretical
  rate, and the steps to shrink it a million times, measured and predicted.
"""

from __future__ import annotations

import math
import textwrap
from functools import lru_cache

import numpy as np
import torch
from matplotlib import ticker
from matplotlib.figure import Figure

from .. import plots
from .. import train as T
from . import Choice, Explorer, Slider, registered


def _tick_label(v: float, _pos: object = None) -> str:
    """1e-4 ... 0.01, 0.1, 1, 10, 100, 1000, 1e4: short labels without mathtext."""
    if v <= 0:
        return ""
    e = math.floor(math.log10(v) + 1e-9)
    if -2 <= e <= 3:
        return f"{v:g}"
    m = v / 10**e
    return f"1e{e}" if abs(m - 1) < 1e-6 else f"{m:g}e{e}"


def _log_ticks(ax, *axes: str) -> None:
    """Plain labels and no minor ticks on log axes: drawing them dominates a frame's time (about 3x)."""
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_minor_locator(ticker.NullLocator())
        axis.set_major_formatter(ticker.FuncFormatter(_tick_label))


# --- 1. the pathology gallery ------------------------------------------------------------

PATIENCE = 3
BUG_LABELS = {
    "none": "none (healthy)",
    "lr x100": "learning rate x100",
    "lr /100": "learning rate /100",
    "no shuffling": "no shuffling (sorted by label)",
    "label noise": "40% label noise, small set",
    "tiny model": "tiny model (2 hidden units)",
    "no normalization": "no input normalization",
}


@lru_cache(maxsize=1)
def gallery_histories() -> dict[str, T.History]:
    """One run of :func:`losslab.train.run_with_bug` per bug (computed once; do not modify the histories)."""
    return {bug: T.run_with_bug(bug) for bug in T.BUGS}


@lru_cache(maxsize=None)
def _diagnosis(bug: str) -> tuple[T.Finding, ...]:
    return tuple(T.diagnose(gallery_histories()[bug]))


def render_pathology(bug: str) -> Figure:
    """Left: losses (top) and gradient norm (bottom) of the run with ``bug``; right: its diagnosis."""
    h = gallery_histories()[bug]
    findings = _diagnosis(bug)
    fig, ax = plots.figure(size=(9.6, 4.2), layout="fixed")
    ax.set_position([0.075, 0.42, 0.5, 0.5])
    gx = fig.add_axes([0.075, 0.11, 0.5, 0.2], sharex=ax)
    steps = h.steps
    top = 30.0
    finite = np.isfinite(h.step_loss)
    ax.plot(steps, np.clip(np.where(finite, h.step_loss, np.nan), None, top), color=plots.PALETTE[5], lw=0.6,
            label="minibatch")
    ok = np.isfinite(h.train_loss)
    ax.plot(h.eval_steps[ok], np.clip(h.train_loss[ok], None, top), color=plots.PALETTE[0], lw=1.4, label="training")
    ok = np.isfinite(h.val_loss)
    ax.plot(h.eval_steps[ok], np.clip(h.val_loss[ok], None, top), color=plots.PALETTE[1], lw=1.4, label="validation")
    if not finite.all():
        t = int(np.argmin(finite))
        ax.plot([t], [top * 0.7], "x", color="#b00000", ms=9, mew=2)
        ax.text(t, top * 0.7, f"{h.step_loss[t]} at step {t}  ", fontsize=8, color="#b00000", ha="right", va="center")
    ax.axhline(math.log(10), color="0.5", lw=0.7, ls=":")
    ax.text(steps[-1], math.log(10) * 1.1, "log 10", fontsize=7, color="0.4", ha="right")
    stop, best = T.early_stopping_point(h.val_loss, PATIENCE)
    s_stop, s_best = int(h.eval_steps[stop]), int(h.eval_steps[best])
    triggers = stop < len(h.val_loss) - 1
    if triggers:
        ax.axvline(s_stop, color="k", lw=0.8, ls="--")
    ax.plot([s_best], [h.val_loss[best]], "*", ms=11, color="k", zorder=5)
    ax.set_title(f"bug: {BUG_LABELS[bug]}", fontsize=10)
    ax.text(0.02, 0.13, f"early stopping (patience {PATIENCE}): " + (f"stops at step {s_stop}, " if triggers else "")
            + f"keeps step {s_best} (star)", fontsize=8, transform=ax.transAxes)
    ax.set(yscale="log", ylim=(0.01, top * 1.5), ylabel="cross-entropy")
    for i, (name, colour) in enumerate((("minibatch", plots.PALETTE[5]), ("training", plots.PALETTE[0]),
                                        ("validation", plots.PALETTE[1]))):  # a key without a legend: cheaper to draw
        ax.text(0.02 + 0.16 * i, 0.04, name, color=colour, fontsize=8, weight="bold", transform=ax.transAxes)
    ax.tick_params(labelbottom=False)
    _log_ticks(ax, "y")
    norm = np.where(np.isfinite(h.grad_norm), h.grad_norm, np.nan)
    gx.plot(steps, np.clip(norm, None, 1e4), color=plots.PALETTE[3], lw=0.7)
    gx.set(yscale="log", xlabel="step", ylabel="grad norm", ylim=(0.01, 2e4))
    _log_ticks(gx, "y")
    # the diagnosis, as text: a bold name and one block of evidence and advice per finding
    y = 0.94
    fig.text(0.61, y, "diagnose(history):", fontsize=10, weight="bold", va="top")
    y -= 0.08
    for f in findings[:3]:
        lines = textwrap.wrap(f.evidence, 58)[:4] + textwrap.wrap("try: " + f.advice, 58)[:3]
        colour = "#006b4f" if f.name == "healthy" else "#8a3a00"
        fig.text(0.61, y, f.name, fontsize=9.5, weight="bold", va="top", color=colour)
        fig.text(0.62, y - 0.055, "\n".join(lines), fontsize=7.5, va="top", linespacing=1.25)
        y -= 0.055 + 0.034 * len(lines) + 0.05
    return fig


@registered
def pathology_explorer() -> Explorer:
    """Plant a bug in a healthy training run; see the curves and the diagnosis."""
    gallery_histories()
    return Explorer(
        "train.pathology-gallery",
        render_pathology,
        controls={"bug": Choice(list(T.BUGS), default="none", labels=[BUG_LABELS[b] for b in T.BUGS], label="bug")},
        title="A gallery of training pathologies on the digits",
        alt=("Minibatch, training and validation losses and the gradient norm of a digits MLP trained with the bug "
             "'{bug}', with the step early stopping would keep, beside the pathologies losslab.train.diagnose names "
             "for the run and the evidence for each"),
    )


# --- 2. convergence rate on a quadratic -----------------------------------------------------

RATE_STEPS = 1500
RATE_TOL = 1e-6
KAPPAS = (10.0, 100.0, 1000.0)


def render_rate(kappa: float, lr_L: float, beta: float) -> Figure:
    """Distance to the minimum per step on a quadratic: measured, predicted by the rate, and plain GD for reference."""
    lam = T.quadratic_spectrum(kappa, 20)  # L = 1, so lr = lr_L / L = lr_L
    run = T.run_quadratic(lam, lr=torch.tensor([lr_L, 1.0], dtype=torch.float64),
                          momentum=torch.tensor([beta, 0.0], dtype=torch.float64), steps=RATE_STEPS)
    rho = run.theory()  # (2,)
    err = run.error.numpy()  # (T + 1, 2)
    k = np.arange(RATE_STEPS + 1)
    fig, ax = plots.figure(size=(7.2, 3.7), layout="fixed")
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.9)
    floor = 1e-14
    r = float(rho[0])
    ax.plot(k, np.clip(err[:, 1], floor, None), color="0.6", lw=1, label=f"GD at lr = 1/L, β = 0: rate {float(rho[1]):.4f}")
    ax.plot(k, np.clip(np.where(np.isfinite(err[:, 0]), err[:, 0], 1e6), floor, 1e6), color=plots.PALETTE[0], lw=1.6,
            label=f"lr = {lr_L:.2g}/L, β = {beta:.2g}: measured")
    with np.errstate(over="ignore"):
        ax.plot(k, np.clip(err[0, 0] * r ** k, floor, 1e6), color=plots.PALETTE[1], ls="--", lw=1.2,
                label=f"theory: ρ^t with ρ = {r:.4f}")
    e = err[RATE_STEPS // 2:, 0]
    if r >= 1:
        title = f"theory rate {r:.3f} ≥ 1: diverges"
    elif np.isfinite(e).all() and (e > 1e-250).all():
        measured = float(np.exp(np.log(e[-1] / e[0]) / (len(e) - 1)))
        title = f"measured rate {measured:.4f}, theory {r:.4f}"
    else:
        title = f"converged to machine precision (theory rate {r:.4f})"
    hit = int(T.steps_to_tolerance(run.error[:, :1], RATE_TOL)[0])
    predicted = math.log(RATE_TOL) / math.log(r) if 0 < r < 1 else math.inf
    ax.text(0.98, 0.97, ("steps to shrink the error 10⁶ times:\n"
                         f"measured {hit if hit > 0 else f'> {RATE_STEPS}'}, predicted by the rate "
                         + (f"{predicted:.0f}" if math.isfinite(predicted) else "never")),
            transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set(yscale="log", ylim=(floor, 1e3), xlabel="step t", ylabel="distance to the minimum")
    ax.set_title(f"κ = {kappa:g}: {title}", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    _log_ticks(ax, "y")
    return fig


@registered
def rate_explorer() -> Explorer:
    """Measured convergence on a quadratic against the theoretical linear rate."""
    return Explorer(
        "train.convergence-rate",
        render_rate,
        controls={
            "kappa": Choice(list(KAPPAS), default=100.0, labels=[f"{k:g}" for k in KAPPAS], label="condition number κ"),
            "lr_L": Slider(0.05, 3.9, default=1.0, static=[1.0], label="learning rate × L", fill=False),
            "beta": Slider(0.0, 0.99, default=0.0, static=[0.0, 0.9], label="momentum β", fill=False),
        },
        title="Convergence rate on a quadratic: condition number, rate and momentum",
        alt=("Distance to the minimum per step on a log scale for gradient descent with learning rate {lr_L:.2g}/L and "
             "momentum {beta:.2g} on a quadratic with condition number {kappa:g}, beside the line the theoretical rate "
             "predicts and plain gradient descent at 1/L, with the measured and predicted steps to shrink the error a "
             "million times"),
    )
