r"""Gradient descent and its optimizers, written as pure functions on batches of parameter vectors.

See Chapter 3 ("Gradient descent and its optimizers").

Every optimizer is a plain function with keyword-only hyperparameters and its
state passed in and handed back, in the style of ``torch/optim/sgd.py``::

    params, state = adam_step(params, grads, state, lr=1e-3, betas=(0.9, 0.999))

- ``params`` and ``grads`` are tensors of the same shape, usually ``[N, D]``:
  ``N`` independent parameter vectors (``N`` starting points of a race on a
  landscape, ``N`` runs of a sweep) stepped at once. Any shape works, since
  every update is elementwise; a network's weight ``[H, D]`` is just a tensor.
- ``state`` is a dict (``{}`` before the first step) that is never changed in
  place: the function returns a new one. Inputs are never modified.
- ``lr`` (and SGD's ``momentum``) may be a number or a tensor ``[N]`` giving
  one value per row of ``params`` ``[N, ...]``, so a sweep over learning rates
  is one batched run.

Each update matches its ``torch.optim`` counterpart step for step (tested in
float64 over 100 steps on random, tiny, huge and zero gradients):

================  ==========================  =================================
function          torch.optim                 options
================  ==========================  =================================
:func:`sgd_step`  ``SGD``                     momentum, dampening, nesterov, weight_decay
:func:`adagrad_step` ``Adagrad``              lr_decay, weight_decay, initial_accumulator_value, eps
:func:`rmsprop_step` ``RMSprop``              alpha, eps, weight_decay, momentum, centered
:func:`adam_step` ``Adam``                    betas, eps, weight_decay (L2), amsgrad
:func:`adamw_step` ``AdamW``                  betas, eps, weight_decay (decoupled), amsgrad
:func:`nadam_step` ``NAdam``                  betas, eps, weight_decay, momentum_decay, decoupled_weight_decay
:func:`radam_step` ``RAdam``                  betas, eps, weight_decay, decoupled_weight_decay
:func:`adamax_step` ``Adamax``                betas, eps, weight_decay
:func:`adadelta_step` ``Adadelta``            rho, eps, weight_decay
:func:`lion_step` (none: Chen et al. 2023)    betas, weight_decay (decoupled)
:func:`lbfgs_step` ``LBFGS``                  max_iter, max_eval, history_size, line_search_fn="strong_wolfe"
================  ==========================  =================================

Every elementwise update also takes ``maximize`` (climb instead of descend),
as ``torch.optim`` does. :func:`lbfgs_step` is the exception to the batching:
it steps one flat vector and takes a closure returning the loss and gradient.

Around them:

- :func:`optimizer` binds a method name and hyperparameters into an
  :class:`Update` (validated once), and :class:`Optimizer` is a thin
  ``torch.optim``-like class over an update for ``nn.Module`` parameters;
- :func:`run_trajectories` runs thousands of starting points on a 2-D test
  function of :mod:`losslab.landscapes` at once, on :func:`losslab.backend.device`,
  and reports (does not propagate) divergence; :func:`basins` turns the end
  points into a basin-of-attraction map;
- :func:`heavy_ball_rate`, :func:`gd_rate` and :func:`measured_rate` give the
  theoretical and the measured linear rates on quadratics;
- :func:`minibatch_gradients` samples mini-batch gradients of least squares
  for many runs at once, and :func:`minibatch_variance` is their exact
  variance (the noise section);
- beyond the first-order methods: :func:`newton_step` (batched, with given
  Hessians), :func:`average_step` (Polyak and EMA averages of the iterates,
  equal to ``torch.optim.swa_utils.AveragedModel``), and the matrix
  preconditioners :func:`shampoo_step` and :func:`muon_step` (with
  :func:`newton_schulz`), which PyTorch does not have and the tests check
  against their definitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from . import _checks
from .backend import device as default_device

__all__ = [
    "sgd_step",
    "adagrad_step",
    "rmsprop_step",
    "adam_step",
    "adamw_step",
    "nadam_step",
    "radam_step",
    "adamax_step",
    "adadelta_step",
    "lion_step",
    "lbfgs_step",
    "METHODS",
    "Update",
    "optimizer",
    "Optimizer",
    "Trajectories",
    "run_trajectories",
    "Basins",
    "basins",
    "gd_rate",
    "heavy_ball_rate",
    "heavy_ball_best",
    "measured_rate",
    "minibatch_gradients",
    "minibatch_variance",
    "newton_step",
    "average_step",
    "newton_schulz",
    "MUON_COEFFICIENTS",
    "muon_step",
    "shampoo_step",
]

Hyper = float | torch.Tensor


# =============================================================================
# Input checks
# =============================================================================

def _check_tensors(params: object, grads: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(params, torch.Tensor):
        raise TypeError(f"params: expected a torch.Tensor (usually [N, D]), got {type(params).__name__}")
    if not isinstance(grads, torch.Tensor):
        raise TypeError(f"grads: expected a torch.Tensor of the shape of params, got {type(grads).__name__}")
    if not params.is_floating_point():
        raise TypeError(f"params: expected a floating-point tensor, got {params.dtype}")
    if grads.dtype != params.dtype:
        raise TypeError(f"grads: expected dtype {params.dtype} (that of params), got {grads.dtype}")
    if grads.shape != params.shape:
        raise ValueError(f"grads: expected shape {tuple(params.shape)} (that of params), got {tuple(grads.shape)}")
    if grads.device != params.device:
        raise ValueError(f"grads: expected device {params.device} (that of params), got {grads.device}")
    if not bool(torch.isfinite(params).all()):
        raise ValueError(f"params: expected finite values, got {int((~torch.isfinite(params)).sum())} non-finite entries")
    if not bool(torch.isfinite(grads).all()):
        raise ValueError(f"grads: expected finite values, got {int((~torch.isfinite(grads)).sum())} non-finite entries")
    return params, grads


def _check_state(state: object, params: torch.Tensor, keys: Sequence[str], scalars: Sequence[str] = ()) -> dict:
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict ({{}} before the first step), got {type(state).__name__}")
    unknown = set(state) - set(keys) - set(scalars) - {"step"}
    if unknown:
        raise ValueError(f"state: unexpected keys {sorted(unknown)}; this optimizer keeps "
                         f"{sorted(set(keys) | set(scalars) | {'step'})}")
    for k in scalars:
        if k in state and (isinstance(state[k], bool) or not isinstance(state[k], (int, float))):
            raise TypeError(f"state[{k!r}]: expected a float, got {type(state[k]).__name__}")
    for k in keys:
        if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != params.shape):
            got = tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
            raise ValueError(f"state[{k!r}]: expected a tensor of shape {tuple(params.shape)}, got {got}")
    step = state.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"state['step']: expected an int >= 0, got {step!r}")
    return dict(state)


def _number(name: str, value: object, *, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> float:
    """PyTorch's "Invalid lr: ..." message, by the one rule of :mod:`losslab._checks`."""
    return _checks.number(f"Invalid {name}", value, low=low, high=high, high_open=high_open)


def _hyper(name: str, value: object, params: torch.Tensor, *, low: float = 0.0, high: float = math.inf,
           high_open: bool = False) -> Hyper:
    """A number, or a tensor [N] (one value per row of params [N, ...]) reshaped to broadcast as [N, 1, ...]."""
    if not isinstance(value, torch.Tensor):
        return _number(name, value, low=low, high=high, high_open=high_open)
    if params.ndim < 1 or value.shape != params.shape[:1]:
        raise ValueError(f"Invalid {name}: a tensor {name} must have shape [N] = {tuple(params.shape[:1])} "
                         f"(one value per row of params {tuple(params.shape)}), got {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"Invalid {name}: expected finite values")
    above = value >= high if high_open else value > high
    if bool((value < low).any()) or bool(above.any()):
        bad = value[(value < low) | above][0].item()
        raise ValueError(f"Invalid {name}: expected values in [{low:g}, {high:g}{')' if high_open else ']'}, got {bad!r}")
    return value.to(params.dtype).reshape(-1, *([1] * (params.ndim - 1)))


def _betas(betas: object) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: expected a pair (beta1, beta2), got {betas!r}")
    return (_number("beta1 (betas[0])", betas[0], high=1.0, high_open=True),
            _number("beta2 (betas[1])", betas[1], high=1.0, high_open=True))


# =============================================================================
# The update rules (unchecked kernels: *_step validate, then call these)
# =============================================================================

def _sgd(p, g, state, *, lr, momentum, dampening, nesterov, weight_decay, maximize=False):
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    if _nonzero(momentum):
        buf = state.get("momentum_buffer")
        # PyTorch (and Sutskever et al. 2013) start the buffer at the first gradient, not at zero.
        if buf is None:
            buf = g.clone()
        elif isinstance(dampening, (int, float)) and dampening == 0:  # (1 - 0) * g is g: one op less per step
            buf = momentum * buf + g
        else:
            buf = momentum * buf + (1 - dampening) * g
        if isinstance(momentum, torch.Tensor):  # a row with momentum 0 is plain SGD: no dampening of its gradient
            buf = torch.where(momentum == 0, g, buf)
        state = {**state, "momentum_buffer": buf}
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, {**state, "step": state.get("step", 0) + 1}


def _adagrad(p, g, state, *, lr, lr_decay, weight_decay, initial_accumulator_value, eps, maximize=False):
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    if _nonzero(weight_decay):  # a float, or a tensor broadcasting to p (one decay per stacked model)
        g = g + weight_decay * p
    clr = lr / (1 + (step - 1) * lr_decay)
    total = state.get("sum")
    total = torch.full_like(p, initial_accumulator_value) if total is None else total
    total = total + g * g
    return p - clr * g / (total.sqrt() + eps), {"step": step, "sum": total}


def _rmsprop(p, g, state, *, lr, alpha, eps, weight_decay, momentum, centered, maximize=False):
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    if _nonzero(weight_decay):  # a float, or a tensor broadcasting to p (one decay per stacked model)
        g = g + weight_decay * p
    sq = state.get("square_avg", torch.zeros_like(p))
    sq = alpha * sq + (1 - alpha) * g * g
    new = {"step": step, "square_avg": sq}
    if centered:
        ga = state.get("grad_avg", torch.zeros_like(p))
        ga = alpha * ga + (1 - alpha) * g
        new["grad_avg"] = ga
        avg = (sq - ga * ga).sqrt() + eps
    else:
        avg = sq.sqrt() + eps
    if _nonzero(momentum):
        buf = state.get("momentum_buffer", torch.zeros_like(p))  # RMSprop's buffer starts at zero
        buf = momentum * buf + g / avg
        new["momentum_buffer"] = buf
        return p - lr * buf, new
    return p - lr * g / avg, new


def _adam(p, g, state, *, lr, betas, eps, weight_decay, amsgrad, decoupled, maximize=False):
    b1, b2 = betas
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    if _nonzero(weight_decay):  # a float, or a tensor broadcasting to p (one decay per stacked model)
        if decoupled:
            p = p * (1 - lr * weight_decay)  # AdamW: shrink the weights, outside the adaptive scaling
        else:
            g = g + weight_decay * p  # Adam: L2 penalty folded into the gradient, then rescaled
    m = state.get("exp_avg", torch.zeros_like(p))
    v = state.get("exp_avg_sq", torch.zeros_like(p))
    m = m + (1 - b1) * (g - m)  # = b1 m + (1 - b1) g, as torch's lerp
    v = b2 * v + (1 - b2) * g * g
    new = {"step": step, "exp_avg": m, "exp_avg_sq": v}
    bc1 = 1 - b1**step
    bc2_sqrt = math.sqrt(1 - b2**step)
    if amsgrad:
        vmax = torch.maximum(state.get("max_exp_avg_sq", torch.zeros_like(p)), v)
        new["max_exp_avg_sq"] = vmax
        denom = vmax.sqrt() / bc2_sqrt + eps
    else:
        denom = v.sqrt() / bc2_sqrt + eps
    return p - (lr / bc1) * m / denom, new


def _nonzero(x: Hyper) -> bool:
    return bool((x != 0).any()) if isinstance(x, torch.Tensor) else x != 0


# =============================================================================
# Public, validated update functions
# =============================================================================

def sgd_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper,
             momentum: Hyper = 0.0, dampening: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of (stochastic) gradient descent, with optional momentum, as ``torch.optim.SGD``.

    .. math::

        g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
        b_t &= \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1 - \tau) g_t & t > 1 \end{cases} \\
        \theta_t &= \theta_{t-1} - \eta \, \begin{cases} g_t + \mu b_t & \text{Nesterov} \\ b_t & \text{otherwise} \end{cases}

    with learning rate :math:`\eta`, momentum :math:`\mu`, dampening :math:`\tau`
    and weight decay :math:`\lambda`; with :math:`\mu = 0` it is plain
    :math:`\theta_t = \theta_{t-1} - \eta g_t`.

    Parameters
    ----------
    params, grads : Tensor [N, D] (any shape, the same for both)
    state : dict
        ``{}`` (or None) before the first step; holds ``"momentum_buffer"`` [N, D] and ``"step"``.
    lr : float >= 0, or Tensor [N]
    momentum : float >= 0, or Tensor [N]
    dampening : float >= 0
    nesterov : bool
        Nesterov momentum (needs momentum > 0 and dampening 0).
    weight_decay : float >= 0
        L2 penalty :math:`\tfrac{\lambda}{2}\|\theta\|^2` added to the loss.
    maximize : bool
        Climb the objective instead: the gradient's sign is flipped first, as ``torch.optim``'s ``maximize``.

    Returns
    -------
    (Tensor [N, D], dict)
        The new parameters and the new state (the inputs are unchanged).

    Raises
    ------
    ValueError, TypeError
        For invalid hyperparameters (``Invalid lr: ...``), mismatched shapes, dtypes or devices, non-finite values.

    Notes
    -----
    Two conventions differ from the heavy-ball method as Polyak wrote it,
    :math:`\theta_{t} = \theta_{t-1} - \alpha g_t + \beta(\theta_{t-1} - \theta_{t-2})`:
    the learning rate multiplies the buffer rather than the gradient inside it
    (the two agree for constant :math:`\eta`, with :math:`\alpha = \eta`), and the
    buffer starts at the first gradient instead of at zero, so the first step
    is a plain gradient step. PyTorch's Nesterov is the reformulation of
    Sutskever et al. (2013) that evaluates the gradient at the current point.

    Example
    -------
    >>> p, s = sgd_step(torch.ones(3, 2), torch.ones(3, 2), {}, lr=0.1, momentum=0.9)
    >>> p[0].tolist(), s["momentum_buffer"][0].tolist()
    ([0.9, 0.9], [1.0, 1.0])
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("momentum_buffer",))
    lr = _hyper("lr", lr, params)
    momentum = _hyper("momentum", momentum, params)
    dampening = _number("dampening", dampening, high=1.0)
    weight_decay = _number("weight_decay", weight_decay)
    if not isinstance(nesterov, bool):
        raise TypeError(f"Invalid nesterov: expected True or False, got {nesterov!r}")
    if nesterov and (not _positive_all(momentum) or dampening != 0):
        raise ValueError("Invalid nesterov: Nesterov momentum requires a momentum > 0 and zero dampening")
    return _sgd(params, grads, state, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                weight_decay=weight_decay, maximize=_flag("maximize", maximize))


