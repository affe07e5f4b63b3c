"""losslab.schedules against torch.optim.lr_scheduler, value for value, in float64.

Convention: our ``f(t)`` is the rate PyTorch's scheduler reports after ``t``
calls of ``scheduler.step()`` (``get_last_lr()[0]``), i.e. the rate used for
optimizer step ``t``. PyTorch computes in Python floats (float64); so do we.
Where we differ on purpose (past the end of a horizon) the test says so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab import backend
from torch.optim import lr_scheduler as L

from losslab import data
from losslab import schedules as S

RTOL = 1e-12


def torch_lrs(make, n: int, lr: float = 0.1, momentum: float = 0.9) -> torch.Tensor:
    """The rate of each of ``n`` optimizer steps under the scheduler ``make(optimizer)``."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return torch.tensor(out, dtype=torch.float64)


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = RTOL, atol: float = 0.0) -> None:
    assert ours.dtype == torch.float64
    assert ours.shape == theirs.shape
    worst = ((ours - theirs).abs() - atol - rtol * theirs.abs()).max()
    assert worst <= 0, f"max |ours - torch| exceeds tolerance; ours={ours}, torch={theirs}"


def steps(n: int) -> torch.Tensor:
    return torch.arange(n)


# --- parity with PyTorch, several settings each ----------------------------------

@pytest.mark.parametrize("base_lr, step_size, gamma", [(0.1, 7, 0.5), (3.0, 1, 0.9), (1e-6, 50, 0.1), (0.5, 13, 1.0)])
def test_step_lr_matches_steplr(base_lr, step_size, gamma):
    n = 400
    assert_same(S.step_lr(steps(n), base_lr=base_lr, step_size=step_size, gamma=gamma),
                torch_lrs(lambda o: L.StepLR(o, step_size, gamma), n, lr=base_lr))


@pytest.mark.parametrize("milestones, gamma", [([30, 80], 0.1), ([100, 30, 30], 0.5), ([1], 0.3), ([], 0.1), ([5, 6, 7, 8, 500], 0.9)])
def test_multistep_lr_matches_multisteplr_including_repeated_milestones(milestones, gamma):
    n = 300
    assert_same(S.multistep_lr(steps(n), base_lr=0.2, milestones=milestones, gamma=gamma),
                torch_lrs(lambda o: L.MultiStepLR(o, milestones, gamma), n, lr=0.2))


@pytest.mark.parametrize("base_lr, gamma", [(0.1, 0.97), (10.0, 0.999), (1e-3, 0.5), (0.1, 1.0)])
def test_exponential_lr_matches_exponentiallr(base_lr, gamma):
    n = 600  # 0.5**600 is ~2e-181: still a normal float64, so relative error is meaningful
    assert_same(S.exponential_lr(steps(n), base_lr=base_lr, gamma=gamma),
                torch_lrs(lambda o: L.ExponentialLR(o, gamma), n, lr=base_lr), rtol=1e-12)


@pytest.mark.parametrize("total, power", [(100, 1.0), (250, 2.0), (37, 0.5), (1, 1.0), (400, 3.7)])
def test_polynomial_lr_matches_polynomiallr_over_and_past_the_horizon(total, power):
    n = 450
    ours = S.polynomial_lr(steps(n), base_lr=0.3, total=total, power=power)
    theirs = torch_lrs(lambda o: L.PolynomialLR(o, total, power), n, lr=0.3)
    assert_same(ours, theirs, atol=1e-17)  # PyTorch's recursive product reaches exactly 0 at `total`, as does ours
    assert float(ours[total:].abs().max()) == 0.0


@pytest.mark.parametrize("start, end, total", [(1 / 3, 1.0, 5), (0.01, 1.0, 100), (1.0, 0.0, 80), (0.2, 0.5, 50), (0.7, 0.7, 10)])
def test_linear_lr_matches_linearlr(start, end, total):
    n = 200
    assert_same(S.linear_lr(steps(n), base_lr=0.1, start_factor=start, end_factor=end, total=total),
                torch_lrs(lambda o: L.LinearLR(o, start, end, total), n), atol=1e-17)


