"""Exercises for Chapter 6, "Vanishing and exploding gradients" (book/06_vanishing_exploding_gradients.ipynb)."""

import math

import torch

from . import Exercise

# --- He initialization ----------------------------------------------------------------------------

he_init = Exercise(
    id="grads.he-init",
    title="He initialization",
    entry="he_normal",
    prompt=(
        "Write `he_normal(fan_out, fan_in, generator)`: a float64 weight matrix of shape `(fan_out, fan_in)` "
        "with independent entries drawn from $\\mathcal N(0, 2/n_{\\text{in}})$, using `generator` for the draw."
    ),
    stub='''
import torch

def he_normal(fan_out: int, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """Weights (fan_out, fan_in), float64, entries ~ N(0, 2 / fan_in)."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import math
import torch

def he_normal(fan_out: int, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """Weights (fan_out, fan_in), float64, entries ~ N(0, 2 / fan_in)."""
    std = math.sqrt(2.0 / fan_in)
    return torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * std
''',
    wrong=(
        # fan_out instead of fan_in
        "import math, torch\ndef he_normal(fan_out, fan_in, generator):\n"
        "    return torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_out)\n",
        # the variance used as the standard deviation
        "import torch\ndef he_normal(fan_out, fan_in, generator):\n"
        "    return torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * (2.0 / fan_in)\n",
        # LeCun / Xavier-for-square variance 1/fan_in: ReLU halves the signal at each layer
        "import math, torch\ndef he_normal(fan_out, fan_in, generator):\n"
        "    return torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) / math.sqrt(fan_in)\n",
        # transposed shape
        "import math, torch\ndef he_normal(fan_out, fan_in, generator):\n"
        "    return torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_in)\n",
        # ignores the generator
        "import math, torch\ndef he_normal(fan_out, fan_in, generator):\n"
        "    return torch.randn(fan_out, fan_in, dtype=torch.float64) * math.sqrt(2.0 / fan_in)\n",
    ),
)


@he_init.check("returns a float64 tensor of shape (fan_out, fan_in)", hint="`torch.randn(fan_out, fan_in, ...)`: rows are outputs.")
def _(f, ref):
    w = f(30, 70, torch.Generator().manual_seed(0))
    assert isinstance(w, torch.Tensor), f"expected a torch.Tensor, got {type(w).__name__}"
    assert tuple(w.shape) == (30, 70), f"expected shape (30, 70), got {tuple(w.shape)}"
    assert w.dtype == torch.float64, f"expected float64, got {w.dtype}"


@he_init.check("is reproducible from the generator", hint="Pass `generator=generator` to the sampling function.")
def _(f, ref):
    a = f(20, 10, torch.Generator().manual_seed(5))
    b = f(20, 10, torch.Generator().manual_seed(5))
    c = f(20, 10, torch.Generator().manual_seed(6))
    assert torch.equal(a, b), "two generators with the same seed gave different weights"
    assert not torch.equal(a, c), "different seeds gave the same weights"


@he_init.check("entries have mean 0 and variance 2 / fan_in",
               hint="The variance is $2/n_{\\text{in}}$, so the standard deviation is $\\sqrt{2/n_{\\text{in}}}$; $n_{\\text{in}}$ is the number of columns.")
def _(f, ref):
    # 100 x 1000 = 1e5 draws: the sample variance has relative standard error sqrt(2/n) = 0.45%;
    # allow 5 of them. The layer is far from square, so fan_in and fan_out are told apart.
    w = f(1000, 100, torch.Generator().manual_seed(1))
    target = 2.0 / 100
    var = float(w.var())
    assert abs(var / target - 1) < 5 * math.sqrt(2 / w.numel()), f"variance {var:.5f}, expected {target:.5f}"
    assert abs(float(w.mean())) < 5 * math.sqrt(target / w.numel()), f"mean {float(w.mean()):.5f}, expected about 0"


@he_init.check("keeps the signal's scale flat through 20 ReLU layers",
               hint="With $\\mathrm{Var}(W) = 2/n_{\\text{in}}$ each ReLU layer keeps $\\mathbb E[h^2]$: the factor 2 undoes the half the ReLU zeroes.")
