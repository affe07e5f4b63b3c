"""losslab.regularize against PyTorch, scikit-learn, NumPy and the analytic answers (Chapter 7)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from losslab import regularize as R
from losslab.data import Split, blobs


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- dropout -------------------------------------------------------------------------

def extremes(dtype):
    """Random, huge, tiny (subnormal in float32), zero and tied inputs in ``dtype``."""
    big, tiny = (1e150, 1e-300) if dtype == torch.float64 else (1e30, 1e-40)
    return [
        torch.randn(7, 9, dtype=torch.float64, generator=gen(0)).to(dtype),
        (torch.randn(3, 4, 5, dtype=torch.float64, generator=gen(1)) * big).to(dtype),
        (torch.randn(50, dtype=torch.float64, generator=gen(2)) * tiny).to(dtype),
        torch.zeros(4, 4, dtype=dtype),
        torch.full((10,), -2.5, dtype=dtype),  # ties
    ]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1 / 3])
@pytest.mark.parametrize("i", range(5))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dropout_equals_torch_given_the_same_generator_state(p, i, dtype):
    x = extremes(dtype)[i]
    assert bool(torch.isfinite(x).all())
    torch.manual_seed(123)
    expected = F.dropout(x, p, training=True)
    got = R.dropout(x, p, generator=gen(123))
    assert torch.equal(got, expected)


def test_dropout_edge_cases_match_torch():
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen(3))
    assert torch.equal(R.dropout(x, 0.0, generator=gen(0)), x)
    assert torch.equal(R.dropout(x, 0.0), F.dropout(x, 0.0))
    assert torch.equal(R.dropout(x, 1.0), F.dropout(x, 1.0))
    assert torch.equal(R.dropout(x, 1.0), torch.zeros_like(x))
    for p in (0.0, 0.3, 1.0):  # evaluation mode is the identity, whatever p
        assert torch.equal(R.dropout(x, p, training=False), x)
        assert torch.equal(R.dropout(x, p, training=False), F.dropout(x, p, training=False))
    y = R.dropout(x, 0.3)
    assert y is not x and x.shape == y.shape


def test_dropout_scales_survivors_and_preserves_the_expectation():
    p = 0.3
    x = torch.full((400_000,), 2.0, dtype=torch.float64)
    y = R.dropout(x, p, generator=gen(5))
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)
    frac = kept.double().mean().item()
    se = math.sqrt(p * (1 - p) / len(x))
    assert abs(frac - (1 - p)) < 5 * se
    assert abs(y.mean().item() - 2.0) < 5 * 2.0 / (1 - p) * se  # E[dropout(x)] = x


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        (dict(x=torch.ones(3), p=-0.1), ValueError, "p: expected"),
        (dict(x=torch.ones(3), p=1.5), ValueError, "p: expected"),
        (dict(x=torch.ones(3), p="0.5"), TypeError, "p: expected a number"),
        (dict(x=torch.ones(3, dtype=torch.int64), p=0.5), TypeError, "x: expected a floating-point"),
        (dict(x=torch.tensor([1.0, float("nan")]), p=0.5), ValueError, "x: expected finite"),
        (dict(x=[1.0, 2.0], p=0.5), TypeError, "x: expected a torch.Tensor"),
    ],
)
def test_dropout_rejects_bad_input(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        R.dropout(kwargs.pop("x"), **kwargs)


# --- penalties, soft thresholding, lasso ----------------------------------------------------

def test_penalties_and_their_gradients():
    w = torch.randn(5, 3, dtype=torch.float64, generator=gen(0)).requires_grad_()
    v = torch.randn(4, dtype=torch.float64, generator=gen(1)).requires_grad_()
    l2 = R.l2_penalty([w, v], 0.7)
    assert torch.isclose(l2, 0.35 * (w.square().sum() + v.square().sum()))
    gw, gv = torch.autograd.grad(l2, [w, v])
    assert torch.allclose(gw, 0.7 * w) and torch.allclose(gv, 0.7 * v)  # the weight-decay gradient
    l1 = R.l1_penalty(w, 0.2)
    assert torch.isclose(l1, 0.2 * w.abs().sum())
    with pytest.raises(ValueError, match="strength"):
        R.l2_penalty(w, -1.0)
    with pytest.raises(ValueError, match="params"):
        R.l1_penalty([], 1.0)


def analytic_soft_threshold(v, t):
    out = torch.zeros_like(v)
    out[v > t] = v[v > t] - t
    out[v < -t] = v[v < -t] + t
    return out


@pytest.mark.parametrize("t", [0.0, 0.5, 1e-300, 1e150])
def test_soft_threshold_is_the_analytic_formula_on_extreme_inputs(t):
    v = torch.cat([torch.randn(200, dtype=torch.float64, generator=gen(0)),
                   torch.tensor([0.5, -0.5, 0.0, -0.0, 1e-300, -1e300, 1e300, 1e150, -1e150], dtype=torch.float64)])
    got = R.soft_threshold(v, t)
    assert torch.equal(got, analytic_soft_threshold(v, t))
    assert bool((got[v.abs() <= t] == 0).all())  # exactly zero, ties included


def test_soft_threshold_is_the_proximal_operator_of_the_l1_norm():
    # prox_t(v) = argmin_w 0.5 (w - v)^2 + t |w|, found here by brute force on a fine grid
    grid = torch.linspace(-3, 3, 600_001, dtype=torch.float64)
    for v, t in [(1.7, 0.4), (-0.3, 0.4), (0.4, 0.4), (-2.2, 1.0), (0.9, 0.0)]:
        obj = 0.5 * (grid - v) ** 2 + t * grid.abs()
        best = grid[obj.argmin()]
        assert abs(R.soft_threshold(torch.tensor([v], dtype=torch.float64), t).item() - best.item()) < 2e-5


def test_proximal_step_is_gradient_step_then_threshold_and_reaches_zero():
    w = torch.tensor([1.0, 0.1, -0.2, -3.0], dtype=torch.float64)
    g = torch.tensor([0.5, 0.0, 0.1, -1.0], dtype=torch.float64)
    got = R.proximal_l1_step(w, g, lr=0.5, strength=0.4)
    # w - 0.5 g = [0.75, 0.1, -0.25, -2.5]; threshold 0.2
    assert torch.allclose(got, torch.tensor([0.55, 0.0, -0.05, -2.3], dtype=torch.float64), atol=1e-15)
    assert got[1].item() == 0.0
    # per-row thresholds broadcast along rows only
    W = torch.ones(3, 4, dtype=torch.float64)
    lam = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    out = R.proximal_l1_step(W, torch.zeros_like(W), lr=0.5, strength=lam)
    assert torch.equal(out[:, 0], torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="threshold"):
        R.soft_threshold(W, torch.ones(4, 1))
    with pytest.raises(ValueError, match="grad_w"):
        R.proximal_l1_step(W, torch.zeros(4, 3, dtype=torch.float64), lr=0.1, strength=0.1)
    with pytest.raises(ValueError, match="lr"):
        R.proximal_l1_step(W, torch.zeros_like(W), lr=0.0, strength=0.1)
    with pytest.raises(ValueError, match="threshold"):
        R.soft_threshold(W, -0.1)


def test_lasso_matches_scikit_learn():
    from sklearn.linear_model import Lasso

    prob = R.polynomial_problem(30, 10, seed=2)
    X = R.legendre_features(prob.train.x, 8)
    y = prob.train.y
    lams = torch.tensor([1e-3, 1e-2, 0.1], dtype=torch.float64)
    W = R.lasso_ista(X, y, lams, steps=5_000)
    for lam, w in zip(lams, W):
        sk = Lasso(alpha=float(lam), fit_intercept=True, tol=1e-12, max_iter=200_000).fit(X[:, 1:].numpy(), y.numpy())
        assert np.allclose(w[1:].numpy(), sk.coef_, atol=1e-6)
        assert abs(w[0].item() - sk.intercept_) < 1e-6
    assert int((W[-1] == 0).sum()) > 0  # exact zeros at the largest strength


# --- ridge and polynomial features -------------------------------------------------------

def test_legendre_features_match_numpy():
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)
    got = R.legendre_features(x, 12)
    assert np.allclose(got.numpy(), np.polynomial.legendre.legvander(x.numpy(), 12), atol=1e-12)
    with pytest.raises(ValueError, match="x: expected values in"):
        R.legendre_features(x * 2, 3)
    with pytest.raises(ValueError, match="degree"):
        R.legendre_features(x, -1)


def test_ridge_closed_form_equals_the_trained_solution():
    prob = R.polynomial_problem(25, 10, seed=1)
    X = R.legendre_features(prob.train.x, 9)
    y = prob.train.y
    lam = 0.01
    w_closed = R.ridge_fit(X, y, lam)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = 0.5 * ((X @ w - y) ** 2).mean() + R.l2_penalty(w[1:], lam)
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    assert torch.allclose(w.detach(), w_closed, atol=1e-7)
    batch = R.ridge_fit(X, y, torch.tensor([0.0, lam, 1.0], dtype=torch.float64))
    assert batch.shape == (3, X.shape[1])
    assert torch.allclose(batch[1], w_closed, atol=1e-10)
    assert batch[2, 1:].norm() < batch[1, 1:].norm() < batch[0, 1:].norm()  # more shrinkage
    with pytest.raises(ValueError, match="y: expected 25"):
        R.ridge_fit(X, y[:-1], lam)
    with pytest.raises(ValueError, match="strength"):
        R.ridge_fit(X, y, -1.0)


def test_bias_variance_decomposition_adds_up():
    out = R.bias_variance([1, 3, 12], n_datasets=100)
    fg = R.target_function(out["x_grid"])
    mse = ((out["fits"] - fg) ** 2).mean(dim=(1, 2))  # E over data sets and grid
    assert torch.allclose(mse, out["bias2"] + out["variance"], rtol=1e-10)
    assert out["bias2"][0] > out["bias2"][1]  # a line misses the sine
    assert out["variance"][2] > out["variance"][1]  # degree 12 on 20 points chases noise


# --- Adam + L2 versus AdamW ------------------------------------------------------------------

@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1e8, 1e-8])
def test_adam_step_matches_torch_step_for_step(decoupled, scale):
    A = torch.randn(6, 6, dtype=torch.float64, generator=gen(0))
    H = A @ A.T + torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64, generator=gen(1))
    w0 = torch.randn(6, dtype=torch.float64, generator=gen(2))
    w0[0] = 0.0
    wt = w0.clone().requires_grad_()
    kw = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.3)
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([wt], **kw)
    w, state = w0.clone(), R.AdamState.zeros_like(w0)
    for _ in range(60):
        g = scale * (H @ w - b)
        w, state = R.adam_step(w, g, state, decoupled=decoupled, **kw)
        opt.zero_grad()
        wt.grad = scale * (H @ wt.detach() - b)
        opt.step()
        assert torch.allclose(w, wt.detach(), rtol=1e-12, atol=1e-14)
    assert state.step == 60


def test_adam_l2_and_adamw_differ_and_plain_adam_agrees():
    w0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    g = torch.tensor([100.0, 0.0], dtype=torch.float64)
    wa, sa = R.adam_step(w0, g, R.AdamState.zeros_like(w0), lr=0.1, weight_decay=0.0)
    wb, sb = R.adam_step(w0, g, R.AdamState.zeros_like(w0), lr=0.1, weight_decay=0.0, decoupled=True)
    assert torch.equal(wa, wb)
    wl2, _ = R.adam_step(w0, g, R.AdamState.zeros_like(w0), lr=0.1, weight_decay=0.5)
    ww, _ = R.adam_step(w0, g, R.AdamState.zeros_like(w0), lr=0.1, weight_decay=0.5, decoupled=True)
    assert not torch.allclose(wl2, ww)
    assert torch.isclose(ww[1], torch.tensor(0.95, dtype=torch.float64))  # AdamW: (1 - lr * wd) w
    assert torch.isclose(wl2[1], torch.tensor(0.9, dtype=torch.float64))  # Adam + L2: a full normalized step


def test_adam_step_rejects_bad_input():
    w = torch.ones(3, dtype=torch.float64)
    s = R.AdamState.zeros_like(w)
    with pytest.raises(ValueError, match="lr"):
        R.adam_step(w, w, s, lr=-0.1)
    with pytest.raises(ValueError, match="grad_p"):
        R.adam_step(w, torch.ones(4, dtype=torch.float64), s, lr=0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        R.adam_step(w, w, s, lr=0.1, weight_decay=-1.0)
    with pytest.raises(TypeError, match="state"):
        R.adam_step(w, w, None, lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        R.adam_step(w, w, s, lr=0.1, betas=(1.0, 0.9))


# --- label smoothing and input noise ----------------------------------------------------------

def test_label_smoothing_matches_torch_cross_entropy():
    logits = torch.randn(20, 5, dtype=torch.float64, generator=gen(0)) * 10
    y = torch.randint(0, 5, (20,), generator=gen(1))
    for eps in (0.0, 0.1, 1.0):
        q = R.smooth_labels(y, 5, eps)
        assert torch.allclose(q.sum(1), torch.ones(20, dtype=torch.float64))
        assert torch.allclose(R.soft_cross_entropy(logits, q), F.cross_entropy(logits, y, label_smoothing=eps), rtol=1e-12)
    with pytest.raises(ValueError, match="y: expected labels"):
        R.smooth_labels(y, 3, 0.1)
    with pytest.raises(ValueError, match="smoothing"):
        R.smooth_labels(y, 5, 1.5)


def test_input_noise_has_the_requested_spread():
    x = torch.zeros(100_000, dtype=torch.float64)
    y = R.add_input_noise(x, 0.5, generator=gen(0))
    assert abs(y.std().item() - 0.5) < 0.01 and abs(y.mean().item()) < 0.01
    assert torch.equal(R.add_input_noise(x, 0.0, generator=gen(0)), x)
    with pytest.raises(ValueError, match="std"):
        R.add_input_noise(x, -1.0)


# --- ensembles: vmap versus a loop -----------------------------------------------------------

def tiny_problem():
    d = blobs(20, 3, dim=4, seed=0)
    v = blobs(10, 3, dim=4, seed=1)
    return Split(d.x, d.y), Split(v.x, v.y)


def test_vmapped_losses_give_gradients_equal_the_per_model_loop_with_dropout_masks():
    tr, _ = tiny_problem()
    k, b = 3, len(tr.x)
    params = R.init_mlp([4, 8, 6, 3], k, generator=gen(0), dtype=torch.float64)
    keep = tuple((torch.rand(k, b, h, generator=gen(h), dtype=torch.float64) < 0.7).double() / 0.7 for h in (8, 6))
    xb = tr.x.expand(k, -1, -1)
    q = R.smooth_labels(tr.y, 3, 0.1).expand(k, -1, -1)
    leaves = [p.clone().requires_grad_() for p in params]
    grads = torch.autograd.grad(vmap(R._loss_one)(leaves, xb, q, keep).sum(), leaves)
    for i in range(k):
        ps = [p[i].clone().requires_grad_() for p in params]
        h = torch.relu(tr.x @ ps[0] + ps[1]) * keep[0][i]
        h = torch.relu(h @ ps[2] + ps[3]) * keep[1][i]
        loss = F.cross_entropy(h @ ps[4] + ps[5], tr.y, label_smoothing=0.1)
        for g_vmap, g_loop in zip(grads, torch.autograd.grad(loss, ps)):
            assert torch.allclose(g_vmap[i], g_loop, rtol=1e-12, atol=1e-14)


def _torch_net(init, i):
    """Model ``i`` of an ``init_mlp([4, 8, 3], ...)`` draw as a float64 torch.nn network."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        net[0].weight.copy_(init[0][i].T)
        net[0].bias.copy_(init[1][i])
        net[2].weight.copy_(init[2][i].T)
        net[2].bias.copy_(init[3][i])
    return net


