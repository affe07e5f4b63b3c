"""Tests for the depth sections of Chapters 7 and 8: double descent, rotations, mixup, MC dropout,
the modified loss of gradient descent (losslab.regularize), the non-convex SGD guarantee and Adam's
preconditioned sharpness (losslab.train). Every from-scratch piece that PyTorch also has is checked
against it in float64, on random and extreme inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab import data, regularize as R, train as T


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- min_norm_solve against torch.linalg.pinv / lstsq ---------------------------------------------

@pytest.mark.parametrize("shape", [(10, 30), (30, 10), (20, 20), (1, 5), (5, 1)])
def test_min_norm_solve_matches_pinv(shape):
    X = torch.randn(3, *shape, generator=gen(0), dtype=torch.float64)
    Y = torch.randn(3, shape[0], 4, generator=gen(1), dtype=torch.float64)
    ours = R.min_norm_solve(X, Y)
    assert torch.allclose(ours, torch.linalg.pinv(X) @ Y, rtol=1e-9, atol=1e-10)
    y = Y[..., 0]
    assert torch.allclose(R.min_norm_solve(X, y), (torch.linalg.pinv(X) @ y[..., None])[..., 0], rtol=1e-9, atol=1e-10)


def test_min_norm_solve_rank_deficient_and_extreme_scales():
    g = gen(2)
    for scale in (1e-150, 1.0, 1e150):
        X = (torch.randn(8, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 12, generator=g, dtype=torch.float64)) * scale
        Y = torch.randn(8, generator=g, dtype=torch.float64)
        ours, ref = R.min_norm_solve(X, Y), torch.linalg.pinv(X) @ Y
        assert torch.allclose(ours, ref, rtol=1e-8, atol=1e-12 * float(ref.abs().max()))
    # gelsd (SVD-based lstsq) gives the minimum-norm solution as well
    X = torch.randn(6, 15, generator=g, dtype=torch.float64)
    Y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    assert torch.allclose(R.min_norm_solve(X, Y), torch.linalg.lstsq(X, Y, driver="gelsd").solution, atol=1e-12)
    zero = R.min_norm_solve(torch.zeros(4, 6, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    assert torch.equal(zero, torch.zeros(6, dtype=torch.float64))


def test_min_norm_solve_interpolates_with_the_smallest_norm():
    X = torch.randn(5, 20, generator=gen(3), dtype=torch.float64)
    y = torch.randn(5, generator=gen(4), dtype=torch.float64)
    w = R.min_norm_solve(X, y)
    assert torch.allclose(X @ w, y, atol=1e-12)
    null = torch.linalg.svd(X).Vh[5:]  # (15, 20): directions X cannot see
    other = w + null.T @ torch.randn(15, generator=gen(5), dtype=torch.float64)
    assert torch.allclose(X @ other, y, atol=1e-12) and other.norm() > w.norm()


def test_min_norm_solve_rejects_bad_input():
    with pytest.raises(ValueError, match="targets"):
        R.min_norm_solve(torch.ones(3, 4, dtype=torch.float64), torch.ones(5, dtype=torch.float64))
    with pytest.raises(TypeError, match="features"):
        R.min_norm_solve([[1.0]], torch.ones(1))
    with pytest.raises(ValueError, match="features"):
        R.min_norm_solve(torch.tensor([[math.nan]]), torch.ones(1))


def test_random_features_sweep_double_descent_small():
    train, val, _ = data.digits(n_train=40, n_val=100, seed=0)
    out = R.random_features_sweep(train, val, [10, 40, 200], n_draws=2, seed=0)
    assert out["val_mse"].shape == (3, 2)
    assert float(out["train_mse"][1:].max()) < 1e-12 < float(out["train_mse"][0].min())  # interpolates from p = n
    mse = out["val_mse"].mean(1)
    assert mse[1] > 3 * mse[0] and mse[1] > 3 * mse[2]  # the peak at p = n
    ridge = R.random_features_sweep(train, val, [40], strength=1e-2, n_draws=2, seed=0)
    assert float(ridge["val_mse"].mean()) < float(mse[1]) / 3
    with pytest.raises(ValueError, match="widths"):
        R.random_features_sweep(train, val, [0])
    with pytest.raises(TypeError, match="train"):
        R.random_features_sweep(train.x, val, [5])


# --- rotate_images against affine_grid + grid_sample ------------------------------------------------

def _torch_rotate(x, deg, h, w):
    a = math.radians(deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), (len(x), 1, h, w), align_corners=False)
    return F.grid_sample(x.reshape(-1, 1, h, w), grid, align_corners=False, padding_mode="zeros").reshape(len(x), h * w)


@pytest.mark.parametrize("deg", [0.0, 7.5, -20.0, 45.0, 90.0, 180.0, 333.0])
@pytest.mark.parametrize("size", [(8, 8), (5, 5)])
def test_rotate_images_matches_grid_sample(deg, size):
    h, w = size
    x = torch.randn(6, h * w, generator=gen(6), dtype=torch.float64)
    assert torch.allclose(R.rotate_images(x, [deg], size=size), _torch_rotate(x, deg, h, w), atol=1e-12)


def test_rotate_images_extreme_values_and_exact_cases():
    x = torch.randn(3, 64, generator=gen(7), dtype=torch.float64) * 1e300
    assert torch.allclose(R.rotate_images(x, [12.0]), _torch_rotate(x, 12.0, 8, 8), rtol=1e-12, atol=1e288)
    small = torch.rand(2, 64, generator=gen(8), dtype=torch.float64)
    both = R.rotate_images(small, [0.0, 90.0])
    assert torch.equal(both[:2], small)
    assert torch.allclose(both[2:].reshape(2, 8, 8), torch.rot90(small.reshape(2, 8, 8), 1, (1, 2)), atol=1e-14)


def test_rotate_images_rejects_bad_input():
    with pytest.raises(ValueError, match="x"):
        R.rotate_images(torch.ones(2, 63), [10.0])
    with pytest.raises(ValueError, match="angles"):
        R.rotate_images(torch.ones(2, 64), [])
    with pytest.raises(ValueError, match="angles"):
        R.rotate_images(torch.ones(2, 64), [math.nan])


# --- mixup ---------------------------------------------------------------------------------------

def test_mixup_batch_blends_inputs_and_targets_alike():
    x = torch.randn(2, 5, 3, generator=gen(9), dtype=torch.float64)
    q = torch.softmax(torch.randn(2, 5, 4, generator=gen(10), dtype=torch.float64), -1)
    perm = torch.stack([torch.randperm(5, generator=gen(11)), torch.randperm(5, generator=gen(12))])
    lam = torch.tensor([0.3, 1.0], dtype=torch.float64)
    mx, mq = R.mixup_batch(x, q, lam, perm)
    for k in range(2):
        assert torch.allclose(mx[k], lam[k] * x[k] + (1 - lam[k]) * x[k][perm[k]], atol=1e-15)
        assert torch.allclose(mq[k], lam[k] * q[k] + (1 - lam[k]) * q[k][perm[k]], atol=1e-15)
    assert torch.equal(mx[1], x[1]) and torch.allclose(mq.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="perm"):
        R.mixup_batch(x, q, lam, torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="lam"):
        R.mixup_batch(x, q, 1.5, perm)


def test_train_ensemble_without_mixup_is_unchanged_and_with_mixup_differs():
    train, val, _ = data.digits(n_train=60, n_val=60, seed=0)
    kw = dict(hidden=(16,), lr=5e-3, steps=20, eval_every=20, seed=0, dropout=[0.0, 0.2], input_noise=[0.3, 0.0])
    a = R.train_ensemble(train, val, **kw)
    b = R.train_ensemble(train, val, mixup=0.0, **kw)
    c = R.train_ensemble(train, val, mixup=[0.0, 0.4], **kw)
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params))
    assert not torch.equal(a.params[0][1], c.params[0][1])
    with pytest.raises(ValueError, match="mixup"):
        R.train_ensemble(train, val, mixup=[-1.0], steps=1)


# --- MC dropout against nn.Dropout in training mode -------------------------------------------------

def _torch_net(params, p):
    layers = []
    n_layers = len(params) // 2
    for i in range(n_layers):
        W, b = params[2 * i][0], params[2 * i + 1][0]
        lin = nn.Linear(W.shape[0], W.shape[1]).double()
        with torch.no_grad():
            lin.weight.copy_(W.T)
            lin.bias.copy_(b)
        layers.append(lin)
        if i < n_layers - 1:
            layers += [nn.ReLU(), nn.Dropout(p)]
    return nn.Sequential(*layers).train()


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_mc_dropout_matches_nn_dropout(p):
    params = R.init_mlp([6, 9, 7, 4], 1, generator=gen(13), dtype=torch.float64)
    x = torch.randn(5, 6, generator=gen(14), dtype=torch.float64) * 3
    net = _torch_net(params, p)
    torch.manual_seed(21)
    ref = torch.stack([torch.softmax(net(x), -1) for _ in range(4)])
    ours = R.mc_dropout_probs(params, x, p, samples=4, generator=gen(21))[:, 0]
    assert torch.allclose(ours, ref.detach(), rtol=1e-12, atol=1e-14)


def test_mc_dropout_extreme_inputs_and_shapes():
    params = R.init_mlp([4, 8, 3], 3, generator=gen(15), dtype=torch.float64)
    x = torch.randn(7, 4, generator=gen(16), dtype=torch.float64) * 1e6
    probs = R.mc_dropout_probs(params, x, 0.5, samples=2, generator=gen(17))
    assert probs.shape == (2, 3, 7, 3) and bool(torch.isfinite(probs).all())
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64))
    # p = 0 is the deterministic ensemble
    det = torch.softmax(R.ensemble_logits(params, x), -1)
    assert torch.allclose(R.mc_dropout_probs(params, x, 0.0, samples=1)[0], det, atol=1e-15)
    with pytest.raises(ValueError, match="p"):
        R.mc_dropout_probs(params, x, 1.0, samples=1)
    with pytest.raises(ValueError, match="samples"):
        R.mc_dropout_probs(params, x, 0.2, samples=0)
    with pytest.raises(ValueError, match="params"):
        R.mc_dropout_probs(params, torch.ones(7, 5, dtype=torch.float64), 0.2, samples=1)


# --- the modified loss of gradient descent --------------------------------------------------------

def test_gradient_flow_on_a_quadratic_is_exponential():
    h = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    theta0 = torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]], dtype=torch.float64)
    end = R.gradient_flow(lambda th: h * th, theta0, time=2.0, steps=200)
    assert torch.allclose(end, theta0 * torch.exp(-2.0 * h), rtol=1e-9)


def test_modified_gradient_of_a_quadratic_and_by_autograd():
    h = torch.tensor([0.5, 2.0], dtype=torch.float64)
    field = R.modified_gradient(lambda th: h * th, 0.1)
    th = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    assert torch.allclose(field(th), h * (1 + 0.1 * h / 2) * th)  # L~ = sum h th^2 (1 + eta h / 2) / 2

    def loss(th):  # non-quadratic, (D,) -> scalar
        return (th[0] * th[1] - 1) ** 2 / 2 + torch.sin(th[0])

    grad_l = lambda th: torch.stack([torch.func.grad(loss)(row) for row in th])
    pts = torch.randn(4, 2, generator=gen(18), dtype=torch.float64)
    eta = torch.tensor([0.01, 0.1, 0.2, 0.5], dtype=torch.float64)
    ours = R.modified_gradient(grad_l, eta)(pts)
    for k in range(4):
        mod = lambda th: loss(th) + eta[k] / 4 * (torch.func.grad(loss)(th) ** 2).sum()
        assert torch.allclose(ours[k], torch.func.grad(mod)(pts[k]), atol=1e-12)


def test_gradient_descent_follows_the_modified_flow_to_second_order():
    h = torch.tensor([1.0, 4.0], dtype=torch.float64)
    grad = lambda th: h * th
    start = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    errs_l, errs_mod = [], []
    for eta in (0.02, 0.01, 0.005):
        k = round(1 / eta)
        gd = start * (1 - eta * h) ** k
        errs_l.append(float((gd - R.gradient_flow(grad, start, time=1.0, steps=400)).norm()))
        errs_mod.append(float((gd - R.gradient_flow(R.modified_gradient(grad, eta), start, time=1.0, steps=400)).norm()))
    assert T.loglog_slope([0.02, 0.01, 0.005], errs_l) == pytest.approx(1.0, abs=0.1)
    assert T.loglog_slope([0.02, 0.01, 0.005], errs_mod) == pytest.approx(2.0, abs=0.15)


def test_modified_gradient_and_flow_reject_bad_input():
    with pytest.raises(ValueError, match="lr"):
        R.modified_gradient(lambda th: th, 0.0)
    with pytest.raises(ValueError, match="lr"):
        R.modified_gradient(lambda th: th, torch.tensor([0.1, -0.1]))
    with pytest.raises(TypeError, match="grad"):
        R.gradient_flow(3, torch.zeros(1, 2), time=1.0, steps=1)
    with pytest.raises(ValueError, match="theta0"):
        R.gradient_flow(lambda th: th, torch.zeros(2), time=1.0, steps=1)
    with pytest.raises(ValueError, match="steps"):
        R.gradient_flow(lambda th: th, torch.zeros(1, 2), time=1.0, steps=0)


# --- Chapter 8: the non-convex SGD guarantee, Adam's preconditioned sharpness ---------------------

def test_nonconvex_objective_gradient_and_minimum():
    th = torch.randn(5, 3, generator=gen(19), dtype=torch.float64) * 3
    f, g = T.nonconvex_objective(th)
    auto = torch.stack([torch.func.grad(lambda r: T.nonconvex_objective(r)[0])(row) for row in th])
    assert torch.allclose(g, auto, atol=1e-12)
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64)[:, None]
    assert float(T.nonconvex_objective(x)[0].min()) == pytest.approx(T.nonconvex_min(1), abs=1e-6)
    curv = 1 - 2 * torch.cos(x)
    assert float(curv.max()) <= T.NONCONVEX_L + 1e-12 and float(curv.min()) < 0  # L-smooth, not convex


def test_sgd_nonconvex_stays_below_the_bound_and_falls_like_one_over_sqrt_t():
    out = T.sgd_nonconvex([50, 200, 800], dim=4, noise=3.0, runs=50, seed=0)
    assert bool((out["mean_sq_grad"] < out["bound"]).all())
    assert bool((out["min_sq_grad"] <= out["mean_sq_grad"]).all())
    assert T.loglog_slope(out["horizons"], out["mean_sq_grad"]) == pytest.approx(-0.5, abs=0.15)
    with pytest.raises(ValueError, match="noise"):
        T.sgd_nonconvex([10], noise=0.0)
    with pytest.raises(ValueError, match="horizons"):
        T.sgd_nonconvex([])


@pytest.mark.parametrize("lr, eps, clip", [(1e-2, 1e-8, math.inf), (3e-2, 1e-3, math.inf), (1e-2, 1e-8, 0.05),
                                           (1e-3, 1e-12, 1e-6)])
def test_adam_least_squares_matches_torch_adam(lr, eps, clip):
    X = torch.randn(30, 5, generator=gen(20), dtype=torch.float64) * torch.tensor([1e-3, 0.1, 1.0, 10.0, 1.0], dtype=torch.float64)
    y = torch.randn(30, generator=gen(22), dtype=torch.float64)
    ours = T.adam_least_squares(X, y, lr=[lr], eps=[eps], clip_norm=[clip], steps=40, sharpness_every=5)
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr, eps=eps)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = 0.5 * ((X @ w - y) ** 2).mean()
        losses.append(float(loss.detach()))
        loss.backward()
        if clip != math.inf:
            nn.utils.clip_grad_norm_([w], clip)
        opt.step()
    assert torch.allclose(ours["loss"][0], torch.tensor(losses, dtype=torch.float64), rtol=1e-10, atol=1e-14)


def test_adam_least_squares_preconditioned_sharpness():
    X = torch.randn(20, 3, generator=gen(23), dtype=torch.float64)
    y = torch.randn(20, generator=gen(24), dtype=torch.float64)
    out = T.adam_least_squares(X, y, lr=[1e-2], eps=[1e6], steps=10, sharpness_every=10)
    H = X.T @ X / 20  # with a huge eps the preconditioner is 1/eps: sharpness lambda_max(H) / eps
    assert float(out["precond_sharpness"][0, -1]) == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]) / 1e6, rel=1e-6)
    assert float(out["limit"][0]) == pytest.approx(38 / 1e-2)
    with pytest.raises(ValueError, match="same non-zero length"):
        T.adam_least_squares(X, y, lr=[1e-2, 1e-3], eps=[1e-8])
    with pytest.raises(ValueError, match="targets"):
        T.adam_least_squares(X, y[:5], lr=[1e-2], eps=[1e-8])
    with pytest.raises(ValueError, match="eps"):
        T.adam_least_squares(X, y, lr=[1e-2], eps=[0.0])
