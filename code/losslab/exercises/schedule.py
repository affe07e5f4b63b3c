"""Exercises for book/04_learning_rate_schedules.ipynb: write two schedules, checked against PyTorch."""

import math
import re
import warnings

import torch
from torch.optim import lr_scheduler as L

from . import Exercise


def _torch_lrs(make, n: int, lr: float = 0.1) -> list[float]:
    """The rates PyTorch's scheduler ``make(optimizer)`` gives steps 0..n-1 (no training happens)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        # stepping a scheduler without an optimizer step is the point here: we only read the rates
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before `optimizer.step()`"))
        for _ in range(n):
            out.append(sched.get_last_lr()[0])
            sched.step()
    return out


def _values(f, n: int, **kw) -> list[float]:
    out = []
    for t in range(n):
        v = f(t, **kw)
        assert isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1), (
            f"f({t}, ...) returned {type(v).__name__}; expected a float")
        out.append(float(v))
    return out


def _compare(ours: list[float], theirs: list[float], what: str, rtol: float = 1e-9, atol: float = 1e-15) -> None:
    for t, (a, b) in enumerate(zip(ours, theirs)):
        if not abs(a - b) <= atol + rtol * abs(b):
            raise AssertionError(f"{what}: at step {t} you return {a:.10g}, PyTorch gives {b:.10g}")


# --- 1. warmup + cosine ------------------------------------------------------------

warmup_cosine = Exercise(
    id="schedule.warmup-cosine",
    title="Warmup + cosine",
    entry="warmup_cosine",
    prompt=(
        "Write `warmup_cosine(step, *, base_lr, warmup, total, min_lr)` returning the rate (a float) for one "
        "integer step: linear warmup $\\eta_0 (t+1)/(W+1)$ for $t < W$, then cosine decay "
        "$\\eta_{\\min} + \\tfrac12(\\eta_0 - \\eta_{\\min})(1 + \\cos(\\pi (t - W)/(T - W)))$ up to step $T$, "
        "and $\\eta_{\\min}$ after it."
    ),
    stub='''
import math

def warmup_cosine(step, *, base_lr, warmup, total, min_lr=0.0):
    """Learning rate at integer `step`: linear warmup for `warmup` steps, cosine to `min_lr` at `total`."""
    # 1) linear warmup for warmup steps
    # 2) if step > total, return min_lr
    # 3) in between, cosine decay down to min_lr
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import math

def warmup_cosine(step, *, base_lr, warmup, total, min_lr=0.0):
    """Learning rate at integer `step`: linear warmup for `warmup` steps, cosine to `min_lr` at `total`."""
    # 1) linear warmup for warmup steps
    if step < warmup:
        return base_lr * (step + 1) / (warmup + 1)
    # 2) if step > total, return min_lr
    if step > total:
        return min_lr
    # 3) in between, cosine decay down to min_lr
    ratio = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * ratio))
''',
    wrong=(
        # warmup starts at 0: the first step is wasted
        "import math\ndef warmup_cosine(step, *, base_lr, warmup, total, min_lr=0.0):\n"
        "    if step < warmup:\n        return base_lr * step / warmup\n"
        "    if step > total:\n        return min_lr\n"
        "    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))\n",
        # cosine measured from step 0, not from the end of warmup
        "import math\ndef warmup_cosine(step, *, base_lr, warmup, total, min_lr=0.0):\n"
        "    if step < warmup:\n        return base_lr * (step + 1) / (warmup + 1)\n"
        "    if step > total:\n        return min_lr\n"
        "    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * step / total))\n",
        # forgets min_lr inside the cosine
        "import math\ndef warmup_cosine(step, *, base_lr, warmup, total, min_lr=0.0):\n"
        "    if step < warmup:\n        return base_lr * (step + 1) / (warmup + 1)\n"
        "    if step > total:\n        return min_lr\n"
        "    return 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))\n",
        # keeps following the cosine after total (PyTorch's CosineAnnealingLR does)
        "import math\ndef warmup_cosine(step, *, base_lr, warmup, total, min_lr=0.0):\n"
        "    if step < warmup:\n        return base_lr * (step + 1) / (warmup + 1)\n"
        "    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))\n",
    ),
)

_WC_SETTINGS = [(0.1, 10, 100, 0.0), (6e-4, 50, 600, 6e-5), (1.0, 1, 20, 0.1)]


@warmup_cosine.check("warmup matches LinearLR(start_factor=1/(W+1))", hint="Step 0 should already use $\\eta_0/(W+1)$; step $W$ is the first at $\\eta_0$.")
def _(f, ref):
    for base_lr, w, total, min_lr in _WC_SETTINGS:
        ours = _values(f, w, base_lr=base_lr, warmup=w, total=total, min_lr=min_lr)  # first: an unfinished stub stops here
        _compare(ours, _torch_lrs(lambda o: L.LinearLR(o, 1 / (w + 1), 1.0, w), w, lr=base_lr), f"warmup (W={w})")


@warmup_cosine.check("the whole schedule matches SequentialLR(LinearLR, CosineAnnealingLR)",
                     hint="The cosine's clock starts at the end of warmup: use $(t - W)/(T - W)$, and decay to `min_lr`, not 0.")
def _(f, ref):
    for base_lr, w, total, min_lr in _WC_SETTINGS:
        ours = _values(f, total + 1, base_lr=base_lr, warmup=w, total=total, min_lr=min_lr)
        theirs = _torch_lrs(lambda o: L.SequentialLR(
            o, [L.LinearLR(o, 1 / (w + 1), 1.0, w), L.CosineAnnealingLR(o, total - w, min_lr)], milestones=[w]), total + 1, lr=base_lr)
        _compare(ours, theirs,
                 f"warmup + cosine (base_lr={base_lr}, W={w}, T={total}, min_lr={min_lr})")


@warmup_cosine.check("stays at min_lr after total", hint="PyTorch's cosine climbs back up after `T_max`; nanoGPT's holds `min_lr`. Hold it.")
def _(f, ref):
    for t in (101, 150, 199, 1000):
        got = float(f(t, base_lr=0.1, warmup=10, total=100, min_lr=0.01))
        assert got == 0.01, f"at step {t} > total=100 you return {got}, expected min_lr=0.01"


# --- 2. one-cycle ---------------------------------------------------------------

one_cycle = Exercise(
    id="schedule.one-cycle",
    title="One-cycle",
    entry="one_cycle",
    prompt=(
        "Write `one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)`, "
        "PyTorch's two-phase `OneCycleLR` with cosine annealing, for one integer step in `[0, total)`: "
        "start at $\\eta_{\\max}/d$, rise to $\\eta_{\\max}$ at step $pT - 1$, then fall to "
        "$\\eta_{\\max}/(d\\, d_f)$ at step $T - 1$. Each phase anneals from $s$ to $e$ as "
        "$e + \\tfrac12(s - e)(1 + \\cos \\pi x)$, $x$ going from 0 to 1 over the phase."
    ),
    stub='''
import math

def one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """PyTorch's OneCycleLR (two phases, cosine annealing) at integer step in [0, total)."""
    # 1) the three rates: initial, peak, final
    # 2) the phases: [0, pct_start * total - 1] up, [pct_start * total - 1, total - 1] down
    # 3) cosine-anneal within the phase the step is in
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import math