def _flag(name: str, value: object) -> bool:
    return _checks.boolean(f"Invalid {name}", value)


def _positive_all(x: Hyper) -> bool:
    return bool((x > 0).all()) if isinstance(x, torch.Tensor) else x > 0


def adagrad_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1e-2,
                 lr_decay: float = 0.0, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of AdaGrad (Duchi, Hazan and Singer 2011), as ``torch.optim.Adagrad``.

    .. math::

        g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1}, \qquad
        \tilde\eta_t = \frac{\eta}{1 + (t - 1)\,\delta} \\
        s_t &= s_{t-1} + g_t^2, \qquad s_0 = \text{initial\_accumulator\_value} \\
        \theta_t &= \theta_{t-1} - \tilde\eta_t \, \frac{g_t}{\sqrt{s_t} + \epsilon}

    Every coordinate gets its own step size :math:`\eta / \sqrt{\sum_{k \le t} g_k^2}`,
    which only shrinks.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"sum"`` [N, D] and ``"step"``.
    lr : float >= 0 or Tensor [N]
    lr_decay, weight_decay, initial_accumulator_value, eps : float >= 0

    Returns
    -------
    (Tensor [N, D], dict)

    Notes
    -----
    :math:`\epsilon` is added *outside* the square root, as in PyTorch (the
    paper's diagonal version writes :math:`\delta + \sqrt{s_t}` too, but other
    libraries put it inside).
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("sum",))
    return _adagrad(params, grads, state, lr=_hyper("lr", lr, params), lr_decay=_number("lr_decay", lr_decay),
                    weight_decay=_number("weight_decay", weight_decay),
                    initial_accumulator_value=_number("initial_accumulator_value", initial_accumulator_value),
                    eps=_number("eps", eps), maximize=_flag("maximize", maximize))


def rmsprop_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of RMSProp (Tieleman and Hinton 2012), as ``torch.optim.RMSprop``.

    .. math::

        g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2, \qquad v_0 = 0 \\
        d_t &= \sqrt{v_t - \bar g_t^2} + \epsilon \ \text{(centered, } \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t\text{)}
              \quad\text{or}\quad \sqrt{v_t} + \epsilon \\
        \theta_t &= \theta_{t-1} - \eta\, b_t, \qquad b_t = \mu b_{t-1} + g_t / d_t \ (b_0 = 0)

    (without momentum, :math:`b_t = g_t / d_t`). AdaGrad's growing sum becomes
    an exponential moving average, so the step size no longer only shrinks.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"square_avg"``, ``"grad_avg"`` (centered), ``"momentum_buffer"`` (momentum) and ``"step"``.
    lr : float >= 0 or Tensor [N]
    alpha : float in [0, 1)
    eps, weight_decay, momentum : float >= 0
    centered : bool
        Divide by an estimate of the gradient's standard deviation instead of its root mean square.

    Returns
    -------
    (Tensor [N, D], dict)

    Notes
    -----
    There is no bias correction: :math:`v_t` starts at zero, so the first
    steps are larger than the later ones (by :math:`1/\sqrt{1-\alpha}`, 10x for
    :math:`\alpha = 0.99`, at the first step). Here the momentum buffer starts at zero.
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("square_avg", "grad_avg", "momentum_buffer"))
    if not isinstance(centered, bool):
        raise TypeError(f"Invalid centered: expected True or False, got {centered!r}")
    return _rmsprop(params, grads, state, lr=_hyper("lr", lr, params),
                    alpha=_number("alpha", alpha, high=1.0, high_open=True), eps=_number("eps", eps),
                    weight_decay=_number("weight_decay", weight_decay), momentum=_number("momentum", momentum),
                    centered=centered, maximize=_flag("maximize", maximize))


def adam_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1e-3,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
              amsgrad: bool = False, maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of Adam (Kingma and Ba 2015) with bias correction, as ``torch.optim.Adam``.

    .. math::

        g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad m_0 = v_0 = 0 \\
        \hat m_t &= \frac{m_t}{1 - \beta_1^t}, \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t}
        \quad (\text{AMSGrad: } \hat v_t = \frac{\max_{k \le t} v_k}{1 - \beta_2^t}) \\
        \theta_t &= \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"exp_avg"``, ``"exp_avg_sq"``, ``"max_exp_avg_sq"`` (amsgrad) and ``"step"``.
    lr : float >= 0 or Tensor [N]
    betas : (float, float), each in [0, 1)
    eps, weight_decay : float >= 0
        ``weight_decay`` is the L2 penalty added to the gradient (then rescaled
        with it); for decoupled weight decay use :func:`adam_step`'s sibling :func:`adamw_step`.
    amsgrad : bool
        Divide by the running maximum of :math:`v_t` (Reddi, Kale and Kumar 2018).

    Returns
    -------
    (Tensor [N, D], dict)

    Notes
    -----
    Like PyTorch, the bias corrections are applied to the step size and
    :math:`\epsilon` is added to :math:`\sqrt{v_t}/\sqrt{1-\beta_2^t}`, which
    equals the paper's :math:`\sqrt{\hat v_t} + \epsilon`. (The paper's
    "efficient version" adds :math:`\epsilon` to the uncorrected
    :math:`\sqrt{v_t}`, a slightly different :math:`\epsilon`.) PyTorch's
    AMSGrad takes the maximum of the *uncorrected* :math:`v_t`.
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
    if not isinstance(amsgrad, bool):
        raise TypeError(f"Invalid amsgrad: expected True or False, got {amsgrad!r}")
    return _adam(params, grads, state, lr=_hyper("lr", lr, params), betas=_betas(betas), eps=_number("eps", eps),
                 weight_decay=_number("weight_decay", weight_decay), amsgrad=amsgrad, decoupled=False,
                 maximize=_flag("maximize", maximize))


def adamw_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1e-3,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
               amsgrad: bool = False, maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    .. math::

        \theta' &= (1 - \eta\lambda)\, \theta_{t-1} \\
        \theta_t &= \theta' - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    with :math:`\hat m_t, \hat v_t` from the *plain* gradient
    :math:`\nabla f(\theta_{t-1})` as in :func:`adam_step`. The decay acts on
    the weights directly, at the same relative rate :math:`\eta\lambda` for every
    coordinate, instead of passing through Adam's per-coordinate scaling,
    which would shrink it where gradients are large.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
    lr : float >= 0 or Tensor [N]
    betas : (float, float), each in [0, 1)
    eps, weight_decay : float >= 0
    amsgrad : bool

    Returns
    -------
    (Tensor [N, D], dict)

    Notes
    -----
    The paper writes the decay as :math:`\eta_t \lambda \theta` with a
    schedule multiplier :math:`\eta_t` separate from the learning rate
    :math:`\alpha`; PyTorch (and this function) multiply by the learning rate,
    so changing ``lr`` also changes the effective decay.
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
    if not isinstance(amsgrad, bool):
        raise TypeError(f"Invalid amsgrad: expected True or False, got {amsgrad!r}")
    return _adam(params, grads, state, lr=_hyper("lr", lr, params), betas=_betas(betas), eps=_number("eps", eps),
                 weight_decay=_number("weight_decay", weight_decay), amsgrad=amsgrad, decoupled=True,
                 maximize=_flag("maximize", maximize))


