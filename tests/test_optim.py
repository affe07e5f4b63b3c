"""losslab.optim against torch.optim, step for step, and the linear rates on quadratics against theory."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import landscapes, optim

STEPS = 100
TOL = dict(rtol=1e-6, atol=1e-12)  # the 1e-6; float64 agreement is in practice ~1e-15


def gradient_stream(kind: str, shape=(6, 3), steps=STEPS, seed=0):
    """A fixed sequence of gradients: random, tiny, huge, with zeros, or all zero."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        r = torch.randn(shape, generator=g, dtype=torch.float64)
        if kind == "tiny":
            r = r * 1e-150
        elif kind == "huge":
            r = r * 1e100
        elif kind == "mixed":  # magnitudes from 1e-8 to 1e8 in one tensor, exact zeros and ties
            scale = 10.0 ** torch.randint(-8, 9, shape, generator=g).double()
            r = r * scale
            r[0] = 0.0
            r[1] = 1.0
        elif kind == "zero":
            r = torch.zeros(shape, dtype=torch.float64)
        out.append(r)
    return out


def run_ours(step_fn, p0, grads, **hyper):
    p, state = p0.clone(), {}
    for g in grads:
        p, state = step_fn(p, g, state, **hyper)
    return p, state


def run_torch(cls, p0, grads, **hyper):
    p = torch.nn.Parameter(p0.clone())
    opt = cls([p], **hyper)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


CASES = [
    (optim.sgd_step, torch.optim.SGD, dict(lr=0.1)),
    (optim.sgd_step, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.sgd_step, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    (optim.sgd_step, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
    (optim.sgd_step, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    (optim.adagrad_step, torch.optim.Adagrad, dict(lr=0.1)),
    (optim.adagrad_step, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.5)),
    (optim.rmsprop_step, torch.optim.RMSprop, dict(lr=0.01)),
    (optim.rmsprop_step, torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.7, weight_decay=0.01)),
    (optim.rmsprop_step, torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    (optim.rmsprop_step, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
    (optim.adam_step, torch.optim.Adam, dict(lr=0.01)),
    (optim.adam_step, torch.optim.Adam, dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1)),
    (optim.adam_step, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.adamw_step, torch.optim.AdamW, dict(lr=0.01)),
    (optim.adamw_step, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.5, amsgrad=True, eps=1e-6)),
]


def _id(case):
    fn, cls, hyper = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in hyper.items())


