"""Exercises for book/01_loss_functions.ipynb (Chapter 1, "Loss functions")."""

import math

import torch
import torch.nn.functional as F

from . import Exercise

# --- 1. MSE and its gradient --------------------------------------------------------------

mse_grad = Exercise(
    id="loss.mse-grad",
    title="Mean squared error and its gradient",
    entry="mse_and_grad",
    prompt="Write `mse_and_grad(pred, target)`: return the mean squared error $\\frac1N\\sum_i(\\hat y_i - y_i)^2$ "
           "over all $N$ elements and its gradient with respect to `pred`, without autograd.",
    stub='''
import torch

def mse_and_grad(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error over all elements and its gradient in pred (same shape as pred)."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def mse_and_grad(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error over all elements and its gradient in pred (same shape as pred)."""
    r = pred - target
    n = pred.numel()
    return (r ** 2).sum() / n, 2 * r / n
''',
    wrong=(
        # forgets the factor 2 of the derivative of r^2
        "def mse_and_grad(pred, target):\n    r = pred - target\n    return (r ** 2).mean(), r / r.numel()\n",
        # forgets to divide the gradient by N
        "def mse_and_grad(pred, target):\n    r = pred - target\n    return (r ** 2).mean(), 2 * r\n",
        # residual the wrong way round: the gradient points downhill
        "def mse_and_grad(pred, target):\n    r = target - pred\n    return (r ** 2).mean(), 2 * r / r.numel()\n",
        # divides by the batch size only, not by every element
        "def mse_and_grad(pred, target):\n    r = pred - target\n    n = pred.shape[0]\n    return (r ** 2).sum() / n, 2 * r / n\n",
    ),
)


def _regression_pair(seed: int, shape=(6, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)


@mse_grad.check("returns (loss, grad) with a scalar loss and a gradient shaped like pred",
                hint="Return a tuple: the scalar mean, and a tensor of `pred`'s shape.")
def _(f, ref):
    pred, target = _regression_pair(0)
    out = f(pred, target)
    assert isinstance(out, tuple) and len(out) == 2, f"expected a tuple (loss, grad), got {type(out).__name__}"
    loss, grad = out
    assert torch.as_tensor(loss).dim() == 0, f"the loss should be a scalar, got shape {tuple(torch.as_tensor(loss).shape)}"
    assert isinstance(grad, torch.Tensor) and grad.shape == pred.shape, \
        f"the gradient should have shape {tuple(pred.shape)}, got {getattr(grad, 'shape', type(grad).__name__)}"


@mse_grad.check("the loss matches torch.nn.functional.mse_loss",
                hint="Average over every element: $N$ is `pred.numel()`, not the batch size.")
def _(f, ref):
    pred, target = _regression_pair(1)
    loss, _ = f(pred, target)
    expected = F.mse_loss(pred, target)
    assert torch.isclose(torch.as_tensor(loss, dtype=torch.float64), expected), f"loss {float(loss):.6g}, expected {float(expected):.6g}"


@mse_grad.check("the gradient matches autograd",
                hint="$\\partial/\\partial \\hat y_i$ of $\\frac1N\\sum_j (\\hat y_j - y_j)^2$ is $\\frac{2}{N}(\\hat y_i - y_i)$.")
def _(f, ref):
    pred, target = _regression_pair(2, (4, 5))
    _, grad = f(pred.clone(), target)
    p = pred.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.mse_loss(p, target), p)
    assert torch.allclose(grad, expected), (
        f"largest difference from autograd {float((grad - expected).abs().max()):.3g}; "
        f"your gradient / autograd's = {float((grad / expected).mean()):.3g} on average"
    )


@mse_grad.check("a gradient step lowers the loss", hint="The gradient must point uphill: use pred - target, not target - pred.")
def _(f, ref):
    pred, target = _regression_pair(3)
    loss, grad = f(pred, target)
    new_loss, _ = f(pred - 0.1 * grad, target)
    assert float(new_loss) < float(loss), f"after a step against your gradient the loss went from {float(loss):.4g} to {float(new_loss):.4g}"


# --- 2. stable cross-entropy from logits ----------------------------------------------------

