"""Explorers of Chapter 4 (book/04_learning_rate_schedules.ipynb): learning-rate schedules.

1. :func:`designer_explorer`: pick a schedule and its knobs; see the rate and
   the expected loss it gives on the noisy quadratic model.
2. :func:`range_test_explorer`: the LR range test on digits MLPs; smoothing
   and the sweep's upper bound move the suggested rate.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import plots, schedules
from . import Choice, Explorer, Slider, registered

STEPS = 300
DESIGNS = ["step", "cosine", "warmup + cosine", "one-cycle", "warmup-stable-decay", "inverse sqrt"]  # the constants are drawn in every frame
NQM = dict(noise=0.2, batch_size=1)  # the noisy quadratic of schedules.noisy_quadratic_loss


def design_lrs(schedule: str, peak_lr: float, warmup_frac: float, steps: int = STEPS) -> torch.Tensor:
    """The (steps,) rates of ``schedule`` peaking at ``peak_lr``, warming up for ``warmup_frac`` of the run where it warms up."""
    t = torch.arange(steps)
    w = max(1, int(round(warmup_frac * steps)))
    if schedule == "constant":
        return schedules.constant_lr(t, base_lr=peak_lr)
    if schedule == "step":
        return schedules.multistep_lr(t, base_lr=peak_lr, milestones=[steps // 2, 3 * steps // 4], gamma=0.1)
    if schedule == "cosine":
        return schedules.cosine_lr(t, base_lr=peak_lr, total=steps)
    if schedule == "warmup + cosine":
        return schedules.warmup_cosine_lr(t, base_lr=peak_lr, warmup=w, total=steps)
    if schedule == "one-cycle":
        return schedules.one_cycle_lr(t, max_lr=peak_lr, total=steps, pct_start=max(warmup_frac, 2.0 / steps + 1e-9))
    if schedule == "warmup-stable-decay":
        return schedules.wsd_lr(t, base_lr=peak_lr, warmup=w, total=steps, decay=steps // 5)
    if schedule == "inverse sqrt":
        return schedules.inverse_sqrt_lr(t, base_lr=peak_lr, warmup=w)
    raise ValueError(f"schedule: expected one of {DESIGNS}, got {schedule!r}")


#: The static book's peak rates and warm-up fractions (every combination, for every schedule).
DESIGN_PEAKS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 1.8)
DESIGN_WARMUPS = (0.02, 0.05, 0.1, 0.3)
WARMS_UP = ("warmup + cosine", "one-cycle", "warmup-stable-decay", "inverse sqrt")  # the others ignore the warm-up


def _designer_rows(peak_lr: float, warmup_frac: float) -> torch.Tensor:
    """(8, T): every schedule in :data:`DESIGNS`, then the constant peak and a tenth of it."""
    rows = [design_lrs(d, peak_lr, warmup_frac) for d in DESIGNS]
    rows += [torch.full((STEPS,), float(peak_lr), dtype=torch.float64), torch.full((STEPS,), float(peak_lr) / 10, dtype=torch.float64)]
    return torch.stack(rows).to(torch.float64)


@lru_cache(maxsize=1)
def _designer_grid() -> tuple[torch.Tensor, torch.Tensor]:
    """The static grid in one batched call of the noisy quadratic: rates (P, W, 8, T) and losses (P, W, 8, T + 1)."""
    lrs = torch.stack([torch.stack([_designer_rows(p, w) for w in DESIGN_WARMUPS]) for p in DESIGN_PEAKS])
    return lrs, schedules.noisy_quadratic_loss(lrs, **NQM)


@lru_cache(maxsize=64)
def _designer_losses(peak_lr: float, warmup_frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rates (8, T) and expected losses (8, T + 1) of every schedule in :data:`DESIGNS` and the two constants (the
    peak, a tenth of it) at one peak and warm-up (cached: do not modify). A setting of the static grid is read from
    the grid's batched call; any other is computed on its own."""
    if peak_lr in DESIGN_PEAKS and warmup_frac in DESIGN_WARMUPS:
        lrs, loss = _designer_grid()
        i, j = DESIGN_PEAKS.index(peak_lr), DESIGN_WARMUPS.index(warmup_frac)
        return lrs[i, j], loss[i, j]
    lrs = _designer_rows(peak_lr, warmup_frac)
    return lrs, schedules.noisy_quadratic_loss(lrs, **NQM)


