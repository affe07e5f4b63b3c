"""Backpropagation from scratch: a scalar autograd engine, the matrix form for an MLP, gradient checking.

Three layers of the same idea, each checked against ``torch.autograd``:

- :class:`Value`, a scalar that remembers how it was computed. Each operation
  builds its output and, right beside it, a closure ``_backward`` that adds
  *local derivative x output gradient* into its inputs;
  :meth:`Value.backward` runs those closures in reverse topological order.
  The whole engine fits on one screen (in the spirit of Karpathy's micrograd).
- :class:`MLP` with :func:`mlp_forward` / :func:`mlp_backward`: the same
  rules written for whole layers, where :math:`\\partial L/\\partial W = \\delta^\\top H`
  (one outer product :math:`\\delta x^\\top` per example, summed over the batch).
  The forward pass returns an explicit cache: what the backward pass needs
  is exactly what must be kept in memory. :func:`mlp_grads_checkpointed`
  keeps only every k-th layer's input and recomputes the rest.
- :func:`numerical_gradient` and :func:`gradcheck`: central differences and
  the relative error between a claimed gradient and the numerical one.

:func:`mlp_jvp` is forward mode for the same network, and :func:`gradient_costs`
times finite differences, forward mode and reverse mode side by side.
:func:`softmax_cross_entropy`, :func:`batchnorm_forward` / :func:`batchnorm_backward`
and :func:`rnn_forward` / :func:`rnn_bptt` are backward passes derived by hand
(backprop through time for the last), and :func:`hvp` a Hessian-vector product
by double backward.

See Chapter 5 (Backpropagation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import _checks, backend

__all__ = [
    "Value",
    "topological_order",
    "backward_trace",
    "BackwardStep",
    "graph_layout",
    "GraphLayout",
    "MLP",
    "init_mlp",
    "mlp_forward",
    "mlp_backward",
    "mse",
    "mlp_loss_and_grads",
    "mlp_grads_checkpointed",
    "MemoryStats",
    "cache_nbytes",
    "mlp_jvp",
    "numerical_gradient",
    "gradcheck",
    "GradcheckResult",
    "gradient_costs",
    "central_difference_probe",
    "GradientCosts",
    "saved_tensor_bytes",
    "ACTIVATIONS",
    "softmax_cross_entropy",
    "batchnorm_forward",
    "batchnorm_backward",
    "hvp",
    "rnn_forward",
    "rnn_bptt",
]


# =============================================================================
# 1. A scalar reverse-mode engine
# =============================================================================

def _noop() -> None:
    return None


def _as_value(x: "Value | float", name: str) -> "Value":
    if isinstance(x, Value):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name}: expected a Value or a real number, got {type(x).__name__}")
    return Value(x)


def _divisor(d: "Value") -> "Value":
    if d.data == 0:
        raise ZeroDivisionError("other: division by zero (the divisor's value is 0)")
    return d


class Value:
    """A scalar that remembers how it was computed, for reverse-mode differentiation.

    Parameters
    ----------
    data : int or float
        The number (finite).
    label : str
        A name for drawings and ``repr``.

    Attributes
    ----------
    grad : float
        :math:`\\partial L/\\partial\\,\\mathrm{self}` after ``L.backward()``.

    Raises
    ------
    TypeError
        If ``data`` is not a real number (``bool``, ``str``, tensors are refused).
    ValueError
        If ``data`` is not finite, or an operation leaves its domain (``log`` of
        a number <= 0, ``0 ** -1``) or overflows float64.

    Example
    -------
    >>> x = Value(2.0, "x")
    >>> y = x * x + x
    >>> y.backward()
    >>> x.grad          # dy/dx = 2x + 1, summed over the two paths through x
    5.0

    Notes
    -----
    See Chapter 5.
    """

    __slots__ = ("data", "grad", "label", "_prev", "_op", "_backward")

    def __init__(self, data: float, label: str = "", *, _children: tuple = (), _op: str = "") -> None:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"data: expected a real number (int or float), got {type(data).__name__}")
        if not math.isfinite(data):
            raise ValueError(f"data: expected a finite number, got {data}" + (f" from {_op!r}" if _op else ""))
        self.data, self.grad, self.label = float(data), 0.0, str(label)
        self._prev, self._op, self._backward = _children, _op, _noop

    def __repr__(self) -> str:
        extra = (f", op={self._op!r}" if self._op else "") + (f", label={self.label!r}" if self.label else "")
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g}{extra})"

    # -- primitives: output, then the rule that sends out.grad back to the inputs --------
    def __add__(self, other):
        other = _as_value(other, "other")
        out = Value(self.data + other.data, _children=(self, other), _op="+")
        def _backward():
            self.grad += out.grad                    # d(a+b)/da = 1
            other.grad += out.grad                   # d(a+b)/db = 1
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = _as_value(other, "other")
        out = Value(self.data * other.data, _children=(self, other), _op="*")
        def _backward():
            self.grad += other.data * out.grad       # d(ab)/da = b
            other.grad += self.data * out.grad       # d(ab)/db = a
        out._backward = _backward
        return out

    def __pow__(self, k):
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
            raise TypeError(f"exponent: expected a finite int or float (not a Value), got {k!r}")
        if self.data == 0 and k < 1 and k != 0:
            raise ValueError(f"pow: x ** {k} has no finite derivative at x = 0")
        if self.data < 0 and k != int(k):
            raise ValueError(f"pow: x ** {k} is not real for x = {self.data} < 0")
        try:
            data, local = self.data ** k, (k * self.data ** (k - 1) if k != 0 else 0.0)
        except OverflowError:
            raise ValueError(f"pow: {self.data} ** {k} overflows float64") from None
        out = Value(data, _children=(self,), _op=f"**{k:g}")
        def _backward():
            self.grad += local * out.grad            # d(x^k)/dx = k x^(k-1)
        out._backward = _backward
        return out

    def exp(self):
        if self.data > 709.78:
            raise ValueError(f"exp: exp({self.data}) overflows float64 (data must be <= 709.78)")
        out = Value(math.exp(self.data), _children=(self,), _op="exp")
        def _backward():
            self.grad += out.data * out.grad         # d(e^x)/dx = e^x
        out._backward = _backward
        return out

    def log(self):
        if self.data <= 0:
            raise ValueError(f"log: expected data > 0, got {self.data}")
        out = Value(math.log(self.data), _children=(self,), _op="log")
        def _backward():
            self.grad += out.grad / self.data        # d(log x)/dx = 1/x
        out._backward = _backward
        return out

    def tanh(self):
        out = Value(math.tanh(self.data), _children=(self,), _op="tanh")
        def _backward():
            self.grad += (1.0 - out.data ** 2) * out.grad   # d tanh/dx = 1 - tanh^2
        out._backward = _backward
        return out

    def relu(self):
        out = Value(self.data if self.data > 0 else 0.0, _children=(self,), _op="relu")
        def _backward():
            self.grad += (self.data > 0) * out.grad  # 1 for x > 0, else 0 (0 at the kink, as PyTorch)
        out._backward = _backward
        return out

    def sigmoid(self):
        e = math.exp(-abs(self.data))                # never overflows
        s = 1.0 / (1.0 + e) if self.data >= 0 else e / (1.0 + e)
        out = Value(s, _children=(self,), _op="sigmoid")
        def _backward():
            self.grad += s * (1.0 - s) * out.grad    # d sigma/dx = sigma (1 - sigma)
        out._backward = _backward
        return out

    # -- built from the primitives ------------------------------------------------------
    def __neg__(self):              return self * -1.0
    def __sub__(self, other):       return self + (-_as_value(other, "other"))
    def __truediv__(self, other):   return self * _divisor(_as_value(other, "other")) ** -1
    def __radd__(self, other):      return self + other
    def __rmul__(self, other):      return self * other
    def __rsub__(self, other):      return _as_value(other, "other") - self
    def __rtruediv__(self, other):  return _as_value(other, "other") / self

    # -- reverse mode -----------------------------------------------------------------
    def backward(self) -> None:
        """Fill ``.grad`` of every node this one depends on with d(self)/d(node).

        Gradients are set afresh (every node's ``grad`` is reset first), unlike
        PyTorch, which accumulates into leaves across calls.
        """
        order = topological_order(self)
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):                 # every node after all the nodes that use it
            node._backward()


def topological_order(root: Value) -> list[Value]:
    """Every node ``root`` depends on, each after all of its inputs (``root`` last).

    Iterative depth-first search, so very deep graphs do not hit Python's
    recursion limit.
    """
    if not isinstance(root, Value):
        raise TypeError(f"root: expected a Value, got {type(root).__name__}")
    order: list[Value] = []
    seen: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(node._prev) if id(c) not in seen)
    return order


@dataclass(frozen=True)
class BackwardStep:
    """One step of a traced backward pass.

    Attributes
    ----------
    node : int or None
        Index (in topological order) of the node whose rule ran; ``None`` for
        the seed step that sets ``root.grad = 1``.
    grads : tuple of float
        Every node's ``grad`` after the step.
    received : tuple of int
        Indices of the nodes whose ``grad`` this step changed.
    """

    node: int | None
    grads: tuple[float, ...]
    received: tuple[int, ...]


def backward_trace(root: Value) -> tuple[list[Value], list[BackwardStep]]:
    """Run ``root.backward()`` one rule at a time and record every gradient after each step.

    Returns
    -------
    order : list of Value
        Nodes in topological order (the indices used by the steps).
    steps : list of BackwardStep
        The seed step, then one step per non-leaf node in reverse topological order.
        Afterwards every ``grad`` equals what ``root.backward()`` gives.
    """
    order = topological_order(root)
    index = {id(v): i for i, v in enumerate(order)}
    for v in order:
        v.grad = 0.0
    root.grad = 1.0
    steps = [BackwardStep(None, tuple(v.grad for v in order), (len(order) - 1,))]
    for v in reversed(order):
        if not v._prev:
            continue
        before = [u.grad for u in order]
        v._backward()
        after = tuple(u.grad for u in order)
        touched = tuple(sorted({index[id(c)] for c in v._prev}))
        assert all(a == b for i, (a, b) in enumerate(zip(before, after)) if i not in touched)
        steps.append(BackwardStep(index[id(v)], after, touched))
    return order, steps


@dataclass(frozen=True)
class GraphLayout:
    """Where to draw each node of a computational graph.

    Attributes
    ----------
    nodes : list of Value
        In topological order.
    xy : list of (float, float)
        Position of each node: x is the depth (inputs left, output right).
    edges : list of (int, int)
        ``(input, output)`` index pairs, one per use of a node.
    """

    nodes: list[Value]
    xy: list[tuple[float, float]]
    edges: list[tuple[int, int]]


def graph_layout(root: Value) -> GraphLayout:
    """Lay out the graph of ``root`` in columns by depth, for drawing without Graphviz.

    Non-leaf nodes sit one column right of their deepest input; leaves sit one
    column left of their first user. Within a column, nodes are ordered by the
    mean height of their users and spread evenly.
    """
    order = topological_order(root)
    index = {id(v): i for i, v in enumerate(order)}
    n = len(order)
    depth = [0] * n
    for i, v in enumerate(order):
        if v._prev:
            depth[i] = 1 + max(depth[index[id(c)]] for c in v._prev)
    users: list[list[int]] = [[] for _ in range(n)]
    edges = []
    for i, v in enumerate(order):
        for c in v._prev:
            users[index[id(c)]].append(i)
            edges.append((index[id(c)], i))
    for i, v in enumerate(order):
        if not v._prev and users[i]:
            depth[i] = min(depth[u] for u in users[i]) - 1
    y = [0.0] * n
    for d in sorted(set(depth), reverse=True):
        col = [i for i in range(n) if depth[i] == d]
        key = {i: (sum(y[u] for u in users[i]) / len(users[i]) if users[i] else 0.0, i) for i in col}
        col.sort(key=lambda i: key[i])
        for rank, i in enumerate(col):
            y[i] = (len(col) - 1) / 2 - rank
        # keep columns with one node at the height of its users
        if len(col) == 1 and users[col[0]]:
            y[col[0]] = key[col[0]][0]
    return GraphLayout(order, [(float(depth[i]), float(y[i])) for i in range(n)], edges)


# =============================================================================
# 2. The matrix form: an MLP, forward with a cache, backward with deltas
# =============================================================================

#: activation name -> (phi(z), phi' written in terms of the output h = phi(z)),
#: so the backward pass needs only the outputs it kept: tanh' = 1 - h^2,
#: sigmoid' = h (1 - h), relu' = [h > 0] (h > 0 exactly when z > 0).
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (torch.tanh, lambda h: 1 - h * h),
    "relu": (torch.relu, lambda h: (h > 0).to(h.dtype)),
    "sigmoid": (torch.sigmoid, lambda h: h * (1 - h)),
}


@dataclass
class MLP:
    """Weights of a fully connected network: hidden layers use ``activation``, the last is linear.

    Layer ``l`` maps ``h`` (B, n_{l-1}) to ``z = h @ W_l.T + b_l`` (B, n_l).

    Parameters
    ----------
    weights : list of Tensor
        ``W_l`` of shape (n_l, n_{l-1}).
    biases : list of Tensor
        ``b_l`` of shape (n_l,).
    activation : {"tanh", "relu", "sigmoid"}

    Raises
    ------
    ValueError, TypeError
        If shapes do not chain, dtypes or devices differ, or the activation is unknown.
    """

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    activation: str = "tanh"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError(f"weights, biases: expected equal non-zero counts, got {len(self.weights)} and {len(self.biases)}")
        ref = self.weights[0]
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            for name, t in ((f"weights[{l}]", W), (f"biases[{l}]", b)):
                if not isinstance(t, torch.Tensor):
                    raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
                if not t.is_floating_point() or t.dtype != ref.dtype or t.device != ref.device:
                    raise TypeError(f"{name}: expected a floating tensor of dtype {ref.dtype} on {ref.device}, got {t.dtype} on {t.device}")
            if W.ndim != 2 or b.shape != (W.shape[0],):
                raise ValueError(f"layer {l}: expected W (n_out, n_in) and b (n_out,), got {tuple(W.shape)} and {tuple(b.shape)}")
            if l > 0 and W.shape[1] != self.weights[l - 1].shape[0]:
                raise ValueError(f"weights[{l}]: expected {self.weights[l - 1].shape[0]} input columns, got {W.shape[1]}")

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[1]] + [W.shape[0] for W in self.weights]

    @property
    def n_params(self) -> int:
        return sum(W.numel() + b.numel() for W, b in zip(self.weights, self.biases))

    def parameters(self) -> list[torch.Tensor]:
        """``[W_1, b_1, W_2, b_2, ...]``."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def flat(self) -> torch.Tensor:
        """All parameters as one vector (n_params,), in the order of :meth:`parameters`."""
        return torch.cat([t.reshape(-1) for t in self.parameters()])

    def with_flat(self, theta: torch.Tensor) -> "MLP":
        """A network of the same shape whose parameters are views into ``theta`` (n_params,)."""
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta: expected shape ({self.n_params},), got {tuple(theta.shape)}")
        ws, bs, k = [], [], 0
        for W, b in zip(self.weights, self.biases):
            ws.append(theta[k:k + W.numel()].view(W.shape)); k += W.numel()
            bs.append(theta[k:k + b.numel()].view(b.shape)); k += b.numel()
        return MLP(ws, bs, self.activation)

    def __repr__(self) -> str:
        arch = " -> ".join(map(str, self.sizes))
        return f"MLP({arch}, {self.activation}, {self.n_params} parameters, {self.weights[0].dtype})"


def init_mlp(sizes: Sequence[int], *, activation: str = "tanh", seed: int = 0,
             dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> MLP:
    """Random MLP with ``W ~ N(0, 1/n_in)`` and zero biases.

    Parameters
    ----------
    sizes : sequence of int
        ``[n_in, n_1, ..., n_out]``, at least two positive sizes.
    activation : {"tanh", "relu", "sigmoid"}
    seed : int
    dtype, device
        Of the parameters (default float64 on CPU).

    Example
    -------
    >>> init_mlp([2, 16, 1])
    MLP(2 -> 16 -> 1, tanh, 65 parameters, torch.float64)
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"sizes: expected at least two positive ints, got {sizes!r}")
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(o, i, generator=g, dtype=dtype) / math.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [torch.zeros(o, dtype=dtype) for o in sizes[1:]]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return MLP([w.to(dev) for w in ws], [b.to(dev) for b in bs], activation)


def _check_input(net: MLP, x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    W = net.weights[0]
    if x.ndim != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(f"{name}: expected shape (B, {W.shape[1]}), got {tuple(x.shape)}")
    if x.dtype != W.dtype or x.device != W.device:
        raise TypeError(f"{name}: expected dtype {W.dtype} on {W.device} like the weights, got {x.dtype} on {x.device}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values")


def mlp_forward(net: MLP, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Forward pass that keeps what the backward pass will need.

    Parameters
    ----------
    net : MLP
    x : Tensor (B, n_in)

    Returns
    -------
    y : Tensor (B, n_out)
        Output of the last (linear) layer.
    cache : list of (h_in, h_out)
        Per layer, its input (B, n_{l-1}) and its output after the activation
        (B, n_l) (for the last layer, ``z`` itself). This is the memory backprop costs.
    """
    _check_input(net, x)
    phi, _ = ACTIVATIONS[net.activation]
    cache = []
    h = x                                                # (B, n_0)
    last = len(net.weights) - 1
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = h @ W.T + b                                  # (B, n_l)
        out = z if l == last else phi(z)                 # (B, n_l)
        cache.append((h, out))
        h = out
    return h, cache


def mlp_backward(net: MLP, cache: list[tuple[torch.Tensor, torch.Tensor]], grad_y: torch.Tensor
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Backward pass: from dL/dy to the gradient of every weight, bias and the input.

    With :math:`\\delta_l = \\partial L/\\partial z_l` (B, n_l):
    :math:`\\partial L/\\partial W_l = \\delta_l^\\top h_{l-1}` (a sum of outer
    products :math:`\\delta x^\\top` over the batch), :math:`\\partial L/\\partial b_l
    = \\sum_b \\delta_l`, and :math:`\\delta_{l-1} = (\\delta_l W_l) \\odot \\phi'(z_{l-1})`.

    Parameters
    ----------
    net : MLP
    cache : from :func:`mlp_forward`
    grad_y : Tensor (B, n_out)
        dL/dy.

    Returns
    -------
    dW : list of Tensor, shapes of the weights
    db : list of Tensor, shapes of the biases
    dx : Tensor (B, n_in)
    """
    if len(cache) != len(net.weights):
        raise ValueError(f"cache: expected {len(net.weights)} layers, got {len(cache)}")
    y = cache[-1][1]
    if not isinstance(grad_y, torch.Tensor) or grad_y.shape != y.shape or grad_y.dtype != y.dtype:
        raise ValueError(f"grad_y: expected a {y.dtype} tensor of shape {tuple(y.shape)}, got "
                         f"{getattr(grad_y, 'dtype', type(grad_y).__name__)} {tuple(getattr(grad_y, 'shape', ()))}")
    _, dphi = ACTIVATIONS[net.activation]
    L = len(net.weights)
    dW: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    db: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    delta = grad_y                                       # (B, n_L) = dL/dz_L: the last layer is linear
    for l in range(L - 1, -1, -1):
        h_in, _ = cache[l]                               # (B, n_{l-1}) = phi(z_{l-1})
        dW[l] = delta.T @ h_in                           # (n_l, n_{l-1}) = sum over b of delta_b h_b^T
        db[l] = delta.sum(0)                             # (n_l,)
        dh = delta @ net.weights[l]                      # (B, n_{l-1}) = dL/dh_{l-1}
        if l > 0:
            delta = dh * dphi(h_in)                      # (B, n_{l-1}) = dL/dz_{l-1}
    return dW, db, dh


def mse(y: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error over every element, and its gradient in ``y``.

    Returns
    -------
    loss : Tensor ()
        ``mean((y - target)^2)``.
    grad_y : Tensor, shape of ``y``
        ``2 (y - target) / y.numel()``.
    """
    if not isinstance(target, torch.Tensor) or target.shape != y.shape or target.dtype != y.dtype:
        raise ValueError(f"target: expected a {y.dtype} tensor of shape {tuple(y.shape)}, got "
                         f"{getattr(target, 'dtype', type(target).__name__)} {tuple(getattr(target, 'shape', ()))}")
    r = y - target                                       # (B, n_out)
    return (r * r).mean(), 2 * r / r.numel()


def mlp_loss_and_grads(net: MLP, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """MSE loss of ``net`` on ``(x, target)`` and its gradients ``(loss, dW, db)``: forward, then backward."""
    y, cache = mlp_forward(net, x)
    loss, gy = mse(y, target)
    dW, db, _ = mlp_backward(net, cache, gy)
    return loss, dW, db


def cache_nbytes(cache) -> int:
    """Bytes held by the distinct tensors in a cache (a tensor stored twice counts once)."""
    seen, total = set(), 0
    for pair in cache:
        for t in pair:
            key = (t.data_ptr(), t.numel())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


@dataclass(frozen=True)
class MemoryStats:
    """What a forward+backward pass kept and recomputed.

    Attributes
    ----------
    peak_bytes : int
        Most bytes of activations held at once (the input ``x`` included).
    layer_evals : int
        Layer forward evaluations (``L`` without checkpointing, up to ``2L`` with it).
    """

    peak_bytes: int
    layer_evals: int


def mlp_grads_checkpointed(net: MLP, x: torch.Tensor, target: torch.Tensor, *, every: int
                           ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], MemoryStats]:
    """Gradients of the MSE loss while keeping only every ``every``-th layer's input.

    The forward pass stores the input of each segment of ``every`` layers and
    drops everything else. The backward pass walks the segments from last to
    first: it recomputes one segment's cache from its stored input, backprops
    through it, and frees it. With ``every`` about :math:`\\sqrt{L}` the memory
    is :math:`O(\\sqrt{L})` layers instead of :math:`O(L)`, for one extra forward pass.

    Parameters
    ----------
    net : MLP
    x : Tensor (B, n_in)
    target : Tensor (B, n_out)
    every : int
        Layers per segment (>= 1); ``every >= L`` keeps a single segment.

    Returns
    -------
    loss, dW, db
        As :func:`mlp_loss_and_grads` (the same numbers).
    stats : MemoryStats
        Measured peak bytes held and layer evaluations.
    """
    every = _checks.count("every", every)
    _check_input(net, x)
    phi, dphi = ACTIVATIONS[net.activation]
    L = len(net.weights)
    starts = list(range(0, L, every))

    def segment(h: torch.Tensor, lo: int, hi: int, keep: bool):
        cache = []
        for l in range(lo, hi):
            z = h @ net.weights[l].T + net.biases[l]     # (B, n_l)
            out = z if l == L - 1 else phi(z)
            if keep:
                cache.append((h, out))
            h = out
        return h, cache

    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    # forward: keep only segment inputs
    held, peak, evals = 0, 0, 0
    boundaries = []
    h = x
    for s in starts:
        boundaries.append(h)
        held += nbytes(h)
        h, _ = segment(h, s, min(s + every, L), keep=False)
        evals += min(s + every, L) - s
        peak = max(peak, held + nbytes(h))              # the running activation is held too
    y = h
    loss, delta = mse(y, target)
    dW: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    db: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    for k in range(len(starts) - 1, -1, -1):
        lo, hi = starts[k], min(starts[k] + every, L)
        _, cache = segment(boundaries[k], lo, hi, keep=True)
        evals += hi - lo
        peak = max(peak, held + cache_nbytes(cache) - nbytes(boundaries[k]))
        if hi < L:  # this segment ends in an activation: turn dL/dh into dL/dz
            delta = delta * dphi(cache[-1][1])
        sub = MLP(net.weights[lo:hi], net.biases[lo:hi], net.activation)
        dW[lo:hi], db[lo:hi], delta = mlp_backward(sub, cache, delta)
        held -= nbytes(boundaries[k])
        boundaries[k] = None  # type: ignore[call-overload]
    return loss, dW, db, MemoryStats(int(peak), int(evals))


def mlp_jvp(net: MLP, x: torch.Tensor, target: torch.Tensor, tangent: MLP) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward mode: the loss and its directional derivative along ``tangent``, in one pass.

    Carries ``(h, dh)`` forward: ``dz = dh W^T + h dW^T + db`` and
    ``dh' = phi'(z) * dz``. One call gives one number
    :math:`\\nabla L \\cdot v`; the full gradient needs one call per parameter.

    Parameters
    ----------
    net : MLP
    x : Tensor (B, n_in)
    target : Tensor (B, n_out)
    tangent : MLP
        Same shapes as ``net``: the direction ``v`` in parameter space.

    Returns
    -------
    loss : Tensor ()
    dloss : Tensor ()
        :math:`\\sum_p (\\partial L/\\partial p)\\, v_p`.
    """
    _check_input(net, x)
    if tangent.sizes != net.sizes:
        raise ValueError(f"tangent: expected sizes {net.sizes}, got {tangent.sizes}")
    phi, dphi = ACTIVATIONS[net.activation]
    L = len(net.weights)
    h, dh = x, torch.zeros_like(x)                       # (B, n_0)
    for l in range(L):
        W, b, dW, db = net.weights[l], net.biases[l], tangent.weights[l], tangent.biases[l]
        z = h @ W.T + b                                  # (B, n_l)
        dz = dh @ W.T + h @ dW.T + db                    # (B, n_l)
        if l == L - 1:
            h, dh = z, dz
        else:
            h = phi(z)                                   # (B, n_l)
            dh = dphi(h) * dz                            # (B, n_l)
    loss, gy = mse(h, target)
    return loss, (gy * dh).sum()


# =============================================================================
# 3. Gradient checking with central differences
# =============================================================================

def _check_fn_input(x: torch.Tensor, eps: float) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x: expected float32 or float64, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x: expected finite values")
    eps = _checks.positive("eps", eps)


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Central differences :math:`(f(x + h e_i) - f(x - h e_i)) / (2h)`, one coordinate at a time.

    Costs ``2 * x.numel()`` evaluations of ``f``. The step actually taken is
    the difference of the two stored (rounded) points, not ``2 * eps``.

    Parameters
    ----------
    f : callable
        Maps a tensor shaped like ``x`` to a scalar (tensor or float).
    x : Tensor, float32 or float64, any shape
    eps : float
        Step ``h`` (> 0).

    Returns
    -------
    Tensor, shape and dtype of ``x``

    Raises
    ------
    ValueError
        If ``f`` does not return a finite scalar.
    """
    _check_fn_input(x, eps)
    xs = x.detach().clone()
    flat = xs.view(-1)
    g = torch.empty(flat.numel(), dtype=torch.float64)

    def value(v: torch.Tensor) -> float:
        out = f(v)
        if isinstance(out, torch.Tensor):
            if out.numel() != 1:
                raise ValueError(f"f: expected a scalar output, got shape {tuple(out.shape)}")
            out = out.item()
        out = float(out)
        if not math.isfinite(out):
            raise ValueError(f"f: returned a non-finite value {out}")
        return out

    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        xp = flat[i].item()
        fp = value(xs)
        flat[i] = old - eps
        xm = flat[i].item()
        fm = value(xs)
        flat[i] = old
        if xp == xm:
            raise ValueError(f"eps: step {eps} is lost to rounding at x = {old} in {x.dtype}")
        g[i] = (fp - fm) / (xp - xm)
    return g.to(x.dtype).view(x.shape)


@dataclass(frozen=True)
class GradcheckResult:
    """Outcome of :func:`gradcheck`.

    Attributes
    ----------
    passed : bool
        ``rel_error <= tol``.
    rel_error : float
        :math:`\\|g - \\hat g\\| / (\\|g\\| + \\|\\hat g\\|)` (0 when both are zero).
    worst : int
        Flat index of the coordinate with the largest relative disagreement.
    eps, tol : float
    numerical, analytic : Tensor
    """

    passed: bool
    rel_error: float
    worst: int
    eps: float
    tol: float
    numerical: torch.Tensor = field(repr=False)
    analytic: torch.Tensor = field(repr=False)

    def __repr__(self) -> str:
        return (f"GradcheckResult(passed={self.passed}, rel_error={self.rel_error:.2e}, tol={self.tol:.0e}, "
                f"eps={self.eps:.1e}, worst coordinate {self.worst} of {self.analytic.numel()})")


_DEFAULT_TOL = {torch.float64: 1e-6, torch.float32: 1e-2}


def gradcheck(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad: torch.Tensor, *,
              eps: float | None = None, tol: float | None = None) -> GradcheckResult:
    """Compare a claimed gradient with central differences.

    Parameters
    ----------
    f : callable
        Maps a tensor shaped like ``x`` to a scalar.
    x : Tensor, float32 or float64
        Where to check.
    grad : Tensor, shape of ``x``
        The gradient to check (from backprop).
    eps : float, optional
        Step; default :math:`\\epsilon_{mach}^{1/3} \\max(1, \\|x\\|_\\infty)`,
        which balances truncation error :math:`O(h^2)` against rounding :math:`O(\\epsilon_{mach}/h)`.
    tol : float, optional
        Pass threshold on the relative error; default 1e-6 in float64, 1e-2 in float32.

    Returns
    -------
    GradcheckResult

    Raises
    ------
    TypeError, ValueError
        On a non-float ``x``, a ``grad`` of another shape, non-finite values or a bad ``eps``/``tol``.

    Example
    -------
    >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    >>> gradcheck(lambda v: (v ** 3).sum(), x, 3 * x ** 2).passed
    True
    """
    if eps is None:
        eps = torch.finfo(x.dtype).eps ** (1 / 3) * max(1.0, float(x.abs().max())) if isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() else 1e-6
    _check_fn_input(x, eps)
    if not isinstance(grad, torch.Tensor) or grad.shape != x.shape:
        raise ValueError(f"grad: expected a tensor of shape {tuple(x.shape)}, got {tuple(getattr(grad, 'shape', ())) or type(grad).__name__}")
    if not torch.isfinite(grad).all():
        raise ValueError("grad: expected finite values")
    tol = _DEFAULT_TOL[x.dtype] if tol is None else tol
    tol = _checks.positive("tol", tol)
    num = numerical_gradient(f, x, eps=eps).to(torch.float64).reshape(-1)
    ana = grad.detach().to(torch.float64).reshape(-1).cpu()
    num = num.cpu()
    denom = float(ana.norm() + num.norm())
    rel = float((ana - num).norm()) / denom if denom > 0 else 0.0
    each = (ana - num).abs() / (ana.abs() + num.abs()).clamp_min(torch.finfo(torch.float64).tiny)
    return GradcheckResult(rel <= tol, rel, int(each.argmax()) if each.numel() else 0, float(eps), float(tol),
                           num.view(x.shape), ana.view(x.shape))


# =============================================================================
# 4. What gradients cost, measured
# =============================================================================

@dataclass(frozen=True)
class GradientCosts:
    """Seconds to get the full gradient of a scalar loss, by method, for networks of growing size.

    Attributes
    ----------
    n_params : list of int
    forward_s : list of float
        One forward pass (loss only).
    reverse_s : list of float
        One forward and one backward pass (:func:`mlp_loss_and_grads`).
    forward_mode_s : list of float
        ``n_params`` forward-mode passes (:func:`mlp_jvp`), one per basis direction.
    finite_diff_s : list of float
        ``2 n_params`` forward passes (central differences).
    device : str
    """

    n_params: list[int]
    forward_s: list[float]
    reverse_s: list[float]
    forward_mode_s: list[float]
    finite_diff_s: list[float]
    device: str

    def __repr__(self) -> str:
        rows = ", ".join(f"n={n}: reverse {r / f:.1f}x fwd, FD {d / f:.0f}x fwd"
                         for n, f, r, d in zip(self.n_params, self.forward_s, self.reverse_s, self.finite_diff_s))
        return f"GradientCosts({self.device}; {rows})"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def gradient_costs(widths: Sequence[int] = (4, 16, 64, 256), *, n_in: int = 8, batch: int = 64,
                   repeats: int = 15, max_coords: int | None = 64, seed: int = 0,
                   device: torch.device | str | None = None) -> GradientCosts:
    """Time finite differences, forward mode and reverse mode on one-hidden-layer tanh MLPs.

    Parameters
    ----------
    widths : sequence of int
        Hidden widths; a network ``[n_in, w, 1]`` has ``(n_in + 2) w + 1`` parameters.
    n_in, batch : int
        Input size and number of examples in the loss.
    repeats : int
        Forward and reverse passes are timed as the median of this many runs.
    max_coords : int or None
        Finite differences and forward mode cost the same for every parameter
        (two forward passes, or one forward-mode pass, each). Each of the
        first ``max_coords`` parameters is timed on its own, and the median
        time per parameter is multiplied by ``n_params`` (``None``: time all).
    seed : int
    device : optional
        Default CPU.

    Returns
    -------
    GradientCosts
        Seconds per full gradient, by method.

    Notes
    -----
    On the CPU the timing runs with one thread (restored afterwards): the
    passes are small, and a second thread on a busy machine only adds noise.
    """
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths: expected positive ints, got {widths!r}")
    if max_coords is not None and (isinstance(max_coords, bool) or not isinstance(max_coords, int) or max_coords < 1):
        raise ValueError(f"max_coords: expected a positive int or None, got {max_coords!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=g, dtype=torch.float64).to(dev)      # (B, n_in)
    t = torch.randn(batch, 1, generator=g, dtype=torch.float64).to(dev)         # (B, 1)

    def timed(fn, n):
        ts = []
        for _ in range(n):
            _sync(dev); t0 = time.perf_counter(); fn(); _sync(dev)
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[len(ts) // 2]

    with backend.single_thread(dev):
        return _gradient_costs(widths, x, t, repeats, max_coords, seed, dev, timed)


def central_difference_probe(net: "MLP", x: torch.Tensor, t: torch.Tensor, h: float = 1e-5) -> Callable[[int], float]:
    """``d(k)``: the central difference of ``net``'s MSE loss on ``(x, t)`` in parameter ``k``, two forward passes.

    The passes run on a copy of the parameters (one flat vector, nudged in place and restored), so
    ``net`` is untouched; this is what the gradient-cost measurements time per parameter.
    """
    theta = net.flat()                # (n,)
    probe = net.with_flat(theta)      # parameters are views into theta

    def d(k: int) -> float:
        old = theta[k].item()
        theta[k] = old + h
        fp = mse(mlp_forward(probe, x)[0], t)[0].item()
        theta[k] = old - h
        fm = mse(mlp_forward(probe, x)[0], t)[0].item()
        theta[k] = old
        return (fp - fm) / (2 * h)

    return d


def _gradient_costs(widths, x, t, repeats, max_coords, seed, dev, timed) -> GradientCosts:
    n_in = x.shape[1]
    out: dict[str, list] = {k: [] for k in ("n", "fwd", "rev", "fm", "fd")}
    for i, w in enumerate(widths):
        net = init_mlp([n_in, w, 1], seed=seed + i, device=dev)
        n = net.n_params
        k = n if max_coords is None else min(n, max_coords)
        fd_coordinate = central_difference_probe(net, x, t)
        tangent_flat = torch.zeros_like(net.flat())       # (n,)
        tangent = net.with_flat(tangent_flat)
        timed(lambda: mlp_loss_and_grads(net, x, t), 3)  # warm-up

        def fm_coordinate(j):                             # one forward-mode pass per parameter
            tangent_flat[j] = 1.0
            d = mlp_jvp(net, x, t, tangent)[1].item()
            tangent_flat[j] = 0.0
            return d

        # every coordinate costs the same: median seconds per coordinate, times n
        fd = sorted(timed(lambda: fd_coordinate(j), 1) for j in range(k))[k // 2] * n
        fm = sorted(timed(lambda: fm_coordinate(j), 1) for j in range(k))[k // 2] * n
        out["n"].append(n)
        out["fwd"].append(timed(lambda: mse(mlp_forward(net, x)[0], t)[0].item(), repeats))
        out["rev"].append(timed(lambda: mlp_loss_and_grads(net, x, t)[1][0].sum().item(), repeats))
        out["fm"].append(fm)
        out["fd"].append(fd)
    return GradientCosts(out["n"], out["fwd"], out["rev"], out["fm"], out["fd"], str(dev))


def saved_tensor_bytes(fn: Callable[[], torch.Tensor], exclude: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of the distinct tensors PyTorch saves for backward while ``fn()`` runs.

    Uses ``torch.autograd.graph.saved_tensors_hooks``: every tensor an
    operation saves for its backward passes through the hook. Tensors that
    share memory with one of ``exclude`` (the parameters, which exist anyway,
    and views of them such as ``W.T``) are not counted; a tensor saved by
    several operations counts once.

    Parameters
    ----------
    fn : callable
        Runs a forward computation (its result is discarded).
    exclude : sequence of Tensor
        Tensors whose storage is not counted.

    Returns
    -------
    int
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[(ptr, t.storage_offset(), tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(sum(seen.values()))


# =============================================================================
# 6. Backprop by hand for the layers that matter: softmax + cross-entropy, BatchNorm, a recurrent net
# =============================================================================
#
# "Backprop ninja" style: each backward pass is derived on paper, written with
# whole-tensor operations, and tested against torch.autograd (tests/test_depth_ch56.py).

def _float_matrix(name: str, t: object, ndim: int = 2) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: expected finite values")
    return t


def softmax_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of softmax(logits) against class indices, and its gradient in the logits.

    With :math:`p = \\mathrm{softmax}(z)` and a one-hot target :math:`y`, the
    loss of one example is :math:`-\\log p_y = \\log\\sum_k e^{z_k} - z_y`, whose
    gradient is :math:`p - y`: the softmax's Jacobian and the log's derivative
    cancel down to a subtraction. A mean over the batch divides by ``B``.

    Parameters
    ----------
    logits : Tensor (B, K), floating point, finite
    target : Tensor (B,), int64, values in [0, K)

    Returns
    -------
    loss : Tensor ()
        Same as ``torch.nn.functional.cross_entropy(logits, target)``.
    grad_logits : Tensor (B, K)
        :math:`(\\mathrm{softmax}(z) - \\mathrm{onehot}(y)) / B`.

    Raises
    ------
    TypeError, ValueError
        For a non-tensor, wrong dtype, wrong shape, a non-finite logit or a class out of range.
    """
    _float_matrix("logits", logits)
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
        raise TypeError(f"target: expected an int64 tensor of class indices, got {getattr(target, 'dtype', type(target).__name__)}")
    B, K = logits.shape
    if target.shape != (B,):
        raise ValueError(f"target: expected shape ({B},), got {tuple(target.shape)}")
    if B == 0 or K == 0:
        raise ValueError(f"logits: expected at least one row and one class, got shape {(B, K)}")
    if target.min() < 0 or target.max() >= K:
        raise ValueError(f"target: expected class indices in [0, {K}), got values from {int(target.min())} to {int(target.max())}")
    logz = torch.logsumexp(logits, dim=1)                              # (B,) stable log-sum-exp
    loss = (logz - logits.gather(1, target[:, None])[:, 0]).mean()     # ()
    grad = torch.exp(logits - logz[:, None])                           # (B, K) = softmax
    grad[torch.arange(B, device=logits.device), target] -= 1.0         # p - y
    return loss, grad / B


def batchnorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, *, eps: float = 1e-5
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batch normalization in training mode: each column standardized over the batch, then scaled and shifted.

    :math:`\\hat x = (x - \\mu)/\\sqrt{\\sigma^2 + \\epsilon}` with the batch mean
    :math:`\\mu` and the *biased* batch variance :math:`\\sigma^2` (what
    ``torch.nn.functional.batch_norm(..., training=True)`` normalizes with),
    then :math:`y = \\gamma \\hat x + \\beta`.

    Parameters
    ----------
    x : Tensor (B, n), B >= 1
    gamma, beta : Tensor (n,)
    eps : float > 0

    Returns
    -------
    y : Tensor (B, n)
    cache : (x_hat (B, n), inv_std (n,), gamma (n,)), what :func:`batchnorm_backward` needs
    """
    _float_matrix("x", x)
    for name, p in (("gamma", gamma), ("beta", beta)):
        _float_matrix(name, p, ndim=1)
        if p.shape != (x.shape[1],) or p.dtype != x.dtype:
            raise ValueError(f"{name}: expected a {x.dtype} tensor of shape ({x.shape[1]},), got {p.dtype} {tuple(p.shape)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")
    if x.shape[0] < 1:
        raise ValueError("x: expected at least one row")
    mu = x.mean(0)                                       # (n,)
    var = ((x - mu) ** 2).mean(0)                        # (n,) biased: divides by B
    inv_std = (var + eps).rsqrt()                        # (n,)
    x_hat = (x - mu) * inv_std                           # (B, n)
    return gamma * x_hat + beta, (x_hat, inv_std, gamma)


def batchnorm_backward(grad_y: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward pass of :func:`batchnorm_forward` in closed form.

    With :math:`g = \\bar y \\odot \\gamma` (the gradient reaching :math:`\\hat x`),

    .. math::
        \\bar x = \\frac{1}{B\\sqrt{\\sigma^2+\\epsilon}}\\Bigl(B g - \\textstyle\\sum_i g_i
        - \\hat x \\odot \\sum_i g_i \\odot \\hat x_i\\Bigr),\\quad
        \\bar\\gamma = \\sum_i \\bar y_i \\odot \\hat x_i,\\quad \\bar\\beta = \\sum_i \\bar y_i.

    The two sums are the paths through the mean and the variance, which every
    row of the batch shares: so :math:`\\sum_i \\bar x_i = 0` and
    :math:`\\sum_i \\bar x_i \\odot \\hat x_i = 0`, always.

    Returns
    -------
    dx : Tensor (B, n)
    dgamma, dbeta : Tensor (n,)
    """
    x_hat, inv_std, gamma = cache
    if not isinstance(grad_y, torch.Tensor) or grad_y.shape != x_hat.shape or grad_y.dtype != x_hat.dtype:
        raise ValueError(f"grad_y: expected a {x_hat.dtype} tensor of shape {tuple(x_hat.shape)}, got "
                         f"{getattr(grad_y, 'dtype', type(grad_y).__name__)} {tuple(getattr(grad_y, 'shape', ()))}")
    B = x_hat.shape[0]
    g = grad_y * gamma                                   # (B, n) = dL/dx_hat
    dx = inv_std / B * (B * g - g.sum(0) - x_hat * (g * x_hat).sum(0))   # (B, n)
    return dx, (grad_y * x_hat).sum(0), grad_y.sum(0)


def hvp(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hessian-vector product :math:`H v` by double backward, without forming :math:`H`.

    The first backward pass is recorded (``create_graph=True``), so the
    gradient :math:`g(x)` is itself a differentiable function; the second
    differentiates the scalar :math:`g(x)^\\top v` and gives
    :math:`\\nabla_x (g^\\top v) = H v`. Cost: about two gradients.

    Parameters
    ----------
    f : callable, Tensor (n,) -> Tensor () (scalar)
    x, v : Tensor (n,), same dtype

    Returns
    -------
    grad : Tensor (n,)
        :math:`\\nabla f(x)` (detached).
    Hv : Tensor (n,)
        The same as ``torch.autograd.functional.hvp(f, x, v)[1]``.
    """
    _float_matrix("x", x, ndim=1)
    _float_matrix("v", v, ndim=1)
    if v.shape != x.shape or v.dtype != x.dtype:
        raise ValueError(f"v: expected a {x.dtype} tensor of shape {tuple(x.shape)}, got {v.dtype} {tuple(v.shape)}")
    x = x.detach().requires_grad_()
    y = f(x)
    if not isinstance(y, torch.Tensor) or y.ndim != 0:
        raise ValueError(f"f: expected a function returning a scalar tensor, got {getattr(y, 'shape', type(y).__name__)}")
    (g,) = torch.autograd.grad(y, x, create_graph=True)          # g(x), itself a graph
    if not g.requires_grad:                                      # g does not depend on x: f is linear, H = 0
        return g.detach(), torch.zeros_like(x)
    (Hv,) = torch.autograd.grad(g @ v, x, allow_unused=True)     # d(g . v)/dx = H v
    return g.detach(), torch.zeros_like(x) if Hv is None else Hv.detach()


def rnn_forward(x: torch.Tensor, h0: torch.Tensor, W_ih: torch.Tensor, W_hh: torch.Tensor, b: torch.Tensor
                ) -> tuple[torch.Tensor, tuple]:
    """A tanh recurrent net unrolled over time: :math:`h_t = \\tanh(W_{ih} x_t + W_{hh} h_{t-1} + b)`.

    The layout is PyTorch's ``nn.RNN`` (sequence first); ``b`` plays the role
    of ``bias_ih + bias_hh``.

    Parameters
    ----------
    x : Tensor (T, B, n_in)
    h0 : Tensor (B, H)
    W_ih : Tensor (H, n_in); W_hh : Tensor (H, H); b : Tensor (H,)

    Returns
    -------
    hs : Tensor (T, B, H), every hidden state
    cache : what :func:`rnn_bptt` needs
    """
    _float_matrix("x", x, ndim=3)
    T, B, n_in = x.shape
    H = W_hh.shape[0] if isinstance(W_hh, torch.Tensor) and W_hh.ndim == 2 else -1
    for name, t, shape in (("h0", h0, (B, H)), ("W_ih", W_ih, (H, n_in)), ("W_hh", W_hh, (H, H)), ("b", b, (H,))):
        _float_matrix(name, t, ndim=len(shape))
        if tuple(t.shape) != shape or t.dtype != x.dtype:
            raise ValueError(f"{name}: expected a {x.dtype} tensor of shape {shape}, got {t.dtype} {tuple(t.shape)}")
    hs, h = [], h0
    for t in range(T):
        h = torch.tanh(x[t] @ W_ih.T + h @ W_hh.T + b)   # (B, H)
        hs.append(h)
    hs_t = torch.stack(hs)                               # (T, B, H)
    return hs_t, (x, h0, W_ih, W_hh, hs_t)


def rnn_bptt(grad_hs: torch.Tensor, cache: tuple) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Backpropagation through time for :func:`rnn_forward`.

    Walk back from the last step: the gradient reaching :math:`h_t` is what the
    loss sends it directly (``grad_hs[t]``) plus what :math:`h_{t+1}` sends
    back through :math:`W_{hh}`. Then
    :math:`\\bar z_t = \\bar h_t \\odot (1 - h_t^2)`, and the shared weights
    collect one term per step: :math:`\\bar W_{hh} = \\sum_t \\bar z_t^\\top h_{t-1}`,
    :math:`\\bar W_{ih} = \\sum_t \\bar z_t^\\top x_t`, :math:`\\bar b = \\sum_t \\sum_i \\bar z_{t,i}`.

    Parameters
    ----------
    grad_hs : Tensor (T, B, H)
        :math:`\\partial L/\\partial h_t` from the loss directly (zeros where a
        step has no loss term).
    cache : from :func:`rnn_forward`

    Returns
    -------
    grads : dict with ``W_ih``, ``W_hh``, ``b``, ``x`` (T, B, n_in) and ``h0`` (B, H)
    dh : Tensor (T, B, H)
        The total gradient reaching each hidden state (direct + through time).
    """
    x, h0, W_ih, W_hh, hs = cache
    if not isinstance(grad_hs, torch.Tensor) or grad_hs.shape != hs.shape or grad_hs.dtype != hs.dtype:
        raise ValueError(f"grad_hs: expected a {hs.dtype} tensor of shape {tuple(hs.shape)}, got "
                         f"{getattr(grad_hs, 'dtype', type(grad_hs).__name__)} {tuple(getattr(grad_hs, 'shape', ()))}")
    T = hs.shape[0]
    dW_ih, dW_hh = torch.zeros_like(W_ih), torch.zeros_like(W_hh)
    db = torch.zeros_like(W_hh[0])
    dx = torch.zeros_like(x)
    dh_all = torch.zeros_like(hs)
    carry = torch.zeros_like(h0)                         # (B, H) what h_{t+1} sends back to h_t
    for t in range(T - 1, -1, -1):
        dh = grad_hs[t] + carry                          # (B, H) total dL/dh_t
        dh_all[t] = dh
        dz = dh * (1 - hs[t] ** 2)                       # (B, H) through tanh
        h_prev = hs[t - 1] if t > 0 else h0              # (B, H)
        dW_hh += dz.T @ h_prev                           # the shared weights add one term per step
        dW_ih += dz.T @ x[t]
        db += dz.sum(0)
        dx[t] = dz @ W_ih
        carry = dz @ W_hh                                # (B, H) to h_{t-1}
    return {"W_ih": dW_ih, "W_hh": dW_hh, "b": db, "x": dx, "h0": carry}, dh_all
