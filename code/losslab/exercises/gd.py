"""Exercises for book/03_gradient_descent.ipynb: SGD with momentum, and Adam's update with bias correction.

Both are checked against ``torch.optim`` in float64. See Chapter 3.
"""

import torch

from . import Exercise


def _stream(steps: int, shape=(4, 3), seed: int = 0, scale: float = 1.0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * scale for _ in range(steps)]


def _torch_run(cls, p0: torch.Tensor, grads: list, **hyper) -> torch.Tensor:
    p = torch.nn.Parameter(p0.clone())
    opt = cls([p], **hyper)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


# --- SGD with momentum ------------------------------------------------------------

sgd_momentum = Exercise(
    id="gd.sgd-momentum",
    title="SGD with momentum",
    entry="sgd_momentum",
    prompt=(
        "Write one step of SGD with (heavy-ball) momentum in PyTorch's convention: "
        "$b_t = \\beta b_{t-1} + g_t$ (with $b_1 = g_1$), then $\\theta_t = \\theta_{t-1} - \\eta b_t$. "
        "Return new tensors; do not modify the inputs."
    ),
    stub='''
import torch

def sgd_momentum(params, grads, buf, *, lr, momentum):
    """One SGD step with momentum. params, grads: [N, D]; buf: [N, D], or None before the first step.

    Returns (new_params, new_buf), as new tensors.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def sgd_momentum(params, grads, buf, *, lr, momentum):
    """One SGD step with momentum. params, grads: [N, D]; buf: [N, D], or None before the first step.

    Returns (new_params, new_buf), as new tensors.
    """
    buf = grads.clone() if buf is None else momentum * buf + grads
    return params - lr * buf, buf
''',
    wrong=(
        # an exponential moving average, (1 - beta) g: steps 1/(1 - beta) times too small once it builds up
        "def sgd_momentum(params, grads, buf, *, lr, momentum):\n"
        "    buf = grads.clone() if buf is None else momentum * buf + (1 - momentum) * grads\n"
        "    return params - lr * buf, buf\n",
        # forgets the buffer when stepping
        "def sgd_momentum(params, grads, buf, *, lr, momentum):\n"
        "    buf = grads.clone() if buf is None else momentum * buf + grads\n"
        "    return params - lr * grads, buf\n",
        # climbs instead of descending
        "def sgd_momentum(params, grads, buf, *, lr, momentum):\n"
        "    buf = grads.clone() if buf is None else momentum * buf + grads\n"
        "    return params + lr * buf, buf\n",
        # updates the caller's tensors in place
        "def sgd_momentum(params, grads, buf, *, lr, momentum):\n"
        "    if buf is None:\n"
        "        buf = grads.clone()\n"
        "    else:\n"
        "        buf.mul_(momentum).add_(grads)\n"
        "    params.sub_(lr * buf)\n"
        "    return params, buf\n",
        # momentum applied to the gradient instead of the buffer
        "def sgd_momentum(params, grads, buf, *, lr, momentum):\n"
        "    buf = grads.clone() if buf is None else buf + momentum * grads\n"
        "    return params - lr * buf, buf\n",
    ),
)


@sgd_momentum.check("the first step is a plain gradient step and the buffer starts at the gradient",
                    hint="Before the first step `buf` is None: set it to (a copy of) the gradient, as PyTorch does.")
def _(f, ref):
    p = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    g = torch.tensor([[0.5, 4.0]], dtype=torch.float64)
    new_p, buf = f(p.clone(), g.clone(), None, lr=0.1, momentum=0.9)
    assert isinstance(new_p, torch.Tensor) and isinstance(buf, torch.Tensor), "return (new_params, new_buf), two tensors"
    assert torch.allclose(new_p, p - 0.1 * g), f"after one step expected {(p - 0.1 * g).tolist()}, got {new_p.tolist()}"
    assert torch.allclose(buf, g), f"the buffer after the first step should equal the gradient {g.tolist()}, got {buf.tolist()}"


@sgd_momentum.check("matches torch.optim.SGD(momentum=0.9) over 50 steps",
                    hint="$b_t = \\beta b_{t-1} + g_t$ (no $1 - \\beta$ factor), then $\\theta_t = \\theta_{t-1} - \\eta b_t$.")