@pytest.mark.parametrize("base_lr, total, min_lr", [(0.1, 100, 0.0), (0.1, 299, 1e-3), (3e-4, 1000, 3e-5), (1.0, 1, 0.0), (0.5, 7, 0.5)])
def test_cosine_lr_matches_cosineannealinglr_over_the_horizon(base_lr, total, min_lr):
    n = total + 1
    ours = S.cosine_lr(steps(n), base_lr=base_lr, total=total, min_lr=min_lr)
    # PyTorch's chained (recursive) form accumulates rounding of a few ulps of base_lr near the bottom
    assert_same(ours, torch_lrs(lambda o: L.CosineAnnealingLR(o, total, min_lr), n, lr=base_lr), atol=1e-15 * base_lr)


def test_cosine_lr_holds_min_lr_past_total_where_pytorch_climbs_back():
    """The one convention where we differ: PyTorch's cosine is periodic, ours stops at the bottom."""
    total, n = 50, 120
    ours = S.cosine_lr(steps(n), base_lr=0.1, total=total, min_lr=0.01)
    theirs = torch_lrs(lambda o: L.CosineAnnealingLR(o, total, 0.01), n)
    assert torch.all(ours[total:] == 0.01)
    assert theirs[2 * total] == pytest.approx(0.1)  # back at the top after another T_max steps
    closed = 0.01 + 0.09 * (1 + torch.cos(math.pi * steps(n).double() / total)) / 2
    assert_same(closed, theirs, atol=1e-15)  # PyTorch past T_max is the un-clamped formula


@pytest.mark.parametrize("warmup, start_factor", [(10, None), (1, None), (25, 0.1), (0, None), (40, 1.0)])
def test_linear_warmup_lr_matches_linearlr_warmup(warmup, start_factor):
    n = 120
    ours = S.linear_warmup_lr(steps(n), base_lr=0.1, warmup=warmup, start_factor=start_factor)
    if warmup == 0:
        assert torch.all(ours == 0.1)
        return
    f0 = 1 / (warmup + 1) if start_factor is None else start_factor
    assert_same(ours, torch_lrs(lambda o: L.LinearLR(o, f0, 1.0, warmup), n))
    if start_factor is None:  # nanoGPT's convention: lr * (t + 1) / (warmup + 1)
        expected = 0.1 * (torch.arange(n).clamp(max=warmup).double() + 1) / (warmup + 1)
        assert_same(ours, expected, rtol=1e-14)


@pytest.mark.parametrize("base_lr, warmup, total, min_lr", [(0.1, 20, 300, 0.0), (6e-4, 100, 2000, 6e-5), (1.0, 1, 10, 0.1), (0.3, 0, 50, 0.0), (0.1, 99, 100, 0.0)])
def test_warmup_cosine_matches_sequentiallr_of_linearlr_and_cosine(base_lr, warmup, total, min_lr):
    n = total + 1
    f0 = 1 / (warmup + 1)
    if warmup == 0:
        make = lambda o: L.CosineAnnealingLR(o, total, min_lr)  # noqa: E731
    else:
        make = lambda o: L.SequentialLR(  # noqa: E731
            o, [L.LinearLR(o, f0, 1.0, warmup), L.CosineAnnealingLR(o, total - warmup, min_lr)], milestones=[warmup])
    ours = S.warmup_cosine_lr(steps(n), base_lr=base_lr, warmup=warmup, total=total, min_lr=min_lr)
    assert_same(ours, torch_lrs(make, n, lr=base_lr), atol=1e-15 * base_lr)
    assert float(ours.max()) == pytest.approx(base_lr, rel=1e-15) and int(ours.argmax()) == warmup


def test_warmup_cosine_matches_lambdalr_and_holds_min_lr_after_total():
    base_lr, warmup, total, min_lr = 0.05, 30, 200, 5e-3

    def factor(t):  # nanoGPT's get_lr, divided by base_lr
        if t < warmup:
            return (t + 1) / (warmup + 1)
        if t > total:
            return min_lr / base_lr
        ratio = (t - warmup) / (total - warmup)
        return (min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (base_lr - min_lr)) / base_lr

    n = 260
    assert_same(S.warmup_cosine_lr(steps(n), base_lr=base_lr, warmup=warmup, total=total, min_lr=min_lr),
                torch_lrs(lambda o: L.LambdaLR(o, factor), n, lr=base_lr), rtol=1e-13)


