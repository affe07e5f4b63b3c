"""Exercises for book/08_convergence.ipynb: early stopping with patience, and reading three training histories.

The early-stopping checks compare with :func:`losslab.train.early_stopping_point`,
the rule :class:`losslab.train.EarlyStopping` applies during training. See Chapter 8.
"""

import math

import numpy as np

from .. import train as T
from . import Exercise

# --- early stopping ------------------------------------------------------------------

early_stopping = Exercise(
    id="train.early-stopping",
    title="Early stopping with patience",
    entry="early_stopping",
    prompt=(
        "Write `early_stopping(val_losses, patience, min_delta=0.0)`. Walk through the validation losses in order, "
        "keeping the best value so far. Evaluation $i$ improves when its loss $v_i$ is more than `min_delta` below the best so far (the first always does; "
        "a tie or a NaN does not). Each evaluation that does not improve adds one to a counter, and an improvement "
        "resets it to 0. Stop at the evaluation where the counter reaches `patience`. Return `(stop, best)`: the "
        "index where training stops (the last index if it never stops) and the index of the best evaluation, "
        "whose weights are restored."
    ),
    stub='''
def early_stopping(val_losses: list[float], patience: int, min_delta: float = 0.0) -> tuple[int, int]:
    """Return (stop, best): where early stopping with this patience stops, and the evaluation it restores."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
def early_stopping(val_losses: list[float], patience: int, min_delta: float = 0.0) -> tuple[int, int]:
    """Return (stop, best): where early stopping with this patience stops, and the evaluation it restores."""
    best, best_i, wait = float("inf"), 0, 0
    for i, v in enumerate(val_losses):
        if v < best - min_delta:  # an improvement: remember it, reset the counter
            best, best_i, wait = v, i, 0
        else:
            wait += 1
            if wait >= patience:
                return i, best_i
    return len(val_losses) - 1, best_i
''',
    wrong=(
        # one evaluation too late: waits for patience + 1 bad evaluations
        "def early_stopping(val_losses, patience, min_delta=0.0):\n"
        "    best, best_i, wait = float('inf'), 0, 0\n"
        "    for i, v in enumerate(val_losses):\n"
        "        if v < best - min_delta:\n            best, best_i, wait = v, i, 0\n"
        "        else:\n            wait += 1\n            if wait > patience:\n                return i, best_i\n"
        "    return len(val_losses) - 1, best_i\n",
        # never resets the counter: counts every bad evaluation since the start
        "def early_stopping(val_losses, patience, min_delta=0.0):\n"
        "    best, best_i, wait = float('inf'), 0, 0\n"
        "    for i, v in enumerate(val_losses):\n"
        "        if v < best - min_delta:\n            best, best_i = v, i\n"
        "        else:\n            wait += 1\n            if wait >= patience:\n                return i, best_i\n"
        "    return len(val_losses) - 1, best_i\n",
        # a tie counts as an improvement
        "def early_stopping(val_losses, patience, min_delta=0.0):\n"
        "    best, best_i, wait = float('inf'), 0, 0\n"
        "    for i, v in enumerate(val_losses):\n"
        "        if v <= best - min_delta:\n            best, best_i, wait = v, i, 0\n"
        "        else:\n            wait += 1\n            if wait >= patience:\n                return i, best_i\n"
        "    return len(val_losses) - 1, best_i\n",
        # keeps the last weights instead of the best
        "def early_stopping(val_losses, patience, min_delta=0.0):\n"
        "    best, wait = float('inf'), 0\n"
        "    for i, v in enumerate(val_losses):\n"
        "        if v < best - min_delta:\n            best, wait = v, 0\n"
        "        else:\n            wait += 1\n            if wait >= patience:\n                return i, i\n"
        "    return len(val_losses) - 1, len(val_losses) - 1\n",
        # ignores min_delta
        "def early_stopping(val_losses, patience, min_delta=0.0):\n"
        "    best, best_i, wait = float('inf'), 0, 0\n"
        "    for i, v in enumerate(val_losses):\n"
        "        if v < best:\n            best, best_i, wait = v, i, 0\n"
        "        else:\n            wait += 1\n            if wait >= patience:\n                return i, best_i\n"
        "    return len(val_losses) - 1, best_i\n",
        # treats NaN as an improvement (not (v >= best) is True for NaN)
        "def early_stopping(val_losses, patience, min_delta=0.0):\n"
        "    best, best_i, wait = float('inf'), 0, 0\n"
        "    for i, v in enumerate(val_losses):\n"
        "        if not (v >= best - min_delta):\n            best, best_i, wait = v, i, 0\n"
        "        else:\n            wait += 1\n            if wait >= patience:\n                return i, best_i\n"
        "    return len(val_losses) - 1, best_i\n",
    ),
)


