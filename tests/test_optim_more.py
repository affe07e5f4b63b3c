"""The optimizers readers meet beyond SGD and Adam, the Optimizer class, and the optimizers' input checks.

NAdam, RAdam, Adamax, Adadelta and L-BFGS against ``torch.optim`` (float64,
many steps, random hyperparameters, ``maximize``); Lion against its paper's
update written out; :class:`losslab.optim.Optimizer` with parameter groups,
``state_dict``/``load_state_dict`` and a closure against ``torch.optim``.
"""

from __future__ import annotations

import contextlib
import random

import pytest
import torch

from losslab import optim

TOL = dict(rtol=1e-10, atol=1e-12)


@contextlib.contextmanager
def float64_default():
    """torch.optim keeps some scalar state (NAdam's mu_product) in the default dtype: float64 for an exact comparison."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def stream(seed, shape=(5, 3), steps=60):
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        scale = 10.0 ** torch.randint(-4, 5, shape, generator=g).double()
        r = torch.randn(shape, generator=g, dtype=torch.float64) * scale
        if t % 7 == 3:
            r[0] = 0.0
        out.append(r)
    return out


def random_hyper(name, rng):
    b = (rng.uniform(0.0, 0.99), rng.uniform(0.5, 0.9999))
    wd = rng.choice([0.0, rng.uniform(0, 0.1)])
    mx = rng.random() < 0.3
    return {
        "nadam": (optim.nadam_step, torch.optim.NAdam,
                  dict(lr=rng.uniform(1e-4, 0.1), betas=b, eps=rng.choice([1e-8, 1e-3]), weight_decay=wd,
                       momentum_decay=rng.uniform(0, 0.01), decoupled_weight_decay=rng.random() < 0.5, maximize=mx)),
        "radam": (optim.radam_step, torch.optim.RAdam,
                  dict(lr=rng.uniform(1e-4, 0.1), betas=b, eps=rng.choice([1e-8, 1e-3]), weight_decay=wd,
                       decoupled_weight_decay=rng.random() < 0.5, maximize=mx)),
        "adamax": (optim.adamax_step, torch.optim.Adamax,
                   dict(lr=rng.uniform(1e-4, 0.1), betas=b, eps=rng.choice([1e-8, 1e-3]), weight_decay=wd, maximize=mx)),
        "adadelta": (optim.adadelta_step, torch.optim.Adadelta,
                     dict(lr=rng.uniform(0.1, 2.0), rho=rng.uniform(0.0, 0.99), eps=rng.choice([1e-6, 1e-3]),
                          weight_decay=wd, maximize=mx)),
        "sgd": (optim.sgd_step, torch.optim.SGD,
                dict(lr=rng.uniform(1e-3, 0.1), momentum=rng.uniform(0, 0.95), dampening=rng.uniform(0, 0.5),
                     weight_decay=wd, maximize=mx)),
        "adagrad": (optim.adagrad_step, torch.optim.Adagrad, dict(lr=rng.uniform(1e-3, 0.1), weight_decay=wd, maximize=mx)),
        "rmsprop": (optim.rmsprop_step, torch.optim.RMSprop,
                    dict(lr=rng.uniform(1e-4, 0.01), alpha=rng.uniform(0.5, 0.999), momentum=rng.uniform(0, 0.9),
                         centered=rng.random() < 0.5, weight_decay=wd, maximize=mx)),
        "adam": (optim.adam_step, torch.optim.Adam,
                 dict(lr=rng.uniform(1e-4, 0.1), betas=b, weight_decay=wd, amsgrad=rng.random() < 0.5, maximize=mx)),
        "adamw": (optim.adamw_step, torch.optim.AdamW,
                  dict(lr=rng.uniform(1e-4, 0.1), betas=b, weight_decay=wd, amsgrad=rng.random() < 0.5, maximize=mx)),
    }[name]


@pytest.mark.parametrize("name", ["nadam", "radam", "adamax", "adadelta", "sgd", "adagrad", "rmsprop", "adam", "adamw"])
@pytest.mark.parametrize("seed", range(6))
def test_step_functions_match_torch_optim_with_random_hyperparameters(name, seed):
    rng = random.Random(1000 * seed + hash(name) % 997)
    step_fn, cls, hyper = random_hyper(name, rng)
    grads = stream(seed)
    p0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    p, state = p0.clone(), {}
    with float64_default():
        ref = torch.nn.Parameter(p0.clone())
        opt = cls([ref], **hyper)
        for g in grads:
            p, state = step_fn(p, g, state, **hyper)
            ref.grad = g.clone()
            opt.step()
    assert torch.allclose(p, ref.detach(), **TOL), (hyper, (p - ref).abs().max())


def lion_reference(p, grads, lr, beta1, beta2, wd):
    """Chen et al. (2023), Algorithm 2, written out one scalar at a time."""
    p = p.tolist()
    m = [[0.0] * len(row) for row in p]
    for g in grads:
        g = g.tolist()
        for i in range(len(p)):
            for j in range(len(p[i])):
                c = beta1 * m[i][j] + (1 - beta1) * g[i][j]
                sign = (c > 0) - (c < 0)
                p[i][j] = p[i][j] - lr * (sign + wd * p[i][j])
                m[i][j] = beta2 * m[i][j] + (1 - beta2) * g[i][j]
    return torch.tensor(p, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
def test_lion_matches_the_papers_update_rule(seed):
    rng = random.Random(seed)
    lr, b1, b2, wd = rng.uniform(1e-4, 0.05), rng.uniform(0, 0.99), rng.uniform(0.5, 0.999), rng.choice([0.0, 0.3])
    grads = stream(seed, shape=(4, 3), steps=40)
    p0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    p, state = p0.clone(), {}
    for g in grads:
        p, state = optim.lion_step(p, g, state, lr=lr, betas=(b1, b2), weight_decay=wd)
    assert torch.allclose(p, lion_reference(p0, grads, lr, b1, b2, wd), rtol=1e-12, atol=1e-13)
    # every coordinate moves by exactly lr per step without decay
    q, _ = optim.lion_step(p0, grads[0], {}, lr=0.01)
    moved = (q - p0).abs()
    assert torch.allclose(moved[grads[0] != 0], torch.full_like(moved[grads[0] != 0], 0.01), rtol=1e-12)


def rosenbrock_closure(theta):
    x = theta.detach().clone().requires_grad_(True)
    f = ((1 - x[:-1]) ** 2 + 100 * (x[1:] - x[:-1] ** 2) ** 2).sum()
    f.backward()
    return f.detach(), x.grad


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize("seed", range(3))
def test_lbfgs_matches_torch_over_several_calls(line_search, seed):
    rng = random.Random(seed)
    hyper = dict(lr=rng.choice([0.1, 0.5, 1.0]) if line_search is None else 1.0, max_iter=rng.choice([5, 20]),
                 history_size=rng.choice([3, 10, 100]), line_search_fn=line_search)
    x0 = torch.randn(6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.5
    x, state = x0.clone(), {}
    ref = torch.nn.Parameter(x0.clone())
    opt = torch.optim.LBFGS([ref], **hyper)

    def closure():
        opt.zero_grad()
        f = ((1 - ref[:-1]) ** 2 + 100 * (ref[1:] - ref[:-1] ** 2) ** 2).sum()
        f.backward()
        return f

    for _ in range(4):
        x, loss, state = optim.lbfgs_step(x, rosenbrock_closure, state, **hyper)
        ref_loss = opt.step(closure)
        # abs: rounding in the line search, relative to the starting loss (about 10), differs by BLAS and torch version
        assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-9, abs=1e-10)
        assert torch.allclose(x, ref.detach(), rtol=1e-8, atol=1e-10), (x - ref.detach()).abs().max()
    assert state["func_evals"] == opt.state[ref]["func_evals"] and state["n_iter"] == opt.state[ref]["n_iter"]


def test_lbfgs_with_line_search_solves_rosenbrock():
    x, state = torch.tensor([-1.2, 1.0], dtype=torch.float64), {}
    for _ in range(10):
        x, loss, state = optim.lbfgs_step(x, rosenbrock_closure, state, max_iter=20, line_search_fn="strong_wolfe")
    assert torch.allclose(x, torch.ones(2, dtype=torch.float64), atol=1e-4)


def test_optimizer_class_with_groups_state_dict_and_closure_matches_torch():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    ours = optim.Optimizer([{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 0.01, "amsgrad": True}],
                           "adam", lr=0.05, betas=(0.8, 0.99))
    ref = torch.optim.Adam([{"params": twin[0].parameters()}, {"params": twin[2].parameters(), "lr": 0.01, "amsgrad": True}],
                           lr=0.05, betas=(0.8, 0.99))

    def closure_for(model, opt):
        def closure():
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss
        return closure

    for t in range(30):
        if t == 15:  # save, rebuild, restore: the run continues as if never interrupted
            saved = ours.state_dict()
            ours = optim.Optimizer([{"params": net[0].parameters()}, {"params": net[2].parameters()}], "adam")
            ours.load_state_dict(saved)
            assert ours.param_groups[1]["lr"] == 0.01 and ours.param_groups[1]["amsgrad"] is True
        if t == 20:  # a schedule changes one group's rate
            ours.param_groups[0]["lr"] = 0.02
            ref.param_groups[0]["lr"] = 0.02
        a = ours.step(closure_for(net, ours))
        b = ref.step(closure_for(twin, ref))
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-12)
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-10, atol=1e-12)
    # the per-tensor states in params order, as torch's per-parameter state
    for s, p in zip(ours.states, twin.parameters()):
        assert torch.allclose(s["exp_avg"], ref.state[p]["exp_avg"], rtol=1e-10, atol=1e-14)


def test_optimizer_lbfgs_matches_torch():
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    v = torch.nn.Parameter(w.detach().clone())
    A = torch.randn(5, 3, dtype=torch.float64)
    ours = optim.Optimizer([w], "lbfgs", line_search_fn="strong_wolfe", max_iter=5)
    ref = torch.optim.LBFGS([v], line_search_fn="strong_wolfe", max_iter=5)

    def closure_for(p, opt):
        def closure():
            opt.zero_grad()
            loss = ((A @ p).tanh() - 0.3).pow(2).sum()
            loss.backward()
            return loss
        return closure

    for _ in range(3):
        assert float(ours.step(closure_for(w, ours))) == pytest.approx(float(ref.step(closure_for(v, ref)).detach()), rel=1e-10)
    assert torch.allclose(w, v, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="closure"):
        ours.step()


def test_sgd_per_row_momentum_zero_row_is_plain_sgd_even_with_dampening():
    grads = stream(3, shape=(3, 2), steps=10)
    p0 = torch.zeros(3, 2, dtype=torch.float64)
    mom = torch.tensor([0.0, 0.9, 0.5], dtype=torch.float64)
    p, s = p0.clone(), {}
    for g in grads:
        p, s = optim.sgd_step(p, g, s, lr=0.1, momentum=mom, dampening=0.3)
    for row, m in enumerate(mom.tolist()):
        ref = torch.nn.Parameter(p0[row].clone())
        opt = torch.optim.SGD([ref], lr=0.1, momentum=m, dampening=0.3)
        for g in grads:
            ref.grad = g[row].clone()
            opt.step()
        assert torch.allclose(p[row], ref.detach(), rtol=1e-12, atol=1e-14), row


def test_optimizer_refuses_bad_input_before_touching_a_tensor():
    w = torch.nn.Parameter(torch.ones(3, 2))
    with pytest.raises(TypeError, match="lr"):
        optim.Optimizer([w], "sgd", lr=torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="twice"):
        optim.Optimizer([w, w], "sgd", lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        optim.Optimizer([{"params": [w]}, {"params": [w]}], "sgd", lr=0.1)
    with pytest.raises(TypeError, match="params"):
        optim.Optimizer(w, "sgd", lr=0.1)
    with pytest.raises(TypeError, match="params"):
        optim.Optimizer(None, "sgd", lr=0.1)
    with pytest.raises(ValueError, match="method"):
        optim.Optimizer([w], "adamm", lr=0.1)
    opt = optim.Optimizer([w], "sgd", lr=0.1)
    w.grad = torch.tensor([[1.0, float("nan")], [0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"params\[0\].grad"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(3, 2))
    opt.param_groups[0]["lr"] = -1.0
    w.grad = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    with pytest.raises(ValueError, match="state_dict"):
        optim.Optimizer([torch.nn.Parameter(torch.ones(2))], "adam").load_state_dict(
            optim.Optimizer([w], "sgd", lr=0.1).state_dict())


@pytest.mark.parametrize("call, error, match", [
    (lambda: optim.heavy_ball_rate(float("nan"), 0.5, [1.0]), ValueError, "lr"),
    (lambda: optim.heavy_ball_rate(-1.0, 0.5, [1.0]), ValueError, "lr"),
    (lambda: optim.heavy_ball_rate(0.1, 1.5, [1.0]), ValueError, "beta"),
    (lambda: optim.heavy_ball_rate(0.1, 0.5, []), ValueError, "eigenvalues"),
    (lambda: optim.heavy_ball_rate("0.1", 0.5, [1.0]), TypeError, "lr"),
    (lambda: optim.nadam_step(torch.ones(2), torch.ones(2), {}, betas=(1.0, 0.9)), ValueError, "beta1"),
    (lambda: optim.adadelta_step(torch.ones(2), torch.ones(2), {}, rho=1.5), ValueError, "rho"),
    (lambda: optim.lion_step(torch.ones(2), torch.ones(2), {}, lr=-1.0), ValueError, "lr"),
    (lambda: optim.radam_step(torch.ones(2), torch.ones(2), {}, maximize=1), TypeError, "maximize"),
    (lambda: optim.lbfgs_step(torch.ones(2, 2), rosenbrock_closure), ValueError, "params"),
    (lambda: optim.lbfgs_step(torch.ones(2), None), TypeError, "closure"),
    (lambda: optim.lbfgs_step(torch.ones(2), rosenbrock_closure, line_search_fn="armijo"), ValueError, "line_search_fn"),
    (lambda: optim.lbfgs_step(torch.ones(2), lambda t: (0.0, torch.ones(3))), ValueError, "closure"),
])
def test_bad_hyperparameters_are_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()