def _(f, ref):
    # Width 256: one layer's factor fluctuates by about 10%, so 20 layers wander by a factor
    # of about e^{0.45}; the check allows a factor 3 while a wrong variance is off by 2^20.
    g = torch.Generator().manual_seed(2)
    h = torch.randn(128, 256, generator=g, dtype=torch.float64)  # (B, n)
    start = float(h.pow(2).mean())
    for _ in range(20):
        h = torch.relu(h @ f(256, 256, g).T)  # (B, n)
    ratio = float(h.pow(2).mean()) / start
    assert 1 / 3 < ratio < 3, f"E[h^2] changed by a factor {ratio:.3g} over 20 layers; He initialization keeps it near 1"


# --- clipping by global norm ------------------------------------------------------------------------

clip_norm = Exercise(
    id="grads.clip-global-norm",
    title="Clipping by global norm",
    entry="clip_by_global_norm",
    prompt=(
        "Write `clip_by_global_norm(grads, max_norm)`: given a list of gradient tensors, return "
        "`(clipped, total_norm)` where `total_norm` is the 2-norm of all entries together and every tensor is "
        "multiplied by $\\min\\big(1, \\text{max\\_norm}/(\\text{total\\_norm} + 10^{-6})\\big)$, as "
        "`torch.nn.utils.clip_grad_norm_` does. Return new tensors; leave the inputs unchanged."
    ),
    stub='''
import torch

def clip_by_global_norm(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale all gradients together so their joint 2-norm is at most max_norm; return (clipped, total_norm)."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def clip_by_global_norm(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale all gradients together so their joint 2-norm is at most max_norm; return (clipped, total_norm)."""
    total_norm = torch.sqrt(sum((g * g).sum() for g in grads))
    coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    return [g * coef for g in grads], total_norm
''',
    wrong=(
        # each tensor clipped on its own: changes the direction of the whole gradient
        "import torch\ndef clip_by_global_norm(grads, max_norm):\n"
        "    out = [g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads]\n"
        "    return out, torch.sqrt(sum((g * g).sum() for g in grads))\n",
        # no clamp at 1: small gradients are blown up to max_norm
        "import torch\ndef clip_by_global_norm(grads, max_norm):\n"
        "    total = torch.sqrt(sum((g * g).sum() for g in grads))\n"
        "    return [g * max_norm / (total + 1e-6) for g in grads], total\n",
        # sum of the per-tensor norms instead of the norm of all entries
        "import torch\ndef clip_by_global_norm(grads, max_norm):\n"
        "    total = sum(g.norm() for g in grads)\n"
        "    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)\n"
        "    return [g * coef for g in grads], total\n",
        # clipping by value
        "import torch\ndef clip_by_global_norm(grads, max_norm):\n"
        "    total = torch.sqrt(sum((g * g).sum() for g in grads))\n"
        "    return [g.clamp(-max_norm, max_norm) for g in grads], total\n",
        # in place: the caller's gradients change
        "import torch\ndef clip_by_global_norm(grads, max_norm):\n"
        "    total = torch.sqrt(sum((g * g).sum() for g in grads))\n"
        "    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)\n"
        "    return [g.mul_(coef) for g in grads], total\n",
    ),
)


def _grads(seed: int, scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) * scale for s in [(4, 3), (5,), (2, 2, 2)]]


def _torch_clip(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    params = []
    for t in grads:
        p = torch.zeros_like(t, requires_grad=True)
        p.grad = t.clone()
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], total


@clip_norm.check("returns (list of tensors, total norm) with the shapes of the input",
                 hint="Return a pair: the clipped tensors in a list, then the norm before clipping.")
def _(f, ref):
    grads = _grads(0)
    out = f([g.clone() for g in grads], 1.0)
    assert isinstance(out, tuple) and len(out) == 2, "expected a pair (clipped, total_norm)"
    clipped, total = out
    assert len(clipped) == len(grads), f"expected {len(grads)} tensors, got {len(clipped)}"
    for a, g in zip(clipped, grads):
        assert isinstance(a, torch.Tensor) and a.shape == g.shape, "each clipped tensor must keep its shape"
    assert float(total) == float(total), "total_norm is NaN"


@clip_norm.check("matches torch.nn.utils.clip_grad_norm_ on large gradients",
                 hint="The total norm is $\\sqrt{\\sum_k \\|g_k\\|^2}$ over all tensors together, not per tensor.")
def _(f, ref):
    for seed, max_norm in [(1, 1.0), (2, 0.25), (3, 5.0)]:
        grads = _grads(seed, scale=3.0)
        clipped, total = f([g.clone() for g in grads], max_norm)
        expected, expected_total = _torch_clip(grads, max_norm)
        assert abs(float(total) - float(expected_total)) <= 1e-10 * float(expected_total), (
            f"total norm {float(total):.6g}, PyTorch gives {float(expected_total):.6g}")
        for a, b in zip(clipped, expected):
            assert torch.allclose(a, b, rtol=1e-10, atol=0), f"clipped gradients differ from PyTorch's (max_norm={max_norm})"