@pytest.mark.parametrize("decoupled", [True, False])
def test_ensemble_training_equals_a_loop_of_torch_optimizers(decoupled):
    tr, va = tiny_problem()
    wds = [0.0, 0.05, 0.5]
    res = R.train_ensemble(tr, va, hidden=(8,), weight_decay=wds, decoupled=decoupled, lr=0.02, steps=40,
                           eval_every=20, seed=3)
    init = R.init_mlp([4, 8, 3], 3, generator=gen(3), dtype=torch.float64)  # the same draw as the trainer's
    Opt = torch.optim.AdamW if decoupled else torch.optim.Adam
    for i, wd in enumerate(wds):
        net = _torch_net(init, i)
        opt = Opt([{"params": [net[0].weight, net[2].weight], "weight_decay": wd},
                   {"params": [net[0].bias, net[2].bias], "weight_decay": 0.0}], lr=0.02)
        for _ in range(40):
            opt.zero_grad()
            F.cross_entropy(net(tr.x), tr.y).backward()
            opt.step()
        assert torch.allclose(res.params[0][i], net[0].weight.detach().T, rtol=1e-9, atol=1e-12)
        assert torch.allclose(res.params[3][i], net[2].bias.detach(), rtol=1e-9, atol=1e-12)
        with torch.no_grad():
            val = F.cross_entropy(net(va.x), va.y)
        assert abs(res.val_loss[i, -1].item() - val.item()) < 1e-10
    assert res.train_loss.shape == (3, 3) and res.steps.tolist() == [0, 20, 40]


