"""Exercises for book/02_loss_landscapes.ipynb (Chapter 2, "Loss landscapes")."""

import torch

from . import Exercise

# --------------------------------------------------------------------------------
classify_ex = Exercise(
    id="landscape.classify",
    title="Classify a critical point",
    entry="classify_critical_point",
    prompt=(
        "Write `classify_critical_point(hessian)`: given the symmetric Hessian $H$ (a $P \\times P$ float64 tensor) "
        "at a critical point, return `\"minimum\"` if every eigenvalue is positive, `\"maximum\"` if every one is "
        "negative, `\"saddle\"` if there are eigenvalues of both signs, and `\"degenerate\"` otherwise (some "
        "eigenvalue is zero and the others share one sign, so the second-derivative test says nothing). Count an "
        "eigenvalue as zero when $|h_i| \\le 10^{-9}$."
    ),
    stub='''
import torch

def classify_critical_point(hessian: torch.Tensor) -> str:
    """'minimum', 'maximum', 'saddle' or 'degenerate' from the eigenvalues of a symmetric [n, n] Hessian."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def classify_critical_point(hessian: torch.Tensor) -> str:
    """'minimum', 'maximum', 'saddle' or 'degenerate' from the eigenvalues of a symmetric [n, n] Hessian."""
    eig = torch.linalg.eigvalsh(hessian)  # real, ascending: H is symmetric
    pos, neg = eig > 1e-9, eig < -1e-9
    if bool(pos.all()):
        return "minimum"
    if bool(neg.all()):
        return "maximum"
    if bool(pos.any()) and bool(neg.any()):
        return "saddle"
    return "degenerate"
''',
    wrong=(
        # the diagonal entries are not the eigenvalues
        '''
import torch
def classify_critical_point(hessian):
    d = torch.diagonal(hessian)
    if bool((d > 1e-9).all()): return "minimum"
    if bool((d < -1e-9).all()): return "maximum"
    if bool((d > 1e-9).any()) and bool((d < -1e-9).any()): return "saddle"
    return "degenerate"
''',
        # the determinant's sign alone cannot tell a minimum from a maximum
        '''
import torch
def classify_critical_point(hessian):
    det = float(torch.linalg.det(hessian))
    if det > 1e-9: return "minimum"
    if det < -1e-9: return "saddle"
    return "degenerate"
''',
        # zero eigenvalues counted as positive: a flat direction is not a guarantee of a minimum
        '''
import torch
def classify_critical_point(hessian):
    eig = torch.linalg.eigvalsh(hessian)
    if bool((eig >= 0).all()): return "minimum"
    if bool((eig < 0).all()): return "maximum"
    return "saddle"
''',
        # any zero eigenvalue called degenerate, even with both signs present (that is still a saddle)
        '''
import torch
def classify_critical_point(hessian):
    eig = torch.linalg.eigvalsh(hessian)
    if bool((eig.abs() <= 1e-9).any()): return "degenerate"
    if bool((eig > 0).all()): return "minimum"
    if bool((eig < 0).all()): return "maximum"
    return "saddle"
''',
    ),
)


def _rotated(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@classify_ex.check("diagonal Hessians", hint="At a critical point the sign pattern of the eigenvalues decides.")
def _(f, ref):
    cases = {(2.0, 3.0): "minimum", (-1.0, -4.0): "maximum", (2.0, -1.0): "saddle"}
    for eigs, want in cases.items():
        got = f(torch.diag(torch.tensor(eigs, dtype=torch.float64)))
        assert got == want, f"diag{eigs} gave {got!r}, expected {want!r}"


@classify_ex.check("rotated (non-diagonal) Hessians",
                   hint="Use the eigenvalues (`torch.linalg.eigvalsh`), not the diagonal entries or the determinant.")
def _(f, ref):
    for eigs, want in (((1.0, -0.2), "saddle"), ((-1.0, -3.0), "maximum"), ((0.5, 4.0), "minimum"),
                       ((2.0, 1.0, -0.1), "saddle"), ((-1.0, -2.0, -3.0), "maximum")):
        h = _rotated(eigs, seed=len(eigs))
        got = f(h)
        assert got == want, f"a Hessian with eigenvalues {eigs} (rotated, so off-diagonal entries are nonzero) gave {got!r}, expected {want!r}"
    h = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)  # eigenvalues 3 and -1, positive diagonal
    assert f(h) == "saddle", f"[[1, 2], [2, 1]] has eigenvalues 3 and -1, a saddle; got {f(h)!r}"


@classify_ex.check("zero eigenvalues", hint="With a zero eigenvalue and no sign change the test is inconclusive: "
                   "'degenerate'. With both signs present it is a saddle regardless.")