@clip_norm.check("leaves gradients below the threshold unchanged",
                 hint="Clip only *down*: the factor is $\\min(1, \\cdot)$.")
def _(f, ref):
    grads = _grads(4, scale=1e-3)
    clipped, _ = f([g.clone() for g in grads], 1.0)
    expected, _ = _torch_clip(grads, 1.0)
    for a, b in zip(clipped, expected):
        assert torch.allclose(a, b, rtol=1e-12, atol=0), "a small gradient was rescaled; it should pass through unchanged"


@clip_norm.check("keeps the direction of the whole gradient",
                 hint="Multiply every tensor by the same factor.")
def _(f, ref):
    grads = _grads(5)
    grads[0] = grads[0] * 100  # one tensor dominates the norm
    clipped, _ = f([g.clone() for g in grads], 1.0)
    before = torch.cat([g.flatten() for g in grads])
    after = torch.cat([g.flatten() for g in clipped])
    cos = float(torch.nn.functional.cosine_similarity(before, after, dim=0))
    assert cos > 1 - 1e-12, f"cosine between the gradient before and after clipping is {cos:.6f}, expected 1"


@clip_norm.check("does not modify its input", hint="Return `g * coef`, not `g.mul_(coef)`.")
def _(f, ref):
    grads = _grads(6, scale=10.0)
    copies = [g.clone() for g in grads]
    f(copies, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(copies, grads)), "the input gradients changed"


# =================================================================================================
# Problems (end of the chapter): experiments with the chapter's diagnostics
# =================================================================================================

# --- Problem (experiment): counting dead ReLUs -----------------------------------------------------

_DEAD_HEAD = "import torch\n\ndef dead_fraction(weights, biases, x):\n"
dead_fraction = Exercise(
    id="grads.problem-dead-fraction",
    title="Counting dead ReLUs",
    entry="dead_fraction",
    prompt="Write `dead_fraction(weights, biases, x)`: run the probe batch `x` through the ReLU layers and return, "
           "for each layer, the fraction of its units that output 0 on **every** example.",
    stub='''
import torch

def dead_fraction(weights, biases, x):
    """Fraction of dead units per hidden layer of h_l = relu(h_{l-1} W_l^T + b_l).

    weights[l] (n_l, n_{l-1}), biases[l] (n_l,), x (P, n_0) a probe batch. Returns a (L,) float64 tensor:
    for each layer, the fraction of its n_l units whose output is 0 on all P examples.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def dead_fraction(weights, biases, x):
    """Fraction of dead units per hidden layer of h_l = relu(h_{l-1} W_l^T + b_l).

    weights[l] (n_l, n_{l-1}), biases[l] (n_l,), x (P, n_0) a probe batch. Returns a (L,) float64 tensor:
    for each layer, the fraction of its n_l units whose output is 0 on all P examples.
    """
    h, out = x, []
    for W, b in zip(weights, biases):
        h = torch.relu(h @ W.T + b)                              # (P, n_l)
        dead = (h <= 0).all(dim=0)                               # (n_l,) zero on every example
        out.append(dead.double().mean())
    return torch.stack(out)
''',
    wrong=(
        # the fraction of zero *entries*, not of units dead on every example
        _DEAD_HEAD + "    h, out = x, []\n    for W, b in zip(weights, biases):\n        h = torch.relu(h @ W.T + b)\n"
        "        out.append((h <= 0).double().mean())\n    return torch.stack(out)\n",
        # dead on *some* example instead of on every example
        _DEAD_HEAD + "    h, out = x, []\n    for W, b in zip(weights, biases):\n        h = torch.relu(h @ W.T + b)\n"
        "        out.append((h <= 0).any(dim=0).double().mean())\n    return torch.stack(out)\n",
        # a negative *average* pre-activation, which does not mean zero on every example
        _DEAD_HEAD + "    h, out = x, []\n    for W, b in zip(weights, biases):\n        z = h @ W.T + b\n"
        "        out.append((z.mean(0) < 0).double().mean())\n        h = torch.relu(z)\n    return torch.stack(out)\n",
    ),
)


