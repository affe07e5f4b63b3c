r"""Training you can read: convergence rates, a small training loop, callbacks, and a diagnosis of its history.

See Chapter 8 ("Convergence and training diagnostics").

Four parts, each usable on its own:

- **Rates on quadratics.** :func:`run_quadratic` runs gradient descent (heavy
  ball with ``momentum``) on $f(x) = \tfrac12\sum_i \lambda_i x_i^2$ for many
  settings at once with :mod:`losslab.optim`'s SGD kernel, and records the
  distance to the minimum and the loss gap at every step;
  :func:`sublinear_bound` and :func:`steps_to_tolerance` put them beside the
  theory, and :func:`sgd_noisy_quadratic` simulates SGD on the noisy quadratic
  whose expected loss :func:`losslab.schedules.noisy_quadratic_loss` computes
  exactly.
- **The loop.** :func:`fit` trains an ``nn.Module`` on a
  :class:`~losslab.data.Split` with the book's optimizers
  (:class:`losslab.optim.Optimizer`, or any ``torch.optim`` optimizer), a rate
  per step from :mod:`losslab.schedules`, gradient clipping with
  ``torch.nn.utils.clip_grad_norm_``, an optional tqdm progress bar, and
  returns a :class:`History`: per step the minibatch loss (and each of its
  terms), the rate and the gradient norm; per evaluation the loss and
  accuracy on training and validation data.
- **Callbacks.** :class:`EarlyStopping` (patience, restores the best weights),
  :class:`ReduceLROnPlateau` (wraps :class:`losslab.schedules.ReduceOnPlateau`),
  :class:`NaNGuard` and :class:`Checkpoint`. The pure function
  :func:`early_stopping_point` applies the same patience rule to a list of
  validation losses.
- **Diagnosis.** :func:`diagnose` reads a :class:`History` and names likely
  pathologies (divergence, spikes, unshuffled data, a bad initial loss, a rate
  too low, underfitting, a plateau, overfitting), each with the numbers that
  gave it away; :func:`synthetic_history` makes histories with a known
  pathology for tests and exercises, and :func:`run_with_bug` trains the
  digits MLP with one deliberate bug from :data:`BUGS` (:func:`bug_setup`
  gives the same run untrained, to add callbacks). Debugging helpers:
  :func:`grad_norms_by_layer`, :func:`find_nonfinite`, :func:`describe_batch`.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _checks, backend, data, optim, schedules
from .data import Split
from .nets import global_grad_norm

__all__ = [
    "quadratic_spectrum",
    "QuadraticRun",
    "run_quadratic",
    "sublinear_bound",
    "steps_to_tolerance",
    "loglog_slope",
    "sgd_noisy_quadratic",
    "History",
    "TrainState",
    "Callback",
    "EarlyStopping",
    "early_stopping_point",
    "ReduceLROnPlateau",
    "NaNGuard",
    "Checkpoint",
    "evaluate",
    "fit",
    "mlp",
    "Finding",
    "PATHOLOGIES",
    "diagnose",
    "report",
    "SYNTHETIC",
    "synthetic_history",
    "BUGS",
    "BugSetup",
    "bug_setup",
    "run_with_bug",
    "digits_unnormalized",
    "grad_norms_by_layer",
    "find_nonfinite",
    "describe_batch",
    "nonconvex_objective",
    "NONCONVEX_L",
    "nonconvex_min",
    "sgd_nonconvex",
    "adam_least_squares",
]


# =============================================================================
# Input checks
# =============================================================================

def _count(name: str, value: object, low: int = 1) -> int:
    return _checks.count(name, value, low)


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    return _checks.positive(name, value, allow_zero=allow_zero)


def _split(name: str, s: object) -> Split:
    if not isinstance(s, Split):
        raise TypeError(f"{name}: expected a losslab.data.Split, got {type(s).__name__}")
    if not isinstance(s.x, torch.Tensor) or not s.x.is_floating_point() or s.x.ndim < 2:
        raise ValueError(f"{name}.x: expected a floating-point tensor (N, ...), got {getattr(s.x, 'dtype', None)} "
                         f"{tuple(getattr(s.x, 'shape', ()))}")
    if not isinstance(s.y, torch.Tensor) or s.y.shape[0] != s.x.shape[0]:
        raise ValueError(f"{name}.y: expected a tensor with {s.x.shape[0]} rows (one per example), "
                         f"got shape {tuple(getattr(s.y, 'shape', ()))}")
    if len(s) == 0:
        raise ValueError(f"{name}: expected at least one example")
    return s


# =============================================================================
# 1. Convergence rates on quadratics
# =============================================================================

def quadratic_spectrum(kappa: float, dim: int = 20, *, L: float = 1.0) -> torch.Tensor:
    r"""Eigenvalues of a test quadratic: ``dim`` values log-spaced from $L/\kappa$ to $L$.

    Parameters
    ----------
    kappa : float
        Condition number $\kappa = L/\mu \ge 1$.
    dim : int
        Number of eigenvalues (>= 2).
    L : float
        Largest eigenvalue (the smoothness constant), > 0.

    Returns
    -------
    Tensor
        float64, shape (dim,), increasing.

    Example
    -------
    >>> quadratic_spectrum(100.0, 3)
    tensor([0.0100, 0.1000, 1.0000], dtype=torch.float64)
    """
    kappa = _positive("kappa", kappa)
    if kappa < 1:
        raise ValueError(f"kappa: expected a condition number >= 1, got {kappa}")
    dim = _count("dim", dim, 2)
    L = _positive("L", L)
    return torch.logspace(math.log10(L / kappa), math.log10(L), dim, dtype=torch.float64)


@dataclass(frozen=True)
class QuadraticRun:
    """N runs of (heavy-ball) gradient descent on one diagonal quadratic.

    Attributes
    ----------
    eigenvalues : Tensor (D,)
    lr, momentum : Tensor (N,)
    error : Tensor (T + 1, N)
        $\\|x_t - x^*\\|$ (the minimizer is 0), step 0 first.
    gap : Tensor (T + 1, N)
        $f(x_t) - f^*$.
    grad_norm : Tensor (T + 1, N)
        $\\|\\nabla f(x_t)\\|$.
    step_norm : Tensor (T, N)
        $\\|x_{t+1} - x_t\\|$, the length of each step.
    """

    eigenvalues: torch.Tensor
    lr: torch.Tensor
    momentum: torch.Tensor
    error: torch.Tensor
    gap: torch.Tensor
    grad_norm: torch.Tensor
    step_norm: torch.Tensor

    def __repr__(self) -> str:
        t, n = self.error.shape
        return f"QuadraticRun(N={n}, steps={t - 1}, kappa={float(self.eigenvalues.max() / self.eigenvalues.min()):.3g})"

    def rate(self, start: int, stop: int) -> torch.Tensor:
        """Measured linear rate of the error over steps ``start..stop`` (:func:`losslab.optim.measured_rate`), (N,)."""
        return optim.measured_rate(self.error, start=start, stop=stop)

    def theory(self) -> torch.Tensor:
        r"""The asymptotic rate each run should have, (N,): $\max_i|1 - \eta\lambda_i|$ without momentum, the
        largest eigenvalue modulus of the heavy-ball iteration (:func:`losslab.optim.heavy_ball_rate`) with it."""
        return optim.heavy_ball_rate(self.lr, self.momentum, self.eigenvalues)


def run_quadratic(eigenvalues: torch.Tensor | Sequence[float], *, lr: float | torch.Tensor,
                  momentum: float | torch.Tensor = 0.0, steps: int,
                  x0: torch.Tensor | None = None) -> QuadraticRun:
    r"""Gradient descent, with heavy-ball momentum, on $f(x) = \tfrac12\sum_i \lambda_i x_i^2$, N settings at once.

    Each step is :func:`losslab.optim.sgd_step`'s update (PyTorch's
    convention: the momentum buffer starts at the first gradient) applied to
    all N rows of ``x`` (N, D) at once, one learning rate and momentum per row.

    Parameters
    ----------
    eigenvalues : Tensor or sequence of float, shape (D,)
        The Hessian's eigenvalues, each >= 0 (0 makes the problem convex but not strongly convex).
    lr, momentum : float or Tensor (N,)
        Broadcast together; ``lr > 0``, ``0 <= momentum < 1``.
    steps : int
        T >= 1.
    x0 : Tensor (D,), optional
        Start; default all ones scaled to unit length.

    Returns
    -------
    QuadraticRun
        Runs that overflow show ``inf``/``nan`` errors from then on (nothing is raised).

    Example
    -------
    >>> run = run_quadratic(quadratic_spectrum(10.0, 5), lr=1.0, steps=200)
    >>> round(float(run.rate(100, 200)[0]), 6)  # 1 - 1/kappa
    0.9
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    if lam.ndim != 1 or len(lam) < 1 or not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
        raise ValueError(f"eigenvalues: expected a 1-D sequence of finite numbers >= 0, got {lam.tolist()}")
    steps = _count("steps", steps)
    lr_t = torch.as_tensor(lr, dtype=torch.float64).reshape(-1)
    mom_t = torch.as_tensor(momentum, dtype=torch.float64).reshape(-1)
    try:
        lr_t, mom_t = torch.broadcast_tensors(lr_t, mom_t)
    except RuntimeError:
        raise ValueError(f"lr, momentum: expected shapes that broadcast, got {tuple(lr_t.shape)} and {tuple(mom_t.shape)}") from None
    if not bool(torch.isfinite(lr_t).all()) or bool((lr_t <= 0).any()):
        raise ValueError(f"lr: expected finite values > 0, got {lr_t.tolist()}")
    if not bool(((mom_t >= 0) & (mom_t < 1)).all()):
        raise ValueError(f"momentum: expected values in [0, 1), got {mom_t.tolist()}")
    d, n = len(lam), len(lr_t)
    if x0 is None:
        start = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    else:
        start = torch.as_tensor(x0, dtype=torch.float64)
        if start.shape != (d,) or not bool(torch.isfinite(start).all()):
            raise ValueError(f"x0: expected a finite tensor of shape ({d},), got {tuple(start.shape)}")
    kernel = optim.METHODS["sgd"][1]  # the update of optim.sgd_step, without per-step input checks
    hyper = dict(lr=lr_t[:, None], momentum=mom_t[:, None], dampening=0.0, nesterov=False, weight_decay=0.0)
    x = start.expand(n, d).clone()  # (N, D)
    state: dict = {}
    xs = [x]
    with backend.single_thread("cpu"):  # small tensors: threads cost more than they save
        for _ in range(steps):
            x, state = kernel(x, x * lam, state, **hyper)  # the gradient of f is lam * x
            xs.append(x)
    path = torch.stack(xs)  # (T + 1, N, D)
    error = path.norm(dim=-1)  # (T + 1, N)
    gap = 0.5 * (lam * path * path).sum(-1)  # (T + 1, N)
    grad_norm = (lam * path).norm(dim=-1)  # (T + 1, N)
    step_norm = (path[1:] - path[:-1]).norm(dim=-1)  # (T, N)
    return QuadraticRun(lam, lr_t, mom_t, error, gap, grad_norm, step_norm)


