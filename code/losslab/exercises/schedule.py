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