def _relu_layers(seed: int, sizes, bias_shift: float):
    g = torch.Generator().manual_seed(seed)
    Ws = [torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=torch.float64) * math.sqrt(2.0 / sizes[i])
          for i in range(len(sizes) - 1)]
    bs = [torch.randn(sizes[i + 1], generator=g, dtype=torch.float64) * 0.5 + bias_shift for i in range(len(sizes) - 1)]
    return Ws, bs, torch.randn(64, sizes[0], generator=g, dtype=torch.float64)


@dead_fraction.check("counts units that are zero on every example", hint="A unit is dead if its column of the layer's output is 0 in **all** rows: `(h <= 0).all(dim=0)`.")
def _(f, ref):
    W = torch.eye(4, dtype=torch.float64)
    b = torch.tensor([0.0, -10.0, 0.0, -10.0], dtype=torch.float64)      # units 1 and 3 are always off
    x = torch.tensor([[1.0, 1.0, -1.0, 1.0], [-1.0, 2.0, 1.0, 3.0]], dtype=torch.float64)
    out = f([W], [b], x)
    assert isinstance(out, torch.Tensor) and out.shape == (1,), f"expected a tensor of shape (1,), got {getattr(out, 'shape', type(out).__name__)}"
    assert abs(float(out[0]) - 0.5) < 1e-12, f"2 of 4 units are zero on every example: expected 0.5, got {float(out[0])}"


@dead_fraction.check("measures deeper layers on the previous layer's output", hint="Feed each layer the ReLU output of the one before it.")
def _(f, ref):
    Ws, bs, x = _relu_layers(1, [8, 16, 16, 16], bias_shift=-1.0)         # negative biases: many units die
    got, want = f(Ws, bs, x), ref(Ws, bs, x)
    assert torch.allclose(got.double(), want), f"expected {want.tolist()}, got {got.tolist()}"
    assert float(want.max()) > 0.2, "test setup: some layer should have many dead units"


# --- Problem (experiment): the update-to-data ratio -----------------------------------------------

_RATIO_HEAD = "import torch\n\ndef update_ratio(W, grad, lr):\n"
update_ratio = Exercise(
    id="grads.problem-update-ratio",
    title="The update-to-data ratio",
    entry="update_ratio",
    prompt="Write `update_ratio(W, grad, lr)`: $\\log_{10}\\bigl(\\mathrm{std}(\\eta\\,g) / \\mathrm{std}(W)\\bigr)$ for one "
           "SGD step on one weight matrix. The checks use it on a network before and after scaling the learning rate.",
    stub='''
import torch

def update_ratio(W, grad, lr):
    """log10 of std(lr * grad) / std(W): the size of an SGD step relative to the weights it changes.

    W, grad: tensors of the same shape; lr > 0. Returns a float.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import math
import torch

def update_ratio(W, grad, lr):
    """log10 of std(lr * grad) / std(W): the size of an SGD step relative to the weights it changes.

    W, grad: tensors of the same shape; lr > 0. Returns a float.
    """
    return math.log10(float((lr * grad).std() / W.std()))
''',
    wrong=(
        _RATIO_HEAD + "    import math\n    return math.log(float((lr * grad).std() / W.std()))\n",      # natural log
        _RATIO_HEAD + "    import math\n    return math.log10(float(grad.std() / W.std()))\n",          # forgets the learning rate
        _RATIO_HEAD + "    import math\n    return math.log10(float((lr * grad).var() / W.var()))\n",  # variances, not standard deviations
    ),
)


@update_ratio.check("matches the definition on a random layer", hint="$\\log_{10}$ of the ratio of standard deviations: `math.log10(float((lr * grad).std() / W.std()))`.")
def _(f, ref):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(32, 16, generator=g, dtype=torch.float64) * 0.2
    grad = torch.randn(32, 16, generator=g, dtype=torch.float64) * 0.05
    got, want = f(W, grad, 0.1), ref(W, grad, 0.1)
    assert isinstance(got, float) and abs(got - want) < 1e-9, f"expected {want:.4f}, got {got}"


@update_ratio.check("rises by exactly 1 when the learning rate grows tenfold, on a trained layer's gradient",
                    hint="The ratio is linear in $\\eta$, so its base-10 logarithm moves by $\\log_{10} 10 = 1$.")
