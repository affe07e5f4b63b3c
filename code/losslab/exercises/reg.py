"""Exercises for book/07_regularization.ipynb: inverted dropout, the L1 proximal step, and the Problems."""

import math

import torch

from . import Exercise

inverted_dropout = Exercise(
    id="reg.inverted-dropout",
    title="Inverted dropout",
    entry="inverted_dropout",
    prompt=(
        "Write `inverted_dropout(x, p, training, generator)`: in training, keep each element with probability "
        "$1 - p$ and scale the survivors by $1/(1-p)$; in evaluation return `x` unchanged (as a new tensor). "
        "Draw the mask with `torch.empty_like(x).bernoulli_(1 - p, generator=generator)`; handle $p = 1$."
    ),
    stub='''
import torch

def inverted_dropout(x: torch.Tensor, p: float, training: bool, generator: torch.Generator) -> torch.Tensor:
    """Zero each element with probability p and scale survivors by 1/(1-p) in training; identity in evaluation."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def inverted_dropout(x: torch.Tensor, p: float, training: bool, generator: torch.Generator) -> torch.Tensor:
    """Zero each element with probability p and scale survivors by 1/(1-p) in training; identity in evaluation."""
    if not training or p == 0:
        return x.clone()
    if p == 1:
        return torch.zeros_like(x)
    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)  # 1 with probability 1 - p
    return x * keep / (1 - p)
''',
    wrong=(
        # forgets the 1/(1-p) scaling: the expected activation shrinks
        "import torch\ndef inverted_dropout(x, p, training, generator):\n"
        "    if not training:\n        return x.clone()\n"
        "    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)\n    return x * keep\n",
        # keeps with probability p instead of 1 - p
        "import torch\ndef inverted_dropout(x, p, training, generator):\n"
        "    if not training or p == 0:\n        return x.clone()\n    if p == 1:\n        return torch.zeros_like(x)\n"
        "    keep = torch.empty_like(x).bernoulli_(p, generator=generator)\n    return x * keep / (1 - p)\n",
        # drops in evaluation mode too
        "import torch\ndef inverted_dropout(x, p, training, generator):\n"
        "    if p == 1:\n        return torch.zeros_like(x)\n"
        "    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)\n    return x * keep / (1 - p)\n",
        # the old, non-inverted convention: scale by (1 - p) at evaluation instead
        "import torch\ndef inverted_dropout(x, p, training, generator):\n"
        "    if not training:\n        return x * (1 - p)\n"
        "    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)\n    return x * keep\n",
        # divides by zero at p = 1
        "import torch\ndef inverted_dropout(x, p, training, generator):\n"
        "    if not training:\n        return x.clone()\n"
        "    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)\n    return x * keep / (1 - p)\n",
    ),
)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@inverted_dropout.check("evaluation mode returns x unchanged", hint="With `training=False`, dropout is the identity: inverted dropout needs no rescaling at test time.")
def _(f, ref):
    x = torch.randn(5, 4, dtype=torch.float64, generator=_gen(0))
    y = f(x.clone(), 0.5, False, _gen(1))
    assert isinstance(y, torch.Tensor) and y.shape == x.shape, "expected a tensor of the shape of x"
    assert torch.equal(y, x), "in evaluation mode the output must equal the input"


@inverted_dropout.check("matches torch.nn.functional.dropout with the same generator state",
                        hint="Draw `keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)`, then return `x * keep / (1 - p)`.")
def _(f, ref):
    x = torch.randn(40, 30, dtype=torch.float64, generator=_gen(2))
    for p in (0.2, 0.5, 0.9):
        torch.manual_seed(7)
        expected = torch.nn.functional.dropout(x, p, training=True)
        got = f(x.clone(), p, True, _gen(7))
        assert torch.allclose(got, expected, rtol=1e-12, atol=0), f"p = {p}: the output differs from F.dropout"


@inverted_dropout.check("keeps the expected value of each activation",
                        hint="Survivors are scaled by 1/(1-p), so that E[output] = x.")
def _(f, ref):
    x = torch.ones(200_000, dtype=torch.float64)
    y = f(x, 0.3, True, _gen(3))
    kept = (y != 0).double().mean().item()
    assert abs(kept - 0.7) < 0.01, f"expected about 70% of elements kept at p = 0.3, got {kept:.1%}"
    assert abs(y.mean().item() - 1.0) < 0.02, f"the mean output is {y.mean().item():.3f}, expected about 1 (the mean input)"