def _same(f, values, patience, min_delta=0.0):
    got = f(list(values), patience, min_delta)
    expected = T.early_stopping_point(values, patience, min_delta)
    assert isinstance(got, tuple) and len(got) == 2, f"expected a pair (stop, best), got {got!r}"
    assert tuple(int(v) for v in got) == expected, (
        f"early_stopping({list(values)}, patience={patience}, min_delta={min_delta}) gave {got}, expected {expected}")


@early_stopping.check("stops once `patience` evaluations in a row have not improved",
                      hint="Count the evaluations since the last improvement; stop when the count *reaches* `patience`.")
def _(f, ref):
    _same(f, [1.0, 0.8, 0.7, 0.72, 0.75, 0.71, 0.69], 3)  # stops at 5, keeps 2


@early_stopping.check("an improvement resets the count", hint="Set the counter back to 0 whenever the loss improves.")
def _(f, ref):
    _same(f, [1.0, 0.9, 0.95, 0.85, 0.86, 0.87, 0.84], 2)  # stops at 5, keeps 3


@early_stopping.check("returns the best evaluation, not the last one",
                      hint="Remember the index of the best loss so far; its weights are the ones restored.")
def _(f, ref):
    _same(f, [0.5, 0.6, 0.7, 0.8], 2)  # stops at 2, keeps 0


@early_stopping.check("ties, NaN and changes within min_delta are not improvements",
                      hint="Improve only when `v < best - min_delta`; comparisons with NaN are False.")
def _(f, ref):
    _same(f, [1.0, 1.0, 1.0], 2)
    _same(f, [1.0, math.nan, math.nan, 0.5], 2)
    _same(f, [1.0, 0.995, 0.99, 0.985, 0.5], 2, 0.01)


@early_stopping.check("never stops while the loss keeps improving", hint="Return the last index when patience is never used up.")
def _(f, ref):
    _same(f, [1.0, 0.9, 0.8, 0.7, 0.6], 1)


@early_stopping.check("agrees with losslab.train.early_stopping_point on 200 random curves",
                      hint="Compare with `early_stopping_point` on a short list you write by hand.")
def _(f, ref):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        values = np.round(1.0 + np.cumsum(rng.normal(0, 0.05, n)), 2)  # rounded: ties happen
        _same(f, values.tolist(), int(rng.integers(1, 6)), float(rng.choice([0.0, 0.01, 0.05])))


# --- reading three histories ----------------------------------------------------------

MYSTERY = {"A": ("underfitting", 5), "B": ("overfitting", 6), "C": ("too-slow", 7)}


def mystery_histories() -> dict:
    """The three histories of the exercise: ``{"A": History, "B": ..., "C": ...}``."""
    return {run: T.synthetic_history(kind, seed=seed) for run, (kind, seed) in MYSTERY.items()}


