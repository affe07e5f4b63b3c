"""Regularization: penalties, proximal steps, weight decay, dropout, and sweeps over many small models.

Everything here is a pure function of tensors (plus an explicit generator
where randomness is involved), so a chapter can call it, a test can check it
against PyTorch, and a sweep can run many models at once.

- Penalties: :func:`l2_penalty`, :func:`l1_penalty`; the proximal L1 step
  :func:`soft_threshold` / :func:`proximal_l1_step`, which sets weights to
  exactly zero; :func:`lasso_ista` and :func:`lasso_fista` (accelerated, run
  to a stated tolerance), batches of lasso fits.
- Weight decay versus an L2 penalty under Adam: :func:`adam_step` with
  ``decoupled=False`` is ``torch.optim.Adam(weight_decay=...)``, with
  ``decoupled=True`` it is ``torch.optim.AdamW``.
- Dropout from scratch with PyTorch's mask semantics: :func:`dropout`.
- Inputs and targets: :func:`add_input_noise`, :func:`shift_images`
  (augmentation), :func:`smooth_labels`, :func:`soft_cross_entropy`.
- Capacity: :func:`legendre_features`, :func:`ridge_fit`, :func:`ridge_fit_degrees`,
  :func:`polynomial_problem`, :func:`bias_variance`; the implicit bias of
  gradient descent: :func:`least_squares_gd`.
- Sweeps: :func:`init_mlp`, :func:`mlp_logits`, :func:`train_ensemble`
  train many small MLPs at once with ``torch.func.vmap`` on the inputs'
  device (``losslab.backend.device()`` in the chapter).

See Chapter 7 (Regularization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import vmap

from . import _checks, backend
from .backend import generator as make_generator
from .data import Split, regression_1d
from .optim import _adam as _optim_adam

__all__ = [
    "l2_penalty",
    "l1_penalty",
    "soft_threshold",
    "proximal_l1_step",
    "lasso_ista",
    "LassoResult",
    "lasso_fista",
    "lasso_residual",
    "AdamState",
    "adam_step",
    "dropout",
    "add_input_noise",
    "shift_images",
    "smooth_labels",
    "soft_cross_entropy",
    "legendre_features",
    "ridge_fit",
    "ridge_fit_degrees",
    "least_squares_gd",
    "PolynomialProblem",
    "polynomial_problem",
    "bias_variance",
    "init_mlp",
    "mlp_logits",
    "EnsembleResult",
    "train_ensemble",
    "ensemble_logits",
    "min_norm_solve",
    "random_features_sweep",
    "rotate_images",
    "mixup_batch",
    "mc_dropout_probs",
    "modified_gradient",
    "gradient_flow",
]


# --- input checks -----------------------------------------------------------------

def _tensor(name: str, x: object, *, floating: bool = True, ndim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")
    if floating and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")
    return x


def _number(name: str, v: object, *, low: float = 0.0, high: float = math.inf,
            low_open: bool = False, high_open: bool = False) -> float:
    return _checks.number(name, v, low=low, high=high, low_open=low_open, high_open=high_open)


def _params(name: str, params: object) -> list[torch.Tensor]:
    if not isinstance(params, torch.Tensor) and (isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable)):
        raise TypeError(f"{name}: expected a tensor or a sequence of tensors, got {type(params).__name__}")
    items = [params] if isinstance(params, torch.Tensor) else list(params)  # type: ignore[arg-type]
    if not items:
        raise ValueError(f"{name}: expected a tensor or a non-empty sequence of tensors")
    return [_tensor(f"{name}[{i}]", p) for i, p in enumerate(items)]


def _rate(name: str, value: object, like: torch.Tensor) -> torch.Tensor | float:
    """A non-negative number, or a tensor that broadcasts to ``like.shape`` without changing it."""
    if isinstance(value, torch.Tensor):
        _tensor(name, value)
        try:
            fits = torch.broadcast_shapes(value.shape, like.shape) == like.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{name}: a tensor must broadcast to shape {tuple(like.shape)}, got {tuple(value.shape)}")
        if bool((value < 0).any()):
            raise ValueError(f"{name}: expected values >= 0, got a minimum of {float(value.min())}")
        return value.to(like.dtype)
    return _number(name, value)


# --- penalties and the proximal L1 step -------------------------------------------------

def l2_penalty(params: torch.Tensor | Sequence[torch.Tensor], strength: float) -> torch.Tensor:
    r"""The L2 (ridge) penalty $\frac{\lambda}{2}\sum_j w_j^2$ over every tensor in ``params``.

    The factor 1/2 makes its gradient $\lambda w$: the term that
    ``torch.optim.SGD(weight_decay=λ)`` and ``torch.optim.Adam(weight_decay=λ)``
    add to the gradient.

    Parameters
    ----------
    params : Tensor or sequence of Tensor
        Any shapes.
    strength : float
        $\lambda \ge 0$.

    Returns
    -------
    Tensor
        A scalar, differentiable in ``params``.

    Raises
    ------
    TypeError, ValueError
        For non-tensors, non-float or non-finite tensors, or a negative strength.

    Example
    -------
    >>> l2_penalty(torch.tensor([3.0, 4.0]), 0.1)
    tensor(1.2500)
    """
    ps = _params("params", params)
    lam = _number("strength", strength)
    return 0.5 * lam * sum((p * p).sum() for p in ps)


def l1_penalty(params: torch.Tensor | Sequence[torch.Tensor], strength: float) -> torch.Tensor:
    r"""The L1 (lasso) penalty $\lambda\sum_j |w_j|$ over every tensor in ``params``.

    See :func:`l2_penalty` for the arguments. Its gradient $\lambda\,\mathrm{sign}(w)$
    does not shrink as $w \to 0$, and at $w = 0$ it has none: use
    :func:`proximal_l1_step` to minimize it.

    Example
    -------
    >>> l1_penalty([torch.tensor([3.0, -4.0])], 0.1)
    tensor(0.7000)
    """
    ps = _params("params", params)
    lam = _number("strength", strength)
    return lam * sum(p.abs().sum() for p in ps)


def soft_threshold(w: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    r"""Soft thresholding $S_t(w) = \mathrm{sign}(w)\max(|w| - t, 0)$, elementwise.

    It is the proximal operator of $t\,|w|$:
    $S_t(v) = \arg\min_w \tfrac12 (w - v)^2 + t|w|$. Every $|v| \le t$ maps to
    exactly 0.

    Parameters
    ----------
    w : Tensor
        Any shape, floating point.
    threshold : float or Tensor
        $t \ge 0$; a tensor must broadcast to ``w.shape`` (e.g. ``(K, 1)``
        for ``w`` of shape ``(K, D)``: one threshold per row).

    Returns
    -------
    Tensor
        Same shape and dtype as ``w``; a new tensor.

    Raises
    ------
    TypeError, ValueError
        For a non-tensor ``w``, non-finite values, a negative threshold or one
        whose shape would change ``w``'s.

    Example
    -------
    >>> soft_threshold(torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5]), 0.5)
    tensor([-1.5000, -0.0000,  0.0000,  0.0000,  1.0000])
    """
    _tensor("w", w)
    return _soft(w, _rate("threshold", threshold, w))


def _soft(w: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0)  # (*w.shape)


def proximal_l1_step(w: torch.Tensor, grad_w: torch.Tensor, *, lr: float | torch.Tensor,
                     strength: float | torch.Tensor) -> torch.Tensor:
    r"""One proximal-gradient (ISTA) step for $f(w) + \lambda\|w\|_1$.

    $$w \leftarrow S_{\eta\lambda}\big(w - \eta \nabla f(w)\big):$$
    a gradient step on the smooth part, then soft thresholding
    (:func:`soft_threshold`) by $\eta\lambda$.

    Parameters
    ----------
    w, grad_w : Tensor
        The same shape; ``grad_w`` is $\nabla f(w)$ (the smooth part only).
    lr : float or Tensor
        Step size $\eta > 0$ (a tensor broadcasting to ``w.shape`` for many problems at once).
    strength : float or Tensor
        $\lambda \ge 0$, likewise.

    Returns
    -------
    Tensor
        The new weights, shape of ``w``.

    Example
    -------
    >>> proximal_l1_step(torch.tensor([1.0, 0.1]), torch.tensor([0.0, 0.0]), lr=0.5, strength=0.4)
    tensor([0.8000, 0.0000])
    """
    _tensor("w", w)
    _tensor("grad_w", grad_w)
    if grad_w.shape != w.shape:
        raise ValueError(f"grad_w: expected shape {tuple(w.shape)} (that of w), got {tuple(grad_w.shape)}")
    eta = _rate("lr", lr, w)
    if (isinstance(eta, torch.Tensor) and bool((eta <= 0).any())) or (not isinstance(eta, torch.Tensor) and eta <= 0):
        raise ValueError("lr: expected > 0")
    lam = _rate("strength", strength, w)
    return soft_threshold(w - eta * grad_w, eta * lam)


def lasso_ista(features: torch.Tensor, y: torch.Tensor, strengths: torch.Tensor, *,
               steps: int = 500, unpenalized: int = 1) -> torch.Tensor:
    r"""Lasso fits for many strengths at once by proximal gradient descent (ISTA).

    Minimizes $\frac{1}{2n}\|Xw - y\|^2 + \lambda\sum_{j \ge u}|w_j|$ for every
    $\lambda$ in ``strengths``, with step $1/L$ where $L$ is the largest
    eigenvalue of $X^\top X / n$ (the smooth part's curvature), starting from 0.

    Parameters
    ----------
    features : Tensor
        $X$, shape (n, D).
    y : Tensor
        Targets, shape (n,).
    strengths : Tensor
        $\lambda$ values, shape (K,), each >= 0.
    steps : int
        Number of ISTA steps.
    unpenalized : int
        The first ``unpenalized`` coefficients (the intercept) are not penalized.

    Returns
    -------
    Tensor
        Coefficients, shape (K, D); penalized ones are often exactly 0.
    """
    X = _tensor("features", features, ndim=2)
    _tensor("y", y, ndim=1)
    lam = _tensor("strengths", strengths, ndim=1).to(X.dtype)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} targets (rows of features), got {y.shape[0]}")
    if bool((lam < 0).any()):
        raise ValueError("strengths: expected values >= 0")
    steps = _checks.count("steps", steps)
    n, d = X.shape
    gram = X.T @ X / n  # (D, D)
    xty = X.T @ y / n  # (D,)
    lr = 1.0 / float(torch.linalg.eigvalsh(gram).max())
    t = lam[:, None] * (torch.arange(d, device=X.device) >= unpenalized).to(X.dtype)  # (K, D) per-coefficient strength
    w = torch.zeros(len(lam), d, dtype=X.dtype, device=X.device)  # (K, D)
    for _ in range(steps):
        g = w @ gram - xty  # (K, D) gradient of the squared error
        w = _soft(w - lr * g, lr * t)  # the proximal step
    return w


def lasso_residual(features: torch.Tensor, y: torch.Tensor, strengths: torch.Tensor, coef: torch.Tensor, *,
                   unpenalized: int = 1) -> torch.Tensor:
    r"""The proximal-gradient residual of lasso fits: zero exactly at the minimizers.

    $\|G(w)\| = \|w - S_{\eta\lambda}(w - \eta\nabla f(w))\| / \eta$ with
    $\eta = 1/L$, for the objective of :func:`lasso_ista`. Where no
    coefficient is thresholded it is the gradient norm; at a minimizer the
    proximal step does not move $w$ and it is 0.

    Parameters
    ----------
    features, y, strengths, unpenalized
        As for :func:`lasso_ista`: (n, D), (n,), (K,).
    coef : Tensor
        (K, D), one fit per strength.

    Returns
    -------
    Tensor
        (K,).
    """
    X = _tensor("features", features, ndim=2)
    _tensor("y", y, ndim=1)
    lam = _tensor("strengths", strengths, ndim=1).to(X.dtype)
    w = _tensor("coef", coef, ndim=2)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} targets (rows of features), got {y.shape[0]}")
    if w.shape != (len(lam), X.shape[1]):
        raise ValueError(f"coef: expected shape {(len(lam), X.shape[1])} (strengths x features), got {tuple(w.shape)}")
    n, d = X.shape
    gram, xty = X.T @ X / n, X.T @ y / n  # (D, D), (D,)
    lr = 1.0 / float(torch.linalg.eigvalsh(gram).max())
    t = lam[:, None] * (torch.arange(d, device=X.device) >= unpenalized).to(X.dtype)  # (K, D)
    return (w - _soft(w - lr * (w @ gram - xty), lr * t)).norm(dim=1) / lr


@dataclass(frozen=True)
class LassoResult:
    """What :func:`lasso_fista` returns: ``coef`` (K, D), the number of ``steps`` taken,
    and ``residual`` (K,), the proximal-gradient residual of each fit at the end."""

    coef: torch.Tensor
    steps: int
    residual: torch.Tensor

    def __repr__(self) -> str:
        return (f"LassoResult(fits={self.coef.shape[0]}, steps={self.steps}, "
                f"largest residual={float(self.residual.max()):.1e})")


def lasso_fista(features: torch.Tensor, y: torch.Tensor, strengths: torch.Tensor, *,
                tol: float = 1e-10, max_steps: int = 20_000, unpenalized: int = 1) -> LassoResult:
    r"""Lasso fits for many strengths at once by FISTA with adaptive restart, run to convergence.

    The same objective as :func:`lasso_ista`,
    $\frac{1}{2n}\|Xw - y\|^2 + \lambda\sum_{j \ge u}|w_j|$, and the same
    proximal step with step size $\eta = 1/L$, taken from an extrapolated point
    $z_k = w_k + \frac{t_{k-1} - 1}{t_k}(w_k - w_{k-1})$ (Beck & Teboulle's
    FISTA). The momentum is reset to zero whenever it points uphill,
    $(z_k - w_{k+1})^\top(w_{k+1} - w_k) > 0$ (O'Donoghue & Candès'
    gradient restart), which makes it fast on ill-conditioned problems where
    plain ISTA needs tens of thousands of steps.

    Stopping rule: every 10 steps, the proximal-gradient residual
    $\|G(w)\| = \|w - S_{\eta\lambda}(w - \eta\nabla f(w))\| / \eta$
    (zero exactly at a minimizer; the gradient norm when nothing is
    thresholded) of every fit is computed, and the loop ends when the
    largest is at most ``tol``.

    Parameters
    ----------
    features : Tensor
        $X$, shape (n, D).
    y : Tensor
        Targets, shape (n,).
    strengths : Tensor
        $\lambda$ values, shape (K,), each >= 0.
    tol : float
        Largest residual accepted, > 0.
    max_steps : int
        Give up after this many steps (the residual then shows how far it got).
    unpenalized : int
        The first ``unpenalized`` coefficients (the intercept) are not penalized.

    Returns
    -------
    LassoResult
        ``coef`` (K, D), exactly 0 where the soft threshold put them; ``steps``;
        ``residual`` (K,).
    """
    X = _tensor("features", features, ndim=2)
    _tensor("y", y, ndim=1)
    lam = _tensor("strengths", strengths, ndim=1).to(X.dtype)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} targets (rows of features), got {y.shape[0]}")
    if bool((lam < 0).any()):
        raise ValueError("strengths: expected values >= 0")
    tol = _number("tol", tol, low_open=True)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps: expected an int >= 1, got {max_steps!r}")
    n, d = X.shape
    gram = X.T @ X / n  # (D, D)
    xty = X.T @ y / n  # (D,)
    lr = 1.0 / float(torch.linalg.eigvalsh(gram).max())
    t = lam[:, None] * (torch.arange(d, device=X.device) >= unpenalized).to(X.dtype)  # (K, D)

    def residual(w: torch.Tensor) -> torch.Tensor:  # (K,)
        return (w - _soft(w - lr * (w @ gram - xty), lr * t)).norm(dim=1) / lr

    w = torch.zeros(len(lam), d, dtype=X.dtype, device=X.device)  # (K, D)
    z, tk = w, torch.ones(len(lam), 1, dtype=X.dtype, device=X.device)  # extrapolated point, momentum counter
    step = 0
    with backend.single_thread(X.device):  # thousands of tiny products: threads cost more than they save
        while step < max_steps:
            w_new = _soft(z - lr * (z @ gram - xty), lr * t)  # the proximal step, from z
            t_new = (1 + torch.sqrt(1 + 4 * tk**2)) / 2
            uphill = ((z - w_new) * (w_new - w)).sum(1, keepdim=True) > 0  # (K, 1): restart these
            t_new = torch.where(uphill, torch.ones_like(t_new), t_new)
            momentum = torch.where(uphill, torch.zeros_like(tk), (tk - 1) / t_new)
            z = w_new + momentum * (w_new - w)
            w, tk = w_new, t_new
            step += 1
            if step % 10 == 0 and float(residual(w).max()) <= tol:
                break
    return LassoResult(w, step, residual(w))


# --- Adam with an L2 penalty versus decoupled weight decay ------------------------------

@dataclass(frozen=True)
class AdamState:
    """Adam's state for one tensor: the step count and the two moving averages (shape of the parameter)."""

    step: int
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor

    @staticmethod
    def zeros_like(param: torch.Tensor) -> "AdamState":
        return AdamState(0, torch.zeros_like(param), torch.zeros_like(param))

    def __repr__(self) -> str:
        return f"AdamState(step={self.step}, shape={tuple(self.exp_avg.shape)})"


def adam_step(param: torch.Tensor, grad_p: torch.Tensor, state: AdamState, *, lr: float,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float | torch.Tensor = 0.0, decoupled: bool = False) -> tuple[torch.Tensor, AdamState]:
    r"""One Adam step, with weight decay either as an L2 gradient or decoupled (AdamW).

    With ``decoupled=False`` (``torch.optim.Adam(weight_decay=λ)``), the L2
    gradient joins the data gradient and is then rescaled with it:
    $g \leftarrow g + \lambda w$. With ``decoupled=True``
    (``torch.optim.AdamW``, Loshchilov & Hutter), the weights shrink directly,
    $w \leftarrow (1 - \eta\lambda) w$, and Adam sees only $g$. Then

    $$m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    w \leftarrow w - \frac{\eta}{1-\beta_1^t}\,\frac{m}{\sqrt{v/(1-\beta_2^t)} + \epsilon},$$

    written in the same order of operations as PyTorch's implementation so the two agree to rounding.

    Parameters
    ----------
    param, grad_p : Tensor
        Same shape (any); ``grad_p`` is the data gradient.
    state : AdamState
        From :meth:`AdamState.zeros_like` or the previous call.
    lr : float
        $\eta > 0$.
    betas : (float, float)
        In [0, 1).
    eps : float
        > 0.
    weight_decay : float or Tensor
        $\lambda \ge 0$; a tensor must broadcast to ``param.shape`` (one
        value per model of a stacked ensemble, e.g. shape (K, 1, 1)).
    decoupled : bool
        AdamW (True) or Adam with L2 in the gradient (False).

    Returns
    -------
    (Tensor, AdamState)
        New parameter and state; the inputs are not modified.

    Example
    -------
    >>> w = torch.ones(3); s = AdamState.zeros_like(w)
    >>> w, s = adam_step(w, torch.zeros(3), s, lr=0.1, weight_decay=0.5, decoupled=True)
    >>> w
    tensor([0.9500, 0.9500, 0.9500])
    """
    _tensor("param", param)
    _tensor("grad_p", grad_p)
    if grad_p.shape != param.shape:
        raise ValueError(f"grad_p: expected shape {tuple(param.shape)} (that of param), got {tuple(grad_p.shape)}")
    if not isinstance(state, AdamState):
        raise TypeError(f"state: expected an AdamState, got {type(state).__name__}")
    if state.exp_avg.shape != param.shape:
        raise ValueError(f"state: moving averages have shape {tuple(state.exp_avg.shape)}, param {tuple(param.shape)}")
    lr = _number("lr", lr, low_open=True)
    b1 = _number("betas[0]", betas[0], high=1.0, high_open=True)
    b2 = _number("betas[1]", betas[1], high=1.0, high_open=True)
    eps = _number("eps", eps, low_open=True)
    wd = _rate("weight_decay", weight_decay, param)
    return _adam_update(param, grad_p, state, lr=lr, b1=b1, b2=b2, eps=eps, wd=wd, decoupled=decoupled)


def _adam_update(param, grad_p, state, *, lr, b1, b2, eps, wd, decoupled):
    """:func:`adam_step` without the input checks (the ensemble trainer's inner loop): the update of
    :mod:`losslab.optim`, which also runs the tensor-valued decay of a stacked ensemble."""
    moments = {"step": state.step, "exp_avg": state.exp_avg, "exp_avg_sq": state.exp_avg_sq}
    param, new = _optim_adam(param, grad_p, moments, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd,
                             amsgrad=False, decoupled=decoupled)
    return param, AdamState(new["step"], new["exp_avg"], new["exp_avg_sq"])


# --- dropout ------------------------------------------------------------------------

def dropout(x: torch.Tensor, p: float, *, training: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Inverted dropout, with the same mask semantics and scaling as ``torch.nn.functional.dropout``.

    In training, each element is kept with probability $1 - p$
    (a Bernoulli mask drawn with ``generator``) and scaled by $1/(1-p)$, so
    $\mathbb{E}[\text{output}] = x$; $p = 1$ gives zeros. In evaluation
    (``training=False``) it is the identity, with no rescaling needed.

    On the CPU, with ``generator`` in the state that ``torch.manual_seed(s)``
    gives the global generator, the output equals ``F.dropout(x, p)`` exactly
    (same mask, same rounding).

    Parameters
    ----------
    x : Tensor
        Any shape, floating point.
    p : float
        Drop probability in [0, 1].
    training : bool
        Drop (True) or pass through (False).
    generator : torch.Generator, optional
        Source of the mask; the global generator if None.

    Returns
    -------
    Tensor
        Same shape and dtype as ``x``; a new tensor.

    Example
    -------
    >>> y = dropout(torch.ones(6), 0.5, generator=torch.Generator().manual_seed(0))
    >>> sorted(set(y.tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    _tensor("x", x)
    p = _number("p", p, high=1.0)
    if not isinstance(training, bool):
        raise TypeError(f"training: expected True or False, got {type(training).__name__}")
    if not training or p == 0.0:
        return x.clone()
    if p == 1.0:
        return x * torch.zeros_like(x)
    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)  # 1 with probability 1 - p
    keep.div_(1 - p)  # inverted dropout: survivors scaled by 1/(1-p)
    return x * keep


# --- inputs and targets -------------------------------------------------------------------

def add_input_noise(x: torch.Tensor, std: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Gaussian input-noise augmentation: $x + \sigma\varepsilon$, $\varepsilon \sim \mathcal N(0, I)$.

    For small $\sigma$ and squared error, training on noisy inputs equals, to
    second order, adding a penalty $\frac{\sigma^2}{2}\,\mathbb E\|\partial f/\partial x\|^2$
    (Bishop, 1995): the model is pushed to be smooth in its input.

    Parameters
    ----------
    x : Tensor
        Any shape, floating point.
    std : float
        $\sigma \ge 0$.
    generator : torch.Generator, optional
        On ``x.device``.

    Returns
    -------
    Tensor
        Same shape as ``x``.
    """
    _tensor("x", x)
    s = _number("std", std)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (*x.shape)
    return x + s * noise


def _image_size(x: object, size: object) -> tuple[int, int]:
    """Check flattened images ``x`` (N, H * W) against ``size`` (H, W); return (H, W)."""
    _tensor("x", x, ndim=2)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise ValueError(f"size: expected two positive ints (H, W), got {size!r}")
    h, w = size
    if x.shape[1] != h * w:
        raise ValueError(f"x: expected {h * w} columns (size {h} x {w}), got {x.shape[1]}")
    return h, w


def shift_images(x: torch.Tensor, shifts: Sequence[tuple[int, int]], *, size: tuple[int, int] = (8, 8)) -> torch.Tensor:
    r"""Copies of flattened images moved by whole pixels (data augmentation), background filled with 0.

    Shift ``(dy, dx)`` moves the content ``dy`` rows down and ``dx`` columns
    to the right; what leaves the frame is lost, what enters is 0 (the
    background of raw pixel values, not of standardized ones: shift first,
    standardize after). ``(0, 0)`` is the image itself.

    Parameters
    ----------
    x : Tensor
        (N, H * W) flattened images, row by row.
    shifts : sequence of (int, int)
        S shifts, each with ``|dy| < H`` and ``|dx| < W``.
    size : (int, int)
        (H, W).

    Returns
    -------
    Tensor
        (S * N, H * W): all N images moved by the first shift, then all moved
        by the second, ...; the labels of the copies are ``y.repeat(S)``.

    Example
    -------
    >>> shift_images(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), [(0, 1)], size=(2, 2))
    tensor([[0., 1., 0., 3.]])
    """
    h, w = _image_size(x, size)
    shifts = [tuple(s) for s in shifts]
    if not shifts or not all(len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in s)
                             and abs(s[0]) < h and abs(s[1]) < w for s in shifts):
        raise ValueError(f"shifts: expected a non-empty list of (dy, dx) ints with |dy| < {h}, |dx| < {w}, got {shifts!r}")
    img = x.reshape(-1, h, w)  # (N, H, W)
    out = []
    for dy, dx in shifts:
        moved = torch.zeros_like(img)
        moved[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        out.append(moved.reshape(-1, h * w))
    return torch.cat(out)  # (S * N, H * W)


def smooth_labels(y: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    r"""Label-smoothed targets $(1-\epsilon)\,\mathrm{onehot}(y) + \epsilon/C$.

    Parameters
    ----------
    y : Tensor
        Class indices, shape (N,), int64 in [0, n_classes).
    n_classes : int
        $C \ge 2$.
    smoothing : float
        $\epsilon \in [0, 1]$.

    Returns
    -------
    Tensor
        Target distributions, shape (N, C), float64 rows summing to 1.
    """
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise TypeError(f"y: expected a 1-D int64 tensor of class indices, got {getattr(y, 'dtype', type(y).__name__)}")
    n_classes = _checks.count("n_classes", n_classes, 2)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"y: expected labels in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]")
    eps = _number("smoothing", smoothing, high=1.0)
    onehot = F.one_hot(y, n_classes).to(torch.float64)  # (N, C)
    return (1 - eps) * onehot + eps / n_classes


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Mean cross-entropy $-\frac1N\sum_i\sum_c q_{ic}\log\mathrm{softmax}(z_i)_c$ against target distributions.

    Parameters
    ----------
    logits : Tensor
        (N, C).
    targets : Tensor
        (N, C), rows are probability distributions (e.g. from :func:`smooth_labels`).

    Returns
    -------
    Tensor
        A scalar.
    """
    _tensor("logits", logits, ndim=2)
    _tensor("targets", targets, ndim=2)
    if targets.shape != logits.shape:
        raise ValueError(f"targets: expected shape {tuple(logits.shape)} (that of logits), got {tuple(targets.shape)}")
    return -(targets.to(logits.dtype) * torch.log_softmax(logits, dim=1)).sum(1).mean()


# --- capacity: polynomial regression ------------------------------------------------

def legendre_features(x: torch.Tensor, degree: int) -> torch.Tensor:
    r"""Legendre polynomials $P_0(x), \dots, P_d(x)$ of ``x`` in [-1, 1].

    An orthogonal basis keeps high-degree least squares well conditioned,
    where the monomials $x^k$ become nearly collinear. Recurrence:
    $(k+1)P_{k+1} = (2k+1)\,x P_k - k P_{k-1}$.

    Parameters
    ----------
    x : Tensor
        Shape (n,), values in [-1, 1].
    degree : int
        $d \ge 0$.

    Returns
    -------
    Tensor
        Shape (n, d + 1); column 0 is all ones.
    """
    _tensor("x", x, ndim=1)
    degree = _checks.count("degree", degree, 0)
    if len(x) and float(x.abs().max()) > 1 + 1e-12:
        raise ValueError(f"x: expected values in [-1, 1], got a maximum |x| of {float(x.abs().max())}")
    cols = [torch.ones_like(x)]
    if degree >= 1:
        cols.append(x)
    for k in range(1, int(degree)):
        cols.append(((2 * k + 1) * x * cols[k] - k * cols[k - 1]) / (k + 1))
    return torch.stack(cols, dim=1)  # (n, d + 1)


def ridge_fit(features: torch.Tensor, y: torch.Tensor, strength: float | torch.Tensor, *,
              unpenalized: int = 1) -> torch.Tensor:
    r"""Ridge regression in closed form, for one or many strengths at once.

    Minimizes $\frac{1}{2n}\|Xw - y\|^2 + \frac{\lambda}{2}\sum_{j \ge u} w_j^2$,
    whose minimizer is $w = (X^\top X + n\lambda P)^{-1} X^\top y$ with $P$
    the identity except zeros for the first ``unpenalized`` coefficients
    (the intercept is usually left free).

    Parameters
    ----------
    features : Tensor
        $X$, shape (n, D).
    y : Tensor
        Shape (n,).
    strength : float or Tensor
        $\lambda \ge 0$, a number or shape (K,).
    unpenalized : int
        Leading coefficients without penalty.

    Returns
    -------
    Tensor
        Shape (D,) for a number, (K, D) for a (K,) tensor.
    """
    X = _tensor("features", features, ndim=2)
    _tensor("y", y, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} targets (rows of features), got {y.shape[0]}")
    single = not isinstance(strength, torch.Tensor)
    lam = torch.tensor([_number("strength", strength)], dtype=X.dtype, device=X.device) if single else \
        _tensor("strength", strength, ndim=1).to(X.dtype)
    if bool((lam < 0).any()):
        raise ValueError("strength: expected values >= 0")
    n, d = X.shape
    pen = (torch.arange(d, device=X.device) >= unpenalized).to(X.dtype)  # (D,)
    A = X.T @ X + n * lam[:, None, None] * torch.diag(pen)  # (K, D, D)
    b = (X.T @ y).expand(len(lam), d)  # (K, D)
    w = torch.linalg.lstsq(A, b[..., None]).solution[..., 0]  # (K, D); lstsq copes with singular A at lam = 0
    return w[0] if single else w


def ridge_fit_degrees(features: torch.Tensor, y: torch.Tensor, strength: float) -> torch.Tensor:
    r"""Ridge fits of every degree $0, \dots, D-1$ at once, from one feature matrix of the highest degree.

    The degree-$d$ model uses the first $d + 1$ columns of ``features``. Each
    system is padded to full size with an identity block (and a zero right-hand
    side) for the unused coefficients, so one batched solve returns every fit
    with those coefficients exactly 0. Same objective as :func:`ridge_fit`
    (intercept unpenalized).

    Parameters
    ----------
    features : Tensor
        (n, D), e.g. :func:`legendre_features` of degree D - 1.
    y : Tensor
        (n,).
    strength : float
        $\lambda > 0$ (every system must be invertible).

    Returns
    -------
    Tensor
        (D, D): row $d$ holds the degree-$d$ coefficients, zero-padded.
    """
    X = _tensor("features", features, ndim=2)
    _tensor("y", y, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} targets (rows of features), got {y.shape[0]}")
    lam = _number("strength", strength, low_open=True)
    n, d = X.shape
    idx = torch.arange(d, device=X.device)
    used = (idx[None, :] <= idx[:, None]).to(X.dtype)  # (D, D): row k marks the columns of degree k
    pen = (idx >= 1).to(X.dtype)  # (D,)
    gram = X.T @ X + n * lam * torch.diag(pen)  # (D, D)
    A = used[:, :, None] * used[:, None, :] * gram + torch.diag_embed(1 - used)  # (D, D, D)
    b = used * (X.T @ y)  # (D, D)
    return torch.linalg.solve(A, b)  # (D, D)


def least_squares_gd(features: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, *, steps: int,
                     lr: float | None = None) -> torch.Tensor:
    r"""Gradient descent on $\frac{1}{2}\|Xw - y\|^2$ from many starting points at once.

    With more features than examples there are infinitely many $w$ with
    $Xw = y$. Each step moves $w$ along $X^\top(\cdot)$, inside the row space
    of $X$, so the part of $w_0$ orthogonal to it never changes: started at
    $w_0$, gradient descent converges to the interpolant closest to $w_0$,
    $w_0 + X^+(y - Xw_0)$; started at 0, to the minimum-norm interpolant
    $X^+ y$ (``torch.linalg.pinv``). See Chapter 7 (implicit regularization).

    Parameters
    ----------
    features : Tensor
        $X$, shape (n, D).
    y : Tensor
        (n,).
    w0 : Tensor
        Starting points, (K, D).
    steps : int
        Number of full-batch steps, >= 1.
    lr : float, optional
        Step size; default $1/\lambda_{\max}(X^\top X)$.

    Returns
    -------
    Tensor
        (K, D), the weights after ``steps`` steps.
    """
    X = _tensor("features", features, ndim=2)
    _tensor("y", y, ndim=1)
    _tensor("w0", w0, ndim=2)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} targets (rows of features), got {y.shape[0]}")
    if w0.shape[1] != X.shape[1]:
        raise ValueError(f"w0: expected {X.shape[1]} columns (one per feature), got {w0.shape[1]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    eta = 1.0 / float(torch.linalg.eigvalsh(X.T @ X).max()) if lr is None else _number("lr", lr, low_open=True)
    w = w0.to(X.dtype)
    with backend.single_thread(X.device):  # small products: threads cost more than they save
        for _ in range(steps):
            w = w - eta * (w @ X.T - y) @ X  # (K, D): the gradient X^T (Xw - y) of every run
    return w


@dataclass(frozen=True)
class PolynomialProblem:
    """A 1-D regression problem for the capacity experiments: inputs scaled to [-1, 1].

    ``train``, ``val``: Splits with ``x`` (n,) and ``y`` (n,); ``x_grid`` (G,)
    and ``f_grid`` (G,): the noise-free target on a fine grid; ``noise``: its
    standard deviation.
    """

    train: Split
    val: Split
    x_grid: torch.Tensor
    f_grid: torch.Tensor
    noise: float

    def __repr__(self) -> str:
        return f"PolynomialProblem(n_train={len(self.train)}, n_val={len(self.val)}, noise={self.noise})"


def target_function(x: torch.Tensor) -> torch.Tensor:
    """The noise-free target of :func:`polynomial_problem`: ``sin(6x) + 1.5x`` on [-1, 1]
    (``losslab.data.regression_1d``'s ``sin(2u) + u/2`` at ``u = 3x``)."""
    return torch.sin(6 * x) + 1.5 * x


def polynomial_problem(n_train: int = 20, n_val: int = 200, *, noise: float = 0.3, seed: int = 0,
                       n_grid: int = 200) -> PolynomialProblem:
    """Draw training and validation sets from ``losslab.data.regression_1d``, rescaled to [-1, 1].

    Parameters
    ----------
    n_train, n_val : int
        Sizes (independent draws, seeds ``seed`` and ``seed + 1``).
    noise : float
        Standard deviation of the target noise.
    n_grid : int
        Points of the noise-free curve ``x_grid``/``f_grid``.
    """
    tr = regression_1d(n_train, noise=noise, seed=seed)
    va = regression_1d(n_val, noise=noise, seed=seed + 1)
    grid = torch.linspace(-1, 1, n_grid, dtype=torch.float64)  # (G,)
    return PolynomialProblem(Split(tr.x[:, 0] / 3, tr.y), Split(va.x[:, 0] / 3, va.y), grid,
                             target_function(grid), float(noise))


def bias_variance(degrees: Sequence[int], strength: float = 0.0, *, n_train: int = 20, n_datasets: int = 200,
                  noise: float = 0.3, seed: int = 0, n_grid: int = 100) -> dict[str, torch.Tensor]:
    r"""Bias² and variance of ridge polynomial fits, over many training sets at once.

    For each degree, fits ``n_datasets`` independent training sets of size
    ``n_train`` (batched solves), and at each point $x$ of a grid computes
    $\mathrm{bias}^2(x) = (\bar f(x) - f(x))^2$ and
    $\mathrm{var}(x) = \mathbb E(\hat f(x) - \bar f(x))^2$, averaged over
    the grid. The expected test error is $\mathrm{bias}^2 + \mathrm{var} + \sigma^2$.

    With ``strength = 0`` and a degree close to ``n_train``, some training
    sets leave the least-squares problem nearly singular (a Gram matrix with
    a condition number of $10^{12}$ and more): those fits, and the averages,
    then depend on rounding and on the solver. A small ``strength`` makes
    every system well posed.

    Returns
    -------
    dict
        ``degrees`` (M,), ``bias2`` (M,), ``variance`` (M,), ``noise2`` (scalar tensor),
        ``fits`` (M, n_datasets, n_grid), ``x_grid`` (n_grid,), and the training
        sets ``x_train``, ``y_train`` (n_datasets, n_train).
    """
    degs = [int(d) for d in degrees]
    if not degs or min(degs) < 0:
        raise ValueError(f"degrees: expected a non-empty list of ints >= 0, got {degrees!r}")
    lam = _number("strength", strength)
    g = make_generator(seed)
    x = torch.rand(n_datasets, n_train, generator=g, dtype=torch.float64) * 2 - 1  # (R, n)
    y = target_function(x) + noise * torch.randn(n_datasets, n_train, generator=g, dtype=torch.float64)
    xg = torch.linspace(-0.95, 0.95, n_grid, dtype=torch.float64)  # (G,)
    fg = target_function(xg)
    bias2, var, fits = [], [], []
    with backend.single_thread("cpu"):  # small batched solves: threads cost more than they save
        for d in degs:
            X = legendre_features(x.reshape(-1), d).reshape(n_datasets, n_train, d + 1)  # (R, n, D)
            pen = torch.ones(d + 1, dtype=torch.float64)
            pen[0] = 0
            A = X.transpose(1, 2) @ X + n_train * lam * torch.diag(pen)  # (R, D, D)
            b = X.transpose(1, 2) @ y[..., None]  # (R, D, 1)
            w = torch.linalg.lstsq(A, b).solution[..., 0]  # (R, D)
            pred = w @ legendre_features(xg, d).T  # (R, G)
            mean = pred.mean(0)  # (G,)
            bias2.append(((mean - fg) ** 2).mean())
            var.append(pred.var(0, unbiased=False).mean())
            fits.append(pred)
    return {"degrees": torch.tensor(degs), "bias2": torch.stack(bias2), "variance": torch.stack(var),
            "noise2": torch.tensor(noise**2, dtype=torch.float64), "fits": torch.stack(fits), "x_grid": xg,
            "x_train": x, "y_train": y}


# --- many small MLPs at once --------------------------------------------------------

def init_mlp(sizes: Sequence[int], n_models: int, *, generator: torch.Generator,
             dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Stacked parameters of ``n_models`` independent MLPs with layer sizes ``sizes``.

    PyTorch's ``nn.Linear`` initialization (uniform in $\\pm 1/\\sqrt{\\text{fan in}}$).

    Parameters
    ----------
    sizes : sequence of int
        ``(inputs, hidden..., outputs)``, at least two entries.
    n_models : int
        K.
    generator : torch.Generator
        On the CPU; parameters are drawn there and moved to ``device``, so a
        seed gives the same models on every device.

    Returns
    -------
    tuple of Tensor
        ``(W1, b1, W2, b2, ...)`` with ``Wl`` (K, in, out) and ``bl`` (K, out).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes: expected at least two positive layer sizes, got {sizes}")
    n_models = _checks.count("n_models", n_models)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(fan_in)
        W = (torch.rand(n_models, fan_in, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        b = (torch.rand(n_models, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        params += [W.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)]
    return tuple(params)


def mlp_logits(params: Sequence[torch.Tensor], x: torch.Tensor,
               keep: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of ONE MLP (ReLU hidden layers); vmap it over stacked parameters for an ensemble.

    Parameters
    ----------
    params : sequence of Tensor
        ``(W1, b1, ...)`` with ``Wl`` (in, out), ``bl`` (out,).
    x : Tensor
        (B, in).
    keep : sequence of Tensor, optional
        One dropout multiplier per hidden layer, (B, hidden_l): the Bernoulli
        mask already divided by $1 - p$ (as :func:`dropout` builds it). None in evaluation.

    Returns
    -------
    Tensor
        (B, out).
    """
    h = x
    n_layers = len(params) // 2
    for layer in range(n_layers):
        h = h @ params[2 * layer] + params[2 * layer + 1]  # (B, out_l)
        if layer < n_layers - 1:
            h = torch.relu(h)
            if keep is not None:
                h = h * keep[layer]
    return h


def _loss_one(params, x, targets, keep):
    """Cross-entropy of ONE model against target distributions ``targets`` (B, C)."""
    return -(targets * torch.log_softmax(mlp_logits(params, x, keep), dim=1)).sum(1).mean()


def ensemble_logits(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Evaluation-mode logits of every model of a stacked ensemble on the same inputs.

    ``params`` from :func:`init_mlp` or :func:`train_ensemble`; ``x`` (B, in).
    Returns (K, B, out).
    """
    _tensor("x", x, ndim=2)
    return vmap(mlp_logits, in_dims=(0, None))(tuple(params), x)


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` returns.

    ``params``: the stacked final parameters; ``steps`` (T,) the steps at which
    the curves were recorded; ``train_loss``, ``val_loss``, ``train_error``,
    ``val_error``: (K, T) evaluation-mode cross-entropy and error rate;
    ``config``: each model's weight decay, dropout, input noise and label
    smoothing, (K,) each; ``step_loss`` (K, steps): the loss each model was
    trained on at each step, in training mode (its batch, dropout masks, input
    noise and smoothed targets), which is what an optimizer sees.
    """

    params: tuple[torch.Tensor, ...]
    steps: torch.Tensor
    train_loss: torch.Tensor
    val_loss: torch.Tensor
    train_error: torch.Tensor
    val_error: torch.Tensor
    config: dict[str, torch.Tensor]
    step_loss: torch.Tensor | None = None

    def __repr__(self) -> str:
        k, t = self.val_loss.shape
        return f"EnsembleResult(models={k}, records={t}, final val error={self.val_error[:, -1].tolist()})"


def _per_model(name: str, value: float | Sequence[float] | torch.Tensor, high: float = math.inf) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        v = value.detach().to("cpu", torch.float64).reshape(-1) if value.dim() <= 1 else None
        if v is None:
            raise ValueError(f"{name}: expected a number or a 1-D sequence, got shape {tuple(value.shape)}")
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = torch.tensor([float(value)], dtype=torch.float64)
    else:
        v = torch.tensor([_number(f"{name}[{i}]", a, high=high) for i, a in enumerate(value)], dtype=torch.float64)
    if len(v) == 0 or not bool(torch.isfinite(v).all()) or bool((v < 0).any()) or bool((v > high).any()):
        raise ValueError(f"{name}: expected finite values in [0, {high}], got {v.tolist()}")
    return v




def train_ensemble(train: Split, val: Split, *, hidden: Sequence[int] = (64,),
                   weight_decay: float | Sequence[float] = 0.0, dropout: float | Sequence[float] = 0.0,
                   input_noise: float | Sequence[float] = 0.0, label_smoothing: float | Sequence[float] = 0.0,
                   mixup: float | Sequence[float] = 0.0, decoupled: bool = True, lr: float = 1e-2, steps: int = 300, batch_size: int | None = None,
                   eval_every: int = 10, seed: int = 0) -> EnsembleResult:
    r"""Train K small MLP classifiers at once, one per regularization setting, with ``torch.func.vmap``.

    Each model gets its own weight decay, dropout rate, input-noise level and label smoothing;
    a number applies to every model, sequences must have the common length
    K. ``torch.func.vmap`` runs the forward pass of all K models at once;
    one backward pass through the sum of their losses gives each model its own
    gradient, as the models share no parameter. Dropout masks and noise are drawn for all models at once from one seeded
    generator, and the update is :func:`adam_step` (AdamW when ``decoupled``,
    Adam with the L2 gradient otherwise), applied to the weight matrices'
    decay only (biases are not decayed). Runs on the device of ``train.x``.

    Parameters
    ----------
    train, val : Split
        ``x`` (N, D) float, ``y`` (N,) int64 class labels.
    hidden : sequence of int
        Hidden-layer widths.
    weight_decay, dropout, input_noise : float or sequence of float
        Per-model $\lambda \ge 0$, $p \in [0, 1)$, $\sigma \ge 0$.
    label_smoothing : float or sequence of float
        Per-model $\epsilon \in [0, 1]$ of the training targets (:func:`smooth_labels`).
    mixup : float or sequence of float
        Per-model $\alpha \ge 0$ of mixup (:func:`mixup_batch`): each step blends the
        model's batch with a permutation of itself, $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$
        drawn from a NumPy generator seeded by ``seed``; 0 turns it off. When every
        model has 0 the random streams are exactly those of a run without the option.
    decoupled : bool
        AdamW (True) or Adam + L2 (False).
    lr, steps : float, int
        Adam step size and number of steps.
    batch_size : int, optional
        Minibatch size (each model samples its own batches); None: full batch.
    eval_every : int
        Record the curves every ``eval_every`` steps (and at step 0 and the end).
    seed : int
        Initialization, masks, noise and batches.

    Returns
    -------
    EnsembleResult

    Raises
    ------
    ValueError
        For per-model settings of different lengths, a dropout rate of 1, bad sizes or rates.

    Notes
    -----
    The result also records ``step_loss``, the training-mode loss of every
    step (see :class:`EnsembleResult`).
    """
    for nm, s in (("train", train), ("val", val)):
        if not isinstance(s, Split):
            raise TypeError(f"{nm}: expected a losslab.data.Split, got {type(s).__name__}")
        _tensor(f"{nm}.x", s.x, ndim=2)
        if s.y.dtype != torch.int64 or s.y.dim() != 1 or len(s.y) != len(s.x):
            raise ValueError(f"{nm}.y: expected {len(s.x)} int64 class labels, got {tuple(s.y.shape)} {s.y.dtype}")
    if val.x.shape[1] != train.x.shape[1]:
        raise ValueError(f"val.x: expected {train.x.shape[1]} features like train.x, got {val.x.shape[1]}")
    steps = _checks.count("steps", steps)
    eval_every = _checks.count("eval_every", eval_every)
    settings = {"weight_decay": _per_model("weight_decay", weight_decay),
                "dropout": _per_model("dropout", dropout, high=1.0),
                "input_noise": _per_model("input_noise", input_noise),
                "label_smoothing": _per_model("label_smoothing", label_smoothing, high=1.0),
                "mixup": _per_model("mixup", mixup)}
    if bool((settings["dropout"] >= 1).any()):
        raise ValueError("dropout: a rate of 1 drops every unit and nothing can be trained; expected values in [0, 1)")
    lengths = {k: len(v) for k, v in settings.items() if len(v) > 1}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"per-model settings: expected equal lengths (or single numbers), got {lengths}")
    k = max([1, *lengths.values()])
    settings = {name: v.expand(k).clone() if len(v) == 1 else v for name, v in settings.items()}
    lr = _number("lr", lr, low_open=True)
    n, d = train.x.shape
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n):
        raise ValueError(f"batch_size: expected None or an int in [1, {n}], got {batch_size!r}")
    n_classes = int(max(int(train.y.max()), int(val.y.max()))) + 1
    dev, dtype = train.x.device, train.x.dtype
    sizes = [d, *[int(h) for h in hidden], n_classes]
    params = init_mlp(sizes, k, generator=make_generator(seed), dtype=dtype, device=dev)
    g = make_generator(seed + 1, dev)
    wd = settings["weight_decay"].to(dev, dtype)[:, None, None]  # (K, 1, 1), matrices only
    keep_p = (1 - settings["dropout"]).to(dev, dtype)  # (K,)
    sigma = settings["input_noise"].to(dev, dtype)[:, None, None]  # (K, 1, 1)
    states = [AdamState.zeros_like(p) for p in params]
    loss_all = vmap(_loss_one)  # the forward pass of all K models at once
    targets = torch.stack([smooth_labels(torch.arange(n_classes), n_classes, float(eps))  # (K, C, C): [m, y] is
                           for eps in settings["label_smoothing"]]).to(dev, dtype)  # model m's target for label y
    model = torch.arange(k, device=dev)[:, None]  # (K, 1)
    alpha = settings["mixup"].numpy()  # (K,)
    beta_rng = np.random.default_rng(seed + 2) if bool((alpha > 0).any()) else None
    b = n if batch_size is None else batch_size
    record_at = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    curves: dict[str, list[torch.Tensor]] = {"train_loss": [], "val_loss": [], "train_error": [], "val_error": []}
    step_losses: list[torch.Tensor] = []  # (K,) per step, training mode

    def record() -> None:
        with torch.no_grad():
            for split, tag in ((train, "train"), (val, "val")):
                logits = ensemble_logits(params, split.x)  # (K, N, C)
                y = split.y.expand(k, -1)  # (K, N)
                ce = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)  # (K,)
                curves[f"{tag}_loss"].append(ce)
                curves[f"{tag}_error"].append((logits.argmax(2) != y).to(dtype).mean(1))

    with backend.single_thread(dev):
        for step in range(steps + 1):
            if step in record_at:
                record()
            if step == steps:
                break
            if batch_size is None:
                xb, yb = train.x.expand(k, n, d), train.y.expand(k, n)  # (K, B, D), (K, B)
            else:
                idx = torch.stack([torch.randperm(n, generator=g, device=dev)[:b] for _ in range(k)])  # (K, B)
                xb, yb = train.x[idx], train.y[idx]
            noise = sigma * torch.randn(xb.shape, generator=g, device=dev, dtype=dtype)  # input noise, (K, B, D)
            keep = tuple(  # inverted-dropout multipliers: Bernoulli(1 - p) / (1 - p), one rate per model
                (torch.rand(k, b, h, generator=g, device=dev, dtype=dtype) < keep_p[:, None, None]).to(dtype)
                / keep_p[:, None, None]  # (K, B, H)
                for h in sizes[1:-1]
            )
            tb = targets[model, yb]  # (K, B, C)
            if beta_rng is not None:  # mixup: blend each clean batch with a permutation of itself
                lam = torch.tensor([beta_rng.beta(a, a) if a > 0 else 1.0 for a in alpha], dtype=dtype, device=dev)
                perm = torch.argsort(torch.rand(k, b, generator=g, device=dev), dim=1)  # (K, B)
                xb, tb = mixup_batch(xb, tb, lam, perm)
            xb = xb + noise
            leaves = [p.requires_grad_() for p in params]
            losses = loss_all(leaves, xb, tb, keep)  # (K,) one loss per model
            step_losses.append(losses.detach())
            grads = torch.autograd.grad(losses.sum(), leaves)  # models share nothing: each gets its own gradient
            new_params, new_states = [], []
            for i, (p, gp, st) in enumerate(zip(params, grads, states)):
                decay = wd if i % 2 == 0 else 0.0  # weights decay, biases do not
                p, st = _adam_update(p.detach(), gp, st, lr=lr, b1=0.9, b2=0.999, eps=1e-8, wd=decay, decoupled=decoupled)
                new_params.append(p)
                new_states.append(st)
            params, states = tuple(new_params), new_states
    stacked = {name: torch.stack(v, dim=1).cpu() for name, v in curves.items()}  # (K, T)
    return EnsembleResult(tuple(p.detach() for p in params), torch.tensor(record_at), stacked["train_loss"],
                          stacked["val_loss"], stacked["train_error"], stacked["val_error"], settings,
                          torch.stack(step_losses, dim=1).cpu())  # (K, steps)


# --- depth: double descent, rotations, mixup, uncertainty, implicit gradient regularization -----

def min_norm_solve(features: torch.Tensor, targets: torch.Tensor, *, rtol: float | None = None) -> torch.Tensor:
    r"""The minimum-norm least-squares solution $W = X^+ Y$, batched, through the SVD.

    $X = U\,\mathrm{diag}(s)\,V^\top$ gives $X^+ Y = V\,\mathrm{diag}(1/s)\,U^\top Y$,
    where singular values below ``rtol * s.max()`` count as zero (the
    convention of ``torch.linalg.pinv``). With more columns than rows it
    interpolates ($XW = Y$) and, of all interpolants, has the smallest norm;
    it is where gradient descent from zero ends (:func:`least_squares_gd`).
    See Chapter 7 (double descent).

    Parameters
    ----------
    features : Tensor
        $X$, shape (..., n, p).
    targets : Tensor
        $Y$, shape (..., n) or (..., n, c), the same batch shape.
    rtol : float, optional
        Relative cutoff; default ``eps * max(n, p)`` of the dtype, as ``torch.linalg.pinv``.

    Returns
    -------
    Tensor
        (..., p) or (..., p, c).

    Raises
    ------
    ValueError
        For mismatched shapes or non-finite values.
    """
    X = _tensor("features", features)
    Y = _tensor("targets", targets)
    if X.dim() < 2:
        raise ValueError(f"features: expected shape (..., n, p), got {tuple(X.shape)}")
    vector = Y.dim() == X.dim() - 1
    if vector:
        Y = Y[..., None]
    if Y.dim() != X.dim() or Y.shape[:-1] != X.shape[:-1]:
        raise ValueError(f"targets: expected shape {tuple(X.shape[:-1])} or {tuple(X.shape[:-1])} + (c,), "
                         f"got {tuple(targets.shape)}")
    n, p = X.shape[-2:]
    tol = torch.finfo(X.dtype).eps * max(n, p) if rtol is None else _number("rtol", rtol)
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)  # (..., n, k), (..., k), (..., k, p)
    keep = s > tol * s.amax(-1, keepdim=True)  # (..., k)
    inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    W = Vh.transpose(-1, -2) @ (inv[..., None] * (U.transpose(-1, -2) @ Y.to(X.dtype)))  # (..., p, c)
    return W[..., 0] if vector else W


def random_features_sweep(train: Split, val: Split, widths: Sequence[int], *, strength: float = 0.0,
                          n_draws: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    r"""Model-wise double descent: least squares on $p$ random ReLU features, for each width $p$.

    The model is a two-layer network whose first layer is frozen at random,
    $F(x) = \mathrm{relu}(x A)\,W$ with $A_{jk} \sim \mathcal N(0, 1/d)$, fitted to
    one-hot targets by least squares: the minimum-norm solution
    (:func:`min_norm_solve`) when ``strength`` is 0, else ridge,
    $W = \Phi^\top(\Phi\Phi^\top + n\lambda I)^{-1}Y$. The features of width
    $p$ are the first $p$ columns of one draw of $A$, so the widths are nested.
    At $p = n$ the feature matrix is square and nearly singular, and the
    interpolant's norm and its test error peak (Belkin et al., 2019). See Chapter 7.

    Parameters
    ----------
    train, val : Split
        ``x`` (N, d) float, ``y`` (N,) int64 labels.
    widths : sequence of int
        M numbers of features, each >= 1.
    strength : float
        Ridge $\lambda \ge 0$.
    n_draws : int
        S independent draws of the random first layer.
    seed : int

    Returns
    -------
    dict
        ``widths`` (M,); ``train_mse``, ``val_mse`` (squared error summed over
        classes, mean over examples), ``val_error`` (error rate of the argmax)
        and ``norm`` ($\|W\|_F$): (M, S) each, float64 on the CPU.
    """
    for nm, s in (("train", train), ("val", val)):
        if not isinstance(s, Split):
            raise TypeError(f"{nm}: expected a losslab.data.Split, got {type(s).__name__}")
        _tensor(f"{nm}.x", s.x, ndim=2)
        if s.y.dtype != torch.int64 or s.y.shape != s.x.shape[:1]:
            raise ValueError(f"{nm}.y: expected {len(s.x)} int64 labels, got {tuple(s.y.shape)} {s.y.dtype}")
    if val.x.shape[1] != train.x.shape[1]:
        raise ValueError(f"val.x: expected {train.x.shape[1]} features like train.x, got {val.x.shape[1]}")
    widths = [_checks.count(f"widths[{i}]", w) for i, w in enumerate(widths)]
    if not widths:
        raise ValueError("widths: expected at least one width")
    lam = _number("strength", strength)
    n_draws = _checks.count("n_draws", n_draws)
    X, Xv = train.x.to("cpu", torch.float64), val.x.to("cpu", torch.float64)  # (n, d), (N, d)
    n, d = X.shape
    classes = int(max(int(train.y.max()), int(val.y.max()))) + 1
    Y, Yv = F.one_hot(train.y.cpu(), classes).double(), F.one_hot(val.y.cpu(), classes).double()  # (n, C), (N, C)
    A = torch.randn(n_draws, d, max(widths), generator=make_generator(seed), dtype=torch.float64) / math.sqrt(d)
    out = {k: torch.empty(len(widths), n_draws, dtype=torch.float64) for k in ("train_mse", "val_mse", "val_error", "norm")}
    with backend.single_thread("cpu"):
        for i, p in enumerate(widths):
            _random_features_fit(out, i, p, X, Xv, Y, Yv, A, lam, val.y.cpu())
    out["widths"] = torch.tensor(widths)
    return out


def _random_features_fit(out, i, p, X, Xv, Y, Yv, A, lam, yv):
    """One width of :func:`random_features_sweep`: fit, then record into ``out[...][i]``."""
    n_draws, (n, classes) = A.shape[0], Y.shape
    phi, phi_v = torch.relu(X @ A[:, :, :p]), torch.relu(Xv @ A[:, :, :p])  # (S, n, p), (S, N, p)
    if lam == 0:
        W = min_norm_solve(phi, Y.expand(n_draws, n, classes))  # (S, p, C)
    else:
        K = phi @ phi.transpose(1, 2) + n * lam * torch.eye(n, dtype=torch.float64)  # (S, n, n)
        W = phi.transpose(1, 2) @ torch.linalg.solve(K, Y.expand(n_draws, n, classes))
    pred_v = phi_v @ W  # (S, N, C)
    out["train_mse"][i] = ((phi @ W - Y) ** 2).sum(-1).mean(-1)
    out["val_mse"][i] = ((pred_v - Yv) ** 2).sum(-1).mean(-1)
    out["val_error"][i] = (pred_v.argmax(-1) != yv).double().mean(-1)
    out["norm"][i] = W.norm(dim=(1, 2))


def rotate_images(x: torch.Tensor, angles: Sequence[float], *, size: tuple[int, int] = (8, 8)) -> torch.Tensor:
    r"""Copies of flattened images rotated about their centre, by bilinear interpolation (augmentation).

    Angle $\theta$ in degrees turns the content counterclockwise as displayed
    (rows downwards). Output pixel $q$ (relative to the centre $((W-1)/2, (H-1)/2)$,
    $x$ to the right, $y$ down) takes the input at $R^{-1}q$, interpolated
    bilinearly between the four nearest pixels; a neighbour outside the frame
    counts as 0 (the raw background: rotate first, standardize after). This is
    ``F.grid_sample(x, F.affine_grid(theta, align_corners=False), align_corners=False)``
    with ``theta = [[cos, -sin, 0], [sin, cos, 0]]`` for square images, which the tests check.

    Parameters
    ----------
    x : Tensor
        (N, H * W) flattened images, row by row.
    angles : sequence of float
        A angles in degrees.
    size : (int, int)
        (H, W).

    Returns
    -------
    Tensor
        (A * N, H * W): all images at the first angle, then at the second, ...
    """
    h, w = _image_size(x, size)
    angles = [_number(f"angles[{i}]", a, low=-math.inf) for i, a in enumerate(angles)]
    if not angles:
        raise ValueError("angles: expected at least one angle")
    img = x.reshape(-1, h, w)  # (N, H, W)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    u, v = (cols - (w - 1) / 2) * (2 / w), (rows - (h - 1) / 2) * (2 / h)  # normalized output coordinates, (H, W)
    out = []
    for deg in angles:
        cs, sn = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        xs = ((cs * u - sn * v) * w / 2 + (w - 1) / 2)  # source column, (H, W)
        ys = ((sn * u + cs * v) * h / 2 + (h - 1) / 2)  # source row
        x0, y0 = xs.floor(), ys.floor()
        acc = torch.zeros_like(img)
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                weight = (1 - (xs - xi).abs()) * (1 - (ys - yi).abs())  # bilinear weight, (H, W)
                inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
                idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()  # (H, W)
                acc = acc + (weight * inside).to(x.dtype) * img.reshape(-1, h * w)[:, idx]
        out.append(acc.reshape(-1, h * w))
    return torch.cat(out)  # (A * N, H * W)


def mixup_batch(x: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor | float,
                perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mixup: $\tilde x = \lambda x + (1-\lambda)x_{\pi}$, $\tilde q = \lambda q + (1-\lambda)q_{\pi}$.

    Each example is blended with another of the same batch (permutation $\pi$),
    inputs and target distributions alike, with $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$
    drawn by the caller (Zhang et al., 2018). See Chapter 7.

    Parameters
    ----------
    x : Tensor
        (..., B, D).
    targets : Tensor
        (..., B, C) target distributions.
    lam : float or Tensor
        In [0, 1]; a tensor broadcasts over the leading dimensions, shape (...,).
    perm : Tensor
        (..., B) int64, a permutation of range(B) in each batch.

    Returns
    -------
    (Tensor, Tensor)
        The mixed inputs and targets, shapes of ``x`` and ``targets``.
    """
    _tensor("x", x)
    _tensor("targets", targets)
    if x.dim() < 2 or targets.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"targets: expected shape {tuple(x.shape[:-1])} + (C,), got {tuple(targets.shape)}")
    if not isinstance(perm, torch.Tensor) or perm.dtype != torch.int64 or perm.shape != x.shape[:-1]:
        raise ValueError(f"perm: expected an int64 tensor of shape {tuple(x.shape[:-1])}, "
                         f"got {getattr(perm, 'shape', type(perm).__name__)}")
    if not torch.equal(perm.sort(-1).values, torch.arange(x.shape[-2], device=perm.device).expand_as(perm)):
        raise ValueError("perm: expected a permutation of range(B) in each batch")
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if not bool(torch.isfinite(lam_t).all()) or bool((lam_t < 0).any()) or bool((lam_t > 1).any()):
        raise ValueError(f"lam: expected values in [0, 1], got {lam_t.tolist()}")
    lam_t = lam_t.reshape(*lam_t.shape, 1, 1)
    other_x = torch.gather(x, -2, perm[..., None].expand_as(x))
    other_q = torch.gather(targets, -2, perm[..., None].expand_as(targets))
    return lam_t * x + (1 - lam_t) * other_x, lam_t.to(targets.dtype) * targets + (1 - lam_t.to(targets.dtype)) * other_q


def mc_dropout_probs(params: Sequence[torch.Tensor], x: torch.Tensor, p: float, *, samples: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Monte Carlo dropout: class probabilities of stacked MLPs with dropout left on at evaluation.

    Each of ``samples`` forward passes draws fresh masks for every hidden layer
    (``bernoulli_(1 - p)`` then divide by $1 - p$, as ``F.dropout``); the mean
    of the softmax outputs approximates the predictive distribution of the
    dropout network, and their spread its uncertainty (Gal and Ghahramani, 2016).
    The tests check one sample against ``nn.Sequential`` with ``nn.Dropout``
    in training mode. See Chapter 7.

    Parameters
    ----------
    params : sequence of Tensor
        Stacked ``(W1, b1, ...)`` from :func:`init_mlp` / :func:`train_ensemble`, ``Wl`` (K, in, out).
    x : Tensor
        (B, in).
    p : float
        Dropout rate in [0, 1).
    samples : int
        S >= 1.
    generator : torch.Generator, optional
        On ``x.device``; the masks are drawn sample by sample, layer by layer.

    Returns
    -------
    Tensor
        (S, K, B, C) probabilities.
    """
    _tensor("x", x, ndim=2)
    params = _params("params", params)
    if len(params) % 2 or params[0].dim() != 3 or params[0].shape[1] != x.shape[1]:
        raise ValueError(f"params: expected stacked (W1, b1, ...) with W1 of shape (K, {x.shape[1]}, hidden)")
    rate = _number("p", p, high=1.0, high_open=True)
    samples = _checks.count("samples", samples)
    k, b = params[0].shape[0], x.shape[0]
    n_layers = len(params) // 2
    out = []
    with torch.no_grad(), backend.single_thread(x.device):
        for _ in range(samples):
            h = x  # (B, in), then (K, B, width_l)
            for layer in range(n_layers):
                h = torch.matmul(h, params[2 * layer]) + params[2 * layer + 1][:, None, :]  # (K, B, out_l)
                if layer < n_layers - 1:
                    mask = torch.empty(h.shape, dtype=h.dtype, device=h.device).bernoulli_(1 - rate, generator=generator)
                    h = torch.relu(h) * mask / (1 - rate)  # inverted dropout, as F.dropout
            out.append(torch.softmax(h, dim=-1))  # (K, B, C)
    return torch.stack(out)  # (S, K, B, C)


def modified_gradient(grad: Callable[[torch.Tensor], torch.Tensor],
                      lr: float | torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The gradient of the loss that gradient descent with step $\eta$ follows: $\tilde L = L + \frac{\eta}{4}\|\nabla L\|^2$.

    Backward error analysis (Barrett and Dherin, 2021): the iterates of
    $\theta_{k+1} = \theta_k - \eta\nabla L(\theta_k)$ stay within $O(\eta^2)$
    of the gradient flow of $\tilde L$ at time $k\eta$ over a fixed time, against $O(\eta)$ for
    the flow of $L$ itself. The extra term penalizes steep regions: the
    implicit regularization of a finite step. Its gradient is
    $\nabla\tilde L = \nabla L + \frac{\eta}{2}\,H\,\nabla L$, with the
    Hessian-vector product $H\nabla L$ taken by one backward pass through ``grad``. See Chapter 7.

    Parameters
    ----------
    grad : callable
        $\nabla L$ of a batch of points: maps (K, D) to (K, D), row by row, written
        in differentiable torch operations.
    lr : float or Tensor
        $\eta > 0$, or (K,) one step size per row.

    Returns
    -------
    callable
        $\nabla\tilde L$, mapping (K, D) to (K, D).
    """
    if not callable(grad):
        raise TypeError(f"grad: expected a callable, got {type(grad).__name__}")
    if isinstance(lr, torch.Tensor):
        eta = _tensor("lr", lr, ndim=1)
        if bool((eta <= 0).any()):
            raise ValueError(f"lr: expected step sizes > 0, got a minimum of {float(eta.min())}")
    else:
        eta = _number("lr", lr, low_open=True)

    def field(theta: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            point = theta.detach().requires_grad_()
            g = grad(point)  # (K, D)
            hg, = torch.autograd.grad(g, point, grad_outputs=g.detach())  # (K, D): H grad L, row by row
        e = eta[:, None].to(theta.dtype) if isinstance(eta, torch.Tensor) else eta
        return (g + e / 2 * hg).detach()
    return field


def gradient_flow(grad: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor, *, time: float,
                  steps: int) -> torch.Tensor:
    r"""Integrate the gradient flow $\dot\theta = -\nabla L(\theta)$ from many starting points (classical RK4).

    Parameters
    ----------
    grad : callable
        $\nabla L$ of a batch of points, (K, D) to (K, D) (e.g. :func:`modified_gradient`).
    theta0 : Tensor
        (K, D) starting points.
    time : float
        Total time $t \ge 0$.
    steps : int
        RK4 steps of size ``time / steps``; the error falls like ``steps**-4``
        while the step times the largest curvature stays well below 2.

    Returns
    -------
    Tensor
        (K, D), $\theta(t)$ for each start.
    """
    if not callable(grad):
        raise TypeError(f"grad: expected a callable, got {type(grad).__name__}")
    theta = _tensor("theta0", theta0, ndim=2)
    t = _number("time", time)
    steps = _checks.count("steps", steps)
    h = t / steps
    with torch.no_grad():
        for _ in range(steps):
            k1 = -grad(theta)
            k2 = -grad(theta + h / 2 * k1)
            k3 = -grad(theta + h / 2 * k2)
            k4 = -grad(theta + h * k3)
            theta = theta + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return theta