def _(f, ref):
    grads = _stream(50)
    p0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    p, buf = p0.clone(), None
    for g in grads:
        p, buf = f(p, g.clone(), buf, lr=0.05, momentum=0.9)
    expected = _torch_run(torch.optim.SGD, p0, grads, lr=0.05, momentum=0.9)
    err = float((p - expected).abs().max())
    assert err < 1e-9, f"after 50 steps the largest difference from torch.optim.SGD is {err:.3g}"


@sgd_momentum.check("momentum 0 is plain gradient descent",
                    hint="With $\\beta = 0$ the buffer is just the current gradient.")
def _(f, ref):
    grads = _stream(5, seed=2)
    p, buf = torch.zeros(4, 3, dtype=torch.float64), None
    for g in grads:
        p, buf = f(p, g.clone(), buf, lr=0.1, momentum=0.0)
    expected = -0.1 * sum(grads)
    assert torch.allclose(p, expected), "with momentum=0 the result should be -lr times the sum of the gradients"


@sgd_momentum.check("does not modify its inputs",
                    hint="In-place methods (`mul_`, `add_`, `sub_`) change the caller's tensors; build new ones.")
def _(f, ref):
    p = torch.ones(2, 2, dtype=torch.float64)
    g = torch.full((2, 2), 0.5, dtype=torch.float64)
    buf = torch.full((2, 2), 2.0, dtype=torch.float64)
    f(p, g, buf, lr=0.1, momentum=0.9)
    assert torch.equal(p, torch.ones(2, 2, dtype=torch.float64)), "params changed"
    assert torch.equal(buf, torch.full((2, 2), 2.0, dtype=torch.float64)), "the buffer passed in changed"
    assert torch.equal(g, torch.full((2, 2), 0.5, dtype=torch.float64)), "grads changed"


# --- Adam -------------------------------------------------------------------------

adam = Exercise(
    id="gd.adam",
    title="Adam's update with bias correction",
    entry="adam_update",
    prompt=(
        "Write one step of Adam: update the moving averages $m$ and $v$, correct their bias "
        "with $1 - \\beta^t$, and step $\\theta \\leftarrow \\theta - \\eta\\, \\hat m / (\\sqrt{\\hat v} + \\epsilon)$."
    ),
    stub='''
import torch

def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):
    """One Adam step. params, grads, m, v: [N, D] (m = v = 0 before the first step); step: 1, 2, 3, ...

    Returns (new_params, new_m, new_v).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):
    """One Adam step. params, grads, m, v: [N, D] (m = v = 0 before the first step); step: 1, 2, 3, ...

    Returns (new_params, new_m, new_v).
    """
    m = beta1 * m + (1 - beta1) * grads
    v = beta2 * v + (1 - beta2) * grads**2
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return params - lr * m_hat / (v_hat.sqrt() + eps), m, v
''',
    wrong=(
        # no bias correction: the first steps are far too small
        "def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):\n"
        "    m = beta1 * m + (1 - beta1) * grads\n"
        "    v = beta2 * v + (1 - beta2) * grads**2\n"
        "    return params - lr * m / (v.sqrt() + eps), m, v\n",
        # the second moment of g, not g squared
        "def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):\n"
        "    m = beta1 * m + (1 - beta1) * grads\n"
        "    v = beta2 * v + (1 - beta2) * grads.abs()\n"
        "    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)\n"
        "    return params - lr * m_hat / (v_hat.sqrt() + eps), m, v\n",
        # the betas swapped round in the averages
        "def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):\n"
        "    m = (1 - beta1) * m + beta1 * grads\n"
        "    v = (1 - beta2) * v + beta2 * grads**2\n"
        "    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)\n"
        "    return params - lr * m_hat / (v_hat.sqrt() + eps), m, v\n",
        # bias correction with the wrong power (one step behind)
        "def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):\n"
        "    m = beta1 * m + (1 - beta1) * grads\n"
        "    v = beta2 * v + (1 - beta2) * grads**2\n"
        "    m_hat, v_hat = m / (1 - beta1**(step + 1)), v / (1 - beta2**(step + 1))\n"
        "    return params - lr * m_hat / (v_hat.sqrt() + eps), m, v\n",
        # epsilon inside the square root
        "def adam_update(params, grads, m, v, step, *, lr, beta1, beta2, eps):\n"
        "    m = beta1 * m + (1 - beta1) * grads\n"
        "    v = beta2 * v + (1 - beta2) * grads**2\n"
        "    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)\n"
        "    return params - lr * m_hat / (v_hat + eps).sqrt(), m, v\n",
    ),
)