diagnose_runs = Exercise(
    id="train.diagnose-runs",
    title="Diagnose three training histories",
    entry="diagnose_runs",
    prompt=(
        "The chapter plots three synthetic training histories, A, B and C (made by "
        "`losslab.train.synthetic_history` from simple formulas plus noise, not by training a network). Read their "
        "curves and name the main pathology of each, as one of the names of `losslab.train.PATHOLOGIES`: "
        '"healthy", "diverged", "spikes", "unshuffled", "bad-initial-loss", "too-slow", "underfitting", '
        '"plateau" or "overfitting". Return a dict such as `{"A": "healthy", "B": "spikes", "C": "plateau"}`.'
    ),
    stub='''
def diagnose_runs() -> dict[str, str]:
    """Map each run "A", "B", "C" to the name of its main pathology (a key of losslab.train.PATHOLOGIES)."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
def diagnose_runs() -> dict[str, str]:
    """Map each run "A", "B", "C" to the name of its main pathology (a key of losslab.train.PATHOLOGIES)."""
    return {
        "A": "underfitting",  # levels off high, validation right beside training
        "B": "overfitting",   # validation turns up while training keeps falling
        "C": "too-slow",      # still falling steadily at the end
    }
''',
    wrong=(
        "def diagnose_runs():\n    return {'A': 'too-slow', 'B': 'overfitting', 'C': 'underfitting'}\n",
        "def diagnose_runs():\n    return {'A': 'underfitting', 'B': 'healthy', 'C': 'too-slow'}\n",
        "def diagnose_runs():\n    return {'A': 'plateau', 'B': 'overfitting', 'C': 'too-slow'}\n",
        "def diagnose_runs():\n    return {'A': 'underfitting', 'B': 'overfitting', 'C': 'plateau'}\n",
        "def diagnose_runs():\n    return {'A': 'Underfitting', 'B': 'overfit', 'C': 'slow'}\n",
    ),
)


def _answers(f) -> dict:
    got = f()
    assert isinstance(got, dict), f"expected a dict like {{'A': ..., 'B': ..., 'C': ...}}, got {type(got).__name__}"
    assert set(got) == {"A", "B", "C"}, f"expected the keys 'A', 'B', 'C', got {sorted(got)}"
    bad = {k: v for k, v in got.items() if v not in T.PATHOLOGIES}
    assert not bad, f"{bad}: each answer must be one of {list(T.PATHOLOGIES)}"
    return got


@diagnose_runs.check("answers with the pathology names", hint="Use the exact names of `losslab.train.PATHOLOGIES`.")
def _(f, ref):
    _answers(f)


@diagnose_runs.check("names all three runs correctly",
                     hint="For each run ask: where does the training loss end, compared with its start? Is it still "
                          "falling in the last third? Does the validation loss follow it, or turn up?")
def _(f, ref):
    # One check for all three runs, with one message: a check per run, or a message naming the wrong run, would
    # tell the reader which answers are right without reading a single curve.
    got = _answers(f)
    assert all(got[run] == name for run, (name, _) in MYSTERY.items()), "not all three names are right yet"


# --- Problems (Chapter 8) -------------------------------------------------------------------------