def test_ensemble_with_dropout_noise_and_minibatches_runs_and_is_seeded():
    tr, va = tiny_problem()
    kw = dict(hidden=(8,), dropout=[0.0, 0.5], input_noise=0.2, batch_size=16, steps=10, eval_every=5)
    a = R.train_ensemble(tr, va, **kw)
    b = R.train_ensemble(tr, va, **kw)
    assert torch.equal(a.val_loss, b.val_loss)
    assert a.config["dropout"].tolist() == [0.0, 0.5] and a.config["input_noise"].tolist() == [0.2, 0.2]
    assert not torch.equal(a.params[0][0], a.params[0][1])


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(weight_decay=[0.0, 0.1], dropout=[0.0, 0.1, 0.2]), "equal lengths"),
        (dict(dropout=1.0), "dropout"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(steps=0), "steps"),
        (dict(batch_size=1000), "batch_size"),
        (dict(lr=0.0), "lr"),
    ],
)
def test_ensemble_rejects_bad_settings(kwargs, msg):
    tr, va = tiny_problem()
    with pytest.raises(ValueError, match=msg):
        R.train_ensemble(tr, va, **kwargs)


def test_ensemble_rejects_bad_splits():
    tr, va = tiny_problem()
    with pytest.raises(ValueError, match="val.x"):
        R.train_ensemble(tr, Split(va.x[:, :3], va.y))
    with pytest.raises(ValueError, match="train.y"):
        R.train_ensemble(Split(tr.x, tr.y.double()), va)
    with pytest.raises(TypeError, match="train"):
        R.train_ensemble((tr.x, tr.y), va)