# -----------------------------------------------------------------------------
# More adaptive methods: NAdam, RAdam, Adamax, Adadelta (torch.optim) and Lion
# -----------------------------------------------------------------------------

def _l2_or_decoupled(p, g, lr, weight_decay, decoupled):
    if _nonzero(weight_decay):
        if decoupled:
            return p * (1 - lr * weight_decay), g
        return p, g + weight_decay * p
    return p, g


def _nadam(p, g, state, *, lr, betas, eps, weight_decay, momentum_decay, decoupled_weight_decay, maximize=False):
    b1, b2 = betas
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    p, g = _l2_or_decoupled(p, g, lr, weight_decay, decoupled_weight_decay)
    mu = b1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))  # momentum of this step (Dozat's warming schedule)
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_product = state.get("mu_product", 1.0) * mu
    m = state.get("exp_avg", torch.zeros_like(p))
    v = state.get("exp_avg_sq", torch.zeros_like(p))
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    denom = (v / (1 - b2**step)).sqrt() + eps
    p = p - (lr * (1.0 - mu) / (1.0 - mu_product)) * g / denom  # the Nesterov look-ahead: part gradient ...
    p = p - (lr * mu_next / (1.0 - mu_product * mu_next)) * m / denom  # ... part next momentum
    return p, {"step": step, "exp_avg": m, "exp_avg_sq": v, "mu_product": mu_product}


def _radam(p, g, state, *, lr, betas, eps, weight_decay, decoupled_weight_decay, maximize=False):
    b1, b2 = betas
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    p, g = _l2_or_decoupled(p, g, lr, weight_decay, decoupled_weight_decay)
    m = state.get("exp_avg", torch.zeros_like(p))
    v = state.get("exp_avg_sq", torch.zeros_like(p))
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    bc1, bc2 = 1 - b1**step, 1 - b2**step
    m_hat = m / bc1
    rho_inf = 2 / (1 - b2) - 1  # length of the approximated simple moving average, at t = infinity
    rho_t = rho_inf - 2 * step * b2**step / bc2  # ... and at step t
    new = {"step": step, "exp_avg": m, "exp_avg_sq": v}
    if rho_t > 5.0:  # the variance of the adaptive rate is tractable: rectify it
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        return p - m_hat * lr * (bc2**0.5 / (v.sqrt() + eps)) * rect, new
    return p - m_hat * lr, new  # early steps: momentum SGD, no adaptive scaling


def _adamax(p, g, state, *, lr, betas, eps, weight_decay, maximize=False):
    b1, b2 = betas
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    if _nonzero(weight_decay):
        g = g + weight_decay * p
    m = state.get("exp_avg", torch.zeros_like(p))
    u = state.get("exp_inf", torch.zeros_like(p))
    m = m + (1 - b1) * (g - m)
    u = torch.maximum(b2 * u, g.abs() + eps)  # the infinity norm's running maximum
    return p - (lr / (1 - b1**step)) * m / u, {"step": step, "exp_avg": m, "exp_inf": u}


def _adadelta(p, g, state, *, lr, rho, eps, weight_decay, maximize=False):
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    if _nonzero(weight_decay):
        g = g + weight_decay * p
    sq = state.get("square_avg", torch.zeros_like(p))
    acc = state.get("acc_delta", torch.zeros_like(p))
    sq = rho * sq + (1 - rho) * g * g
    delta = (acc + eps).sqrt() / (sq + eps).sqrt() * g  # units of the parameter: RMS of past steps / RMS of gradients
    acc = rho * acc + (1 - rho) * delta * delta
    return p - lr * delta, {"step": step, "square_avg": sq, "acc_delta": acc}


def _lion(p, g, state, *, lr, betas, weight_decay, maximize=False):
    b1, b2 = betas
    step = state.get("step", 0) + 1
    if maximize:
        g = -g
    m = state.get("exp_avg", torch.zeros_like(p))
    c = b1 * m + (1 - b1) * g  # interpolate, then take the sign: every coordinate moves by exactly lr
    p = p - lr * (torch.sign(c) + weight_decay * p)
    m = b2 * m + (1 - b2) * g
    return p, {"step": step, "exp_avg": m}


def nadam_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 2e-3,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
               momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
               maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of NAdam (Dozat 2016): Adam with Nesterov momentum, as ``torch.optim.NAdam``.

    .. math::

        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}), \qquad \Pi_t = \prod_{k \le t} \mu_k \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \eta \left( \frac{1 - \mu_t}{1 - \Pi_t}\, g_t
                    + \frac{\mu_{t+1}}{1 - \Pi_{t+1}}\, m_t \right) \Big/ \left(\sqrt{v_t / (1 - \beta_2^t)} + \epsilon\right)

    with momentum decay :math:`\psi`: the step looks one momentum update ahead.
    See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"exp_avg"``, ``"exp_avg_sq"`` [N, D], ``"mu_product"`` (a float) and ``"step"``.
    lr : float >= 0 or Tensor [N]
    betas : (float, float), each in [0, 1)
    eps, weight_decay, momentum_decay : float >= 0
    decoupled_weight_decay : bool
        Shrink the weights by :math:`1 - \eta\lambda` (as AdamW) instead of adding :math:`\lambda\theta` to the gradient.
    maximize : bool

    Returns
    -------
    (Tensor [N, D], dict)
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("exp_avg", "exp_avg_sq"), scalars=("mu_product",))
    return _nadam(params, grads, state, lr=_hyper("lr", lr, params), betas=_betas(betas), eps=_number("eps", eps),
                  weight_decay=_number("weight_decay", weight_decay),
                  momentum_decay=_number("momentum_decay", momentum_decay),
                  decoupled_weight_decay=_flag("decoupled_weight_decay", decoupled_weight_decay),
                  maximize=_flag("maximize", maximize))


def radam_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1e-3,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
               decoupled_weight_decay: bool = False, maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of RAdam (Liu et al. 2020): Adam with its early variance rectified, as ``torch.optim.RAdam``.

    .. math::

        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        \theta_t &= \theta_{t-1} - \eta\, \hat m_t \cdot \begin{cases}
            r_t \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\ 1 & \text{otherwise} \end{cases},
        \qquad r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}

    While too few gradients have been seen for :math:`v_t` to be trusted
    (:math:`\rho_t \le 5`, the first 5 or so steps) it is momentum SGD; after,
    Adam with the step shrunk by :math:`r_t \to 1`. A warmup built in. See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"exp_avg"``, ``"exp_avg_sq"`` and ``"step"``.
    lr : float >= 0 or Tensor [N]
    betas : (float, float), each in [0, 1)
    eps, weight_decay : float >= 0
    decoupled_weight_decay : bool
    maximize : bool

    Returns
    -------
    (Tensor [N, D], dict)
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("exp_avg", "exp_avg_sq"))
    return _radam(params, grads, state, lr=_hyper("lr", lr, params), betas=_betas(betas), eps=_number("eps", eps),
                  weight_decay=_number("weight_decay", weight_decay),
                  decoupled_weight_decay=_flag("decoupled_weight_decay", decoupled_weight_decay),
                  maximize=_flag("maximize", maximize))


def adamax_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 2e-3,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of Adamax (Kingma and Ba 2015, section 7.1): Adam with the infinity norm, as ``torch.optim.Adamax``.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\, \frac{m_t}{u_t}

    :math:`u_t` needs no bias correction. See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"exp_avg"``, ``"exp_inf"`` and ``"step"``.
    lr : float >= 0 or Tensor [N]
    betas : (float, float), each in [0, 1)
    eps, weight_decay : float >= 0
    maximize : bool

    Returns
    -------
    (Tensor [N, D], dict)

    Notes
    -----
    PyTorch (and this function) add :math:`\epsilon` to :math:`|g_t|` inside the
    maximum; the paper has no :math:`\epsilon`.
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("exp_avg", "exp_inf"))
    return _adamax(params, grads, state, lr=_hyper("lr", lr, params), betas=_betas(betas), eps=_number("eps", eps),
                   weight_decay=_number("weight_decay", weight_decay), maximize=_flag("maximize", maximize))


def adadelta_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1.0,
                  rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
                  maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of Adadelta (Zeiler 2012), as ``torch.optim.Adadelta``.

    .. math::

        v_t &= \rho v_{t-1} + (1 - \rho) g_t^2 \\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \qquad
        u_t = \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
        \theta_t &= \theta_{t-1} - \eta\, \Delta_t

    The ratio of two running RMS values gives the step the units of the
    parameter, so the paper needs no learning rate (:math:`\eta = 1`). See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"square_avg"``, ``"acc_delta"`` and ``"step"``.
    lr : float >= 0 or Tensor [N]
    rho : float in [0, 1]
    eps, weight_decay : float >= 0
    maximize : bool

    Returns
    -------
    (Tensor [N, D], dict)
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("square_avg", "acc_delta"))
    return _adadelta(params, grads, state, lr=_hyper("lr", lr, params), rho=_number("rho", rho, high=1.0),
                     eps=_number("eps", eps), weight_decay=_number("weight_decay", weight_decay),
                     maximize=_flag("maximize", maximize))


def lion_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: Hyper = 1e-4,
              betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
              maximize: bool = False) -> tuple[torch.Tensor, dict]:
    r"""One step of Lion (Chen et al. 2023, "Symbolic discovery of optimization algorithms", Algorithm 2).

    .. math::

        c_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        \theta_t &= \theta_{t-1} - \eta \left(\operatorname{sign}(c_t) + \lambda \theta_{t-1}\right) \\
        m_t &= \beta_2 m_{t-1} + (1 - \beta_2) g_t, \qquad m_0 = 0

    Only the sign of the interpolated momentum is used, so every coordinate
    moves by exactly :math:`\eta` (plus decay): a rate about 3-10x smaller than
    AdamW's, and a decay :math:`\lambda` as many times larger, give a similar
    effective strength (the paper's advice). PyTorch has no Lion; the tests
    check it against the paper's update written out. See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    state : dict
        Holds ``"exp_avg"`` and ``"step"``.
    lr : float >= 0 or Tensor [N]
    betas : (float, float), each in [0, 1)
    weight_decay : float >= 0
        Decoupled, as in AdamW.
    maximize : bool

    Returns
    -------
    (Tensor [N, D], dict)
    """
    params, grads = _check_tensors(params, grads)
    state = _check_state(state, params, ("exp_avg",))
    return _lion(params, grads, state, lr=_hyper("lr", lr, params), betas=_betas(betas),
                 weight_decay=_number("weight_decay", weight_decay), maximize=_flag("maximize", maximize))


# -----------------------------------------------------------------------------
# L-BFGS: a quasi-Newton method that needs the loss, not only the gradient
# -----------------------------------------------------------------------------

