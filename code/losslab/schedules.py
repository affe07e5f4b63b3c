"""Learning-rate schedules as pure functions of the step, plus the LR range test.

See Chapter 4 ("Learning-rate schedules").

Every schedule here is written the way nanoGPT writes its ``get_lr``: a plain
function of the step with keyword-only hyperparameters and numbered comments,

    lr = warmup_cosine_lr(step, base_lr=3e-4, warmup=100, total=5000)

where ``step`` is an int, a sequence of ints or an integer tensor of any
shape, and the result is a float64 tensor of the same shape holding the
learning rate used for the optimizer step with that index (step 0 is the
first update). Because nothing is stored, a whole schedule is one call,
``lr = f(torch.arange(total), ...)``, and plotting, testing and training with
it use the same numbers.

Conventions, shared with ``torch.optim.lr_scheduler``: ``step`` here is
PyTorch's ``last_epoch`` after ``step`` calls of ``scheduler.step()``, i.e.
``f(t) == scheduler.get_last_lr()[0]`` after ``t`` calls. The tests check
this value for value (float64, relative error below 1e-12) for every
schedule PyTorch also has. Where a PyTorch scheduler does something
surprising past the end of its horizon, ours holds the final value instead;
each such difference is stated in the function's Notes.

Contents
--------
constant_lr, step_lr, multistep_lr, exponential_lr, polynomial_lr, linear_lr,
cosine_lr, linear_warmup_lr, warmup_cosine_lr, one_cycle_lr, cyclic_lr,
inverse_sqrt_lr, wsd_lr, cosine_restarts_lr, constant_factor_lr, multiplicative_lr
    schedules (pure functions of the step);
chained_lr, cyclic_momentum
    several schedules' factors multiplied (``ChainedScheduler``), and the
    momentum ``CyclicLR`` cycles against the rate;
ReduceOnPlateau, plateau_lrs
    the one schedule that depends on the losses (a small stateful class);
range_test_lrs, smooth_losses, suggest_lr, lr_range_test, RangeTest
    Smith's learning-rate range test;
BatchedMLP, train_digits, DigitsRun
    a small experiment: many one-hidden-layer MLPs on scikit-learn's digits,
    trained in lockstep (seeds x schedules in one batch);
noisy_quadratic_loss, noisy_quadratic_plateau
    the noisy quadratic model, exactly (a batch size per step too);
schedule_free_sgd_step
    schedule-free SGD (Defazio et al. 2024): a constant rate and an average
    instead of a schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks, backend, data

__all__ = [
    "constant_lr",
    "step_lr",
    "multistep_lr",
    "exponential_lr",
    "polynomial_lr",
    "linear_lr",
    "cosine_lr",
    "linear_warmup_lr",
    "warmup_cosine_lr",
    "one_cycle_lr",
    "cyclic_lr",
    "inverse_sqrt_lr",
    "wsd_lr",
    "cosine_restarts_lr",
    "constant_factor_lr",
    "multiplicative_lr",
    "chained_lr",
    "cyclic_momentum",
    "SCHEDULES",
    "ReduceOnPlateau",
    "plateau_lrs",
    "RangeTest",
    "range_test_lrs",
    "smooth_losses",
    "suggest_lr",
    "lr_range_test",
    "BatchedMLP",
    "DigitsRun",
    "digits_range_test",
    "noisy_quadratic_loss",
    "train_digits",
    "schedule_free_sgd_step",
]


# --- argument checks ------------------------------------------------------------

def _steps(step: Any) -> torch.Tensor:
    """``step`` as an int64 tensor (any shape, values >= 0); raises on anything else."""
    if isinstance(step, bool):
        raise TypeError("step: expected an int or an integer array, got bool")
    if isinstance(step, torch.Tensor):
        t = step
    elif isinstance(step, (int, np.integer)):
        t = torch.tensor(int(step))
    else:
        arr = np.asarray(step)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise TypeError(f"step: expected an int or an integer array, got {type(step).__name__} of dtype {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.int64))
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"step: expected integer steps, got a tensor of dtype {t.dtype}")
    t = t.to(torch.int64)
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"step: expected steps >= 0, got a minimum of {int(t.min())}")
    return t


def _number(name: str, value: Any) -> float:
    return _checks.number(name, value)


def _rate(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A learning rate: PyTorch's "Invalid learning rate" message, naming the argument."""
    return _checks.number(f"Invalid learning rate: {name}", value, low=0.0, low_open=not allow_zero)


def _count(name: str, value: Any, low: int = 1) -> int:
    return _checks.count(name, value, low)


def _in_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    return _checks.number(name, value, low=low, high=high, low_open=low_open, high_open=high_open)


def _start_factor(start_factor: float | None, warmup: int) -> float:
    if start_factor is None:
        return 1.0 / (warmup + 1)
    return _in_range("start_factor", start_factor, 0.0, 1.0)


def _finite_rates(lr: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(lr).all()):
        raise ValueError(f"{name}: the rate grows past the float64 range (inf) by step {int((~torch.isfinite(lr)).nonzero()[0][0]) if lr.dim() else 0}; "
                         "use a smaller gamma or fewer steps")
    return lr


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64)


# --- schedules ------------------------------------------------------------------

def constant_lr(step: Any, *, base_lr: float) -> torch.Tensor:
    """The same rate at every step: $\\eta_t = \\eta_0$.

    Parameters
    ----------
    step : int or integer array, any shape
        Optimizer step indices (0 = first update), each >= 0.
    base_lr : float
        $\\eta_0 > 0$.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.

    Example
    -------
    >>> constant_lr([0, 5], base_lr=0.1).tolist()
    [0.1, 0.1]
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    return torch.full(t.shape, base_lr, dtype=torch.float64, device=t.device)


def step_lr(step: Any, *, base_lr: float, step_size: int, gamma: float = 0.1) -> torch.Tensor:
    """Multiply the rate by ``gamma`` every ``step_size`` steps (``torch.optim.lr_scheduler.StepLR``).

    $$\\eta_t = \\eta_0\\, \\gamma^{\\lfloor t / s \\rfloor}$$

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
        $\\eta_0 > 0$.
    step_size : int
        $s \\ge 1$, steps between decays.
    gamma : float
        Factor > 0: below 1 a decay, above 1 a growth (as in an LR range test).

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.

    Raises
    ------
    ValueError
        Negative steps or rates, ``step_size < 1``, ``gamma <= 0``, or a
        ``gamma > 1`` that grows the rate past the float64 range.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    step_size = _count("step_size", step_size)
    gamma = _in_range("gamma", gamma, 0.0, math.inf, low_open=True)
    # 1) how many decays have happened by step t
    k = _f64(torch.div(t, step_size, rounding_mode="floor"))
    # 2) each one multiplies the rate by gamma
    return _finite_rates(base_lr * gamma**k, "gamma")