nonconvex_sgd = Exercise(
    id="train.problem-nonconvex-sgd",
    title="Measure the non-convex rate",
    entry="avg_sq_grad",
    prompt=(
        "Write `avg_sq_grad(T, lr, runs, seed)`: run `runs` independent copies of SGD for `T` steps of size `lr` on "
        "$f(\\theta) = \\sum_{i=1}^{4}\\big(\\tfrac12\\theta_i^2 + 2\\cos\\theta_i\\big)$ from $\\theta_0 = (4, 4, 4, 4)$, "
        "with stochastic gradient $\\nabla f(\\theta) + 1.5\\,\\xi$, $\\xi \\sim \\mathcal N(0, I)$ (so $\\sigma^2 = 9$), "
        "and return the average over the steps $t < T$ and the runs of $\\|\\nabla f(\\theta_t)\\|^2$ (the true "
        "gradient, before the step). The checks call it with $\\eta = c/\\sqrt T$ and expect the "
        "chapter's $O(1/\\sqrt T)$ rate below the bound $2\\Delta/(\\eta T) + L\\eta\\sigma^2$."
    ),
    stub='''
import torch

def avg_sq_grad(T: int, lr: float, runs: int, seed: int) -> float:
    """Average over t < T and runs of |grad f(theta_t)|^2 for SGD on sum(theta^2 / 2 + 2 cos theta), 4 dimensions."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def avg_sq_grad(T: int, lr: float, runs: int, seed: int) -> float:
    """Average over t < T and runs of |grad f(theta_t)|^2 for SGD on sum(theta^2 / 2 + 2 cos theta), 4 dimensions."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.full((runs, 4), 4.0, dtype=torch.float64)  # (runs, 4)
    total = 0.0
    for _ in range(T):
        grad = theta - 2 * torch.sin(theta)  # the true gradient, (runs, 4)
        total += float((grad**2).sum(1).mean())
        theta = theta - lr * (grad + 1.5 * torch.randn(theta.shape, generator=g, dtype=torch.float64))
    return total / T
''',
    wrong=(
        # no gradient noise: plain gradient descent
        "import torch\ndef avg_sq_grad(T, lr, runs, seed):\n    theta = torch.full((runs, 4), 4.0, dtype=torch.float64)\n"
        "    total = 0.0\n    for _ in range(T):\n        grad = theta - 2 * torch.sin(theta)\n"
        "        total += float((grad**2).sum(1).mean())\n        theta = theta - lr * grad\n    return total / T\n",
        # the sign of the cosine term's gradient is wrong
        "import torch\ndef avg_sq_grad(T, lr, runs, seed):\n    g = torch.Generator().manual_seed(seed)\n"
        "    theta = torch.full((runs, 4), 4.0, dtype=torch.float64)\n    total = 0.0\n    for _ in range(T):\n"
        "        grad = theta + 2 * torch.sin(theta)\n        total += float((grad**2).sum(1).mean())\n"
        "        theta = theta - lr * (grad + 1.5 * torch.randn(theta.shape, generator=g, dtype=torch.float64))\n"
        "    return total / T\n",
        # returns the last squared gradient instead of the average over the run
        "import torch\ndef avg_sq_grad(T, lr, runs, seed):\n    g = torch.Generator().manual_seed(seed)\n"
        "    theta = torch.full((runs, 4), 4.0, dtype=torch.float64)\n    for _ in range(T):\n"
        "        grad = theta - 2 * torch.sin(theta)\n"
        "        theta = theta - lr * (grad + 1.5 * torch.randn(theta.shape, generator=g, dtype=torch.float64))\n"
        "    grad = theta - 2 * torch.sin(theta)\n    return float((grad**2).sum(1).mean())\n",
    ),
)

_NC_DELTA = 4 * (8 + 2 * math.cos(4.0)) - T.nonconvex_min(4)  # f(theta_0) - f*
_NC_C = math.sqrt(2 * _NC_DELTA / (T.NONCONVEX_L * 9.0))


@nonconvex_sgd.check("matches the reference within the noise of 64 runs",
                     hint="Average the squared norm of the true gradient theta - 2 sin(theta) over every step and run, "
                          "measured before each step; the noise is 1.5 times a standard normal per coordinate.")
def _(f, ref):
    for horizon in (40, 160):
        lr = _NC_C / math.sqrt(horizon)
        got, want = float(f(horizon, lr, 64, 0)), ref(horizon, lr, 64, 1)
        assert abs(got - want) < 0.12 * want, f"T = {horizon}: expected about {want:.3f}, got {got:.3f}"


@nonconvex_sgd.check("falls like 1/sqrt(T), below the bound", hint="Use the step the check passes in; do not change it inside.")
def _(f, ref):
    horizons = [40, 160, 640]
    values, bounds = [], []
    for horizon in horizons:
        lr = _NC_C / math.sqrt(horizon)
        values.append(float(f(horizon, lr, 64, 2)))
        bounds.append(2 * _NC_DELTA / (lr * horizon) + T.NONCONVEX_L * lr * 9.0)
    slope = T.loglog_slope(horizons, values)
    assert -0.8 < slope < -0.4, f"expected a log-log slope near -1/2, got {slope:.2f} (values {values})"
    assert all(v < b for v, b in zip(values, bounds)), f"expected every value below its bound {bounds}, got {values}"


