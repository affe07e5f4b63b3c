"""Deep multilayer perceptrons for studying how gradients vanish and explode.

See Chapter 6 ("Vanishing and exploding gradients").

The network is a stack of ``depth`` hidden layers of equal ``width``, then a
linear read-out. Hidden layer ``l`` computes

.. math::

    z_l = W_l h_{l-1} + b_l, \\qquad
    a_l = \\phi(\\mathrm{norm}(z_l)), \\qquad
    h_l = \\begin{cases} h_{l-1} + \\alpha\\, a_l & \\text{residual (for } l > 1) \\\\
                        a_l & \\text{otherwise} \\end{cases}

with ``phi`` the activation, ``norm`` none, batch or layer normalization, and
``alpha`` the residual branch scale. Everything the chapter varies lives in one
:class:`MLPConfig`.

What this module provides:

- :class:`MLPConfig`, :class:`DeepMLP` and :func:`init_std` (the Xavier/Glorot
  and He variances, and a small and a large fixed scale);
- :func:`signal_stats` (one model, plain autograd: the reference path) and
  :func:`batched_signal_stats` (many models of one shape at once with
  ``torch.func.stack_module_state`` + ``vmap``): per-layer weight-gradient
  norms, gradient norms with respect to each hidden state, activation
  statistics; :func:`sweep` runs a list of configurations, grouping those
  that share a shape;
- :func:`clip_grad_norm_` and :func:`clip_grad_value_`, which match
  ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``, and the
  functional :func:`clip_by_global_norm` used inside ``vmap``;
- :func:`train_runs`: a small SGD loop on the digits, vectorized over runs
  that share a shape, for the with/without-remedy training curves;
- :func:`orthogonal` (``torch.nn.init.orthogonal_`` from scratch) and
  :func:`input_output_jacobian`, for dynamical isometry;
  :func:`residual_signal` (plain, pre-norm and post-norm stacks at
  initialization); :func:`relu_diagnostics` (dead ReLUs and update-to-data
  ratios, recorded during training).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields, replace
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from . import _checks
from .backend import generator as _generator

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "NORMS",
    "MLPConfig",
    "DeepMLP",
    "init_std",
    "SignalStats",
    "signal_stats",
    "batched_signal_stats",
    "sweep",
    "global_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_by_global_norm",
    "Run",
    "train_runs",
    "orthogonal",
    "input_output_jacobian",
    "ResidualStats",
    "RESIDUAL_KINDS",
    "residual_signal",
    "ReluDiagnostics",
    "relu_diagnostics",
    "normalized_runs",
]

#: Activations by name. ``linear`` is the identity (a deep linear network).
ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
    "linear": lambda z: z,
}

#: Weight initializations by name (biases always start at zero); see :func:`init_std`.
INITS = ("small", "xavier", "he", "large")

#: Normalizations applied to each hidden pre-activation.
NORMS = ("none", "batch", "layer")

SMALL_STD = 0.01  # the "small" initialization: N(0, 0.01^2), whatever the width
LARGE_STD = 1.0  # the "large" initialization: N(0, 1), whatever the width


def init_std(init: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation of the normal distribution a weight matrix is drawn from.

    See Chapter 6, "Choosing the scale".

    ======== ================================= ==========================
    name     variance                          keeps ... constant
    ======== ================================= ==========================
    small    :math:`10^{-4}`                   nothing (signals vanish)
    xavier   :math:`2 / (n_{in} + n_{out})`    forward and backward variance, compromise, for tanh-like units
    he       :math:`2 / n_{in}`                forward variance through ReLU units
    large    :math:`1`                         nothing (signals explode)
    ======== ================================= ==========================

    Parameters
    ----------
    init : {"small", "xavier", "he", "large"}
    fan_in, fan_out : int
        Inputs and outputs of the layer (a weight matrix has shape ``(fan_out, fan_in)``).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``init`` is unknown or a fan is not a positive int.

    Example
    -------
    >>> init_std("he", 50, 10) ** 2
    0.04
    """
    for name, value in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if init == "small":
        return SMALL_STD
    if init == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "he":
        return math.sqrt(2.0 / fan_in)
    if init == "large":
        return LARGE_STD
    raise ValueError(f"init: expected one of {INITS}, got {init!r}")


def _positive_int(name: str, value: object) -> None:
    _checks.count(name, value, 1)


