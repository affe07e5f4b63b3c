"""Loss functions from scratch, each matching its PyTorch counterpart.

See Chapter 1, "Loss functions".

Every function here takes tensors, returns tensors on the input's device and
is written to read like its formula. Where ``torch.nn.functional`` has the same
loss, the signature, the ``reduction`` modes and the edge-case conventions are
PyTorch's (``tests/test_losses.py`` checks them in float64 on random and
extreme inputs). What PyTorch does not have (log-cosh, quantile, focal,
contrastive, InfoNCE, expected calibration error, temperature scaling, class
weights) follows the formula in its docstring.

Unlike PyTorch, bad input is refused early with a ``ValueError`` or
``TypeError`` naming the argument: shapes that would broadcast silently,
class targets out of range, float targets where class indices are expected,
NaN in any input, infinite logits or predictions.

Groups
------
- regression: :func:`mse_loss`, :func:`l1_loss`, :func:`huber_loss`,
  :func:`smooth_l1_loss`, :func:`log_cosh_loss`, :func:`quantile_loss`,
  :func:`fit_line`;
- binary and multi-label: :func:`binary_cross_entropy`,
  :func:`binary_cross_entropy_with_logits`, :func:`focal_loss`;
- multi-class: :func:`logsumexp`, :func:`log_softmax`, :func:`softmax`,
  :func:`nll_loss`, :func:`cross_entropy`, :func:`class_weights`;
- sequences: :func:`token_cross_entropy`, :func:`perplexity`;
- information: :func:`entropy`, :func:`kl_div`;
- embeddings: :func:`triplet_margin_loss`, :func:`contrastive_loss`,
  :func:`cosine_embedding_loss`, :func:`margin_ranking_loss`, :func:`info_nce`;
- calibration: :func:`reliability_bins`, :func:`expected_calibration_error`,
  :func:`fit_temperature`;
- analytic gradients: :func:`mse_grad`, :func:`bce_with_logits_grad`,
  :func:`sigmoid_mse_grad`, :func:`cross_entropy_grad`;
- combining: :func:`weighted_sum`;
- likelihoods and margins: :func:`gaussian_nll_loss`, :func:`poisson_nll_loss`,
  :func:`multi_margin_loss` (multi-class hinge), :func:`soft_margin_loss`,
  :func:`multilabel_soft_margin_loss`, :func:`triplet_margin_with_distance_loss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from . import _checks

__all__ = [
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "log_cosh_loss", "quantile_loss", "fit_line",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "focal_loss",
    "logsumexp", "log_softmax", "softmax", "nll_loss", "cross_entropy", "class_weights",
    "token_cross_entropy", "perplexity", "entropy", "kl_div",
    "triplet_margin_loss", "contrastive_loss", "cosine_embedding_loss", "margin_ranking_loss", "info_nce",
    "ReliabilityBins", "reliability_bins", "expected_calibration_error", "fit_temperature",
    "mse_grad", "bce_with_logits_grad", "sigmoid_mse_grad", "cross_entropy_grad", "weighted_sum",
    "gaussian_nll_loss", "poisson_nll_loss", "multi_margin_loss", "soft_margin_loss", "multilabel_soft_margin_loss",
    "triplet_margin_with_distance_loss",
    "hinge_loss",
    "brier_score",
]

_REDUCTIONS = ("mean", "sum", "none")


# --- input checks -------------------------------------------------------------------

def _tensor(name: str, x: object) -> torch.Tensor:
    return _checks.tensor(name, x)


def _float(name: str, x: object, *, allow_inf: bool = False) -> torch.Tensor:
    """``x`` must be a floating tensor without NaN (and without inf unless ``allow_inf``)."""
    x = _tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    bad = torch.isnan(x) if allow_inf else ~torch.isfinite(x)
    if bool(bad.any()):
        what = "NaN" if allow_inf else "NaN or inf"
        raise ValueError(f"{name}: expected finite values, got {int(bad.sum())} {what} entries (first at flat index "
                         f"{int(bad.flatten().nonzero()[0])})")
    return x


def _nonempty(x: torch.Tensor, name: str = "input") -> torch.Tensor:
    if x.numel() == 0:
        raise ValueError(f"{name}: expected at least one entry, got an empty tensor of shape {tuple(x.shape)}")
    return x


def _same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{b_name}: expected the shape of {a_name} {tuple(a.shape)}, got {tuple(b.shape)} "
            "(no silent broadcasting: reshape explicitly, e.g. target.view_as(input))"
        )


def _same_dtype(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{b_name}: expected dtype {a.dtype} like {a_name}, got {b.dtype}")


def _pair(input: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target of a regression or binary loss: same shape, same float dtype, finite."""
    input = _float("input", input)
    target = _float("target", target)
    _same_shape("input", input, "target", target)
    _same_dtype("input", input, "target", target)
    return input, target


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    return _checks.positive(name, value, allow_zero=allow_zero)


