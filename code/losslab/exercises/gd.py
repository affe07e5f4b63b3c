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