gd_rate = Exercise(
    id="train.problem-gd-rate",
    title="Measure the linear rate",
    entry="measured_rate",
    prompt=(
        "Write `measured_rate(kappa)`: run gradient descent with step $\\eta = 1/L$ on "
        "$f(\\theta) = \\frac12(\\theta_1^2 + \\theta_2^2/\\kappa)$ (so $L = 1$, $\\mu = 1/\\kappa$) from "
        "$\\theta_0 = (1, 1)$ for 200 steps, and return the factor by which the distance $\\|\\theta_t\\|$ to the "
        "minimum shrinks per step, measured between steps 100 and 200: $(\\|\\theta_{200}\\|/\\|\\theta_{100}\\|)^{1/100}$. "
        "The checks expect the theory's $1 - 1/\\kappa$."
    ),
    stub='''
def measured_rate(kappa: float) -> float:
    """Per-step contraction of |theta_t| between steps 100 and 200 of gradient descent (step 1/L) on the quadratic."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import math

def measured_rate(kappa: float) -> float:
    """Per-step contraction of |theta_t| between steps 100 and 200 of gradient descent (step 1/L) on the quadratic."""
    h = (1.0, 1.0 / kappa)  # the two curvatures; L = 1
    theta = [1.0, 1.0]
    norms = []
    for _ in range(201):
        norms.append(math.hypot(*theta))
        theta = [t - 1.0 * c * t for t, c in zip(theta, h)]  # step 1 / L = 1
    return (norms[200] / norms[100]) ** (1 / 100)
''',
    wrong=(
        # the rate of the loss, not of the distance: the square
        "def measured_rate(kappa):\n    h = (1.0, 1.0 / kappa)\n    th = [1.0, 1.0]\n    f = []\n"
        "    for _ in range(201):\n        f.append(sum(c * t * t / 2 for t, c in zip(th, h)))\n"
        "        th = [t - c * t for t, c in zip(th, h)]\n    return (f[200] / f[100]) ** (1 / 100)\n",
        # step 2/L: the steep direction never converges
        "import math\ndef measured_rate(kappa):\n    h = (1.0, 1.0 / kappa)\n    th = [1.0, 1.0]\n    n = []\n"
        "    for _ in range(201):\n        n.append(math.hypot(*th))\n        th = [t - 2 * c * t for t, c in zip(th, h)]\n"
        "    return (n[200] / n[100]) ** (1 / 100)\n",
        # the total shrink over 100 steps, not per step
        "import math\ndef measured_rate(kappa):\n    h = (1.0, 1.0 / kappa)\n    th = [1.0, 1.0]\n    n = []\n"
        "    for _ in range(201):\n        n.append(math.hypot(*th))\n        th = [t - c * t for t, c in zip(th, h)]\n"
        "    return n[200] / n[100]\n",
    ),
)


@gd_rate.check("measures 1 - 1/kappa", hint="Record the distance |theta_t| (not the loss) and take the 100th root of the ratio.")
def _(f, ref):
    for kappa in (5.0, 20.0, 50.0):
        got = float(f(kappa))
        assert abs(got - (1 - 1 / kappa)) < 1e-3, f"kappa = {kappa}: expected about {1 - 1 / kappa:.4f}, got {got:.4f}"


@gd_rate.check("slower for larger kappa", hint="A larger condition number means a flatter direction and a rate closer to 1.")
def _(f, ref):
    rates = [float(f(k)) for k in (2.0, 10.0, 40.0)]
    assert rates[0] < rates[1] < rates[2] < 1, f"expected rates rising towards 1 with kappa, got {rates}"