def _run_adam(f, p0, grads, **hyper):
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        p, m, v = f(p, g.clone(), m, v, t, **hyper)
    return p


@adam.check("the first step moves every coordinate by about lr, whatever the gradient's size",
            hint="At $t = 1$, $\\hat m_1 = g_1$ and $\\hat v_1 = g_1^2$: the step is $\\eta\\,\\mathrm{sign}(g_1)$ (up to $\\epsilon$).")
def _(f, ref):
    p = torch.zeros(1, 3, dtype=torch.float64)
    g = torch.tensor([[1e-3, -2.0, 50.0]], dtype=torch.float64)
    out = f(p.clone(), g, torch.zeros_like(p), torch.zeros_like(p), 1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-12)
    assert isinstance(out, tuple) and len(out) == 3, "return (new_params, new_m, new_v)"
    expected = torch.tensor([[-0.1, 0.1, -0.1]], dtype=torch.float64)
    assert torch.allclose(out[0], expected, atol=1e-8), f"expected {expected.tolist()} after one step, got {out[0].tolist()}"


@adam.check("matches torch.optim.Adam over 50 steps",
            hint="$m \\leftarrow \\beta_1 m + (1-\\beta_1) g$, $v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2$, divide by $1 - \\beta^t$, and add $\\epsilon$ after the square root.")
def _(f, ref):
    grads = _stream(50, seed=5)
    p0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    hyper = dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-8)
    p = _run_adam(f, p0, grads, **hyper)
    expected = _torch_run(torch.optim.Adam, p0, grads, lr=0.01, betas=(0.8, 0.99), eps=1e-8)
    err = float((p - expected).abs().max())
    assert err < 1e-9, f"after 50 steps the largest difference from torch.optim.Adam is {err:.3g}"


@adam.check("matches torch.optim.Adam with a large eps on tiny gradients",
            hint="$\\epsilon$ is added to $\\sqrt{\\hat v}$, outside the square root.")
def _(f, ref):
    grads = _stream(20, seed=7, scale=1e-4)
    p0 = torch.zeros(4, 3, dtype=torch.float64)
    p = _run_adam(f, p0, grads, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-3)
    expected = _torch_run(torch.optim.Adam, p0, grads, lr=0.1, betas=(0.9, 0.999), eps=1e-3)
    err = float((p - expected).abs().max())
    assert err < 1e-9, f"with eps=1e-3 and gradients ~1e-4 the largest difference from torch.optim.Adam is {err:.3g}"


# --- Problems: experiments ----------------------------------------------------------------

measured_rate_problem = Exercise(
    id="gd.problem-measured-rate",
    title="Measure gradient descent's linear rate",
    entry="measured_gd_rate",
    prompt=(
        "Run gradient descent with $\\eta = 1/L$ on $f(x, y) = \\tfrac12(x^2 + \\kappa y^2)$ (so $L = \\kappa$, $\\mu = 1$) "
        "from $(1, 1)$ for `steps` steps, and return the rate measured from the trajectory, "
        "$(\\|\\theta_{\\text{steps}}\\| / \\|\\theta_{\\text{steps}/2}\\|)^{1/(\\text{steps}/2)}$. "
        "The checks compare it with the chapter's $1 - 1/\\kappa$."
    ),
    stub='''
import torch

def measured_gd_rate(kappa, steps=200):
    """Run GD at lr = 1/kappa on f = (x^2 + kappa y^2)/2 from (1, 1); return the rate measured over the second half."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def measured_gd_rate(kappa, steps=200):
    """Run GD at lr = 1/kappa on f = (x^2 + kappa y^2)/2 from (1, 1); return the rate measured over the second half."""
    h = torch.tensor([1.0, kappa], dtype=torch.float64)   # the curvatures
    theta = torch.ones(2, dtype=torch.float64)
    norms = [float(theta.norm())]
    for _ in range(steps):
        theta = theta - (1 / kappa) * h * theta           # the gradient is h * theta
        norms.append(float(theta.norm()))
    half = steps // 2
    return (norms[steps] / norms[half]) ** (1 / (steps - half))
''',
    wrong=(
        # measures from the loss, which shrinks by the rate squared
        "import torch\n"
        "def measured_gd_rate(kappa, steps=200):\n"
        "    h = torch.tensor([1.0, kappa], dtype=torch.float64)\n"
        "    theta = torch.ones(2, dtype=torch.float64)\n"
        "    losses = [float(0.5 * (h * theta**2).sum())]\n"
        "    for _ in range(steps):\n"
        "        theta = theta - (1 / kappa) * h * theta\n"
        "        losses.append(float(0.5 * (h * theta**2).sum()))\n"
        "    half = steps // 2\n"
        "    return (losses[steps] / losses[half]) ** (1 / (steps - half))\n",
        # the step 2/(mu + L) instead of 1/L: the best-step rate (kappa-1)/(kappa+1)
        "import torch\n"
        "def measured_gd_rate(kappa, steps=200):\n"
        "    h = torch.tensor([1.0, kappa], dtype=torch.float64)\n"
        "    theta = torch.ones(2, dtype=torch.float64)\n"
        "    norms = [float(theta.norm())]\n"
        "    for _ in range(steps):\n"
        "        theta = theta - (2 / (1 + kappa)) * h * theta\n"
        "        norms.append(float(theta.norm()))\n"
        "    half = steps // 2\n"
        "    return (norms[steps] / norms[half]) ** (1 / (steps - half))\n",
        # the average factor over the whole run, from the start
        "import torch\n"
        "def measured_gd_rate(kappa, steps=200):\n"
        "    h = torch.tensor([1.0, kappa], dtype=torch.float64)\n"
        "    theta = torch.ones(2, dtype=torch.float64)\n"
        "    start = float(theta.norm())\n"
        "    for _ in range(steps):\n"
        "        theta = theta - (1 / kappa) * h * theta\n"
        "    return (float(theta.norm()) / start) ** (1 / steps)\n",
    ),
)


