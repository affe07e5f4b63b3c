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


# =================================================================================================
# Problems (end of the chapter): backward passes by hand, and experiments with double backward and BPTT
# =================================================================================================

def _w(body: str, header: str) -> str:
    """A known-wrong version: the stub's signature line(s) with ``body``."""
    return header + body


# --- Problem: the backward pass of softmax + cross-entropy ---------------------------------------

_CE_HEAD = "import torch\n\ndef ce_backward(logits, y):\n"
ce_backward = Exercise(
    id="backprop.problem-ce-backward",
    title="The backward pass of softmax + cross-entropy",
    entry="ce_backward",
    prompt="Derive and write `ce_backward(logits, y)`: the gradient of the mean cross-entropy "
           "`F.cross_entropy(logits, y)` with respect to `logits`, without autograd.",
    stub='''
import torch

def ce_backward(logits, y):
    """dL/dlogits for L = mean over the batch of -log softmax(logits)[i, y[i]].

    logits (B, K) float64, y (B,) int64 class indices. Returns (B, K).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def ce_backward(logits, y):
    """dL/dlogits for L = mean over the batch of -log softmax(logits)[i, y[i]].

    logits (B, K) float64, y (B,) int64 class indices. Returns (B, K).
    """
    B = logits.shape[0]
    p = torch.softmax(logits, dim=1)                       # (B, K), stable: subtracts the row maximum
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    return (p - onehot) / B                                # the mean divides by B
''',
    wrong=(
        _w("    p = torch.softmax(logits, 1)\n    return p - torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)\n", _CE_HEAD),
        _w("    p = torch.softmax(logits, 1)\n    return (torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype) - p) / logits.shape[0]\n", _CE_HEAD),
        _w("    e = torch.exp(logits)\n    p = e / e.sum(1, keepdim=True)\n"
           "    return (p - torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)) / logits.shape[0]\n", _CE_HEAD),
        _w("    p = torch.softmax(logits, 1)\n    return (p * (1 - p)) / logits.shape[0]\n", _CE_HEAD),
    ),
)


def _ce_case(seed: int, B: int, K: int, scale: float):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, K, generator=g, dtype=torch.float64) * scale, torch.randint(0, K, (B,), generator=g)


def _ce_autograd(logits, y):
    z = logits.clone().requires_grad_()
    torch.nn.functional.cross_entropy(z, y).backward()
    return z.grad


@ce_backward.check("matches torch.autograd on a batch", hint="$\\partial \\mathcal L/\\partial z = (p - \\mathrm{onehot}(y))/B$ for a batch mean.")
def _(f, ref):
    for seed, B, K in ((0, 8, 5), (1, 1, 3), (2, 32, 10)):
        z, y = _ce_case(seed, B, K, 2.0)
        got, want = f(z.clone(), y.clone()), _ce_autograd(z, y)
        assert isinstance(got, torch.Tensor) and got.shape == want.shape, f"expected a tensor of shape {tuple(want.shape)}"
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), f"batch {B}, {K} classes: differs from torch.autograd"


@ce_backward.check("stays finite for logits in the thousands", hint="Compute the softmax stably: `torch.softmax`, or subtract each row's maximum before `exp`.")
def _(f, ref):
    z, y = _ce_case(3, 6, 4, 3000.0)
    got, want = f(z.clone(), y.clone()), _ce_autograd(z, y)
    assert torch.isfinite(got).all(), "the gradient has NaN or inf for large logits"
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), "differs from torch.autograd for large logits"


# --- Problem: the backward pass of BatchNorm ------------------------------------------------------