@inverted_dropout.check("handles p = 0 and p = 1", hint="p = 0 drops nothing; p = 1 drops everything (return zeros, no division by 0).")
def _(f, ref):
    x = torch.randn(10, dtype=torch.float64, generator=_gen(4))
    assert torch.equal(f(x.clone(), 0.0, True, _gen(5)), x), "p = 0 must return x"
    y = f(x.clone(), 1.0, True, _gen(5))
    assert torch.equal(y, torch.zeros_like(x)), f"p = 1 must return zeros, got {y.tolist()[:3]}..."


prox_l1 = Exercise(
    id="reg.prox-l1",
    title="The L1 proximal step (soft thresholding)",
    entry="prox_l1",
    prompt=(
        "Write `prox_l1(w, grad_w, lr, strength)`: one proximal-gradient step for $f(w) + \\lambda\\|w\\|_1$: "
        "a gradient step $v = w - \\eta\\nabla f(w)$, then soft thresholding "
        "$\\mathrm{sign}(v)\\max(|v| - \\eta\\lambda, 0)$. Weights inside the threshold must become exactly 0."
    ),
    stub='''
import torch

def prox_l1(w: torch.Tensor, grad_w: torch.Tensor, lr: float, strength: float) -> torch.Tensor:
    """One ISTA step: gradient step on the smooth part, then soft-threshold by lr * strength."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def prox_l1(w: torch.Tensor, grad_w: torch.Tensor, lr: float, strength: float) -> torch.Tensor:
    """One ISTA step: gradient step on the smooth part, then soft-threshold by lr * strength."""
    v = w - lr * grad_w
    return torch.sign(v) * torch.clamp(v.abs() - lr * strength, min=0)
''',
    wrong=(
        # subgradient step: never lands on zero
        "import torch\ndef prox_l1(w, grad_w, lr, strength):\n    return w - lr * (grad_w + strength * torch.sign(w))\n",
        # thresholds by strength, forgetting the step size
        "import torch\ndef prox_l1(w, grad_w, lr, strength):\n    v = w - lr * grad_w\n"
        "    return torch.sign(v) * torch.clamp(v.abs() - strength, min=0)\n",
        # hard thresholding: zeroes small weights but does not shrink the others
        "import torch\ndef prox_l1(w, grad_w, lr, strength):\n    v = w - lr * grad_w\n"
        "    return torch.where(v.abs() > lr * strength, v, torch.zeros_like(v))\n",
        # thresholds before the gradient step
        "import torch\ndef prox_l1(w, grad_w, lr, strength):\n"
        "    v = torch.sign(w) * torch.clamp(w.abs() - lr * strength, min=0)\n    return v - lr * grad_w\n",
        # loses the sign
        "import torch\ndef prox_l1(w, grad_w, lr, strength):\n    v = w - lr * grad_w\n"
        "    return torch.clamp(v.abs() - lr * strength, min=0)\n",
    ),
)


@prox_l1.check("small weights become exactly zero", hint="Every $|v| \\le \\eta\\lambda$ maps to 0: use a clamp at 0, not a subgradient step.")
def _(f, ref):
    w = torch.tensor([0.05, -0.08, 0.0, 0.1], dtype=torch.float64)
    y = f(w.clone(), torch.zeros_like(w), 0.5, 0.2)  # threshold 0.1
    assert torch.equal(y, torch.zeros_like(w)), f"expected exact zeros for |v| <= 0.1, got {y.tolist()}"


@prox_l1.check("large weights shrink by lr * strength towards 0, keeping their sign",
               hint="$S_t(v) = \\mathrm{sign}(v)\\max(|v| - t, 0)$ with $t = \\eta\\lambda$.")
def _(f, ref):
    w = torch.tensor([2.0, -3.0], dtype=torch.float64)
    y = f(w.clone(), torch.zeros_like(w), 0.5, 0.4)
    expected = torch.tensor([1.8, -2.8], dtype=torch.float64)
    assert torch.allclose(y, expected, atol=1e-12), f"expected {expected.tolist()}, got {y.tolist()}"