def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``."""
    xmin_bound, xmax_bound = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square.sqrt() if isinstance(d2_square, torch.Tensor) else math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A line search along ``d`` for a step ``t`` meeting the strong Wolfe conditions (Nocedal and Wright, Alg. 3.5-3.6).

    Sufficient decrease :math:`f(x + td) \\le f(x) + c_1 t\\, g^\\top d` and small
    slope :math:`|g(x + td)^\\top d| \\le c_2 |g^\\top d|`: first bracket an interval
    holding such a ``t``, then shrink it by cubic interpolation ("zoom").
    The logic, constants and safeguards are those of ``torch.optim.lbfgs._strong_wolfe``.
    Returns (f_new, g_new, t, evaluations).
    """
    d_norm = d.abs().max()
    f_new, g_new = obj(x, t, d)
    evals, gtd_new = 1, g_new.dot(d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done, ls_iter = False, 0
    # 1) bracket
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]
            break
        min_step, max_step = t + 0.01 * (t - t_prev), t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    # 2) zoom: shrink the bracket until a point meets both conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:  # too close to an end: move 10% inside
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos], bracket_g[high_pos], bracket_gtd[high_pos] = t, f_new, g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos], bracket_g[low_pos], bracket_gtd[low_pos] = t, f_new, g_new, gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals


def lbfgs_step(params: torch.Tensor, closure: Callable[[torch.Tensor], tuple[Any, torch.Tensor]],
               state: dict | None = None, *, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
               tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
               line_search_fn: str | None = None) -> tuple[torch.Tensor, float, dict]:
    r"""One call of L-BFGS (Liu and Nocedal 1989): up to ``max_iter`` quasi-Newton iterations, as ``torch.optim.LBFGS``.

    From the last :math:`m` steps :math:`s_k = \theta_{k+1} - \theta_k` and
    gradient changes :math:`y_k = g_{k+1} - g_k` (kept only when
    :math:`y_k^\top s_k > 10^{-10}`), the two-loop recursion forms
    :math:`d = -H g` with :math:`H` the BFGS inverse-Hessian estimate started
    from :math:`\gamma I`, :math:`\gamma = y^\top s / y^\top y`. The step is
    :math:`\theta \leftarrow \theta + t d` with :math:`t` = ``lr`` (the first
    iteration ever: :math:`\min(1, 1/\|g\|_1)\,\eta`), or :math:`t` from a
    strong-Wolfe line search (``line_search_fn="strong_wolfe"``). See chapter 3.

    Parameters
    ----------
    params : Tensor [P], floating
        One flat parameter vector (L-BFGS couples every coordinate through
        dot products, so it is not batched over rows).
    closure : callable
        ``closure(theta) -> (loss, grad)``: the loss (a number or 0-d tensor)
        and its gradient [P] at ``theta``. Called once or more per iteration.
    state : dict
        ``{}`` (or None) before the first call; pass the returned one back.
    lr : float > 0
    max_iter : int >= 1
        Iterations per call.
    max_eval : int >= 1, optional
        Most closure calls per call; default ``max_iter * 5 // 4``.
    tolerance_grad, tolerance_change : float >= 0
        Stop when :math:`\|g\|_\infty` falls to ``tolerance_grad``, or the step or
        the change in loss falls below ``tolerance_change``.
    history_size : int >= 1
        :math:`m`, pairs remembered.
    line_search_fn : None or "strong_wolfe"

    Returns
    -------
    (Tensor [P], float, dict)
        The new parameters, the loss at the *start* of the call (what
        ``torch.optim.LBFGS.step`` returns) and the new state.

    Notes
    -----
    Follows ``torch.optim.LBFGS.step`` line by line (its history, its
    stopping tests and its line search port ``torch/optim`` of Lua Torch), so
    the iterates agree with PyTorch's to rounding.
    """
    if not isinstance(params, torch.Tensor) or not params.is_floating_point():
        raise TypeError(f"params: expected a floating-point tensor [P], got {getattr(params, 'dtype', type(params).__name__)}")
    if params.ndim != 1 or params.numel() == 0:
        raise ValueError(f"params: expected a flat tensor [P] with P >= 1, got shape {tuple(params.shape)}")
    if not bool(torch.isfinite(params).all()):
        raise ValueError("params: expected finite values")
    if not callable(closure):
        raise TypeError(f"closure: expected a callable theta -> (loss, grad), got {type(closure).__name__}")
    lr = _number("lr", lr)
    if lr == 0:
        raise ValueError("Invalid lr: expected a number > 0, got 0")
    for name, v in (("max_iter", max_iter), ("history_size", history_size)) + ((("max_eval", max_eval),) if max_eval is not None else ()):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"Invalid {name}: expected an int, got {type(v).__name__}")
        if v < 1:
            raise ValueError(f"Invalid {name}: expected an int >= 1, got {v}")
    max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
    tolerance_grad = _number("tolerance_grad", tolerance_grad)
    tolerance_change = _number("tolerance_change", tolerance_change)
    if line_search_fn not in (None, "strong_wolfe"):
        raise ValueError(f"Invalid line_search_fn: expected None or 'strong_wolfe', got {line_search_fn!r}")
    if state is not None and not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict ({{}} before the first call), got {type(state).__name__}")
    state = dict(state or {})
    state.setdefault("func_evals", 0)
    state.setdefault("n_iter", 0)

    def evaluate(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        loss, grad = closure(theta)
        if not isinstance(grad, torch.Tensor) or grad.shape != theta.shape:
            raise ValueError(f"closure: expected (loss, grad) with grad of shape {tuple(theta.shape)}, "
                             f"got {tuple(getattr(grad, 'shape', ())) or type(grad).__name__}")
        loss = float(loss)
        if not math.isfinite(loss) or not bool(torch.isfinite(grad).all()):
            raise ValueError("closure: returned a non-finite loss or gradient")
        return loss, grad.to(theta.dtype)

    x = params.clone()
    orig_loss, flat_grad = evaluate(x)
    loss, current_evals = orig_loss, 1
    state["func_evals"] += 1
    if flat_grad.abs().max() <= tolerance_grad:  # already optimal
        return x, orig_loss, state
    d, t = state.get("d"), state.get("t")
    old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
    H_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        state["n_iter"] += 1
        # 1) the direction: steepest descent first, then the two-loop recursion
        if state["n_iter"] == 1:
            d, old_dirs, old_stps, ro, H_diag = -flat_grad, [], [], [], 1
        else:
            old_dirs, old_stps, ro = list(old_dirs), list(old_stps), list(ro)
            y = flat_grad - prev_flat_grad
            s = d * t
            ys = y.dot(s)
            if ys > 1e-10:  # keep the pair only if the curvature along s is positive
                if len(old_dirs) == history_size:
                    old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
                H_diag = ys / y.dot(y)
            al = [None] * len(old_dirs)
            q = -flat_grad
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = old_stps[i].dot(q) * ro[i]
                q = q - al[i] * old_dirs[i]
            r = q * H_diag
            for i in range(len(old_dirs)):
                be_i = old_dirs[i].dot(r) * ro[i]
                r = r + (al[i] - be_i) * old_stps[i]
            d = r
        prev_flat_grad, prev_loss = flat_grad.clone(), loss
        # 2) the step length
        t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr if state["n_iter"] == 1 else lr
        gtd = flat_grad.dot(d)
        if gtd > -tolerance_change:  # not a descent direction (to tolerance)
            break
        if line_search_fn is not None:
            def obj(x0, step, direction):
                return evaluate(x0 + step * direction)

            loss, flat_grad, t, ls_evals = _strong_wolfe(obj, x, t, d, loss, flat_grad, gtd,
                                                         max_ls=max_eval - current_evals)
            x = x + t * d
            opt_cond = flat_grad.abs().max() <= tolerance_grad
        else:
            x = x + t * d
            ls_evals, opt_cond = 0, False
            if n_iter != max_iter:  # the last iteration's loss is not needed
                loss, flat_grad = evaluate(x)
                opt_cond = flat_grad.abs().max() <= tolerance_grad
                ls_evals = 1
        current_evals += ls_evals
        state["func_evals"] += ls_evals
        # 3) stop?
        if n_iter == max_iter or current_evals >= max_eval or opt_cond:
            break
        if (d * t).abs().max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
            break
    state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                 prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
    return x, orig_loss, state


#: name -> (validated step function, unchecked kernel, default hyperparameters).
METHODS: dict[str, tuple[Callable, Callable, dict]] = {
    "sgd": (sgd_step, _sgd, dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0)),
    "adagrad": (adagrad_step, _adagrad, dict(lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10)),
    "rmsprop": (rmsprop_step, _rmsprop, dict(alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)),
    "adam": (adam_step, lambda p, g, s, **h: _adam(p, g, s, decoupled=False, **h),
             dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)),
    "adamw": (adamw_step, lambda p, g, s, **h: _adam(p, g, s, decoupled=True, **h),
              dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)),
    "nadam": (nadam_step, _nadam, dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                                       decoupled_weight_decay=False)),
    "radam": (radam_step, _radam, dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False)),
    "adamax": (adamax_step, _adamax, dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adadelta": (adadelta_step, _adadelta, dict(rho=0.9, eps=1e-6, weight_decay=0.0)),
    "lion": (lion_step, _lion, dict(betas=(0.9, 0.99), weight_decay=0.0)),
}
for _name in METHODS:  # every update rule can climb instead of descend
    METHODS[_name][2].setdefault("maximize", False)
_DEFAULT_LR = {"adagrad": 1e-2, "rmsprop": 1e-2, "adam": 1e-3, "adamw": 1e-3, "nadam": 2e-3, "radam": 1e-3,
               "adamax": 2e-3, "adadelta": 1.0, "lion": 1e-4}


# =============================================================================
# A bound update and a torch.optim-like class
# =============================================================================