@dataclass(frozen=True)
class MLPConfig:
    """Everything that defines one deep MLP of the chapter.

    Attributes
    ----------
    depth : int
        Number of hidden layers (each Linear -> norm -> activation).
    width : int
        Units per hidden layer.
    activation : {"sigmoid", "tanh", "relu", "gelu", "linear"}
    init : {"small", "xavier", "he", "large"}
        Weight initialization (:func:`init_std`); biases start at zero.
    norm : {"none", "batch", "layer"}
        Normalization of each hidden pre-activation. Batch normalization
        always uses the statistics of the batch it sees (no running
        averages), so it behaves the same in training and evaluation.
    residual : bool
        Add a skip connection around every hidden layer but the first.
    branch_scale : float
        Factor on the residual branch (``alpha`` in the module docstring).
    in_dim, out_dim : int
        Input features and classes (64 and 10 for the digits).
    """

    depth: int = 20
    width: int = 64
    activation: str = "tanh"
    init: str = "xavier"
    norm: str = "none"
    residual: bool = False
    branch_scale: float = 1.0
    in_dim: int = 64
    out_dim: int = 10

    def __post_init__(self) -> None:
        for name in ("depth", "width", "in_dim", "out_dim"):
            _positive_int(name, getattr(self, name))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init: expected one of {INITS}, got {self.init!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {self.norm!r}")
        if not isinstance(self.residual, bool):
            raise TypeError(f"residual: expected True or False, got {self.residual!r}")
        b = self.branch_scale
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
            raise ValueError(f"branch_scale: expected a finite number > 0, got {b!r}")

    def shape_key(self) -> tuple:
        """Every field but ``init``: models with equal keys can be stacked and vmapped together."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "init")


class DeepMLP(nn.Module):
    """The chapter's deep MLP (see the module docstring for the layer equations).

    Parameters
    ----------
    config : MLPConfig
    seed : int
        Seed of the weights (a fresh generator; global state is untouched).
    dtype : torch.dtype
        float32 or float64.
    device : torch.device or str, optional
        Where the parameters live (default CPU).

    Example
    -------
    >>> net = DeepMLP(MLPConfig(depth=5, width=32), seed=0)
    >>> net(torch.zeros(8, 64)).shape
    torch.Size([8, 10])
    """

    def __init__(
        self,
        config: MLPConfig,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, MLPConfig):
            raise TypeError(f"config: expected an MLPConfig, got {type(config).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.config = config
        c = config
        dims = [c.in_dim] + [c.width] * c.depth
        self.hidden = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], dtype=dtype) for i in range(c.depth))
        if c.norm == "batch":
            self.norms = nn.ModuleList(
                nn.BatchNorm1d(c.width, track_running_stats=False, dtype=dtype) for _ in range(c.depth)
            )
        elif c.norm == "layer":
            self.norms = nn.ModuleList(nn.LayerNorm(c.width, dtype=dtype) for _ in range(c.depth))
        else:
            self.norms = None
        self.readout = nn.Linear(c.width, c.out_dim, dtype=dtype)
        g = _generator(seed)
        with torch.no_grad():
            for layer in [*self.hidden, self.readout]:
                fan_out, fan_in = layer.weight.shape
                std = init_std(c.init, fan_in, fan_out)
                layer.weight.copy_(torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) * std)
                layer.bias.zero_()
        if device is not None:
            self.to(device)

    def __repr__(self) -> str:
        return f"DeepMLP({self.config!r}, parameters={sum(p.numel() for p in self.parameters())})"

    def forward(
        self,
        x: torch.Tensor,
        probes: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits, and optionally every hidden state.

        Parameters
        ----------
        x : Tensor, shape (B, in_dim)
        probes : Tensor, shape (depth, B, width), optional
            Added to each hidden state ``h_l``. Pass zeros and differentiate
            with respect to them to get :math:`\\partial L / \\partial h_l`.
        return_hidden : bool
            Also return the hidden states.

        Returns
        -------
        logits : Tensor, shape (B, out_dim)
        hidden : Tensor, shape (depth, B, width)
            Only when ``return_hidden``.
        """
        c = self.config
        if x.ndim != 2 or x.shape[1] != c.in_dim:
            raise ValueError(f"x: expected shape (B, {c.in_dim}), got {tuple(x.shape)}")
        if probes is not None and probes.shape != (c.depth, x.shape[0], c.width):
            raise ValueError(f"probes: expected shape {(c.depth, x.shape[0], c.width)}, got {tuple(probes.shape)}")
        act = ACTIVATIONS[c.activation]
        h = x  # (B, in_dim)
        hidden = []
        for l, layer in enumerate(self.hidden):
            z = layer(h)  # (B, width)
            if self.norms is not None:
                z = self.norms[l](z)
            a = act(z)  # (B, width)
            h = h + c.branch_scale * a if (c.residual and l > 0) else a
            if probes is not None:
                h = h + probes[l]
            hidden.append(h)
        logits = self.readout(h)  # (B, out_dim)
        if return_hidden:
            return logits, torch.stack(hidden)  # (depth, B, width)
        return logits


# --- signal statistics --------------------------------------------------------------


@dataclass(frozen=True)
class SignalStats:
    """What flows forward and backward through one model (or a stack of models).

    Every field has an optional leading model axis ``(M,)`` when it comes
    from :func:`batched_signal_stats`.

    Attributes
    ----------
    loss : Tensor, shape () or (M,)
        Mean cross-entropy on the batch.
    weight_grad_norm : Tensor, shape (depth,)
        Frobenius norm of :math:`\\partial L / \\partial W_l`, hidden layers 1..depth.
    hidden_grad_norm : Tensor, shape (depth,)
        Frobenius norm of :math:`\\partial L / \\partial h_l` over the batch.
    act_mean, act_std : Tensor, shape (depth,)
        Mean and standard deviation of the entries of ``h_l`` over batch and units.
    act_sample : Tensor, shape (depth, S)
        The hidden values of the first few examples, for histograms.
    """

    loss: torch.Tensor
    weight_grad_norm: torch.Tensor
    hidden_grad_norm: torch.Tensor
    act_mean: torch.Tensor
    act_std: torch.Tensor
    act_sample: torch.Tensor

    def __repr__(self) -> str:
        return f"SignalStats(loss={tuple(self.loss.shape)}, per-layer={tuple(self.weight_grad_norm.shape)})"

    def select(self, i: int) -> "SignalStats":
        """The statistics of model ``i`` of a stack."""
        return SignalStats(*(getattr(self, f.name)[i] for f in fields(self)))


def _check_batch(x: torch.Tensor, y: torch.Tensor, in_dim: int) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x, y: expected tensors, got {type(x).__name__}, {type(y).__name__}")
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"x: expected shape (B, {in_dim}), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],) or y.dtype != torch.int64:
        raise ValueError(f"y: expected int64 labels of shape ({x.shape[0]},), got {tuple(y.shape)} {y.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x: contains NaN or infinite values")


def _stats(loss, weight_grads, hidden_grad, hidden, n_sample):
    # hidden: (depth, B, width); hidden_grad: (depth, B, width); weight_grads: list of (out, in)
    wg = torch.stack([g.pow(2).sum().sqrt() for g in weight_grads])  # (depth,)
    hg = hidden_grad.pow(2).sum(dim=(1, 2)).sqrt()  # (depth,)
    flat = hidden.flatten(1)  # (depth, B*width)
    sample = hidden[:, :n_sample].flatten(1)  # (depth, S)
    return SignalStats(loss, wg, hg, flat.mean(1), flat.std(1), sample)


def signal_stats(model: DeepMLP, x: torch.Tensor, y: torch.Tensor, *, n_sample: int = 16) -> SignalStats:
    """Per-layer gradient norms and activation statistics of one model (plain autograd).

    The reference path that :func:`batched_signal_stats` is tested against.

    Parameters
    ----------
    model : DeepMLP
    x : Tensor, shape (B, in_dim)
    y : Tensor, shape (B,), int64 labels
    n_sample : int
        Examples whose hidden values go into ``act_sample`` (``S = n_sample * width``).

    Returns
    -------
    SignalStats

    Raises
    ------
    TypeError, ValueError
        On a model that is not a :class:`DeepMLP` or a badly shaped batch.
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model: expected a DeepMLP, got {type(model).__name__}")
    c = model.config
    _check_batch(x, y, c.in_dim)
    _positive_int("n_sample", n_sample)
    probes = torch.zeros(c.depth, x.shape[0], c.width, dtype=x.dtype, device=x.device, requires_grad=True)
    logits, hidden = model(x, probes=probes, return_hidden=True)
    loss = F.cross_entropy(logits, y)
    weights = [layer.weight for layer in model.hidden]
    *wgrads, pgrad = torch.autograd.grad(loss, [*weights, probes])
    return _stats(loss.detach(), wgrads, pgrad, hidden.detach(), n_sample)


def _stack(models: Sequence[DeepMLP]):
    if not models:
        raise ValueError("models: expected at least one model")
    for i, m in enumerate(models):
        if not isinstance(m, DeepMLP):
            raise TypeError(f"models[{i}]: expected a DeepMLP, got {type(m).__name__}")
    key = models[0].config.shape_key()
    for i, m in enumerate(models):
        if m.config.shape_key() != key:
            raise ValueError(
                f"models[{i}]: every model must share the shape of models[0] (all config fields but init); "
                f"got {m.config} and {models[0].config}"
            )
    params, buffers = stack_module_state(list(models))  # each leaf: (M, ...)
    base = copy.deepcopy(models[0]).to("meta")
    return base, params, buffers


def batched_signal_stats(
    models: Sequence[DeepMLP], x: torch.Tensor, y: torch.Tensor, *, n_sample: int = 16
) -> SignalStats:
    """:func:`signal_stats` for many models of one shape at once (``stack_module_state`` + ``vmap``).

    Parameters
    ----------
    models : sequence of DeepMLP
        Equal ``config.shape_key()`` (they may differ in ``init`` and seed),
        on ``x``'s device and dtype.
    x, y : Tensor, shapes (B, in_dim) and (B,)
        One batch, shared by every model.

    Returns
    -------
    SignalStats
        Every field with a leading axis of size ``M = len(models)``.

    Raises
    ------
    ValueError
        If the models differ in shape, or on a bad batch.
    """
    base, params, buffers = _stack(models)
    c = models[0].config
    _check_batch(x, y, c.in_dim)
    _positive_int("n_sample", n_sample)
    M = len(models)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    probes = torch.zeros(M, c.depth, x.shape[0], c.width, dtype=x.dtype, device=x.device, requires_grad=True)
    logits, hidden = _vmapped_forward(base, params, buffers, x, probes)  # (M, B, C), (M, depth, B, width)
    loss = _per_model_loss(logits, y)  # (M,)
    # The models are independent, so the gradient of the sum holds each model's own gradient.
    weight_keys = [f"hidden.{l}.weight" for l in range(c.depth)]
    *wgrads, pgrad = torch.autograd.grad(loss.sum(), [*(params[k] for k in weight_keys), probes])
    with torch.no_grad():
        wg = torch.stack([g.pow(2).sum(dim=(1, 2)).sqrt() for g in wgrads], dim=1)  # (M, depth)
        hg = pgrad.pow(2).sum(dim=(2, 3)).sqrt()  # (M, depth)
        hidden = hidden.detach()
        flat = hidden.flatten(2)  # (M, depth, B*width)
        sample = hidden[:, :, :n_sample].flatten(2)  # (M, depth, S)
        return SignalStats(loss.detach(), wg, hg, flat.mean(2), flat.std(2), sample)


def _vmapped_forward(base, params, buffers, x, probes=None):
    """Logits (and hidden states) of a stack of models on one batch ``x``: (M, B, C) [, (M, depth, B, width)]."""

    if probes is None:
        return vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)

    def f(p, b, pr):
        return functional_call(base, (p, b), (x,), {"probes": pr, "return_hidden": True})

    return vmap(f)(params, buffers, probes)


def _per_model_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each model: logits (M, B, C), y (B,) -> (M,)."""
    M, B, C = logits.shape
    ce = F.cross_entropy(logits.reshape(M * B, C), y.repeat(M), reduction="none")  # (M*B,)
    return ce.reshape(M, B).mean(1)


def sweep(
    configs: Sequence[MLPConfig],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int = 0,
    n_sample: int = 16,
) -> list[SignalStats]:
    """Signal statistics of many configurations, vmapped within groups of equal shape.

    Models are built on ``x``'s device and in ``x``'s dtype, each from
    ``seed``. Use float64 to measure explosions that would overflow float32.

    Parameters
    ----------
    configs : sequence of MLPConfig
    x, y : Tensor, shapes (B, in_dim) and (B,)

    Returns
    -------
    list of SignalStats
        One per configuration, in order.
    """
    if not configs:
        raise ValueError("configs: expected at least one MLPConfig")
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        if not isinstance(c, MLPConfig):
            raise TypeError(f"configs[{i}]: expected an MLPConfig, got {type(c).__name__}")
        groups.setdefault(c.shape_key(), []).append(i)
    out: list[SignalStats | None] = [None] * len(configs)
    for idx in groups.values():
        models = [DeepMLP(configs[i], seed=seed, dtype=x.dtype, device=x.device) for i in idx]
        stats = batched_signal_stats(models, x, y, n_sample=n_sample)
        for j, i in enumerate(idx):
            out[i] = stats.select(j)
    return out  # type: ignore[return-value]


# --- clipping -----------------------------------------------------------------------


def _tensors(parameters: torch.Tensor | Iterable[torch.Tensor], name: str = "parameters") -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    try:
        items = list(parameters)
    except TypeError:
        raise TypeError(f"{name}: expected a tensor or an iterable of tensors, got {type(parameters).__name__}") from None
    for i, p in enumerate(items):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name}[{i}]: expected a tensor, got {type(p).__name__}")
    return items