@measured_rate_problem.check("the measured rate is 1 - 1/kappa for kappa = 10, 50 and 200",
                             hint="Step $\\theta \\leftarrow \\theta - \\eta\\, h \\odot \\theta$ with $\\eta = 1/\\kappa$, and measure "
                                  "the norm of $\\theta$ (not the loss) over the second half of the run.")
def _(f, ref):
    for kappa in (10.0, 50.0, 200.0):
        rate = float(f(kappa, steps=400))
        assert abs(rate / (1 - 1 / kappa) - 1) < 1e-3, f"kappa = {kappa:g}: measured {rate:.6f}, expected 1 - 1/kappa = {1 - 1 / kappa:.6f}"


@measured_rate_problem.check("a larger condition number gives a slower rate (closer to 1)",
                             hint="The flat direction, with curvature 1, moves by only $1/\\kappa$ of its distance per step.")
def _(f, ref):
    rates = [float(f(k, steps=200)) for k in (4.0, 16.0, 64.0)]
    assert rates[0] < rates[1] < rates[2] < 1, f"rates for kappa = 4, 16, 64: {rates}; expected increasing and below 1"


@measured_rate_problem.check("the rate is measured after the transient, from the trajectory",
                             hint="Use the norms at steps/2 and steps, not the starting point: the sharp direction's "
                                  "error vanishes in the first step and distorts a rate measured from step 0.")
def _(f, ref):
    kappa = 4.0
    rate = float(f(kappa, steps=6))
    assert abs(rate - ref(kappa, steps=6)) < 1e-9, f"over 6 steps with kappa = 4 expected {ref(kappa, steps=6):.6f}, got {rate:.6f}"