def test_ridge_fits_of_every_degree_at_once_equal_separate_fits():
    prob = R.polynomial_problem(20, 10, seed=0)
    X = R.legendre_features(prob.train.x, 10)
    W = R.ridge_fit_degrees(X, prob.train.y, 1e-3)
    for d in range(11):
        assert torch.allclose(W[d, : d + 1], R.ridge_fit(X[:, : d + 1], prob.train.y, 1e-3), atol=1e-9)
        assert bool((W[d, d + 1:] == 0).all())
    with pytest.raises(ValueError, match="strength"):
        R.ridge_fit_degrees(X, prob.train.y, 0.0)


# --- FISTA with a stopping rule, the proximal-gradient residual --------------------------------

def _sklearn_lasso(X, y, lams):
    from sklearn.linear_model import Lasso

    out = []
    for lam in lams:
        sk = Lasso(alpha=float(lam), fit_intercept=True, tol=1e-14, max_iter=2_000_000).fit(X[:, 1:].numpy(), y.numpy())
        out.append(np.r_[sk.intercept_, sk.coef_])
    return torch.tensor(np.array(out))


@pytest.mark.parametrize("n, degree", [(30, 8), (20, 15)])  # (20, 15): nearly singular, where plain ISTA is slow
def test_lasso_fista_matches_scikit_learn_to_its_tolerance(n, degree):
    prob = R.polynomial_problem(n, 10, seed=2)
    X = R.legendre_features(prob.train.x, degree)
    y = prob.train.y
    lams = torch.logspace(-4, 0, 5, dtype=torch.float64)
    res = R.lasso_fista(X, y, lams, tol=1e-10)
    ref = _sklearn_lasso(X, y, lams)
    assert res.coef.shape == (5, degree + 1) and res.residual.shape == (5,)
    assert float(res.residual.max()) <= 1e-10 and res.steps < 20_000
    assert torch.allclose(res.coef, ref, atol=1e-6)
    assert torch.equal(res.coef[:, 1:] == 0, ref[:, 1:] == 0)  # the same exact zeros
    assert torch.allclose(res.residual, R.lasso_residual(X, y, lams, res.coef), rtol=1e-12, atol=1e-18)
    assert "steps" in repr(res)