@pytest.mark.parametrize(
    "kw",
    [
        dict(max_lr=0.1, total=300),
        dict(max_lr=0.1, total=300, anneal="linear"),
        dict(max_lr=2.0, total=1000, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
        dict(max_lr=0.1, total=301, three_phase=True),
        dict(max_lr=0.01, total=97, pct_start=0.45, anneal="linear", three_phase=True),
        dict(max_lr=0.5, total=10, pct_start=0.15),  # pct_start * total - 1 = 0.5: a fractional phase end
        dict(max_lr=0.5, total=50, pct_start=0.9),
    ],
)
def test_one_cycle_matches_onecyclelr(kw):
    n = kw["total"]
    torch_kw = dict(total_steps=kw["total"], pct_start=kw.get("pct_start", 0.3), anneal_strategy=kw.get("anneal", "cos"),
                    div_factor=kw.get("div_factor", 25.0), final_div_factor=kw.get("final_div_factor", 1e4),
                    three_phase=kw.get("three_phase", False))
    ours = S.one_cycle_lr(steps(n), **kw)
    assert_same(ours, torch_lrs(lambda o: L.OneCycleLR(o, kw["max_lr"], **torch_kw), n), rtol=1e-12)
    final = kw["max_lr"] / kw.get("div_factor", 25.0) / kw.get("final_div_factor", 1e4)
    assert float(ours[-1]) == pytest.approx(final, rel=1e-12)
    # convention: after the cycle, hold the final rate (PyTorch raises after `total` steps)
    assert torch.all(S.one_cycle_lr(torch.arange(n, n + 20), **kw) == final)


@pytest.mark.parametrize(
    "kw",
    [
        dict(base_lr=0.01, max_lr=0.1, step_size_up=10),
        dict(base_lr=0.01, max_lr=0.1, step_size_up=13, step_size_down=7),
        dict(base_lr=1e-4, max_lr=1.0, step_size_up=5, step_size_down=20, mode="triangular2"),
        dict(base_lr=0.001, max_lr=0.006, step_size_up=25, mode="exp_range", gamma=0.995),
        dict(base_lr=0.05, max_lr=0.05, step_size_up=3),
    ],
)
def test_cyclic_lr_matches_cycliclr(kw):
    n = 500
    torch_kw = dict(step_size_up=kw["step_size_up"], step_size_down=kw.get("step_size_down"),
                    mode=kw.get("mode", "triangular"), gamma=kw.get("gamma", 1.0))
    assert_same(S.cyclic_lr(steps(n), **kw), torch_lrs(lambda o: L.CyclicLR(o, kw["base_lr"], kw["max_lr"], **torch_kw), n))


@pytest.mark.parametrize("period, mult, min_lr", [(10, 1, 0.0), (7, 2, 1e-3), (1, 1, 0.0), (3, 3, 0.01), (50, 1, 0.05)])
def test_cosine_restarts_matches_cosineannealingwarmrestarts(period, mult, min_lr):
    n = 700
    assert_same(S.cosine_restarts_lr(steps(n), base_lr=0.1, period=period, period_mult=mult, min_lr=min_lr),
                torch_lrs(lambda o: L.CosineAnnealingWarmRestarts(o, period, mult, min_lr), n))


def plateau_sequence(seed: int, n: int = 200) -> list[float]:
    """A loss that falls, stalls, bounces and has exact ties (the hard cases for the threshold)."""
    g = np.random.default_rng(seed)
    trend = np.maximum(1.0 - np.arange(n) / 60, 0.2)
    noise = g.normal(0, 0.03, n)
    losses = (trend + noise).round(2)  # rounding makes ties
    losses[100:130] = losses[99]  # a flat stretch
    return losses.tolist()


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(patience=0),
        dict(patience=3, factor=0.5, cooldown=2),
        dict(patience=2, threshold=0.05, threshold_mode="abs", min_lr=1e-3),
        dict(patience=1, factor=0.9, threshold=0.0, eps=1e-3),
        dict(mode="max", patience=4, factor=0.3),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_reduce_on_plateau_matches_reducelronplateau(kw, seed):
    metrics = plateau_sequence(seed)
    if kw.get("mode") == "max":
        metrics = [-m for m in metrics]
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = L.ReduceLROnPlateau(opt, **kw)
    theirs = []
    for m in metrics:
        sched.step(m)
        theirs.append(opt.param_groups[0]["lr"])
    ours = S.plateau_lrs(metrics, base_lr=0.1, **kw)
    assert_same(ours, torch.tensor(theirs, dtype=torch.float64))
    assert len(set(theirs)) > 1 or kw.get("mode") == "max"  # the sequence does trigger reductions


def test_reduce_on_plateau_counts_patience_as_pytorch_does():
    sched = S.ReduceOnPlateau(1.0, patience=2, factor=0.5, threshold=0.0)
    got = [sched.step(x) for x in [5.0, 5.0, 5.0, 5.0, 4.0]]
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5]  # the 3rd non-improving value (> patience) cuts the rate
    assert "lr=0.5" in repr(sched)