def sublinear_bound(k: torch.Tensor | Sequence[int] | int, *, L: float, distance0: float) -> torch.Tensor:
    r"""The worst-case loss gap of gradient descent with step $1/L$ on an $L$-smooth convex function.

    $$f(x_k) - f^* \le \frac{L\,\|x_0 - x^*\|^2}{2k}, \qquad k \ge 1$$

    (Beck 2017, chapter 10): $O(1/k)$, with no assumption of strong convexity.

    Parameters
    ----------
    k : int or sequence of int (>= 1)
    L : float
        Smoothness constant, > 0.
    distance0 : float
        $\|x_0 - x^*\| \ge 0$.

    Returns
    -------
    Tensor
        float64, the shape of ``k``.
    """
    if isinstance(k, (bool, str, bytes)) or k is None:
        raise TypeError(f"k: expected an int or a sequence of ints, got {type(k).__name__}")
    try:
        kk = torch.as_tensor(k)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"k: expected an int or a sequence of ints, got {type(k).__name__}") from None
    if kk.is_floating_point() or kk.is_complex() or kk.dtype == torch.bool:
        raise TypeError(f"k: expected integer step counts, got dtype {kk.dtype}")
    kk = kk.to(torch.float64)
    if not bool((kk >= 1).all()):
        raise ValueError("k: expected step counts >= 1 (the bound is infinite at k = 0)")
    L = _positive("L", L)
    distance0 = _positive("distance0", distance0, allow_zero=True)
    return L * distance0**2 / (2 * kk)


def steps_to_tolerance(errors: torch.Tensor, tol: float) -> torch.Tensor:
    """The first step at which each run's error falls to ``tol`` times its start, -1 if it never does.

    Parameters
    ----------
    errors : Tensor (T + 1,) or (T + 1, N)
        Positive errors per step (e.g. :attr:`QuadraticRun.error`).
    tol : float
        Relative tolerance in (0, 1).

    Returns
    -------
    Tensor
        int64, () or (N,).
    """
    if not isinstance(errors, torch.Tensor) or errors.ndim not in (1, 2):
        raise ValueError(f"errors: expected a tensor (T + 1,) or (T + 1, N), got {getattr(errors, 'shape', type(errors).__name__)}")
    tol = _positive("tol", tol)
    if tol >= 1:
        raise ValueError(f"tol: expected a relative tolerance in (0, 1), got {tol}")
    hit = errors <= tol * errors[0]  # (T + 1, ...) NaN compares False
    first = hit.to(torch.int64).argmax(0)
    return torch.where(hit.any(0), first, torch.full_like(first, -1))


def loglog_slope(k: torch.Tensor | Sequence[float], values: torch.Tensor | Sequence[float]) -> float:
    """Least-squares slope of ``log(values)`` against ``log(k)``: the exponent p of ``values ~ k^p``.

    Parameters
    ----------
    k, values : sequences of positive numbers, the same length (>= 2)

    Returns
    -------
    float
    """
    x = torch.as_tensor(k, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"k, values: expected two sequences of the same length >= 2, got {len(x)} and {len(y)}")
    if not bool(((x > 0) & (y > 0) & torch.isfinite(x) & torch.isfinite(y)).all()):
        raise ValueError("k, values: expected finite positive numbers (they are taken on a log scale)")
    lx, ly = x.log(), y.log()
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


def sgd_noisy_quadratic(lrs: torch.Tensor | Sequence[Sequence[float]], *, curvatures: torch.Tensor | None = None,
                        noise: float = 1.0, batch_size: int = 1, init: float = 1.0, runs: int = 200,
                        seed: int = 0) -> torch.Tensor:
    r"""Simulate SGD on the noisy quadratic model and average the loss over ``runs`` runs.

    The model of :func:`losslab.schedules.noisy_quadratic_loss`: $f(x) = \tfrac12\sum_i h_i x_i^2$,
    and a minibatch gradient $h_i x_i + \xi_i$ with independent Gaussian
    $\xi_i$ of variance $c\,h_i/B$. Every run starts at $x_i = \sqrt{\text{init}}$
    and takes the steps of :func:`losslab.optim.sgd_step`; the mean of
    the runs' losses estimates the expectation that
    ``noisy_quadratic_loss`` computes exactly.

    Parameters
    ----------
    lrs : array (K, T) or (T,)
        The rate at each step, for K schedules.
    curvatures : Tensor (D,), optional
        $h_i > 0$; default that of ``noisy_quadratic_loss`` (40 values in [0.01, 1]).
    noise, batch_size, init
        $c \ge 0$, $B \ge 1$, $\mathbb E[x_i^2]$ at the start.
    runs : int
        Independent runs per schedule.
    seed : int

    Returns
    -------
    Tensor
        float64, (K, T + 1) (or (T + 1,) for 1-D ``lrs``): the mean loss before the first step and after each.
    """
    eta = torch.as_tensor(lrs, dtype=torch.float64)
    one = eta.ndim == 1
    eta = eta[None] if one else eta
    if eta.ndim != 2 or eta.shape[1] < 1 or not bool(torch.isfinite(eta).all()) or bool((eta < 0).any()):
        raise ValueError(f"lrs: expected finite rates >= 0 of shape (K, T) or (T,), got shape {tuple(torch.as_tensor(lrs).shape)}")
    h = torch.logspace(-2, 0, 40, dtype=torch.float64) if curvatures is None else torch.as_tensor(curvatures, dtype=torch.float64)
    if h.ndim != 1 or not bool((h > 0).all()):
        raise ValueError("curvatures: expected a 1-D tensor of positive numbers")
    noise = _positive("noise", noise, allow_zero=True)
    batch_size = _count("batch_size", batch_size)
    init = _positive("init", init, allow_zero=True)
    runs = _count("runs", runs)
    k, t_max = eta.shape
    g = backend.generator(seed)
    x = torch.full((k * runs, len(h)), math.sqrt(init), dtype=torch.float64)  # (K R, D)
    scale = (noise * h / batch_size).sqrt()  # (D,) noise standard deviation per coordinate
    per_row = eta.repeat_interleave(runs, 0)  # (K R, T)
    kernel = optim.METHODS["sgd"][1]
    loss = [0.5 * (h * x * x).sum(1)]
    state: dict = {}
    with backend.single_thread("cpu"):
        for t in range(t_max):
            xi = torch.randn(x.shape, generator=g).to(torch.float64)  # (K R, D); float32 draws are several times faster
            grad = h * x + scale * xi
            x, state = kernel(x, grad, state, lr=per_row[:, t, None], momentum=0.0, dampening=0.0, nesterov=False,
                              weight_decay=0.0)
            loss.append(0.5 * (h * x * x).sum(1))
    mean = torch.stack(loss, 1).reshape(k, runs, t_max + 1).mean(1)  # (K, T + 1)
    return mean[0] if one else mean


# =============================================================================
# 2. The training loop and its history
# =============================================================================