_BN_HEAD = "import torch\n\ndef batchnorm_backward(dy, x, gamma, eps=1e-5):\n"
bn_backward = Exercise(
    id="backprop.problem-batchnorm-backward",
    title="The backward pass of BatchNorm",
    entry="batchnorm_backward",
    prompt="Derive and write `batchnorm_backward(dy, x, gamma, eps)`: the gradients of training-mode batch "
           "normalization (batch mean, biased batch variance) with respect to `x`, `gamma` and `beta`, without autograd.",
    stub='''
import torch

def batchnorm_backward(dy, x, gamma, eps=1e-5):
    """Gradients of y = gamma * (x - mu) / sqrt(var + eps) + beta, with mu and the biased var over the batch.

    dy, x (B, n) float64; gamma (n,). Returns (dx (B, n), dgamma (n,), dbeta (n,)).
    """
    mu = x.mean(0)                              # (n,)
    var = x.var(0, unbiased=False)              # (n,) biased: divides by B
    x_hat = (x - mu) / torch.sqrt(var + eps)    # (B, n)
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def batchnorm_backward(dy, x, gamma, eps=1e-5):
    """Gradients of y = gamma * (x - mu) / sqrt(var + eps) + beta, with mu and the biased var over the batch.

    dy, x (B, n) float64; gamma (n,). Returns (dx (B, n), dgamma (n,), dbeta (n,)).
    """
    mu = x.mean(0)                              # (n,)
    var = x.var(0, unbiased=False)              # (n,) biased: divides by B
    x_hat = (x - mu) / torch.sqrt(var + eps)    # (B, n)
    B = x.shape[0]
    dgamma = (dy * x_hat).sum(0)                # gamma and beta are broadcast over the batch: sums
    dbeta = dy.sum(0)
    g = dy * gamma                              # dL/dx_hat
    # three paths from x_i: directly, through the mean, through the variance
    dx = (B * g - g.sum(0) - x_hat * (g * x_hat).sum(0)) / (B * torch.sqrt(var + eps))
    return dx, dgamma, dbeta
''',
    wrong=(
        # only the direct path: forgets that mu and var depend on x
        _w("    mu = x.mean(0); var = x.var(0, unbiased=False); s = torch.sqrt(var + eps)\n    x_hat = (x - mu) / s\n"
           "    return dy * gamma / s, (dy * x_hat).sum(0), dy.sum(0)\n", _BN_HEAD),
        # forgets the variance's path
        _w("    mu = x.mean(0); var = x.var(0, unbiased=False); s = torch.sqrt(var + eps)\n    x_hat = (x - mu) / s\n"
           "    g = dy * gamma\n    return (g - g.mean(0)) / s, (dy * x_hat).sum(0), dy.sum(0)\n", _BN_HEAD),
        # forgets gamma on the way to x_hat
        _w("    mu = x.mean(0); var = x.var(0, unbiased=False); s = torch.sqrt(var + eps); B = x.shape[0]\n    x_hat = (x - mu) / s\n"
           "    g = dy\n    return (B * g - g.sum(0) - x_hat * (g * x_hat).sum(0)) / (B * s), (dy * x_hat).sum(0), dy.sum(0)\n", _BN_HEAD),
        # means instead of sums for the broadcast parameters
        _w("    mu = x.mean(0); var = x.var(0, unbiased=False); s = torch.sqrt(var + eps); B = x.shape[0]\n    x_hat = (x - mu) / s\n"
           "    g = dy * gamma\n    return (B * g - g.sum(0) - x_hat * (g * x_hat).sum(0)) / (B * s), (dy * x_hat).mean(0), dy.mean(0)\n", _BN_HEAD),
    ),
)


def _bn_case(seed: int, B: int, n: int, scale: float = 1.0, shift: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(B, n), r(B, n) * scale + shift, r(n) + 1.5


def _bn_autograd(dy, x, gamma, eps=1e-5):
    xs, gs = x.clone().requires_grad_(), gamma.clone().requires_grad_()
    bs = torch.zeros_like(gamma, requires_grad=True)
    torch.nn.functional.batch_norm(xs, None, None, gs, bs, training=True, eps=eps).backward(dy)
    return xs.grad, gs.grad, bs.grad


_BN_NAMES = ("dx", "dgamma", "dbeta")


@bn_backward.check("dgamma and dbeta match torch.autograd", hint="$\\gamma$ and $\\beta$ are broadcast over the batch, so their gradients are sums over it.")
def _(f, ref):
    dy, x, gamma = _bn_case(0, 8, 5)
    out = f(dy.clone(), x.clone(), gamma.clone())
    assert isinstance(out, (tuple, list)) and len(out) == 3, "expected a tuple (dx, dgamma, dbeta)"
    for name, got, want in list(zip(_BN_NAMES, out, _bn_autograd(dy, x, gamma)))[1:]:
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-9, atol=1e-12), f"{name} differs from torch.autograd"


@bn_backward.check("dx matches torch.autograd (all three paths)", hint="$x_i$ reaches the loss through $\\hat x_i$, through the mean and through the variance: $\\bar x = (Bg - \\sum g - \\hat x \\sum g\\hat x)/(B\\sqrt{\\sigma^2+\\epsilon})$ with $g = \\gamma \\bar y$.")
def _(f, ref):
    for seed, B, n, scale, shift in ((1, 8, 5, 1.0, 0.0), (2, 2, 3, 1.0, 0.0), (3, 32, 4, 100.0, 1e3), (4, 16, 3, 1e-2, 0.0)):
        dy, x, gamma = _bn_case(seed, B, n, scale, shift)
        got = f(dy.clone(), x.clone(), gamma.clone())[0]
        want = _bn_autograd(dy, x, gamma)[0]
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-7, atol=1e-9 * float(want.abs().max())), \
            f"dx differs from torch.autograd (batch {B}, inputs scaled by {scale})"


# --- Problem (experiment): the sharpness by power iteration on double-backward Hessian-vector products ---