# --- schedules PyTorch does not have: against their formulas ----------------------

@pytest.mark.parametrize("d_model, warmup", [(512, 4000), (64, 10), (1024, 1)])
def test_inverse_sqrt_is_the_transformer_formula(d_model, warmup):
    n = np.arange(0, 20000, 7)
    expected = d_model**-0.5 * np.minimum((n + 1) ** -0.5, (n + 1) * warmup**-1.5)  # Vaswani et al., steps from 1
    ours = S.inverse_sqrt_lr(n, base_lr=(d_model * warmup) ** -0.5, warmup=warmup)
    assert_same(ours, torch.tensor(expected), rtol=1e-13)
    peak = S.inverse_sqrt_lr(warmup - 1, base_lr=(d_model * warmup) ** -0.5, warmup=warmup)  # n = t + 1 = W
    assert float(peak) == pytest.approx((d_model * warmup) ** -0.5, rel=1e-15)


@pytest.mark.parametrize("shape", ["linear", "sqrt", "cosine"])
@pytest.mark.parametrize("warmup, total, decay, min_lr", [(10, 200, 40, 0.0), (0, 100, 100, 0.001), (5, 60, 1, 0.0), (30, 300, 270, 0.01)])
def test_wsd_is_warmup_then_flat_then_cooldown(shape, warmup, total, decay, min_lr):
    base = 0.2
    g = {"linear": lambda x: x, "sqrt": math.sqrt, "cosine": lambda x: (1 - math.cos(math.pi * x)) / 2}[shape]
    expected = []
    for t in range(total + 30):
        if t < warmup:
            expected.append(base * (t + 1) / (warmup + 1))
        elif t < total - decay:
            expected.append(base)
        elif t <= total:
            expected.append(min_lr + (base - min_lr) * (1 - g((t - total + decay) / decay)))
        else:
            expected.append(min_lr)
    ours = S.wsd_lr(steps(total + 30), base_lr=base, warmup=warmup, total=total, decay=decay, min_lr=min_lr, shape=shape)
    assert_same(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-13, atol=1e-17)


def test_constant_is_constant():
    assert torch.all(S.constant_lr(steps(50), base_lr=0.3) == 0.3)


# --- vectorization, shapes, devices -----------------------------------------------

@pytest.mark.parametrize("name", sorted(S.SCHEDULES))
def test_every_schedule_is_vectorized_over_any_shape_of_steps(name):
    kw = {
        "constant": dict(base_lr=0.1), "step": dict(base_lr=0.1, step_size=5), "multistep": dict(base_lr=0.1, milestones=[3, 9]),
        "exponential": dict(base_lr=0.1, gamma=0.9), "polynomial": dict(base_lr=0.1, total=20), "linear": dict(base_lr=0.1),
        "cosine": dict(base_lr=0.1, total=20), "linear warmup": dict(base_lr=0.1, warmup=5),
        "warmup + cosine": dict(base_lr=0.1, warmup=5, total=20), "one-cycle": dict(max_lr=0.1, total=30),
        "cyclic": dict(base_lr=0.01, max_lr=0.1, step_size_up=4), "inverse sqrt": dict(base_lr=0.1, warmup=5),
        "warmup-stable-decay": dict(base_lr=0.1, warmup=3, total=20, decay=5), "cosine restarts": dict(base_lr=0.1, period=4, period_mult=2),
    }[name]
    f = S.SCHEDULES[name]
    grid = torch.arange(24).reshape(2, 3, 4)
    batch = f(grid, **kw)
    assert batch.shape == (2, 3, 4) and batch.dtype == torch.float64
    one_by_one = torch.stack([f(int(t), **kw) for t in grid.flatten()]).reshape(2, 3, 4)
    assert torch.equal(batch, one_by_one)
    assert f(7, **kw).shape == () and torch.equal(f(np.arange(24), **kw), f(list(range(24)), **kw))
    assert f(torch.zeros(0, dtype=torch.int64), **kw).shape == (0,)
    assert bool((batch >= 0).all())