@dataclass
class History:
    """What :func:`fit` records, and what :func:`diagnose` reads.

    Steps count optimizer updates from 0. ``step_loss[t]`` is the minibatch
    loss computed *before* update ``t`` (with ``terms[name][t]`` its parts,
    ``lr[t]`` the rate used and ``grad_norm[t]`` the global gradient norm
    before clipping). An evaluation at ``eval_steps[e]`` happened after that
    many updates (0: before training) and measured, in evaluation mode, the
    mean loss and accuracy on (part of) the training data and on the
    validation data. Accuracies are NaN for targets that are not class labels.

    Attributes
    ----------
    step_loss, lr, grad_norm : array (T,)
    terms : dict of str to array (T,)
    eval_steps : int array (E,)
    train_loss, val_loss, train_acc, val_acc : array (E,)
    steps_per_epoch : int or None
    n_classes : int or None
    events : list of (step, text)
        What callbacks did (reduced the rate, saved a checkpoint, restored weights...).
    stop_reason : str or None
        Why training ended early (None: it ran its budget).
    restored_step : int or None
        The step whose weights the model holds at the end, if a callback restored them.
    """

    step_loss: Any = field(default_factory=list)
    lr: Any = field(default_factory=list)
    grad_norm: Any = field(default_factory=list)
    terms: dict = field(default_factory=dict)
    eval_steps: Any = field(default_factory=list)
    train_loss: Any = field(default_factory=list)
    val_loss: Any = field(default_factory=list)
    train_acc: Any = field(default_factory=list)
    val_acc: Any = field(default_factory=list)
    steps_per_epoch: int | None = None
    n_classes: int | None = None
    events: list = field(default_factory=list)
    stop_reason: str | None = None
    restored_step: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.step_loss, list):  # built from arrays (tests, synthetic histories)
            self.freeze()

    def freeze(self) -> "History":
        """Turn the recorded lists into float64 arrays (``eval_steps`` int64); return self."""
        self.step_loss = np.asarray(self.step_loss, dtype=np.float64).reshape(-1)
        t = len(self.step_loss)
        self._columns(("lr", "grad_norm"), t, "one per step, like step_loss")
        self.terms = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.terms.items()}
        for k, v in self.terms.items():
            if len(v) != t:
                raise ValueError(f"terms[{k!r}]: expected {t} values (one per step), got {len(v)}")
        self.eval_steps = np.asarray(self.eval_steps, dtype=np.int64).reshape(-1)
        self._columns(("train_loss", "val_loss", "train_acc", "val_acc"), len(self.eval_steps),
                      "one per evaluation, like eval_steps")
        return self

    def _columns(self, names: tuple[str, ...], n: int, what: str) -> None:
        """Make each named record a float64 array of length ``n`` (all NaN when it was not recorded)."""
        for name in names:
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if len(arr) == 0:
                arr = np.full(n, np.nan)
            if len(arr) != n:
                raise ValueError(f"{name}: expected {n} values ({what}), got {len(arr)}")
            setattr(self, name, arr)

    @property
    def steps(self) -> np.ndarray:
        """Step indices 0..T-1, for plotting per-step series."""
        return np.arange(len(self.step_loss))

    @property
    def best_eval(self) -> int | None:
        """Index of the evaluation with the lowest finite validation loss (None without one)."""
        v = np.asarray(self.val_loss, dtype=np.float64)
        if len(v) == 0 or not np.isfinite(v).any():
            return None
        return int(np.nanargmin(np.where(np.isfinite(v), v, np.nan)))

    def __repr__(self) -> str:
        t, e = len(self.step_loss), len(self.eval_steps)
        parts = [f"steps={t}", f"evals={e}"]
        if t:
            parts.append(f"last batch loss={float(self.step_loss[-1]):.4g}")
        b = self.best_eval
        if b is not None:
            parts.append(f"best val loss={float(self.val_loss[b]):.4g} at step {int(self.eval_steps[b])}")
        if self.stop_reason:
            parts.append(f"stopped: {self.stop_reason}")
        if self.restored_step is not None:
            parts.append(f"restored step {self.restored_step}")
        return "History(" + ", ".join(parts) + ")"


@dataclass
class TrainState:
    """What a callback sees: the model, the history so far, the step count and a rate multiplier it may change."""

    model: nn.Module
    history: History
    step: int = 0
    lr_scale: float = 1.0

    @property
    def epoch(self) -> int:
        """Complete epochs so far."""
        p = self.history.steps_per_epoch
        return self.step // p if p else 0

    def __repr__(self) -> str:
        return f"TrainState(step={self.step}, epoch={self.epoch}, lr_scale={self.lr_scale:g})"


