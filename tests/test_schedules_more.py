"""Schedules added or fixed for issue 18, value for value against torch.optim.lr_scheduler."""

from __future__ import annotations

import random
import time

import pytest
import torch
from torch.optim import lr_scheduler as L

from losslab import schedules as S
from test_schedules import assert_same, steps, torch_lrs


@pytest.mark.parametrize("factor, total", [(1 / 3, 5), (0.1, 1), (0.5, 30), (1e-3, 3), (1.0, 4)])
def test_constant_factor_lr_matches_constantlr(factor, total):
    assert_same(S.constant_factor_lr(steps(20), base_lr=0.2, factor=factor, total=total),
                torch_lrs(lambda o: L.ConstantLR(o, factor=factor, total_iters=total), 20, lr=0.2))


@pytest.mark.parametrize("kind", ["number", "decay", "varying"])
def test_multiplicative_lr_matches_multiplicativelr(kind):
    f = {"number": 0.95, "decay": (lambda k: 0.9), "varying": (lambda k: 1.0 + 0.1 * ((-1) ** k) / (k + 1))}[kind]
    torch_f = f if callable(f) else (lambda k: 0.95)
    assert_same(S.multiplicative_lr(steps(60), base_lr=0.3, factor=f),
                torch_lrs(lambda o: L.MultiplicativeLR(o, torch_f), 60, lr=0.3), rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_chained_lr_matches_chainedscheduler(seed):
    rng = random.Random(seed)
    factor, total, gamma = rng.uniform(0.05, 1.0), rng.randint(1, 10), rng.uniform(0.8, 1.0)
    size, g2 = rng.randint(1, 8), rng.uniform(0.1, 1.0)
    start, lin_total = rng.uniform(0.1, 1.0), rng.randint(1, 12)
    ours = S.chained_lr(steps(50), base_lr=0.5, factors=[
        lambda t: S.constant_factor_lr(t, base_lr=1.0, factor=factor, total=total),
        lambda t: S.exponential_lr(t, base_lr=1.0, gamma=gamma),
        lambda t: S.step_lr(t, base_lr=1.0, step_size=size, gamma=g2),
        lambda t: S.linear_lr(t, base_lr=1.0, start_factor=start, end_factor=1.0, total=lin_total),
    ])
    theirs = torch_lrs(lambda o: L.ChainedScheduler([
        L.ConstantLR(o, factor=factor, total_iters=total), L.ExponentialLR(o, gamma=gamma),
        L.StepLR(o, step_size=size, gamma=g2), L.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=lin_total)]),
        50, lr=0.5)
    assert_same(ours, theirs, rtol=1e-10)


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.97)])
@pytest.mark.parametrize("up, down", [(4, None), (3, 7)])
def test_cyclic_momentum_matches_cycliclr_with_cycle_momentum(mode, gamma, up, down):
    n = 60
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = L.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma,
                       cycle_momentum=True, base_momentum=0.75, max_momentum=0.95)
    lrs, moms = [], []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    kw = dict(step_size_up=up, step_size_down=down, mode=mode, gamma=gamma)
    assert_same(S.cyclic_lr(steps(n), base_lr=0.01, max_lr=0.1, **kw), torch.tensor(lrs, dtype=torch.float64))
    assert_same(S.cyclic_momentum(steps(n), base_momentum=0.75, max_momentum=0.95, **kw),
                torch.tensor(moms, dtype=torch.float64), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("gamma", [1.05, 1.3, 2.0])
def test_step_and_exponential_lr_grow_with_gamma_above_one_like_torch(gamma):
    assert_same(S.exponential_lr(steps(80), base_lr=1e-6, gamma=gamma),
                torch_lrs(lambda o: L.ExponentialLR(o, gamma), 80, lr=1e-6), rtol=1e-12)
    assert_same(S.step_lr(steps(80), base_lr=1e-6, step_size=3, gamma=gamma),
                torch_lrs(lambda o: L.StepLR(o, 3, gamma), 80, lr=1e-6), rtol=1e-12)
    with pytest.raises(ValueError, match="gamma"):
        S.exponential_lr(100000, base_lr=1.0, gamma=gamma)


def test_linear_lr_with_end_factor_zero_is_never_negative():
    rng = random.Random(0)
    for _ in range(2000):
        start, total = rng.uniform(1e-6, 1.0), rng.randint(1, 500)
        lr = S.linear_lr(torch.arange(total + 5), base_lr=rng.uniform(1e-6, 10.0), start_factor=start, end_factor=0.0,
                         total=total)
        assert float(lr.min()) >= 0.0 and float(lr[total:].abs().max()) == 0.0


def test_cosine_restarts_with_equal_periods_costs_the_same_at_any_step():
    t0 = time.perf_counter()
    far = S.cosine_restarts_lr(torch.tensor([10**15, 10**15 + 1]), base_lr=1.0, period=1)
    assert time.perf_counter() - t0 < 0.5 and far.tolist() == [1.0, 1.0]
    assert_same(S.cosine_restarts_lr(steps(50), base_lr=0.1, period=7, min_lr=0.01),
                torch_lrs(lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7, eta_min=0.01), 50, lr=0.1), rtol=1e-12)


@pytest.mark.parametrize("call, error, match", [
    (lambda: S.ReduceOnPlateau(0.1).step(None), TypeError, "metric"),
    (lambda: S.ReduceOnPlateau(0.1).step("0.5"), TypeError, "metric"),
    (lambda: S.ReduceOnPlateau(0.1).step(float("nan")), ValueError, "metric"),
    (lambda: S.constant_factor_lr(3, base_lr=0.1, factor=1.5), ValueError, "factor"),
    (lambda: S.constant_factor_lr(3, base_lr=0.1, total=0), ValueError, "total"),
    (lambda: S.multiplicative_lr(3, base_lr=0.1, factor=lambda k: -1.0), ValueError, "factor"),
    (lambda: S.multiplicative_lr(3, base_lr=0.1, factor="0.9"), TypeError, "factor"),
    (lambda: S.chained_lr(3, base_lr=0.1, factors=[]), ValueError, "factors"),
    (lambda: S.chained_lr(3, base_lr=0.1, factors=[0.5]), TypeError, "factors"),
    (lambda: S.cyclic_momentum(3, base_momentum=0.9, max_momentum=0.8, step_size_up=2), ValueError, "max_momentum"),
    (lambda: S.cyclic_momentum(3, max_momentum=1.0, step_size_up=2), ValueError, "max_momentum"),
])
def test_bad_input_is_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()