# --- bad input --------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: S.cosine_lr(10, base_lr=-0.1, total=100), ValueError, "Invalid learning rate: base_lr"),
        (lambda: S.cosine_lr(10, base_lr=0.0, total=100), ValueError, "base_lr"),
        (lambda: S.cosine_lr(10, base_lr=float("nan"), total=100), ValueError, "base_lr"),
        (lambda: S.cosine_lr(10, base_lr=0.1, total=100, min_lr=0.2), ValueError, "min_lr"),
        (lambda: S.cosine_lr(10, base_lr=0.1, total=0), ValueError, "total"),
        (lambda: S.cosine_lr(-1, base_lr=0.1, total=100), ValueError, "step"),
        (lambda: S.cosine_lr([0, 5, -3], base_lr=0.1, total=100), ValueError, "step"),
        (lambda: S.cosine_lr(1.5, base_lr=0.1, total=100), TypeError, "step"),
        (lambda: S.cosine_lr(torch.tensor([1.0]), base_lr=0.1, total=100), TypeError, "step"),
        (lambda: S.cosine_lr(True, base_lr=0.1, total=100), TypeError, "step"),
        (lambda: S.cosine_lr(3, base_lr="0.1", total=100), TypeError, "base_lr"),
        (lambda: S.cosine_lr(3, base_lr=0.1, total=100.0), TypeError, "total"),
        (lambda: S.warmup_cosine_lr(3, base_lr=0.1, warmup=200, total=100), ValueError, "warmup"),
        (lambda: S.warmup_cosine_lr(3, base_lr=0.1, warmup=100, total=100), ValueError, "warmup"),
        (lambda: S.warmup_cosine_lr(3, base_lr=0.1, warmup=-1, total=100), ValueError, "warmup"),
        (lambda: S.linear_warmup_lr(3, base_lr=0.1, warmup=5, start_factor=1.5), ValueError, "start_factor"),
        (lambda: S.step_lr(3, base_lr=0.1, step_size=0), ValueError, "step_size"),
        (lambda: S.step_lr(5000, base_lr=0.1, step_size=1, gamma=2.0), ValueError, "gamma"),
        (lambda: S.step_lr(3, base_lr=0.1, step_size=5, gamma=0.0), ValueError, "gamma"),
        (lambda: S.multistep_lr(3, base_lr=0.1, milestones=[0, 5]), ValueError, "milestones"),
        (lambda: S.multistep_lr(3, base_lr=0.1, milestones=5), TypeError, "milestones"),
        (lambda: S.exponential_lr(3, base_lr=0.1, gamma=-0.5), ValueError, "gamma"),
        (lambda: S.polynomial_lr(3, base_lr=0.1, total=10, power=0.0), ValueError, "power"),
        (lambda: S.linear_lr(3, base_lr=0.1, start_factor=0.0), ValueError, "start_factor"),
        (lambda: S.one_cycle_lr(3, max_lr=0.1, total=100, pct_start=1.2), ValueError, "pct_start"),
        (lambda: S.one_cycle_lr(3, max_lr=0.1, total=10, pct_start=0.1), ValueError, "pct_start"),
        (lambda: S.one_cycle_lr(3, max_lr=0.1, total=100, anneal="cosine"), ValueError, "anneal"),
        (lambda: S.one_cycle_lr(3, max_lr=0.1, total=100, div_factor=0.5), ValueError, "div_factor"),
        (lambda: S.one_cycle_lr(3, max_lr=0.1, total=100, pct_start=0.6, three_phase=True), ValueError, "pct_start"),
        (lambda: S.cyclic_lr(3, base_lr=0.1, max_lr=0.01, step_size_up=5), ValueError, "max_lr"),
        (lambda: S.cyclic_lr(3, base_lr=0.01, max_lr=0.1, step_size_up=5, mode="sine"), ValueError, "mode"),
        (lambda: S.inverse_sqrt_lr(3, base_lr=0.1, warmup=0), ValueError, "warmup"),
        (lambda: S.wsd_lr(3, base_lr=0.1, warmup=50, total=100, decay=60), ValueError, "decay"),
        (lambda: S.wsd_lr(3, base_lr=0.1, warmup=5, total=100, decay=10, shape="exp"), ValueError, "shape"),
        (lambda: S.cosine_restarts_lr(3, base_lr=0.1, period=0), ValueError, "period"),
        (lambda: S.cosine_restarts_lr(3, base_lr=0.1, period=5, period_mult=0), ValueError, "period_mult"),
        (lambda: S.ReduceOnPlateau(0.1, factor=1.0), ValueError, "factor"),
        (lambda: S.ReduceOnPlateau(-0.1), ValueError, "base_lr"),
        (lambda: S.ReduceOnPlateau(0.1, mode="maximum"), ValueError, "mode"),
        (lambda: S.ReduceOnPlateau(0.1).step(float("nan")), ValueError, "metric"),
        (lambda: S.plateau_lrs([[1.0]], base_lr=0.1), ValueError, "metrics"),
        (lambda: S.range_test_lrs(10, min_lr=1.0, max_lr=0.1), ValueError, "max_lr"),
        (lambda: S.range_test_lrs(10, min_lr=-1.0, max_lr=0.1), ValueError, "min_lr"),
        (lambda: S.suggest_lr([0.1, 0.2], [1.0, 1.0]), ValueError, "lrs"),
        (lambda: S.suggest_lr([0.1, 0.2, 0.3], [1.0, 1.0]), ValueError, "losses"),
        (lambda: S.suggest_lr([0.3, 0.2, 0.1], [1.0, 1.0, 1.0]), ValueError, "lrs"),
        (lambda: S.lr_range_test("not a function"), TypeError, "train_step"),
        (lambda: S.train_digits([[0.1, -0.1]], seeds=(0,)), ValueError, "Invalid learning rate"),
        (lambda: S.train_digits(torch.zeros(2, 2, 2), seeds=(0,)), ValueError, "lrs"),
        (lambda: S.BatchedMLP((0,), optimizer="lbfgs"), ValueError, "optimizer"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --- the LR range test --------------------------------------------------------------

def test_smoothing_is_a_bias_corrected_exponential_average():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, generator=g, dtype=torch.float64) * 5
    for beta in (0.0, 0.5, 0.98):
        got = S.smooth_losses(x, smoothing=beta)
        for i in (0, 1, 17, 39):
            w = torch.tensor([(1 - beta) * beta ** (i - j) for j in range(i + 1)], dtype=torch.float64)
            assert float(got[i]) == pytest.approx(float((w * x[: i + 1]).sum() / w.sum()), rel=1e-12)
    assert torch.allclose(S.smooth_losses(torch.full((10,), 2.5), smoothing=0.98), torch.full((10,), 2.5, dtype=torch.float64), rtol=1e-14)