class Callback:
    """Base class: hooks called by :func:`fit`. ``on_step`` and ``on_eval`` return a reason to stop, or None.

    A callback that reads the validation loss sets ``needs_val = True``; :func:`fit` then requires a ``val`` split.
    """

    needs_val = False

    def on_step(self, state: TrainState) -> str | None:
        return None

    def on_eval(self, state: TrainState) -> str | None:
        return None

    def on_end(self, state: TrainState) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def early_stopping_point(values: Sequence[float] | np.ndarray | torch.Tensor, patience: int,
                         min_delta: float = 0.0) -> tuple[int, int]:
    r"""Where early stopping with ``patience`` stops on a sequence of validation losses, and which one it keeps.

    Evaluation $i$ *improves* when $v_i < v^* - \delta$, with $v^*$ the best
    value so far (the first value always improves; NaN never does). Training
    stops at the evaluation where ``patience`` evaluations in a row have
    failed to improve, and the weights of the best evaluation are restored
    (Keras' and Lightning's rule). :class:`EarlyStopping` does the same during training.

    Parameters
    ----------
    values : sequence of float, (E,)
        Validation losses, one per evaluation, E >= 1.
    patience : int
        >= 1.
    min_delta : float
        $\delta \ge 0$.

    Returns
    -------
    (stop, best) : (int, int)
        Indices into ``values``; ``stop`` is ``E - 1`` if it never triggers.

    Example
    -------
    >>> early_stopping_point([1.0, 0.8, 0.85, 0.9, 0.7], patience=2)
    (3, 1)
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) < 1:
        raise ValueError("values: expected at least one validation loss")
    patience = _count("patience", patience)
    min_delta = _positive("min_delta", min_delta, allow_zero=True)
    best, best_i, wait = math.inf, 0, 0
    for i, x in enumerate(v):
        if x < best - min_delta:  # 1) an improvement resets the count
            best, best_i, wait = float(x), i, 0
        else:  # 2) otherwise one more evaluation without improvement
            wait += 1
            if wait >= patience:  # 3) patience used up: stop here
                return i, best_i
    return len(v) - 1, best_i


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` evaluations; restore the best weights.

    The rule of :func:`early_stopping_point`, applied as the evaluations
    arrive. With ``restore_best`` the weights at the best evaluation are
    copied (on the model's device) every time the loss improves, and loaded
    back into the model when training ends, for whatever reason it ends.

    Parameters
    ----------
    patience : int
        Evaluations without improvement before stopping, >= 1.
    min_delta : float
        An improvement must beat the best by more than this, >= 0.
    restore_best : bool
        Load the best weights at the end.
    """

    needs_val = True

    def __init__(self, patience: int = 5, *, min_delta: float = 0.0, restore_best: bool = True) -> None:
        self.patience = _count("patience", patience)
        self.min_delta = _positive("min_delta", min_delta, allow_zero=True)
        self.restore_best = bool(restore_best)
        self.best = math.inf
        self.best_step: int | None = None
        self.wait = 0
        self._weights: dict[str, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"EarlyStopping(patience={self.patience}, best={self.best:.4g} at step {self.best_step}, wait={self.wait})"

    def on_eval(self, state: TrainState) -> str | None:
        value = float(state.history.val_loss[-1])
        if value < self.best - self.min_delta:
            self.best, self.best_step, self.wait = value, state.step, 0
            if self.restore_best:
                self._weights = _state_copy(state.model)
            return None
        self.wait += 1
        if self.wait >= self.patience:
            return (f"early stopping: no improvement for {self.patience} evaluations "
                    f"(best validation loss {self.best:.4g} at step {self.best_step})")
        return None

    def on_end(self, state: TrainState) -> None:
        if self.restore_best and self._weights is not None:
            state.model.load_state_dict(self._weights)
            state.history.restored_step = self.best_step
            state.history.events.append((state.step, f"restored the weights of step {self.best_step}"))


class ReduceLROnPlateau(Callback):
    """Multiply the rate by ``factor`` when the validation loss stops improving: :class:`losslab.schedules.ReduceOnPlateau`.

    The multiplier applies on top of :func:`fit`'s rate (a constant or a schedule).
    Each cut is recorded in ``history.events``.

    Parameters
    ----------
    factor, patience, threshold, cooldown, min_scale
        As ``ReduceOnPlateau``'s ``factor``, ``patience``, ``threshold``,
        ``cooldown`` and ``min_lr`` (here a minimum multiplier).
    """

    needs_val = True

    def __init__(self, factor: float = 0.1, patience: int = 3, *, threshold: float = 1e-4, cooldown: int = 0,
                 min_scale: float = 0.0) -> None:
        self.plateau = schedules.ReduceOnPlateau(1.0, factor=factor, patience=patience, threshold=threshold,
                                                 cooldown=cooldown, min_lr=min_scale)

    def __repr__(self) -> str:
        return f"ReduceLROnPlateau({self.plateau!r})"

    def on_eval(self, state: TrainState) -> str | None:
        value = float(state.history.val_loss[-1])
        if math.isnan(value):
            return None  # a NaN is the NaN guard's business
        before = self.plateau.lr
        state.lr_scale = self.plateau.step(value)
        if state.lr_scale < before:
            state.history.events.append((state.step, f"plateau: rate multiplied by {state.lr_scale / before:g}"))
        return None


class NaNGuard(Callback):
    """Stop as soon as the loss or the gradient norm is NaN or infinite (or the loss exceeds ``max_loss``).

    :func:`fit` never applies an update whose gradient is not finite, so the
    weights the model keeps are the last finite ones.
    """

    def __init__(self, max_loss: float | None = None) -> None:
        self.max_loss = None if max_loss is None else _positive("max_loss", max_loss)

    def __repr__(self) -> str:
        return f"NaNGuard(max_loss={self.max_loss})"

    def on_step(self, state: TrainState) -> str | None:
        h, t = state.history, state.step - 1
        loss, norm = float(h.step_loss[-1]), float(h.grad_norm[-1])
        if not math.isfinite(loss) or not math.isfinite(norm):
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            return f"NaN guard: non-finite {what} ({loss if what == 'loss' else norm}) at step {t}"
        if self.max_loss is not None and loss > self.max_loss:
            return f"NaN guard: loss {loss:.4g} above {self.max_loss:g} at step {t}"
        return None


class Checkpoint(Callback):
    """Keep copies of the weights at evaluations: in memory (the last ``keep``), and in ``directory`` if given.

    Parameters
    ----------
    every : int
        Save at every ``every``-th evaluation (>= 1).
    keep : int
        How many in-memory copies to keep (the oldest are dropped).
    directory : str or Path, optional
        Also ``torch.save`` each copy as ``step_<t>.pt`` there.

    Attributes
    ----------
    saved : dict of int to dict
        Step -> state dict (on the model's device).
    """

    def __init__(self, every: int = 1, *, keep: int = 3, directory: str | Path | None = None) -> None:
        self.every = _count("every", every)
        self.keep = _count("keep", keep)
        self.directory = None if directory is None else Path(directory)
        self.saved: dict[int, dict[str, torch.Tensor]] = {}
        self._evals = 0

    def __repr__(self) -> str:
        return f"Checkpoint(every={self.every}, saved steps={sorted(self.saved)})"

    def on_eval(self, state: TrainState) -> str | None:
        self._evals += 1
        if (self._evals - 1) % self.every:
            return None
        self.saved[state.step] = _state_copy(state.model)
        for old in sorted(self.saved)[: max(0, len(self.saved) - self.keep)]:
            del self.saved[old]
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            torch.save(self.saved[state.step], self.directory / f"step_{state.step}.pt")
        return None


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, loss_fn: Callable = F.cross_entropy,
             batch_size: int = 1024) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``split`` in evaluation mode (the mode is restored after).

    Returns
    -------
    (loss, accuracy) : (float, float)
        The accuracy is NaN unless ``split.y`` holds int64 class labels.
    """
    _split("split", split)
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, correct, n = 0.0, 0, len(split)
    classes = split.y.dtype == torch.int64
    for a in range(0, n, batch_size):
        xb, yb = split.x[a:a + batch_size].to(dev), split.y[a:a + batch_size].to(dev)
        out = model(xb)
        total += float(loss_fn(out, yb)) * len(xb)
        if classes:
            correct += int((out.argmax(-1) == yb).sum())
    model.train(was_training)
    return total / n, (correct / n if classes else math.nan)


def _schedule(lr: Any, total: int) -> torch.Tensor:
    """A constant rate or a per-step schedule, as float64 (total,)."""
    if isinstance(lr, (int, float, np.integer, np.floating)) and not isinstance(lr, bool):
        return torch.full((total,), _positive("lr", lr), dtype=torch.float64)
    try:
        table = torch.as_tensor(lr, dtype=torch.float64).reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"lr: expected a number or a 1-D sequence of rates (a schedule), got {type(lr).__name__}") from None
    if len(table) < total:
        raise ValueError(f"lr: a schedule needs a rate for each of the {total} steps, got {len(table)}")
    if not bool(torch.isfinite(table).all()) or bool((table < 0).any()):
        raise ValueError("lr: expected finite rates >= 0")
    return table[:total]


def _set_lr(opt: Any, lr: float) -> None:
    if isinstance(opt, optim.Optimizer):
        opt.update = replace(opt.update, hyper={**opt.update.hyper, "lr": lr})
    else:
        for group in opt.param_groups:
            group["lr"] = lr


def _batches(n: int, batch_size: int, total: int, *, shuffle: bool, generator: torch.Generator):
    """Index tensors of ``total`` minibatches: epoch after epoch, a fresh order each (or stored order)."""
    given = 0
    while given < total:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for a in range(0, n, batch_size):
            if given == total:
                return
            given += 1
            yield order[a:a + batch_size]


def fit(model: nn.Module, train: Split, val: Split | None = None, *, epochs: int = 10, batch_size: int = 32,
        optimizer: str | torch.optim.Optimizer = "sgd", lr: Any = 0.05, max_steps: int | None = None,
        shuffle: bool = True, loss_fn: Callable = F.cross_entropy,
        extra_terms: Mapping[str, Callable[[nn.Module], torch.Tensor]] | None = None,
        clip_norm: float | None = None, callbacks: Sequence[Callback] = (), eval_every: int | None = None,
        eval_train: int = 500, batch_hook: Callable | None = None, device: torch.device | str | None = None,
        seed: int = 0, progress: bool = False, **hyper: Any) -> History:
    r"""Train ``model`` on ``train`` with minibatch steps, and record everything :func:`diagnose` needs.

    One step:

    1. take the next ``batch_size`` examples (a fresh random order every epoch when ``shuffle``);
    2. set the rate: ``lr[t]`` (a constant, or a schedule from :mod:`losslab.schedules`)
       times the multiplier callbacks may set (:class:`ReduceLROnPlateau`);
    3. the loss is ``loss_fn(model(x), y)`` (term ``"data"``) plus each of ``extra_terms``
       (e.g. ``{"l2": lambda m: 1e-4 * sum((p ** 2).sum() for p in m.parameters())}``),
       each term logged separately;
    4. backward; the global gradient norm is recorded (before clipping); with
       ``clip_norm`` the gradients are clipped by ``torch.nn.utils.clip_grad_norm_``;
    5. the optimizer steps, unless the gradient is NaN or infinite (that step is
       skipped and recorded, and a :class:`NaNGuard` stops the run);
    6. every ``eval_every`` steps (and before the first and after the last step),
       evaluate on the first ``eval_train`` training examples and on ``val``;
       callbacks may then stop training. Their ``on_end`` runs last (it may restore weights).

    Parameters
    ----------
    model : nn.Module
        Trained in place; it runs on ``device`` (default: the device of its
        parameters), and the data are moved there.
    train, val : Split
        ``x`` (N, ...) float, ``y`` (N,) int64 labels (or targets ``loss_fn`` accepts).
    epochs : int
        Passes over ``train``.
    batch_size : int
        The last batch of an epoch may be smaller.
    optimizer : str or torch.optim.Optimizer
        A method of :func:`losslab.optim.optimizer` ("sgd", "adam", "adamw",
        "rmsprop", "adagrad"; the book's own, with ``**hyper`` such as
        ``momentum=0.9``), or a ready ``torch.optim`` optimizer over ``model``'s parameters.
    lr : float or sequence of float
        A constant rate, or one rate per step (at least ``max_steps`` of them), e.g.
        ``schedules.warmup_cosine_lr(torch.arange(T), base_lr=0.1, warmup=50, total=T)``.
    max_steps : int, optional
        A budget of updates, below ``epochs`` times the steps per epoch.
    shuffle : bool
        Reshuffle every epoch (seeded by ``seed``); False walks the data in stored order.
    loss_fn : callable
        ``loss_fn(output, y) -> scalar``.
    extra_terms : mapping of str to callable, optional
        Named terms added to the loss, each ``f(model) -> scalar``.
    clip_norm : float, optional
        Clip the global gradient norm to this value.
    callbacks : sequence of Callback
    eval_every : int, optional
        Steps between evaluations; default once per epoch.
    eval_train : int
        How many training examples the evaluation uses.
    batch_hook : callable, optional
        ``batch_hook(step, x, y) -> (x, y)`` applied to each batch (to corrupt some, in experiments).
    device : torch.device or str, optional
    seed : int
        Order of the examples.
    progress : bool
        Show a tqdm progress bar (``tqdm.auto``: a widget in Jupyter, text on the
        terminal's stderr). Off by default, and off in the book.
    **hyper
        The optimizer's hyperparameters when ``optimizer`` is a method name.

    Returns
    -------
    History

    Raises
    ------
    TypeError, ValueError
        For a model without parameters, bad splits, a schedule too short, bad counts or rates,
        hyperparameters given with a ready optimizer.

    Example
    -------
    >>> train, val, _ = data.digits()
    >>> hist = fit(mlp([64, 32, 10]), train, val, epochs=2, lr=0.05, momentum=0.9)
    >>> len(hist.step_loss), hist.eval_steps.tolist()
    (64, [0, 32, 64])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: expected trainable parameters, found none")
    train = _split("train", train)
    if val is not None:
        val = _split("val", val)
    epochs = _count("epochs", epochs)
    batch_size = _count("batch_size", batch_size)
    eval_train = _count("eval_train", eval_train)
    dev = torch.device(device) if device is not None else params[0].device
    model.to(dev)
    n = len(train)
    per_epoch = math.ceil(n / batch_size)
    total = epochs * per_epoch if max_steps is None else min(_count("max_steps", max_steps), epochs * per_epoch)
    eval_every = per_epoch if eval_every is None else _count("eval_every", eval_every)
    lrs = _schedule(lr, total)
    if clip_norm is not None:
        clip_norm = _positive("clip_norm", clip_norm)
    extra = dict(extra_terms or {})
    for name, f in extra.items():
        if not callable(f):
            raise TypeError(f"extra_terms[{name!r}]: expected a callable f(model) -> scalar, got {type(f).__name__}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}]: expected a losslab.train.Callback, got {type(cb).__name__}")
        if cb.needs_val and val is None:
            raise ValueError(f"callbacks[{i}]: {type(cb).__name__} reads the validation loss; pass a val split")
    if isinstance(optimizer, str):
        opt: Any = optim.Optimizer(params, optimizer, lr=float(lrs[0]) if total else 0.0, **hyper)
    elif isinstance(optimizer, torch.optim.Optimizer):
        if hyper:
            raise ValueError(f"hyper: a ready torch.optim optimizer takes no extra hyperparameters, got {sorted(hyper)}")
        opt = optimizer
    else:
        raise TypeError(f"optimizer: expected a method name or a torch.optim.Optimizer, got {type(optimizer).__name__}")

    x_all, y_all = train.x.to(dev), train.y.to(dev)
    train_eval = Split(train.x[:eval_train], train.y[:eval_train])
    classes = train.y.dtype == torch.int64
    n_classes = None
    if classes:
        n_classes = int(train.y.max()) + 1 if val is None else int(max(int(train.y.max()), int(val.y.max()))) + 1
    history = History(steps_per_epoch=per_epoch, n_classes=n_classes, terms={"data": [], **{k: [] for k in extra}})
    state = TrainState(model, history)
    order_gen = backend.generator(seed)

    def record_eval() -> str | None:
        tl, ta = evaluate(model, train_eval, loss_fn=loss_fn)
        vl, va = evaluate(model, val, loss_fn=loss_fn) if val is not None else (math.nan, math.nan)
        history.eval_steps.append(state.step)
        history.train_loss.append(tl)
        history.train_acc.append(ta)
        history.val_loss.append(vl)
        history.val_acc.append(va)
        reasons = [cb.on_eval(state) for cb in callbacks]
        return next((r for r in reasons if r), None)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        # 1) the rate: the schedule's, times what callbacks set
        rate = float(lrs[state.step]) * state.lr_scale
        _set_lr(opt, rate)
        # 2) the loss and each of its terms
        terms = {"data": loss_fn(model(xb), yb), **{k: f(model) for k, f in extra.items()}}
        loss = sum(terms.values())
        # 3) gradients; their global norm before clipping; clipping
        opt.zero_grad()
        loss.backward()
        if clip_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
        else:
            norm = float(global_grad_norm([p.grad for p in params if p.grad is not None]))
        # 4) the update, unless the loss or the gradient is NaN or infinite
        loss_value = float(loss.detach())
        if math.isfinite(norm) and math.isfinite(loss_value):
            opt.step()
        else:
            history.events.append((state.step, "skipped the update: non-finite loss or gradient"))
        # 5) the record
        history.step_loss.append(loss_value)
        history.lr.append(rate)
        history.grad_norm.append(norm)
        for k, v in terms.items():
            history.terms[k].append(float(v.detach()))
        state.step += 1

    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415 (only when asked: the book builds without it)

        bar = tqdm(total=total, desc="training", unit="step")
    model.train()
    try:
        with backend.single_thread(dev):
            stop = record_eval()
            batches = _batches(n, batch_size, total, shuffle=shuffle, generator=order_gen)
            while stop is None and state.step < total:
                idx = next(batches).to(dev)  # (B,)
                xb, yb = x_all[idx], y_all[idx]  # (B, ...), (B,)
                if batch_hook is not None:
                    xb, yb = batch_hook(state.step, xb, yb)
                step(xb, yb)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history.step_loss[-1]:.4f}", refresh=False)
                stop = next((r for r in (cb.on_step(state) for cb in callbacks) if r), None)
                if stop is None and (state.step % eval_every == 0 or state.step == total):
                    stop = record_eval()
            if stop is not None and history.eval_steps[-1] != state.step:
                record_eval()  # the state the run ended in
            for cb in callbacks:
                cb.on_end(state)
    finally:
        if bar is not None:
            bar.close()
    history.stop_reason = stop
    return history.freeze()