stable_ce = Exercise(
    id="loss.stable-ce",
    title="Numerically stable cross-entropy from logits",
    entry="cross_entropy_from_logits",
    prompt="Write `cross_entropy_from_logits(logits, target)`: the mean over the batch of "
           "$\\log\\sum_j e^{z_{ij}} - z_{i, y_i}$ for logits of shape (N, C) and class indices of shape (N,), "
           "finite for logits as large as $10^4$. Do not call `torch.logsumexp`, `log_softmax` or `cross_entropy`.",
    stub='''
import torch

def cross_entropy_from_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy; logits (N, C) float, target (N,) int64 class indices."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def cross_entropy_from_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy; logits (N, C) float, target (N,) int64 class indices."""
    m = logits.max(dim=1, keepdim=True).values                      # (N, 1)
    lse = m[:, 0] + torch.log(torch.exp(logits - m).sum(dim=1))     # (N,)  log-sum-exp
    true = logits.gather(1, target[:, None])[:, 0]                   # (N,)  z_{i, y_i}
    return (lse - true).mean()
''',
    wrong=(
        # softmax then log: exp overflows for large logits
        "import torch\ndef cross_entropy_from_logits(logits, target):\n"
        "    p = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)\n"
        "    return -torch.log(p[torch.arange(len(target)), target]).mean()\n",
        # log-sum-exp without subtracting the maximum
        "import torch\ndef cross_entropy_from_logits(logits, target):\n"
        "    lse = torch.log(torch.exp(logits).sum(1))\n"
        "    return (lse - logits[torch.arange(len(target)), target]).mean()\n",
        # indexes logits[:, target]: an (N, N) matrix, not the true class of each row
        "import torch\ndef cross_entropy_from_logits(logits, target):\n"
        "    m = logits.max(1, keepdim=True).values\n"
        "    lse = m[:, 0] + torch.log(torch.exp(logits - m).sum(1))\n"
        "    return (lse - logits[:, target]).mean()\n",
        # subtracts the max inside the exp but forgets to add it back
        "import torch\ndef cross_entropy_from_logits(logits, target):\n"
        "    m = logits.max(1, keepdim=True).values\n"
        "    lse = torch.log(torch.exp(logits - m).sum(1))\n"
        "    return (lse - logits[torch.arange(len(target)), target]).mean()\n",
        # a softmax too many: treats probabilities as logits
        "import torch\ndef cross_entropy_from_logits(logits, target):\n"
        "    p = torch.softmax(logits, 1)\n"
        "    m = p.max(1, keepdim=True).values\n"
        "    lse = m[:, 0] + torch.log(torch.exp(p - m).sum(1))\n"
        "    return (lse - p[torch.arange(len(target)), target]).mean()\n",
    ),
)


def _ce_case(seed: int, n: int = 7, c: int = 5, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g)


@stable_ce.check("uniform logits give log C", hint="With equal logits every class has probability $1/C$.")
def _(f, ref):
    out = f(torch.zeros(4, 10, dtype=torch.float64), torch.tensor([0, 3, 9, 5]))
    assert abs(float(out) - math.log(10)) < 1e-9, f"got {float(out):.6g}, expected log 10 = {math.log(10):.6g}"


@stable_ce.check("matches torch.nn.functional.cross_entropy on random logits",
                 hint="Pick each row's true-class logit with `logits.gather(1, target[:, None])` or "
                      "`logits[torch.arange(N), target]`, and average over the batch.")
def _(f, ref):
    z, y = _ce_case(0)
    out, expected = f(z, y), F.cross_entropy(z, y)
    assert torch.as_tensor(out).dim() == 0, "expected a scalar (the mean over the batch)"
    assert torch.isclose(torch.as_tensor(out, dtype=torch.float64), expected), f"got {float(out):.6g}, expected {float(expected):.6g}"


@stable_ce.check("stays finite and correct for logits of size 1e4",
                 hint="Subtract each row's maximum before `exp`, and add it back after the `log`.")