def _real(name: str, value: object) -> float:
    return _checks.number(name, value, allow_inf=True)


def _norm_type(norm_type: object) -> float:
    if isinstance(norm_type, str) and norm_type.strip().lower() not in ("inf", "+inf", "infinity"):
        raise TypeError(f"norm_type: expected a number or 'inf', got the string {norm_type!r}")
    p = _real("norm_type", norm_type) if not isinstance(norm_type, str) else math.inf
    if not p > 0:
        raise ValueError(f"norm_type: expected a positive number or inf, got {norm_type!r}")
    return p


def global_grad_norm(tensors: torch.Tensor | Iterable[torch.Tensor], norm_type: float = 2.0) -> torch.Tensor:
    r"""The p-norm of several tensors taken together as one long vector.

    .. math::

        \|g\|_p = \Big(\sum_k \|g_k\|_p^p\Big)^{1/p}
                = \big\|(\|g_1\|_p, \dots, \|g_K\|_p)\big\|_p, \qquad
        \|g\|_\infty = \max_k \max_i |g_{k,i}|

    computed, as PyTorch does, as the norm of the per-tensor norms.

    Parameters
    ----------
    tensors : Tensor or iterable of Tensor
        Any shapes.
    norm_type : float
        ``p > 0`` or ``inf`` (``"inf"`` too).

    Returns
    -------
    Tensor, shape ()
        ``tensor(0.)`` for no tensors.
    """
    ts = _tensors(tensors, "tensors")
    for i, t in enumerate(ts):
        if not (t.is_floating_point() or t.is_complex()):
            raise TypeError(f"tensors[{i}]: expected a floating-point tensor, got dtype {t.dtype}")
    p = _norm_type(norm_type)
    if not ts:
        return torch.tensor(0.0)
    first = ts[0].device
    norms = torch.stack([torch.linalg.vector_norm(t, p).to(first) for t in ts])  # (K,)
    return torch.linalg.vector_norm(norms, p)