def _(f, ref):
    g = torch.Generator().manual_seed(1)
    W = (torch.randn(10, 20, generator=g, dtype=torch.float64) * math.sqrt(2 / 20)).requires_grad_()
    x = torch.randn(50, 20, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (50,), generator=g)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(x @ W.T, y), W)
    a, b = f(W.detach(), grad, 0.01), f(W.detach(), grad, 0.1)
    assert isinstance(a, float) and abs((b - a) - 1.0) < 1e-9, f"lr 0.01 -> {a}, lr 0.1 -> {b}: the difference should be 1"
    assert abs(a - ref(W.detach(), grad, 0.01)) < 1e-9, f"expected {ref(W.detach(), grad, 0.01):.4f} at lr 0.01, got {a}"


# --- Problem (experiment): dynamical isometry --------------------------------------------------------

_ISO_HEAD = "import torch\n\ndef jacobian_singular_values(weights):\n"
isometry = Exercise(
    id="grads.problem-isometry",
    title="Dynamical isometry of a deep linear network",
    entry="jacobian_singular_values",
    prompt="Write `jacobian_singular_values(weights)`: the singular values of the input-output Jacobian of the deep "
           "linear network $h_l = W_l h_{l-1}$, largest first. The checks measure isometry with orthogonal and Gaussian weights.",
    stub='''
import torch

def jacobian_singular_values(weights):
    """Singular values, in descending order, of the Jacobian d h_D / d h_0 of h_l = W_l h_{l-1}.

    weights: list of D square float64 matrices (n, n), weights[0] applied first. Returns a (n,) tensor.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def jacobian_singular_values(weights):
    """Singular values, in descending order, of the Jacobian d h_D / d h_0 of h_l = W_l h_{l-1}.

    weights: list of D square float64 matrices (n, n), weights[0] applied first. Returns a (n,) tensor.
    """
    J = torch.eye(weights[0].shape[1], dtype=weights[0].dtype)
    for W in weights:
        J = W @ J                                  # J = W_D ... W_2 W_1
    return torch.linalg.svdvals(J)
''',
    wrong=(
        # the product in the wrong order: W_1 W_2 ... W_D
        _ISO_HEAD + "    J = torch.eye(weights[0].shape[1], dtype=weights[0].dtype)\n    for W in weights:\n        J = J @ W\n"
        "    return torch.linalg.svdvals(J)\n",
        # eigenvalue magnitudes instead of singular values
        _ISO_HEAD + "    J = torch.eye(weights[0].shape[1], dtype=weights[0].dtype)\n    for W in weights:\n        J = W @ J\n"
        "    return torch.linalg.eigvals(J).abs().sort(descending=True).values\n",
        # the product of each layer's singular values, as if the layers were aligned
        _ISO_HEAD + "    s = torch.ones(weights[0].shape[0], dtype=weights[0].dtype)\n    for W in weights:\n"
        "        s = s * torch.linalg.svdvals(W)\n    return s\n",
    ),
)


def _orth(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.diagonal(r).sign()


@isometry.check("orthogonal layers give exact isometry", hint="The Jacobian of a linear network is the product $W_D \\cdots W_1$; an orthogonal product has every singular value 1.")
def _(f, ref):
    g = torch.Generator().manual_seed(0)
    s = f([_orth(16, g) for _ in range(20)])
    assert isinstance(s, torch.Tensor) and s.shape == (16,), f"expected 16 singular values, got {getattr(s, 'shape', type(s).__name__)}"
    assert torch.allclose(s, torch.ones(16, dtype=torch.float64), atol=1e-10), "orthogonal layers: every singular value should be 1"


@isometry.check("Gaussian layers spread the spectrum, measured on the true product", hint="Multiply in the order the layers apply: `J = W @ J`, then `torch.linalg.svdvals(J)`.")
def _(f, ref):
    g = torch.Generator().manual_seed(1)
    Ws = [torch.randn(16, 16, generator=g, dtype=torch.float64) / 4.0 for _ in range(12)]   # variance 1/n
    got, want = f(Ws), ref(Ws)
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-12 * float(want[0])), "singular values differ from those of W_D ... W_1"
    within = float(((want > 0.1) & (want < 10)).double().mean())
    assert within < 0.8, f"test setup: Gaussian layers should spread the spectrum (within a factor 10: {within:.0%})"


@isometry.check("multiplies the layers in the order they apply", hint="Check the order with two layers: the Jacobian is $W_2 W_1$, not $W_1 W_2$.")
def _(f, ref):
    A = torch.tensor([[1.0, 3.0], [0.0, 1.0]], dtype=torch.float64)
    B = torch.tensor([[2.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    got, want = f([A, B, A]), ref([A, B, A])
    assert torch.allclose(got, want, rtol=1e-10), f"expected {want.tolist()}, got {got.tolist()}"