@prox_l1.check("takes the gradient step before thresholding", hint="Threshold $v = w - \\eta\\nabla f(w)$, not $w$.")
def _(f, ref):
    w = torch.tensor([0.05, 1.0, -1.0], dtype=torch.float64)
    g = torch.tensor([-1.0, 2.0, 0.5], dtype=torch.float64)
    y = f(w.clone(), g, 0.5, 0.2)  # v = [0.55, 0.0, -1.25], t = 0.1
    expected = torch.tensor([0.45, 0.0, -1.15], dtype=torch.float64)
    assert torch.allclose(y, expected, atol=1e-12), f"expected {expected.tolist()}, got {y.tolist()}"


@prox_l1.check("matches the analytic soft threshold on random inputs", hint="Compare with `torch.sign(v) * torch.clamp(v.abs() - t, min=0)`.")
def _(f, ref):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(500, dtype=torch.float64, generator=g) * 3
    gr = torch.randn(500, dtype=torch.float64, generator=g)
    assert torch.allclose(f(w.clone(), gr, 0.1, 2.0), ref(w, gr, 0.1, 2.0), atol=1e-12), "some values differ"


# --- Problems (Chapter 7) -------------------------------------------------------------------------

step_size_sharpness = Exercise(
    id="reg.problem-step-size-sharpness",
    title="Larger steps, flatter minima",
    entry="final_sharpness",
    prompt=(
        "Write `final_sharpness(lr, steps)`: run gradient descent with step `lr` on $L(u, v) = \\frac12(uv - 1)^2$ "
        "from $(u, v) = (2.8, 0.1)$ for `steps` steps and return the sharpness $u^2 + v^2$ of the point where it ends. "
        "The checks run it for several steps sizes and expect the sharpness to fall as the step grows, below the "
        "gradient flow's $\\sqrt{(u_0^2 - v_0^2)^2 + 4}$."
    ),
    stub='''
def final_sharpness(lr: float, steps: int) -> float:
    """Gradient descent on (uv - 1)^2 / 2 from (2.8, 0.1); return u^2 + v^2 at the end."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
def final_sharpness(lr: float, steps: int) -> float:
    """Gradient descent on (uv - 1)^2 / 2 from (2.8, 0.1); return u^2 + v^2 at the end."""
    u, v = 2.8, 0.1
    for _ in range(steps):
        r = u * v - 1  # the residual; dL/du = r v, dL/dv = r u
        u, v = u - lr * r * v, v - lr * r * u  # both from the old point
    return u * u + v * v
''',
    wrong=(
        # returns the quantity the gradient flow conserves, not the sharpness
        "def final_sharpness(lr, steps):\n    u, v = 2.8, 0.1\n    for _ in range(steps):\n"
        "        r = u * v - 1\n        u, v = u - lr * r * v, v - lr * r * u\n    return u * u - v * v\n",
        # updates u first and uses the new u for v (not gradient descent)
        "def final_sharpness(lr, steps):\n    u, v = 2.8, 0.1\n    for _ in range(steps):\n"
        "        r = u * v - 1\n        u = u - lr * r * v\n        r = u * v - 1\n        v = v - lr * r * u\n"
        "    return u * u + v * v\n",
        # forgets that the gradient of (uv - 1)^2 / 2 in u is (uv - 1) v: uses (uv - 1) alone
        "def final_sharpness(lr, steps):\n    u, v = 2.8, 0.1\n    for _ in range(steps):\n"
        "        r = u * v - 1\n        u, v = u - lr * r, v - lr * r\n    return u * u + v * v\n",
    ),
)


@step_size_sharpness.check("ends at a minimum, at the reference's sharpness",
                           hint="Update u and v together from the old point: dL/du = (uv - 1) v, dL/dv = (uv - 1) u.")
def _(f, ref):
    for lr in (0.02, 0.1):
        got, want = float(f(lr, 1200)), ref(lr, 1200)
        assert abs(got - want) < 1e-6 * want, f"lr = {lr}: expected a sharpness of {want:.6f}, got {got:.6f}"


@step_size_sharpness.check("larger steps end at flatter minima than the gradient flow",
                           hint="The flow conserves u^2 - v^2, so it ends at sqrt((u0^2 - v0^2)^2 + 4).")
def _(f, ref):
    flow = math.sqrt((2.8**2 - 0.1**2) ** 2 + 4)
    values = [float(f(lr, 1200)) for lr in (0.02, 0.08, 0.16)]
    assert values[0] > values[1] > values[2], f"expected the sharpness to fall as the step grows, got {values}"
    assert values[0] < flow, f"expected every run below the flow's {flow:.4f}, got {values[0]:.4f}"