def _(f, ref):
    for h, want, what in (
        (torch.zeros(2, 2, dtype=torch.float64), "degenerate", "the monkey saddle's zero Hessian"),
        (torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64)), "degenerate", "diag(1, 0)"),
        (torch.diag(torch.tensor([-2.0, 0.0], dtype=torch.float64)), "degenerate", "diag(-2, 0)"),
        (torch.diag(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)), "saddle", "diag(1, 0, -1)"),
    ):
        got = f(h)
        assert got == want, f"{what} gave {got!r}, expected {want!r}"


# --------------------------------------------------------------------------------
filter_ex = Exercise(
    id="landscape.filter-normalize",
    title="Filter normalization",
    entry="filter_normalize",
    prompt=(
        "Write `filter_normalize(d, w)`: `d` and `w` have the same shape `[out, ...]` (a weight matrix `[out, in]` or "
        "a convolution kernel `[out, channels, k, k]`). Each *filter* is one output unit's weights, `w[i]`. Return a "
        "new tensor whose filter `i` points along `d[i]` with the norm of `w[i]`: "
        "$d_i \\leftarrow d_i \\, \\lVert w_i \\rVert / \\lVert d_i \\rVert$. Do not modify `d`."
    ),
    stub='''
import torch

def filter_normalize(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Rescale each filter d[i] (everything but the first index) to the norm of w[i]."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def filter_normalize(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Rescale each filter d[i] (everything but the first index) to the norm of w[i]."""
    d_rows = d.reshape(d.shape[0], -1)  # (out, rest)
    w_rows = w.reshape(w.shape[0], -1)
    scale = w_rows.norm(dim=1, keepdim=True) / d_rows.norm(dim=1, keepdim=True)  # (out, 1)
    return (d_rows * scale).reshape(d.shape)
''',
    wrong=(
        # layer normalization: one scale for the whole tensor
        "def filter_normalize(d, w):\n    return d * w.norm() / d.norm()\n",
        # columns instead of rows
        "def filter_normalize(d, w):\n    return d * w.norm(dim=0, keepdim=True) / d.norm(dim=0, keepdim=True)\n",
        # unit filters: forgot to multiply by the weights' norms
        "def filter_normalize(d, w):\n    r = d.reshape(d.shape[0], -1)\n    return (r / r.norm(dim=1, keepdim=True)).reshape(d.shape)\n",
        # in place
        "def filter_normalize(d, w):\n    r = d.reshape(d.shape[0], -1)\n    r.mul_(w.reshape(w.shape[0], -1).norm(dim=1, keepdim=True) / r.norm(dim=1, keepdim=True))\n    return d\n",
        # only the last dimension of a conv kernel treated as the filter
        "def filter_normalize(d, w):\n    return d * w.norm(dim=-1, keepdim=True) / d.norm(dim=-1, keepdim=True)\n",
    ),
)


def _pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(*shape, generator=g, dtype=torch.float64)
    w = torch.randn(*shape, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3.0, shape[0], dtype=torch.float64).reshape(-1, *[1] * (len(shape) - 1))
    return d, w


@filter_ex.check("same shape, filter norms equal the weights' filter norms",
                 hint="A filter is a row `w[i]`: use `reshape(out, -1)` and `.norm(dim=1, keepdim=True)`.")
def _(f, ref):
    d, w = _pair((6, 5), 0)
    out = f(d.clone(), w)
    assert isinstance(out, torch.Tensor) and out.shape == d.shape, f"expected a tensor of shape {tuple(d.shape)}"
    got, want = out.norm(dim=1), w.norm(dim=1)
    assert torch.allclose(got, want, rtol=1e-10), f"row norms {got.tolist()} should equal the weights' {want.tolist()}"


@filter_ex.check("each filter keeps its direction",
                 hint="Multiply each row of `d` by a positive number; do not mix rows or columns.")
def _(f, ref):
    d, w = _pair((4, 7), 1)
    out = f(d.clone(), w)
    cos = torch.nn.functional.cosine_similarity(out, d, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-10), f"cosines between new and old filters: {cos.tolist()}"


@filter_ex.check("works for convolution kernels [out, channels, k, k]",
                 hint="Everything except the first index belongs to the filter.")
def _(f, ref):
    d, w = _pair((3, 2, 3, 3), 2)
    out = f(d.clone(), w)
    assert out.shape == d.shape, f"expected shape {tuple(d.shape)}, got {tuple(out.shape)}"
    assert torch.allclose(out, ref(d, w), rtol=1e-10, atol=1e-12), "the kernel was normalized differently from filter by filter"


@filter_ex.check("does not modify d", hint="Avoid in-place operations such as `mul_` on `d` or on a view of it.")
def _(f, ref):
    d, w = _pair((3, 4), 3)
    before = d.clone()
    f(d, w)
    assert torch.equal(d, before), "the direction d was changed in place"


# --- Problems: the barrier on a straight line, by experiment ----------------------------------

