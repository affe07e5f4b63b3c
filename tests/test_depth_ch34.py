"""Tests for the depth additions of Chapters 3 and 4: Newton's step, iterate averaging,
Newton-Schulz, Muon, Shampoo (losslab.optim) and schedule-free SGD (losslab.schedules).

Where PyTorch has the same thing (weight averaging: torch.optim.swa_utils) the
result is compared with it in float64; where it has not (Newton, Muon, Shampoo,
schedule-free) the defining equations are written out independently here.
"""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from losslab import optim, schedules

f64 = dict(dtype=torch.float64)


def _spd(n, d, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(n, d, d, generator=g, **f64)
    return scale * (Q @ Q.mT / d + 0.1 * torch.eye(d, **f64))


# --- Newton ---------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_newton_lands_on_the_minimum_of_a_quadratic_in_one_step(scale):
    A = _spd(5, 4, 0, scale)                                            # (5, 4, 4)
    star = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), **f64)
    theta = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), **f64) * 100
    grad = ((theta - star).unsqueeze(1) @ A).squeeze(1)                 # A symmetric: A (theta - star)
    new = optim.newton_step(theta, grad, A)
    assert torch.allclose(new, star, rtol=1e-8, atol=1e-8 * float(theta.abs().max()))


def test_newton_matches_the_definition_with_damping_and_lr():
    A = _spd(3, 6, 4)
    theta = torch.randn(3, 6, generator=torch.Generator().manual_seed(5), **f64)
    g = torch.randn(3, 6, generator=torch.Generator().manual_seed(6), **f64)
    new = optim.newton_step(theta, g, A, lr=0.5, damping=0.3)
    for i in range(3):
        inv = np.linalg.inv(A[i].numpy() + 0.3 * np.eye(6))
        assert np.allclose(new[i].numpy(), theta[i].numpy() - 0.5 * inv @ g[i].numpy(), rtol=1e-10, atol=1e-12)


def test_newton_on_rosenbrock_matches_torch_autograd_hessian():
    from losslab import landscapes
    fn = landscapes.rosenbrock()
    x = torch.tensor([[-1.2, 1.0]], **f64)
    H = torch.autograd.functional.hessian(lambda p: fn(p[None])[0], x[0])
    g = torch.func.grad(lambda p: fn(p[None])[0])(x[0])
    expected = x[0] - torch.linalg.solve(H, g)
    assert torch.allclose(optim.newton_step(x, fn.grad(x), fn.hessian(x))[0], expected, rtol=1e-12)


def test_newton_rejects_bad_input():
    p, g = torch.zeros(2, 3, **f64), torch.ones(2, 3, **f64)
    with pytest.raises(ValueError, match="hessians"):
        optim.newton_step(p, g, torch.zeros(2, 3, 2, **f64))
    with pytest.raises(ValueError, match="singular"):
        optim.newton_step(p, g, torch.zeros(2, 3, 3, **f64))
    with pytest.raises(TypeError, match="hessians"):
        optim.newton_step(p, g, torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="lr"):
        optim.newton_step(p, g, torch.eye(3, **f64).expand(2, 3, 3), lr=0)
    with pytest.raises(ValueError, match="damping"):
        optim.newton_step(p, g, torch.eye(3, **f64).expand(2, 3, 3), damping=-1)
    with pytest.raises(ValueError, match="hessians"):
        optim.newton_step(p, g, torch.full((2, 3, 3), float("nan"), **f64))
    # a singular Hessian is fine once damped
    assert torch.allclose(optim.newton_step(p, g, torch.zeros(2, 3, 3, **f64), damping=2.0), -g / 2)


# --- averaging -------------------------------------------------------------------------------