def one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """PyTorch's OneCycleLR (two phases, cosine annealing) at integer step in [0, total)."""
    # 1) the three rates: initial, peak, final
    initial_lr = max_lr / div_factor
    final_lr = initial_lr / final_div_factor
    # 2) the phases: [0, pct_start * total - 1] up, [pct_start * total - 1, total - 1] down
    peak_step = pct_start * total - 1
    if step <= peak_step:
        start, end, x = initial_lr, max_lr, step / peak_step
    else:
        start, end, x = max_lr, final_lr, (step - peak_step) / (total - 1 - peak_step)
    # 3) cosine-anneal within the phase the step is in
    return end + (start - end) / 2 * (1 + math.cos(math.pi * x))
''',
    wrong=(
        # final rate from max_lr instead of the initial rate
        "import math\ndef one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):\n"
        "    initial_lr = max_lr / div_factor\n    final_lr = max_lr / final_div_factor\n    peak = pct_start * total - 1\n"
        "    if step <= peak:\n        s, e, x = initial_lr, max_lr, step / peak\n"
        "    else:\n        s, e, x = max_lr, final_lr, (step - peak) / (total - 1 - peak)\n"
        "    return e + (s - e) / 2 * (1 + math.cos(math.pi * x))\n",
        # peak at pct_start * total (off by one)
        "import math\ndef one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):\n"
        "    initial_lr = max_lr / div_factor\n    final_lr = initial_lr / final_div_factor\n    peak = pct_start * total\n"
        "    if step <= peak:\n        s, e, x = initial_lr, max_lr, step / peak\n"
        "    else:\n        s, e, x = max_lr, final_lr, (step - peak) / (total - 1 - peak)\n"
        "    return e + (s - e) / 2 * (1 + math.cos(math.pi * x))\n",
        # linear annealing instead of cosine
        "def one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):\n"
        "    initial_lr = max_lr / div_factor\n    final_lr = initial_lr / final_div_factor\n    peak = pct_start * total - 1\n"
        "    if step <= peak:\n        s, e, x = initial_lr, max_lr, step / peak\n"
        "    else:\n        s, e, x = max_lr, final_lr, (step - peak) / (total - 1 - peak)\n"
        "    return s + (e - s) * x\n",
        # starts at max_lr: no warm-up phase
        "import math\ndef one_cycle(step, *, max_lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):\n"
        "    final_lr = max_lr / div_factor / final_div_factor\n"
        "    return final_lr + (max_lr - final_lr) / 2 * (1 + math.cos(math.pi * step / (total - 1)))\n",
    ),
)

_OC_SETTINGS = [dict(max_lr=0.1, total=100), dict(max_lr=2.0, total=250, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
                dict(max_lr=0.01, total=37, pct_start=0.5)]


def _onecycle_torch(kw) -> list[float]:
    return _torch_lrs(lambda o: L.OneCycleLR(o, kw["max_lr"], total_steps=kw["total"], pct_start=kw.get("pct_start", 0.3),
                                             div_factor=kw.get("div_factor", 25.0), final_div_factor=kw.get("final_div_factor", 1e4)),
                      kw["total"])


@one_cycle.check("starts at max_lr / div_factor and ends at max_lr / div_factor / final_div_factor",
                 hint="The final rate is the *initial* rate divided by `final_div_factor`.")
def _(f, ref):
    for kw in _OC_SETTINGS:
        d, fd = kw.get("div_factor", 25.0), kw.get("final_div_factor", 1e4)
        first, last = float(f(0, **kw)), float(f(kw["total"] - 1, **kw))
        assert math.isclose(first, kw["max_lr"] / d, rel_tol=1e-9), f"step 0 gives {first}, expected max_lr / div_factor = {kw['max_lr'] / d}"
        assert math.isclose(last, kw["max_lr"] / d / fd, rel_tol=1e-9), f"the last step gives {last}, expected {kw['max_lr'] / d / fd}"


@one_cycle.check("matches torch.optim.lr_scheduler.OneCycleLR at every step",
                 hint="The peak is at step `pct_start * total - 1` (PyTorch counts from 0), and both phases use the cosine.")
def _(f, ref):
    for kw in _OC_SETTINGS:
        ours = _values(f, kw["total"], **kw)
        _compare(ours, _onecycle_torch(kw), f"one-cycle {kw}")


# --- Problems: experiments ----------------------------------------------------------------

settle_problem = Exercise(
    id="schedule.problem-settle-steps",
    title="How long until the floor?",
    entry="settle_steps",
    prompt=(
        "On the chapter's noisy quadratic (40 curvatures `torch.logspace(-2, 0, 40)`, $\\mathbb E[\\theta_i^2] = 1$ at the "
        "start, noise $c$, batch size $B$), run the expected-loss recursion $\\nu_i \\leftarrow (1 - \\eta h_i)^2 \\nu_i + "
        "\\eta^2 c h_i / B$ at a constant rate $\\eta$ and return the first step $t$ (counting the start as $t = 0$) at which "
        "the expected loss $\\tfrac12\\sum_i h_i \\nu_i$ is within 1% of the floor $\\sum_i \\eta c h_i / (2B(2 - \\eta h_i))$; "
        "None if that does not happen within `max_steps`."
    ),
    stub='''
