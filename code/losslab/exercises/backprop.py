"""Exercises for book/05_backpropagation.ipynb: one backward rule, and backprop by hand through a 2-layer MLP."""

import math

import torch

from ..autograd import Value
from . import Exercise

# --- 1. the backward rule of tanh in the Value engine ------------------------------------------

tanh_rule = Exercise(
    id="backprop.tanh-rule",
    title="The backward rule of tanh",
    entry="tanh",
    prompt="Complete `tanh(v)`: the forward value is given; write `_backward`, which adds the local derivative "
           "times `out.grad` into `v.grad`.",
    stub='''
import math
from losslab.autograd import Value

def tanh(v: Value) -> Value:
    """t = tanh(v) as a new Value whose backward rule sends out.grad into v.grad."""
    t = math.tanh(v.data)
    out = Value(t, _children=(v,), _op="tanh")
    def _backward():
        # YOUR CODE HERE
        raise NotImplementedError()
    out._backward = _backward
    return out
''',
    solution='''
import math
from losslab.autograd import Value

def tanh(v: Value) -> Value:
    """t = tanh(v) as a new Value whose backward rule sends out.grad into v.grad."""
    t = math.tanh(v.data)
    out = Value(t, _children=(v,), _op="tanh")
    def _backward():
        v.grad += (1 - t ** 2) * out.grad   # d tanh(v)/dv = 1 - tanh(v)^2, times the upstream gradient
    out._backward = _backward
    return out
''',
    wrong=(
        # assigns instead of adding: loses other paths into v
        "import math\nfrom losslab.autograd import Value\ndef tanh(v):\n    t = math.tanh(v.data)\n"
        "    out = Value(t, _children=(v,), _op='tanh')\n    def _backward():\n        v.grad = (1 - t ** 2) * out.grad\n"
        "    out._backward = _backward\n    return out\n",
        # forgets the upstream gradient
        "import math\nfrom losslab.autograd import Value\ndef tanh(v):\n    t = math.tanh(v.data)\n"
        "    out = Value(t, _children=(v,), _op='tanh')\n    def _backward():\n        v.grad += 1 - t ** 2\n"
        "    out._backward = _backward\n    return out\n",
        # derivative written in terms of the input: 1 - v^2
        "import math\nfrom losslab.autograd import Value\ndef tanh(v):\n    t = math.tanh(v.data)\n"
        "    out = Value(t, _children=(v,), _op='tanh')\n    def _backward():\n        v.grad += (1 - v.data ** 2) * out.grad\n"
        "    out._backward = _backward\n    return out\n",
        # the sigmoid's derivative
        "import math\nfrom losslab.autograd import Value\ndef tanh(v):\n    t = math.tanh(v.data)\n"
        "    out = Value(t, _children=(v,), _op='tanh')\n    def _backward():\n        v.grad += t * (1 - t) * out.grad\n"
        "    out._backward = _backward\n    return out\n",
    ),
)


def _torch_grad(fn, x: float) -> float:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(t).backward()
    return float(t.grad)


@tanh_rule.check("dL/dv of L = tanh(v) matches torch.autograd", hint="$\\tanh'(v) = 1 - \\tanh(v)^2$.")
def _(f, ref):
    for x in (-2.0, -0.3, 0.0, 0.8, 3.0):
        v = Value(x)
        f(v).backward()
        want = _torch_grad(torch.tanh, x)
        assert math.isclose(v.grad, want, rel_tol=1e-9, abs_tol=1e-12), f"at v = {x}: got {v.grad}, expected {want}"


@tanh_rule.check("multiplies by the upstream gradient out.grad", hint="The chain rule: local derivative **times** `out.grad`.")
def _(f, ref):
    v = Value(0.7)
    L = f(v) * 5.0
    L.backward()
    want = _torch_grad(lambda t: torch.tanh(t) * 5.0, 0.7)
    assert math.isclose(v.grad, want, rel_tol=1e-9), f"for L = 5 tanh(v) at v = 0.7: got {v.grad}, expected {want}"


@tanh_rule.check("adds into v.grad, so a second use of v is kept", hint="Use `+=`: `v` may also feed other nodes, whose contributions must be summed.")
def _(f, ref):
    v = Value(0.4)
    L = f(v) + v * 2.0        # the rule of v * 2 runs before tanh's, so v.grad already holds 2 then
    L.backward()
    want = _torch_grad(lambda t: torch.tanh(t) + t * 2.0, 0.4)
    assert math.isclose(v.grad, want, rel_tol=1e-9), f"for L = tanh(v) + 2v at v = 0.4: got {v.grad}, expected {want}"


# --- 2. backprop by hand through a 2-layer MLP ---------------------------------------------------