_EIG_HEAD = ("import torch\n\ndef top_eigenvalue(A, x, iters=50, seed=0):\n"
             "    def f(v):\n        return 0.5 * v @ A @ v + 0.25 * (v ** 4).sum()\n")
top_eig = Exercise(
    id="backprop.problem-top-eigenvalue",
    title="Sharpness from Hessian-vector products",
    entry="top_eigenvalue",
    prompt="Write `top_eigenvalue(A, x, iters, seed)`: the largest eigenvalue (in absolute value) of the Hessian of "
           "$f(v) = \\tfrac12 v^\\top A v + \\tfrac14 \\sum_i v_i^4$ at `x`, by power iteration on Hessian-vector products "
           "computed with double backward. Do not form the Hessian.",
    stub='''
import torch

def top_eigenvalue(A, x, iters=50, seed=0):
    """Largest-magnitude eigenvalue of the Hessian of f at x (n,), by power iteration on H v (A symmetric (n, n)).

    Compute H v by double backward: grad with create_graph=True, then the gradient of (grad . v).
    Start from a random vector drawn with torch.Generator().manual_seed(seed). Return a float (the Rayleigh quotient).
    """
    def f(v):
        return 0.5 * v @ A @ v + 0.25 * (v ** 4).sum()
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def top_eigenvalue(A, x, iters=50, seed=0):
    """Largest-magnitude eigenvalue of the Hessian of f at x (n,), by power iteration on H v (A symmetric (n, n)).

    Compute H v by double backward: grad with create_graph=True, then the gradient of (grad . v).
    Start from a random vector drawn with torch.Generator().manual_seed(seed). Return a float (the Rayleigh quotient).
    """
    def f(v):
        return 0.5 * v @ A @ v + 0.25 * (v ** 4).sum()
    x = x.detach().requires_grad_()
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)          # the gradient, itself differentiable
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    lam = 0.0
    for _ in range(iters):
        (Hu,) = torch.autograd.grad(g @ u, x, retain_graph=True)    # H u
        lam = float(u @ Hu / (u @ u))                               # Rayleigh quotient
        u = Hu / Hu.norm()
    return lam
''',
    wrong=(
        # the gradient's norm, not a curvature
        _w("    x = x.detach().requires_grad_()\n    (g,) = torch.autograd.grad(f(x), x)\n    return float(g.norm())\n", _EIG_HEAD),
        # a single Rayleigh quotient at a random vector: no iteration
        _w("    x = x.detach().requires_grad_()\n    (g,) = torch.autograd.grad(f(x), x, create_graph=True)\n"
           "    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)\n"
           "    (Hu,) = torch.autograd.grad(g @ u, x)\n    return float(u @ Hu / (u @ u))\n", _EIG_HEAD),
        # the mean of the diagonal (trace / n) instead of the top eigenvalue
        _w("    x = x.detach().requires_grad_()\n    (g,) = torch.autograd.grad(f(x), x, create_graph=True)\n"
           "    n = x.shape[0]; tr = 0.0\n    for i in range(n):\n        e = torch.zeros(n, dtype=x.dtype); e[i] = 1\n"
           "        (He,) = torch.autograd.grad(g @ e, x, retain_graph=True)\n        tr += float(He[i])\n    return tr / n\n", _EIG_HEAD),
    ),
)


def _quartic_hessian(A, x):
    """The Hessian of f(v) = v^T A v / 2 + sum(v^4) / 4, written out: A + 3 diag(x^2)."""
    return A + torch.diag(3 * x ** 2)


@top_eig.check("finds the top eigenvalue at a point where f is quadratic", hint="Iterate $u \\leftarrow Hu/\\|Hu\\|$ and return $u^\\top H u / u^\\top u$.")
def _(f, ref):
    A = torch.diag(torch.tensor([5.0, 2.0, 1.0, 0.5], dtype=torch.float64))
    got = f(A, torch.zeros(4, dtype=torch.float64), 60, 0)  # at x = 0 the quartic term has no curvature: H = A
    assert isinstance(got, float) and abs(got - 5.0) < 1e-6, f"for H = diag(5, 2, 1, 0.5) expected 5, got {got}"


@top_eig.check("agrees with the full Hessian away from the origin", hint="Build the graph of the gradient once (`create_graph=True`) and reuse it with `retain_graph=True`.")
def _(f, ref):
    g = torch.Generator().manual_seed(3)
    M = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = M @ M.T / 6
    x = torch.randn(6, generator=g, dtype=torch.float64)
    want = float(torch.linalg.eigvalsh(_quartic_hessian(A, x)).abs().max())
    got = f(A, x, 200, 1)
    assert isinstance(got, float) and abs(got - want) < 1e-6 * want, f"expected {want:.6f}, got {got}"


# --- Problem (experiment): how the gradient decays back through time ------------------------------