def _reduction(reduction: str, allowed: tuple[str, ...] = _REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction: expected one of {allowed}, got {reduction!r}")
    return reduction


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _weight_like(name: str, weight: object, input: torch.Tensor) -> torch.Tensor:
    """An elementwise weight that broadcasts *to* ``input`` (never enlarges it)."""
    weight = _float(name, weight)
    _same_dtype("input", input, name, weight)
    try:
        shape = torch.broadcast_shapes(weight.shape, input.shape)
    except RuntimeError:
        shape = None
    if shape != input.shape:
        raise ValueError(f"{name}: expected a shape that broadcasts to input {tuple(input.shape)}, got {tuple(weight.shape)}")
    if bool((weight < 0).any()):
        raise ValueError(f"{name}: expected non-negative weights, got a minimum of {float(weight.min())}")
    return weight


# --- regression ---------------------------------------------------------------------

def mse_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Mean squared error $\ell(\hat y, y) = (\hat y - y)^2$.

    See Chapter 1. Matches ``torch.nn.functional.mse_loss``.

    Parameters
    ----------
    input, target : Tensor, any shape (the same), floating
        Predictions $\hat y$ and targets $y$.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor
        A scalar, or the per-element losses (shape of ``input``) for ``"none"``.

    Raises
    ------
    ValueError
        If the shapes differ (no broadcasting), values are not finite or ``reduction`` is unknown.
    TypeError
        If either is not a floating tensor or their dtypes differ.

    Example
    -------
    >>> mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
    tensor(5.)
    """
    input, target = _pair(input, target)
    return _reduce((input - target) ** 2, _reduction(reduction))


def mse_grad(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Analytic gradient of :func:`mse_loss` in ``input``: $2(\hat y - y)$, divided by $N$ for ``"mean"``.

    See Chapter 1. Returns a tensor of the shape of ``input``.
    """
    input, target = _pair(input, target)
    if _reduction(reduction, ("mean", "sum")) == "mean":
        return 2 * (input - target) / input.numel()
    return 2 * (input - target)


def l1_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Mean absolute error $\ell = |\hat y - y|$; its minimizer over a constant is the median.

    See Chapter 1. Matches ``torch.nn.functional.l1_loss``. Parameters as :func:`mse_loss`.
    """
    input, target = _pair(input, target)
    return _reduce((input - target).abs(), _reduction(reduction))


def huber_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", delta: float = 1.0) -> torch.Tensor:
    r"""Huber loss: quadratic for small residuals, linear for large ones.

    $$\ell_\delta(r) = \begin{cases} \tfrac12 r^2 & |r| \le \delta \\ \delta(|r| - \tfrac12\delta) & |r| > \delta\end{cases},
    \qquad r = \hat y - y.$$

    Its gradient is $r$ clipped to $[-\delta, \delta]$: an outlier pulls with
    force at most $\delta$. See Chapter 1. Matches ``torch.nn.functional.huber_loss``.

    Parameters
    ----------
    input, target : Tensor, any shape (the same), floating
    reduction : {"mean", "sum", "none"}
    delta : float > 0
        Where the loss turns from quadratic to linear.
    """
    input, target = _pair(input, target)
    delta = _positive("delta", delta)
    r = (input - target).abs()
    loss = torch.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))
    return _reduce(loss, _reduction(reduction))


def smooth_l1_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", beta: float = 1.0) -> torch.Tensor:
    r"""Smooth L1: Huber divided by its threshold, $\ell = \text{huber}_\beta(r) / \beta$.

    $\tfrac12 r^2/\beta$ for $|r| < \beta$, $|r| - \tfrac12\beta$ beyond; ``beta = 0`` is plain L1.
    See Chapter 1. Matches ``torch.nn.functional.smooth_l1_loss``.
    """
    input, target = _pair(input, target)
    beta = _positive("beta", beta, allow_zero=True)
    r = (input - target).abs()
    if beta == 0:
        loss = r
    else:
        loss = torch.where(r < beta, 0.5 * r**2 / beta, r - 0.5 * beta)
    return _reduce(loss, _reduction(reduction))


def log_cosh_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Log-cosh loss $\ell = \log\cosh(\hat y - y)$: about $r^2/2$ near 0, about $|r| - \log 2$ far away.

    Computed stably as $|r| + \operatorname{softplus}(-2|r|) - \log 2$, so large
    residuals do not overflow ``cosh``. See Chapter 1 (no PyTorch counterpart).
    """
    input, target = _pair(input, target)
    r = (input - target).abs()
    loss = r + torch.nn.functional.softplus(-2 * r) - math.log(2.0)
    return _reduce(loss, _reduction(reduction))


def quantile_loss(input: torch.Tensor, target: torch.Tensor, q: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    r"""Quantile (pinball) loss $\ell_q(r) = \max(q\,r, (q - 1)\,r)$ with $r = y - \hat y$.

    Minimizing it over a constant gives the $q$-quantile of the targets;
    $q = 1/2$ is half the absolute error. See Chapter 1 (no PyTorch counterpart).

    Parameters
    ----------
    q : float in (0, 1)
        The quantile to estimate.
    """
    input, target = _pair(input, target)
    q = _checks.number("q", q, low=0.0, high=1.0, low_open=True, high_open=True)
    r = target - input
    return _reduce(torch.maximum(q * r, (q - 1) * r), _reduction(reduction))


def fit_line(x: torch.Tensor, y: torch.Tensor, loss: str = "mse", *, delta: float = 1.0, iters: int = 200) -> torch.Tensor:
    r"""Fit $y \approx a + b x$ by minimizing the mean ``loss`` of the residuals.

    - ``"mse"``: least squares, in closed form.
    - ``"mae"``: least absolute deviations. An optimal line passes through two
      of the points, so for $N \le 300$ every pair is tried at once (exact);
      larger $N$ uses the reweighting below with $w_i = 1/|r_i|$.
    - ``"huber"``: iteratively reweighted least squares. Each round solves a
      weighted least-squares problem with $w_i = \psi(r_i)/r_i =
      \min(1, \delta/|r_i|)$, where $\psi$ is the loss's derivative (the residual
      clipped to $\pm\delta$), starting from the least-squares line.

    See Chapter 1.

    Parameters
    ----------
    x, y : Tensor, shape (N,), floating
    loss : {"mse", "mae", "huber"}
    delta : float > 0
        Huber threshold.
    iters : int
        Most reweighting rounds (the loop stops earlier once the line stops moving).

    Returns
    -------
    Tensor, shape (2,)
        Intercept $a$ and slope $b$.
    """
    x, y = _pair(x, y)
    if x.dim() != 1 or x.numel() < 2:
        raise ValueError(f"x: expected shape (N,) with N >= 2, got {tuple(x.shape)}")
    if loss not in ("mse", "mae", "huber"):
        raise ValueError(f"loss: expected 'mse', 'mae' or 'huber', got {loss!r}")
    delta = _positive("delta", delta)
    if bool((x == x[0]).all()):
        raise ValueError("x: expected at least two distinct values to fit a slope")

    def weighted_ls(w: torch.Tensor) -> tuple[float, float]:
        wx = w * x  # (N,)
        s0, s1, s2, t0, t1 = torch.stack([w.sum(), wx.sum(), (wx * x).sum(), (w * y).sum(), (wx * y).sum()]).tolist()
        det = s0 * s2 - s1 * s1
        return (s2 * t0 - s1 * t1) / det, (s0 * t1 - s1 * t0) / det

    if loss == "mae" and x.numel() <= 300:
        i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)  # (P,), (P,) every pair
        keep = x[i] != x[j]
        i, j = i[keep], j[keep]
        slope = (y[j] - y[i]) / (x[j] - x[i])  # (P,)
        icpt = y[i] - slope * x[i]  # (P,)
        cost = (y[None, :] - icpt[:, None] - slope[:, None] * x[None, :]).abs().sum(1)  # (P,)
        k = int(cost.argmin())
        return torch.stack([icpt[k], slope[k]])
    a, b = weighted_ls(torch.ones_like(x))
    if loss != "mse":
        for _ in range(iters):
            r = (y - a - b * x).abs().clamp_min(1e-12)  # (N,)
            w = 1 / r if loss == "mae" else torch.clamp(delta / r, max=1.0)
            a_new, b_new = weighted_ls(w)
            done = abs(a_new - a) + abs(b_new - b) < 1e-12 * (1 + abs(a) + abs(b))
            a, b = a_new, b_new
            if done:
                break
    return torch.tensor([a, b], dtype=x.dtype, device=x.device)


# --- binary and multi-label ---------------------------------------------------------

# PyTorch's floor for p(1 - p) in the gradient of binary_cross_entropy: 1e-12 rounded to float32.
_BCE_EPS = float(torch.tensor(1e-12, dtype=torch.float32))


class _BCEFromProbabilities(torch.autograd.Function):
    r"""$-[y\log p + (1-y)\log(1-p)]$ with each log clamped at $-100$, and PyTorch's gradients.

    Autograd through the clamped formula would give a NaN gradient at
    $p \in \{0, 1\}$ ($0 \cdot \infty$ in the backward of ``log``) and a zero
    gradient wherever $\log p < -100$; PyTorch instead defines
    $\partial\ell/\partial p = (p - y) / \max(p(1-p), 10^{-12})$ and
    $\partial\ell/\partial y = -\operatorname{logit}(p)$. The backward states
    those formulas, so gradients match ``torch.nn.functional.binary_cross_entropy``
    at the boundary too. Elementwise; no weight, no reduction.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -(y * p.log().clamp_min(-100) + (1 - y) * torch.log1p(-p).clamp_min(-100))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, y = ctx.saved_tensors
        grad_p = grad * (p - y) / (p * (1 - p)).clamp_min(_BCE_EPS)
        grad_y = grad * -torch.logit(p)
        return grad_p, grad_y


def binary_cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                         reduction: str = "mean") -> torch.Tensor:
    r"""Binary cross-entropy from probabilities: $\ell = -[y\log p + (1-y)\log(1-p)]$.

    Each log is clamped at $-100$, as PyTorch does, so $p \in \{0, 1\}$ gives a
    large finite loss instead of ``inf``. The gradient is PyTorch's,
    $(p - y)/\max(p(1-p), 10^{-12})$ in $p$, finite at $p \in \{0, 1\}$ too
    (autograd through the clamp would give NaN there). Prefer
    :func:`binary_cross_entropy_with_logits`, which never forms $p$. See
    Chapter 1. Matches ``torch.nn.functional.binary_cross_entropy``, values and
    gradients.

    Parameters
    ----------
    input : Tensor, any shape, floating, values in [0, 1]
        Probabilities $p$.
    target : Tensor, shape of ``input``, values in [0, 1]
    weight : Tensor, broadcastable to ``input``, optional
        Per-element rescaling.
    reduction : {"mean", "sum", "none"}

    Raises
    ------
    ValueError
        If a probability or target lies outside [0, 1], or shapes differ.
    """
    input, target = _pair(input, target)
    for name, t in (("input", input), ("target", target)):
        if bool(((t < 0) | (t > 1)).any()):
            raise ValueError(f"{name}: expected probabilities in [0, 1], got values in [{float(t.min())}, {float(t.max())}]")
    loss = _BCEFromProbabilities.apply(input, target)
    if weight is not None:
        loss = loss * _weight_like("weight", weight, input)
    return _reduce(loss, _reduction(reduction))


class _BCEFromLogits(torch.autograd.Function):
    r"""$\ell = (1-y)\,z + (1 + (p_w - 1)\,y)\operatorname{softplus}(-z)$ with the gradient stated exactly.

    The stable value needs $\operatorname{softplus}(-z) = \max(-z, 0) +
    \log(1 + e^{-|z|})$, and autograd through ``max``/``clamp`` and ``abs``
    is wrong at their kink, $z = 0$, where the true derivative is smooth: it
    gave $-y$ or $1 - y$ instead of $\sigma(0) - y = \tfrac12 - y$, depending on
    the PyTorch version's convention for ``clamp`` at its boundary, so
    logistic regression started at $w = 0$ took a different first step. The
    backward here states the derivatives, which are smooth everywhere:

    $$\frac{\partial\ell}{\partial z} = (1 + (p_w - 1)\,y)\,\sigma(z) - p_w\,y
      \quad(= \sigma(z) - y \text{ for } p_w = 1),$$

    and, in stable forms, $\partial\ell/\partial y = \log\sigma(-z) -
    p_w\log\sigma(z)$ ($= -z$ for $p_w = 1$) and $\partial\ell/\partial p_w =
    -y\log\sigma(z)$: PyTorch's formulas, so gradients match
    ``torch.nn.functional.binary_cross_entropy_with_logits`` at every finite $z$.
    The backward is made of differentiable operations, so second derivatives
    ($\partial^2\ell/\partial z^2 = (1 + (p_w - 1)y)\,\sigma(z)(1 - \sigma(z))$)
    work too. Elementwise; ``pos_weight`` broadcast to ``z``; no weight, no reduction.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(z: torch.Tensor, y: torch.Tensor, pw: torch.Tensor | None) -> torch.Tensor:
        softplus_neg = (-z).clamp_min(0) + torch.log1p(torch.exp(-z.abs()))  # log(1 + e^{-z}), no overflow
        scale = 1 if pw is None else 1 + (pw - 1) * y
        return (1 - y) * z + scale * softplus_neg

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, y, pw = inputs
        ctx.has_pw = pw is not None
        ctx.save_for_backward(z, y, *(() if pw is None else (pw,)))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, y, *rest = ctx.saved_tensors
        if not ctx.has_pw:
            return grad * (torch.sigmoid(z) - y), grad * -z, None
        (pw,) = rest
        log_sig = -_softplus(-z)  # log sigmoid(z), stable
        log_sig_neg = -_softplus(z)  # log sigmoid(-z) = log(1 - sigmoid(z))
        t = pw * y
        grad_z = grad * ((t + 1 - y) * torch.sigmoid(z) - t)  # (1 + (pw - 1) y) sigma(z) - pw y, in PyTorch's order
        grad_y = grad * (log_sig_neg - pw * log_sig)
        grad_pw = (grad * y * -log_sig).sum_to_size(pw.shape) if ctx.needs_input_grad[2] else None
        return grad_z, grad_y, grad_pw


def _softplus(u: torch.Tensor) -> torch.Tensor:
    r"""$\log(1 + e^u)$ without overflow, in a form whose autograd gradient is $\sigma(u)$ everywhere, $u = 0$ included.

    Each branch of the ``where`` is smooth and sees only inputs of its own
    sign (the other branch gets 0), so neither overflows nor sends NaN
    through the backward; at $u = 0$ the chosen branch's slope is $\tfrac12$.
    """
    pos = u > 0
    up = torch.where(pos, u, torch.zeros_like(u))  # >= 0
    un = torch.where(pos, torch.zeros_like(u), u)  # <= 0
    return torch.where(pos, up + torch.log1p(torch.exp(-up)), torch.log1p(torch.exp(un)))


def binary_cross_entropy_with_logits(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                                     reduction: str = "mean", pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    r"""Binary cross-entropy from logits $z$, never forming $\sigma(z)$.

    $$\ell = -w\,[\,p_w\,y\log\sigma(z) + (1-y)\log(1-\sigma(z))\,]
           = w\,[\,(1-y)\,z + (1 + (p_w - 1)y)\,\operatorname{softplus}(-z)\,],$$

    with $\operatorname{softplus}(-z) = \max(-z, 0) + \log(1 + e^{-|z|})$,
    finite for every finite $z$. Its gradient in $z$ is $\sigma(z) - y$ (for
    $w = p_w = 1$), computed as that formula rather than by differentiating
    ``max`` and ``abs``, whose slopes at their kink $z = 0$ are conventions
    (the true slope there is $\sigma(0) - y = \tfrac12 - y$). See Chapter 1.
    Matches ``torch.nn.functional.binary_cross_entropy_with_logits``, values
    and gradients (in ``input`` and ``target``), at every finite $z$.

    Parameters
    ----------
    input : Tensor, any shape, floating
        Logits $z$.
    target : Tensor, shape of ``input``, values in [0, 1]
    weight : Tensor, broadcastable to ``input``, optional
        Per-element rescaling $w$.
    pos_weight : Tensor, broadcastable to ``input`` (usually shape (C,) for C labels), optional
        Weight $p_w$ of positive examples, e.g. ``n_negative / n_positive``.
    reduction : {"mean", "sum", "none"}
    """
    input, target = _pair(input, target)
    if bool(((target < 0) | (target > 1)).any()):
        raise ValueError(f"target: expected values in [0, 1], got values in [{float(target.min())}, {float(target.max())}]")
    pw = None if pos_weight is None else _weight_like("pos_weight", pos_weight, input)
    loss = _BCEFromLogits.apply(input, target, pw)
    if weight is not None:
        loss = loss * _weight_like("weight", weight, input)
    return _reduce(loss, _reduction(reduction))


def bce_with_logits_grad(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Analytic gradient of :func:`binary_cross_entropy_with_logits` in the logits: $\sigma(z) - y$ (over $N$ for mean).

    See Chapter 1.
    """
    input, target = _pair(input, target)
    g = torch.sigmoid(input) - target
    return g / input.numel() if _reduction(reduction, ("mean", "sum")) == "mean" else g


def sigmoid_mse_grad(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Gradient in the logit $z$ of the squared error $(\sigma(z) - y)^2$: $2(\sigma - y)\,\sigma(1 - \sigma)$.

    The factor $\sigma(1-\sigma)$ vanishes when the sigmoid saturates, so a
    confidently wrong prediction barely moves: compare :func:`bce_with_logits_grad`.
    See Chapter 1.
    """
    input, target = _pair(input, target)
    s = torch.sigmoid(input)
    g = 2 * (s - target) * s * (1 - s)
    return g / input.numel() if _reduction(reduction, ("mean", "sum")) == "mean" else g


def focal_loss(input: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = None,
               reduction: str = "mean") -> torch.Tensor:
    r"""Binary focal loss from logits {Lin et al., 2017}: $\ell = -\alpha_t (1 - p_t)^\gamma \log p_t$.

    $p_t = p\,y + (1-p)(1-y)$ is the probability given to the true label and
    $\alpha_t = \alpha y + (1-\alpha)(1-y)$. The factor $(1-p_t)^\gamma$ shrinks
    the loss of examples already classified well; $\gamma = 0$ and no
    ``alpha`` is :func:`binary_cross_entropy_with_logits`. The log term is
    computed from logits, stably. See Chapter 1 (the formula of
    ``torchvision.ops.sigmoid_focal_loss``).

    Parameters
    ----------
    input : Tensor, any shape, floating
        Logits.
    target : Tensor, shape of ``input``, values in [0, 1]
    gamma : float >= 0
        Focusing parameter.
    alpha : float in [0, 1], optional
        Weight of the positive class; None for no weighting.
    reduction : {"mean", "sum", "none"}
    """
    gamma = _positive("gamma", gamma, allow_zero=True)
    alpha = None if alpha is None else _checks.number("alpha", alpha, low=0.0, high=1.0)
    ce = binary_cross_entropy_with_logits(input, target, reduction="none")  # validates input and target
    # (1 - p_t)^gamma in log space, from logits: 1 - p_t = y sigma(-z) + (1 - y) sigma(z). The direct
    # (1 - sigmoid(z) y - ...)**gamma rounds 1 - p_t to 0 for a confident right answer (|z| > 37 in
    # float64), and for 0 < gamma < 1 the power's derivative there is inf * 0 = NaN.
    if gamma == 0:
        loss = ce
    else:
        # log(1 - p_t) = logaddexp(log y + log sigma(-z), log(1 - y) + log sigma(z)). Its derivative in
        # y, (sigma(-z) - sigma(z)) / (1 - p_t), is finite for a hard 0/1 target, but autograd would reach
        # it as 0 * inf through log 0: the value is computed with y held fixed and the y-derivative added
        # in closed form (a term that is 0 in value).
        y = target.detach()
        neg_inf = torch.full_like(y, -math.inf)
        log_y = torch.where(y > 0, torch.log(torch.where(y > 0, y, 1.0)), neg_inf)
        log_1my = torch.where(y < 1, torch.log1p(-torch.where(y < 1, y, 0.0)), neg_inf)
        ls_neg, ls_pos = torch.nn.functional.logsigmoid(-input), torch.nn.functional.logsigmoid(input)
        log_miss = torch.logaddexp(log_y + ls_neg, log_1my + ls_pos)
        if target.requires_grad:
            d_target = (torch.exp(ls_neg - log_miss) - torch.exp(ls_pos - log_miss)).detach()
            log_miss = log_miss + (target - y) * d_target
        loss = ce * torch.exp(gamma * log_miss)
    if alpha is not None:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return _reduce(loss, _reduction(reduction))


# --- multi-class --------------------------------------------------------------------

def logsumexp(input: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    r"""$\log\sum_j e^{x_j}$ computed as $m + \log\sum_j e^{x_j - m}$ with $m = \max_j x_j$.

    Subtracting the maximum makes the largest exponent $e^0 = 1$: nothing
    overflows, and the sum is at least 1, so its log is never $-\infty$. See
    Chapter 1. Matches ``torch.logsumexp`` (finite inputs).
    """
    input = _nonempty(_float("input", input))
    m = input.amax(dim=dim, keepdim=True).detach()  # (..., 1, ...); a constant shift, so no gradient flows through it
    out = m + torch.log(torch.exp(input - m).sum(dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def log_softmax(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""$\log\operatorname{softmax}(x)_i = (x_i - m) - \log\sum_j e^{x_j - m}$ with $m = \max_j x_j$. See Chapter 1.

    The order of the two subtractions matters. $x_i - \operatorname{logsumexp}(x)$
    first forms $m + \log S$, whose small part $\log S \in [0, \log C]$ is rounded
    away next to a large $m$ ($10^{100} + \log 2 = 10^{100}$ in floating point), so
    near-tied large logits would get log-probability 0 instead of $-\log 2$.
    $(x_i - m)$ is exact for the largest logits, and subtracting $\log S$ last
    keeps it.
    """
    input = _nonempty(_float("input", input))
    m = input.amax(dim=dim, keepdim=True).detach()  # (..., 1, ...)
    shifted = input - m  # 0 at the maximum, exactly
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def softmax(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""$\operatorname{softmax}(x)_i = e^{x_i - m} / \sum_j e^{x_j - m}$ with $m = \max_j x_j$. See Chapter 1."""
    input = _nonempty(_float("input", input))
    e = torch.exp(input - input.amax(dim=dim, keepdim=True).detach())
    return e / e.sum(dim=dim, keepdim=True)


def _class_target(input: torch.Tensor, target: object, ignore_index: int, name: str = "target") -> torch.Tensor:
    """Validate class-index targets for ``input`` of shape (C,), (N, C) or (N, C, d1, ...)."""
    target = _tensor(name, target)
    if input.dim() == 0:
        raise ValueError("input: expected shape (C,), (N, C) or (N, C, d1, ...), got a scalar")
    expected = () if input.dim() == 1 else (input.shape[0], *input.shape[2:])
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"{name}: expected class indices (an integer tensor of shape {expected}) or class probabilities "
            f"(floating, shape {tuple(input.shape)}), got {target.dtype} of shape {tuple(target.shape)}"
        )
    if tuple(target.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected} for input of shape {tuple(input.shape)}, got {tuple(target.shape)}")
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        raise ValueError(
            f"{name}: expected class indices in [0, {n_classes - 1}] (or ignore_index={ignore_index}), "
            f"got {int(target[bad].flatten()[0])}"
        )
    return target.long()


def _log_probabilities(name: str, x: torch.Tensor, where: str) -> None:
    """Log-probabilities are <= 0: a positive entry means logits or probabilities were passed instead."""
    if x.numel() and not _checks.traced(x) and bool((x > 0).any()):
        raise ValueError(
            f"{name}: expected log-probabilities (all <= 0) for {where}, got a maximum of {float(x.max())}; "
            "pass log_softmax(logits) (or use cross_entropy on raw logits), not logits or probabilities")


def _classes_last(x: torch.Tensor) -> torch.Tensor:
    """(C,) -> (C,); (N, C, d1, ...) -> (N, d1, ..., C)."""
    return x if x.dim() == 1 else x.movedim(1, -1)


def _class_weight(weight: object, n_classes: int, like: torch.Tensor | None = None) -> torch.Tensor:
    weight = _float("weight", weight)
    if like is not None:
        _same_dtype("input", like, "weight", weight)
    if tuple(weight.shape) != (n_classes,):
        raise ValueError(f"weight: expected one weight per class, shape ({n_classes},) from the classes of input, "
                         f"got {tuple(weight.shape)}")
    if bool((weight < 0).any()):
        raise ValueError(f"weight: expected non-negative class weights, got a minimum of {float(weight.min())}")
    return weight


def nll_loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood of class indices given log-probabilities: $\ell_i = -w_{y_i}\,\log p_{i, y_i}$.

    Targets equal to ``ignore_index`` contribute nothing. ``"mean"`` divides
    by the total weight of the counted targets, $\sum_i w_{y_i}$ (the number
    of counted targets without ``weight``), not by $N$. See Chapter 1.
    Matches ``torch.nn.functional.nll_loss``.

    Parameters
    ----------
    input : Tensor, shape (C,), (N, C) or (N, C, d1, ...), floating
        Log-probabilities (e.g. from :func:`log_softmax`).
    target : Tensor, shape (), (N,) or (N, d1, ...), integer
        Class indices in [0, C), or ``ignore_index``.
    weight : Tensor, shape (C,), optional
        Per-class weight.
    ignore_index : int
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor
        A scalar, or the losses of shape ``target.shape`` (0 where ignored) for ``"none"``.
        ``"mean"`` over zero counted targets is NaN (0/0), as in PyTorch.
    """
    input = _float("input", input, allow_inf=True)
    _log_probabilities("input", input, "nll_loss")
    target = _class_target(input, target, ignore_index)
    reduction = _reduction(reduction)
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    logp = _classes_last(input)  # (..., C)
    valid = target != ignore_index  # (...)
    safe = torch.where(valid, target, torch.zeros_like(target))  # (...)
    picked = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (...) log p of the true class
    w = _class_weight(weight, n_classes, input)[safe] if weight is not None else torch.ones_like(picked)
    w = torch.where(valid, w, torch.zeros_like(w))  # (...)
    loss = torch.where(valid, -picked * w, torch.zeros_like(picked))
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
    r"""Softmax cross-entropy from logits: $\ell_i = -\log\operatorname{softmax}(z_i)_{y_i} = \log\sum_j e^{z_{ij}} - z_{i y_i}$.

    The softmax is applied here, once, inside a stable :func:`log_softmax`:
    pass raw logits, never probabilities. See Chapter 1. Matches
    ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : Tensor, shape (C,), (N, C) or (N, C, d1, ...), floating
        Logits.
    target : Tensor
        Either class indices (integer, shape (), (N,) or (N, d1, ...)) or
        class probabilities (floating, the shape of ``input``, each row summing to 1).
    weight : Tensor, shape (C,), optional
        Per-class weight $w_c$.
    ignore_index : int
        A class-index target to skip (class-index targets only).
    reduction : {"mean", "sum", "none"}
        With class indices, ``"mean"`` divides by $\sum_i w_{y_i}$ over counted
        targets (see :func:`nll_loss`); with probabilities, by $N \cdot d_1 \cdots$.
    label_smoothing : float in [0, 1]
        Mix the target with the uniform distribution: $q = (1-\varepsilon)\,\text{target} + \varepsilon / C$.

    Raises
    ------
    TypeError
        If float targets come with a shape other than ``input``'s (class indices must be integers).
    ValueError
        If a class index is out of range, the logits are not finite, or shapes do not fit.
    """
    input = _float("input", input)
    target = _tensor("target", target)
    reduction = _reduction(reduction)
    label_smoothing = _checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0)
    eps = float(label_smoothing)
    if input.dim() == 0:
        raise ValueError("input: expected shape (C,), (N, C) or (N, C, d1, ...), got a scalar")
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    w = _class_weight(weight, n_classes, input) if weight is not None else None
    logp = log_softmax(input, dim=0 if input.dim() == 1 else 1)  # shape of input
    class_shape = [1] * input.dim()
    class_shape[0 if input.dim() == 1 else 1] = n_classes

    if target.is_floating_point() and target.shape == input.shape:  # class probabilities
        target = _float("target", target)
        _same_dtype("input", input, "target", target)
        if bool(((target < 0) | (target > 1)).any()):
            raise ValueError("target: class probabilities must lie in [0, 1]")
        q = target * (1 - eps) + eps / n_classes
        if w is not None:
            q = q * w.view(class_shape)
        loss = -(q * logp).sum(dim=0 if input.dim() == 1 else 1)  # (N, d1, ...)
        return _reduce(loss, reduction)

    nll = nll_loss(logp, target, weight=w, ignore_index=ignore_index, reduction=reduction)
    if eps == 0:
        return nll
    target = _class_target(input, target, ignore_index)
    valid = target != ignore_index  # (N, d1, ...)
    wl = logp * w.view(class_shape) if w is not None else logp
    smooth = -wl.sum(dim=0 if input.dim() == 1 else 1)  # (N, d1, ...): -sum_c w_c log p_c
    smooth = torch.where(valid, smooth, torch.zeros_like(smooth))
    if reduction == "mean":
        if w is not None:
            smooth = smooth.sum() / w[target[valid]].sum()
        else:
            smooth = smooth[valid].mean()
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - eps) * nll + eps / n_classes * smooth


def cross_entropy_grad(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Analytic gradient of the mean :func:`cross_entropy` in the logits: $(\operatorname{softmax}(z) - \text{onehot}(y)) / N$.

    See Chapter 1. ``input`` (N, C) logits, ``target`` (N,) class indices; returns (N, C).
    """
    input = _float("input", input)
    if input.dim() != 2:
        raise ValueError(f"input: expected shape (N, C), got {tuple(input.shape)}")
    target = _class_target(input, target, ignore_index=-100)
    if bool((target == -100).any()):
        raise ValueError("target: cross_entropy_grad does not support ignore_index; got -100")
    onehot = torch.nn.functional.one_hot(target, input.shape[1]).to(input.dtype)  # (N, C)
    return (softmax(input) - onehot) / input.shape[0]


def class_weights(counts: torch.Tensor, scheme: str = "inverse", beta: float = 0.999) -> torch.Tensor:
    r"""Per-class weights from class counts $n_c$, normalized to average 1 over classes.

    - ``"inverse"``: $w_c \propto 1/n_c$ (every class carries the same total weight);
    - ``"inverse_sqrt"``: $w_c \propto 1/\sqrt{n_c}$ (a milder correction);
    - ``"effective"``: $w_c \propto (1-\beta)/(1-\beta^{n_c})$, the inverse
      "effective number of samples" of Cui et al. (2019); $\beta \to 0$ gives
      equal weights, $\beta \to 1$ approaches ``"inverse"``.

    See Chapter 1.

    Parameters
    ----------
    counts : Tensor, shape (C,)
        Positive counts (integer or float).
    scheme : {"inverse", "inverse_sqrt", "effective"}
    beta : float in [0, 1)
        For ``"effective"``.

    Returns
    -------
    Tensor, shape (C,), float64 (or the dtype of float ``counts``), mean 1.
    """
    counts = _tensor("counts", counts)
    if counts.dim() != 1 or counts.numel() < 1:
        raise ValueError(f"counts: expected shape (C,), got {tuple(counts.shape)}")
    n = counts.to(counts.dtype if counts.is_floating_point() else torch.float64)
    if not bool(torch.isfinite(n).all()) or bool((n <= 0).any()):
        raise ValueError(f"counts: expected positive finite counts, got {counts.tolist()}")
    if scheme == "inverse":
        w = 1 / n
    elif scheme == "inverse_sqrt":
        w = n.rsqrt()
    elif scheme == "effective":
        beta = _checks.number("beta", beta, low=0.0, high=1.0, high_open=True)
        w = (1 - beta) / (1 - beta**n)
    else:
        raise ValueError(f"scheme: expected 'inverse', 'inverse_sqrt' or 'effective', got {scheme!r}")
    return w * (len(w) / w.sum())


# --- sequences ----------------------------------------------------------------------

def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                        reduction: str = "mean") -> torch.Tensor:
    r"""Cross-entropy of next-token predictions over a batch of sequences.

    See Chapter 1.

    Parameters
    ----------
    logits : Tensor, shape (B, T, V), floating
        One row of $V$ vocabulary logits per position.
    targets : Tensor, shape (B, T), integer
        The true token per position; ``ignore_index`` marks padding.
    ignore_index : int
    reduction : {"mean", "sum", "none"}
        ``"mean"``: the average over every counted token of the batch (each token
        counts once, whatever its sequence's length). ``"sum"``: the total.
        ``"none"``: shape (B, T), 0 at ignored positions.

    Example
    -------
    >>> logits = torch.zeros(2, 3, 5)
    >>> float(token_cross_entropy(logits, torch.tensor([[1, 2, -100], [0, 4, 3]])))  # log 5
    1.6094379425048828
    """
    logits = _float("logits", logits)
    targets = _tensor("targets", targets)
    if logits.dim() != 3:
        raise ValueError(f"logits: expected shape (B, T, V), got {tuple(logits.shape)}")
    b, t, v = logits.shape
    if tuple(targets.shape) != (b, t):
        raise ValueError(f"targets: expected shape (B, T) = {(b, t)}, got {tuple(targets.shape)}")
    flat = cross_entropy(logits.reshape(b * t, v), targets.reshape(b * t), ignore_index=ignore_index,
                         reduction=reduction)  # (B*T,) or scalar
    return flat.view(b, t) if reduction == "none" else flat


def perplexity(mean_nll: torch.Tensor | float) -> torch.Tensor:
    r"""Perplexity $e^{\bar\ell}$ of a mean per-token negative log-likelihood $\bar\ell$ (in nats).

    A model as unsure as a uniform choice among $k$ tokens has perplexity $k$.
    See Chapter 1.
    """
    t = torch.as_tensor(mean_nll)
    if not t.is_floating_point() or t.dim() != 0 or not bool(torch.isfinite(t)) or float(t) < 0:
        raise ValueError(f"mean_nll: expected a finite non-negative scalar, got {mean_nll!r}")
    return torch.exp(t)


# --- information --------------------------------------------------------------------

def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Shannon entropy $H(p) = -\sum_i p_i \log p_i$ in nats, with $0 \log 0 = 0$. See Chapter 1.

    ``probs``: any shape, a distribution along ``dim``; returns the shape without ``dim``.

    Its gradient $-(\log p_i + 1)$ is $+\infty$ at $p_i = 0$ (PyTorch's ``xlogy``
    gives NaN there). Here the log is taken of $\max(p, \text{tiny})$, the smallest
    normal number of the dtype, so the gradient at $p_i = 0$ is the finite
    $-\log(\text{tiny})$ (708.4 in float64, 87.3 in float32) and exact for every
    normal $p_i > 0$ (``tests/test_numerics.py`` checks it against mpmath).
    """
    probs = _nonempty(_float("probs", probs), "probs")
    if bool((probs < 0).any()):
        raise ValueError("probs: expected non-negative probabilities")
    # log p with p clamped at the smallest normal number: the value is p log p (0 at p = 0), and the
    # gradient -(log p + 1) stays finite at p = 0 (there it is -log(tiny) = 708.4 in float64, 87.3 in float32,
    # the slope just above the smallest positive normal p; the true one-sided derivative is +inf).
    log_p = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    return -(probs * log_p).sum(dim=dim)


def kl_div(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", log_target: bool = False) -> torch.Tensor:
    r"""Pointwise KL divergence $t\,(\log t - x)$, PyTorch's argument order: ``input`` holds $\log q$, ``target`` $p$.

    Summed over classes this is $\mathrm{KL}(p\,\|\,q) = \sum_i p_i \log(p_i / q_i)$,
    with $0 \log 0 = 0$. Note the order: the *model's* log-probabilities come
    first. ``"batchmean"`` (sum divided by ``input.shape[0]``) is the true KL
    per example; ``"mean"`` divides by the number of elements, which also
    divides by the number of classes. See Chapter 1. Matches
    ``torch.nn.functional.kl_div``.

    Parameters
    ----------
    input : Tensor, any shape, floating
        Log-probabilities $\log q$.
    target : Tensor, shape of ``input``
        Probabilities $p$ (or $\log p$ when ``log_target``).
    reduction : {"mean", "batchmean", "sum", "none"}
    log_target : bool
    """
    input = _float("input", input, allow_inf=True)
    _log_probabilities("input", input, "kl_div")
    if not isinstance(log_target, bool):
        raise TypeError(f"log_target: expected True or False, got {log_target!r}")
    target = _float("target", target, allow_inf=log_target)
    _same_shape("input", input, "target", target)
    _same_dtype("input", input, "target", target)
    if log_target:
        _log_probabilities("target", target, "kl_div with log_target=True")
    reduction = _reduction(reduction, ("mean", "batchmean", "sum", "none"))
    # 0 log 0 = 0: where p = 0 the term is 0, with gradient 0 in both arguments, also when log q = -inf.
    # (xlogy and exp(-inf) * (-inf - x) give NaN there: a NaN gradient for a target with a zero, and a
    # NaN loss for q = 0. Where p = 0 the exact derivative in p is -inf, in log p it is 0.)
    if log_target:
        present = target > float("-inf")
        t_safe = torch.where(present, target, torch.zeros_like(target))
        x_safe = torch.where(present, input, torch.zeros_like(input))
        loss = torch.where(present, torch.exp(t_safe) * (t_safe - x_safe), torch.zeros_like(input))
    else:
        if bool((target < 0).any()):
            raise ValueError("target: expected non-negative probabilities (pass log_target=True for log-probabilities)")
        present = target > 0
        t_safe = torch.where(present, target, torch.ones_like(target))
        x_safe = torch.where(present, input, torch.zeros_like(input))
        loss = torch.where(present, t_safe * (torch.log(t_safe) - x_safe), torch.zeros_like(input))
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.dim() > 0 else 1)
    return _reduce(loss, reduction)


# --- embeddings ---------------------------------------------------------------------

def _embeddings(**named: object) -> list[torch.Tensor]:
    ts = [_float(k, v) for k, v in named.items()]
    first_name, first = next(iter(named)), ts[0]
    if first.dim() not in (1, 2):
        raise ValueError(f"{first_name}: expected shape (N, D) or (D,), got {tuple(first.shape)}")
    for (k, _), t in zip(list(named.items())[1:], ts[1:]):
        _same_shape(first_name, first, k, t)
        _same_dtype(first_name, first, k, t)
    return ts


def _pairwise_distance(a: torch.Tensor, b: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """$\\|a - b + \\epsilon\\|_p$ along the last dim, PyTorch's convention."""
    return torch.linalg.vector_norm(a - b + eps, ord=p, dim=-1)


def triplet_margin_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0,
                        p: float = 2.0, eps: float = 1e-6, swap: bool = False, reduction: str = "mean") -> torch.Tensor:
    r"""Triplet loss $\max(0,\ d(a, p) - d(a, n) + m)$: the positive must be closer than the negative by margin $m$.

    $d(x, y) = \|x - y + \epsilon\|_p$ as in PyTorch; with ``swap``, $d(a, n)$ is
    replaced by $\min(d(a, n), d(p, n))$. See Chapter 1. Matches
    ``torch.nn.functional.triplet_margin_loss``.

    Parameters
    ----------
    anchor, positive, negative : Tensor, shape (N, D) or (D,), floating
    margin : float > 0
    p : float > 0
        Norm degree.
    eps : float >= 0
    swap : bool
    reduction : {"mean", "sum", "none"}
    """
    a, pos, neg = _embeddings(anchor=anchor, positive=positive, negative=negative)
    margin = _positive("margin", margin)
    p = _positive("p", p)
    eps = _positive("eps", eps, allow_zero=True)
    d_ap = _pairwise_distance(a, pos, p, eps)  # (N,)
    d_an = _pairwise_distance(a, neg, p, eps)  # (N,)
    if swap:
        d_an = torch.minimum(d_an, _pairwise_distance(pos, neg, p, eps))
    return _reduce((margin + d_ap - d_an).clamp_min(0), _reduction(reduction))


def contrastive_loss(x1: torch.Tensor, x2: torch.Tensor, similar: torch.Tensor, margin: float = 1.0,
                     reduction: str = "mean") -> torch.Tensor:
    r"""Pairwise contrastive loss (Hadsell, Chopra and LeCun, 2006).

    $$\ell = s\,\tfrac12 d^2 + (1 - s)\,\tfrac12\max(0, m - d)^2, \qquad d = \|x_1 - x_2\|_2,$$

    pulling similar pairs ($s = 1$) together and pushing dissimilar ones
    ($s = 0$) apart until they are at least $m$ away. See Chapter 1.

    Parameters
    ----------
    x1, x2 : Tensor, shape (N, D), floating
    similar : Tensor, shape (N,), values 0 or 1 (bool, integer or float)
    margin : float > 0
    reduction : {"mean", "sum", "none"}
    """
    x1, x2 = _embeddings(x1=x1, x2=x2)
    s = _tensor("similar", similar)
    if tuple(s.shape) != tuple(x1.shape[:-1]):
        raise ValueError(f"similar: expected shape {tuple(x1.shape[:-1])}, got {tuple(s.shape)}")
    if not bool(((s == 0) | (s == 1)).all()):
        raise ValueError("similar: expected values 0 or 1")
    s = s.to(x1.dtype)
    margin = _positive("margin", margin)
    d2 = ((x1 - x2) ** 2).sum(-1)  # (N,)
    d = torch.linalg.vector_norm(x1 - x2, dim=-1)  # (N,)
    loss = 0.5 * s * d2 + 0.5 * (1 - s) * (margin - d).clamp_min(0) ** 2
    return _reduce(loss, _reduction(reduction))


def cosine_embedding_loss(input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor, margin: float = 0.0,
                          reduction: str = "mean") -> torch.Tensor:
    r"""$1 - \cos(x_1, x_2)$ for pairs with $y = 1$; $\max(0, \cos(x_1, x_2) - m)$ for $y = -1$.

    The cosine is $x_1\cdot x_2 / \sqrt{(\|x_1\|^2 + 10^{-12})(\|x_2\|^2 + 10^{-12})}$,
    as in PyTorch. See Chapter 1. Matches ``torch.nn.functional.cosine_embedding_loss``.

    Parameters
    ----------
    input1, input2 : Tensor, shape (N, D) or (D,), floating
    target : Tensor, shape (N,) or (), values 1 or -1
    margin : float in [-1, 1]
    """
    x1, x2 = _embeddings(input1=input1, input2=input2)
    y = _tensor("target", target)
    if tuple(y.shape) != tuple(x1.shape[:-1]):
        raise ValueError(f"target: expected shape {tuple(x1.shape[:-1])}, got {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("target: expected values 1 (similar) or -1 (dissimilar)")
    margin = _checks.number("margin", margin, low=-1.0, high=1.0)
    cos = (x1 * x2).sum(-1) / torch.sqrt(((x1 * x1).sum(-1) + 1e-12) * ((x2 * x2).sum(-1) + 1e-12))  # (N,)
    loss = torch.where(y == 1, 1 - cos, (cos - margin).clamp_min(0))
    return _reduce(loss, _reduction(reduction))


def margin_ranking_loss(input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor, margin: float = 0.0,
                        reduction: str = "mean") -> torch.Tensor:
    r"""$\max(0, -y\,(x_1 - x_2) + m)$: with $y = 1$, $x_1$ should exceed $x_2$ by at least $m$.

    See Chapter 1. Matches ``torch.nn.functional.margin_ranking_loss``.
    """
    x1, x2 = _pair(input1, input2)
    y = _float("target", target)
    _same_shape("input1", x1, "target", y)
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("target: expected values 1 or -1")
    return _reduce((-y * (x1 - x2) + margin).clamp_min(0), _reduction(reduction))


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.1, normalize: bool = True,
             reduction: str = "mean") -> torch.Tensor:
    r"""InfoNCE: each query must pick out its own key among all keys of the batch.

    $$\ell_i = -\log \frac{\exp(s_{ii}/\tau)}{\sum_j \exp(s_{ij}/\tau)}, \qquad s_{ij} = q_i \cdot k_j,$$

    with $q, k$ scaled to unit length when ``normalize`` (then $s$ is a
    cosine). It is :func:`cross_entropy` of the similarity matrix with the
    diagonal as the targets: a batch of $N$ gives $N-1$ negatives per query
    for free. The temperature $\tau$ sets how sharply the hardest negatives
    dominate. See Chapter 1 (van den Oord et al., 2018; Chen et al., 2020).

    Parameters
    ----------
    queries, keys : Tensor, shape (N, D), floating
        Row $i$ of ``keys`` is the positive for row $i$ of ``queries``.
    temperature : float > 0
    normalize : bool
    reduction : {"mean", "sum", "none"}
    """
    q, k = _embeddings(queries=queries, keys=keys)
    if q.dim() != 2:
        raise ValueError(f"queries: expected shape (N, D), got {tuple(q.shape)}")
    temperature = _positive("temperature", temperature)
    if normalize:
        q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(1e-12)
        k = k / torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-12)
    logits = q @ k.T / temperature  # (N, N)
    labels = torch.arange(q.shape[0], device=q.device)  # (N,)
    return cross_entropy(logits, labels, reduction=reduction)


# --- more losses readers meet in practice ---------------------------------------------

def gaussian_nll_loss(input: torch.Tensor, target: torch.Tensor, var: torch.Tensor | float, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> torch.Tensor:
    r"""Gaussian negative log-likelihood with a predicted variance: $\ell = \tfrac12\big(\log\sigma^2 + (\hat y - y)^2/\sigma^2\big)$.

    A model that predicts both a mean $\hat y$ and a variance $\sigma^2$ pays
    for a large error less where it admits uncertainty, and pays $\log\sigma^2$
    for admitting it. ``full`` adds the constant $\tfrac12\log 2\pi$. The
    variance is clamped at ``eps`` for the value only (the gradient passes as
    if unclamped, as PyTorch's in-place clamp under ``no_grad`` does). See
    Chapter 1. Matches ``torch.nn.functional.gaussian_nll_loss``.

    Parameters
    ----------
    input, target : Tensor, the same shape (..., D), floating
    var : Tensor or float
        $\sigma^2 \ge 0$: the shape of ``input``, or with its last dimension 1 or
        dropped (one variance per example), or a number (one for all).
    full : bool
    eps : float > 0
    reduction : {"mean", "sum", "none"}
    """
    input, target = _pair(input, target)
    if not isinstance(full, bool):
        raise TypeError(f"full: expected True or False, got {full!r}")
    eps = _positive("eps", eps)
    reduction = _reduction(reduction)
    if not isinstance(var, torch.Tensor):
        var = torch.full_like(input, _positive("var", var, allow_zero=True))
    var = _float("var", var)
    _same_dtype("input", input, "var", var)
    if var.shape != input.shape:
        if input.dim() >= 1 and var.shape == input.shape[:-1]:
            var = var.unsqueeze(-1)
        elif not (input.dim() >= 1 and var.shape == (*input.shape[:-1], 1)):
            raise ValueError(f"var: expected shape {tuple(input.shape)}, {(*input.shape[:-1], 1)} or "
                             f"{tuple(input.shape[:-1])}, got {tuple(var.shape)}")
    if bool((var < 0).any()):
        raise ValueError(f"var: expected variances >= 0, got a minimum of {float(var.min())}")
    var = var + (var.clamp_min(eps) - var).detach()  # clamp the value, keep the gradient of var
    loss = 0.5 * (torch.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def poisson_nll_loss(input: torch.Tensor, target: torch.Tensor, log_input: bool = True, full: bool = False,
                     eps: float = 1e-8, reduction: str = "mean") -> torch.Tensor:
    r"""Poisson negative log-likelihood of counts $y$ with predicted rate $\lambda$: $\ell = \lambda - y\log\lambda$.

    With ``log_input`` the model predicts $\log\lambda$ and $\ell = e^{x} - y x$
    (stable, the usual choice); otherwise $\ell = \lambda - y \log(\lambda + \epsilon)$.
    ``full`` adds Stirling's approximation of $\log y!$, $y\log y - y + \tfrac12\log(2\pi y)$,
    for $y > 1$. See Chapter 1. Matches ``torch.nn.functional.poisson_nll_loss``.

    Parameters
    ----------
    input : Tensor, any shape, floating
        $\log\lambda$ (``log_input``) or $\lambda \ge 0$.
    target : Tensor, shape of ``input``, values >= 0
    log_input, full : bool
    eps : float > 0
    reduction : {"mean", "sum", "none"}
    """
    input, target = _pair(input, target)
    for name, flag in (("log_input", log_input), ("full", full)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected True or False, got {flag!r}")
    eps = _positive("eps", eps)
    if bool((target < 0).any()):
        raise ValueError(f"target: expected counts >= 0, got a minimum of {float(target.min())}")
    if log_input:
        loss = torch.exp(input) - target * input
    else:
        if bool((input < 0).any()):
            raise ValueError(f"input: expected rates >= 0 (log_input=False), got a minimum of {float(input.min())}")
        loss = input - target * torch.log(input + eps)
    if full:
        stirling = target * torch.log(target) - target + 0.5 * torch.log(2 * math.pi * target)
        loss = loss + torch.where(target > 1, stirling, torch.zeros_like(stirling))
    return _reduce(loss, _reduction(reduction))


def multi_margin_loss(input: torch.Tensor, target: torch.Tensor, p: int = 1, margin: float = 1.0,
                      weight: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    r"""Multi-class hinge loss (Weston and Watkins; Crammer and Singer): every wrong class must trail by a margin.

    $$\ell_i = \frac{1}{C}\sum_{j \ne y_i} w_{y_i} \max(0,\ m - z_{i y_i} + z_{ij})^p$$

    Zero once the true class's score leads every other by $m$: unlike
    cross-entropy, a correct enough answer stops being pushed. See Chapter 1.
    Matches ``torch.nn.functional.multi_margin_loss``.

    Parameters
    ----------
    input : Tensor, shape (N, C) or (C,), floating
        Scores.
    target : Tensor, shape (N,) or (), integer class indices
    p : {1, 2}
    margin : float
    weight : Tensor, shape (C,), optional
    reduction : {"mean", "sum", "none"}
    """
    input = _float("input", input)
    if input.dim() not in (1, 2) or input.shape[-1] < 1:
        raise ValueError(f"input: expected shape (N, C) or (C,), got {tuple(input.shape)}")
    target = _class_target(input, target, ignore_index=-100)
    if bool((target == -100).any()):
        raise ValueError("target: expected class indices, got -100 (multi_margin_loss has no ignore_index)")
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p: expected 1 or 2, got {p!r}")
    margin = _checks.number("margin", margin)
    reduction = _reduction(reduction)
    z = input if input.dim() == 2 else input.unsqueeze(0)  # (N, C)
    y = target.reshape(-1)  # (N,)
    c = z.shape[1]
    true = z.gather(1, y[:, None])  # (N, 1)
    hinge = (margin - true + z).clamp_min(0) ** p  # (N, C)
    if weight is not None:
        hinge = hinge * _class_weight(weight, c, input)[y][:, None]
    hinge = hinge.masked_fill(torch.nn.functional.one_hot(y, c).bool(), 0.0)  # the true class does not count
    loss = hinge.sum(1) / c  # (N,)
    return _reduce(loss if input.dim() == 2 else loss[0], reduction)


def soft_margin_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Two-class logistic loss on $\pm1$ labels: $\ell = \log(1 + e^{-y z})$, the smooth hinge.

    Computed as $\operatorname{softplus}(-yz)$, finite for every finite $z$. See
    Chapter 1. Matches ``torch.nn.functional.soft_margin_loss``.

    Parameters
    ----------
    input : Tensor, any shape, floating
    target : Tensor, shape of ``input``, values 1 or -1
    reduction : {"mean", "sum", "none"}
    """
    input, target = _pair(input, target)
    if not bool(((target == 1) | (target == -1)).all()):
        raise ValueError("target: expected values 1 or -1")
    return _reduce(torch.nn.functional.softplus(-target * input), _reduction(reduction))


def hinge_loss(input: torch.Tensor, target: torch.Tensor, margin: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    r"""Binary hinge loss on $\pm1$ labels (the linear SVM's loss): $\ell = \max(0,\ m - y z)$.

    Zero once the margin $yz$ reaches $m$: such examples stop contributing any
    gradient, and only those inside the margin (the support vectors) move the
    boundary. Compare :func:`soft_margin_loss`, the logistic loss
    $\log(1 + e^{-yz})$, which never reaches zero. See Chapter 1. PyTorch has
    no binary hinge loss under this name; it equals ``C *
    torch.nn.functional.multi_margin_loss`` on the two scores $(0, z)$ with
    $C = 2$ classes (the tests check this).

    Parameters
    ----------
    input : Tensor, any shape, floating
        Scores (logits) $z$.
    target : Tensor, shape of ``input``, values 1 or -1
    margin : float
        $m$ (1 in the SVM).
    reduction : {"mean", "sum", "none"}

    Example
    -------
    >>> hinge_loss(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, 1.0, 1.0]), reduction="none")
    tensor([0.0000, 0.5000, 2.0000])
    """
    input, target = _pair(input, target)
    if not bool(((target == 1) | (target == -1)).all()):
        raise ValueError("target: expected values 1 or -1 (for 0/1 labels pass 2 * y - 1)")
    margin = _checks.number("margin", margin)
    return _reduce((margin - target * input).clamp_min(0), _reduction(reduction))


def multilabel_soft_margin_loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                                reduction: str = "mean") -> torch.Tensor:
    r"""Multi-label logistic loss: binary cross-entropy from logits averaged over the $C$ labels of each example.

    $$\ell_i = -\frac{1}{C}\sum_c w_c\,[\,y_{ic}\log\sigma(z_{ic}) + (1 - y_{ic})\log\sigma(-z_{ic})\,]$$

    See Chapter 1. Matches ``torch.nn.functional.multilabel_soft_margin_loss``.

    Parameters
    ----------
    input : Tensor, shape (N, C) or (C,), floating
        Logits.
    target : Tensor, shape of ``input``, values in [0, 1]
    weight : Tensor, shape (C,), optional
    reduction : {"mean", "sum", "none"}
        ``"none"`` gives one loss per example, shape (N,).
    """
    input, target = _pair(input, target)
    if input.dim() not in (1, 2):
        raise ValueError(f"input: expected shape (N, C) or (C,), got {tuple(input.shape)}")
    if bool(((target < 0) | (target > 1)).any()):
        raise ValueError("target: expected values in [0, 1]")
    log_sig = torch.nn.functional.logsigmoid
    loss = -(target * log_sig(input) + (1 - target) * log_sig(-input))  # (N, C)
    if weight is not None:
        loss = loss * _class_weight(weight, input.shape[-1], input)
    return _reduce(loss.sum(-1) / input.shape[-1], _reduction(reduction))


def triplet_margin_with_distance_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *,
                                      distance_function=None, margin: float = 1.0, swap: bool = False,
                                      reduction: str = "mean") -> torch.Tensor:
    r"""Triplet loss $\max(0,\ d(a, p) - d(a, n) + m)$ with any distance $d$ (default the Euclidean :func:`triplet_margin_loss` uses).

    ``distance_function(x, y) -> (N,)`` may be any non-negative dissimilarity,
    e.g. $1 - \cos(x, y)$. With ``swap``, $d(a, n)$ becomes $\min(d(a, n), d(p, n))$.
    See Chapter 1. Matches ``torch.nn.functional.triplet_margin_with_distance_loss``.

    Parameters
    ----------
    anchor, positive, negative : Tensor, shape (N, D) or (D,), floating
    distance_function : callable, optional
    margin : float > 0
    swap : bool
    reduction : {"mean", "sum", "none"}
    """
    a, pos, neg = _embeddings(anchor=anchor, positive=positive, negative=negative)
    margin = _positive("margin", margin)
    if not isinstance(swap, bool):
        raise TypeError(f"swap: expected True or False, got {swap!r}")
    if distance_function is None:
        def distance_function(x, y):
            return _pairwise_distance(x, y, 2.0, 1e-6)
    elif not callable(distance_function):
        raise TypeError(f"distance_function: expected a callable (x, y) -> distances, got {type(distance_function).__name__}")
    d_ap, d_an = distance_function(a, pos), distance_function(a, neg)
    if swap:
        d_an = torch.minimum(d_an, distance_function(pos, neg))
    for name, d in (("distance_function(anchor, positive)", d_ap), ("distance_function(anchor, negative)", d_an)):
        if not isinstance(d, torch.Tensor) or d.shape != a.shape[:-1]:
            raise ValueError(f"{name}: expected a tensor of shape {tuple(a.shape[:-1])}, got "
                             f"{tuple(getattr(d, 'shape', ())) if isinstance(d, torch.Tensor) else type(d).__name__}")
    return _reduce((margin + d_ap - d_an).clamp_min(0), _reduction(reduction))


# --- calibration --------------------------------------------------------------------

@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins: per bin, mean confidence, accuracy and count (empty bins: NaN, NaN, 0)."""

    edges: torch.Tensor  # (M + 1,)
    confidence: torch.Tensor  # (M,)
    accuracy: torch.Tensor  # (M,)
    count: torch.Tensor  # (M,)

    def __repr__(self) -> str:
        return f"ReliabilityBins(bins={len(self.count)}, examples={int(self.count.sum())})"


def _probs_labels(probs: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    probs = _float("probs", probs)
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs: expected shape (N, C) with C >= 2, got {tuple(probs.shape)}")
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4):
        raise ValueError("probs: expected rows of probabilities (non-negative, summing to 1); pass softmax(logits)")
    labels = _class_target(probs, labels, ignore_index=-100, name="labels")
    if bool((labels == -100).any()):
        raise ValueError("labels: expected class indices, got -100")
    return probs, labels


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> ReliabilityBins:
    r"""Bin predictions by confidence $\max_c p_c$ into $M$ equal bins $(\frac{b}{M}, \frac{b+1}{M}]$.

    See Chapter 1 (a reliability diagram plots ``accuracy`` against ``confidence``).

    Parameters
    ----------
    probs : Tensor, shape (N, C)
        Predicted class probabilities.
    labels : Tensor, shape (N,), integer
    n_bins : int >= 1
    """
    probs, labels = _probs_labels(probs, labels)
    n_bins = _checks.count("n_bins", n_bins)
    conf, pred = probs.max(dim=1)  # (N,), (N,)
    correct = (pred == labels).to(probs.dtype)  # (N,)
    b = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()  # (N,) bin of each prediction
    count = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device).index_add_(0, b, torch.ones_like(conf))
    s_conf = torch.zeros_like(count).index_add_(0, b, conf)
    s_acc = torch.zeros_like(count).index_add_(0, b, correct)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=probs.dtype, device=probs.device)
    return ReliabilityBins(edges, s_conf / count, s_acc / count, count)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    r"""ECE $= \sum_b \frac{n_b}{N}\,|\mathrm{acc}_b - \mathrm{conf}_b|$ over :func:`reliability_bins`.

    0 for a perfectly calibrated model; at most 1. See Chapter 1 (Guo et al., 2017).

    Returns
    -------
    Tensor, a scalar.
    """
    bins = reliability_bins(probs, labels, n_bins)
    gap = torch.nan_to_num((bins.accuracy - bins.confidence).abs(), nan=0.0)
    return (bins.count * gap).sum() / bins.count.sum()


def brier_score(probs: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Brier score $\sum_c (p_c - [c = y])^2$ per example: the squared error of the probability vector.

    A *proper* scoring rule, like the log loss $-\log p_y$: its expected value
    under the true class probabilities $q$ is smallest at $p = q$. Unlike the log
    loss it is bounded (at most 2, for a certain wrong answer), so a single
    confident mistake cannot dominate it. See Chapter 1. For two classes it is
    twice scikit-learn's ``brier_score_loss`` of the positive class, which
    scores only $(p_1 - y)^2$.

    Parameters
    ----------
    probs : Tensor, shape (N, C)
        Predicted class probabilities (rows summing to 1).
    labels : Tensor, shape (N,), integer
    reduction : {"mean", "sum", "none"}

    Example
    -------
    >>> brier_score(torch.tensor([[0.7, 0.3]]), torch.tensor([0]))
    tensor(0.1800)
    """
    probs, labels = _probs_labels(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)  # (N, C)
    return _reduce(((probs - onehot) ** 2).sum(1), _reduction(reduction))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, bounds: tuple[float, float] = (0.05, 20.0),
                    tol: float = 1e-6) -> float:
    r"""The temperature $T$ minimizing the validation NLL of $\operatorname{softmax}(z / T)$.

    Temperature scaling (Guo et al., 2017) rescales all logits by one number
    fitted on held-out data; it never changes the predicted class, only the
    confidence. The NLL is convex in $1/T$, so a golden-section search over
    $\log T$ finds the minimum within ``bounds``. See Chapter 1.

    Parameters
    ----------
    logits : Tensor, shape (N, C), floating
        Validation logits.
    labels : Tensor, shape (N,), integer
    bounds : (float, float)
        Search interval for $T$, both > 0.
    tol : float
        Width in $\log T$ at which the search stops.

    Returns
    -------
    float
    """
    logits = _float("logits", logits)
    if logits.dim() != 2:
        raise ValueError(f"logits: expected shape (N, C), got {tuple(logits.shape)}")
    labels = _class_target(logits, labels, ignore_index=-100)
    lo, hi = bounds
    if not 0 < lo < hi or not math.isfinite(hi):
        raise ValueError(f"bounds: expected 0 < low < high, got {bounds!r}")
    z = logits.detach().double()  # (N, C)
    z_true = z.gather(1, labels[:, None])[:, 0]  # (N,)

    def nll(log_t: float) -> float:  # mean cross-entropy of z / T, inputs already checked
        s = math.exp(-log_t)
        return float((torch.logsumexp(z * s, dim=1) - z_true * s).mean())

    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)


# --- combining ----------------------------------------------------------------------

def weighted_sum(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    r"""$L = \sum_k \lambda_k L_k$, plus the value of every term for logging.

    See Chapter 1.

    Parameters
    ----------
    terms : mapping of str to scalar Tensor
        Each loss term $L_k$.
    weights : mapping of str to float
        $\lambda_k$, one per term (the same keys).

    Returns
    -------
    (Tensor, dict)
        The total (differentiable) and ``{name: float(L_k)}`` together with
        ``{name + "_weighted": float(lambda_k L_k)}`` and ``"total"``.
    """
    if set(terms) != set(weights):
        raise ValueError(f"weights: expected the keys of terms {sorted(terms)}, got {sorted(weights)}")
    if not terms:
        raise ValueError("terms: expected at least one loss term")
    total = None
    log: dict[str, float] = {}
    for name, value in terms.items():
        value = _float(f"terms[{name!r}]", value)
        if value.dim() != 0:
            raise ValueError(f"terms[{name!r}]: expected a scalar loss, got shape {tuple(value.shape)}")
        lam = _positive(f"weights[{name!r}]", weights[name], allow_zero=True)
        part = lam * value
        total = part if total is None else total + part
        log[name] = float(value.detach())
        log[f"{name}_weighted"] = float(part.detach())
    log["total"] = float(total.detach())
    return total, log