def test_range_test_on_a_quadratic_stops_at_divergence_and_suggests_a_stable_rate():
    """Gradient descent on h/2 w^2 diverges for lr > 2/h: the test must find that edge."""
    h = 4.0
    w = [1.0]

    def train_step(lr):
        loss = 0.5 * h * w[0] ** 2
        w[0] -= lr * h * w[0]
        return loss

    run = S.lr_range_test(train_step, min_lr=1e-4, max_lr=10.0, num_steps=200, smoothing=0.0)
    assert run.stopped_early and len(run.lrs) < 200
    assert float(run.lrs[-1]) > 2 / h  # stopped only after crossing the stability edge
    assert run.suggested_lr < 2 / h
    # the loss at rate i is measured before step i, so the smoothed minimum shows up one rate after the edge
    assert run.min_loss_lr <= float(run.lrs[run.lrs < 2 / h][-1]) * (10 / 1e-4) ** (2 / 199)
    assert torch.allclose(run.lrs, S.range_test_lrs(200, min_lr=1e-4, max_lr=10.0)[: len(run.lrs)])
    assert "suggested_lr" in repr(run)


def test_range_test_lrs_are_geometric():
    lrs = S.range_test_lrs(5, min_lr=1e-4, max_lr=1.0)
    assert torch.allclose(lrs, torch.tensor([1e-4, 1e-3, 1e-2, 1e-1, 1.0], dtype=torch.float64), rtol=1e-12)