def _(f, ref):
    z = torch.tensor([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4], [5e3, 5e3 - 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([2, 1, 0])
    out, expected = f(z, y), F.cross_entropy(z, y)
    assert bool(torch.isfinite(torch.as_tensor(out))), f"got {float(out)}: exp overflowed"
    assert torch.isclose(torch.as_tensor(out, dtype=torch.float64), expected), f"got {float(out):.6g}, expected {float(expected):.6g}"


@stable_ce.check("does not change with a constant added to a row's logits",
                 hint="Softmax is shift-invariant: $\\log\\sum_j e^{z_j + c} - (z_y + c)$ does not depend on $c$.")
def _(f, ref):
    z, y = _ce_case(1)
    shifted = z + torch.linspace(-500, 500, len(z), dtype=torch.float64)[:, None]
    a, b = float(f(z, y)), float(f(shifted, y))
    assert math.isfinite(b) and abs(a - b) < 1e-8, f"shifting rows changed the loss from {a:.6g} to {b:.6g}"


# --- 3. expected calibration error --------------------------------------------------------

ece = Exercise(
    id="loss.ece",
    title="Expected calibration error",
    entry="ece",
    prompt="Write `ece(probs, labels, n_bins)`: split predictions into `n_bins` equal-width bins of confidence "
           "(the largest probability of each row); in each non-empty bin compare accuracy with mean confidence; "
           "return $\\sum_b \\frac{n_b}{N}|\\mathrm{acc}_b - \\mathrm{conf}_b|$ as a float.",
    stub='''
import torch

def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> float:
    """Expected calibration error; probs (N, C) rows summing to 1, labels (N,) int64."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> float:
    """Expected calibration error; probs (N, C) rows summing to 1, labels (N,) int64."""
    conf, pred = probs.max(dim=1)                       # (N,), (N,)
    correct = (pred == labels).double()                 # (N,)
    total = 0.0
    for b in range(n_bins):
        inside = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)
        if inside.any():
            gap = (correct[inside].mean() - conf[inside].mean()).abs()
            total += float(inside.double().mean() * gap)  # n_b / N * |acc_b - conf_b|
    return total
''',
    wrong=(
        # unweighted mean of bin gaps
        "import torch\ndef ece(probs, labels, n_bins=10):\n"
        "    conf, pred = probs.max(1); correct = (pred == labels).double(); gaps = []\n"
        "    for b in range(n_bins):\n"
        "        m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n"
        "        if m.any(): gaps.append(float((correct[m].mean() - conf[m].mean()).abs()))\n"
        "    return sum(gaps) / len(gaps)\n",
        # signed gaps: over- and under-confidence cancel
        "import torch\ndef ece(probs, labels, n_bins=10):\n"
        "    conf, pred = probs.max(1); correct = (pred == labels).double(); t = 0.0\n"
        "    for b in range(n_bins):\n"
        "        m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n"
        "        if m.any(): t += float(m.double().mean() * (correct[m].mean() - conf[m].mean()))\n"
        "    return abs(t)\n",
        # confidence = probability of the true class instead of the predicted one
        "import torch\ndef ece(probs, labels, n_bins=10):\n"
        "    conf = probs[torch.arange(len(labels)), labels]; correct = (probs.argmax(1) == labels).double(); t = 0.0\n"
        "    for b in range(n_bins):\n"
        "        m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n"
        "        if m.any(): t += float(m.double().mean() * (correct[m].mean() - conf[m].mean()).abs())\n"
        "    return t\n",
        # one bin: |accuracy - mean confidence| over everything
        "import torch\ndef ece(probs, labels, n_bins=10):\n"
        "    conf, pred = probs.max(1)\n"
        "    return float(((pred == labels).double().mean() - conf.mean()).abs())\n",
    ),
)


def _calibration_case(seed: int, n: int = 400, c: int = 4, scale: float = 2.5, true_t: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    labels = torch.multinomial(torch.softmax(z / true_t, 1), 1, generator=g)[:, 0]
    return torch.softmax(z, 1), labels


@ece.check("is 0 when every bin's accuracy equals its confidence", hint="Weight each bin's gap by its share of the examples.")
def _(f, ref):
    probs = torch.tensor([[0.75, 0.25]] * 4 + [[0.35, 0.65]] * 20, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1] + [1] * 13 + [0] * 7)  # 3/4 right at 0.75; 13/20 right at 0.65
    out = float(f(probs, labels, 10))
    assert abs(out) < 1e-12, f"expected 0 for this calibrated example, got {out:.4g}"


@ece.check("matches a known value on a small example",
           hint="Confidence is each row's largest probability; accuracy is whether its argmax equals the label.")
def _(f, ref):
    probs = torch.tensor([[0.95, 0.05], [0.92, 0.08], [0.4, 0.6], [0.45, 0.55]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1])
    # bin (0.9, 1]: conf 0.935, acc 0.5 (overconfident); bin (0.5, 0.6]: conf 0.575, acc 1 (underconfident)
    # ECE = 0.5 * 0.435 + 0.5 * 0.425 = 0.43
    out = float(f(probs, labels, 10))
    assert abs(out - 0.43) < 1e-9, f"got {out:.6g}, expected 0.43"


@ece.check("matches losslab.losses.expected_calibration_error on an overconfident model",
           hint="Sum over bins of (examples in bin / N) * |accuracy - mean confidence|, with absolute values.")
def _(f, ref):
    from losslab.losses import expected_calibration_error  # noqa: PLC0415

    probs, labels = _calibration_case(0)
    for n_bins in (5, 15):
        out, expected = float(f(probs, labels, n_bins)), float(expected_calibration_error(probs, labels, n_bins))
        assert abs(out - expected) < 1e-9, f"with {n_bins} bins got {out:.6g}, expected {expected:.6g}"


# --- Problems: proper scoring rules by experiment --------------------------------------------

_SCORE_HEAD = ('import torch\n\ndef best_prediction(q, rule):\n'
               '    def score(p, y):\n'
               '        if rule == "log":\n'
               '            p = p.clamp(1e-12, 1 - 1e-12)\n'
               '            return -torch.log(p) if y == 1 else -torch.log(1 - p)\n'
               '        if rule == "brier":\n'
               '            return 2 * (p - y) ** 2\n'
               '        return (p - y).abs()\n')
problem_proper = Exercise(
    id="loss.problem-proper-scores",
    title="Which prediction does a scoring rule reward?",
    entry="best_prediction",
    prompt="Write `best_prediction(q, rule)`: an event happens with probability `q`; `score(p, y)` in the stub is the "
           "penalty of the scoring rule `rule` (`\"log\"`, `\"brier\"` or `\"absolute\"`) for predicting probability `p` "
           "(a float64 tensor) when the outcome is `y` (0 or 1). Compute the expected score "
           "$q\\,S(p, 1) + (1 - q)\\,S(p, 0)$ on the grid `torch.linspace(0, 1, 1001)` and return the `p` (a float) "
           "where it is smallest. Proper rules should give back `q`.",
    stub='''
import torch

def best_prediction(q: float, rule: str) -> float:
    """The p on linspace(0, 1, 1001) minimizing q * score(p, 1) + (1 - q) * score(p, 0)."""
    def score(p, y):  # the rule's penalty for predicting p when the outcome is y
        if rule == "log":
            p = p.clamp(1e-12, 1 - 1e-12)
            return -torch.log(p) if y == 1 else -torch.log(1 - p)
        if rule == "brier":
            return 2 * (p - y) ** 2
        return (p - y).abs()
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def best_prediction(q: float, rule: str) -> float:
    """The p on linspace(0, 1, 1001) minimizing q * score(p, 1) + (1 - q) * score(p, 0)."""
    def score(p, y):  # the rule's penalty for predicting p when the outcome is y
        if rule == "log":
            p = p.clamp(1e-12, 1 - 1e-12)
            return -torch.log(p) if y == 1 else -torch.log(1 - p)
        if rule == "brier":
            return 2 * (p - y) ** 2
        return (p - y).abs()
    p = torch.linspace(0, 1, 1001, dtype=torch.float64)
    expected = q * score(p, 1) + (1 - q) * score(p, 0)
    return float(p[torch.argmin(expected)])
''',
    wrong=(
        # the largest expected score, not the smallest
        _SCORE_HEAD + "    p = torch.linspace(0, 1, 1001, dtype=torch.float64)\n"
        "    return float(p[torch.argmax(q * score(p, 1) + (1 - q) * score(p, 0))])\n",
        # the outcomes weighted the wrong way round
        _SCORE_HEAD + "    p = torch.linspace(0, 1, 1001, dtype=torch.float64)\n"
        "    return float(p[torch.argmin((1 - q) * score(p, 1) + q * score(p, 0))])\n",
        # only the outcome 1 counted
        _SCORE_HEAD + "    p = torch.linspace(0, 1, 1001, dtype=torch.float64)\n"
        "    return float(p[torch.argmin(score(p, 1))])\n",
    ),
)


@problem_proper.check("the log loss is proper: the best prediction is q",
                      hint="Average the two outcomes' scores with weights q and 1 - q, then take the argmin over the grid.")
def _(f, ref):
    for q in (0.1, 0.35, 0.7):
        got = f(q, "log")
        assert abs(float(got) - q) < 1.5e-3, f"for q = {q} the log loss's best prediction is {q}; you returned {got}"


@problem_proper.check("the Brier score is proper too", hint="The same expected score with the Brier penalty.")
def _(f, ref):
    for q in (0.2, 0.55, 0.9):
        got = f(q, "brier")
        assert abs(float(got) - q) < 1.5e-3, f"for q = {q} the Brier score's best prediction is {q}; you returned {got}"


@problem_proper.check("the absolute error is improper: it rewards certainty",
                      hint="The expected absolute error q (1 - p) + (1 - q) p is linear in p: its minimum is at an end.")
def _(f, ref):
    for q, want in ((0.7, 1.0), (0.3, 0.0)):
        got = f(q, "absolute")
        assert abs(float(got) - want) < 1e-9, f"for q = {q} the absolute error is smallest at p = {want}; you returned {got}"


# --- Problems: the hinge loss stops, by experiment --------------------------------------------

problem_hinge = Exercise(
    id="loss.problem-hinge-support",
    title="When does the hinge loss stop pulling?",
    entry="hinge_descent",
    prompt="Write `hinge_descent(x, y, steps, lr)`: train a linear classifier $z = xw + b$ on features `x` "
           "(float64, `[N, D]`) and labels `y` in $\\{-1, +1\\}$ by full-batch gradient descent on the mean hinge "
           "loss $\\frac1N\\sum_i\\max(0, 1 - y_i z_i)$, from $w = 0, b = 0$. Return a list with, for every step, "
           "the number of examples whose margin $y_i z_i$ is below 1 at the start of that step (the ones with a "
           "nonzero gradient). Use the gradient $-y_i x_i$ (and $-y_i$ for $b$) for those examples, 0 for the others.",
    stub='''
import torch

def hinge_descent(x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> list[int]:
    """Full-batch GD on the mean hinge loss from w = 0, b = 0; per step, how many margins are below 1."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def hinge_descent(x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> list[int]:
    """Full-batch GD on the mean hinge loss from w = 0, b = 0; per step, how many margins are below 1."""
    n, d = x.shape
    w, b = torch.zeros(d, dtype=x.dtype), torch.zeros((), dtype=x.dtype)
    counts = []
    for _ in range(steps):
        active = (y * (x @ w + b) < 1).to(x.dtype)      # (N,) examples inside the margin
        counts.append(int(active.sum()))
        w = w - lr * (-(active * y) @ x / n)
        b = b - lr * (-(active * y).sum() / n)
    return counts
''',
    wrong=(
        # the logistic loss instead: every example keeps a nonzero gradient
        "import torch\ndef hinge_descent(x, y, steps, lr):\n    n, d = x.shape\n    w, b = torch.zeros(d, dtype=x.dtype), torch.zeros((), dtype=x.dtype)\n"
        "    counts = []\n    for _ in range(steps):\n        m = y * (x @ w + b)\n        counts.append(n)\n"
        "        g = -y * torch.sigmoid(-m)\n        w = w - lr * (g @ x / n)\n        b = b - lr * g.sum() / n\n    return counts\n",
        # margin 0 instead of 1: stops as soon as every example is on the right side
        "import torch\ndef hinge_descent(x, y, steps, lr):\n    n, d = x.shape\n    w, b = torch.zeros(d, dtype=x.dtype), torch.zeros((), dtype=x.dtype)\n"
        "    counts = []\n    for _ in range(steps):\n        active = (y * (x @ w + b) <= 0).to(x.dtype)\n        counts.append(int(active.sum()))\n"
        "        w = w + lr * (active * y) @ x / n\n        b = b + lr * (active * y).sum() / n\n    return counts\n",
        # the gradient's sign flipped: the margins shrink
        "import torch\ndef hinge_descent(x, y, steps, lr):\n    n, d = x.shape\n    w, b = torch.zeros(d, dtype=x.dtype), torch.zeros((), dtype=x.dtype)\n"
        "    counts = []\n    for _ in range(steps):\n        active = (y * (x @ w + b) < 1).to(x.dtype)\n        counts.append(int(active.sum()))\n"
        "        w = w - lr * (active * y) @ x / n\n        b = b - lr * (active * y).sum() / n\n    return counts\n",
    ),
)


def _separable(seed: int = 0, n: int = 60):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.5 + 2.0 * y[:, None]  # two clusters around +-(2, 2)
    return x, y


@problem_hinge.check("every example pulls at the start, none at the end",
                     hint="At w = 0, b = 0 every margin is 0 < 1; on separable data the hinge loss reaches exactly 0.")
def _(f, ref):
    x, y = _separable(0)
    counts = list(f(x, y, 300, 0.1))
    assert len(counts) == 300, f"expected one count per step (300), got {len(counts)}"
    assert counts[0] == len(y), f"at w = 0 every margin is 0, below 1: expected {len(y)} at step 0, got {counts[0]}"
    assert counts[-1] == 0, f"on separable data every margin reaches 1 and the hinge loss is exactly 0; your last count is {counts[-1]}"


@problem_hinge.check("the counts match gradient descent on the hinge loss",
                     hint="Only examples with margin below 1 contribute $-y_i x_i$; average over all N, then step against it.")
def _(f, ref):
    x, y = _separable(1, 80)
    got, want = [int(v) for v in f(x, y, 60, 0.05)], ref(x, y, 60, 0.05)
    assert len(got) == len(want), f"expected one count per step ({len(want)}), got {len(got)}"
    step = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert step is None, f"at step {step} you count {got[step]} examples inside the margin; gradient descent on the hinge loss has {want[step]}"