@pytest.mark.parametrize("kind", ["random", "tiny", "huge", "mixed", "zero"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_matches_torch_optim_for_100_steps(case, kind):
    step_fn, cls, hyper = case
    if kind == "huge" and cls is torch.optim.RMSprop and hyper.get("centered"):
        # v - gbar^2 of numbers ~1e200 cancels catastrophically: PyTorch's own result is rounding noise there
        pytest.skip("centered RMSprop is ill-conditioned for gradients ~1e100 (in torch too)")
    grads = gradient_stream(kind)
    p0 = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours, _ = run_ours(step_fn, p0, grads, **hyper)
    theirs = run_torch(cls, p0, grads, **hyper)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, **TOL)
    if kind == "zero" and not hyper.get("weight_decay") and cls is not torch.optim.AdamW:  # AdamW decays by default
        assert torch.equal(ours, p0), "a zero gradient must not move the parameters"


def test_gradient_with_large_dynamic_range_moves_parameters_as_torch():
    """Adam's step is ~lr whatever the gradient's scale: tiny and huge gradients move parameters alike."""
    p0 = torch.zeros(2, 1, dtype=torch.float64)
    g = torch.tensor([[1e-6], [1e6]], dtype=torch.float64)
    p, _ = optim.adam_step(p0, g, {}, lr=0.1)
    torch.testing.assert_close(p, torch.tensor([[-0.1 / (1 + 1e-2)], [-0.1]], dtype=torch.float64), rtol=1e-7, atol=0)


@pytest.mark.parametrize("method,hyper", [
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("rmsprop", dict(lr=0.01, centered=True, momentum=0.3)),
    ("adam", dict(lr=0.01, amsgrad=True)),
    ("adamw", dict(lr=0.01)),
    ("adagrad", dict(lr=0.1)),
])
def test_batched_rows_equal_separate_runs(method, hyper):
    step = optim.METHODS[method][0]
    n = 5
    grads = gradient_stream("mixed", shape=(n, 4), steps=30, seed=3)
    p0 = torch.randn(n, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    batched, _ = run_ours(step, p0, grads, **hyper)
    for i in range(n):
        single, _ = run_ours(step, p0[i:i + 1], [g[i:i + 1] for g in grads], **hyper)
        torch.testing.assert_close(batched[i:i + 1], single, rtol=0, atol=0)


def test_per_row_learning_rates_equal_separate_runs():
    lrs = torch.tensor([0.01, 0.1, 0.3], dtype=torch.float64)
    grads = gradient_stream("random", shape=(3, 2), steps=20)
    p0 = torch.ones(3, 2, dtype=torch.float64)
    batched, _ = run_ours(optim.sgd_step, p0, grads, lr=lrs, momentum=torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64))
    for i, (lr, m) in enumerate([(0.01, 0.0), (0.1, 0.5), (0.3, 0.9)]):
        theirs = run_torch(torch.optim.SGD, p0[i:i + 1], [g[i:i + 1] for g in grads], lr=lr, momentum=m)
        torch.testing.assert_close(batched[i:i + 1], theirs, **TOL)


def test_state_and_inputs_are_not_modified():
    p = torch.ones(2, 2, dtype=torch.float64)
    g = torch.full((2, 2), 0.5, dtype=torch.float64)
    p1, s1 = optim.sgd_step(p, g, {}, lr=0.1, momentum=0.9)
    before = s1["momentum_buffer"].clone()
    p2, s2 = optim.sgd_step(p1, g, s1, lr=0.1, momentum=0.9)
    assert torch.equal(p, torch.ones(2, 2, dtype=torch.float64)) and torch.equal(g, torch.full((2, 2), 0.5, dtype=torch.float64))
    assert torch.equal(s1["momentum_buffer"], before) and s1["step"] == 1 and s2["step"] == 2


def test_class_wrapper_matches_torch_on_a_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(32, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    ours = optim.Optimizer(net.parameters(), "adamw", lr=0.01, weight_decay=0.1)
    theirs = torch.optim.AdamW(twin.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(50):
        for model, opt in ((net, ours), (twin, theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, **TOL)


# --- rates on quadratics ----------------------------------------------------------

@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_gd_rate_at_one_over_L_is_one_minus_one_over_kappa(kappa):
    fn = landscapes.quadratic(kappa, angle=0.4)
    x0 = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    for lr, theory in ((1 / kappa, 1 - 1 / kappa), (2 / (1 + kappa), (kappa - 1) / (kappa + 1))):
        run = optim.run_trajectories(fn, x0, optim.optimizer("sgd", lr=lr), 400, device="cpu")
        rate = optim.measured_rate(run.path.norm(dim=-1)[:, 0], start=100, stop=400)
        assert abs(float(rate) - theory) < 1e-3 * theory, (kappa, lr, float(rate), theory)
        assert abs(optim.gd_rate(lr, [1.0, kappa]) - theory) < 1e-12


@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_heavy_ball_rate_at_best_beta_is_sqrt_kappa_rate(kappa):
    fn = landscapes.quadratic(kappa, angle=0.3)
    lr, beta, theory = optim.heavy_ball_best(1.0, kappa)
    assert theory == pytest.approx((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1))
    assert float(optim.heavy_ball_rate(lr, beta, [1.0, kappa])) == pytest.approx(theory, rel=1e-6)
    # SGD's buffer form equals the heavy ball with alpha = lr, beta = momentum
    steps = min(1000, int(150 / -math.log10(theory)))  # stop while r^t > 1e-150, far from float64 underflow
    run = optim.run_trajectories(fn, torch.tensor([[1.0, -1.0]], dtype=torch.float64),
                                 optim.optimizer("sgd", lr=lr, momentum=beta), steps, device="cpu")
    err = run.path.norm(dim=-1)[:, 0]
    rate = float(optim.measured_rate(err, start=steps // 2, stop=steps))
    # at the best beta the iteration matrix has a double eigenvalue, so e_t ~ t r^t: the t adds ln(2)/(steps/2) to log r
    assert abs(rate - theory) < 0.005 * theory, (rate, theory)
    # and it beats plain GD at its best step by far
    assert rate < (kappa - 1) / (kappa + 1)


def test_heavy_ball_rate_sweep_matches_measurement():
    kappa = 20.0
    fn = landscapes.quadratic(kappa, angle=0.7)
    betas = torch.tensor([0.0, 0.3, 0.6, 0.9], dtype=torch.float64)
    lr = 0.05
    x0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64).expand(4, 2).contiguous()
    run = optim.run_trajectories(fn, x0, optim.optimizer("sgd", lr=torch.full((4,), lr, dtype=torch.float64),
                                                         momentum=betas), 600, device="cpu")
    measured = optim.measured_rate(run.path.norm(dim=-1), start=300, stop=600)
    theory = optim.heavy_ball_rate(lr, betas, [1.0, kappa])
    torch.testing.assert_close(measured, theory, rtol=1e-2, atol=0)


# --- trajectories and basins ---------------------------------------------------------

def test_trajectories_report_divergence_without_nans():
    fn = landscapes.quadratic(10.0)
    x0 = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    run = optim.run_trajectories(fn, x0, optim.optimizer("sgd", lr=0.25), 200, bound=1e3, device="cpu")
    # lr = 0.25 > 2/L = 0.2: the start with a y component diverges, the one on the x axis converges
    assert run.diverged.tolist() == [True, False]
    assert torch.isfinite(run.path).all() and torch.isfinite(run.loss).all()
    t = int(run.diverged_at[0])
    assert 1.5**t > 1e3 > 1.5 ** (t - 1)  # |1 - 0.25 * 10| = 1.5 per step, from |y| = 1
    assert run.final[1].abs().max() < 1e-10


def test_trajectories_catch_overflow_to_inf_as_divergence():
    """With the bound at float32's edge the check must catch inf itself (the functions' own finiteness
    check is skipped inside the loop, which checks each new position)."""
    fn = landscapes.quadratic(10.0)
    x0 = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float32)
    run = optim.run_trajectories(fn, x0, optim.optimizer("sgd", lr=0.25), 400, bound=3e38, device="cpu")
    assert run.diverged.tolist() == [True, False]
    assert torch.isfinite(run.path).all()
    t = int(run.diverged_at[0])
    # |y| = 1.5^(t-1) before step t; the step's gradient 10 y overflows to inf first, below the bound
    top = float(torch.finfo(torch.float32).max)
    assert 10 * 1.5 ** (t - 1) > top > 10 * 1.5 ** (t - 2)
    assert float(run.final[0].abs().max()) < 3e38


def test_values_checked_skips_only_the_finiteness_check_and_only_inside():
    fn = landscapes.rosenbrock()
    bad = torch.tensor([[float("nan"), 0.0]])
    with pytest.raises(ValueError, match="points: expected finite values"):
        fn.grad(bad)
    with optim._checks.values_checked():
        assert torch.isnan(fn.grad(bad)).any()  # the caller vouches for its values: no pass, no sync
        with pytest.raises(ValueError, match=r"shape \[\.\.\., 2\]"):
            fn.grad(torch.zeros(3, 3))  # shape checks still run
    with pytest.raises(ValueError, match="points: expected finite values"):
        fn.grad(bad)
    with pytest.raises(RuntimeError), optim._checks.values_checked():
        raise RuntimeError("leaves the context")
    with pytest.raises(ValueError, match="points: expected finite values"):
        fn.grad(bad)


def test_basins_of_himmelblau_cover_the_four_minima():
    fn = landscapes.himmelblau()
    b = optim.basins(fn, optim.optimizer("sgd", lr=0.005), steps=400, resolution=24, device="cpu")
    frac = b.fractions()
    assert frac.shape == (6,) and abs(float(frac.sum()) - 1) < 1e-12
    assert (frac[:4] > 0.1).all(), frac  # every minimum attracts a good share of the square
    # a start beside a minimum ends there
    xs, ys = b.xs, b.ys
    i, j = int((ys - 2.0).abs().argmin()), int((xs - 3.0).abs().argmin())
    assert int(b.label[i, j]) == 0


def test_minibatch_gradient_variance_falls_as_one_over_batch_size():
    g = torch.Generator().manual_seed(0)
    n, d = 400, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.zeros(4000, d, dtype=torch.float64)
    full = optim.minibatch_gradients(x, y, w[:1], n)[0]
    per_example = x * (x @ w[0] - y).unsqueeze(1)  # (n, d)
    s2 = per_example.var(0, unbiased=True).sum()
    for b in (1, 10, 100):
        gb = optim.minibatch_gradients(x, y, w, b, generator=g)
        torch.testing.assert_close(gb.mean(0), full, rtol=0, atol=0.15 * float(s2 / b) ** 0.5 + 1e-3)
        var = ((gb - full) ** 2).sum(1).mean()
        theory = s2 / b * (n - b) / n  # sampling without replacement (s2 over n - 1: factor (n - b)/n)
        assert abs(float(var / theory) - 1) < 0.1, (b, float(var), float(theory))


@pytest.mark.parametrize("n", [2, 3, 6, 7])
@pytest.mark.parametrize("scale", [1.0, 1e-150, 1e150])
def test_minibatch_variance_equals_the_mean_over_every_batch(n, scale):
    """sigma^2/b (n-b)/n with sigma^2 over n - 1 is exact: compare with an enumeration of every subset."""
    from itertools import combinations

    g = torch.randn(n, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * scale
    mean = g.mean(0)
    for b in range(1, n + 1):
        exact = torch.stack([((g[list(B)].mean(0) - mean) ** 2).sum() for B in combinations(range(n), b)]).mean()
        ours = optim.minibatch_variance(g, b)
        assert ours.dtype == torch.float64
        assert abs(float(ours - exact)) <= 1e-12 * float(exact if b < n else ((g - mean) ** 2).sum()), (n, b)
    # the mixed formula, sigma^2 over n - 1 with (n - b)/(n - 1), is n/(n - 1) too large at b = 1
    mixed = g.var(0).sum() * (n - 1) / (n - 1)
    assert float(mixed / optim.minibatch_variance(g, 1)) == pytest.approx(n / (n - 1), rel=1e-12)


def test_minibatch_variance_matches_sampled_batches_of_least_squares():
    g = torch.Generator().manual_seed(4)
    n, d = 30, 2
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.full((20000, d), 0.3, dtype=torch.float64)
    full = optim.minibatch_gradients(x, y, w[:1], n)[0]
    per_example = x * (x @ w[0] - y).unsqueeze(1)
    for b in (1, 5, 25):  # at b = 25 of 30 the factor (n - b)/n = 1/6 is far from 1
        var = ((optim.minibatch_gradients(x, y, w, b, generator=g) - full) ** 2).sum(1).mean()
        assert float(var / optim.minibatch_variance(per_example, b)) == pytest.approx(1.0, abs=0.05), b


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(5), 2), "per_example"),
    ((torch.zeros(5, 2, dtype=torch.int64), 2), "per_example"),
    ((torch.zeros(1, 2, dtype=torch.float64), 1), "at least 2"),
    ((torch.zeros(5, 2, dtype=torch.float64), 0), "batch_size"),
    ((torch.zeros(5, 2, dtype=torch.float64), 6), "batch_size"),
    ((torch.zeros(5, 2, dtype=torch.float64), 2.0), "batch_size"),
])
def test_minibatch_variance_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        optim.minibatch_variance(*args)


# --- momentum conventions ---------------------------------------------------------------

def _momentum_three_ways(fn, x0, lrs, beta, nesterov=False):
    """PyTorch's buffer form (sgd_step), Polyak's heavy ball from rest, and Sutskever et al.'s velocity form."""
    p, state = x0, {}
    q, q_prev = x0, x0
    s, v = x0, torch.zeros_like(x0)
    for lr in lrs:
        p, state = optim.sgd_step(p, fn.grad(p), state, lr=lr, momentum=beta, nesterov=nesterov)
        if not nesterov:
            q, q_prev = q - lr * fn.grad(q) + beta * (q - q_prev), q
        v = beta * v - lr * fn.grad(s + beta * v if nesterov else s)
        s = s + v
    return p, q, s, v


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_sgd_momentum_is_polyak_and_sutskever_for_a_constant_lr(beta):
    fn = landscapes.quadratic(30.0, angle=0.8)
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p, q, s, _ = _momentum_three_ways(fn, x0, [0.02] * 150, beta)
    torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    torch.testing.assert_close(p, s, rtol=0, atol=1e-12)
    # and the same iterates as torch.optim.SGD
    w = torch.nn.Parameter(x0.clone())
    opt = torch.optim.SGD([w], lr=0.02, momentum=beta)
    for _ in range(150):
        w.grad = fn.grad(w.detach())
        opt.step()
    torch.testing.assert_close(p, w.detach(), rtol=0, atol=1e-12)


def test_sgd_momentum_rescales_the_velocity_when_the_lr_changes():
    fn = landscapes.quadratic(100.0, angle=0.3)
    x0 = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    lrs = [0.01] * 50 + [0.001] * 50
    p, q, s, _ = _momentum_three_ways(fn, x0, lrs, 0.9)
    torch.testing.assert_close(q, s, rtol=0, atol=1e-12)  # Polyak and Sutskever stay equal
    assert float((p - q).norm()) > 0.05 * float(q.norm())  # PyTorch's form does not
    # PyTorch's step right after the drop is the old velocity scaled by eta_new / eta_old, plus the new gradient step
    p49, st = x0, {}
    for lr in lrs[:50]:
        p_prev, (p49, st) = p49, optim.sgd_step(p49, fn.grad(p49), st, lr=lr, momentum=0.9)
    p50, _ = optim.sgd_step(p49, fn.grad(p49), st, lr=0.001, momentum=0.9)
    expected = p49 + 0.9 * (0.001 / 0.01) * (p49 - p_prev) - 0.001 * fn.grad(p49)
    torch.testing.assert_close(p50, expected, rtol=0, atol=1e-14)


def test_nesterov_iterate_is_sutskevers_look_ahead_point():
    fn = landscapes.quadratic(30.0, angle=0.2)
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    p, _, s, v = _momentum_three_ways(fn, x0, [0.01] * 80, 0.9, nesterov=True)
    torch.testing.assert_close(p, s + 0.9 * v, rtol=0, atol=1e-12)
    assert float((p - s).abs().max()) > 1e-6  # the look-ahead point, not Sutskever's theta itself


# --- bad input ----------------------------------------------------------------------

P = torch.zeros(3, 2, dtype=torch.float64)


@pytest.mark.parametrize("fn,hyper,match", [
    (optim.sgd_step, dict(lr=-0.1), "lr"),
    (optim.sgd_step, dict(lr=float("nan")), "lr"),
    (optim.sgd_step, dict(lr=0.1, momentum=-0.5), "momentum"),
    (optim.sgd_step, dict(lr=0.1, nesterov=True), "nesterov"),
    (optim.sgd_step, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (optim.sgd_step, dict(lr=torch.ones(2, dtype=torch.float64)), "lr"),
    (optim.sgd_step, dict(lr=torch.tensor([0.1, -0.1, 0.1], dtype=torch.float64)), "lr"),
    (optim.adam_step, dict(betas=(1.0, 0.999)), "beta1"),
    (optim.adam_step, dict(betas=(0.9, -0.1)), "beta2"),
    (optim.adam_step, dict(betas=(0.9,)), "betas"),
    (optim.adam_step, dict(eps=-1e-8), "eps"),
    (optim.adamw_step, dict(weight_decay=-0.01), "weight_decay"),
    (optim.rmsprop_step, dict(alpha=1.0), "alpha"),
    (optim.adagrad_step, dict(lr_decay=-1.0), "lr_decay"),
])
def test_invalid_hyperparameters_raise_naming_them(fn, hyper, match):
    with pytest.raises(ValueError, match=match):
        fn(P, P, {}, **hyper)


def test_bad_tensors_raise():
    with pytest.raises(ValueError, match="grads: expected shape"):
        optim.sgd_step(P, torch.zeros(2, 3, dtype=torch.float64), {}, lr=0.1)
    with pytest.raises(TypeError, match="grads: expected dtype"):
        optim.sgd_step(P, torch.zeros(3, 2), {}, lr=0.1)
    with pytest.raises(TypeError, match="params"):
        optim.sgd_step(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64), {}, lr=0.1)
    with pytest.raises(ValueError, match="grads: expected finite"):
        optim.adam_step(P, torch.full((3, 2), float("inf"), dtype=torch.float64), {})
    with pytest.raises(ValueError, match="state\\['exp_avg'\\]"):
        optim.adam_step(P, P, {"exp_avg": torch.zeros(2, dtype=torch.float64), "step": 1})
    with pytest.raises(ValueError, match="method"):
        optim.optimizer("lbfgs", lr=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        optim.optimizer("adam", lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="Invalid lr"):
        optim.optimizer("sgd", lr=-1.0)
    fn = landscapes.quadratic(10.0)
    with pytest.raises(ValueError, match="x0: expected shape"):
        optim.run_trajectories(fn, torch.zeros(5, 3, dtype=torch.float64), optim.optimizer("sgd", lr=0.1), 10)
    with pytest.raises(ValueError, match="steps"):
        optim.run_trajectories(fn, torch.zeros(5, 2, dtype=torch.float64), optim.optimizer("sgd", lr=0.1), 0)
    with pytest.raises(ValueError, match="x0: expected finite"):
        optim.run_trajectories(fn, torch.full((1, 2), float("nan"), dtype=torch.float64), optim.optimizer("sgd", lr=0.1), 3)