_BPTT_HEAD = "import torch\n\ndef gradient_ratios(W, T, seed=0):\n"
bptt_decay = Exercise(
    id="backprop.problem-bptt-decay",
    title="The gradient back through time",
    entry="gradient_ratios",
    prompt="Write `gradient_ratios(W, T, seed)`: run the linear recurrence $h_t = W h_{t-1}$ for $T$ steps from a random "
           "$h_0$, put a loss on $h_T$ only, backpropagate with autograd, and return the tensor of "
           "$\\|\\partial \\mathcal L/\\partial h_t\\| / \\|\\partial \\mathcal L/\\partial h_T\\|$ for $t = 0, \\dots, T$.",
    stub='''
import torch

def gradient_ratios(W, T, seed=0):
    """||dL/dh_t|| / ||dL/dh_T|| for t = 0..T, for h_t = W h_{t-1} and L = 0.5 ||h_T||^2.

    W (H, H) float64; h_0 drawn with torch.Generator().manual_seed(seed). Returns a (T + 1,) float64 tensor.
    Hint: keep every h_t and call .retain_grad() on it (or use torch.autograd.grad with all of them).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def gradient_ratios(W, T, seed=0):
    """||dL/dh_t|| / ||dL/dh_T|| for t = 0..T, for h_t = W h_{t-1} and L = 0.5 ||h_T||^2.

    W (H, H) float64; h_0 drawn with torch.Generator().manual_seed(seed). Returns a (T + 1,) float64 tensor.
    Hint: keep every h_t and call .retain_grad() on it (or use torch.autograd.grad with all of them).
    """
    h = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(seed), dtype=W.dtype).requires_grad_()
    hs = [h]
    for _ in range(T):
        hs.append(W @ hs[-1])                          # h_t = W h_{t-1}
    loss = 0.5 * hs[-1].pow(2).sum()
    grads = torch.autograd.grad(loss, hs)              # dL/dh_t for every t
    norms = torch.stack([g.norm() for g in grads])     # (T + 1,)
    return norms / norms[-1]
''',
    wrong=(
        # ratios the wrong way round: relative to h_0
        _w("    h = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(seed), dtype=W.dtype).requires_grad_()\n"
           "    hs = [h]\n    for _ in range(T):\n        hs.append(W @ hs[-1])\n"
           "    grads = torch.autograd.grad(0.5 * hs[-1].pow(2).sum(), hs)\n    n = torch.stack([g.norm() for g in grads])\n    return n / n[0]\n", _BPTT_HEAD),
        # the forward norms instead of the gradients
        _w("    h = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(seed), dtype=W.dtype)\n"
           "    hs = [h]\n    for _ in range(T):\n        hs.append(W @ hs[-1])\n    n = torch.stack([v.norm() for v in hs])\n    return n / n[-1]\n", _BPTT_HEAD),
        # the spectral-norm bound instead of the measurement
        _w("    s = torch.linalg.matrix_norm(W, 2)\n    return s ** torch.arange(T, -1, -1, dtype=W.dtype)\n", _BPTT_HEAD),
    ),
)


def _scaled_orthogonal(n: int, rho: float, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return rho * q * torch.diagonal(r).sign()


@bptt_decay.check("returns T + 1 ratios, 1 at t = T", hint="One ratio per state $h_0, \\dots, h_T$, each divided by the last one.")
def _(f, ref):
    out = f(_scaled_orthogonal(4, 0.9, 0), 6, 0)
    assert isinstance(out, torch.Tensor) and out.shape == (7,), f"expected a tensor of shape (7,), got {getattr(out, 'shape', type(out).__name__)}"
    assert abs(float(out[-1]) - 1) < 1e-12, "the last ratio must be 1"


@bptt_decay.check("measures rho^(T - t) for W = rho Q (Q orthogonal)", hint="Backward, each step multiplies by $W^\\top = \\rho Q^\\top$, which scales every vector by exactly $\\rho$.")
def _(f, ref):
    for rho, T in ((0.8, 20), (1.1, 15)):
        out = f(_scaled_orthogonal(5, rho, 1), T, 2)
        want = torch.tensor([rho ** (T - t) for t in range(T + 1)], dtype=torch.float64)
        assert torch.allclose(out, want, rtol=1e-9), f"for rho = {rho}, T = {T}: expected rho^(T-t), got {out[:3].tolist()}..."


@bptt_decay.check("measures the gradient, not a bound, for a non-normal W", hint="Use autograd's gradients with respect to every $h_t$; the norm bound $\\|W\\|^{T-t}$ is not the measurement.")
def _(f, ref):
    W = torch.tensor([[0.5, 2.0], [0.0, 0.5]], dtype=torch.float64)
    out, want = f(W, 8, 3), ref(W, 8, 3)
    assert torch.allclose(out, want, rtol=1e-9), f"expected {want[:3].tolist()}..., got {out[:3].tolist()}..."