def designer_final_losses(peak_lr: float, warmup_frac: float = 0.1) -> dict[str, float]:
    """The final expected loss on the designer's noisy quadratic of every schedule in :data:`DESIGNS`
    and of the two constants it draws (keys ``"constant"`` at the peak, ``"constant / 10"``): the
    numbers the designer's frames show, for the chapter's claims about them."""
    final = _designer_losses(float(peak_lr), float(warmup_frac))[1][:, -1]
    return dict(zip([*DESIGNS, "constant", "constant / 10"], final.tolist()))


_CANVAS: dict = {}
_LR_AT = np.unique(np.concatenate([np.arange(0, 20), np.arange(0, STEPS, 3), [STEPS - 1]]))  # 113 of 300 steps
_LOSS_AT = np.unique(np.concatenate([np.arange(0, 20), np.arange(0, STEPS + 1, 3)]))  # 114 of 301 points


def _set_labels(ax, lines, labels) -> None:
    """New labels for ``lines``, in the artists and in the legend (its entries are in the same order)."""
    for ln, text, label in zip(lines, ax.get_legend().get_texts(), labels):
        ln.set_label(label)
        text.set_text(label)


def _designer_canvas():
    """The designer's figure, built once and updated in place by every frame (a new two-panel figure costs tens
    of milliseconds, most of a frame). The figure one call returns is changed by the next call."""
    if "designer" not in _CANVAS:
        fig, (a, b) = plots.figure(1, 2, size=(8.4, 3.3), layout="fixed")
        rate, = a.plot([], [], lw=2, label="schedule")
        peak = a.axhline(1.0, color="0.6", ls="--", lw=1, label="constant (peak)")
        a.set(xlabel="step", ylabel="learning rate", xlim=(0, STEPS - 1), title="the schedule")
        a.legend(loc="upper right", fontsize=8)
        hi, = b.semilogy([], [], color="0.6", ls="--", lw=1, label="constant")
        lo, = b.semilogy([], [], color="0.4", ls=":", lw=1, label="constant / 10")
        sched, = b.semilogy([], [], lw=2, color=plots.PALETTE[1], label="schedule")
        b.set(xlabel="step", ylabel="expected loss", xlim=(0, STEPS), ylim=(5e-3, 5))
        b.legend(loc="upper right", fontsize=8)
        _CANVAS["designer"] = (fig, a, b, rate, peak, hi, lo, sched)
    return _CANVAS["designer"]


def render_designer(schedule: str, peak_lr: float, warmup_frac: float) -> Figure:
    """Left: the schedule's rate. Right: expected loss on the noisy quadratic, against two constant rates."""
    if schedule not in DESIGNS:
        raise ValueError(f"schedule: expected one of {DESIGNS}, got {schedule!r}")
    lrs, loss = _designer_losses(float(peak_lr), float(warmup_frac))
    i = DESIGNS.index(schedule)
    fig, a, b, rate, peak, hi, lo, sched = _designer_canvas()
    rate.set_data(_LR_AT, lrs[i, _LR_AT].numpy())
    peak.set_ydata([peak_lr, peak_lr])
    a.set_ylim(0, 1.05 * max(peak_lr, float(lrs[i].max())))
    for line, row in ((hi, -2), (lo, -1), (sched, i)):
        line.set_data(_LOSS_AT, loss[row, _LOSS_AT].numpy())
    _set_labels(a, (rate, peak), (schedule, "constant (peak)"))
    _set_labels(b, (hi, lo, sched), (f"constant {peak_lr:.2g}", f"constant {peak_lr / 10:.2g}", schedule))
    b.set_title(f"final loss {float(loss[i, -1]):.3g} (constants: {float(loss[-2, -1]):.3g}, {float(loss[-1, -1]):.3g})")
    return fig


def _designer_alt(schedule: str, peak_lr: float, warmup_frac: float) -> str:
    lrs, loss = _designer_losses(float(peak_lr), float(warmup_frac))
    i = DESIGNS.index(schedule)
    end, hi, lo = float(loss[i, -1]), float(loss[-2, -1]), float(loss[-1, -1])
    where = ("below both constants" if end < min(hi, lo) else "above both constants" if end > max(hi, lo)
             else "between the two constants")
    warm = f" with {warmup_frac:.0%} warm-up" if schedule in WARMS_UP else ""
    return (f"Left: the {schedule} learning rate over {STEPS} steps, peaking at {peak_lr:g}{warm}, ending at "
            f"{float(lrs[i, -1]):.3g}. Right: on a noisy quadratic its expected loss ends at {end:.3g}, {where}: "
            f"the constant peak rate ends at {hi:.3g} and a tenth of it at {lo:.3g} (log scale)")