@dataclass(frozen=True)
class Update:
    """An update rule with its hyperparameters bound: ``update(params, grads, state) -> (params, state)``.

    Made by :func:`optimizer`, which validates the hyperparameters once.
    Calling it validates the tensors too; :meth:`raw` skips every check (for
    inner loops whose inputs are already known to be good).
    """

    method: str
    hyper: dict = field(default_factory=dict)
    label: str = ""

    def __call__(self, params: torch.Tensor, grads: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        return METHODS[self.method][0](params, grads, state, **self.hyper)

    def raw(self, params: torch.Tensor, grads: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        return METHODS[self.method][1](params, grads, state, **self.hyper)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items() if v != METHODS[self.method][2].get(k, None))
        return f"Update({self.method!r}, {args})"


def optimizer(method: str, *, label: str | None = None, **hyper: Any) -> Update:
    """Bind an update rule and its hyperparameters, validating them now.

    Parameters
    ----------
    method : {"sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "radam", "adamax", "adadelta", "lion"}
    label : str, optional
        A name for legends (default: the method).
    **hyper
        Keyword hyperparameters of the matching ``*_step`` function (``lr`` required for SGD).

    Returns
    -------
    Update

    Raises
    ------
    ValueError
        For an unknown method, an unknown or invalid hyperparameter.

    Example
    -------
    >>> optimizer("sgd", lr=0.1, momentum=0.9)
    Update('sgd', lr=0.1, momentum=0.9)
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
    step, _, defaults = METHODS[method]
    unknown = set(hyper) - set(defaults) - {"lr"}
    if unknown:
        raise ValueError(f"{method}: unknown hyperparameter(s) {sorted(unknown)}; expected lr and {sorted(defaults)}")
    if method == "sgd" and "lr" not in hyper:
        raise ValueError("lr: SGD has no default learning rate; pass lr=...")
    full = {**defaults, **hyper}
    if "lr" not in full:
        full["lr"] = _DEFAULT_LR[method]
    if "betas" in full:
        full["betas"] = tuple(full["betas"])
    probe = torch.zeros(1, 1, dtype=torch.float64)
    lr = full["lr"]
    if isinstance(lr, torch.Tensor):  # a per-row lr is checked against its rows when called
        step(torch.zeros(lr.shape[0], 1, dtype=torch.float64), torch.zeros(lr.shape[0], 1, dtype=torch.float64), {}, **full)
    else:
        step(probe, probe, {}, **full)  # raises on invalid hyperparameters
    return Update(method, full, label or method)


class Optimizer:
    """A thin ``torch.optim``-like class: steps tensors in place with an :class:`Update` per parameter group.

    Parameters
    ----------
    params : iterable of Tensor, or iterable of dict
        E.g. ``model.parameters()``; or parameter groups as in ``torch.optim``,
        ``[{"params": [...]}, {"params": [...], "lr": 1e-3}]``, each dict's
        other keys overriding ``**hyper`` for its tensors. Each tensor is
        updated in place under ``torch.no_grad()`` and may appear only once.
    method : str
        A name of :data:`METHODS`, or ``"lbfgs"`` (one group; :meth:`step` then needs a closure).
    **hyper
        As for :func:`optimizer` (numbers only: per-row tensor rates are for
        stacked parameter vectors in the ``*_step`` functions).

    Attributes
    ----------
    param_groups : list of dict
        ``{"params": [tensors], **hyperparameters}`` per group, as in
        ``torch.optim``; a hyperparameter changed here (a schedule setting
        ``group["lr"]``) is validated and used at the next :meth:`step`.

    Raises
    ------
    TypeError, ValueError
        For a non-tensor or integer parameter, a tensor given twice, an unknown
        method or hyperparameter, or a tensor-valued hyperparameter.

    Example
    -------
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = Optimizer([w], "adam", lr=0.1)
    >>> (w ** 2).sum().backward(); opt.step(); opt.zero_grad()
    >>> [round(v, 6) for v in w.detach().tolist()]  # Adam's first step moves every coordinate by about lr
    [0.9, -1.9]
    """

    _LBFGS_DEFAULTS = dict(lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                           history_size=100, line_search_fn=None)

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], method: str, **hyper: Any) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError("params: expected an iterable of tensors (e.g. model.parameters()), got a single tensor; "
                            "wrap it in a list")
        if not isinstance(params, Iterable):
            raise TypeError(f"params: expected an iterable of tensors or of parameter-group dicts, got {type(params).__name__}")
        items = list(params)
        if not items:
            raise ValueError("params: expected at least one tensor, got an empty iterable")
        groups = items if all(isinstance(g, Mapping) for g in items) else [{"params": items}]
        if method != "lbfgs" and method not in METHODS:
            raise ValueError(f"method: expected one of {sorted(METHODS) + ['lbfgs']}, got {method!r}")
        self.method = method
        self.param_groups: list[dict] = []
        seen: dict[int, str] = {}
        for gi, group in enumerate(groups):
            if not isinstance(group, Mapping) or "params" not in group:
                raise TypeError(f"params[{gi}]: expected a dict with a 'params' key (a parameter group), got {type(group).__name__}")
            ps = group["params"]
            ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
            if not ps:
                raise ValueError(f"params[{gi}]['params']: expected at least one tensor")
            for i, p in enumerate(ps):
                where = f"params[{i}]" if len(groups) == 1 else f"params[{gi}]['params'][{i}]"
                if not isinstance(p, torch.Tensor):
                    raise TypeError(f"{where}: expected a floating-point tensor, got {type(p).__name__}")
                if not p.is_floating_point():
                    raise TypeError(f"{where}: expected a floating-point tensor, got dtype {p.dtype}")
                if id(p) in seen:
                    raise ValueError(f"{where}: the same tensor appears twice (also as {seen[id(p)]}); "
                                     "it would be stepped twice per step")
                seen[id(p)] = where
            merged = {**hyper, **{k: v for k, v in group.items() if k != "params"}}
            self.param_groups.append({"params": ps, **self._validated(merged, gi if len(groups) > 1 else None)})
        if method == "lbfgs" and len(self.param_groups) != 1:
            raise ValueError(f"params: L-BFGS takes one parameter group, got {len(self.param_groups)}")
        self.state: dict[int, dict] = {}  # keyed by the index of the tensor over all groups

    def _validated(self, hyper: dict, group: int | None) -> dict:
        where = "" if group is None else f"param_groups[{group}]: "
        for k, v in hyper.items():
            if isinstance(v, torch.Tensor):
                raise TypeError(f"{where}{k}: expected a number, got a tensor; per-row tensor hyperparameters are for "
                                "stacked parameter vectors in the *_step functions, not for Optimizer")
        if self.method == "lbfgs":
            unknown = set(hyper) - set(self._LBFGS_DEFAULTS)
            if unknown:
                raise ValueError(f"{where}lbfgs: unknown hyperparameter(s) {sorted(unknown)}; expected {sorted(self._LBFGS_DEFAULTS)}")
            full = {**self._LBFGS_DEFAULTS, **hyper}
            lbfgs_step(torch.zeros(1, dtype=torch.float64), lambda th: (0.0, torch.zeros_like(th)), {}, **full)  # validates
            return full
        try:
            return dict(optimizer(self.method, **hyper).hyper)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}{e}") from None

    @property
    def params(self) -> list[torch.Tensor]:
        """Every tensor, group by group."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def states(self) -> list[dict]:
        """The per-tensor state dicts in :attr:`params` order (``{}`` before a tensor's first step)."""
        return [self.state.get(i, {}) for i in range(len(self.params))]

    @property
    def update(self) -> Update:
        """The first group's method and hyperparameters as an :class:`Update`; setting it sets every group's."""
        return Update(self.method, {k: v for k, v in self.param_groups[0].items() if k != "params"}, self.method)

    @update.setter
    def update(self, value: Update) -> None:
        if not isinstance(value, Update) or value.method != self.method:
            raise TypeError(f"update: expected an Update of method {self.method!r}, got {value!r}")
        hyper = self._validated(dict(value.hyper), None)
        for group in self.param_groups:
            group.update(hyper)

    def __repr__(self) -> str:
        return f"Optimizer({self.method!r}, {len(self.param_groups)} group(s), {len(self.params)} tensors)"

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every tensor that has a ``.grad``; returns ``closure()``'s loss (None without a closure).

        ``closure`` re-evaluates the model and calls ``backward()`` (as in
        ``torch.optim``); L-BFGS needs it, and calls it several times.

        Raises
        ------
        ValueError
            If a gradient holds NaN or inf (naming the tensor), before any tensor is changed.
        """
        if closure is not None and not callable(closure):
            raise TypeError(f"closure: expected a callable that returns the loss, got {type(closure).__name__}")
        if self.method == "lbfgs":
            return self._step_lbfgs(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index, work = 0, []
        for gi, group in enumerate(self.param_groups):
            hyper = self._group_hyper(gi)
            for p in group["params"]:
                if p.grad is not None:
                    work.append((index, p, hyper))
                index += 1
        if work:  # one synchronization for every gradient's finiteness, before any tensor changes
            finite = torch.stack([torch.isfinite(p.grad).all().to(work[0][1].device) for _, p, _ in work])
            if not bool(finite.all()):
                i, p, _ = work[int((~finite).nonzero()[0, 0])]
                raise ValueError(f"params[{i}].grad: expected finite values, got "
                                 f"{int((~torch.isfinite(p.grad)).sum())} NaN or inf entries; no tensor was updated")
        kernel = METHODS[self.method][1]  # hyperparameters and gradients are checked above
        with torch.no_grad():
            for i, p, hyper in work:
                grad = p.grad.to(p.dtype)
                if grad.shape != p.shape:
                    raise ValueError(f"params[{i}].grad: expected shape {tuple(p.shape)}, got {tuple(grad.shape)}")
                new, self.state[i] = kernel(p.detach(), grad, self.state.get(i, {}), **hyper)
                p.copy_(new)
        return loss

    def _group_hyper(self, gi: int) -> dict:
        """Group ``gi``'s validated hyperparameters, revalidated only when the group's dict changed (a schedule)."""
        raw = {k: v for k, v in self.param_groups[gi].items() if k != "params"}
        cache = self.__dict__.setdefault("_hyper_cache", {})
        if gi not in cache or cache[gi][0] != raw:
            cache[gi] = (raw, self._validated(raw, gi if len(self.param_groups) > 1 else None))
        return cache[gi][1]

    def _step_lbfgs(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            raise ValueError("closure: L-BFGS evaluates the loss several times per step; pass step(closure) "
                             "with a closure that zeroes the gradients, computes the loss, calls backward() and returns the loss")
        ps = self.params
        hyper = self._validated({k: v for k, v in self.param_groups[0].items() if k != "params"}, None)

        def flat(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
            with torch.no_grad():
                self._set_flat(theta)
            with torch.enable_grad():
                loss = closure()
            grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                     for p in ps]
            return float(loss.detach() if isinstance(loss, torch.Tensor) else loss), torch.cat(grads)

        x0 = torch.cat([p.detach().reshape(-1) for p in ps])
        x, loss, self.state[0] = lbfgs_step(x0, flat, self.state.get(0, {}), **hyper)
        with torch.no_grad():
            self._set_flat(x)
        return loss

    def _set_flat(self, theta: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            p.copy_(theta[offset: offset + p.numel()].view_as(p))
            offset += p.numel()

    def state_dict(self) -> dict:
        """``{"state": {index: {name: value}}, "param_groups": [{hyper..., "params": [indices]}]}``, as ``torch.optim``.

        Tensors are cloned, so later steps do not change a saved dict.
        """
        def copy(v):
            if isinstance(v, torch.Tensor):
                return v.detach().clone()
            if isinstance(v, list):
                return [copy(u) for u in v]
            return v

        groups, start = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": list(range(start, start + n))})
            start += n
        return {"method": self.method, "state": {i: {k: copy(v) for k, v in s.items()} for i, s in self.state.items()},
                "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore a :meth:`state_dict` saved from an optimizer of the same method over tensors of the same shapes.

        Raises
        ------
        TypeError, ValueError
            If it is not such a dict, or its groups, sizes or state shapes do not fit this optimizer.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict: expected a dict from Optimizer.state_dict() with 'state' and 'param_groups'")
        if state_dict.get("method", self.method) != self.method:
            raise ValueError(f"state_dict: saved from method {state_dict['method']!r}, this optimizer runs {self.method!r}")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("state_dict: its parameter groups do not match this optimizer's (number of groups or of tensors per group)")
        ps = self.params
        state: dict[int, dict] = {}
        for i, s in state_dict["state"].items():
            i = int(i)
            if not 0 <= i < len(ps):
                raise ValueError(f"state_dict: state for tensor {i}, but there are {len(ps)}")
            entry = {}
            for k, v in s.items():
                if isinstance(v, torch.Tensor) and self.method != "lbfgs":
                    if v.shape != ps[i].shape:
                        raise ValueError(f"state_dict: state[{i}][{k!r}] has shape {tuple(v.shape)}, "
                                         f"the tensor has {tuple(ps[i].shape)}")
                    v = v.to(dtype=ps[i].dtype, device=ps[i].device).clone()
                entry[k] = v
            state[i] = entry
        groups = []
        for gi, (s, g) in enumerate(zip(saved, self.param_groups)):
            hyper = {k: v for k, v in s.items() if k != "params"}
            groups.append({"params": g["params"], **self._validated(hyper, gi if len(saved) > 1 else None)})
        self.param_groups, self.state = groups, state


# =============================================================================
# Many trajectories at once on a 2-D test function
# =============================================================================

@dataclass(frozen=True)
class Trajectories:
    """Paths of many starting points under one optimizer.

    Attributes
    ----------
    path : Tensor [T + 1, N, 2] or None
        Positions at steps 0..T (None when ``keep_path=False``). A diverged
        run stays at its last finite position.
    loss : Tensor [T + 1, N] or None
        The function value along each path.
    final : Tensor [N, 2]
        Positions after the last step.
    diverged_at : Tensor [N] (int64)
        The step at which a run left the bounds or became non-finite, -1 if never.
    """

    path: torch.Tensor | None
    loss: torch.Tensor | None
    final: torch.Tensor
    diverged_at: torch.Tensor

    @property
    def diverged(self) -> torch.Tensor:
        """Bool [N]: which runs diverged."""
        return self.diverged_at >= 0

    def __repr__(self) -> str:
        n = self.final.shape[0]
        t = None if self.path is None else self.path.shape[0] - 1
        return f"Trajectories(N={n}, steps={t}, diverged={int(self.diverged.sum())})"


def run_trajectories(fn: Any, x0: torch.Tensor, update: Update, steps: int, *, keep_path: bool = True,
                     bound: float = 1e6, device: torch.device | str | None = None) -> Trajectories:
    r"""Run ``update`` from every starting point in ``x0`` at once for ``steps`` steps on ``fn``.

    All N runs advance together as one [N, 2] tensor on ``device`` (default
    :func:`losslab.backend.device`, the GPU when there is one), so thousands
    of starts cost about what one costs on a GPU and little more on a CPU.

    A run that leaves :math:`\|x\|_\infty \le` ``bound`` or becomes non-finite
    is *frozen* at its last good position and its step recorded in
    ``diverged_at``: divergence is reported, not propagated as NaN.

    Parameters
    ----------
    fn : TestFunction
        Anything with ``f(points [..., 2]) -> [...]`` and ``grad(points [..., 2]) -> [..., 2]``
        (the functions of :mod:`losslab.landscapes`).
    x0 : Tensor [N, 2]
        Starting points (finite).
    update : Update
        From :func:`optimizer`.
    steps : int >= 1
    keep_path : bool
        Keep every position ([T + 1, N, 2]); with False only ``final`` (saves memory for basin maps).
    bound : float > 0
        Runs beyond this coordinate magnitude count as diverged.
    device : torch.device or str, optional

    Returns
    -------
    Trajectories
        On ``device``.

    Raises
    ------
    TypeError, ValueError
        If ``fn`` lacks ``f``/``grad``, ``x0`` is not a finite floating [N, 2] tensor,
        ``update`` is not an :class:`Update`, or ``steps``/``bound`` are invalid.

    Example
    -------
    >>> from losslab import landscapes
    >>> run = run_trajectories(landscapes.quadratic(10.0), torch.tensor([[1.0, 1.0]], dtype=torch.float64),
    ...                        optimizer("sgd", lr=0.1), 50)
    >>> run.path.shape
    torch.Size([51, 1, 2])
    """
    if not (callable(getattr(fn, "f", None)) and callable(getattr(fn, "grad", None))):
        raise TypeError(f"fn: expected a test function with .f and .grad (see losslab.landscapes), got {type(fn).__name__}")
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise TypeError(f"x0: expected a floating-point tensor [N, 2], got {getattr(x0, 'dtype', type(x0).__name__)}")
    if x0.ndim != 2 or x0.shape[1] != 2 or x0.shape[0] < 1:
        raise ValueError(f"x0: expected shape [N, 2] with N >= 1, got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0: expected finite starting points")
    if not isinstance(update, Update):
        raise TypeError(f"update: expected an Update from losslab.optim.optimizer(...), got {type(update).__name__}")
    steps = _checks.count("steps", steps)
    bound = _number("bound", bound)
    if bound == 0:
        raise ValueError("bound: expected a number > 0, got 0")
    dev = torch.device(device) if device is not None else default_device()
    hyper = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in update.hyper.items()}
    if isinstance(hyper.get("lr"), torch.Tensor) and hyper["lr"].shape != x0.shape[:1]:
        raise ValueError(f"update: its lr has shape {tuple(hyper['lr'].shape)}, but x0 has {x0.shape[0]} rows")
    # per-row hyperparameters broadcast against [N, 2]
    hyper = {k: (v.reshape(-1, 1) if isinstance(v, torch.Tensor) else v) for k, v in hyper.items()}
    kernel = METHODS[update.method][1]

    x = x0.to(dev)  # (N, 2)
    n = x.shape[0]
    diverged_at = torch.full((n,), -1, dtype=torch.int64, device=dev)  # (N,)
    state: dict = {}
    path = [x] if keep_path else None
    with _checks.values_checked():  # x0 was checked above, and each new position is checked below
        for t in range(1, steps + 1):
            x, state, diverged_at = _trajectory_step(fn, kernel, hyper, x, state, diverged_at, t, bound)
            if keep_path:
                path.append(x)
    if keep_path:
        stacked = torch.stack(path)  # (T + 1, N, 2)
        return Trajectories(stacked, fn.f(stacked), x, diverged_at)
    return Trajectories(None, None, x, diverged_at)


def _trajectory_step(fn, kernel, hyper, x, state, diverged_at, t, bound):
    """One step of every run: the update, then any run that left the box (or is not finite) frozen."""
    g = fn.grad(x)  # (N, 2)
    new, state = kernel(x, g, state, **hyper)
    # one reduction says whether any run left the box (a NaN propagates through max() and fails
    # the comparison): 11 us per step for 20,000 runs on a CPU, against 66 us for the per-row test
    if not bool(new.abs().max() <= bound):
        # rare: freeze those runs, record when, and clear their optimizer state
        bad = ~(new.abs() <= bound).all(1)  # (N,) True for NaN, inf and out of bounds
        diverged_at = torch.where(bad & (diverged_at < 0), torch.full_like(diverged_at, t), diverged_at)
        alive = (diverged_at < 0).unsqueeze(1)  # (N, 1)
        new = torch.where(alive, new, x)
        state = {k: (torch.where(alive, v, torch.zeros_like(v)) if isinstance(v, torch.Tensor) else v)
                 for k, v in state.items()}
    return new, state, diverged_at


@dataclass(frozen=True)
class Basins:
    """Where each start of a grid ends up.

    Attributes
    ----------
    xs, ys : Tensor [R]
        Grid coordinates.
    label : Tensor [R, R] (int64)
        ``label[i, j]`` for the start ``(xs[j], ys[i])``: the index into
        ``targets`` of the point the run ended within ``tol`` of; -1 if it ended
        near none of them; -2 if it diverged.
    targets : Tensor [M, 2]
    final : Tensor [R, R, 2]
    """

    xs: torch.Tensor
    ys: torch.Tensor
    label: torch.Tensor
    targets: torch.Tensor
    final: torch.Tensor

    def fractions(self) -> torch.Tensor:
        """Float64 [M + 2]: the share of starts in each basin, then 'elsewhere', then 'diverged'."""
        m = self.targets.shape[0]
        counts = torch.stack([(self.label == k).sum() for k in range(m)] + [(self.label == -1).sum(), (self.label == -2).sum()])
        return counts.double().cpu() / self.label.numel()

    def __repr__(self) -> str:
        return f"Basins({self.label.shape[0]}x{self.label.shape[1]} starts, {self.targets.shape[0]} targets)"


def basins(fn: Any, update: Update, *, steps: int, resolution: int = 100, targets: torch.Tensor | None = None,
           domain: tuple | None = None, tol: float = 1e-2, device: torch.device | str | None = None) -> Basins:
    """A basin-of-attraction map: run every point of a ``resolution x resolution`` grid at once and label its end.

    Parameters
    ----------
    fn : TestFunction
    update : Update
    steps : int
    resolution : int >= 2
        Grid points per axis (``resolution**2`` runs, all in one batch).
    targets : Tensor [M, 2], optional
        The points to attribute end points to; default ``fn.minima``.
    domain : ((xmin, xmax), (ymin, ymax)), optional
        Default ``fn.domain``.
    tol : float > 0
        An end point within this Euclidean distance of a target belongs to it.

    Returns
    -------
    Basins
    """
    resolution = _checks.count("resolution", resolution, 2)
    tol = _number("tol", tol)
    dev = torch.device(device) if device is not None else default_device()
    (x0, x1), (y0, y1) = domain if domain is not None else fn.domain
    xs = torch.linspace(float(x0), float(x1), resolution, dtype=torch.float64, device=dev)  # (R,)
    ys = torch.linspace(float(y0), float(y1), resolution, dtype=torch.float64, device=dev)  # (R,)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (R, R)
    starts = torch.stack([xx, yy], -1).reshape(-1, 2)  # (R*R, 2)
    if targets is None:
        targets = torch.tensor(fn.minima, dtype=torch.float64).reshape(-1, 2)
    if not isinstance(targets, torch.Tensor) or targets.ndim != 2 or targets.shape[1] != 2 or targets.shape[0] < 1:
        raise ValueError(f"targets: expected a tensor [M, 2] with M >= 1, got {getattr(targets, 'shape', targets)}")
    targets = targets.to(dev, torch.float64)
    run = run_trajectories(fn, starts, update, steps, keep_path=False, device=dev)
    dist = torch.cdist(run.final, targets)  # (R*R, M)
    near, which = dist.min(1)
    label = torch.where(near <= tol, which, torch.full_like(which, -1))
    label = torch.where(run.diverged, torch.full_like(label, -2), label)
    return Basins(xs, ys, label.reshape(resolution, resolution), targets, run.final.reshape(resolution, resolution, 2))


# =============================================================================
# Rates on quadratics: theory and measurement
# =============================================================================

def gd_rate(lr: float, eigenvalues: Sequence[float] | torch.Tensor) -> float:
    r"""The linear rate of gradient descent on a quadratic: :math:`\max_i |1 - \eta \lambda_i|`.

    The error along eigenvector :math:`i` of the Hessian is multiplied by
    :math:`1 - \eta\lambda_i` at every step. At :math:`\eta = 1/L` the rate is
    :math:`1 - 1/\kappa`; the best constant step :math:`\eta = 2/(\mu + L)` gives
    :math:`(\kappa - 1)/(\kappa + 1)`.

    Returns
    -------
    float
        Above 1 means divergence.
    """
    lam = _real_tensor("eigenvalues", eigenvalues)
    if lam.ndim != 1 or lam.numel() == 0:
        raise ValueError(f"eigenvalues: expected a non-empty sequence [M], got shape {tuple(lam.shape)}")
    return float((1 - _number("lr", lr) * lam).abs().max())


def heavy_ball_rate(lr: float | torch.Tensor, beta: float | torch.Tensor,
                    eigenvalues: Sequence[float] | torch.Tensor) -> torch.Tensor:
    r"""The linear rate of heavy-ball momentum on a quadratic, from its iteration matrices.

    Along eigenvector :math:`i`, :math:`(e_{t+1}, e_t) = M_i (e_t, e_{t-1})` with
    :math:`M_i = \begin{pmatrix} 1 + \beta - \eta\lambda_i & -\beta \\ 1 & 0 \end{pmatrix}`;
    the rate is :math:`\max_i \rho(M_i)`, the largest eigenvalue modulus. With
    :math:`\eta = 4/(\sqrt L + \sqrt\mu)^2` and :math:`\beta = \big((\sqrt\kappa - 1)/(\sqrt\kappa + 1)\big)^2`
    it is :math:`(\sqrt\kappa - 1)/(\sqrt\kappa + 1)` (Polyak 1964).

    Parameters
    ----------
    lr, beta : float or Tensor [K]
        Broadcast together (a sweep).
    eigenvalues : sequence of float [M]
        The Hessian's eigenvalues.

    Returns
    -------
    Tensor [] or [K] (float64)
    """
    lr_t = _real_tensor("lr", lr)
    beta_t = _real_tensor("beta", beta)
    if bool((lr_t < 0).any()):
        raise ValueError(f"lr: expected learning rates >= 0, got {float(lr_t.min())}")
    if bool(((beta_t < 0) | (beta_t >= 1)).any()):
        raise ValueError(f"beta: expected momenta in [0, 1), got values in [{float(beta_t.min())}, {float(beta_t.max())}]")
    try:
        lr_t, beta_t = torch.broadcast_tensors(lr_t, beta_t)
    except RuntimeError:
        raise ValueError(f"lr, beta: shapes {tuple(lr_t.shape)} and {tuple(beta_t.shape)} do not broadcast") from None
    lam = _real_tensor("eigenvalues", eigenvalues)  # (M,)
    if lam.ndim != 1 or lam.numel() == 0:
        raise ValueError(f"eigenvalues: expected a non-empty sequence [M], got shape {tuple(lam.shape)}")
    a = 1 + beta_t[..., None] - lr_t[..., None] * lam  # (..., M) trace of M_i
    b = beta_t[..., None].expand_as(a)  # determinant of M_i
    # roots of z^2 - a z + b = 0
    disc = (a * a - 4 * b).to(torch.complex128)
    root = torch.sqrt(disc)
    r = torch.maximum(((a + root) / 2).abs(), ((a - root) / 2).abs())  # (..., M)
    return r.amax(-1)


def _real_tensor(name: str, value: object) -> torch.Tensor:
    """A number, sequence or real tensor as a finite float64 tensor."""
    if isinstance(value, (str, bytes)) or value is None or isinstance(value, bool):
        raise TypeError(f"{name}: expected a number or a tensor of numbers, got {type(value).__name__}")
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: expected a number or a tensor of numbers, got {type(value).__name__}") from None
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return t


def heavy_ball_best(mu: float, L: float) -> tuple[float, float, float]:
    r"""Polyak's best heavy-ball hyperparameters on a quadratic with eigenvalues in :math:`[\mu, L]`.

    Returns
    -------
    (lr, beta, rate)
        :math:`\eta = 4/(\sqrt L + \sqrt \mu)^2`, :math:`\beta = r^2`, :math:`r = (\sqrt\kappa - 1)/(\sqrt\kappa + 1)`.
    """
    mu, L = _number("mu", mu), _number("L", L)
    if not 0 < mu <= L:
        raise ValueError(f"mu, L: expected 0 < mu <= L, got mu={mu}, L={L}")
    sk = math.sqrt(L / mu)
    r = (sk - 1) / (sk + 1)
    return 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, r * r, r


def measured_rate(errors: torch.Tensor, *, start: int, stop: int) -> torch.Tensor:
    r"""The measured linear rate :math:`(e_{\text{stop}} / e_{\text{start}})^{1/(\text{stop} - \text{start})}`.

    Parameters
    ----------
    errors : Tensor [T + 1] or [T + 1, N]
        A positive error per step (distance to the minimizer, or the loss gap).
    start, stop : int
        The window, ``0 <= start < stop <= T``; leave out the first steps, where
        the slow direction has not yet taken over.

    Returns
    -------
    Tensor [] or [N]
    """
    if not isinstance(errors, torch.Tensor) or errors.ndim not in (1, 2):
        raise ValueError(f"errors: expected a tensor [T + 1] or [T + 1, N], got {getattr(errors, 'shape', errors)}")
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop < errors.shape[0]):
        raise ValueError(f"start, stop: expected 0 <= start < stop <= {errors.shape[0] - 1}, got {start}, {stop}")
    e0, e1 = errors[start].double(), errors[stop].double()
    return (e1.log() - e0.log()).div(stop - start).exp()


# =============================================================================
# Mini-batch gradients (the noise section)
# =============================================================================

def minibatch_gradients(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, batch_size: int, *,
                        generator: torch.Generator | None = None, indices: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mini-batch gradients of the least-squares loss for K weight vectors at once.

    For run :math:`k` a batch :math:`B_k` of ``batch_size`` distinct examples is
    drawn (without replacement) and

    .. math:: g_k = \frac{1}{|B_k|} \sum_{i \in B_k} x_i (x_i^\top w_k - y_i),

    the gradient of :math:`\tfrac{1}{2|B_k|}\sum_{i\in B_k} (x_i^\top w_k - y_i)^2`.
    With ``batch_size = n`` it is the full gradient.

    Parameters
    ----------
    x : Tensor [n, D]
    y : Tensor [n]
    w : Tensor [K, D]
    batch_size : int in [1, n]
    generator : torch.Generator, optional
        On ``x``'s device.
    indices : Tensor [K, batch_size] (int64), optional
        The examples of each run's batch (e.g. consecutive slices of a per-epoch shuffle);
        drawn at random when omitted.

    Returns
    -------
    Tensor [K, D]
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"x: expected a tensor [n, D], got {getattr(x, 'shape', type(x).__name__)}")
    n, d = x.shape
    if not isinstance(y, torch.Tensor) or y.shape != (n,):
        raise ValueError(f"y: expected a tensor [{n}], got {getattr(y, 'shape', type(y).__name__)}")
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[1] != d:
        raise ValueError(f"w: expected a tensor [K, {d}], got {getattr(w, 'shape', type(w).__name__)}")
    if x.dtype != w.dtype or y.dtype != w.dtype:
        raise TypeError(f"x, y, w: expected one dtype, got {x.dtype}, {y.dtype}, {w.dtype}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size: expected an int in [1, {n}], got {batch_size!r}")
    k = w.shape[0]
    if indices is not None:
        if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64 or indices.shape != (k, batch_size):
            raise ValueError(f"indices: expected an int64 tensor [{k}, {batch_size}], got {getattr(indices, 'shape', indices)}")
        idx = indices
    elif batch_size == n:
        idx = torch.arange(n, device=x.device).expand(k, n)  # (K, n)
    else:
        keys = torch.rand(k, n, generator=generator, device=x.device)  # (K, n)
        idx = keys.argsort(1)[:, :batch_size]  # (K, B) a random subset per run
    xb = x[idx]  # (K, B, D)
    r = (xb @ w.unsqueeze(-1)).squeeze(-1) - y[idx]  # (K, B) residuals
    return (xb * r.unsqueeze(-1)).mean(1)  # (K, D)


def minibatch_variance(per_example: torch.Tensor, batch_size: int) -> torch.Tensor:
    r"""The exact variance of a mini-batch mean drawn without replacement: :math:`\mathbb E\,\|g_B - \bar g\|^2`.

    For a batch :math:`B` of ``batch_size`` = :math:`b` distinct examples, every
    subset equally likely, out of :math:`n` per-example gradients :math:`g_i` with
    mean :math:`\bar g`,

    .. math:: \mathbb E\,\|g_B - \bar g\|^2 = \frac{\sigma^2}{b}\,\frac{n - b}{n},
              \qquad \sigma^2 = \frac{1}{n - 1}\sum_i \|g_i - \bar g\|^2 ,

    (equivalently :math:`\frac{s^2}{b}\frac{n-b}{n-1}` with :math:`s^2` the average over
    :math:`n`). It is :math:`\sigma^2/b` up to the finite-population factor
    :math:`1 - b/n`, and 0 at :math:`b = n`. See Chapter 3, where it is checked
    against an enumeration of every batch.

    Parameters
    ----------
    per_example : Tensor [n, D]
        The per-example gradients (floating point, n >= 2).
    batch_size : int in [1, n]

    Returns
    -------
    Tensor []
        In the dtype of ``per_example``.
    """
    if not isinstance(per_example, torch.Tensor) or per_example.ndim != 2 or not per_example.is_floating_point():
        raise ValueError(f"per_example: expected a floating-point tensor [n, D], got "
                         f"{getattr(per_example, 'shape', type(per_example).__name__)}")
    n = per_example.shape[0]
    if n < 2:
        raise ValueError(f"per_example: expected at least 2 examples, got {n}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size: expected an int in [1, {n}], got {batch_size!r}")
    sigma2 = ((per_example - per_example.mean(0)) ** 2).sum() / (n - 1)
    return sigma2 / batch_size * (n - batch_size) / n


# =============================================================================
# Beyond the first-order methods (Chapter 3): Newton's step, averaging the
# iterates, and the matrix preconditioners used at scale (Shampoo, Muon)
# =============================================================================

def newton_step(params: torch.Tensor, grads: torch.Tensor, hessians: torch.Tensor, *, lr: float = 1.0,
                damping: float = 0.0) -> torch.Tensor:
    r"""One (damped) Newton step for each of N parameter vectors: :math:`\theta - \eta\,(H + \lambda I)^{-1} g`.

    On a quadratic :math:`f(\theta) = \tfrac12 (\theta - \theta^\star)^\top A (\theta - \theta^\star)`
    the step with :math:`\eta = 1`, :math:`\lambda = 0` lands on :math:`\theta^\star`
    at once, whatever the condition number of :math:`A`: the Hessian's inverse
    undoes the conditioning. The price is the Hessian, :math:`D^2` numbers,
    and a linear solve, :math:`O(D^3)` operations, per step. PyTorch has no
    Newton optimizer; the tests check this against the definition. See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [N, D]
    hessians : Tensor [N, D, D]
        The Hessian at each row of ``params`` (symmetric).
    lr : float > 0
        :math:`\eta` (1 is the pure Newton step).
    damping : float >= 0
        :math:`\lambda`, added to the diagonal (Levenberg-Marquardt style).

    Returns
    -------
    Tensor [N, D]

    Raises
    ------
    ValueError
        For shapes that do not match, non-finite values, or a singular :math:`H + \lambda I`.
    """
    params, grads = _check_tensors(params, grads)
    if params.ndim != 2:
        raise ValueError(f"params: expected shape [N, D], got {tuple(params.shape)}")
    if not isinstance(hessians, torch.Tensor):
        raise TypeError(f"hessians: expected a torch.Tensor [N, D, D], got {type(hessians).__name__}")
    n, d = params.shape
    if hessians.shape != (n, d, d):
        raise ValueError(f"hessians: expected shape {(n, d, d)} (one D x D Hessian per row of params), got {tuple(hessians.shape)}")
    if hessians.dtype != params.dtype:
        raise TypeError(f"hessians: expected dtype {params.dtype} (that of params), got {hessians.dtype}")
    if not bool(torch.isfinite(hessians).all()):
        raise ValueError("hessians: expected finite values")
    lr = _number("lr", lr)
    if lr == 0:
        raise ValueError("Invalid lr: expected a number > 0, got 0")
    damping = _number("damping", damping)
    system = hessians + damping * torch.eye(d, dtype=params.dtype, device=params.device)
    solution, info = torch.linalg.solve_ex(system, grads.unsqueeze(-1))  # (N, D, 1): (H + lambda I)^{-1} g
    if bool((info != 0).any()):
        raise ValueError(f"hessians: H + damping I is singular for row(s) {info.nonzero().flatten().tolist()}; "
                         "pass damping > 0")
    return params - lr * solution.squeeze(-1)


def average_step(average: torch.Tensor | None, params: torch.Tensor, n_averaged: int, *,
                 decay: float | None = None) -> tuple[torch.Tensor, int]:
    r"""Add the current parameters to a running average of the iterates: Polyak's mean, or an EMA.

    With ``decay=None`` this is the Polyak-Ruppert average of every iterate
    seen so far, :math:`\bar\theta_n = \bar\theta_{n-1} + (\theta - \bar\theta_{n-1})/n`;
    with a ``decay`` :math:`\gamma` it is the exponential moving average
    :math:`\bar\theta \leftarrow \gamma\,\bar\theta + (1 - \gamma)\,\theta`. Either
    way the first call copies ``params``. Equal to
    ``torch.optim.swa_utils.AveragedModel`` (default average, or
    ``get_ema_multi_avg_fn(decay)``) step for step. The average is never
    trained on: it is read out, and near a noise floor it sits far below it
    (Chapter 3).

    Parameters
    ----------
    average : Tensor or None
        The average so far (any shape; None or anything when ``n_averaged`` is 0).
    params : Tensor
        The current iterate, floating point.
    n_averaged : int >= 0
        How many iterates ``average`` holds.
    decay : float in [0, 1], optional

    Returns
    -------
    (Tensor, int)
        The new average (a new tensor) and ``n_averaged + 1``.
    """
    if not isinstance(params, torch.Tensor) or not params.is_floating_point():
        raise TypeError(f"params: expected a floating-point tensor, got {getattr(params, 'dtype', type(params).__name__)}")
    if not bool(torch.isfinite(params).all()):
        raise ValueError("params: expected finite values")
    if isinstance(n_averaged, bool) or not isinstance(n_averaged, int) or n_averaged < 0:
        raise ValueError(f"n_averaged: expected an int >= 0, got {n_averaged!r}")
    if decay is not None:
        decay = _number("decay", decay, high=1.0)
    if n_averaged == 0:
        return params.clone(), 1
    if not isinstance(average, torch.Tensor) or average.shape != params.shape or average.dtype != params.dtype:
        raise ValueError(f"average: expected a tensor of shape {tuple(params.shape)} and dtype {params.dtype} "
                         f"(that of params), got {getattr(average, 'shape', type(average).__name__)}")
    if decay is None:
        return average + (params - average) / (n_averaged + 1), n_averaged + 1
    return decay * average + (1 - decay) * params, n_averaged + 1


def _matrices(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor [..., m, n], got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name}: expected matrices, shape [..., m, n] with m, n >= 1, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values")
    return x


#: Keller Jordan's quintic Newton-Schulz coefficients (a, b, c), tuned to push every singular value into about [0.7, 1.2] in 5 steps.
MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrices: torch.Tensor, *, steps: int = 5, coefficients: tuple[float, float, float] = MUON_COEFFICIENTS,
                  eps: float = 1e-7) -> torch.Tensor:
    r"""Approximately orthogonalize matrices: :math:`G = U S V^\top \mapsto U\, p(S)\, V^\top` with :math:`p(s) \approx 1`.

    Normalizes :math:`X = G / (\|G\|_F + \epsilon)` (so every singular value
    is at most 1), then iterates :math:`X \leftarrow aX + (b\,A + c\,A^2)X` with
    :math:`A = XX^\top`, an odd polynomial applied to each singular value.
    The coefficients (1.5, -0.5, 0) give the classical cubic iteration,
    which converges to :math:`UV^\top` (the orthogonal polar factor);
    :data:`MUON_COEFFICIENTS` trade exactness for speed: in five steps every
    singular value lands roughly in [0.7, 1.2]. Works on a batch ``[..., m, n]``
    (the wide orientation is used internally). See chapter 3.

    Parameters
    ----------
    matrices : Tensor [..., m, n]
    steps : int >= 1
    coefficients : (a, b, c)
    eps : float > 0

    Returns
    -------
    Tensor [..., m, n]
    """
    G = _matrices("matrices", matrices)
    steps = _checks.count("steps", steps, low=1)
    if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
        raise ValueError(f"coefficients: expected three numbers (a, b, c), got {coefficients!r}")
    a, b, c = (_checks.number(f"coefficients[{i}]", v) for i, v in enumerate(coefficients))
    eps = _checks.positive("eps", eps)
    tall = G.shape[-2] > G.shape[-1]
    X = G.mT if tall else G  # (..., r, k) with r <= k: A = X X^T is the smaller Gram matrix
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


def muon_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: float = 0.02,
              momentum: float = 0.95, nesterov: bool = True, weight_decay: float = 0.0,
              ns_steps: int = 5) -> tuple[torch.Tensor, dict]:
    r"""One Muon step (Jordan et al. 2024) for weight matrices: orthogonalized momentum.

    .. math::

        m_t &= \beta\, m_{t-1} + (1 - \beta)\, g_t, \qquad
        u_t = (1 - \beta)\, g_t + \beta\, m_t \ \text{(Nesterov; else } u_t = m_t) \\
        \theta_t &= (1 - \eta\lambda)\,\theta_{t-1} - \eta\, \sqrt{\max(1, m/n)}\;\mathrm{NS}_5(u_t)

    where :math:`\mathrm{NS}_5` is :func:`newton_schulz`: the update keeps the
    singular vectors of the momentum and sets (roughly) all its singular values
    to 1, so no direction of the matrix dominates the step. This follows
    Keller Jordan's reference implementation (momentum as an EMA, the factor
    for tall matrices); PyTorch has no Muon (tests check the definition).
    In practice Muon updates the 2-D hidden weights only, and
    embeddings, biases and the output layer use AdamW. See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [..., m, n]
        One matrix, or a batch of matrices (each orthogonalized on its own).
    state : dict
        ``"momentum_buffer"`` [..., m, n] and ``"step"``.
    lr : float >= 0
    momentum : float in [0, 1)
    nesterov : bool
    weight_decay : float >= 0
        Decoupled, as in AdamW.
    ns_steps : int >= 1

    Returns
    -------
    (Tensor [..., m, n], dict)
    """
    params, grads = _check_tensors(params, grads)
    _matrices("params", params)
    state = _check_state(state, params, ("momentum_buffer",))
    lr, wd = _number("lr", lr), _number("weight_decay", weight_decay)
    beta = _number("momentum", momentum, high=1.0, high_open=True)
    nesterov = _flag("nesterov", nesterov)
    buf = state.get("momentum_buffer", torch.zeros_like(params))
    buf = beta * buf + (1 - beta) * grads
    update = (1 - beta) * grads + beta * buf if nesterov else buf
    scale = max(1.0, params.shape[-2] / params.shape[-1]) ** 0.5
    new = (1 - lr * wd) * params - lr * scale * newton_schulz(update, steps=ns_steps)
    return new, {"step": state.get("step", 0) + 1, "momentum_buffer": buf}


def _inverse_root(matrices: torch.Tensor, root: int) -> torch.Tensor:
    """A^(-1/root) of symmetric positive-definite matrices [..., k, k], by an eigendecomposition."""
    vals, vecs = torch.linalg.eigh(matrices)
    return (vecs * vals.clamp_min(torch.finfo(vals.dtype).tiny).pow(-1.0 / root).unsqueeze(-2)) @ vecs.mT


def shampoo_step(params: torch.Tensor, grads: torch.Tensor, state: dict | None = None, *, lr: float = 0.1,
                 eps: float = 1e-4) -> tuple[torch.Tensor, dict]:
    r"""One step of Shampoo (Gupta et al. 2018) for weight matrices: a Kronecker-factored AdaGrad.

    .. math::

        L_t = \epsilon I + \sum_{k \le t} G_k G_k^\top, \qquad
        R_t = \epsilon I + \sum_{k \le t} G_k^\top G_k, \qquad
        W_t = W_{t-1} - \eta\, L_t^{-1/4}\, G_t\, R_t^{-1/4}

    For an :math:`m \times n` matrix the preconditioner :math:`L^{-1/4} \otimes R^{-1/4}`
    stands in for a full-matrix AdaGrad's :math:`mn \times mn` one at the cost
    of :math:`m^2 + n^2` numbers and two eigendecompositions per step
    (:math:`O(m^3 + n^3)`). This is the plain algorithm of the paper, with
    the inverse roots recomputed every step; the versions used at scale
    (e.g. distributed Shampoo, SOAP) recompute them every few hundred steps,
    graft the step size from Adam and add momentum. PyTorch has no Shampoo;
    the tests check the definition. See chapter 3.

    Parameters
    ----------
    params, grads : Tensor [..., m, n]
    state : dict
        ``"left"`` [..., m, m], ``"right"`` [..., n, n] and ``"step"``.
    lr : float >= 0
    eps : float > 0
        The initial :math:`\epsilon I` of both factors.

    Returns
    -------
    (Tensor [..., m, n], dict)
    """
    params, grads = _check_tensors(params, grads)
    _matrices("params", params)
    lr, eps = _number("lr", lr), _checks.positive("eps", eps)
    if state is not None and not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict ({{}} before the first step), got {type(state).__name__}")
    state = dict(state or {})
    m, n = params.shape[-2], params.shape[-1]
    eye = lambda k: torch.eye(k, dtype=params.dtype, device=params.device).expand(*params.shape[:-2], k, k)
    left, right = state.get("left", eps * eye(m)), state.get("right", eps * eye(n))
    for key, value, k in (("left", left, m), ("right", right, n)):
        if not isinstance(value, torch.Tensor) or value.shape != (*params.shape[:-2], k, k):
            raise ValueError(f"state[{key!r}]: expected a tensor of shape {(*params.shape[:-2], k, k)}, "
                             f"got {getattr(value, 'shape', type(value).__name__)}")
    left = left + grads @ grads.mT  # (..., m, m)
    right = right + grads.mT @ grads  # (..., n, n)
    new = params - lr * _inverse_root(left, 4) @ grads @ _inverse_root(right, 4)
    return new, {"step": state.get("step", 0) + 1, "left": left, "right": right}
