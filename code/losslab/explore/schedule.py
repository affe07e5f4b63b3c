"""Explorers of Chapter 4 (book/04_learning_rate_schedules.ipynb): learning-rate schedules.

1. :func:`designer_explorer`: pick a schedule and its knobs; see the rate and
   the expected loss it gives on the noisy quadratic model.
2. :func:`range_test_explorer`: the LR range test on digits MLPs; smoothing
   and the sweep's upper bound move the suggested rate.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import backend, plots, schedules
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


#: The static book's smoothings, upper bounds and lower bounds (every combination).
RANGE_SMOOTHINGS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
RANGE_MAXES = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
RANGE_MINS = (1e-5, 1e-4, 1e-3)
RANGE_STEPS = 100
_RANGE_KW = dict(batch_size=16, seeds=(0, 1, 2))  # three MLPs per test, their losses averaged


def _stop_at_divergence(losses: torch.Tensor, smoothing: float = 0.98, stop_factor: float = 4.0) -> torch.Tensor:
    """``losses`` (N,) with NaN after the step where :func:`losslab.schedules.lr_range_test` stops (the first
    non-finite loss, or the first smoothed loss above ``stop_factor`` times its best)."""
    out = losses.clone()
    m, best = 0.0, math.inf
    for i, loss in enumerate(losses.tolist()):
        stop = not math.isfinite(loss)
        if not stop:
            m = smoothing * m + (1 - smoothing) * loss
            sm = m / (1 - smoothing ** (i + 1))
            best = min(best, sm)
            stop = sm > stop_factor * best
        if stop:
            out[i + 1:] = math.nan
            break
    return out


@lru_cache(maxsize=1)
def _range_grid() -> dict[tuple[float, float], torch.Tensor]:
    """Raw losses (NaN after the stop) of every (min_lr, max_lr) of the static grid: one batched run of
    :class:`losslab.schedules.BatchedMLP`, copy k of each seed sweeping setting k's rates (same weights and
    minibatches as a test run alone)."""
    pairs = [(lo, hi) for lo in RANGE_MINS for hi in RANGE_MAXES]
    table = torch.stack([schedules.range_test_lrs(RANGE_STEPS, min_lr=lo, max_lr=hi) for lo, hi in pairs])  # (K, T)
    seeds = _RANGE_KW["seeds"]
    net = schedules.BatchedMLP(seeds, n_copies=len(pairs), batch_size=_RANGE_KW["batch_size"])
    rows = []
    with backend.single_thread(net.params[0].device):
        for t in range(RANGE_STEPS):
            loss = net.step(table[:, t].repeat_interleave(len(seeds)).to(torch.float32))  # model k * S + s: setting k
            rows.append(loss.detach().double().view(len(pairs), len(seeds)).mean(1).cpu())
    losses = torch.stack(rows, 1)  # (K, T)
    return {pair: _stop_at_divergence(losses[k]) for k, pair in enumerate(pairs)}


@lru_cache(maxsize=16)
def _range_run(min_lr: float, max_lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (lrs, losses) of a digits range test (NaN after it stopped at divergence): read from the static grid's
    batched run, or run on its own for any other bounds."""
    lrs = schedules.range_test_lrs(RANGE_STEPS, min_lr=min_lr, max_lr=max_lr)
    if min_lr in RANGE_MINS and max_lr in RANGE_MAXES:
        return lrs, _range_grid()[(min_lr, max_lr)]
    run = schedules.digits_range_test(min_lr=min_lr, max_lr=max_lr, num_steps=RANGE_STEPS, **_RANGE_KW)
    return lrs, torch.cat([run.losses, torch.full((RANGE_STEPS - len(run.losses),), float("nan"), dtype=torch.float64)])


def range_test_reading(smoothing: float, max_lr: float, min_lr: float = 1e-4) -> schedules.RangeTest:
    """The range test that the explorer's frame for these settings shows (its readings are the dashed lines;
    cached: do not modify its tensors)."""
    return _range_reading(float(smoothing), float(max_lr), float(min_lr))