@registered
def designer_explorer() -> Explorer:
    return Explorer(
        "schedule.designer",
        render_designer,
        controls={
            "schedule": Choice(DESIGNS, default="warmup + cosine", label="schedule"),  # every frame also draws the constants
            "peak_lr": Slider(0.1, 1.8, default=1.5, static=list(DESIGN_PEAKS), label="peak rate", fill=False),
            "warmup_frac": Choice(list(DESIGN_WARMUPS), default=0.1, labels=[f"{w:.0%}" for w in DESIGN_WARMUPS],
                                  label="warm-up (share of the run)"),
        },
        title="Schedule designer: the rate and the loss it buys on a noisy quadratic",
        alt=_designer_alt,
        max_frames=len(DESIGNS) * len(DESIGN_PEAKS) * len(DESIGN_WARMUPS),
    )


@lru_cache(maxsize=16)
def _range_run(min_lr: float, max_lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (lrs, losses) of a digits range test (NaN after it stopped at divergence)."""
    run = schedules.digits_range_test(min_lr=min_lr, max_lr=max_lr, num_steps=100, batch_size=16)
    return schedules.range_test_lrs(100, min_lr=min_lr, max_lr=max_lr), torch.cat(
        [run.losses, torch.full((100 - len(run.losses),), float("nan"), dtype=torch.float64)])


def range_test_reading(smoothing: float, max_lr: float, min_lr: float = 1e-4) -> schedules.RangeTest:
    """The range test that the explorer's frame for these settings shows (its readings are the dashed lines)."""
    lrs, losses = _range_run(float(min_lr), float(max_lr))
    return schedules.suggest_lr(lrs, losses, smoothing=smoothing)


def render_range_test(smoothing: float, max_lr: float, min_lr: float) -> Figure:
    """Loss against rate (log axis), raw and smoothed, with the suggested rate marked."""
    run = range_test_reading(smoothing, max_lr, min_lr)
    fig, ax = plots.figure(size=(6.4, 3.4), layout="fixed")
    ax.semilogx(run.lrs, run.losses, color="0.7", lw=1, label="minibatch loss")
    ax.semilogx(run.lrs, run.smoothed, lw=2, label=f"smoothed ($\\beta$ = {smoothing:.2g})")
    ax.axvline(run.suggested_lr, color=plots.PALETTE[1], ls="--", label=f"steepest: {run.suggested_lr:.2g}")
    ax.axvline(run.min_loss_lr / 10, color=plots.PALETTE[2], ls=":", label=f"minimum / 10: {run.min_loss_lr / 10:.2g}")
    ax.set(xlabel="learning rate (log scale)", ylabel="training loss", xlim=(min_lr, max_lr), ylim=(0, 3.5),
           title=f"sweep {min_lr:.0e} to {max_lr:.2g} in 100 steps" + (": stopped at divergence" if run.stopped_early else ""))
    ax.legend(loc="lower left", fontsize=8)
    return fig


@registered
def range_test_explorer() -> Explorer:
    for hi in (1.0, 10.0):  # the static grid's runs, once
        _range_run(1e-4, hi)
    return Explorer(
        "schedule.range-test",
        render_range_test,
        controls={
            "smoothing": Slider(0.0, 0.99, default=0.98, static=[0.0, 0.98], label="smoothing", fill=False),
            "max_lr": Slider(0.5, 100.0, default=10.0, log=True, static=[1.0, 10.0], label="upper bound", fill=False),
            "min_lr": Slider(1e-6, 1e-2, default=1e-4, log=True, static=[1e-4], label="lower bound", fill=False),
        },
        title="LR range test on digits MLPs: what moves the suggested rate",
        alt="Training loss against a geometrically growing learning rate from {min_lr:.0e} to {max_lr:.2g}, raw and smoothed with "
            "beta {smoothing:.2g}, with vertical lines at the steepest-descent rate and at a tenth of the minimum-loss rate",
    )