def multistep_lr(step: Any, *, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> torch.Tensor:
    """Multiply the rate by ``gamma`` at each milestone (``MultiStepLR``).

    $$\\eta_t = \\eta_0\\, \\gamma^{\\#\\{m \\in M:\\ m \\le t\\}}$$

    A milestone listed twice decays twice, as in PyTorch.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    milestones : sequence of int
        Steps (>= 1) at which the rate drops; any order.
    gamma : float
        Factor in (0, 1].

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    gamma = _in_range("gamma", gamma, 0.0, 1.0, low_open=True)
    if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
        raise TypeError(f"milestones: expected a sequence of ints, got {type(milestones).__name__}")
    ms = sorted(_count("milestones", m) for m in milestones)
    # 1) count the milestones already passed (bisect_right, vectorized)
    edges = torch.tensor(ms, dtype=torch.int64, device=t.device)
    k = _f64(torch.searchsorted(edges, t, right=True)) if ms else torch.zeros(t.shape, dtype=torch.float64, device=t.device)
    # 2) decay once per milestone passed
    return base_lr * gamma**k


def exponential_lr(step: Any, *, base_lr: float, gamma: float) -> torch.Tensor:
    """Decay by ``gamma`` every step (``ExponentialLR``): $\\eta_t = \\eta_0 \\gamma^t$.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    gamma : float
        Factor > 0; below 1 the half-life is $\\ln 2 / (-\\ln\\gamma)$ steps, above 1 the
        rate grows (the exponential sweep of an LR range test).

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    gamma = _in_range("gamma", gamma, 0.0, math.inf, low_open=True)
    return _finite_rates(base_lr * gamma ** _f64(t), "gamma")


def polynomial_lr(step: Any, *, base_lr: float, total: int, power: float = 1.0) -> torch.Tensor:
    """Polynomial decay to zero over ``total`` steps (``PolynomialLR``).

    $$\\eta_t = \\eta_0 \\left(1 - \\frac{\\min(t, T)}{T}\\right)^p$$

    ``power=1`` is linear decay; ``power=0.5`` stays high longer, ``power=2``
    drops fast. The rate is 0 from step ``total`` on.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    total : int
        $T \\ge 1$.
    power : float
        $p > 0$.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    total = _count("total", total)
    power = _in_range("power", power, 0.0, math.inf, low_open=True)
    # 1) fraction of the horizon already used, capped at 1
    frac = _f64(t.clamp(max=total)) / total
    # 2) polynomial in the fraction left
    return base_lr * (1.0 - frac) ** power


def linear_lr(step: Any, *, base_lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total: int = 5) -> torch.Tensor:
    """Scale the rate linearly from ``start_factor`` to ``end_factor`` over ``total`` steps (``LinearLR``).

    $$\\eta_t = \\eta_0 \\left(f_0 + (f_1 - f_0)\\frac{\\min(t, T)}{T}\\right)$$

    With ``end_factor=1`` this is linear warmup; with ``start_factor=1`` and
    ``end_factor=0`` it is linear decay.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    start_factor, end_factor : float
        $f_0 \\in (0, 1]$ and $f_1 \\in [0, 1]$, as PyTorch requires.
    total : int
        $T \\ge 1$.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    start_factor = _in_range("start_factor", start_factor, 0.0, 1.0, low_open=True)
    end_factor = _in_range("end_factor", end_factor, 0.0, 1.0)
    total = _count("total", total)
    # 1) interpolate the factor as a weighted mean of its ends (exactly end_factor at `total`, never below 0),
    #    then hold it after `total` steps
    frac = _f64(t.clamp(max=total)) / total
    factor = start_factor * (1 - frac) + end_factor * frac
    return base_lr * factor


def cosine_lr(step: Any, *, base_lr: float, total: int, min_lr: float = 0.0) -> torch.Tensor:
    """Half a cosine from ``base_lr`` down to ``min_lr`` over ``total`` steps (``CosineAnnealingLR``).

    $$\\eta_t = \\eta_{\\min} + \\tfrac12(\\eta_0 - \\eta_{\\min})\\left(1 + \\cos\\frac{\\pi t}{T}\\right), \\quad 0 \\le t \\le T$$

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    total : int
        $T \\ge 1$ (PyTorch's ``T_max``).
    min_lr : float
        $\\eta_{\\min}$, with $0 \\le \\eta_{\\min} \\le \\eta_0$ (PyTorch's ``eta_min``).

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.

    Notes
    -----
    Convention: after ``total`` the rate stays at ``min_lr``. PyTorch's
    ``CosineAnnealingLR`` keeps following the cosine, so its rate climbs back
    to ``base_lr`` at ``2 * T_max``: a surprise if you train past ``T_max``.
    Loshchilov & Hutter (2017) introduced the schedule.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    total = _count("total", total)
    min_lr = _rate("min_lr", min_lr, allow_zero=True)
    if min_lr > base_lr:
        raise ValueError(f"min_lr: expected <= base_lr={base_lr}, got {min_lr}")
    # 1) after the horizon, stay at the minimum
    tc = _f64(t.clamp(max=total))
    # 2) in between, cosine from base_lr down to min_lr
    return min_lr + (base_lr - min_lr) * (1 + torch.cos(math.pi * tc / total)) / 2


def linear_warmup_lr(step: Any, *, base_lr: float, warmup: int, start_factor: float | None = None) -> torch.Tensor:
    """Linear warmup to ``base_lr`` over ``warmup`` steps, then constant.

    $$\\eta_t = \\eta_0\\left(f_0 + (1 - f_0)\\frac{\\min(t, W)}{W}\\right)$$

    The default $f_0 = 1/(W+1)$ gives nanoGPT's $\\eta_0 (t+1)/(W+1)$: no step
    is wasted at rate 0, and step $W$ is the first at the full rate.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    warmup : int
        $W \\ge 0$ (0: no warmup).
    start_factor : float, optional
        $f_0 \\in [0, 1]$; default $1/(W+1)$.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``. Equal to ``LinearLR(start_factor=f0,
        end_factor=1, total_iters=W)``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    warmup = _count("warmup", warmup, 0)
    f0 = _start_factor(start_factor, warmup)
    if warmup == 0:
        return torch.full(t.shape, base_lr, dtype=torch.float64, device=t.device)
    # 1) linear ramp of the factor from f0 to 1, then hold
    return base_lr * (f0 + (1.0 - f0) * _f64(t.clamp(max=warmup)) / warmup)


def warmup_cosine_lr(
    step: Any, *, base_lr: float, warmup: int, total: int, min_lr: float = 0.0, start_factor: float | None = None
) -> torch.Tensor:
    """Linear warmup for ``warmup`` steps, then cosine decay to ``min_lr`` at step ``total``.

    The schedule of nanoGPT and most language-model training:

    $$\\eta_t = \\begin{cases} \\eta_0\\left(f_0 + (1-f_0)\\,t/W\\right) & t < W \\\\
    \\eta_{\\min} + \\tfrac12(\\eta_0 - \\eta_{\\min})\\left(1 + \\cos\\frac{\\pi (t - W)}{T - W}\\right) & W \\le t \\le T \\\\
    \\eta_{\\min} & t > T \\end{cases}$$

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
        Peak rate $\\eta_0$, reached at step $W$.
    warmup : int
        $0 \\le W < T$.
    total : int
        $T$, the step at which the rate reaches ``min_lr``.
    min_lr : float
        $0 \\le \\eta_{\\min} \\le \\eta_0$.
    start_factor : float, optional
        $f_0$; default $1/(W+1)$ as in :func:`linear_warmup_lr`.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``. Equal to PyTorch's
        ``SequentialLR([LinearLR(start_factor=f0, total_iters=W),
        CosineAnnealingLR(T_max=T - W, eta_min=min_lr)], milestones=[W])``
        for ``t <= T``.

    Raises
    ------
    ValueError
        If ``warmup >= total``, a rate is negative, or ``min_lr > base_lr``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    warmup = _count("warmup", warmup, 0)
    total = _count("total", total)
    if warmup >= total:
        raise ValueError(f"warmup: expected 0 <= warmup < total={total}, got {warmup}")
    min_lr = _rate("min_lr", min_lr, allow_zero=True)
    if min_lr > base_lr:
        raise ValueError(f"min_lr: expected <= base_lr={base_lr}, got {min_lr}")
    f0 = _start_factor(start_factor, warmup)
    # 1) linear warmup for the first `warmup` steps
    ramp = base_lr * (f0 + (1.0 - f0) * _f64(t) / max(warmup, 1))
    # 2) after `total` steps, hold min_lr
    # 3) in between, cosine decay from base_lr down to min_lr
    decay_ratio = _f64(t.clamp(min=warmup, max=total) - warmup) / (total - warmup)
    cosine = min_lr + (base_lr - min_lr) * (1 + torch.cos(math.pi * decay_ratio)) / 2
    return torch.where(t < warmup, ramp, cosine)


def one_cycle_lr(
    step: Any,
    *,
    max_lr: float,
    total: int,
    pct_start: float = 0.3,
    anneal: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> torch.Tensor:
    """Smith's one-cycle policy (``OneCycleLR``): up to ``max_lr``, then far below the start.

    Rates: $\\eta_{\\text{init}} = \\eta_{\\max}/d$, $\\eta_{\\text{final}} = \\eta_{\\text{init}}/d_f$.
    Two phases (the default, fastai's): anneal from $\\eta_{\\text{init}}$ up to
    $\\eta_{\\max}$ over steps $[0, pT - 1]$, then from $\\eta_{\\max}$ down to
    $\\eta_{\\text{final}}$ over $[pT - 1, T - 1]$. Three phases (Smith's paper):
    up, back down to $\\eta_{\\text{init}}$ over the mirror-image interval
    $[pT - 1, 2pT - 2]$, then down to $\\eta_{\\text{final}}$. Each phase anneals
    with $\\text{cos}$: $e + \\tfrac12(s - e)(1 + \\cos \\pi x)$, or linearly:
    $s + (e - s)x$, where $x$ runs from 0 to 1 over the phase.

    Parameters
    ----------
    step : int or integer array, any shape
    max_lr : float
        Peak rate.
    total : int
        $T$, number of steps in the cycle (PyTorch's ``total_steps``).
    pct_start : float
        $p$, fraction of the cycle spent increasing; needs $pT > 1$ and $p < 1$
        (and $pT < (T+1)/2$ with three phases).
    anneal : {"cos", "linear"}
        PyTorch's ``anneal_strategy``.
    div_factor, final_div_factor : float
        $d, d_f \\ge 1$.
    three_phase : bool

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.

    Notes
    -----
    Convention: steps ``>= total`` get ``max_lr / div_factor /
    final_div_factor``, the end of the cycle. PyTorch raises after ``total``
    steps and at step ``total`` itself extrapolates the last phase past its
    end (with linear annealing that can give a negative rate).
    """
    t = _steps(step)
    max_lr = _rate("max_lr", max_lr)
    total = _count("total", total, 2)
    pct_start = _in_range("pct_start", pct_start, 0.0, 1.0, low_open=True, high_open=True)
    if anneal not in ("cos", "linear"):
        raise ValueError(f"anneal: expected 'cos' or 'linear', got {anneal!r}")
    div_factor = _in_range("div_factor", div_factor, 1.0, math.inf)
    final_div_factor = _in_range("final_div_factor", final_div_factor, 1.0, math.inf)
    if not isinstance(three_phase, (bool, np.bool_)):
        raise TypeError(f"three_phase: expected True or False, got {three_phase!r}")
    if pct_start * total <= 1:
        raise ValueError(f"pct_start: the warm-up phase needs pct_start * total > 1, got {pct_start} * {total} = {pct_start * total:g}")
    if three_phase and 2 * pct_start * total - 2 >= total - 1:
        raise ValueError(f"pct_start: with three phases, 2 * pct_start * total - 2 < total - 1 is needed, got pct_start={pct_start}")
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    # 1) the phases: (last step, start rate, end rate), as PyTorch builds them
    up_end = float(pct_start * total) - 1
    if three_phase:
        phases = [(up_end, initial_lr, max_lr), (float(2 * pct_start * total) - 2, max_lr, initial_lr), (total - 1, initial_lr, min_lr)]
    else:
        phases = [(up_end, initial_lr, max_lr), (total - 1, max_lr, min_lr)]
    tf = _f64(t.clamp(max=total - 1))
    lr = torch.empty(t.shape, dtype=torch.float64, device=t.device)
    done = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    start_step = 0.0
    for i, (end_step, start, end) in enumerate(phases):
        # 2) the steps of this phase: up to its last step (the final phase takes the rest)
        mask = ~done & ((tf <= end_step) if i < len(phases) - 1 else torch.ones_like(done))
        pct = (tf - start_step) / (end_step - start_step)
        # 3) anneal from the phase's start rate to its end rate
        if anneal == "cos":
            value = end + (start - end) / 2.0 * (torch.cos(math.pi * pct) + 1)
        else:
            value = (end - start) * pct + start
        lr = torch.where(mask, value, lr)
        done |= mask
        start_step = end_step
    # 4) after the cycle, hold the final rate
    return torch.where(t >= total, torch.full_like(lr, min_lr), lr)


def cyclic_lr(
    step: Any,
    *,
    base_lr: float,
    max_lr: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> torch.Tensor:
    """Smith's cyclical learning rates (``CyclicLR``): triangles between ``base_lr`` and ``max_lr``.

    With cycle length $C = s_{\\uparrow} + s_{\\downarrow}$, cycle number
    $c = \\lfloor 1 + t/C \\rfloor$ and position $x = 1 + t/C - c \\in [0, 1)$,
    the height is $h = x / r$ for $x \\le r = s_{\\uparrow}/C$ and
    $(x - 1)/(r - 1)$ after, and

    $$\\eta_t = \\eta_{\\text{base}} + (\\eta_{\\max} - \\eta_{\\text{base}})\\, h\\, \\sigma$$

    with amplitude scale $\\sigma = 1$ (``"triangular"``), $2^{-(c-1)}$
    (``"triangular2"``, halved each cycle) or $\\gamma^t$ (``"exp_range"``).

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr, max_lr : float
        Lower and upper bound, ``0 < base_lr <= max_lr``.
    step_size_up : int
        Steps from the bottom to the top, >= 1.
    step_size_down : int, optional
        Steps back down; default ``step_size_up``.
    mode : {"triangular", "triangular2", "exp_range"}
    gamma : float
        In (0, 1], used by ``"exp_range"`` only.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    max_lr = _rate("max_lr", max_lr)
    if max_lr < base_lr:
        raise ValueError(f"max_lr: expected >= base_lr={base_lr}, got {max_lr}")
    up = float(_count("step_size_up", step_size_up))
    down = float(_count("step_size_down", step_size_down)) if step_size_down is not None else up
    if mode not in ("triangular", "triangular2", "exp_range"):
        raise ValueError(f"mode: expected 'triangular', 'triangular2' or 'exp_range', got {mode!r}")
    gamma = _in_range("gamma", gamma, 0.0, 1.0, low_open=True)
    total_size = up + down
    step_ratio = up / total_size
    tf = _f64(t)
    # 1) which cycle, and where in it (0 at the bottom, step_ratio at the top)
    cycle = torch.floor(1 + tf / total_size)
    x = 1.0 + tf / total_size - cycle
    # 2) the triangle's height in [0, 1]
    height = torch.where(x <= step_ratio, x / step_ratio, (x - 1) / (step_ratio - 1))
    # 3) the amplitude's scale for this cycle (or this step)
    if mode == "triangular":
        scale = torch.ones_like(tf)
    elif mode == "triangular2":
        scale = 1 / (2.0 ** (cycle - 1))
    else:
        scale = gamma**tf
    return base_lr + (max_lr - base_lr) * height * scale


def inverse_sqrt_lr(step: Any, *, base_lr: float, warmup: int) -> torch.Tensor:
    """The Transformer's schedule: linear warmup, then decay as $1/\\sqrt{t}$.

    With $n = t + 1$ (the paper counts steps from 1),

    $$\\eta_t = \\eta_0 \\min\\left(\\frac{n}{W}, \\sqrt{\\frac{W}{n}}\\right),$$

    which peaks at $\\eta_0$ when $n = W$. Vaswani et al. (2017) write it as
    $d_{\\text{model}}^{-1/2}\\min(n^{-1/2}, n W^{-3/2})$, the same curve with
    $\\eta_0 = (d_{\\text{model}} W)^{-1/2}$.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
        Peak rate $\\eta_0$.
    warmup : int
        $W \\ge 1$.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    warmup = _count("warmup", warmup)
    n = _f64(t) + 1
    # 1) linear warmup, 2) inverse square root decay: whichever is smaller
    return base_lr * torch.minimum(n / warmup, torch.sqrt(warmup / n))


def wsd_lr(
    step: Any,
    *,
    base_lr: float,
    warmup: int,
    total: int,
    decay: int,
    min_lr: float = 0.0,
    shape: str = "linear",
    start_factor: float | None = None,
) -> torch.Tensor:
    """Warmup-stable-decay: warm up, hold ``base_lr``, then cool down over the last ``decay`` steps.

    With $D$ decay steps and $x = (t - (T - D))/D \\in [0, 1]$ in the cooldown:

    $$\\eta_t = \\begin{cases} \\text{linear warmup} & t < W \\\\
    \\eta_0 & W \\le t < T - D \\\\
    \\eta_{\\min} + (\\eta_0 - \\eta_{\\min})\\,(1 - g(x)) & T - D \\le t \\le T \\\\
    \\eta_{\\min} & t > T \\end{cases}$$

    with $g(x) = x$ (``"linear"``), $\\sqrt{x}$ (``"sqrt"``, the "1 - sqrt"
    cooldown) or $\\tfrac12(1 - \\cos\\pi x)$ (``"cosine"``). Because the stable
    phase does not depend on $T$, one long run can be branched into cooldowns
    at several lengths (Hu et al. 2024; Hägele et al. 2024).

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    warmup : int
        $W \\ge 0$.
    total : int
        $T \\ge 1$, the step at which the rate reaches ``min_lr``.
    decay : int
        $D \\ge 1$, with $W + D \\le T$.
    min_lr : float
        $0 \\le \\eta_{\\min} \\le \\eta_0$.
    shape : {"linear", "sqrt", "cosine"}
    start_factor : float, optional
        Warmup's first factor; default $1/(W+1)$ as in :func:`linear_warmup_lr`.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    warmup = _count("warmup", warmup, 0)
    total = _count("total", total)
    decay = _count("decay", decay)
    if warmup + decay > total:
        raise ValueError(f"decay: expected warmup + decay <= total={total}, got warmup={warmup}, decay={decay}")
    min_lr = _rate("min_lr", min_lr, allow_zero=True)
    if min_lr > base_lr:
        raise ValueError(f"min_lr: expected <= base_lr={base_lr}, got {min_lr}")
    if shape not in ("linear", "sqrt", "cosine"):
        raise ValueError(f"shape: expected 'linear', 'sqrt' or 'cosine', got {shape!r}")
    f0 = _start_factor(start_factor, warmup)
    # 1) linear warmup
    ramp = base_lr * (f0 + (1.0 - f0) * _f64(t) / max(warmup, 1))
    # 2) stable at base_lr, then 3) cool down to min_lr over the last `decay` steps, 4) hold min_lr
    x = _f64(t.clamp(min=total - decay, max=total) - (total - decay)) / decay
    g = {"linear": lambda: x, "sqrt": lambda: torch.sqrt(x), "cosine": lambda: (1 - torch.cos(math.pi * x)) / 2}[shape]()
    cool = min_lr + (base_lr - min_lr) * (1 - g)
    return torch.where(t < warmup, ramp, cool)


def cosine_restarts_lr(step: Any, *, base_lr: float, period: int, period_mult: int = 1, min_lr: float = 0.0) -> torch.Tensor:
    """Cosine annealing with warm restarts, SGDR (``CosineAnnealingWarmRestarts``).

    The rate follows a cosine from ``base_lr`` to ``min_lr`` over a period of
    $T_i$ steps, then jumps back to ``base_lr``; the periods are
    $T_0, T_0 m, T_0 m^2, \\ldots$:

    $$\\eta_t = \\eta_{\\min} + \\tfrac12(\\eta_0 - \\eta_{\\min})\\left(1 + \\cos\\frac{\\pi T_{\\text{cur}}}{T_i}\\right)$$

    where $T_{\\text{cur}}$ counts steps since the last restart.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    period : int
        $T_0 \\ge 1$ (PyTorch's ``T_0``).
    period_mult : int
        $m \\ge 1$ (PyTorch's ``T_mult``).
    min_lr : float
        $0 \\le \\eta_{\\min} \\le \\eta_0$.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    period = _count("period", period)
    period_mult = _count("period_mult", period_mult)
    min_lr = _rate("min_lr", min_lr, allow_zero=True)
    if min_lr > base_lr:
        raise ValueError(f"min_lr: expected <= base_lr={base_lr}, got {min_lr}")
    if period_mult == 1:  # equal periods: the position in the period is a remainder, no list of restarts needed
        t_cur = _f64(torch.remainder(t, period))
        return min_lr + (base_lr - min_lr) * (1 + torch.cos(math.pi * t_cur / period)) / 2
    # 1) the restart steps 0, T0, T0 + T0 m, ... (exact integers, O(log t) of them), far enough to cover every step
    t_max = int(t.max()) if t.numel() else 0
    starts, lengths = [0], [period]
    while starts[-1] + lengths[-1] <= t_max:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(lengths[-1] * period_mult)
    starts_t = torch.tensor(starts, dtype=torch.int64, device=t.device)
    lengths_t = torch.tensor(lengths, dtype=torch.int64, device=t.device)
    # 2) which period each step is in, and how far into it
    i = torch.searchsorted(starts_t, t, right=True) - 1
    t_cur, t_i = _f64(t - starts_t[i]), _f64(lengths_t[i])
    # 3) cosine within the period
    return min_lr + (base_lr - min_lr) * (1 + torch.cos(math.pi * t_cur / t_i)) / 2


def constant_factor_lr(step: Any, *, base_lr: float, factor: float = 1.0 / 3, total: int = 5) -> torch.Tensor:
    """The rate times ``factor`` for the first ``total`` steps, then the rate itself (``ConstantLR``).

    $$\\eta_t = \\eta_0 \\cdot \\begin{cases} f & t < T \\\\ 1 & t \\ge T \\end{cases}$$

    A crude warmup in one step. See chapter 4.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    factor : float
        $f \\in [0, 1]$, as PyTorch requires.
    total : int
        $T \\ge 1$ steps at the reduced rate. (PyTorch's ``total_iters=0``
        applies ``factor`` forever, a corner this function refuses.)

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    factor = _in_range("factor", factor, 0.0, 1.0)
    total = _count("total", total)
    lr = torch.full(t.shape, base_lr, dtype=torch.float64, device=t.device)
    return torch.where(t < total, lr * factor, lr)


def multiplicative_lr(step: Any, *, base_lr: float, factor: Callable[[int], float] | float) -> torch.Tensor:
    """Multiply the rate by ``factor(t)`` at every step $t \\ge 1$ (``MultiplicativeLR``).

    $$\\eta_t = \\eta_0 \\prod_{k=1}^{t} f(k)$$

    ``factor`` is a function of the step (PyTorch's ``lr_lambda``) or one
    number (then $\\eta_0 f^t$, :func:`exponential_lr`). The product is
    accumulated in the order PyTorch applies it, so the values agree to the
    last bit. See chapter 4.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    factor : callable int -> float, or float
        Each value a finite number >= 0.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.

    Raises
    ------
    TypeError, ValueError
        If ``factor`` is neither, or returns a negative, NaN or infinite value.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    if not callable(factor):
        value = _in_range("factor", factor, 0.0, math.inf)
        factor = lambda k: value  # noqa: E731
    t_max = int(t.max()) if t.numel() else 0
    # 1) the running product, one step at a time (lr <- lr * f(k)), as the scheduler does it
    lrs, lr = [base_lr], base_lr
    for k in range(1, t_max + 1):
        lr = lr * _in_range(f"factor({k})", factor(k), 0.0, math.inf)
        lrs.append(lr)
    # 2) look each step up
    return torch.tensor(lrs, dtype=torch.float64, device=t.device)[t]


def chained_lr(step: Any, *, base_lr: float, factors: Sequence[Callable[[Any], torch.Tensor]]) -> torch.Tensor:
    """Several schedules at once, their factors multiplied (``ChainedScheduler`` semantics).

    $$\\eta_t = \\eta_0 \\prod_i f_i(t)$$

    where each $f_i$ is a schedule of this module with ``base_lr=1`` (its factor),
    e.g. ``lambda t: constant_factor_lr(t, base_lr=1.0, factor=0.1, total=3)``
    and ``lambda t: exponential_lr(t, base_lr=1.0, gamma=0.9)``. PyTorch's
    ``ChainedScheduler`` steps every scheduler in turn on the same optimizer,
    which for the multiplicative schedulers (constant, linear, step,
    multistep, exponential, multiplicative) is this product. See chapter 4.

    Parameters
    ----------
    step : int or integer array, any shape
    base_lr : float
    factors : sequence of callables step -> Tensor
        At least one.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    t = _steps(step)
    base_lr = _rate("base_lr", base_lr)
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence):
        raise TypeError(f"factors: expected a sequence of schedules (callables of the step), got {type(factors).__name__}")
    if not factors:
        raise ValueError("factors: expected at least one schedule")
    out = torch.full(t.shape, base_lr, dtype=torch.float64, device=t.device)
    for i, f in enumerate(factors):
        if not callable(f):
            raise TypeError(f"factors[{i}]: expected a callable of the step, got {type(f).__name__}")
        value = f(t)
        if not isinstance(value, torch.Tensor) or value.shape != t.shape:
            raise ValueError(f"factors[{i}]: expected a tensor of the step's shape {tuple(t.shape)}, got "
                             f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}")
        out = out * value.to(torch.float64)
    return out


def cyclic_momentum(
    step: Any,
    *,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> torch.Tensor:
    """The momentum that ``CyclicLR(cycle_momentum=True)`` sets beside :func:`cyclic_lr`: it cycles the other way.

    $$\\mu_t = \\mu_{\\max} - (\\mu_{\\max} - \\mu_{\\text{base}})\\, h\\, \\sigma$$

    with the height $h$ and scale $\\sigma$ of :func:`cyclic_lr`: when the rate
    is at its top the momentum is at its bottom, so the effective step
    $\\eta/(1-\\mu)$ does not swing as far (Smith 2018). See chapter 4.

    Parameters
    ----------
    step : int or integer array, any shape
    base_momentum, max_momentum : float
        $0 \\le \\mu_{\\text{base}} \\le \\mu_{\\max} < 1$.
    step_size_up, step_size_down, mode, gamma
        As for :func:`cyclic_lr`.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``step``.
    """
    base_momentum = _in_range("base_momentum", base_momentum, 0.0, 1.0, high_open=True)
    max_momentum = _in_range("max_momentum", max_momentum, 0.0, 1.0, high_open=True)
    if max_momentum < base_momentum:
        raise ValueError(f"max_momentum: expected >= base_momentum={base_momentum}, got {max_momentum}")
    # the rate's cycle with base 0 and top 1 is h * scale
    hs = cyclic_lr(step, base_lr=1.0, max_lr=2.0, step_size_up=step_size_up, step_size_down=step_size_down,
                   mode=mode, gamma=gamma) - 1.0
    return max_momentum - (max_momentum - base_momentum) * hs


#: Every pure schedule by a reader's name (the explorers and the experiment pick from here).
SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "constant": constant_lr,
    "step": step_lr,
    "multistep": multistep_lr,
    "exponential": exponential_lr,
    "polynomial": polynomial_lr,
    "linear": linear_lr,
    "cosine": cosine_lr,
    "linear warmup": linear_warmup_lr,
    "warmup + cosine": warmup_cosine_lr,
    "one-cycle": one_cycle_lr,
    "cyclic": cyclic_lr,
    "inverse sqrt": inverse_sqrt_lr,
    "warmup-stable-decay": wsd_lr,
    "cosine restarts": cosine_restarts_lr,
}


# --- reduce on plateau ----------------------------------------------------------

class ReduceOnPlateau:
    """Cut the rate by ``factor`` when a monitored loss stops improving (``ReduceLROnPlateau``).

    The only common schedule that is not a function of the step: it reads the
    losses. A loss "improves" when it beats the best so far by more than
    ``threshold`` (relative: $\\ell < \\ell^* (1 - \\tau)$; absolute:
    $\\ell < \\ell^* - \\tau$). After more than ``patience`` calls without
    improvement the rate becomes $\\max(\\eta f, \\eta_{\\min})$ (ignored if
    that changes it by at most ``eps``), then ``cooldown`` calls pass in which
    bad calls are not counted.

    Parameters
    ----------
    base_lr : float
        Starting rate.
    mode : {"min", "max"}
        Whether the monitored quantity should fall (a loss) or rise (an accuracy).
    factor : float
        In (0, 1).
    patience, cooldown : int
        >= 0.
    threshold : float
        >= 0.
    threshold_mode : {"rel", "abs"}
    min_lr, eps : float
        >= 0.

    Example
    -------
    >>> sched = ReduceOnPlateau(0.1, patience=1)
    >>> [sched.step(x) for x in [1.0, 1.0, 1.0, 0.5]]
    [0.1, 0.1, 0.010000000000000002, 0.010000000000000002]
    """

    def __init__(
        self,
        base_lr: float,
        *,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.lr = _rate("base_lr", base_lr)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _in_range("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        self.patience = _count("patience", patience, 0)
        self.cooldown = _count("cooldown", cooldown, 0)
        self.threshold = _in_range("threshold", threshold, 0.0, math.inf)
        self.min_lr = _rate("min_lr", min_lr, allow_zero=True)
        self.eps = _in_range("eps", eps, 0.0, math.inf)
        # 0) state: best value seen, bad calls in a row, cooldown calls left
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_left = 0

    def __repr__(self) -> str:
        return (f"ReduceOnPlateau(lr={self.lr:g}, best={self.best:g}, bad={self.num_bad}/{self.patience}, "
                f"cooldown_left={self.cooldown_left}, factor={self.factor:g})")

    def _is_better(self, x: float) -> bool:
        if self.mode == "min":
            return x < (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold)
        return x > (self.best * (self.threshold + 1.0) if self.threshold_mode == "rel" else self.best + self.threshold)

    def step(self, metric: float) -> float:
        """Record one value of the monitored quantity; return the rate to use next.

        Raises
        ------
        ValueError
            If ``metric`` is NaN (a NaN loss means training broke; lowering the
            rate would hide it).
        """
        if isinstance(metric, torch.Tensor) and metric.numel() == 1 and not metric.is_complex():
            metric = metric.item()
        if isinstance(metric, bool) or not isinstance(metric, (int, float, np.integer, np.floating)):
            raise TypeError(f"metric: expected a number (the monitored loss or accuracy), got {type(metric).__name__}")
        x = float(metric)
        if math.isnan(x):
            raise ValueError("metric: got NaN; the monitored quantity must be a number")
        # 1) improvement resets the count of bad calls
        if self._is_better(x):
            self.best, self.num_bad = x, 0
        else:
            self.num_bad += 1
        # 2) during cooldown, bad calls do not count
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
        # 3) more than `patience` bad calls: cut the rate, start the cooldown
        if self.num_bad > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.eps:
                self.lr = new
            self.cooldown_left, self.num_bad = self.cooldown, 0
        return self.lr


def plateau_lrs(metrics: Any, *, base_lr: float, **kwargs: Any) -> torch.Tensor:
    """The rates :class:`ReduceOnPlateau` sets after each value of ``metrics``.

    Parameters
    ----------
    metrics : sequence of float, shape (N,)
    base_lr : float
    **kwargs
        Passed to :class:`ReduceOnPlateau`.

    Returns
    -------
    torch.Tensor
        float64, shape (N,): entry ``i`` is the rate after seeing ``metrics[: i + 1]``.
    """
    values = torch.as_tensor(metrics, dtype=torch.float64)
    if values.ndim != 1:
        raise ValueError(f"metrics: expected a 1-D sequence, got shape {tuple(values.shape)}")
    sched = ReduceOnPlateau(base_lr, **kwargs)
    return torch.tensor([sched.step(v) for v in values.tolist()], dtype=torch.float64)


# --- the LR range test ----------------------------------------------------------

@dataclass(frozen=True)
class RangeTest:
    """The result of an LR range test.

    Attributes
    ----------
    lrs : torch.Tensor
        (N,) rates tried, geometric from ``min_lr`` (N <= ``num_steps`` if stopped early).
    losses : torch.Tensor
        (N,) training loss at each rate (before that step's update); the mean
        over models when the step function returns several.
    smoothed : torch.Tensor
        (N,) bias-corrected exponential moving average of ``losses``.
    suggested_lr : float
        Rate where the smoothed loss falls fastest per unit of $\\log\\eta$
        (searched up to the smoothed minimum).
    min_loss_lr : float
        Rate at the smoothed minimum; a second, common rule is ``min_loss_lr / 10``.
    stopped_early : bool
        True if the loss diverged before the last rate.
    """

    lrs: torch.Tensor
    losses: torch.Tensor
    smoothed: torch.Tensor
    suggested_lr: float
    min_loss_lr: float
    stopped_early: bool

    def __repr__(self) -> str:
        return (f"RangeTest({len(self.lrs)} rates {float(self.lrs[0]):.2g}..{float(self.lrs[-1]):.2g}, "
                f"suggested_lr={self.suggested_lr:.3g}, min_loss_lr={self.min_loss_lr:.3g}, stopped_early={self.stopped_early})")


def range_test_lrs(num_steps: int, *, min_lr: float, max_lr: float) -> torch.Tensor:
    """Geometric rates from ``min_lr`` to ``max_lr``: $\\eta_i = \\eta_{\\min} (\\eta_{\\max}/\\eta_{\\min})^{i/(N-1)}$.

    Returns
    -------
    torch.Tensor
        float64, shape (num_steps,).
    """
    num_steps = _count("num_steps", num_steps, 2)
    min_lr, max_lr = _rate("min_lr", min_lr), _rate("max_lr", max_lr)
    if max_lr <= min_lr:
        raise ValueError(f"max_lr: expected > min_lr={min_lr}, got {max_lr}")
    i = torch.arange(num_steps, dtype=torch.float64)
    return min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))


def smooth_losses(losses: Any, *, smoothing: float = 0.98) -> torch.Tensor:
    """Bias-corrected exponential moving average: $m_i = \\beta m_{i-1} + (1-\\beta)\\ell_i$, $\\hat m_i = m_i / (1 - \\beta^{i+1})$.

    Parameters
    ----------
    losses : sequence of float, shape (N,)
    smoothing : float
        $\\beta \\in [0, 1)$; 0 returns the losses unchanged.

    Returns
    -------
    torch.Tensor
        float64, shape (N,).
    """
    x = torch.as_tensor(losses, dtype=torch.float64)
    if x.ndim != 1:
        raise ValueError(f"losses: expected a 1-D sequence, got shape {tuple(x.shape)}")
    beta = _in_range("smoothing", smoothing, 0.0, 1.0, high_open=True)
    out = torch.empty_like(x)
    m = 0.0
    for i, v in enumerate(x.tolist()):
        m = beta * m + (1 - beta) * v
        out[i] = m / (1 - beta ** (i + 1))
    return out


def suggest_lr(lrs: Any, losses: Any, *, smoothing: float = 0.98, stop_factor: float = 4.0) -> RangeTest:
    """Analyse a range test's losses: smooth, cut at divergence, suggest a rate.

    Parameters
    ----------
    lrs, losses : sequence of float, shape (N,)
        Rates tried (increasing) and the loss at each.
    smoothing : float
        $\\beta$ of :func:`smooth_losses`.
    stop_factor : float
        Divergence: the first smoothed loss above ``stop_factor`` times the
        best so far, or a non-finite loss, ends the curve.

    Returns
    -------
    RangeTest
    """
    lr = torch.as_tensor(lrs, dtype=torch.float64)
    loss = torch.as_tensor(losses, dtype=torch.float64)
    if lr.ndim != 1 or loss.shape != lr.shape:
        raise ValueError(f"losses: expected the shape of lrs {tuple(lr.shape)}, got {tuple(loss.shape)}")
    if len(lr) < 3:
        raise ValueError(f"lrs: expected at least 3 rates, got {len(lr)}")
    if not bool((lr > 0).all()) or not bool((lr[1:] > lr[:-1]).all()):
        raise ValueError("lrs: expected positive, strictly increasing rates")
    stop_factor = _in_range("stop_factor", stop_factor, 1.0, math.inf, low_open=True)
    # 1) cut at the first non-finite loss
    bad = ~torch.isfinite(loss)
    n = int(bad.nonzero()[0]) if bool(bad.any()) else len(loss)
    if n < 3:
        raise ValueError(f"losses: expected at least 3 finite losses before divergence, got {n}")
    smoothed = smooth_losses(loss[:n], smoothing=smoothing)
    # 2) cut where the smoothed loss exceeds stop_factor x its best so far
    best = torch.cummin(smoothed, 0).values
    over = smoothed > stop_factor * best
    if bool(over.any()):
        n = max(int(over.nonzero()[0]) + 1, 3)
    stopped = n < len(loss)
    lr, loss, smoothed = lr[:n], loss[:n], smoothed[:n]
    # 3) steepest descent of the smoothed loss in log(lr), before its minimum
    k = int(torch.argmin(smoothed))
    slope = torch.gradient(smoothed, spacing=(torch.log(lr),))[0]
    j = int(torch.argmin(slope[: max(k, 1) + 1]))
    return RangeTest(lr, loss, smoothed, float(lr[j]), float(lr[k]), stopped)


def lr_range_test(
    train_step: Callable[[float], Any],
    *,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
    stop_factor: float = 4.0,
) -> RangeTest:
    """Smith's LR range test: train while the rate grows geometrically; watch the loss.

    Parameters
    ----------
    train_step : callable
        ``train_step(lr) -> loss``: take one optimizer step at rate ``lr`` on a
        fresh minibatch and return the loss measured on that minibatch (a
        float, or a tensor of losses of several models, which is averaged).
    min_lr, max_lr : float
        The sweep's bounds, ``0 < min_lr < max_lr``.
    num_steps : int
        Number of rates (steps) in the sweep.
    smoothing, stop_factor : float
        See :func:`suggest_lr`; the sweep stops at divergence.

    Returns
    -------
    RangeTest

    Example
    -------
    >>> run = lr_range_test(lambda lr: (1 - min(lr, 1.5)) ** 2 + 1e-3, min_lr=1e-3, max_lr=10, num_steps=30)
    >>> 0.01 < run.suggested_lr < 1.5
    True
    """
    if not callable(train_step):
        raise TypeError(f"train_step: expected a callable lr -> loss, got {type(train_step).__name__}")
    lrs = range_test_lrs(num_steps, min_lr=min_lr, max_lr=max_lr)
    beta = _in_range("smoothing", smoothing, 0.0, 1.0, high_open=True)
    stop_factor = _in_range("stop_factor", stop_factor, 1.0, math.inf, low_open=True)
    losses: list[float] = []
    m, best = 0.0, math.inf
    for i, lr in enumerate(lrs.tolist()):
        # 1) one step at this rate
        loss = float(torch.as_tensor(train_step(lr), dtype=torch.float64).mean())
        losses.append(loss)
        if not math.isfinite(loss):
            break
        # 2) stop once the smoothed loss has blown up
        m = beta * m + (1 - beta) * loss
        s = m / (1 - beta ** (i + 1))
        best = min(best, s)
        if s > stop_factor * best:
            break
    losses += [math.nan] * (num_steps - len(losses))
    return suggest_lr(lrs, losses, smoothing=smoothing, stop_factor=stop_factor)


# --- a small experiment: many MLPs on digits, in lockstep ------------------------

@dataclass(frozen=True)
class DigitsRun:
    """Results of :func:`train_digits` for K schedules x S seeds.

    Attributes
    ----------
    lrs : torch.Tensor
        (K, T) the rates used.
    seeds : tuple of int
    batch_loss : torch.Tensor
        (K, S, T) minibatch loss before each step.
    train_loss, train_accuracy : torch.Tensor
        (K, S) loss and accuracy on the whole training split after the last step.
    test_loss, test_accuracy : torch.Tensor
        (K, S) on the held-out test split.
    weight_norm : torch.Tensor
        (K, S, T) Euclidean norm of all of a model's parameters (weights and
        biases together) after each step: how far the weights have grown.
    """

    lrs: torch.Tensor
    seeds: tuple[int, ...]
    batch_loss: torch.Tensor
    train_loss: torch.Tensor
    test_loss: torch.Tensor
    test_accuracy: torch.Tensor
    weight_norm: torch.Tensor
    train_accuracy: torch.Tensor

    def __repr__(self) -> str:
        k, s, t = self.batch_loss.shape
        return f"DigitsRun({k} schedules x {s} seeds x {t} steps, mean test accuracy {float(self.test_accuracy.mean()):.3f})"




class BatchedMLP:
    """M independent one-hidden-layer MLPs (64 -> H -> 10, ReLU) on digits, trained in lockstep.

    The models are ``n_copies`` copies of one model per seed: model
    ``k * S + s`` starts from seed ``seeds[s]``'s weights and sees seed
    ``seeds[s]``'s minibatches, so copy ``k`` differs from copy ``k'`` only in
    the rates it is given: comparisons between schedules are paired.

    Parameters
    ----------
    seeds : sequence of int
        S seeds (initialization and minibatch order).
    n_copies : int
        K copies per seed (one per schedule).
    hidden : int
        Hidden width H.
    batch_size : int
        Minibatch size B (sampled with replacement).
    optimizer : {"sgd", "adam"}
        SGD with heavy-ball momentum in PyTorch's form ($v \\leftarrow \\mu v + g$,
        $\\theta \\leftarrow \\theta - \\eta v$), or Adam with bias correction.
    momentum : float
        $\\mu$ for SGD.
    betas, adam_eps : Adam's constants.
    splits : (train, val, test) from :func:`losslab.data.digits`, optional
    device : torch.device, optional
        Default :func:`losslab.backend.device`.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        *,
        n_copies: int = 1,
        hidden: int = 32,
        batch_size: int = 32,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        splits: tuple[data.Split, data.Split, data.Split] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.seeds = tuple(_count("seeds", s, 0) for s in seeds)
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed")
        self.n_copies = _count("n_copies", n_copies)
        hidden = _count("hidden", hidden)
        self.batch_size = _count("batch_size", batch_size)
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {optimizer!r}")
        self.optimizer = optimizer
        self.momentum = _in_range("momentum", momentum, 0.0, 1.0, high_open=True)
        self.betas = (_in_range("betas[0]", betas[0], 0.0, 1.0, high_open=True), _in_range("betas[1]", betas[1], 0.0, 1.0, high_open=True))
        self.adam_eps = _in_range("adam_eps", adam_eps, 0.0, math.inf, low_open=True)
        dev = torch.device(device) if device is not None else backend.device()
        train, _, test = splits if splits is not None else data.digits()
        self.train, self.test = train.to(dev), test.to(dev)
        S, K = len(self.seeds), self.n_copies
        self.M = S * K
        d_in, d_out = self.train.x.shape[1], 10
        # PyTorch's nn.Linear initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), one generator per seed
        params: list[list[torch.Tensor]] = [[], [], [], []]
        self._gens = []
        for s in self.seeds:
            g = backend.generator(s)
            for j, (shape, fan_in) in enumerate((((d_in, hidden), d_in), ((hidden,), d_in), ((hidden, d_out), hidden), ((d_out,), hidden))):
                params[j].append((torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(fan_in))
            self._gens.append(g)
        # (S, ...) -> (K * S, ...): copy k of seed s is model k * S + s
        self.params = [torch.stack(p).repeat(K, *([1] * p[0].ndim)).to(dev) for p in params]  # W1 (M, 64, H), b1 (M, H), W2 (M, H, 10), b2 (M, 10)
        self.state = [torch.zeros_like(p) for p in self.params]
        self.state2 = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def __repr__(self) -> str:
        return f"BatchedMLP({self.M} models = {self.n_copies} copies x seeds {self.seeds}, {self.optimizer}, step {self.t})"

    @staticmethod
    def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2 = params
        h = torch.relu(torch.bmm(x, W1) + b1[:, None, :])  # (M, B, H)
        return torch.bmm(h, W2) + b2[:, None, :]  # (M, B, 10)

    @staticmethod
    def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        M, B, C = logits.shape
        return F.cross_entropy(logits.reshape(M * B, C), y.reshape(M * B), reduction="none").view(M, B).mean(1)  # (M,)

    def step(self, lr: Any) -> torch.Tensor:
        """One update of every model at rate ``lr`` (a float, or an (M,) tensor); returns the (M,) minibatch losses."""
        dev = self.params[0].device
        lr_t = torch.as_tensor(lr, dtype=torch.float32, device=dev)
        if lr_t.ndim == 0:
            lr_t = lr_t.expand(self.M)
        if lr_t.shape != (self.M,):
            raise ValueError(f"lr: expected a float or shape ({self.M},), got shape {tuple(lr_t.shape)}")
        if bool((lr_t < 0).any()):
            raise ValueError("Invalid learning rate: lr expected >= 0")
        # 1) a minibatch per seed, shared by that seed's copies
        n = len(self.train)
        idx = torch.stack([torch.randint(0, n, (self.batch_size,), generator=g) for g in self._gens]).repeat(self.n_copies, 1).to(dev)  # (M, B)
        x, y = self.train.x[idx], self.train.y[idx]  # (M, B, 64), (M, B)
        # 2) loss and gradients of all models at once (the sum separates)
        params = [p.requires_grad_(True) for p in self.params]
        loss = self._loss(self._forward(params, x), y)  # (M,)
        grads = torch.autograd.grad(loss.sum(), params)
        self.t += 1
        # 3) the update, with each model's own rate
        with torch.no_grad():
            new = []
            for p, g, v, s2 in zip(params, grads, self.state, self.state2):
                r = lr_t.view(-1, *([1] * (p.ndim - 1)))
                if self.optimizer == "sgd":
                    v.mul_(self.momentum).add_(g)
                    new.append(p.detach() - r * v)
                else:
                    b1, b2 = self.betas
                    v.mul_(b1).add_(g, alpha=1 - b1)
                    s2.mul_(b2).addcmul_(g, g, value=1 - b2)
                    v_hat = v / (1 - b1**self.t)
                    s_hat = s2 / (1 - b2**self.t)
                    new.append(p.detach() - r * v_hat / (s_hat.sqrt() + self.adam_eps))
        self.params = new
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, split: data.Split) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) mean cross-entropy and (M,) accuracy of every model on ``split``."""
        x = split.x.to(self.params[0].device).expand(self.M, -1, -1)  # (M, N, 64)
        y = split.y.to(self.params[0].device).expand(self.M, -1)  # (M, N)
        logits = self._forward(self.params, x)
        return self._loss(logits, y), (logits.argmax(-1) == y).float().mean(1)


def train_digits(
    lrs: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    **kwargs: Any,
) -> DigitsRun:
    """Train K x S digits MLPs in one batch: schedule k's rates ``lrs[k]`` for every seed.

    Parameters
    ----------
    lrs : array of float, shape (K, T) or (T,)
        The rate of each step for each of K schedules (from the functions above).
    seeds : sequence of int
        S seeds; every schedule is run with every seed.
    **kwargs
        Passed to :class:`BatchedMLP` (``hidden``, ``batch_size``, ``optimizer``...).

    Returns
    -------
    DigitsRun

    Raises
    ------
    ValueError
        If ``lrs`` is not 1-D or 2-D, or holds negative or non-finite rates.
    """
    table = torch.as_tensor(lrs, dtype=torch.float64)
    if table.ndim == 1:
        table = table[None]
    if table.ndim != 2 or table.shape[1] < 1:
        raise ValueError(f"lrs: expected shape (K, T) or (T,), got {tuple(torch.as_tensor(lrs).shape)}")
    if not bool(torch.isfinite(table).all()) or bool((table < 0).any()):
        raise ValueError("Invalid learning rate: lrs expected finite rates >= 0")
    K, T = table.shape
    net = BatchedMLP(seeds, n_copies=K, **kwargs)
    S = len(net.seeds)
    per_model = table.repeat_interleave(S, dim=0).to(torch.float32)  # (K * S, T): model k * S + s gets lrs[k]
    losses, norms = torch.empty(T, K * S), torch.empty(T, K * S)
    with backend.single_thread(net.params[0].device):
        for t in range(T):
            loss = net.step(per_model[:, t].to(net.params[0].device))
            norm = sum(p.detach().reshape(net.M, -1).square().sum(1) for p in net.params).sqrt()  # (K * S,)
            losses[t], norms[t] = torch.stack([loss, norm]).cpu()
        train_loss, train_acc = net.evaluate(net.train)
        test_loss, test_acc = net.evaluate(net.test)
    shape = (K, S)
    return DigitsRun(table, net.seeds, losses.T.reshape(K, S, T), train_loss.cpu().view(shape), test_loss.cpu().view(shape),
                     test_acc.cpu().view(shape), norms.T.reshape(K, S, T), train_acc.cpu().view(shape))


def digits_range_test(
    *,
    min_lr: float = 1e-4,
    max_lr: float = 10.0,
    num_steps: int = 100,
    seeds: Sequence[int] = (0, 1, 2),
    smoothing: float = 0.98,
    stop_factor: float = 4.0,
    **kwargs: Any,
) -> RangeTest:
    """:func:`lr_range_test` on fresh digits MLPs (:class:`BatchedMLP`), one per seed, averaged.

    Parameters
    ----------
    min_lr, max_lr, num_steps, smoothing, stop_factor
        As in :func:`lr_range_test`.
    seeds : sequence of int
        The models trained side by side; the test reads their mean loss.
    **kwargs
        Passed to :class:`BatchedMLP` (``optimizer``, ``momentum``, ``batch_size``...).

    Returns
    -------
    RangeTest
    """
    net = BatchedMLP(seeds, **kwargs)
    with backend.single_thread(net.params[0].device):
        return lr_range_test(net.step, min_lr=min_lr, max_lr=max_lr, num_steps=num_steps,
                             smoothing=smoothing, stop_factor=stop_factor)


# --- the noisy quadratic model ----------------------------------------------------

def noisy_quadratic_loss(
    lrs: Any,
    *,
    curvatures: Any = None,
    noise: float = 1.0,
    batch_size: Any = 1,
    init: float = 1.0,
) -> torch.Tensor:
    r"""Expected loss of SGD on a noisy quadratic, exactly, for one or many schedules.

    The model (Zhang et al. 2019): $L(x) = \tfrac12 \sum_i h_i x_i^2$; a
    minibatch gradient is $h_i x_i + \xi_i$ with independent zero-mean noise of
    variance $c\, h_i / B$ (gradient noise shaped like the curvature, shrinking
    with the batch size $B$). Then $m_i = \mathbb E[x_i^2]$ obeys

    $$m_i \leftarrow (1 - \eta_t h_i)^2 m_i + \eta_t^2 c\, h_i / B,$$

    and $\mathbb E[L_t] = \tfrac12 \sum_i h_i m_i$. With a constant rate the
    loss settles at the noise floor $\sum_i \eta c h_i / (2B(2 - \eta h_i))$,
    proportional to $\eta / B$ for small $\eta$: the reason to decay the rate.

    Parameters
    ----------
    lrs : array of float, shape (..., T)
        The rate of each step, for any batch of schedules.
    curvatures : array of float, shape (D,), optional
        $h_i > 0$; default 40 values log-spaced in [0.01, 1].
    noise : float
        $c \ge 0$.
    batch_size : int, or array of shape (..., T)
        $B \ge 1$; an array gives the batch size of each step (batch-size
        schedules), broadcast against ``lrs``.
    init : float
        $\mathbb E[x_i^2]$ at the start.

    Returns
    -------
    torch.Tensor
        float64, shape (..., T + 1): the expected loss before the first step
        and after each step.
    """
    eta = torch.as_tensor(lrs, dtype=torch.float64)
    if eta.ndim < 1 or eta.shape[-1] < 1:
        raise ValueError(f"lrs: expected shape (..., T) with T >= 1, got {tuple(eta.shape)}")
    if not bool(torch.isfinite(eta).all()) or bool((eta < 0).any()):
        raise ValueError("Invalid learning rate: lrs expected finite rates >= 0")
    h = torch.logspace(-2, 0, 40, dtype=torch.float64) if curvatures is None else torch.as_tensor(curvatures, dtype=torch.float64)
    if h.ndim != 1 or len(h) < 1 or not bool((h > 0).all()):
        raise ValueError(f"curvatures: expected a 1-D array of positive numbers, got shape {tuple(h.shape)}")
    noise = _in_range("noise", noise, 0.0, math.inf)
    if isinstance(batch_size, (torch.Tensor, np.ndarray, list, tuple)):
        bs = torch.as_tensor(batch_size, dtype=torch.float64).to(eta.device)
        if bs.ndim < 1 or bs.shape[-1] != eta.shape[-1] or not bool(torch.isfinite(bs).all()) or bool((bs < 1).any()):
            raise ValueError(f"batch_size: expected an int >= 1 or sizes >= 1 of shape (..., {eta.shape[-1]}), "
                             f"got shape {tuple(bs.shape)}")
        try:
            bs = torch.broadcast_to(bs, eta.shape)
        except RuntimeError:
            raise ValueError(f"batch_size: shape {tuple(bs.shape)} does not broadcast to that of lrs, {tuple(eta.shape)}") from None
    else:
        bs = torch.full(eta.shape, float(_count("batch_size", batch_size)), dtype=torch.float64, device=eta.device)
    init = _in_range("init", init, 0.0, math.inf)
    h = h.to(eta.device)
    m = torch.full((*eta.shape[:-1], len(h)), init, dtype=torch.float64, device=eta.device)  # (..., D)
    out = [0.5 * (h * m).sum(-1)]
    for t in range(eta.shape[-1]):
        lr = eta[..., t, None]  # (..., 1)
        # 1) the mean contracts by (1 - lr h) per step, 2) the noise adds lr^2 c h / B
        m = (1 - lr * h) ** 2 * m + lr**2 * noise * h / bs[..., t, None]
        out.append(0.5 * (h * m).sum(-1))
    return torch.stack(out, -1)


def noisy_quadratic_plateau(
    base_lr: float,
    *,
    steps: int,
    curvatures: Any = None,
    noise: float = 1.0,
    batch_size: int = 1,
    init: float = 1.0,
    **plateau: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`ReduceOnPlateau` steering SGD on the noisy quadratic: the rule reads the loss its own rates produce.

    Step ``t`` uses the rule's current rate; the expected loss after the step
    (the recursion of :func:`noisy_quadratic_loss`) is then shown to the rule,
    which may cut the rate for step ``t + 1``. See Chapter 4.

    Parameters
    ----------
    base_lr : float
        The starting rate.
    steps : int
        T >= 1.
    curvatures, noise, batch_size, init
        As in :func:`noisy_quadratic_loss`.
    **plateau
        Passed to :class:`ReduceOnPlateau` (``factor``, ``patience``, ``threshold``...).

    Returns
    -------
    lrs : torch.Tensor
        float64, shape (T,): the rate of each step.
    losses : torch.Tensor
        float64, shape (T + 1,): the expected loss before the first step and
        after each step; equal to ``noisy_quadratic_loss(lrs, ...)``.
    """
    steps = _count("steps", steps)
    sched = ReduceOnPlateau(base_lr, **plateau)
    # validates curvatures, noise, batch_size and init, and gives the loss before the first step
    start = noisy_quadratic_loss(torch.zeros(1), curvatures=curvatures, noise=noise, batch_size=batch_size, init=init)[0]
    h = torch.logspace(-2, 0, 40, dtype=torch.float64) if curvatures is None else torch.as_tensor(curvatures, dtype=torch.float64)
    m = torch.full_like(h, float(init))  # E[x_i^2], (D,)
    lrs, losses = [], [start]
    for _ in range(steps):
        lr = sched.lr
        # 1) one step of the recursion at the rule's current rate
        m = (1 - lr * h) ** 2 * m + lr**2 * float(noise) * h / int(batch_size)
        lrs.append(lr)
        losses.append(0.5 * (h * m).sum())
        # 2) the rule reads the loss it produced and may cut the rate of the next step
        sched.step(float(losses[-1]))
    return torch.tensor(lrs, dtype=torch.float64), torch.stack(losses)


# --- schedule-free SGD (Chapter 4) --------------------------------------------------


def schedule_free_sgd_step(
    params: torch.Tensor,
    grads: torch.Tensor,
    state: dict | None = None,
    *,
    lr: float,
    momentum: float = 0.9,
) -> tuple[torch.Tensor, dict]:
    r"""One step of schedule-free SGD (Defazio et al. 2024): no schedule, an average read out instead.

    Three sequences: ``z`` takes plain SGD steps, ``x`` is a weighted running
    average of ``z`` (the point to evaluate and to ship), and the gradient is
    taken at an interpolation ``y`` between them:

    .. math::

        y_t &= (1 - \beta)\, z_t + \beta\, x_t, \qquad g_t = \nabla f(y_t) \\
        z_{t+1} &= z_t - \gamma_t\, g_t \\
        x_{t+1} &= (1 - c_{t+1})\, x_t + c_{t+1}\, z_{t+1}, \qquad
        c_{t+1} = \gamma_t^2 \Big/ \sum_{k \le t} \gamma_k^2

    with :math:`x_1 = z_1 = y_1 = \theta_0` and :math:`t = 1, 2, \dots`. With a constant rate
    :math:`c_{t+1} = 1/t`: ``x`` is the plain average of the iterates :math:`z_2, \dots, z_{t+1}`
    (Polyak averaging, Chapter 3), and :math:`\beta` interpolates between that
    average (:math:`\beta = 1`) and the SGD iterate (:math:`\beta = 0`). The
    weights :math:`\gamma_t^2` let a warmup's small early steps count less.
    This is the paper's Algorithm 1 without weight decay and with the
    weighting power 2; PyTorch has no schedule-free optimizer (the tests
    check the defining equations). See chapter 4.

    Parameters
    ----------
    params : Tensor [N, D]
        :math:`y_t`, where the gradient was taken (the training weights).
    grads : Tensor [N, D]
        :math:`\nabla f(y_t)`.
    state : dict
        ``{}`` before the first step; then ``"z"``, ``"x"`` [N, D], ``"weight_sum"`` and ``"step"``.
    lr : float >= 0
        :math:`\gamma_t` (pass the warmup's rate at each step, if any).
    momentum : float in [0, 1]
        :math:`\beta`.

    Returns
    -------
    (Tensor [N, D], dict)
        :math:`y_{t+1}` (the next point to take a gradient at) and the new
        state; ``state["x"]`` is the average to evaluate.
    """
    from . import optim

    params, grads = optim._check_tensors(params, grads)
    lr = _in_range("lr", lr, 0.0, math.inf)
    beta = _in_range("momentum", momentum, 0.0, 1.0)
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state: expected a dict ({{}} before the first step), got {type(state).__name__}")
    state = dict(state or {})
    z, x = state.get("z", params), state.get("x", params)
    for key, value in (("z", z), ("x", x)):
        if not isinstance(value, torch.Tensor) or value.shape != params.shape:
            raise ValueError(f"state[{key!r}]: expected a tensor of shape {tuple(params.shape)}, got "
                             f"{getattr(value, 'shape', type(value).__name__)}")
    weight_sum = float(state.get("weight_sum", 0.0)) + lr**2
    c = lr**2 / weight_sum if weight_sum > 0 else 0.0
    z = z - lr * grads  # 1) an SGD step on z, with the gradient taken at y
    x = (1 - c) * x + c * z  # 2) x averages the z's
    y = (1 - beta) * z + beta * x  # 3) the next gradient is taken between them
    return y, {"z": z, "x": x, "weight_sum": weight_sum, "step": int(state.get("step", 0)) + 1}
