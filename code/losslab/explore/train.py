"""Explorers of Chapter 8 (Convergence and training diagnostics).

- :func:`pathology_explorer`: pick a bug -> the loss curves and gradient norms
  of the digits MLP trained with it, and what :func:`losslab.train.diagnose`
  says, with the step whose weights early stopping would keep.
- :func:`rate_explorer`: condition number, learning rate and momentum -> the
  measured distance to the minimum of a quadratic against the theoretical
  rate, and the steps to shrink it a million times, measured and predicted
  (:func:`rate_run`: the numbers of one frame; the static grid is one batched
  run per condition number).
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


@lru_cache(maxsize=None)  # one figure per bug: a live update only reads it back
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


def _pathology_alt(bug: str) -> str:
    """What the gallery's frame for ``bug`` shows, read from the same run and diagnosis."""
    h = gallery_histories()[bug]
    finite = np.isfinite(h.step_loss)
    ok = np.isfinite(h.train_loss) & np.isfinite(h.val_loss)
    parts = [f"A digits network trained with the bug: {BUG_LABELS[bug]}."]
    if not finite.all():
        t = int(np.argmin(finite))
        parts.append(f"The minibatch loss becomes {h.step_loss[t]} at step {t}, where the run stops.")
    if ok.any():
        first, last = int(np.argmax(ok)), int(len(ok) - 1 - np.argmax(ok[::-1]))
        parts.append(f"Training loss {float(h.train_loss[first]):.2f} at step {int(h.eval_steps[first])} and "
                     f"{float(h.train_loss[last]):.3g} at step {int(h.eval_steps[last])}; validation loss "
                     f"{float(h.val_loss[first]):.2f} and {float(h.val_loss[last]):.3g} (log 10 = 2.30 is chance).")
    stop, best = T.early_stopping_point(h.val_loss, PATIENCE)
    parts.append(f"Early stopping with patience {PATIENCE} would keep step {int(h.eval_steps[best])}.")
    names = [f.name.replace("-", " ") for f in _diagnosis(bug)]
    parts.append("The diagnosis beside the curves names: " + ", ".join(names) + ", with its evidence and advice.")
    return " ".join(parts)


@registered
def pathology_explorer() -> Explorer:
    """Plant a bug in a healthy training run; see the curves and the diagnosis."""
    gallery_histories()
    return Explorer(
        "train.pathology-gallery",
        render_pathology,
        controls={"bug": Choice(list(T.BUGS), default="none", labels=[BUG_LABELS[b] for b in T.BUGS], label="bug")},
        title="A gallery of training pathologies on the digits",
        alt=_pathology_alt,
    )


# --- 2. convergence rate on a quadratic -----------------------------------------------------

RATE_STEPS = 1500
RATE_TOL = 1e-6
KAPPAS = (10.0, 100.0, 1000.0)
#: The static book's rates (times L) and momenta: every combination, at each condition number.
RATE_LRS = (0.1, 0.25, 0.5, 1.0, 1.5, 1.9, 2.1, 3.0, 3.8)
RATE_BETAS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
RATE_EVERY = 10  # the drawn curves keep every 10th step: 151 points
_FLOOR, _TOP = 1e-14, 1e6