def mlp(sizes: Sequence[int], *, seed: int = 0, activation: type[nn.Module] = nn.ReLU,
        device: torch.device | str = "cpu") -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` with PyTorch's default initialization, seeded.

    The global random state is left as it was (``torch.random.fork_rng``).

    Example
    -------
    >>> mlp([64, 32, 10])
    Sequential(
      (0): Linear(in_features=64, out_features=32, bias=True)
      (1): ReLU()
      (2): Linear(in_features=32, out_features=10, bias=True)
    )
    """
    sizes = [_count(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least an input and an output size, got {sizes}")
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
    return nn.Sequential(*layers).to(device)


# =============================================================================
# 3. Reading a history: the diagnosis
# =============================================================================

#: Every name :func:`diagnose` may return, with what it means.
PATHOLOGIES: dict[str, str] = {
    "diverged": "the loss became NaN or infinite, or ended far above where it started",
    "spikes": "isolated jumps of the minibatch loss far above its recent level",
    "unshuffled": "the minibatch loss repeats itself every epoch: the batches come in the same order",
    "bad-initial-loss": "the loss before training is far from log K, the loss of uniform predictions",
    "too-slow": "the loss is still falling steadily at the end, far from where it could be",
    "underfitting": "the training loss has levelled off high, with validation close to it",
    "plateau": "a long stretch without progress, before training found its way down (or never did)",
    "overfitting": "the validation loss rose from its minimum while the training loss kept falling",
    "healthy": "none of the above",
}

_ADVICE = {
    "diverged": "lower the learning rate (by 3-10x), add warmup, clip the gradient norm; find the first NaN with anomaly detection",
    "spikes": "look at the batches at those steps (outliers, corrupt labels); clip the gradient norm or lower the rate",
    "unshuffled": "shuffle the training data every epoch",
    "bad-initial-loss": "check the input normalization and the initialization (the last layer's scale)",
    "too-slow": "raise the learning rate (an LR range test finds it) or train longer",
    "underfitting": "use a bigger model, train longer, reduce regularization, and check the labels",
    "plateau": "check the initialization scale; warmup, normalization or Adam help to leave a plateau",
    "overfitting": "stop early (keep the best weights), add regularization or data",
    "healthy": "nothing to fix; compare against a stronger baseline",
}


@dataclass(frozen=True)
class Finding:
    """One named pathology, the numbers that show it, and what to try.

    Attributes
    ----------
    name : str
        A key of :data:`PATHOLOGIES`.
    evidence : str
        What in the history shows it, with numbers.
    advice : str
        What to try.
    step : int or None
        Where it shows (the first NaN, the best validation step...).
    """

    name: str
    evidence: str
    advice: str = ""
    step: int | None = None

    def __str__(self) -> str:
        return f"{self.name}: {self.evidence}"


def _finding(name: str, evidence: str, step: int | None = None) -> Finding:
    return Finding(name, evidence, _ADVICE[name], None if step is None else int(step))


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving median of ``x`` (window clipped at the start), (T,)."""
    out = np.empty_like(x)
    for t in range(len(x)):
        out[t] = np.median(x[max(0, t - window + 1):t + 1])
    return out


def _at(steps: np.ndarray, values: np.ndarray, step: float) -> float:
    return float(np.interp(step, steps, values))


def diagnose(history: History, *, spike_factor: float = 3.0) -> list[Finding]:
    """Name the likely pathologies of a training run, each with the evidence for it.

    The checks, in order (thresholds in the Notes):

    1. **diverged**: a NaN or infinite loss, a last loss above 10 times the first,
       or a smoothed loss that ends above 1.5 times, or ever rises above 10
       times, where it started. When a run
       diverged, only check 4 follows (the trends of a broken run mean nothing).
    2. **spikes**: minibatch losses above ``spike_factor`` times the median of
       the preceding steps *and* above it by more than a quarter of the initial loss.
    3. **unshuffled**: the step-to-step changes of the log loss correlate
       (> 0.5) with those one epoch earlier.
    4. **bad-initial-loss**: with K classes, the loss at step 0 differs from
       $\\log K$ by more than a quarter of $\\log K$.
    5. **too-slow**: the training loss ends above 20% of its start, and the last
       third of training still brought more than a quarter of the total decrease.
    6. **underfitting**: the training loss ends above 20% of its start, the last
       third brought less than a quarter of the decrease, and validation is within 30% of training.
    7. **plateau**: the best (smoothed) loss so far improved by less than 10%, and
       by less than a tenth of the run's total improvement, over at least a fifth of the run, either from the very start (within 10% of the initial
       loss) or before a later fall of more than 30%.
    8. **overfitting**: the validation loss ends more than 10% (and 0.01) above
       its minimum while the training loss is lower than at that minimum.

    **healthy** when none of them fires.

    Parameters
    ----------
    history : History
        From :func:`fit` (or built by hand), with at least 2 steps (short runs only show divergence).
    spike_factor : float
        > 1.

    Returns
    -------
    list of Finding
        Never empty.

    Notes
    -----
    These are heuristics that read one run; they name what to look at first,
    not a proof. The thresholds are set so that the runs of :func:`run_with_bug`
    and :func:`synthetic_history` get their intended name (the tests check this)
    and a healthy run gets none.
    """
    if not isinstance(history, History):
        raise TypeError(f"history: expected a losslab.train.History, got {type(history).__name__}")
    if isinstance(history.step_loss, list):
        history = copy.copy(history).freeze()
    spike_factor = _positive("spike_factor", spike_factor)
    if spike_factor <= 1:
        raise ValueError(f"spike_factor: expected > 1, got {spike_factor}")
    loss = np.asarray(history.step_loss, dtype=np.float64)
    t_max = len(loss)
    if t_max < 2:
        raise ValueError(f"history: expected at least 2 recorded steps to diagnose, got {t_max}")
    found: list[Finding] = []
    window = max(5, min(25, t_max // 20))
    finite = np.isfinite(loss)
    n_ok = int(np.argmin(finite)) if not finite.all() else t_max  # steps before the first non-finite loss
    ok = loss[:n_ok]
    start = float(np.median(ok[: max(1, min(5, n_ok // 10))])) if n_ok else math.nan  # the level before training moved it

    # 1) divergence
    diverged = False
    if n_ok < t_max:
        last = f"{ok[-1]:.4g} at step {n_ok - 1}" if n_ok else "never finite"
        found.append(_finding("diverged", f"the training loss became {loss[n_ok]} at step {n_ok} (it was {last})", n_ok))
        diverged = True
    elif loss[-1] > 10 * start:
        found.append(_finding("diverged", f"the training loss ended at {loss[-1]:.4g}, {loss[-1] / start:.0f} times "
                                          f"where it started ({start:.4g})", t_max - 1))
        diverged = True
    else:
        smooth = _smooth(loss, window)
        peak = int(np.argmax(smooth))
        if smooth[-1] > 1.5 * start or smooth[peak] > 10 * start:
            found.append(_finding("diverged", f"the smoothed loss rose from {start:.4g} to {smooth[peak]:.4g} (step {peak}) "
                                              f"and ended at {smooth[-1]:.4g}", peak))
            diverged = True
    val = np.asarray(history.val_loss, dtype=np.float64)
    if not diverged and len(val) and not np.isfinite(val).all():
        e = int(np.argmin(np.isfinite(val)))
        found.append(_finding("diverged", f"the validation loss became {val[e]} at step {int(history.eval_steps[e])}",
                              int(history.eval_steps[e])))
        diverged = True

    # 2) spikes (in a diverged run, its blow-up would count as many)
    if not diverged and n_ok > 2 * window:
        from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

        ref = np.median(sliding_window_view(ok[:-1], window), axis=1)  # (n_ok - window,): median of the steps before t
        cur = ok[window:]
        jump = (cur > spike_factor * ref) & (cur - ref > 0.25 * start)
        where = np.flatnonzero(jump) + window
        if len(where):
            top = where[np.argsort(-(ok[where] - ref[where - window]))][:3]
            shown = ", ".join(f"step {t} ({ok[t]:.3g} vs {ref[t - window]:.3g} before)" for t in sorted(top))
            kind = "frequent" if len(where) > 0.05 * n_ok else "isolated"
            found.append(_finding("spikes", f"{len(where)} {kind} spike(s) in {n_ok} steps: {shown}", int(where[0])))

    # 4) the loss before training
    k = history.n_classes
    if k is not None and k >= 2:
        first = float(history.train_loss[0]) if len(history.eval_steps) and history.eval_steps[0] == 0 \
            and np.isfinite(history.train_loss[0]) else float(loss[0])
        if abs(first - math.log(k)) > 0.25 * math.log(k):
            found.append(_finding("bad-initial-loss", f"the loss before training is {first:.4g}, but a model that predicts "
                                                      f"all {k} classes equally has log {k} = {math.log(k):.4g}", 0))
    if diverged:
        return found

    # 3) the same batches in the same order every epoch
    p = history.steps_per_epoch
    if p is not None and p >= 4 and t_max >= 3 * p:
        d = np.diff(np.log(np.maximum(loss, 1e-12)))  # (T - 1,)
        a, b = d[:-p], d[p:]
        if a.std() > 0 and b.std() > 0:
            corr = float(np.corrcoef(a, b)[0, 1])
            if corr > 0.5:
                found.append(_finding("unshuffled", f"the changes of the minibatch loss correlate at {corr:.2f} with those "
                                                    f"one epoch ({p} steps) earlier"))

    # 5-7) the training curve: evaluation-mode losses if there are enough, else the smoothed minibatch loss
    ev = np.asarray(history.eval_steps)
    tl = np.asarray(history.train_loss, dtype=np.float64)
    if len(ev) >= 5 and np.isfinite(tl).all():
        steps, curve = ev.astype(np.float64), tl
    else:
        steps, curve = np.arange(t_max, dtype=np.float64), _smooth(loss, window)
    c0, c_end = float(curve[0]), float(curve[-1])
    total_drop = c0 - c_end
    late_drop = _at(steps, curve, steps[0] + 2 / 3 * (steps[-1] - steps[0])) - c_end
    late_share = late_drop / total_drop if total_drop > 0 else 0.0
    if c_end > 0.2 * c0 and total_drop > 0.02 * c0 and late_share > 0.25:
        found.append(_finding("too-slow", f"the training loss fell from {c0:.4g} to {c_end:.4g} and is still falling: the "
                                          f"last third of the run brought {late_share:.0%} of the decrease"))
    elif c_end > 0.2 * c0:
        v_end = float(val[-1]) if len(val) and np.isfinite(val[-1]) else math.nan
        close = math.isnan(v_end) or abs(v_end - c_end) < 0.3 * c_end
        if close:
            gap = "" if math.isnan(v_end) else f", validation {v_end:.4g}"
            found.append(_finding("underfitting", f"the training loss levelled off at {c_end:.4g} ({c_end / c0:.0%} of its "
                                                  f"start{gap}); the last third brought {max(late_share, 0):.0%} of the decrease"))

    if len(ev) >= 10 and np.isfinite(tl).all():
        p_steps, p_curve = ev.astype(np.float64), tl  # exact losses beat noisy minibatch ones
    else:
        p_steps, p_curve = np.arange(t_max, dtype=np.float64), _smooth(loss, window)
    best = np.minimum.accumulate(p_curve)  # best loss so far
    total = best[0] - best[-1]
    span, where_from, a = 0.0, 0, 0
    for b in range(len(best)):  # the longest stretch [a, b] without progress: under 10% and under a tenth of the total
        while best[a] - best[b] > min(0.1 * best[b], max(0.1 * total, 0.002 * best[0])):
            a += 1
        if p_steps[b] - p_steps[a] > span:
            span, where_from, end = p_steps[b] - p_steps[a], a, b
    if span >= 0.2 * (p_steps[-1] - p_steps[0]) and span > 0:
        level, after = float(best[where_from]), float(best[-1])
        from_start = where_from == 0 or (p_steps[where_from] <= window and level > 0.9 * start)  # stuck where it started
        escaped = after < 0.7 * float(best[end])  # and fell a long way after the stretch
        if from_start or escaped:
            what = f"then fell to {after:.4g}" if after < 0.95 * float(best[end]) else "and never left it"
            s0, s1 = int(p_steps[where_from]), int(p_steps[end])
            found.append(_finding("plateau", f"the loss stayed at about {level:.4g} from step {s0} to step {s1} "
                                             f"({span / (p_steps[-1] - p_steps[0]):.0%} of the run), {what}", s0))

    # 8) overfitting
    if len(val) >= 4 and np.isfinite(val).all():
        i = int(np.argmin(val))
        rise = float(val[-1] - val[i])
        if i < len(val) - 1 and rise > 0.1 * val[i] and rise > 0.01 and tl[-1] < tl[i]:
            found.append(_finding("overfitting", f"the validation loss rose from its minimum {val[i]:.4g} at step {int(ev[i])} "
                                                 f"to {val[-1]:.4g}, while the training loss fell from {tl[i]:.4g} to "
                                                 f"{tl[-1]:.4g} (gap now {val[-1] - tl[-1]:.4g})", int(ev[i])))
    if not found:
        gap = f", validation {val[-1]:.4g}" if len(val) and np.isfinite(val[-1]) else ""
        found.append(_finding("healthy", f"the training loss fell from {c0:.4g} to {c_end:.4g}{gap}; no spikes, "
                                         "no divergence, no rising validation loss"))
    return found


def report(findings: Sequence[Finding]) -> str:
    """The findings as text, one per paragraph, with the advice."""
    return "\n".join(f"- {f.name}: {f.evidence}\n  try: {f.advice}" for f in findings)


# -- histories with a known pathology ---------------------------------------------

SYNTHETIC = ("healthy", "diverged", "spikes", "unshuffled", "bad-initial-loss", "too-slow", "underfitting",
             "plateau", "overfitting")


def synthetic_history(kind: str, *, steps: int = 600, steps_per_epoch: int = 30, seed: int = 0) -> History:
    """A hand-made training history showing one pathology, for tests and exercises.

    Curves are simple formulas (exponential decays, a rise, a step) plus
    multiplicative minibatch noise; 10 classes, so the loss before training is
    $\\log 10$ except for ``"bad-initial-loss"``. Evaluations every epoch.

    Parameters
    ----------
    kind : str
        One of :data:`SYNTHETIC`.
    steps, steps_per_epoch : int
    seed : int

    Returns
    -------
    History
    """
    if kind not in SYNTHETIC:
        raise ValueError(f"kind: expected one of {SYNTHETIC}, got {kind!r}")
    steps = _count("steps", steps, 60)
    p = _count("steps_per_epoch", steps_per_epoch, 4)
    rng = np.random.default_rng(seed)
    t = np.arange(steps + 1, dtype=np.float64)
    s = t / steps  # 0..1
    l0 = math.log(10)
    floor = 0.05
    train = floor + (l0 - floor) * np.exp(-8 * s)  # healthy: fast, then levelled
    val = 0.12 + (l0 - 0.12) * np.exp(-8 * s)
    noise = 0.12
    if kind == "too-slow":
        train = l0 * np.exp(-0.6 * s)
        val = 1.03 * train
    elif kind == "underfitting":
        train = 1.1 + (l0 - 1.1) * np.exp(-12 * s)
        val = 1.05 * train + 0.02
    elif kind == "overfitting":
        train = 0.01 + (l0 - 0.01) * np.exp(-7 * s)
        val = 0.35 + (l0 - 0.35) * np.exp(-14 * s) + 0.8 * np.clip(s - 0.3, 0, None)
    elif kind == "plateau":
        late = np.clip(s - 0.4, 0, None)
        train = floor + (l0 - floor) * np.exp(-10 * late)
        val = train + 0.07
    elif kind == "bad-initial-loss":
        train = floor + (25.0 - floor) * np.exp(-12 * s)
        val = train + 0.07
    elif kind == "diverged":
        train = np.where(s < 0.3, floor + (l0 - floor) * np.exp(-8 * s), np.exp(40 * (s - 0.3)))
        val = train + 0.07
    batch = train[:-1] * np.exp(noise * rng.standard_normal(steps))
    if kind == "spikes":
        for at in (0.35, 0.6, 0.8):
            batch[int(at * steps)] = 4 * l0
    if kind == "unshuffled":
        phase = (np.arange(steps) % p) / p
        batch = batch * np.exp(0.7 * np.sin(2 * np.pi * phase * 3))
    if kind == "diverged":
        batch[batch > 1e6] = np.inf
        first = int(np.argmax(~np.isfinite(batch))) if not np.isfinite(batch).all() else steps
        batch[first + 1:] = np.nan
    ev = np.arange(0, steps + 1, p)
    if ev[-1] != steps:
        ev = np.append(ev, steps)
    tl = np.interp(ev, t, train)
    vl = np.interp(ev, t, val)
    if kind == "diverged":
        tl = np.where(tl > 1e6, np.nan, tl)
        vl = np.where(vl > 1e6, np.nan, vl)
    return History(step_loss=batch, lr=np.full(steps, 0.05), grad_norm=np.full(steps, np.nan),
                   eval_steps=ev, train_loss=tl, val_loss=vl, steps_per_epoch=p, n_classes=10)


# =============================================================================
# 4. Real runs with deliberate bugs, and debugging helpers
# =============================================================================

#: The bugs :func:`run_with_bug` can plant in an otherwise healthy digits run.
BUGS: dict[str, str] = {
    "none": "the healthy baseline: standardized inputs, shuffled, 64-64-10 MLP, SGD at rate 0.2, batches of 64",
    "lr x100": "the learning rate multiplied by 100",
    "lr /100": "the learning rate divided by 100",
    "no shuffling": "examples sorted by label and never shuffled",
    "label noise": "40% of the labels of 300 training examples replaced by random ones, trained 10 times longer",
    "tiny model": "a hidden layer of 2 units instead of 64",
    "no normalization": "raw pixel values 0-16 instead of standardized features",
}


def digits_unnormalized(n_train: int = 1000, n_val: int = 397, *, seed: int = 0) -> tuple[Split, Split, Split]:
    """:func:`losslab.data.digits` without the standardization: raw pixel values 0-16, same order and splits."""
    return data.digits(n_train, n_val, seed=seed, standardize=False)


@lru_cache(maxsize=2)
def _digits(normalized: bool) -> tuple[Split, Split, Split]:
    return data.digits(seed=0) if normalized else digits_unnormalized(seed=0)


@dataclass
class BugSetup:
    """Everything :func:`run_with_bug` passes to :func:`fit`: a fresh model, the data, and the settings."""

    model: nn.Module
    train: Split
    val: Split
    settings: dict

    def __repr__(self) -> str:
        return f"BugSetup(train={len(self.train)} examples, settings={self.settings})"

    def fit(self, **overrides: Any) -> History:
        """:func:`fit` with these settings (``overrides`` replace or add settings, e.g. ``callbacks``)."""
        return fit(self.model, self.train, self.val, **{**self.settings, **overrides})


def bug_setup(bug: str, *, epochs: int = 10, seed: int = 0, device: torch.device | str = "cpu") -> BugSetup:
    """The digits run of :func:`run_with_bug` with one bug from :data:`BUGS`, not yet trained."""
    if bug not in BUGS:
        raise ValueError(f"bug: expected one of {list(BUGS)}, got {bug!r}")
    epochs = _count("epochs", epochs)
    train, val, _ = _digits(bug != "no normalization")
    hidden, lr, shuffle = 64, 0.2, True
    if bug == "lr x100":
        lr = 20.0
    elif bug == "lr /100":
        lr = 2e-3
    elif bug == "tiny model":
        hidden = 2
    elif bug == "no shuffling":
        order = torch.argsort(train.y, stable=True)
        train, shuffle = Split(train.x[order], train.y[order]), False
    elif bug == "label noise":
        g = backend.generator(seed + 1)
        x, y = train.x[:300], train.y[:300].clone()
        flip = torch.rand(len(y), generator=g) < 0.4
        y[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=g)
        train, epochs = Split(x, y), 10 * epochs  # a small noisy set, trained long
    model = mlp([64, hidden, 10], seed=seed, device=device)
    settings = dict(epochs=epochs, batch_size=64, optimizer="sgd", lr=lr, shuffle=shuffle, seed=seed, device=device,
                    callbacks=[NaNGuard()])
    return BugSetup(model, train, val, settings)


def run_with_bug(bug: str, *, epochs: int = 10, seed: int = 0, device: torch.device | str = "cpu") -> History:
    """Train the digits MLP with one bug from :data:`BUGS` planted (``"none"``: the healthy run).

    The baseline: 1,000 standardized training digits, 397 for validation, a
    64-64-10 ReLU MLP, plain SGD at rate 0.2, batches of 64, shuffled every
    epoch, ``epochs`` epochs, a :class:`NaNGuard`. :func:`bug_setup` gives the
    same run untrained, to add callbacks.

    Returns
    -------
    History
    """
    return bug_setup(bug, epochs=epochs, seed=seed, device=device).fit()


def grad_norms_by_layer(model: nn.Module) -> dict[str, float]:
    """The norm of each parameter's ``.grad`` after a backward pass (NaN where there is none), by parameter name."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return {name: (float(p.grad.norm()) if p.grad is not None else math.nan) for name, p in model.named_parameters()}


def find_nonfinite(closure: Callable[[], torch.Tensor]) -> str | None:
    """Run ``closure()`` (which returns a loss) and its backward pass under anomaly detection.

    ``torch.autograd.detect_anomaly`` checks the output of every backward
    function and raises at the first NaN, naming the operation; its warnings
    (the mode's cost, and the forward traceback) are captured, not printed.

    Returns
    -------
    str or None
        The first line of the error (e.g. ``"Function 'SqrtBackward0' returned nan values in its 0th output."``),
        or None if the loss and every gradient are finite.
    """
    if not callable(closure):
        raise TypeError(f"closure: expected a function returning a loss, got {type(closure).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autograd.detect_anomaly(check_nan=True):
                loss = closure()
                if not bool(torch.isfinite(loss).all()):
                    return f"the forward pass returned a non-finite loss ({float(loss)})"
                loss.backward()
        except RuntimeError as err:
            return str(err).strip().splitlines()[0]
    return None


def describe_batch(x: torch.Tensor, y: torch.Tensor) -> str:
    """One line per tensor: shape, dtype, device, range, mean and standard deviation (or the classes present)."""
    lines = []
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        desc = f"{name}: shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')}, {t.device.type}"
        if t.is_floating_point():
            tt = t.double()
            desc += f", range [{float(tt.min()):.3g}, {float(tt.max()):.3g}], mean {float(tt.mean()):.3g}, std {float(tt.std()):.3g}"
        else:
            vals = torch.unique(t)
            desc += f", {len(vals)} distinct values from {int(vals.min())} to {int(vals.max())}"
        lines.append(desc)
    return "\n".join(lines)


# --- depth: the non-convex SGD guarantee, and Adam's loss spikes -------------------------------

def nonconvex_objective(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The separable non-convex test function $f(\theta) = \sum_i \big(\tfrac12\theta_i^2 + 2\cos\theta_i\big)$ and its gradient.

    Each coordinate has a local maximum at 0 and minima at $\pm 1.8955$, so $f$
    is not convex; $f'' = 1 - 2\cos\theta_i \in [-1, 3]$, so it is $L$-smooth
    with $L = 3$ and bounded below by $f^\star = d\,(\tfrac12 x_\star^2 + 2\cos x_\star)$
    (:data:`NONCONVEX_L`, :func:`nonconvex_min`). See Chapter 8.

    Parameters
    ----------
    theta : Tensor
        (..., d).

    Returns
    -------
    (Tensor, Tensor)
        $f$ of shape (...,) and $\nabla f$ of shape (..., d).
    """
    theta = _checks.floating("theta", theta)
    return (0.5 * theta**2 + 2 * torch.cos(theta)).sum(-1), theta - 2 * torch.sin(theta)


NONCONVEX_L = 3.0


def nonconvex_min(dim: int) -> float:
    """The minimum $f^\\star$ of :func:`nonconvex_objective` in ``dim`` dimensions (Newton on $x = 2\\sin x$)."""
    dim = _count("dim", dim)
    x = 1.9
    for _ in range(50):
        x -= (x - 2 * math.sin(x)) / (1 - 2 * math.cos(x))
    return dim * (0.5 * x * x + 2 * math.cos(x))


def sgd_nonconvex(horizons: Sequence[int], *, dim: int = 10, noise: float = 1.0, runs: int = 200,
                  start: float = 4.0, seed: int = 0) -> dict[str, torch.Tensor]:
    r"""SGD on :func:`nonconvex_objective` with the step $\eta = \min(1/L,\ c/\sqrt T)$ tuned to each horizon $T$.

    The stochastic gradient is $\nabla f(\theta) + \sigma\xi$, $\xi \sim \mathcal N(0, I/d)$,
    so its variance is $\sigma^2$ in total. For an $L$-smooth $f$ bounded
    below, $T$ steps of size $\eta \le 1/L$ give
    $\frac1T\sum_{t<T}\mathbb E\|\nabla f(\theta_t)\|^2 \le \frac{2\Delta}{\eta T} + L\eta\sigma^2$,
    $\Delta = f(\theta_0) - f^\star$ (Ghadimi and Lan, 2013); with $c = \sqrt{2\Delta/(L\sigma^2)}$
    the bound is $2\sqrt{2\Delta L\sigma^2/T}$: $O(1/\sqrt T)$. All horizons
    and runs advance together in one batched loop. See Chapter 8.

    Parameters
    ----------
    horizons : sequence of int
        H horizons $T \ge 1$.
    dim : int
        $d$.
    noise : float
        $\sigma > 0$.
    runs : int
        R independent runs per horizon (the expectation is their mean).
    start : float
        Every run starts at $\theta_0 = (\text{start}, \dots)$.
    seed : int

    Returns
    -------
    dict
        ``horizons`` (H,); ``lr`` (H,); ``mean_sq_grad`` (H,), the average over
        $t < T$ of the runs' mean $\|\nabla f(\theta_t)\|^2$; ``min_sq_grad``
        (H,), the smallest over $t < T$ of that mean; ``bound`` (H,), the right-hand side above.
    """
    hs = [_count(f"horizons[{i}]", h) for i, h in enumerate(horizons)]
    if not hs:
        raise ValueError("horizons: expected at least one horizon")
    dim, runs = _count("dim", dim), _count("runs", runs)
    sigma = _positive("noise", noise)
    x0 = float(_checks.number("start", start))
    theta0 = torch.full((dim,), x0, dtype=torch.float64)
    delta = float(nonconvex_objective(theta0)[0]) - nonconvex_min(dim)
    c = math.sqrt(2 * delta / (NONCONVEX_L * sigma**2))
    T = torch.tensor(hs, dtype=torch.float64)  # (H,)
    lr = torch.minimum(torch.full_like(T, 1 / NONCONVEX_L), c / T.sqrt())  # (H,)
    g = torch.Generator().manual_seed(seed)
    theta = theta0.expand(len(hs), runs, dim).clone()  # (H, R, d)
    total = torch.zeros(len(hs), dtype=torch.float64)
    best = torch.full((len(hs),), math.inf, dtype=torch.float64)
    with backend.single_thread("cpu"):
        for t in range(max(hs)):
            grad = nonconvex_objective(theta)[1]  # (H, R, d)
            sq = (grad**2).sum(-1).mean(-1)  # (H,): the runs' mean squared gradient norm
            active = t < T  # horizons still running
            total += torch.where(active, sq, torch.zeros_like(sq))
            best = torch.where(active, torch.minimum(best, sq), best)
            noisy = grad + sigma / math.sqrt(dim) * torch.randn(theta.shape, generator=g, dtype=torch.float64)
            theta = theta - (lr * active)[:, None, None] * noisy
    mean_sq = total / T
    bound = 2 * delta / (lr * T) + NONCONVEX_L * lr * sigma**2
    return {"horizons": torch.tensor(hs), "lr": lr, "mean_sq_grad": mean_sq, "min_sq_grad": best, "bound": bound}


def adam_least_squares(features: torch.Tensor, targets: torch.Tensor, *, lr: Sequence[float], eps: Sequence[float],
                       clip_norm: Sequence[float] | None = None, steps: int = 3000, betas: tuple[float, float] = (0.9, 0.999),
                       sharpness_every: int = 10) -> dict[str, torch.Tensor]:
    r"""Full-batch Adam on $\frac{1}{2n}\|Xw - y\|^2$ for K settings at once, recording its preconditioned sharpness.

    On a quadratic the Hessian $H = X^\top X/n$ never changes; what changes is
    Adam's preconditioner $P = \mathrm{diag}\big(1/(\sqrt{\hat v} + \epsilon)\big)$.
    The update $w \leftarrow w - \eta P\hat m$ is stable only while the
    *preconditioned sharpness* $\lambda_{\max}(P^{1/2} H P^{1/2})$ stays below
    $\frac{2 + 2\beta_1}{(1 - \beta_1)\eta}$ (38/η for $\beta_1 = 0.9$; Cohen et al.,
    2022). As the loss converges the gradients shrink, $\hat v$ shrinks with
    them, $P$ grows, and with a tiny $\epsilon$ nothing stops it from crossing
    that line: the loss spikes. A larger $\epsilon$ caps $P$ at $1/\epsilon$.
    The update is Adam written out, vectorized over the K settings (the tests
    check it against ``torch.optim.Adam``); ``clip_norm`` rescales the gradient as
    ``torch.nn.utils.clip_grad_norm_`` does before the update. See Chapter 8.

    Parameters
    ----------
    features : Tensor
        $X$, (n, d).
    targets : Tensor
        $y$, (n,).
    lr, eps : sequence of float
        K step sizes $> 0$ and K values of $\epsilon > 0$.
    clip_norm : sequence of float, optional
        K clipping thresholds (``math.inf`` for none).
    steps : int
    betas : (float, float)
    sharpness_every : int
        Record the preconditioned sharpness every this many steps.

    Returns
    -------
    dict
        ``loss`` (K, steps), the loss before each step; ``grad_norm`` (K, steps);
        ``sharpness_steps`` (S,); ``precond_sharpness`` (K, S); ``limit`` (K,), $38/\eta$ for the default betas.
        All on the CPU in float64, wherever the inputs were.
    """
    X = _checks.floating("features", features, ndim=2).to("cpu", torch.float64)  # a small problem: the CPU, float64
    y = _checks.floating("targets", targets, ndim=1).to("cpu", torch.float64)
    if len(y) != len(X):
        raise ValueError(f"targets: expected {len(X)} values (rows of features), got {len(y)}")
    lrs = torch.tensor([_positive(f"lr[{i}]", v) for i, v in enumerate(lr)], dtype=torch.float64)
    epss = torch.tensor([_positive(f"eps[{i}]", v) for i, v in enumerate(eps)], dtype=torch.float64)
    clips = (torch.full_like(lrs, math.inf) if clip_norm is None else
             torch.tensor([v if v == math.inf else _positive(f"clip_norm[{i}]", v) for i, v in enumerate(clip_norm)],
                          dtype=torch.float64))
    if not len(lrs) == len(epss) == len(clips) or len(lrs) == 0:
        raise ValueError(f"lr, eps, clip_norm: expected the same non-zero length, got {len(lrs)}, {len(epss)}, {len(clips)}")
    steps, every = _count("steps", steps), _count("sharpness_every", sharpness_every)
    b1 = float(_checks.number("betas[0]", betas[0], low=0.0, high=1.0, high_open=True))
    b2 = float(_checks.number("betas[1]", betas[1], low=0.0, high=1.0, high_open=True))
    n, d = X.shape
    k = len(lrs)
    H = X.T @ X / n  # (d, d)
    w = torch.zeros(k, d, dtype=torch.float64)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    losses, norms, sharp, sharp_steps = [], [], [], []
    with backend.single_thread("cpu"):
        for t in range(1, steps + 1):
            r = w @ X.T - y  # (K, n)
            losses.append(0.5 * (r**2).mean(1))
            grad = r @ X / n  # (K, d)
            gn = grad.norm(dim=1)  # (K,)
            norms.append(gn)
            grad = grad * torch.clamp(clips / (gn + 1e-6), max=1.0)[:, None]  # as clip_grad_norm_
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            denom = (v / (1 - b2**t)).sqrt() + epss[:, None]  # (K, d)
            if t % every == 0:
                p_half = denom.rsqrt()  # (K, d): P^{1/2}
                sharp.append(torch.linalg.eigvalsh(p_half[:, :, None] * H * p_half[:, None, :])[:, -1])
                sharp_steps.append(t)
            w = w - (lrs / (1 - b1**t))[:, None] * m / denom
    return {"loss": torch.stack(losses, 1), "grad_norm": torch.stack(norms, 1),
            "sharpness_steps": torch.tensor(sharp_steps), "precond_sharpness": torch.stack(sharp, 1),
            "limit": (2 + 2 * b1) / ((1 - b1) * lrs)}