import torch

def settle_steps(lr, *, noise=0.2, batch_size=1, max_steps=20000):
    """First step at which the noisy quadratic's expected loss is within 1% of its floor at constant rate lr."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def settle_steps(lr, *, noise=0.2, batch_size=1, max_steps=20000):
    """First step at which the noisy quadratic's expected loss is within 1% of its floor at constant rate lr."""
    h = torch.logspace(-2, 0, 40, dtype=torch.float64)
    floor = float((lr * noise * h / (2 * batch_size * (2 - lr * h))).sum())
    nu = torch.ones(40, dtype=torch.float64)
    for t in range(max_steps + 1):
        if float(0.5 * (h * nu).sum()) <= 1.01 * floor:
            return t
        nu = (1 - lr * h) ** 2 * nu + lr**2 * noise * h / batch_size
    return None
''',
    wrong=(
        # the first-order floor eta c h / (4B): too low for large rates, never reached
        "import torch\n"
        "def settle_steps(lr, *, noise=0.2, batch_size=1, max_steps=20000):\n"
        "    h = torch.logspace(-2, 0, 40, dtype=torch.float64)\n"
        "    floor = float((lr * noise * h / (4 * batch_size)).sum())\n"
        "    nu = torch.ones(40, dtype=torch.float64)\n"
        "    for t in range(max_steps + 1):\n"
        "        if float(0.5 * (h * nu).sum()) <= 1.01 * floor:\n"
        "            return t\n"
        "        nu = (1 - lr * h) ** 2 * nu + lr**2 * noise * h / batch_size\n"
        "    return None\n",
        # the mean's factor (1 - lr h) instead of its square for the second moment
        "import torch\n"
        "def settle_steps(lr, *, noise=0.2, batch_size=1, max_steps=20000):\n"
        "    h = torch.logspace(-2, 0, 40, dtype=torch.float64)\n"
        "    floor = float((lr * noise * h / (2 * batch_size * (2 - lr * h))).sum())\n"
        "    nu = torch.ones(40, dtype=torch.float64)\n"
        "    for t in range(max_steps + 1):\n"
        "        if float(0.5 * (h * nu).sum()) <= 1.01 * floor:\n"
        "            return t\n"
        "        nu = (1 - lr * h) * nu + lr**2 * noise * h / batch_size\n"
        "    return None\n",
        # ignores the batch size in the noise
        "import torch\n"
        "def settle_steps(lr, *, noise=0.2, batch_size=1, max_steps=20000):\n"
        "    h = torch.logspace(-2, 0, 40, dtype=torch.float64)\n"
        "    floor = float((lr * noise * h / (2 * (2 - lr * h))).sum())\n"
        "    nu = torch.ones(40, dtype=torch.float64)\n"
        "    for t in range(max_steps + 1):\n"
        "        if float(0.5 * (h * nu).sum()) <= 1.01 * floor:\n"
        "            return t\n"
        "        nu = (1 - lr * h) ** 2 * nu + lr**2 * noise * h\n"
        "    return None\n",
    ),
)


def _settled_by_losslab(lr: float, noise: float, batch_size: int) -> int:
    """The same reading from losslab.schedules.noisy_quadratic_loss (the chapter's first figure)."""
    from ..schedules import constant_lr, noisy_quadratic_loss

    h = torch.logspace(-2, 0, 40, dtype=torch.float64)
    floor = float((lr * noise * h / (2 * batch_size * (2 - lr * h))).sum())
    curve = noisy_quadratic_loss(constant_lr(torch.arange(3000), base_lr=lr), noise=noise, batch_size=batch_size)
    return int((curve <= 1.01 * floor).nonzero()[0])


@settle_problem.check("matches the recursion of losslab.schedules at rate 1.0 and at rate 0.5 with B = 4",
                      hint="Square the factor: $\\mathbb E[\\theta^2]$ is multiplied by $(1 - \\eta h)^2$; keep the exact floor with "
                           "$2 - \\eta h$, and divide the noise by $B$.")
def _(f, ref):
    for lr, noise, b in ((1.0, 0.2, 1), (0.5, 1.0, 4)):
        got, expected = f(lr, noise=noise, batch_size=b, max_steps=2000), _settled_by_losslab(lr, noise, b)
        assert got == expected, f"lr = {lr}, noise = {noise}, B = {b}: expected step {expected}, got {got}"


@settle_problem.check("halving the rate makes settling take longer: roughly twice as long (1.5 to 3 times)",
                      hint="The flat directions relax in about $1/(2\\eta h)$ steps, so the time to settle grows like $1/\\eta$.")
def _(f, ref):
    fast, slow = f(1.0, max_steps=2000), f(0.5, max_steps=2000)
    assert fast is not None and slow is not None, f"settle_steps returned {fast} and {slow}"
    assert 1.5 < slow / fast < 3, f"settled after {fast} steps at rate 1.0 and {slow} at rate 0.5: ratio {slow / fast:.2f}"


growth_problem = Exercise(
    id="schedule.problem-batch-growth",
    title="Grow the batch or decay the rate",
    entry="decay_vs_growth",
    prompt=(
        "With `schedules.noisy_quadratic_loss` (noise 1.0), compare two ways of spending a budget of `examples` examples in "
        "three equal thirds: A keeps $B = 8$ and uses the rates 1, 0.2 and 0.04 in the three thirds; B keeps the rate 1 and "
        "uses the batch sizes 8, 40 and 200. Each third of A has `examples // 3 // 8` steps; each third of B has "
        "`examples // 3 // B` steps for its own $B$. Return `(final_a, final_b, steps_a, steps_b)`: the final expected losses "
        "and the number of steps of each run."
    ),
    stub='''