@torch.no_grad()
def clip_grad_norm_(
    parameters: torch.Tensor | Iterable[torch.Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> torch.Tensor:
    r"""Rescale the gradients in place so their global norm is at most ``max_norm``.

    Same contract as ``torch.nn.utils.clip_grad_norm_``: every gradient is
    multiplied by :math:`\min\big(1, \text{max\_norm} / (\|g\| + 10^{-6})\big)`,
    which keeps the direction of the whole gradient. A non-finite norm scales
    by NaN or zero (so an infinite gradient turns into NaN where it was
    infinite and zero elsewhere), unless ``error_if_nonfinite``.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
        Tensors whose ``.grad`` is clipped; those without a gradient are skipped.
    max_norm : float
        Largest allowed global norm, >= 0.
    norm_type : float
        ``p > 0`` or ``inf``.
    error_if_nonfinite : bool
        Raise instead of scaling when the norm is NaN or infinite.

    Returns
    -------
    Tensor, shape ()
        The global norm before clipping.

    Raises
    ------
    ValueError
        If ``max_norm`` is negative or NaN, or ``norm_type`` is not positive.
        (PyTorch accepts a negative ``max_norm`` and flips the gradients.)
    RuntimeError
        If ``error_if_nonfinite`` and the norm is NaN or infinite (as PyTorch).

    Example
    -------
    >>> w = torch.ones(4, requires_grad=True); w.grad = torch.full((4,), 3.0)
    >>> clip_grad_norm_([w], 1.0)
    tensor(6.)
    """
    params = _tensors(parameters)
    max_norm = _real("max_norm", max_norm)
    if max_norm < 0:
        raise ValueError(f"max_norm: expected >= 0, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    total = global_grad_norm(grads, norm_type)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped; pass error_if_nonfinite=False to scale by it anyway"
        )
    if grads:
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # the same eps as PyTorch
        for g in grads:
            g.mul_(coef.to(g.device))
    return total


@torch.no_grad()
def clip_grad_value_(parameters: torch.Tensor | Iterable[torch.Tensor], clip_value: float) -> None:
    """Clamp every gradient entry into ``[-clip_value, clip_value]`` in place.

    Same contract as ``torch.nn.utils.clip_grad_value_`` (NaN stays NaN,
    ``±inf`` becomes ``±clip_value``). Unlike norm clipping it changes the
    direction of the gradient whenever some entries are clamped and others not.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
        Tensors whose ``.grad`` is clamped; those without a gradient are skipped.
    clip_value : float
        >= 0.

    Raises
    ------
    ValueError
        If ``clip_value`` is negative or NaN (PyTorch would fill every
        gradient with the negative value).
    """
    params = _tensors(parameters)
    clip_value = _real("clip_value", clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_value: expected >= 0, got {clip_value}")
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(min=-clip_value).clamp_(max=clip_value)


def clip_by_global_norm(
    grads: Mapping[str, torch.Tensor], max_norm: torch.Tensor | float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Functional norm clipping of a dict of gradients (works inside ``vmap``).

    Parameters
    ----------
    grads : mapping of str to Tensor
    max_norm : Tensor, shape (), or float
        ``inf`` disables clipping.

    Returns
    -------
    (dict of Tensor, Tensor)
        The scaled gradients and the global 2-norm before clipping.
    """
    if not isinstance(grads, Mapping) or not grads:
        raise TypeError(f"grads: expected a non-empty dict of name -> gradient tensor, got {type(grads).__name__}")
    if isinstance(max_norm, torch.Tensor):
        if max_norm.numel() != 1 or not max_norm.is_floating_point():
            raise TypeError(f"max_norm: expected a number or a floating 0-d tensor, got shape {tuple(max_norm.shape)}, {max_norm.dtype}")
        if not _checks.traced(max_norm) and not bool(max_norm >= 0):  # data-dependent: skipped inside vmap
            raise ValueError(f"max_norm: expected >= 0 (inf disables clipping), got {float(max_norm)}")
    else:
        max_norm = _checks.number("max_norm", max_norm, low=0.0, allow_inf=True)
    total = torch.stack([g.pow(2).sum() for g in grads.values()]).sum().sqrt()  # ()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return {k: g * coef for k, g in grads.items()}, total


# --- training -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One training run of :func:`train_runs`.

    Attributes
    ----------
    config : MLPConfig
    lr : float
        SGD learning rate, > 0.
    clip_norm : float or None
        Clip the global gradient norm to this (None: no clipping).
    clip_value : float or None
        Clamp every gradient entry to ``[-clip_value, clip_value]`` (None: no clamping).
    seed : int
        Seed of the initial weights.
    """

    config: MLPConfig
    lr: float = 0.1
    clip_norm: float | None = None
    clip_value: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.config, MLPConfig):
            raise TypeError(f"config: expected an MLPConfig, got {type(self.config).__name__}")
        if not _real("lr", self.lr) > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr: expected a finite number > 0, got {self.lr}")
        for name in ("clip_norm", "clip_value"):
            v = getattr(self, name)
            if v is not None and not _real(name, v) > 0:
                raise ValueError(f"{name}: expected None or a number > 0, got {v}")


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-model vector (M,) shaped to broadcast against a stacked tensor (M, ...)."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


def train_runs(
    runs: Sequence[Run],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 200,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train every run with minibatch SGD on ``(x, y)``; runs of one shape train together under ``vmap``.

    Every run sees the same minibatches (drawn with ``seed``), so curves
    differ only by what the runs differ in. Each step computes the gradient
    of the mean cross-entropy, clips it (by value, then by global norm, as
    asked), and takes ``p <- p - lr * g``. A run whose loss became NaN or
    infinite stays NaN from then on.

    Parameters
    ----------
    runs : sequence of Run
    x : Tensor, shape (N, in_dim)
    y : Tensor, shape (N,), int64
    steps, batch_size : int

    Returns
    -------
    losses : Tensor, shape (R, steps)
        Minibatch loss before each step.
    grad_norms : Tensor, shape (R, steps)
        Global gradient norm before norm clipping (after value clipping, for
        a run with ``clip_value``).
    """
    if not runs:
        raise ValueError("runs: expected at least one Run")
    for i, r in enumerate(runs):
        if not isinstance(r, Run):
            raise TypeError(f"runs[{i}]: expected a Run, got {type(r).__name__}")
    _check_batch(x, y, runs[0].config.in_dim)
    _positive_int("steps", steps)
    _positive_int("batch_size", batch_size)
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size: expected <= {x.shape[0]} (the number of examples), got {batch_size}")
    g = _generator(seed)
    batches = torch.stack([torch.randperm(x.shape[0], generator=g)[:batch_size] for _ in range(steps)])  # (steps, b)
    batches = batches.to(x.device)
    losses = torch.full((len(runs), steps), float("nan"), dtype=x.dtype, device=x.device)
    norms = torch.full_like(losses, float("nan"))
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.config.shape_key(), []).append(i)
    inf = float("inf")
    for idx in groups.values():
        models = [DeepMLP(runs[i].config, seed=runs[i].seed, dtype=x.dtype, device=x.device) for i in idx]
        base, params, buffers = _stack(models)
        params = {k: v.detach() for k, v in params.items()}  # each (M, ...)
        lr = torch.tensor([runs[i].lr for i in idx], dtype=x.dtype, device=x.device)  # (M,)
        cn = torch.tensor([runs[i].clip_norm or inf for i in idx], dtype=x.dtype, device=x.device)  # (M,)
        cv = torch.tensor([runs[i].clip_value or inf for i in idx], dtype=x.dtype, device=x.device)  # (M,)
        rows = torch.tensor(idx, device=x.device)
        for t in range(steps):
            xb, yb = x[batches[t]], y[batches[t]]  # (b, in_dim), (b,)
            for v in params.values():
                v.requires_grad_()
            loss = _per_model_loss(_vmapped_forward(base, params, buffers, xb), yb)  # (M,)
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            with torch.no_grad():
                grads = [g.clamp(-_bcast(cv, g), _bcast(cv, g)) for g in grads]  # 1. clip by value
                total = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()  # (M,)
                coef = torch.clamp(cn / (total + 1e-6), max=1.0)  # 2. clip by global norm, per run
                params = {k: v - _bcast(lr * coef, g) * g for (k, v), g in zip(params.items(), grads)}  # 3. SGD
                losses[rows, t] = loss.detach()
                norms[rows, t] = total
    bad = ~torch.isfinite(losses)
    bad = bad.cumsum(1) > 0  # once diverged, always diverged
    return losses.masked_fill(bad, float("nan")), norms.masked_fill(bad, float("nan"))


# --- signal propagation in depth: orthogonal weights, residual streams, training diagnostics ---


def orthogonal(
    rows: int,
    cols: int,
    *,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A (semi-)orthogonal weight matrix, drawn as ``torch.nn.init.orthogonal_`` draws it.

    Draw a Gaussian matrix (transposed if it is wide), take its QR
    factorization, and fix the signs of ``Q``'s columns by the signs of
    ``R``'s diagonal so that ``Q`` is uniformly (Haar) distributed; scale by
    ``gain``. Every singular value equals ``gain``. With the same generator
    state the result equals PyTorch's, number for number.

    Parameters
    ----------
    rows, cols : int >= 1
    gain : float > 0
    generator : torch.Generator, optional
    dtype : torch.float32 or torch.float64

    Returns
    -------
    Tensor (rows, cols)
        ``W W^T = gain^2 I`` if ``rows <= cols``, else ``W^T W = gain^2 I``.
    """
    _positive_int("rows", rows)
    _positive_int("cols", cols)
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain: expected a finite number > 0, got {gain!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    flat = torch.empty(rows, cols, dtype=dtype).normal_(0, 1, generator=generator)  # (rows, cols)
    if rows < cols:
        flat = flat.T                                              # QR of a tall matrix
    q, r = torch.linalg.qr(flat)
    q = q * torch.diagonal(r, 0).sign()                            # the sign fix that makes Q Haar-distributed
    if rows < cols:
        q = q.T
    return (q * gain).contiguous()


def input_output_jacobian(weights: Sequence[torch.Tensor], x: torch.Tensor, activation: str = "linear") -> torch.Tensor:
    """Jacobian :math:`\\partial h_D / \\partial h_0` of the bias-free net :math:`h_l = \\phi(W_l h_{l-1})` at one input.

    Built as the product :math:`J = S_D W_D \\cdots S_1 W_1` with
    :math:`S_l = \\operatorname{diag}(\\phi'(z_l))`: the object whose singular
    values *dynamical isometry* asks to be all near 1.

    Parameters
    ----------
    weights : sequence of Tensor (n_l, n_{l-1})
    x : Tensor (n_0,)
    activation : "linear", "tanh" or "relu"

    Returns
    -------
    Tensor (n_D, n_0)
    """
    if activation not in ("linear", "tanh", "relu"):
        raise ValueError(f"activation: expected 'linear', 'tanh' or 'relu', got {activation!r}")
    if not weights:
        raise ValueError("weights: expected at least one matrix")
    if not isinstance(x, torch.Tensor) or x.ndim != 1:
        raise ValueError(f"x: expected a 1-d tensor, got {getattr(x, 'shape', type(x).__name__)}")
    h, J = x, torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
    for l, W in enumerate(weights):
        if not isinstance(W, torch.Tensor) or W.ndim != 2 or W.shape[1] != h.shape[0] or W.dtype != x.dtype:
            raise ValueError(f"weights[{l}]: expected a {x.dtype} matrix with {h.shape[0]} columns, got "
                             f"{getattr(W, 'dtype', type(W).__name__)} {tuple(getattr(W, 'shape', ()))}")
        z = W @ h                                                  # (n_l,)
        if activation == "tanh":
            h = torch.tanh(z)
            slope = 1 - h ** 2
        elif activation == "relu":
            h = torch.relu(z)
            slope = (z > 0).to(z.dtype)
        else:
            h, slope = z, torch.ones_like(z)
        J = (slope[:, None] * W) @ J                               # (n_l, n_0)
    return J


@dataclass(frozen=True)
class ResidualStats:
    """Per-layer signal of :func:`residual_signal` (arrays of length ``depth``).

    Attributes
    ----------
    rms : Tensor (depth,)
        Root mean square of the stream :math:`h_l` (forward scale).
    hidden_grad : Tensor (depth,)
        :math:`\\|\\partial L/\\partial h_l\\|`.
    weight_grad : Tensor (depth,)
        :math:`\\|\\partial L/\\partial W_l\\|`.
    """

    rms: torch.Tensor
    hidden_grad: torch.Tensor
    weight_grad: torch.Tensor


#: The block arrangements :func:`residual_signal` compares.
RESIDUAL_KINDS = ("plain", "pre-norm", "post-norm")


def residual_signal(kind: str, *, depth: int = 48, width: int = 64, batch: int = 64, seed: int = 0) -> ResidualStats:
    """Forward scale and gradients, at initialization, of a deep stack of tanh blocks in three arrangements.

    - ``plain``: :math:`h_l = \\tanh(W_l h_{l-1})`, no skip connection;
    - ``pre-norm``: :math:`h_l = h_{l-1} + \\tanh(W_l\\,\\mathrm{LN}(h_{l-1}))`,
      the normalization inside the branch and the skip path untouched;
    - ``post-norm``: :math:`h_l = \\mathrm{LN}(h_{l-1} + \\tanh(W_l h_{l-1}))`,
      the normalization on the stream after each addition (the original Transformer).

    ``LN`` is layer normalization without a learned scale and shift; the
    weights are :math:`\\mathcal N(0, 1/n)`; the loss is the mean square of a
    random linear read-out of :math:`h_D` (of :math:`\\mathrm{LN}(h_D)` for
    pre-norm, which like a pre-norm Transformer ends with a final
    normalization). float64, plain autograd.
    """
    if kind not in RESIDUAL_KINDS:
        raise ValueError(f"kind: expected one of {RESIDUAL_KINDS}, got {kind!r}")
    for name, v in (("depth", depth), ("width", width), ("batch", batch)):
        _positive_int(name, v)
    g = _generator(seed)
    x = torch.randn(batch, width, generator=g, dtype=torch.float64)                # (B, n)
    Ws = [(torch.randn(width, width, generator=g, dtype=torch.float64) / math.sqrt(width)).requires_grad_()
          for _ in range(depth)]
    readout = torch.randn(width, generator=g, dtype=torch.float64)                 # (n,)
    h, hs = x, []
    for W in Ws:
        if kind == "plain":
            h = torch.tanh(h @ W.T)
        elif kind == "pre-norm":
            h = h + torch.tanh(F.layer_norm(h, (width,)) @ W.T)
        else:
            h = F.layer_norm(h + torch.tanh(h @ W.T), (width,))
        hs.append(h)                                                               # (B, n)
    out = F.layer_norm(h, (width,)) if kind == "pre-norm" else h                   # pre-norm ends with a final LN
    loss = (out @ readout).pow(2).mean()
    grads = torch.autograd.grad(loss, [*hs, *Ws])
    return ResidualStats(
        rms=torch.stack([t.detach().pow(2).mean().sqrt() for t in hs]),
        hidden_grad=torch.stack([gr.norm() for gr in grads[:depth]]),
        weight_grad=torch.stack([gr.norm() for gr in grads[depth:]]),
    )


@dataclass(frozen=True)
class ReluDiagnostics:
    """What :func:`relu_diagnostics` records at every step, for every run (M runs, S steps, D hidden layers).

    Attributes
    ----------
    loss : Tensor (M, S)
        Minibatch cross-entropy before the step (NaN once a run diverged).
    dead : Tensor (M, S, D)
        Fraction of each hidden layer's units that are zero on *every* example
        of the probe set after the step: dead ReLUs, which no gradient reaches.
    update_ratio : Tensor (M, S, D + 1)
        :math:`\\log_{10}(\\mathrm{std}(\\eta\\, \\partial L/\\partial W_l) / \\mathrm{std}(W_l))`
        per weight matrix (the read-out last): the update-to-data ratio.
    lrs, seeds : tuple
        The learning rate and seed of each run.
    """

    loss: torch.Tensor
    dead: torch.Tensor
    update_ratio: torch.Tensor
    lrs: tuple
    seeds: tuple


def relu_diagnostics(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lrs: Sequence[float],
    seeds: Sequence[int] = (0,),
    steps: int = 100,
    width: int = 64,
    depth: int = 4,
    batch_size: int = 64,
    n_probe: int = 256,
) -> ReluDiagnostics:
    """Train ReLU MLPs (He initialization, SGD) for every (learning rate, seed) at once and watch them.

    All runs are stacked along a leading axis and trained together with
    batched matrix products (``torch.baddbmm``); they see the same
    minibatches (drawn with the first seed). The dead fraction is measured
    on the first ``n_probe`` examples of ``x``.

    Parameters
    ----------
    x : Tensor (N, n_in), floating point; y : Tensor (N,), int64
    lrs : sequence of float > 0
    seeds : sequence of int
        Runs are every (lr, seed) pair, lr-major.
    steps, width, depth, batch_size, n_probe : int

    Returns
    -------
    ReluDiagnostics
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point (N, n_in) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(f"y: expected int64 labels of shape ({x.shape[0]},)")
    lrs, seeds = tuple(lrs), tuple(seeds)
    if not lrs or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not (r > 0 and math.isfinite(r)) for r in lrs):
        raise ValueError(f"lrs: expected finite learning rates > 0, got {lrs}")
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    for name, v in (("steps", steps), ("width", width), ("depth", depth), ("batch_size", batch_size), ("n_probe", n_probe)):
        _positive_int(name, v)
    if batch_size > x.shape[0] or n_probe > x.shape[0]:
        raise ValueError(f"batch_size and n_probe: expected at most {x.shape[0]} (the number of examples)")
    n_cls = int(y.max()) + 1
    dims = [x.shape[1]] + [width] * depth + [n_cls]
    runs = [(lr, s) for lr in lrs for s in seeds]
    M, dt, dev = len(runs), x.dtype, x.device
    Ws, bs = [], []
    for i in range(len(dims) - 1):                                        # He initialization, biases zero
        Ws.append(torch.stack([torch.randn(dims[i + 1], dims[i], generator=_generator(1000 * s + i), dtype=torch.float64)
                               * math.sqrt(2.0 / dims[i]) for _, s in runs]).to(dt).to(dev))   # (M, out, in)
        bs.append(torch.zeros(M, 1, dims[i + 1], dtype=dt, device=dev))                       # (M, 1, out)
    lr = torch.tensor([r for r, _ in runs], dtype=dt, device=dev).reshape(M, 1, 1)
    g = _generator(seeds[0])
    probe = x[:n_probe].expand(M, -1, -1)                                 # (M, P, n_in)
    loss_log = torch.full((M, steps), float("nan"), dtype=dt)
    dead_log = torch.full((M, steps, depth), float("nan"), dtype=dt)
    ratio_log = torch.full((M, steps, depth + 1), float("nan"), dtype=dt)

    def forward(h, Ws, bs, keep=False):
        hidden = []
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, W.transpose(1, 2))                     # (M, B, out)
            if i < len(Ws) - 1:
                h = torch.relu(h)
                hidden.append(h)
        return (h, hidden) if keep else h

    for t in range(steps):
        idx = torch.randperm(x.shape[0], generator=g)[:batch_size].to(dev)
        xb, yb = x[idx].expand(M, -1, -1), y[idx]                         # (M, B, n_in), (B,)
        params = [p.requires_grad_() for p in (*Ws, *bs)]
        logits = forward(xb, params[: len(Ws)], params[len(Ws):])         # (M, B, K)
        per_run = F.cross_entropy(logits.reshape(-1, n_cls), yb.repeat(M), reduction="none").reshape(M, -1).mean(1)
        grads = torch.autograd.grad(per_run.sum(), params)                # each run's own gradient
        with torch.no_grad():
            loss_log[:, t] = per_run.detach().cpu()
            ratio_log[:, t] = torch.stack([(lr * gW).flatten(1).std(1) / W.flatten(1).std(1)
                                           for W, gW in zip(Ws, grads[: len(Ws)])], 1).log10().cpu()
            Ws = [(W - lr * gW).detach() for W, gW in zip(Ws, grads[: len(Ws)])]
            bs = [(b - lr * gb).detach() for b, gb in zip(bs, grads[len(Ws):])]
            _, hidden = forward(probe, Ws, bs, keep=True)
            dead_log[:, t] = torch.stack([(h.amax(1) <= 0).to(dt).mean(1) for h in hidden], 1).cpu()
    bad = (~torch.isfinite(loss_log)).cumsum(1) > 0                       # once diverged, always diverged
    loss_log = loss_log.masked_fill(bad, float("nan"))
    dead_log = dead_log.masked_fill(bad[..., None], float("nan"))
    ratio_log = ratio_log.masked_fill(bad[..., None], float("nan"))
    return ReluDiagnostics(loss_log, dead_log, ratio_log, tuple(r for r, _ in runs), tuple(s for _, s in runs))


def normalized_runs(
    runs: Sequence[Run],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 200,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`train_runs` for plain (non-residual) networks with batch *or* layer normalization, all in one batch.

    :func:`train_runs` trains runs of one shape together, so batch- and
    layer-normalized networks form two groups with the cost of two. Here every
    run's parameters are stacked along a leading axis, the layers are written
    out with batched matrix products, and each run normalizes its
    pre-activations over the batch (``norm="batch"``, biased variance, as
    ``nn.BatchNorm1d`` in training mode) or over the units (``norm="layer"``,
    as ``nn.LayerNorm``), then applies its learned scale and shift. Same
    initial weights (built by :class:`DeepMLP`), same minibatches, same SGD
    step and same outputs as :func:`train_runs` (the tests compare them).

    Parameters
    ----------
    runs : sequence of Run
        Each with ``norm`` "batch" or "layer", ``residual=False``, no clipping, and one shared shape otherwise.
    x, y, steps, batch_size, seed : as in :func:`train_runs`

    Returns
    -------
    losses, grad_norms : Tensor (R, steps)
    """
    if not runs:
        raise ValueError("runs: expected at least one Run")
    for i, r in enumerate(runs):
        if not isinstance(r, Run):
            raise TypeError(f"runs[{i}]: expected a Run, got {type(r).__name__}")
        c = r.config
        if c.norm not in ("batch", "layer") or c.residual or r.clip_norm is not None or r.clip_value is not None:
            raise ValueError(f"runs[{i}]: expected norm 'batch' or 'layer', no residual connections and no clipping, got {r}")
        shape = replace(c, norm="batch", init="xavier").__dict__
        if shape != replace(runs[0].config, norm="batch", init="xavier").__dict__:
            raise ValueError(f"runs[{i}]: every run must share runs[0]'s depth, width, activation and sizes")
    _check_batch(x, y, runs[0].config.in_dim)
    _positive_int("steps", steps)
    _positive_int("batch_size", batch_size)
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size: expected <= {x.shape[0]} (the number of examples), got {batch_size}")
    g = _generator(seed)
    batches = torch.stack([torch.randperm(x.shape[0], generator=g)[:batch_size] for _ in range(steps)]).to(x.device)
    models = [DeepMLP(r.config, seed=r.seed, dtype=x.dtype, device=x.device) for r in runs]
    depth, act = runs[0].config.depth, ACTIVATIONS[runs[0].config.activation]
    stack = lambda get: torch.stack([get(m).detach() for m in models])  # noqa: E731  (M, ...)
    params = []
    for l in range(depth):
        params += [stack(lambda m: m.hidden[l].weight), stack(lambda m: m.hidden[l].bias)[:, None],
                   stack(lambda m: m.norms[l].weight)[:, None], stack(lambda m: m.norms[l].bias)[:, None]]
    params += [stack(lambda m: m.readout.weight), stack(lambda m: m.readout.bias)[:, None]]
    M = len(runs)
    is_batch = torch.tensor([r.config.norm == "batch" for r in runs], device=x.device).reshape(M, 1, 1)
    lr = torch.tensor([r.lr for r in runs], dtype=x.dtype, device=x.device).reshape(M, 1, 1)
    losses = torch.full((M, steps), float("nan"), dtype=x.dtype, device=x.device)
    norms = torch.full_like(losses, float("nan"))

    def normalize(z, dim):
        mu = z.mean(dim, keepdim=True)
        var = (z - mu).pow(2).mean(dim, keepdim=True)                   # biased, as both torch modules use
        return (z - mu) / torch.sqrt(var + 1e-5)

    for t in range(steps):
        xb, yb = x[batches[t]], y[batches[t]]
        params = [p.requires_grad_() for p in params]
        h = xb.expand(M, -1, -1)                                        # (M, B, in_dim)
        for l in range(depth):
            W, b, w_n, b_n = params[4 * l: 4 * l + 4]
            z = torch.baddbmm(b, h, W.transpose(1, 2))                  # (M, B, width)
            z = torch.where(is_batch, normalize(z, 1), normalize(z, 2)) * w_n + b_n
            h = act(z)
        logits = torch.baddbmm(params[-1], h, params[-2].transpose(1, 2))   # (M, B, out_dim)
        loss = _per_model_loss(logits, yb)                              # (M,)
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            total = torch.stack([gr.pow(2).flatten(1).sum(1) for gr in grads]).sum(0).sqrt()   # (M,)
            params = [(p - _bcast(lr.flatten(), gr) * gr).detach() for p, gr in zip(params, grads)]
            losses[:, t] = loss.detach()
            norms[:, t] = total
    bad = (~torch.isfinite(losses)).cumsum(1) > 0
    return losses.masked_fill(bad, float("nan")), norms.masked_fill(bad, float("nan"))