_BARRIER_HEAD = ("import torch\n\ndef barrier_height(a, b, center, height, n=21):\n"
                 "    def loss(theta):\n"
                 "        return 0.5 * (theta ** 2).sum() + height * torch.exp(-((theta - center) ** 2).sum() / 0.01)\n")
problem_barrier = Exercise(
    id="landscape.problem-linear-barrier",
    title="Measure the barrier on a straight line",
    entry="barrier_height",
    prompt=(
        "Write `barrier_height(a, b, center, height, n=21)` for the loss of the stub, a bowl "
        "$\\tfrac12\\|\\theta\\|^2$ with a bump of the given height at `center`: evaluate it at the `n` points "
        "$(1 - t)\\,a + t\\,b$ for `t` in `torch.linspace(0, 1, n)`, and return (a float) the largest of these "
        "values minus the larger of the two end values. It is 0 when the line has no barrier (as for the bowl "
        "alone, a convex loss) and positive when the loss rises between the ends."
    ),
    stub='''
import torch

def barrier_height(a: torch.Tensor, b: torch.Tensor, center: torch.Tensor, height: float, n: int = 21) -> float:
    """max over t of loss((1 - t) a + t b), minus max(loss(a), loss(b)); t on linspace(0, 1, n)."""
    def loss(theta):  # a bowl with a narrow bump of `height` at `center`
        return 0.5 * (theta ** 2).sum() + height * torch.exp(-((theta - center) ** 2).sum() / 0.01)
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def barrier_height(a: torch.Tensor, b: torch.Tensor, center: torch.Tensor, height: float, n: int = 21) -> float:
    """max over t of loss((1 - t) a + t b), minus max(loss(a), loss(b)); t on linspace(0, 1, n)."""
    def loss(theta):  # a bowl with a narrow bump of `height` at `center`
        return 0.5 * (theta ** 2).sum() + height * torch.exp(-((theta - center) ** 2).sum() / 0.01)
    values = [float(loss((1 - t) * a + t * b)) for t in torch.linspace(0, 1, n, dtype=a.dtype)]
    return max(values) - max(values[0], values[-1])
''',
    wrong=(
        # the midpoint only: misses a barrier that is not in the middle
        _BARRIER_HEAD + "    return float(loss((a + b) / 2)) - max(float(loss(a)), float(loss(b)))\n",
        # the mean along the line instead of the largest value
        _BARRIER_HEAD + "    v = [float(loss((1 - t) * a + t * b)) for t in torch.linspace(0, 1, n, dtype=a.dtype)]\n"
        "    return sum(v) / len(v) - max(v[0], v[-1])\n",
        # the ends not subtracted
        _BARRIER_HEAD + "    return max(float(loss((1 - t) * a + t * b)) for t in torch.linspace(0, 1, n, dtype=a.dtype))\n",
    ),
)


def _bump_loss(theta, center, height):
    return 0.5 * (theta ** 2).sum() + height * torch.exp(-((theta - center) ** 2).sum() / 0.01)


@problem_barrier.check("no barrier on a convex loss", hint="For a convex loss the largest value on the segment is at an end.")
def _(f, ref):
    a = torch.tensor([1.0, -2.0], dtype=torch.float64)
    b = torch.tensor([-3.0, 0.5], dtype=torch.float64)
    got = float(f(a, b, torch.zeros(2, dtype=torch.float64), 0.0))
    assert abs(got) < 1e-12, f"with no bump the loss is the bowl |theta|^2 / 2, convex: the barrier is 0; you returned {got}"


@problem_barrier.check("a bump between two points of equal loss", hint="Between (1, 0) and (-1, 0) the line passes the bump at the origin.")
def _(f, ref):
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    got = float(f(a, -a, torch.zeros(2, dtype=torch.float64), 1.0))
    want = 1.0 - 0.5 - float(torch.exp(torch.tensor(-100.0, dtype=torch.float64)))  # bump height minus the ends' bowl value
    assert abs(got - want) < 1e-12, f"the ends have loss 1/2, the origin 1: the barrier is {want:.6f}; you returned {got}"


@problem_barrier.check("a barrier away from the middle", hint="Take the largest value over all n points, not only t = 1/2.")
def _(f, ref):
    a = torch.tensor([0.0], dtype=torch.float64)
    b = torch.tensor([1.0], dtype=torch.float64)
    center = torch.tensor([0.2], dtype=torch.float64)
    got = float(f(a, b, center, 3.0))
    want = max(float(_bump_loss(a + t * (b - a), center, 3.0)) for t in torch.linspace(0, 1, 21, dtype=torch.float64)) - max(
        float(_bump_loss(a, center, 3.0)), float(_bump_loss(b, center, 3.0)))
    assert abs(got - want) < 1e-9, f"the loss peaks at t = 0.2 with a barrier of {want:.4f}; you returned {got:.4f}"