two_layer = Exercise(
    id="backprop.two-layer",
    title="Backprop by hand through a 2-layer MLP",
    entry="two_layer_grads",
    prompt="Given the forward pass of a 2-layer tanh MLP with a mean-squared-error loss, return the gradients "
           "`(dW1, db1, dW2, db2)` without autograd.",
    stub='''
import torch

def two_layer_grads(x, y, W1, b1, W2, b2):
    """Gradients of L = mean((tanh(x W1^T + b1) W2^T + b2 - y)^2) over all B*k entries.

    x (B, d), y (B, k), W1 (h, d), b1 (h,), W2 (k, h), b2 (k,).
    Returns (dW1, db1, dW2, db2), each shaped like its parameter.
    """
    z1 = x @ W1.T + b1        # (B, h)
    h1 = torch.tanh(z1)       # (B, h)
    yhat = h1 @ W2.T + b2     # (B, k)
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def two_layer_grads(x, y, W1, b1, W2, b2):
    """Gradients of L = mean((tanh(x W1^T + b1) W2^T + b2 - y)^2) over all B*k entries.

    x (B, d), y (B, k), W1 (h, d), b1 (h,), W2 (k, h), b2 (k,).
    Returns (dW1, db1, dW2, db2), each shaped like its parameter.
    """
    z1 = x @ W1.T + b1        # (B, h)
    h1 = torch.tanh(z1)       # (B, h)
    yhat = h1 @ W2.T + b2     # (B, k)
    delta2 = 2 * (yhat - y) / yhat.numel()   # (B, k)  dL/dyhat: the mean divides by B*k
    dW2 = delta2.T @ h1                      # (k, h)  sum over the batch of delta2_b h1_b^T
    db2 = delta2.sum(0)                      # (k,)
    delta1 = (delta2 @ W2) * (1 - h1 ** 2)   # (B, h)  back through W2, then through tanh
    dW1 = delta1.T @ x                       # (h, d)
    db1 = delta1.sum(0)                      # (h,)
    return dW1, db1, dW2, db2
''',
    wrong=(
        # sum instead of mean: forgets 1/(B k)
        "import torch\ndef two_layer_grads(x, y, W1, b1, W2, b2):\n    h1 = torch.tanh(x @ W1.T + b1)\n    yhat = h1 @ W2.T + b2\n"
        "    d2 = 2 * (yhat - y)\n    d1 = (d2 @ W2) * (1 - h1 ** 2)\n    return d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0)\n",
        # transposed weight gradients
        "import torch\ndef two_layer_grads(x, y, W1, b1, W2, b2):\n    h1 = torch.tanh(x @ W1.T + b1)\n    yhat = h1 @ W2.T + b2\n"
        "    d2 = 2 * (yhat - y) / yhat.numel()\n    d1 = (d2 @ W2) * (1 - h1 ** 2)\n    return x.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0)\n",
        # tanh derivative from the pre-activation
        "import torch\ndef two_layer_grads(x, y, W1, b1, W2, b2):\n    z1 = x @ W1.T + b1\n    h1 = torch.tanh(z1)\n    yhat = h1 @ W2.T + b2\n"
        "    d2 = 2 * (yhat - y) / yhat.numel()\n    d1 = (d2 @ W2) * (1 - z1 ** 2)\n    return d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0)\n",
        # forgets the tanh derivative
        "import torch\ndef two_layer_grads(x, y, W1, b1, W2, b2):\n    h1 = torch.tanh(x @ W1.T + b1)\n    yhat = h1 @ W2.T + b2\n"
        "    d2 = 2 * (yhat - y) / yhat.numel()\n    d1 = d2 @ W2\n    return d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0)\n",
        # averages the bias gradients over the batch a second time
        "import torch\ndef two_layer_grads(x, y, W1, b1, W2, b2):\n    h1 = torch.tanh(x @ W1.T + b1)\n    yhat = h1 @ W2.T + b2\n"
        "    d2 = 2 * (yhat - y) / yhat.numel()\n    d1 = (d2 @ W2) * (1 - h1 ** 2)\n    return d1.T @ x, d1.mean(0), d2.T @ h1, d2.mean(0)\n",
    ),
)


def _problem(seed: int, B: int = 5, d: int = 3, h: int = 4, k: int = 2):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(B, d), r(B, k), r(h, d), r(h), r(k, h), r(k)


def _autograd(x, y, W1, b1, W2, b2):
    ps = [p.clone().requires_grad_() for p in (W1, b1, W2, b2)]
    yhat = torch.tanh(x @ ps[0].T + ps[1]) @ ps[2].T + ps[3]
    ((yhat - y) ** 2).mean().backward()
    return [p.grad for p in ps]


_NAMES = ("dW1", "db1", "dW2", "db2")


@two_layer.check("returns four gradients shaped like W1, b1, W2, b2", hint="`dW = delta.T @ input` has the shape of `W`; bias gradients sum `delta` over the batch.")
def _(f, ref):
    args = _problem(0)
    out = f(*[a.clone() for a in args])
    assert isinstance(out, (tuple, list)) and len(out) == 4, "expected a tuple (dW1, db1, dW2, db2)"
    for name, got, p in zip(_NAMES, out, args[2:]):
        assert isinstance(got, torch.Tensor), f"{name}: expected a tensor, got {type(got).__name__}"
        assert got.shape == p.shape, f"{name}: expected shape {tuple(p.shape)}, got {tuple(got.shape)}"


@two_layer.check("output-layer gradients dW2, db2 match torch.autograd", hint="$\\bar z_2 = 2(\\hat y - y)/(Bk)$ for a mean over all $B k$ entries; then $\\partial \\mathcal L/\\partial W_2 = \\bar z_2^\\top h_1$.")
def _(f, ref):
    args = _problem(1)
    out = f(*[a.clone() for a in args])
    want = _autograd(*args)
    for name, got, w in list(zip(_NAMES, out, want))[2:]:
        assert got.shape == w.shape and torch.allclose(got, w, rtol=1e-8, atol=1e-10), f"{name} differs from torch.autograd"


@two_layer.check("hidden-layer gradients dW1, db1 match torch.autograd", hint="$\\bar z_1 = (\\bar z_2 W_2) \\odot (1 - h_1^2)$: the tanh derivative uses its output $h_1$.")
def _(f, ref):
    for seed, B in ((2, 5), (3, 1), (4, 16)):
        args = _problem(seed, B=B)
        out = f(*[a.clone() for a in args])
        want = _autograd(*args)
        for name, got, w in list(zip(_NAMES, out, want))[:2]:
            assert got.shape == w.shape and torch.allclose(got, w, rtol=1e-8, atol=1e-10), f"{name} differs from torch.autograd (batch {B})"