polyak_problem = Exercise(
    id="gd.problem-polyak-average",
    title="Average below the noise floor",
    entry="sgd_last_and_average",
    prompt=(
        "Run constant-step SGD with single-example gradients on the least-squares problem $f(w) = \\tfrac{1}{2N}\\|Xw - y\\|^2$ "
        "for `steps` steps from $w = 0$, drawing example indices with `torch.randint(0, N, (steps,), generator=gen)`. "
        "Return the excess loss $f - f_{\\min}$ of the last iterate and of the Polyak average of the iterates after steps "
        "`steps // 2 + 1` to `steps` (the second half). The checks measure both against the noise floor."
    ),
    stub='''
import torch

def sgd_last_and_average(X, y, *, lr, steps, gen):
    """SGD with one random example per step from w = 0. X: [N, D], y: [N].

    Returns (excess loss of the last iterate, excess loss of the average of the second half's iterates).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def sgd_last_and_average(X, y, *, lr, steps, gen):
    """SGD with one random example per step from w = 0. X: [N, D], y: [N].

    Returns (excess loss of the last iterate, excess loss of the average of the second half's iterates).
    """
    loss = lambda w: 0.5 * float(((X @ w - y) ** 2).mean())
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    w, total, count = torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros(X.shape[1], dtype=X.dtype), 0
    for t, i in enumerate(torch.randint(0, X.shape[0], (steps,), generator=gen).tolist(), start=1):
        w = w - lr * X[i] * (X[i] @ w - y[i])          # the gradient of example i
        if t > steps // 2:
            total, count = total + w, count + 1
    return loss(w) - loss(w_star), loss(total / count) - loss(w_star)
''',
    wrong=(
        # averages every iterate from the start: the transient from w = 0 dominates
        "import torch\n"
        "def sgd_last_and_average(X, y, *, lr, steps, gen):\n"
        "    loss = lambda w: 0.5 * float(((X @ w - y) ** 2).mean())\n"
        "    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]\n"
        "    w, total = torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros(X.shape[1], dtype=X.dtype)\n"
        "    for i in torch.randint(0, X.shape[0], (steps,), generator=gen).tolist():\n"
        "        w = w - lr * X[i] * (X[i] @ w - y[i])\n"
        "        total = total + w\n"
        "    return loss(w) - loss(w_star), loss(total / steps) - loss(w_star)\n",
        # averages the losses of the iterates instead of taking the loss of their average: that is the floor again
        "import torch\n"
        "def sgd_last_and_average(X, y, *, lr, steps, gen):\n"
        "    loss = lambda w: 0.5 * float(((X @ w - y) ** 2).mean())\n"
        "    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]\n"
        "    w, losses = torch.zeros(X.shape[1], dtype=X.dtype), []\n"
        "    for t, i in enumerate(torch.randint(0, X.shape[0], (steps,), generator=gen).tolist(), start=1):\n"
        "        w = w - lr * X[i] * (X[i] @ w - y[i])\n"
        "        if t > steps // 2:\n"
        "            losses.append(loss(w) - loss(w_star))\n"
        "    return loss(w) - loss(w_star), sum(losses) / len(losses)\n",
        # excess measured against the wrong minimum (the noiseless weights' loss is not f_min): negative or off
        "import torch\n"
        "def sgd_last_and_average(X, y, *, lr, steps, gen):\n"
        "    loss = lambda w: 0.5 * float(((X @ w - y) ** 2).mean())\n"
        "    w, total, count = torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros(X.shape[1], dtype=X.dtype), 0\n"
        "    for t, i in enumerate(torch.randint(0, X.shape[0], (steps,), generator=gen).tolist(), start=1):\n"
        "        w = w - lr * X[i] * (X[i] @ w - y[i])\n"
        "        if t > steps // 2:\n"
        "            total, count = total + w, count + 1\n"
        "    return loss(w), loss(total / count)\n",
    ),
)


def _lsq(seed: int, n: int = 200, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def _floor(X, y, lr):
    """The chapter's first-order floor eta/4 * V_1 (single examples drawn with replacement: V_1 = mean of |g_i|^2 at w*)."""
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    per_example = X * (X @ w_star - y)[:, None]
    return lr / 4 * float((per_example**2).sum(1).mean())


@polyak_problem.check("the last iterate sits at the noise floor (within a factor 2.5 of eta/4 V_1, averaged over 4 seeds)",
                      hint="Step with one example's gradient $x_i (x_i^\\top w - y_i)$ at a time, and report $f(w) - f(w^\\star)$ "
                           "with $w^\\star$ the least-squares solution.")
def _(f, ref):
    X, y = _lsq(0)
    lasts = [f(X, y, lr=0.04, steps=600, gen=torch.Generator().manual_seed(s))[0] for s in range(4)]
    mean, floor = sum(lasts) / 4, _floor(X, y, 0.04)
    assert 0.4 < mean / floor < 2.5, f"mean excess of the last iterate {mean:.3g}; the floor eta/4 V_1 is {floor:.3g}"


@polyak_problem.check("the second half's average sits far below the floor (at least 3 times below the last iterate)",
                      hint="Average the *weights* of the second half, then take the loss of that average; the transient "
                           "of the first half must not be in it.")
def _(f, ref):
    X, y = _lsq(1)
    pairs = [f(X, y, lr=0.04, steps=600, gen=torch.Generator().manual_seed(10 + s)) for s in range(4)]
    last, avg = sum(p[0] for p in pairs) / 4, sum(p[1] for p in pairs) / 4
    assert avg > 0 and last > 3 * avg, f"mean excess: last iterate {last:.3g}, average {avg:.3g}; expected the average 3x lower or more"