@pytest.mark.parametrize("decay", [None, 0.0, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_average_step_matches_torch_averaged_model(decay, scale):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    model = torch.nn.Linear(3, 2).double()
    avg_model = AveragedModel(model) if decay is None else AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    g = torch.Generator().manual_seed(0)
    ours, n = None, 0
    for _ in range(20):
        with torch.no_grad():
            model.weight.copy_(torch.randn(2, 3, generator=g, **f64) * scale)
        avg_model.update_parameters(model)
        ours, n = optim.average_step(ours, model.weight.detach(), n, decay=decay)
    assert n == 20
    theirs = avg_model.module.weight.detach()
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-300)


def test_polyak_average_is_the_mean_and_inputs_are_untouched():
    xs = torch.randn(7, 4, 3, generator=torch.Generator().manual_seed(3), **f64)
    avg, n = None, 0
    for x in xs:
        before = x.clone()
        avg, n = optim.average_step(avg, x, n)
        assert torch.equal(x, before)
    assert torch.allclose(avg, xs.mean(0), rtol=1e-14)


def test_average_step_rejects_bad_input():
    x = torch.ones(3, **f64)
    with pytest.raises(ValueError, match="n_averaged"):
        optim.average_step(None, x, -1)
    with pytest.raises(ValueError, match="decay"):
        optim.average_step(x, x, 1, decay=1.5)
    with pytest.raises(ValueError, match="average"):
        optim.average_step(torch.ones(4, **f64), x, 1)
    with pytest.raises(TypeError, match="params"):
        optim.average_step(None, torch.ones(3, dtype=torch.int64), 0)
    with pytest.raises(ValueError, match="params"):
        optim.average_step(None, torch.tensor([float("inf")]), 0)


# --- Newton-Schulz, Muon, Shampoo -------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (3, 5, 7)])
def test_cubic_newton_schulz_converges_to_the_polar_factor(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0), **f64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    polar = U @ Vh
    X = optim.newton_schulz(G, steps=60, coefficients=(1.5, -0.5, 0.0))
    assert torch.allclose(X, polar, atol=1e-8)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_muon_newton_schulz_keeps_singular_vectors_and_flattens_values(scale):
    G = torch.randn(32, 48, generator=torch.Generator().manual_seed(1), **f64) * scale
    X = optim.newton_schulz(G)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    s = torch.diagonal(U.mT @ X @ Vh.mT)                                   # X in G's singular basis: diagonal
    off = U.mT @ X @ Vh.mT - torch.diag(s)
    assert float(off.abs().max()) < 1e-8
    assert float(s.min()) > 0.5 and float(s.max()) < 1.25


def _muon_reference(p, grads, lr, beta, nesterov, wd):
    # Keller Jordan's Muon, written from the post: momentum as an EMA, Nesterov by interpolation, polar factor by SVD
    buf = torch.zeros_like(p)
    for g in grads:
        buf = buf + (1 - beta) * (g - buf)                                 # buf.lerp_(g, 1 - beta)
        u = g + beta * (buf - g) if nesterov else buf                      # g.lerp_(buf, beta)
        X = optim.newton_schulz(u)
        p = p * (1 - lr * wd) - lr * max(1, p.shape[-2] / p.shape[-1]) ** 0.5 * X
    return p


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_matches_its_definition(nesterov):
    g = torch.Generator().manual_seed(2)
    p0 = torch.randn(2, 8, 5, generator=g, **f64)
    grads = [torch.randn(2, 8, 5, generator=g, **f64) for _ in range(6)]
    p, st = p0, {}
    for gr in grads:
        p, st = optim.muon_step(p, gr, st, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.1)
    assert st["step"] == 6
    assert torch.allclose(p, _muon_reference(p0, grads, 0.05, 0.9, nesterov, 0.1), rtol=1e-12, atol=1e-12)


def test_muon_and_shampoo_reject_bad_input():
    v = torch.zeros(5, **f64)
    with pytest.raises(ValueError, match="params"):
        optim.muon_step(v, v, {})
    with pytest.raises(ValueError, match="params"):
        optim.shampoo_step(v, v, {})
    m = torch.zeros(3, 4, **f64)
    with pytest.raises(ValueError, match="momentum"):
        optim.muon_step(m, m, {}, momentum=1.0)
    with pytest.raises(ValueError, match="lr"):
        optim.shampoo_step(m, m, {}, lr=-1)
    with pytest.raises(ValueError, match="eps"):
        optim.shampoo_step(m, m, {}, eps=0)
    with pytest.raises(ValueError, match="left"):
        optim.shampoo_step(m, m, {"left": torch.eye(4, **f64)})
    with pytest.raises(ValueError, match="coefficients"):
        optim.newton_schulz(m, coefficients=(1.0, 2.0))
    with pytest.raises(ValueError, match="matrices"):
        optim.newton_schulz(torch.full((2, 2), float("nan"), **f64))


def test_shampoo_matches_its_definition():
    g = torch.Generator().manual_seed(3)
    W0 = torch.randn(4, 3, generator=g, **f64)
    grads = [torch.randn(4, 3, generator=g, **f64) for _ in range(5)]
    W, st = W0, {}
    for gr in grads:
        W, st = optim.shampoo_step(W, gr, st, lr=0.1, eps=1e-3)
    ref = W0.numpy().copy()
    L, R = 1e-3 * np.eye(4), 1e-3 * np.eye(3)
    for gr in grads:
        G = gr.numpy()
        L, R = L + G @ G.T, R + G.T @ G
        ref = ref - 0.1 * np.real(scipy.linalg.fractional_matrix_power(L, -0.25)) @ G @ np.real(scipy.linalg.fractional_matrix_power(R, -0.25))
    assert np.allclose(W.numpy(), ref, rtol=1e-9, atol=1e-11)


def test_shampoo_first_step_is_the_polar_factor_when_eps_is_tiny():
    G = torch.randn(6, 4, generator=torch.Generator().manual_seed(4), **f64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    step, _ = optim.shampoo_step(torch.zeros_like(G), G, {}, lr=1.0, eps=1e-12)
    assert torch.allclose(-step, U @ Vh, atol=1e-6)


# --- schedule-free SGD ------------------------------------------------------------------------

def _schedule_free_reference(y0, grad_fn, lrs, beta):
    # Defazio et al. 2024, Algorithm 1 (no weight decay, weights gamma_t^2), written out with plain lists
    z, x, y, wsum = y0.clone(), y0.clone(), y0.clone(), 0.0
    for lr in lrs:
        g = grad_fn(y)
        z = z - lr * g
        wsum += lr**2
        c = lr**2 / wsum
        x = (1 - c) * x + c * z
        y = (1 - beta) * z + beta * x
    return y, x, z


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 1.0])
def test_schedule_free_matches_its_definition(beta):
    A = _spd(1, 5, 7)[0]
    grad_fn = lambda p: p @ A
    y0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(8), **f64)
    lrs = [0.01 * min(1.0, (k + 1) / 5) for k in range(30)]               # with a warmup
    y, st = y0, {}
    for lr in lrs:
        y, st = schedules.schedule_free_sgd_step(y, grad_fn(y), st, lr=lr, momentum=beta)
    ry, rx, rz = _schedule_free_reference(y0, grad_fn, lrs, beta)
    assert torch.allclose(y, ry, rtol=1e-12) and torch.allclose(st["x"], rx, rtol=1e-12) and torch.allclose(st["z"], rz, rtol=1e-12)
    assert st["step"] == 30


