"""Explorers of Chapter 4 (book/04_learning_rate_schedules.ipynb): learning-rate schedules.

1. :func:`designer_explorer`: pick a schedule and its knobs; see the rate and
   the expected loss it gives on the noisy quadratic model.
2. :func:`range_test_explorer`: the LR range test on digits MLPs; smoothing
   and the sweep's upper bound move the suggested rate.
"""

from __future__ import annotations

from functools import lru_cache

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


def designer_final_losses(peak_lr: float, warmup_frac: float = 0.1) -> dict[str, float]:
    """The final expected loss on the designer's noisy quadratic of every schedule in :data:`DESIGNS`
    and of the two constants it draws (keys ``"constant"`` at the peak, ``"constant / 10"``): the
    numbers the designer's frames show, for the chapter's claims about them."""
    rows = [design_lrs(d, peak_lr, warmup_frac) for d in DESIGNS]
    rows += [torch.full((STEPS,), float(peak_lr), dtype=torch.float64), torch.full((STEPS,), float(peak_lr) / 10, dtype=torch.float64)]
    final = schedules.noisy_quadratic_loss(torch.stack(rows), **NQM)[:, -1]
    return dict(zip([*DESIGNS, "constant", "constant / 10"], final.tolist()))


def render_designer(schedule: str, peak_lr: float, warmup_frac: float) -> Figure:
    """Left: the schedule's rate. Right: expected loss on the noisy quadratic, against two constant rates."""
    lrs = design_lrs(schedule, peak_lr, warmup_frac)
    const_hi = torch.full((STEPS,), peak_lr, dtype=torch.float64)
    const_lo = const_hi / 10
    loss = schedules.noisy_quadratic_loss(torch.stack([lrs, const_hi, const_lo]), **NQM)  # (3, T + 1)
    fig, (a, b) = plots.figure(1, 2, size=(8.4, 3.3), layout="fixed")
    a.plot(lrs, lw=2, label=schedule)
    a.axhline(peak_lr, color="0.6", ls="--", lw=1, label="constant (peak)")
    a.set(xlabel="step", ylabel="learning rate", ylim=(0, 1.05 * max(peak_lr, float(lrs.max()))), title="the schedule")
    a.legend(loc="upper right", fontsize=8)
    b.semilogy(loss[1], color="0.6", ls="--", lw=1, label=f"constant {peak_lr:.2g}")
    b.semilogy(loss[2], color="0.4", ls=":", lw=1, label=f"constant {peak_lr / 10:.2g}")
    b.semilogy(loss[0], lw=2, color=plots.PALETTE[1], label=schedule)
    b.set(xlabel="step", ylabel="expected loss", ylim=(5e-3, 5), title=f"final loss {float(loss[0, -1]):.3g} (constants: {float(loss[1, -1]):.3g}, {float(loss[2, -1]):.3g})")
    b.legend(loc="upper right", fontsize=8)
    return fig


@registered
def designer_explorer() -> Explorer:
    return Explorer(
        "schedule.designer",
        render_designer,
        controls={
            "schedule": Choice(DESIGNS, default="warmup + cosine", label="schedule"),  # every frame also draws the constants
            "peak_lr": Slider(0.1, 1.8, default=1.5, static=[0.5, 1.5], label="peak rate", fill=False),  # 6 x 2 static frames
            "warmup_frac": Slider(0.01, 0.5, default=0.1, static=[0.1], label="warmup fraction", fill=False),
        },
        title="Schedule designer: the rate and the loss it buys on a noisy quadratic",
        alt="Left: the {schedule} learning rate over 300 steps peaking at {peak_lr:.2g} with warmup fraction {warmup_frac:.2g}. "
            "Right: expected loss on a noisy quadratic on a log scale, for that schedule and for constant rates at the peak and a tenth of it",
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