def test_lasso_fista_reports_an_unconverged_run_and_rejects_bad_input():
    prob = R.polynomial_problem(20, 10, seed=0)
    X, y = R.legendre_features(prob.train.x, 15), prob.train.y
    lams = torch.tensor([1e-4], dtype=torch.float64)
    short = R.lasso_fista(X, y, lams, tol=1e-12, max_steps=30)
    assert short.steps == 30 and float(short.residual.max()) > 1e-12  # stopped by the cap, and says so
    with pytest.raises(ValueError, match="tol"):
        R.lasso_fista(X, y, lams, tol=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        R.lasso_fista(X, y, lams, max_steps=0)
    with pytest.raises(ValueError, match="y: expected 20"):
        R.lasso_fista(X, y[:-1], lams)
    with pytest.raises(ValueError, match="strengths"):
        R.lasso_fista(X, y, -lams)


def test_lasso_residual_is_zero_at_the_minimizer_and_the_gradient_norm_without_a_penalty():
    prob = R.polynomial_problem(30, 10, seed=1)
    X, y = R.legendre_features(prob.train.x, 6), prob.train.y
    lams = torch.tensor([0.0, 1e-2, 1e-1], dtype=torch.float64)
    ref = _sklearn_lasso(X, y, lams[1:])
    assert float(R.lasso_residual(X, y, lams[1:], ref).max()) < 1e-7
    w = torch.randn(3, X.shape[1], dtype=torch.float64, generator=gen(0))
    grad = (w @ X.T - y) @ X / len(y)  # (3, D): gradient of the squared error, by hand
    assert torch.allclose(R.lasso_residual(X, y, lams, w)[0], grad[0].norm(), rtol=1e-12)
    assert bool((R.lasso_residual(X, y, lams, w) > 1e-3).all())  # a random point is no minimizer
    with pytest.raises(ValueError, match="coef"):
        R.lasso_residual(X, y, lams, w[:2])


# --- shifted copies (augmentation) ------------------------------------------------------------------------

def test_shift_images_moves_content_and_fills_with_zeros():
    x = torch.randn(5, 6 * 4, dtype=torch.float64, generator=gen(0))  # five 6 x 4 images
    shifts = [(0, 0), (1, 0), (0, -1), (-2, 3)]
    out = R.shift_images(x, shifts, size=(6, 4))
    assert out.shape == (20, 24)
    img = x.reshape(5, 6, 4).numpy()
    for s, (dy, dx) in enumerate(shifts):
        expected = np.zeros_like(img)
        for r in range(6):
            for col in range(4):
                if 0 <= r - dy < 6 and 0 <= col - dx < 4:
                    expected[:, r, col] = img[:, r - dy, col - dx]
        assert np.array_equal(out[5 * s:5 * (s + 1)].reshape(5, 6, 4).numpy(), expected), (dy, dx)
    assert torch.equal(out[:5], x)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(shifts=[(0, 8)]), "shifts"), (dict(shifts=[]), "shifts"), (dict(shifts=[(0.5, 0)]), "shifts"),
    (dict(size=(4, 4)), "x: expected 16 columns"), (dict(size=(8,)), "size"),
])
def test_shift_images_rejects_bad_input(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        R.shift_images(torch.zeros(2, 64), **({"shifts": [(1, 1)], "size": (8, 8)} | kwargs))


# --- the implicit bias of gradient descent --------------------------------------------------------------

def test_least_squares_gd_ends_at_the_interpolant_closest_to_its_start():
    X = torch.randn(10, 40, dtype=torch.float64, generator=gen(0)) / 40**0.5  # more weights than examples
    y = torch.randn(10, dtype=torch.float64, generator=gen(1))
    w0 = torch.randn(3, 40, dtype=torch.float64, generator=gen(2)) * torch.tensor([[0.0], [1.0], [5.0]])
    W = R.least_squares_gd(X, y, w0, steps=2000)
    pinv = torch.linalg.pinv(X)
    assert torch.allclose(W[0], pinv @ y, atol=1e-10)  # from zero: the minimum-norm interpolant
    for w, start in zip(W, w0):
        assert torch.allclose(w, start + pinv @ (y - X @ start), atol=1e-9)
        assert torch.allclose(X @ w, y, atol=1e-9)
    assert W[0].norm() < W[1].norm() < W[2].norm()
    with pytest.raises(ValueError, match="w0"):
        R.least_squares_gd(X, y, w0[:, :5], steps=1)
    with pytest.raises(ValueError, match="steps"):
        R.least_squares_gd(X, y, w0, steps=0)
    with pytest.raises(ValueError, match="lr"):
        R.least_squares_gd(X, y, w0, steps=1, lr=-1.0)


# --- bias and variance: the training sets, and a well-posed solve ------------------------------------------

def test_bias_variance_returns_its_training_sets_and_a_small_ridge_makes_the_fits_solver_independent():
    out = R.bias_variance([3, 15], strength=1e-4, n_datasets=50)
    assert out["x_train"].shape == out["y_train"].shape == (50, 20)
    X = R.legendre_features(out["x_train"][7], 15)
    w = R.ridge_fit(X, out["y_train"][7], 1e-4)  # the same fit, by another routine
    assert torch.allclose(R.legendre_features(out["x_grid"], 15) @ w, out["fits"][1, 7], rtol=1e-9, atol=1e-9)
    A = X.T @ X + 20 * 1e-4 * torch.diag((torch.arange(16) > 0).double())
    b = X.T @ out["y_train"][7]
    assert torch.allclose(torch.linalg.solve(A, b), torch.linalg.lstsq(A, b[:, None]).solution[:, 0], rtol=1e-9)


# --- the ensemble: per-model label smoothing, and the training-mode loss of each step ----------------------

def test_ensemble_label_smoothing_per_model_equals_a_loop_of_torch_optimizers():
    tr, va = tiny_problem()
    eps = [0.0, 0.1, 0.3]
    res = R.train_ensemble(tr, va, hidden=(8,), label_smoothing=eps, lr=0.02, steps=30, eval_every=10, seed=4)
    init = R.init_mlp([4, 8, 3], 3, generator=gen(4), dtype=torch.float64)
    for i, e in enumerate(eps):
        net = _torch_net(init, i)
        opt = torch.optim.AdamW(net.parameters(), lr=0.02, weight_decay=0.0)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = F.cross_entropy(net(tr.x), tr.y, label_smoothing=e)
            losses.append(loss.item())
            loss.backward()
            opt.step()
        assert torch.allclose(res.params[2][i], net[2].weight.detach().T, rtol=1e-9, atol=1e-12)
        assert np.allclose(res.step_loss[i].numpy(), losses, rtol=1e-10)  # the loss each step trained on
    assert res.config["label_smoothing"].tolist() == eps
    assert res.step_loss.shape == (3, 30)


def test_ensemble_step_loss_is_noisier_with_dropout_and_equals_the_eval_loss_without():
    tr, va = tiny_problem()
    res = R.train_ensemble(tr, va, hidden=(16,), dropout=[0.0, 0.5], lr=0.01, steps=40, eval_every=10, seed=0)
    # without dropout, noise or smoothing, the training-mode loss at a recorded step is the evaluation-mode one
    for j, s in enumerate(res.steps.tolist()[:-1]):
        assert abs(res.step_loss[0, s].item() - res.train_loss[0, j].item()) < 1e-10
    assert abs(res.step_loss[1, 0].item() - res.train_loss[1, 0].item()) > 1e-6  # with dropout it is not
    with pytest.raises(ValueError, match="label_smoothing"):
        R.train_ensemble(tr, va, label_smoothing=[0.1, 1.5])