def test_schedule_free_with_beta_zero_is_sgd_plus_its_running_mean():
    g = torch.Generator().manual_seed(9)
    grads = [torch.randn(2, 4, generator=g, **f64) for _ in range(12)]   # gradients that ignore the point: z is SGD
    y, st, zs = torch.zeros(2, 4, **f64), {}, []
    for gr in grads:
        y, st = schedules.schedule_free_sgd_step(y, gr, st, lr=0.3, momentum=0.0)
        zs.append(st["z"])
    assert torch.allclose(st["z"], -0.3 * torch.stack(grads).sum(0), rtol=1e-12)
    mean = torch.stack(zs).mean(0)                                       # x averages the z's after each step (not theta_0)
    assert torch.allclose(st["x"], mean, rtol=1e-12, atol=1e-15)
    assert torch.equal(y, st["z"])


def test_schedule_free_rejects_bad_input():
    p = torch.zeros(2, 3, **f64)
    with pytest.raises(ValueError, match="lr"):
        schedules.schedule_free_sgd_step(p, p, {}, lr=-0.1)
    with pytest.raises(ValueError, match="momentum"):
        schedules.schedule_free_sgd_step(p, p, {}, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="grads"):
        schedules.schedule_free_sgd_step(p, torch.zeros(3, 2, **f64), {}, lr=0.1)
    with pytest.raises(ValueError, match="state\\['z'\\]"):
        schedules.schedule_free_sgd_step(p, p, {"z": torch.zeros(5, **f64)}, lr=0.1)


# --- a batch size per step in the noisy quadratic -------------------------------------------------

def test_noisy_quadratic_batch_schedule_matches_a_constant_batch_and_the_recursion():
    rates = schedules.cosine_lr(torch.arange(50), base_lr=0.8, total=50)
    const = schedules.noisy_quadratic_loss(rates, noise=0.3, batch_size=4)
    same = schedules.noisy_quadratic_loss(rates, noise=0.3, batch_size=torch.full((50,), 4.0))
    assert torch.allclose(const, same, rtol=1e-14)
    sizes = torch.arange(1, 51, dtype=torch.float64)
    h = torch.logspace(-2, 0, 40, dtype=torch.float64)
    m, ref = torch.ones(40, **f64), [float(0.5 * h.sum())]
    for t in range(50):
        m = (1 - rates[t] * h) ** 2 * m + rates[t] ** 2 * 0.3 * h / sizes[t]
        ref.append(float(0.5 * (h * m).sum()))
    assert np.allclose(schedules.noisy_quadratic_loss(rates, noise=0.3, batch_size=sizes).numpy(), ref, rtol=1e-12)


def test_noisy_quadratic_rejects_bad_batch_schedules():
    rates = torch.full((10,), 0.5)
    with pytest.raises(ValueError, match="batch_size"):
        schedules.noisy_quadratic_loss(rates, batch_size=torch.ones(9))
    with pytest.raises(ValueError, match="batch_size"):
        schedules.noisy_quadratic_loss(rates, batch_size=torch.zeros(10))
    with pytest.raises(TypeError, match="batch_size"):
        schedules.noisy_quadratic_loss(rates, batch_size=2.5)