import torch
from losslab import schedules

def decay_vs_growth(examples):
    """Decay the rate at B = 8 (A) or grow the batch at rate 1 (B), over the same examples.

    Returns (final_a, final_b, steps_a, steps_b).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch
from losslab import schedules

def decay_vs_growth(examples):
    """Decay the rate at B = 8 (A) or grow the batch at rate 1 (B), over the same examples.

    Returns (final_a, final_b, steps_a, steps_b).
    """
    third = examples // 3
    rates_a = torch.cat([torch.full((third // 8,), r, dtype=torch.float64) for r in (1.0, 0.2, 0.04)])
    sizes_b = torch.cat([torch.full((third // b,), float(b), dtype=torch.float64) for b in (8, 40, 200)])
    loss_a = schedules.noisy_quadratic_loss(rates_a, noise=1.0, batch_size=8)
    loss_b = schedules.noisy_quadratic_loss(torch.ones(len(sizes_b), dtype=torch.float64), noise=1.0, batch_size=sizes_b)
    return float(loss_a[-1]), float(loss_b[-1]), len(rates_a), len(sizes_b)
''',
    wrong=(
        # B keeps as many steps as A: it processes far more examples
        "import torch\n"
        "from losslab import schedules\n"
        "def decay_vs_growth(examples):\n"
        "    third = examples // 3\n"
        "    rates_a = torch.cat([torch.full((third // 8,), r, dtype=torch.float64) for r in (1.0, 0.2, 0.04)])\n"
        "    sizes_b = torch.cat([torch.full((third // 8,), float(b), dtype=torch.float64) for b in (8, 40, 200)])\n"
        "    loss_a = schedules.noisy_quadratic_loss(rates_a, noise=1.0, batch_size=8)\n"
        "    loss_b = schedules.noisy_quadratic_loss(torch.ones(len(sizes_b), dtype=torch.float64), noise=1.0, batch_size=sizes_b)\n"
        "    return float(loss_a[-1]), float(loss_b[-1]), len(rates_a), len(sizes_b)\n",
        # B also decays the rate: a noise scale 25 times too small in its last third
        "import torch\n"
        "from losslab import schedules\n"
        "def decay_vs_growth(examples):\n"
        "    third = examples // 3\n"
        "    rates_a = torch.cat([torch.full((third // 8,), r, dtype=torch.float64) for r in (1.0, 0.2, 0.04)])\n"
        "    rates_b = torch.cat([torch.full((third // b,), r, dtype=torch.float64) for b, r in ((8, 1.0), (40, 0.2), (200, 0.04))])\n"
        "    sizes_b = torch.cat([torch.full((third // b,), float(b), dtype=torch.float64) for b in (8, 40, 200)])\n"
        "    loss_a = schedules.noisy_quadratic_loss(rates_a, noise=1.0, batch_size=8)\n"
        "    loss_b = schedules.noisy_quadratic_loss(rates_b, noise=1.0, batch_size=sizes_b)\n"
        "    return float(loss_a[-1]), float(loss_b[-1]), len(rates_a), len(sizes_b)\n",
        # keeps B = 8 throughout (no growth): B stalls at the first floor
        "import torch\n"
        "from losslab import schedules\n"
        "def decay_vs_growth(examples):\n"
        "    third = examples // 3\n"
        "    rates_a = torch.cat([torch.full((third // 8,), r, dtype=torch.float64) for r in (1.0, 0.2, 0.04)])\n"
        "    loss_a = schedules.noisy_quadratic_loss(rates_a, noise=1.0, batch_size=8)\n"
        "    loss_b = schedules.noisy_quadratic_loss(torch.ones(len(rates_a), dtype=torch.float64), noise=1.0, batch_size=8)\n"
        "    return float(loss_a[-1]), float(loss_b[-1]), len(rates_a), len(rates_a)\n",
    ),
)


@growth_problem.check("the two runs end within 30% of each other on the same examples",
                      hint="In each third both runs have the same noise scale $\\eta/B$: 1/8, 1/40, 1/200.")
def _(f, ref):
    a, b, _, _ = f(2400)
    assert abs(b / a - 1) < 0.3, f"final expected losses: decaying the rate {a:.4g}, growing the batch {b:.4g}"


@growth_problem.check("growing the batch takes at least twice fewer steps, on the same number of examples",
                      hint="B's thirds have `examples // 3 // B` steps each: 100, 20 and 4 for 2,400 examples.")
def _(f, ref):
    _, _, steps_a, steps_b = f(2400)
    assert (steps_a, steps_b) == (300, 124), f"steps: A {steps_a}, B {steps_b}; expected 300 and 124 for 2,400 examples"


@growth_problem.check("agrees with the reference for another budget",
                      hint="Build the rates (A) and the batch sizes (B) third by third, and pass B's sizes as `batch_size`.")
def _(f, ref):
    got, expected = f(3600), ref(3600)
    assert all(abs(g - e) <= 1e-9 * max(1.0, abs(e)) for g, e in zip(got, expected)), f"for 3,600 examples expected {expected}, got {got}"