def test_suggest_lr_cuts_at_the_first_non_finite_loss():
    lrs = S.range_test_lrs(6, min_lr=0.01, max_lr=1.0)
    run = S.suggest_lr(lrs, [3.0, 2.0, 1.0, 0.9, float("inf"), 0.1], smoothing=0.0)
    assert len(run.lrs) == 4 and run.stopped_early
    assert run.min_loss_lr == pytest.approx(float(lrs[3]))


# --- the batched digits experiment ----------------------------------------------------

def test_batched_mlps_train_exactly_like_torch_nn_with_torch_optim():
    """Model k*S+s of BatchedMLP == an nn.Sequential with the same initial weights, minibatches and rates."""
    splits = data.digits(seed=0)
    seeds, hidden, bs, T = (3, 8), 16, 8, 6
    with backend.single_thread("cpu"):  # tiny matrices: one thread is faster, above all on a busy machine
        check_against_torch(splits, seeds, hidden, bs, T)


def check_against_torch(splits, seeds, hidden, bs, T):
    for optimizer in ("sgd", "adam"):
        net = S.BatchedMLP(seeds, n_copies=2, hidden=hidden, batch_size=bs, optimizer=optimizer, splits=splits, device="cpu")
        rates = torch.tensor([[0.05] * 2, [0.02] * 2]).repeat_interleave(len(seeds), 0)  # (M, 2): copies get different rates
        init = [p.clone() for p in net.params]
        got = torch.stack([net.step(rates[:, t % 2]) for t in range(T)])  # (T, M)
        for m, seed in enumerate(seeds * 2):
            g = torch.Generator().manual_seed(seed)  # initialization draws come first, then one minibatch per step
            model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
            with torch.no_grad():  # BatchedMLP stores W as (in, out); nn.Linear as (out, in)
                model[0].weight.copy_(init[0][m].T), model[0].bias.copy_(init[1][m])
                model[2].weight.copy_(init[2][m].T), model[2].bias.copy_(init[3][m])
            for shape in ((64, hidden), (hidden,), (hidden, 10), (10,)):
                torch.rand(shape, generator=g)
            opt = (torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9) if optimizer == "sgd"
                   else torch.optim.Adam(model.parameters(), lr=0.0))
            for t in range(T):
                idx = torch.randint(0, len(splits[0]), (bs,), generator=g)
                loss = torch.nn.functional.cross_entropy(model(splits[0].x[idx]), splits[0].y[idx])
                assert float(loss.detach()) == pytest.approx(float(got[t, m]), rel=1e-5), (optimizer, m, t)
                for group in opt.param_groups:
                    group["lr"] = float(rates[m, t % 2])
                opt.zero_grad()
                loss.backward()
                opt.step()


def test_train_digits_shapes_and_paired_seeds():
    T = 30
    lrs = torch.stack([S.constant_lr(torch.arange(T), base_lr=0.05), S.constant_lr(torch.arange(T), base_lr=0.05),
                       S.cosine_lr(torch.arange(T), base_lr=0.05, total=T)])
    run = S.train_digits(lrs, seeds=(0, 1), hidden=16, device="cpu")
    assert run.batch_loss.shape == (3, 2, T) and run.test_accuracy.shape == (3, 2)
    assert torch.equal(run.batch_loss[0], run.batch_loss[1])  # same rates, same seed: the same run
    assert not torch.equal(run.batch_loss[0, 0], run.batch_loss[0, 1])  # different seeds differ
    assert torch.equal(run.batch_loss[0, :, 0], run.batch_loss[2, :, 0])  # same start for every schedule
    assert float(run.batch_loss[0, :, -5:].mean()) < float(run.batch_loss[0, :, :5].mean())  # it learns
    assert 0 <= float(run.test_accuracy.min()) and float(run.test_accuracy.max()) <= 1


# --- reduce on plateau steering the noisy quadratic; what train_digits records ------------