def _rate_errors(kappa: float, lrs, betas) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the minimum, (T + 1, N), and the theoretical rate, (N,), of N settings run together."""
    run = T.run_quadratic(T.quadratic_spectrum(kappa, 20), lr=torch.tensor(list(lrs), dtype=torch.float64),
                          momentum=torch.tensor(list(betas), dtype=torch.float64), steps=RATE_STEPS)  # L = 1
    return run.error.numpy(), run.theory().numpy()


@lru_cache(maxsize=len(KAPPAS))
def _rate_grid(kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """The static grid of one condition number in one batched run: columns are (lr, beta) in RATE_LRS x RATE_BETAS
    order, then plain gradient descent at 1/L (the reference every frame draws)."""
    pairs = [(a, b) for a in RATE_LRS for b in RATE_BETAS] + [(1.0, 0.0)]
    return _rate_errors(kappa, [a for a, _ in pairs], [b for _, b in pairs])


def rate_run(kappa: float, lr_L: float, beta: float) -> dict:
    """The run one frame of the convergence-rate explorer draws, and what it shows.

    Returns ``error`` (T + 1,) and ``theory`` (the rate rho) of the setting, ``gd_error`` and ``gd_theory`` of
    plain gradient descent at 1/L, ``measured`` (the rate measured over the second half, NaN where the error
    left the floating-point range), ``steps`` (measured steps to shrink the error 10^6 times, -1 if not within
    the run), ``predicted`` (log 10^-6 / log rho; inf when rho >= 1) and ``diverges`` (rho >= 1).
    A setting of the static grid is read from the grid's batched run; any other is run on its own.
    """
    kappa, lr_L, beta = float(kappa), float(lr_L), float(beta)
    if lr_L in RATE_LRS and beta in RATE_BETAS:
        err, rho = _rate_grid(kappa)
        j = RATE_LRS.index(lr_L) * len(RATE_BETAS) + RATE_BETAS.index(beta)
        e, r, ge, gr = err[:, j], float(rho[j]), err[:, -1], float(rho[-1])
    else:
        err, rho = _rate_errors(kappa, [lr_L, 1.0], [beta, 0.0])
        e, r, ge, gr = err[:, 0], float(rho[0]), err[:, 1], float(rho[1])
    half = e[RATE_STEPS // 2:]
    measured = (float(np.exp(np.log(half[-1] / half[0]) / (len(half) - 1)))
                if r < 1 and np.isfinite(half).all() and (half > 1e-250).all() else math.nan)
    hit = int(T.steps_to_tolerance(torch.from_numpy(e[:, None].copy()), RATE_TOL)[0]) if np.isfinite(e[0]) else -1
    return {"error": e, "theory": r, "gd_error": ge, "gd_theory": gr, "measured": measured, "steps": hit,
            "predicted": math.log(RATE_TOL) / math.log(r) if 0 < r < 1 else math.inf, "diverges": r >= 1}


_CANVAS: dict = {}


def _rate_canvas():
    """The explorer's figure, built once and updated in place by every frame (building a figure costs tens of
    milliseconds, most of a frame; moving its lines costs about one). The figure one call returns is changed by
    the next call."""
    if "rate" not in _CANVAS:
        fig, ax = plots.figure(size=(7.2, 3.7), layout="fixed")
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.9)
        gd, = ax.plot([], [], color="0.6", lw=1, label="gradient descent at 1/L")
        meas, = ax.plot([], [], color=plots.PALETTE[0], lw=1.6, label="measured")
        theo, = ax.plot([], [], color=plots.PALETTE[1], ls="--", lw=1.2, label="theory: ρ^t")
        box = ax.text(0.98, 0.97, "", transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.set(yscale="log", xlim=(0, RATE_STEPS), ylim=(_FLOOR, 1e3), xlabel="step t", ylabel="distance to the minimum")
        ax.legend(loc="lower left", fontsize=8)
        _log_ticks(ax, "y")
        _CANVAS["rate"] = (fig, ax, gd, meas, theo, box)
    return _CANVAS["rate"]


def _set_labels(ax, lines, labels) -> None:
    """New labels for ``lines``, in the artists and in the legend (its entries are in the same order)."""
    texts = ax.get_legend().get_texts()
    for ln, text, label in zip(lines, texts, labels):
        ln.set_label(label)
        text.set_text(label)


def render_rate(kappa: float, lr_L: float, beta: float) -> Figure:
    """Distance to the minimum per step on a quadratic: measured, predicted by the rate, and plain GD for reference."""
    s = rate_run(kappa, lr_L, beta)
    fig, ax, gd, meas, theo, box = _rate_canvas()
    k = np.arange(0, RATE_STEPS + 1, RATE_EVERY)
    e = s["error"]
    gd.set_data(k, np.clip(s["gd_error"][k], _FLOOR, None))
    meas.set_data(k, np.clip(np.where(np.isfinite(e[k]), e[k], _TOP), _FLOOR, _TOP))
    r = s["theory"]
    # rho^t is a straight line on the log axis: its ends and the point where it leaves the drawn range
    if r == 1 or e[0] == 0:
        tk = np.array([0.0, RATE_STEPS])
    else:
        edge = _FLOOR if r < 1 else _TOP
        t_edge = math.log(edge / e[0]) / math.log(r)
        tk = np.array([0.0, min(t_edge, RATE_STEPS), RATE_STEPS])
    with np.errstate(over="ignore"):
        theo.set_data(tk, np.clip(e[0] * r ** tk, _FLOOR, _TOP))
    _set_labels(ax, (gd, meas, theo), (f"GD at lr = 1/L, β = 0: rate {s['gd_theory']:.4f}",
                                       f"lr = {lr_L:.2g}/L, β = {beta:.2g}: measured",
                                       f"theory: ρ^t with ρ = {r:.4f}"))
    if s["diverges"]:
        title = f"theory rate {r:.3f} ≥ 1: diverges"
    elif math.isfinite(s["measured"]):
        title = f"measured rate {s['measured']:.4f}, theory {r:.4f}"
    else:
        title = f"converged to machine precision (theory rate {r:.4f})"
    hit, predicted = s["steps"], s["predicted"]
    box.set_text("steps to shrink the error 10⁶ times:\n"
                 f"measured {hit if hit > 0 else f'> {RATE_STEPS}'}, predicted by the rate "
                 + (f"{predicted:.0f}" if math.isfinite(predicted) else "never"))
    ax.set_title(f"κ = {kappa:g}: {title}", fontsize=10)
    return fig


def _rate_alt(kappa: float, lr_L: float, beta: float) -> str:
    s = rate_run(kappa, lr_L, beta)
    head = (f"Gradient descent with learning rate {lr_L:.2g}/L and momentum {beta:.2g} on a quadratic with condition "
            f"number {kappa:g}: ")
    if s["diverges"]:
        e = s["error"]
        out = np.flatnonzero(~(e <= 1e3))  # above the plot's top, or past the floating-point range
        grows = (f"passes 1000, the top of the plot, at step {int(out[0])}" if out.size
                 else f"ends at {float(e[-1]):.3g} after {RATE_STEPS} steps")
        body = f"the theoretical rate is {s['theory']:.3f}, at least 1, and the distance to the minimum {grows}"
    else:
        steps = (f"is a million times smaller after {s['steps']} steps" if s["steps"] > 0
                 else f"is not yet a million times smaller after {RATE_STEPS} steps")
        measured = (f"falls at a measured {s['measured']:.4f} per step against the theoretical {s['theory']:.4f}"
                    if math.isfinite(s["measured"]) else
                    f"reaches machine precision (theoretical rate {s['theory']:.4f})")
        body = (f"the distance to the minimum {measured} on a log scale, and {steps} "
                f"(the rate predicts {s['predicted']:.0f})")
    return (head + body + f"; plain gradient descent at 1/L, drawn for reference, falls at {s['gd_theory']:.4f} per step")


@registered
def rate_explorer() -> Explorer:
    """Measured convergence on a quadratic against the theoretical linear rate."""
    return Explorer(
        "train.convergence-rate",
        render_rate,
        controls={
            "kappa": Choice(list(KAPPAS), default=100.0, labels=[f"{k:g}" for k in KAPPAS], label="condition number κ"),
            "lr_L": Slider(0.05, 3.9, default=1.0, static=list(RATE_LRS), label="learning rate × L", fill=False),
            "beta": Slider(0.0, 0.99, default=0.0, static=list(RATE_BETAS), label="momentum β", fill=False),
        },
        title="Convergence rate on a quadratic: condition number, rate and momentum",
        alt=_rate_alt,
        max_frames=len(KAPPAS) * len(RATE_LRS) * len(RATE_BETAS),
    )