double_descent = Exercise(
    id="reg.problem-double-descent",
    title="Find the interpolation peak",
    entry="min_norm_test_errors",
    prompt=(
        "Write `min_norm_test_errors(x, y, x_test, y_test, A, widths)`: for each width $p$ in `widths`, use the "
        "random ReLU features $\\mathrm{relu}(x A_{:, :p})$ (the first $p$ columns of `A`), fit the minimum-norm "
        "least-squares weights (`torch.linalg.pinv`), and return the list of mean squared errors on the test set. "
        "The checks expect the error to peak where $p$ equals the number of training examples."
    ),
    stub='''
import torch

def min_norm_test_errors(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                         A: torch.Tensor, widths: list[int]) -> list[float]:
    """Test MSE of the minimum-norm fit on relu(x @ A[:, :p]) for each p in widths."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def min_norm_test_errors(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                         A: torch.Tensor, widths: list[int]) -> list[float]:
    """Test MSE of the minimum-norm fit on relu(x @ A[:, :p]) for each p in widths."""
    errors = []
    for p in widths:
        phi, phi_test = torch.relu(x @ A[:, :p]), torch.relu(x_test @ A[:, :p])  # (n, p), (m, p)
        w = torch.linalg.pinv(phi) @ y  # the minimum-norm least-squares weights, (p,)
        errors.append(float(((phi_test @ w - y_test) ** 2).mean()))
    return errors
''',
    wrong=(
        # reports the training error, which only falls
        "import torch\ndef min_norm_test_errors(x, y, x_test, y_test, A, widths):\n    out = []\n    for p in widths:\n"
        "        phi = torch.relu(x @ A[:, :p])\n        w = torch.linalg.pinv(phi) @ y\n"
        "        out.append(float(((phi @ w - y) ** 2).mean()))\n    return out\n",
        # a heavy ridge penalty instead of the minimum-norm fit: no peak
        "import torch\ndef min_norm_test_errors(x, y, x_test, y_test, A, widths):\n    out = []\n    for p in widths:\n"
        "        phi, pt = torch.relu(x @ A[:, :p]), torch.relu(x_test @ A[:, :p])\n"
        "        w = torch.linalg.solve(phi.T @ phi + 1.0 * torch.eye(p, dtype=phi.dtype), phi.T @ y)\n"
        "        out.append(float(((pt @ w - y_test) ** 2).mean()))\n    return out\n",
        # uses random columns of its own instead of the given A: not the reference's features
        "import torch\ndef min_norm_test_errors(x, y, x_test, y_test, A, widths):\n    out = []\n    for p in widths:\n"
        "        B = A[:, -p:]\n        phi, pt = torch.relu(x @ B), torch.relu(x_test @ B)\n"
        "        w = torch.linalg.pinv(phi) @ y\n        out.append(float(((pt @ w - y_test) ** 2).mean()))\n    return out\n",
    ),
)


def _dd_data():
    g = torch.Generator().manual_seed(3)
    d, n, m = 5, 20, 100
    beta = torch.randn(d, generator=g, dtype=torch.float64)
    x, xt = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)
    y = x @ beta + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    yt = xt @ beta
    A = torch.randn(d, 120, generator=g, dtype=torch.float64) / d**0.5
    return x, y, xt, yt, A, [5, 10, 20, 30, 120]


@double_descent.check("returns one test error per width, equal to the reference's",
                      hint="Features relu(x @ A[:, :p]); weights torch.linalg.pinv(features) @ y; the error on x_test, y_test.")
def _(f, ref):
    data = _dd_data()
    got, want = [float(v) for v in f(*data)], ref(*data)
    assert len(got) == len(want), f"expected {len(want)} errors, one per width, got {len(got)}"
    bad = [p for p, a, b in zip(data[-1], got, want) if not abs(a - b) <= 1e-6 * b + 1e-12]
    assert not bad, f"the errors at widths {bad} differ from the reference's"


@double_descent.check("the test error peaks at p = n and falls again", hint="Report the error on the test set, not the training set.")
def _(f, ref):
    data = _dd_data()
    got = [float(v) for v in f(*data)]
    widths = data[-1]
    assert widths[got.index(max(got))] == 20, f"expected the peak at p = n = 20, got it at p = {widths[got.index(max(got))]}"
    assert got[-1] < max(got) / 5, "expected the error far past the threshold to fall well below the peak"