# --- Problems: sharpness by power iteration, by experiment ------------------------------------

_POWER_HEAD = ("import torch\n\ndef top_eigenvalue(H, iters=200, seed=0):\n"
               "    def hvp(v):\n        return H @ v\n")
problem_power = Exercise(
    id="landscape.problem-power-iteration",
    title="Measure the sharpness with Hessian-vector products",
    entry="top_eigenvalue",
    prompt=(
        "Write `top_eigenvalue(H, iters=200, seed=0)` using only the Hessian-vector product `hvp(v)` of the stub "
        "(for a network it would come from autograd; here it multiplies by a given symmetric matrix $H$): start from "
        "a random vector (`torch.randn` with a `torch.Generator` seeded with `seed`, float64, normalized), repeat "
        "`v = hvp(v)` normalized to length 1 `iters` times, and return the Rayleigh quotient $v^\\top H v$ of the last "
        "`v` as a float. For a positive semi-definite Hessian it converges to the largest eigenvalue, the sharpness."
    ),
    stub='''
import torch

def top_eigenvalue(H: torch.Tensor, iters: int = 200, seed: int = 0) -> float:
    """Largest eigenvalue of a PSD Hessian by power iteration on hvp(v) = H v (use hvp only)."""
    def hvp(v):
        return H @ v
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def top_eigenvalue(H: torch.Tensor, iters: int = 200, seed: int = 0) -> float:
    """Largest eigenvalue of a PSD Hessian by power iteration on hvp(v) = H v (use hvp only)."""
    def hvp(v):
        return H @ v
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(H.shape[0], generator=g, dtype=torch.float64)
    v = v / v.norm()
    for _ in range(iters):
        w = hvp(v)
        v = w / w.norm()
    return float(v @ hvp(v))
''',
    wrong=(
        # no normalization: the vector's length grows like h_max^iters and overflows
        _POWER_HEAD + "    g = torch.Generator().manual_seed(seed)\n"
        "    v = torch.randn(H.shape[0], generator=g, dtype=torch.float64)\n    for _ in range(iters):\n        v = hvp(v)\n"
        "    return float(v @ hvp(v))\n",
        # a single product: the Rayleigh quotient of a random vector is an average of eigenvalues
        _POWER_HEAD + "    g = torch.Generator().manual_seed(seed)\n"
        "    v = torch.randn(H.shape[0], generator=g, dtype=torch.float64)\n    v = v / v.norm()\n    return float(v @ hvp(v))\n",
        # the trace estimate (Hutchinson) instead of the top eigenvalue
        _POWER_HEAD + "    g = torch.Generator().manual_seed(seed)\n"
        "    v = torch.randn(H.shape[0], generator=g, dtype=torch.float64)\n    return float(v @ hvp(v))\n",
    ),
)


def _psd(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@problem_power.check("finds the top eigenvalue of a PSD matrix",
                     hint="Normalize after every product, and return v^T H v of the final unit vector.")
def _(f, ref):
    for eigs in ((5.0, 1.0, 0.5, 0.1), (40.0, 20.0, 3.0, 0.0, 0.0, 1.0)):
        h = _psd(eigs, seed=len(eigs))
        got = float(f(h))
        assert abs(got - max(eigs)) < 1e-3 * max(eigs), f"eigenvalues {eigs}: expected {max(eigs)}, you returned {got}"


@problem_power.check("stays finite when the top eigenvalue is large", hint="Without normalizing, v grows like h_max^iters.")
def _(f, ref):
    h = _psd((1e4, 10.0, 1.0), seed=7)
    got = float(f(h, iters=200))
    assert torch.isfinite(torch.tensor(got)) and abs(got - 1e4) < 10.0, f"expected 1e4, you returned {got}"


@problem_power.check("a few iterations give what a few power steps give",
                     hint="Start from the seeded, normalized random vector and apply exactly `iters` normalized products.")
def _(f, ref):
    h = _psd((3.0, 2.5, 1.0, 0.2), seed=11)  # close top eigenvalues: a few steps are far from converged
    for iters, seed in ((1, 0), (3, 5)):
        got, want = float(f(h, iters=iters, seed=seed)), ref(h, iters=iters, seed=seed)
        assert abs(got - want) < 1e-10, f"after {iters} steps from seed {seed} power iteration gives {want:.6f}; you returned {got:.6f}"


@problem_power.check("the sharpness of a least-squares loss",
                     hint="The Hessian of the mean squared error of x @ w against y is 2/N X^T X.")
def _(f, ref):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    H = 2 / 40 * x.T @ x
    want = float(torch.linalg.eigvalsh(H)[-1])
    got = float(f(H))
    assert abs(got - want) < 1e-4 * want, f"the top eigenvalue of this loss's Hessian is {want:.5f}; you returned {got:.5f}"