@pytest.mark.parametrize("kw", [dict(factor=0.5, patience=10, threshold=0.01), dict(factor=0.3, patience=3, threshold=1e-3, cooldown=2)])
def test_noisy_quadratic_plateau_matches_reducelronplateau_in_the_loop(kw):
    """PyTorch's ReduceLROnPlateau, driven by the same recursion, sets the same rates; the losses are the open-loop ones."""
    h = torch.logspace(-2, 0, 40, dtype=torch.float64)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = L.ReduceLROnPlateau(opt, **kw)
    m, theirs = torch.ones(40, dtype=torch.float64), []
    for _ in range(300):
        lr = opt.param_groups[0]["lr"]
        theirs.append(lr)
        m = (1 - lr * h) ** 2 * m + lr**2 * 0.2 * h
        sched.step(float(0.5 * (h * m).sum()))
    lrs, losses = S.noisy_quadratic_plateau(1.0, steps=300, noise=0.2, **kw)
    assert_same(lrs, torch.tensor(theirs, dtype=torch.float64))
    assert len(set(theirs)) > 2  # the loss stalls at each floor, so the rule does cut, several times
    assert lrs.shape == (300,) and losses.shape == (301,)
    torch.testing.assert_close(losses, S.noisy_quadratic_loss(lrs, noise=0.2), rtol=1e-13, atol=0.0)


def test_noisy_quadratic_plateau_without_noise_never_stalls_on_one_curvature():
    # one curvature, no noise: the loss shrinks by (1 - lr h)^2 = 0.25 each step, always a 75% improvement
    lrs, losses = S.noisy_quadratic_plateau(0.5, steps=20, curvatures=[1.0], noise=0.0, patience=0, threshold=0.5)
    assert bool((lrs == 0.5).all())
    torch.testing.assert_close(losses, 0.5 * 0.25 ** torch.arange(21, dtype=torch.float64), rtol=1e-14, atol=0.0)


@pytest.mark.parametrize(
    "kw, message",
    [(dict(steps=0), "steps"), (dict(steps=5, noise=-1.0), "noise"), (dict(steps=5, curvatures=[-1.0]), "curvatures"),
     (dict(steps=5, factor=2.0), "factor"), (dict(steps=5, batch_size=0), "batch_size")],
)
def test_noisy_quadratic_plateau_bad_input_names_the_argument(kw, message):
    with pytest.raises(ValueError, match=message):
        S.noisy_quadratic_plateau(1.0, **kw)


def test_train_digits_records_weight_norms_and_training_accuracy():
    T, seeds = 12, (0, 3)
    lrs = torch.stack([torch.zeros(T, dtype=torch.float64), S.constant_lr(torch.arange(T), base_lr=0.05)])
    run = S.train_digits(lrs, seeds=seeds, hidden=16, batch_size=8, device="cpu")
    assert run.weight_norm.shape == (2, 2, T) and run.train_accuracy.shape == (2, 2)
    # the same models stepped by hand: the norm of all parameters after every step
    net = S.BatchedMLP(seeds, n_copies=2, hidden=16, batch_size=8, device="cpu")
    per_model = lrs.repeat_interleave(len(seeds), 0).float()
    for t in range(T):
        net.step(per_model[:, t])
        flat = torch.cat([p.detach().reshape(net.M, -1) for p in net.params], 1)  # (M, all parameters)
        torch.testing.assert_close(run.weight_norm[:, :, t].reshape(-1), torch.linalg.vector_norm(flat, dim=1), rtol=1e-5, atol=0.0)
    # at rate 0 nothing moves: the norm stays that of the initial weights, and the accuracy is the untrained
    # network's, computed here with torch.nn on those weights
    assert torch.equal(run.weight_norm[0, :, 0], run.weight_norm[0, :, -1])
    assert bool((run.weight_norm[1, :, -1] != run.weight_norm[1, :, 0]).all())
    train, _, _ = data.digits()
    init = S.BatchedMLP(seeds, hidden=16, device="cpu").params
    for s in range(len(seeds)):
        model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
        with torch.no_grad():
            model[0].weight.copy_(init[0][s].T), model[0].bias.copy_(init[1][s])
            model[2].weight.copy_(init[2][s].T), model[2].bias.copy_(init[3][s])
            acc = float((model(train.x).argmax(1) == train.y).float().mean())
        assert float(run.train_accuracy[0, s]) == pytest.approx(acc, abs=1e-6)