@lru_cache(maxsize=512)
def _range_reading(smoothing: float, max_lr: float, min_lr: float) -> schedules.RangeTest:
    lrs, losses = _range_run(min_lr, max_lr)
    with backend.single_thread("cpu"):  # 100 numbers: threads cost more than they save
        return schedules.suggest_lr(lrs, losses, smoothing=smoothing)


def _range_canvas():
    """The range test's figure, built once and updated in place by every frame (a new figure costs tens of
    milliseconds, most of a frame). The figure one call returns is changed by the next call."""
    if "range" not in _CANVAS:
        fig, ax = plots.figure(size=(6.4, 3.4), layout="fixed")
        raw, = ax.semilogx([1e-4, 1.0], [1.0, 1.0], color="0.7", lw=1, label="minibatch loss")
        smooth, = ax.semilogx([1e-4, 1.0], [1.0, 1.0], lw=2, label="smoothed")
        steep = ax.axvline(1e-2, color=plots.PALETTE[1], ls="--", label="steepest")
        tenth = ax.axvline(1e-3, color=plots.PALETTE[2], ls=":", label="minimum / 10")
        ax.set(xlabel="learning rate (log scale)", ylabel="training loss", ylim=(0, 3.5))
        ax.legend(loc="lower left", fontsize=8)
        _CANVAS["range"] = (fig, ax, raw, smooth, steep, tenth)
    return _CANVAS["range"]


def render_range_test(smoothing: float, max_lr: float, min_lr: float) -> Figure:
    """Loss against rate (log axis), raw and smoothed, with the suggested rate marked."""
    run = range_test_reading(smoothing, max_lr, min_lr)
    fig, ax, raw, smooth, steep, tenth = _range_canvas()
    raw.set_data(run.lrs.numpy(), run.losses.numpy())
    smooth.set_data(run.lrs.numpy(), run.smoothed.numpy())
    steep.set_xdata([run.suggested_lr] * 2)
    tenth.set_xdata([run.min_loss_lr / 10] * 2)
    _set_labels(ax, (raw, smooth, steep, tenth), ("minibatch loss", f"smoothed ($\\beta$ = {smoothing:.2g})",
                                                  f"steepest: {run.suggested_lr:.2g}", f"minimum / 10: {run.min_loss_lr / 10:.2g}"))
    ax.set_xlim(min_lr, max_lr)
    ax.set_title(f"sweep {min_lr:.0e} to {max_lr:.2g} in {RANGE_STEPS} steps" + (": stopped at divergence" if run.stopped_early else ""))
    return fig


def _range_alt(smoothing: float, max_lr: float, min_lr: float) -> str:
    run = range_test_reading(smoothing, max_lr, min_lr)
    k = int(torch.argmin(run.smoothed))
    end = (f"it stopped at divergence at rate {float(run.lrs[-1]):.2g}, after {len(run.lrs)} steps" if run.stopped_early
           else f"it ran all {RANGE_STEPS} steps without diverging")
    return (f"Minibatch loss of three digits networks (averaged) while the learning rate grows geometrically from "
            f"{min_lr:.0e} to {max_lr:g}: {end}. Smoothed with beta {smoothing:g}, the loss is lowest, "
            f"{float(run.smoothed[k]):.2f}, at rate {run.min_loss_lr:.2g}, so a tenth of it is {run.min_loss_lr / 10:.2g} "
            f"(dotted line), and falls fastest at rate {run.suggested_lr:.2g} (dashed line)")


@registered
def range_test_explorer() -> Explorer:
    _range_grid()  # the static grid's runs, once
    return Explorer(
        "schedule.range-test",
        render_range_test,
        controls={
            "smoothing": Slider(0.0, 0.99, default=0.98, static=list(RANGE_SMOOTHINGS), label="smoothing", fill=False),
            "max_lr": Slider(0.5, 100.0, default=10.0, log=True, static=list(RANGE_MAXES), label="upper bound", fill=False),
            "min_lr": Choice(list(RANGE_MINS), default=1e-4, labels=[f"{v:.0e}" for v in RANGE_MINS], label="lower bound"),
        },
        title="LR range test on digits MLPs: what moves the suggested rate",
        alt=_range_alt,
        max_frames=len(RANGE_SMOOTHINGS) * len(RANGE_MAXES) * len(RANGE_MINS),
    )
