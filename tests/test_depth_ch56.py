"""Depth work for Chapters 5 and 6: hand-derived backward passes and the signal-propagation tools,
each checked against PyTorch in float64 on random and extreme inputs, with clear errors for bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from losslab import autograd as A

D = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# --- softmax + cross-entropy ------------------------------------------------------------------

@pytest.mark.parametrize("seed, B, K, scale", [(0, 7, 5, 1.0), (1, 1, 3, 1.0), (2, 16, 10, 30.0), (3, 4, 2, 1e4), (4, 5, 7, 1e-8)])
def test_softmax_cross_entropy_matches_torch(seed, B, K, scale):
    z = torch.randn(B, K, generator=_gen(seed), dtype=D) * scale
    y = torch.randint(0, K, (B,), generator=_gen(seed + 100))
    loss, grad = A.softmax_cross_entropy(z, y)
    zt = z.clone().requires_grad_()
    want = F.cross_entropy(zt, y)
    want.backward()
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert math.isclose(float(loss), float(want.detach()), rel_tol=1e-12, abs_tol=1e-12)
    assert torch.allclose(grad, zt.grad, rtol=1e-10, atol=1e-15)
    # the rows of p - y sum to zero: what the logits gain in one class they lose in the others
    assert torch.allclose(grad.sum(1), torch.zeros(B, dtype=D), atol=1e-15)


def test_softmax_cross_entropy_rejects_bad_input():
    z = torch.zeros(3, 4, dtype=D)
    with pytest.raises(TypeError, match="target"):
        A.softmax_cross_entropy(z, torch.zeros(3))
    with pytest.raises(ValueError, match="target"):
        A.softmax_cross_entropy(z, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="target"):
        A.softmax_cross_entropy(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="logits"):
        A.softmax_cross_entropy(torch.full((3, 4), float("inf"), dtype=D), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="logits"):
        A.softmax_cross_entropy(torch.zeros(3, 4, dtype=torch.int64), torch.tensor([0, 1, 2]))


# --- batch normalization ----------------------------------------------------------------------

def _torch_bn(x, gamma, beta, dy, eps):
    xs, gs, bs = (t.clone().requires_grad_() for t in (x, gamma, beta))
    y = F.batch_norm(xs, None, None, gs, bs, training=True, eps=eps)
    y.backward(dy)
    return y.detach(), xs.grad, gs.grad, bs.grad


@pytest.mark.parametrize("seed, B, n, scale, shift, eps", [(0, 8, 5, 1.0, 0.0, 1e-5), (1, 2, 3, 1.0, 0.0, 1e-5),
                                                          (2, 64, 4, 1e3, 1e4, 1e-5), (3, 16, 6, 1e-3, 0.0, 1e-5),
                                                          (4, 5, 3, 1.0, 0.0, 0.5)])
def test_batchnorm_forward_and_backward_match_torch(seed, B, n, scale, shift, eps):
    g = _gen(seed)
    x = torch.randn(B, n, generator=g, dtype=D) * scale + shift
    gamma, beta = torch.randn(n, generator=g, dtype=D), torch.randn(n, generator=g, dtype=D)
    dy = torch.randn(B, n, generator=g, dtype=D)
    y, cache = A.batchnorm_forward(x, gamma, beta, eps=eps)
    dx, dgamma, dbeta = A.batchnorm_backward(dy, cache)
    ty, tdx, tdg, tdb = _torch_bn(x, gamma, beta, dy, eps)
    assert torch.allclose(y, ty, rtol=1e-9, atol=1e-10)
    assert torch.allclose(dgamma, tdg, rtol=1e-9, atol=1e-10) and torch.allclose(dbeta, tdb, rtol=1e-12, atol=1e-12)
    assert torch.allclose(dx, tdx, rtol=1e-7, atol=1e-9 * float(tdx.abs().max()))
    # the paths through the mean and the variance: the gradient sums to zero over the batch
    assert dx.sum(0).abs().max() <= 1e-9 * dx.abs().max() * B


def test_batchnorm_constant_column_is_finite_and_matches_torch():
    x = torch.randn(6, 3, generator=_gen(5), dtype=D)
    x[:, 1] = 7.0                                                   # variance 0: only eps keeps 1/sigma finite
    gamma, beta, dy = torch.ones(3, dtype=D), torch.zeros(3, dtype=D), torch.randn(6, 3, generator=_gen(6), dtype=D)
    y, cache = A.batchnorm_forward(x, gamma, beta)
    dx, _, _ = A.batchnorm_backward(dy, cache)
    ty, tdx, _, _ = _torch_bn(x, gamma, beta, dy, 1e-5)
    assert torch.isfinite(dx).all() and torch.allclose(dx, tdx, rtol=1e-7, atol=1e-9)
    assert torch.allclose(y, ty, atol=1e-12)


def test_batchnorm_rejects_bad_input():
    x = torch.zeros(4, 3, dtype=D)
    ok = torch.ones(3, dtype=D)
    with pytest.raises(ValueError, match="gamma"):
        A.batchnorm_forward(x, torch.ones(2, dtype=D), ok)
    with pytest.raises(ValueError, match="eps"):
        A.batchnorm_forward(x, ok, ok, eps=0.0)
    with pytest.raises(ValueError, match="x"):
        A.batchnorm_forward(torch.zeros(4, dtype=D), ok, ok)
    _, cache = A.batchnorm_forward(x, ok, ok)
    with pytest.raises(ValueError, match="grad_y"):
        A.batchnorm_backward(torch.zeros(4, 2, dtype=D), cache)


# --- Hessian-vector products ------------------------------------------------------------------

def _f(x):
    return (torch.tanh(x[:-1] * x[1:]) ** 2).sum() + (x ** 4).sum() / 12 + torch.exp(x[0] * x[-1])


@pytest.mark.parametrize("seed, n, scale", [(0, 5, 1.0), (1, 12, 0.1), (2, 3, 3.0)])
def test_hvp_matches_torch_and_the_full_hessian(seed, n, scale):
    g = _gen(seed)
    x, v = torch.randn(n, generator=g, dtype=D) * scale, torch.randn(n, generator=g, dtype=D)
    grad, Hv = A.hvp(_f, x, v)
    _, want = torch.autograd.functional.hvp(_f, x, v)
    H = torch.autograd.functional.hessian(_f, x)
    assert torch.allclose(Hv, want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(Hv, H @ v, rtol=1e-10, atol=1e-10)
    xs = x.clone().requires_grad_()
    _f(xs).backward()
    assert torch.allclose(grad, xs.grad, rtol=1e-12, atol=1e-14)


def test_hvp_of_a_linear_function_is_zero_and_bad_input_is_named():
    x, v = torch.ones(3, dtype=D), torch.ones(3, dtype=D)
    _, Hv = A.hvp(lambda t: (2 * t).sum(), x, v)
    assert torch.equal(Hv, torch.zeros(3, dtype=D))
    with pytest.raises(ValueError, match="v"):
        A.hvp(lambda t: t.sum(), x, torch.ones(4, dtype=D))
    with pytest.raises(ValueError, match="f"):
        A.hvp(lambda t: t, x, v)


# --- backprop through time --------------------------------------------------------------------

@pytest.mark.parametrize("seed, T, B, n_in, H, scale", [(0, 6, 3, 4, 5, 1.0), (1, 1, 1, 2, 3, 1.0), (2, 20, 2, 3, 8, 3.0),
                                                       (3, 12, 4, 2, 6, 1e-3)])
def test_rnn_bptt_matches_torch_rnn(seed, T, B, n_in, H, scale):
    g = _gen(seed)
    rnn = torch.nn.RNN(n_in, H, nonlinearity="tanh", dtype=D)
    with torch.no_grad():
        for p in rnn.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=D) * scale / math.sqrt(H))
    x = torch.randn(T, B, n_in, generator=g, dtype=D)
    h0 = torch.randn(B, H, generator=g, dtype=D)
    dhs = torch.randn(T, B, H, generator=g, dtype=D)
    xs, h0s = x.clone().requires_grad_(), h0.clone().requires_grad_()
    out, _ = rnn(xs, h0s[None])
    out.backward(dhs)
    b = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()
    hs, cache = A.rnn_forward(x, h0, rnn.weight_ih_l0.detach(), rnn.weight_hh_l0.detach(), b)
    grads, dh = A.rnn_bptt(dhs, cache)
    assert torch.allclose(hs, out.detach(), rtol=1e-12, atol=1e-13)
    for ours, theirs in ((grads["W_ih"], rnn.weight_ih_l0.grad), (grads["W_hh"], rnn.weight_hh_l0.grad),
                         (grads["b"], rnn.bias_ih_l0.grad), (grads["b"], rnn.bias_hh_l0.grad),
                         (grads["x"], xs.grad), (grads["h0"], h0s.grad)):
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert torch.equal(dh[-1], dhs[-1])  # the last state gets only its direct term


def test_rnn_rejects_bad_input():
    x = torch.zeros(3, 2, 4, dtype=D)
    W_ih, W_hh, b, h0 = torch.zeros(5, 4, dtype=D), torch.zeros(5, 5, dtype=D), torch.zeros(5, dtype=D), torch.zeros(2, 5, dtype=D)
    with pytest.raises(ValueError, match="W_ih"):
        A.rnn_forward(x, h0, torch.zeros(5, 3, dtype=D), W_hh, b)
    with pytest.raises(ValueError, match="h0"):
        A.rnn_forward(x, torch.zeros(3, 5, dtype=D), W_ih, W_hh, b)
    with pytest.raises(ValueError, match="x"):
        A.rnn_forward(torch.zeros(3, 4, dtype=D), h0, W_ih, W_hh, b)
    _, cache = A.rnn_forward(x, h0, W_ih, W_hh, b)
    with pytest.raises(ValueError, match="grad_hs"):
        A.rnn_bptt(torch.zeros(3, 2, 4, dtype=D), cache)


# --- Chapter 6: orthogonal weights, Jacobians, residual stacks, training diagnostics -----------

from losslab import nets  # noqa: E402


@pytest.mark.parametrize("rows, cols, gain, dtype", [(5, 5, 1.0, D), (8, 3, 2.0, D), (3, 8, 0.5, D), (64, 64, 1.0, torch.float32),
                                                     (1, 7, 1.0, D)])
def test_orthogonal_equals_torch_init_number_for_number(rows, cols, gain, dtype):
    ours = nets.orthogonal(rows, cols, gain=gain, generator=_gen(rows * 100 + cols), dtype=dtype)
    theirs = torch.nn.init.orthogonal_(torch.empty(rows, cols, dtype=dtype), gain=gain, generator=_gen(rows * 100 + cols))
    assert ours.dtype == dtype and ours.shape == (rows, cols)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12 if dtype == D else 1e-5)
    small = min(rows, cols)
    gram = ours @ ours.T if rows <= cols else ours.T @ ours
    assert torch.allclose(gram, gain ** 2 * torch.eye(small, dtype=dtype), atol=1e-12 if dtype == D else 1e-5)


def test_orthogonal_rejects_bad_input():
    with pytest.raises(ValueError, match="gain"):
        nets.orthogonal(3, 3, gain=0.0)
    with pytest.raises(ValueError, match="rows"):
        nets.orthogonal(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        nets.orthogonal(3, 3, dtype=torch.int64)


@pytest.mark.parametrize("activation, scale", [("linear", 1.0), ("tanh", 1.0), ("tanh", 30.0), ("relu", 1.0), ("tanh", 1e-6)])
def test_input_output_jacobian_matches_autograd(activation, scale):
    g = _gen(3)
    sizes = [6, 8, 5, 7]
    Ws = [torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=D) / math.sqrt(sizes[i]) for i in range(3)]
    x = torch.randn(6, generator=g, dtype=D) * scale
    phi = {"linear": lambda z: z, "tanh": torch.tanh, "relu": torch.relu}[activation]

    def f(v):
        for W in Ws:
            v = phi(W @ v)
        return v

    want = torch.autograd.functional.jacobian(f, x)
    assert torch.allclose(nets.input_output_jacobian(Ws, x, activation), want, rtol=1e-12, atol=1e-14)


def test_input_output_jacobian_rejects_bad_input():
    x = torch.zeros(3, dtype=D)
    with pytest.raises(ValueError, match="weights\\[1\\]"):
        nets.input_output_jacobian([torch.zeros(4, 3, dtype=D), torch.zeros(2, 3, dtype=D)], x)
    with pytest.raises(ValueError, match="activation"):
        nets.input_output_jacobian([torch.zeros(4, 3, dtype=D)], x, "sigmoid")


def test_residual_signal_kinds():
    post = nets.residual_signal("post-norm", depth=8, width=16, batch=8)
    assert torch.allclose(post.rms, torch.ones(8, dtype=D), atol=1e-4)   # LN output: mean 0, variance 1 per row
    pre = nets.residual_signal("pre-norm", depth=8, width=16, batch=8)
    assert bool((pre.rms[1:] > pre.rms[:-1]).all())                       # the stream only adds: it grows
    assert all(t.shape == (8,) and torch.isfinite(t).all() for t in (pre.hidden_grad, pre.weight_grad))
    with pytest.raises(ValueError, match="kind"):
        nets.residual_signal("sandwich")


def test_relu_diagnostics_equal_a_plain_loop():
    g = _gen(0)
    x = torch.randn(80, 5, generator=g, dtype=D)
    y = torch.randint(0, 3, (80,), generator=g)
    steps, lrs, seeds = 4, (0.1, 2.0), (0, 1)
    r = nets.relu_diagnostics(x, y, lrs=lrs, seeds=seeds, steps=steps, width=6, depth=2, batch_size=16, n_probe=40)
    assert r.loss.shape == (4, steps) and r.dead.shape == (4, steps, 2) and r.update_ratio.shape == (4, steps, 3)
    for m, (lr, s) in enumerate([(a, b) for a in lrs for b in seeds]):
        dims = [5, 6, 6, 3]
        Ws = [(torch.randn(dims[i + 1], dims[i], generator=_gen(1000 * s + i), dtype=D) * math.sqrt(2 / dims[i])).requires_grad_()
              for i in range(3)]
        bs = [torch.zeros(dims[i + 1], dtype=D, requires_grad=True) for i in range(3)]
        batches = _gen(seeds[0])
        for t in range(steps):
            idx = torch.randperm(80, generator=batches)[:16]
            h = x[idx]
            for i in range(3):
                h = h @ Ws[i].T + bs[i]
                h = torch.relu(h) if i < 2 else h
            loss = F.cross_entropy(h, y[idx])
            grads = torch.autograd.grad(loss, Ws + bs)
            assert math.isclose(float(r.loss[m, t]), float(loss.detach()), rel_tol=1e-10)
            ratios = torch.stack([(lr * gW).std() / W.detach().std() for W, gW in zip(Ws, grads[:3])]).log10()
            assert torch.allclose(r.update_ratio[m, t], ratios, atol=1e-10, equal_nan=True)
            with torch.no_grad():
                for p, gp in zip(Ws + bs, grads):
                    p -= lr * gp
                h, dead = x[:40], []
                for i in range(2):
                    h = torch.relu(h @ Ws[i].T + bs[i])
                    dead.append(float((h.max(0).values <= 0).double().mean()))
            assert torch.allclose(r.dead[m, t], torch.tensor(dead, dtype=D))


def test_relu_diagnostics_reject_bad_input():
    x, y = torch.zeros(10, 3), torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match="lrs"):
        nets.relu_diagnostics(x, y, lrs=(0.1, -1.0))
    with pytest.raises(ValueError, match="y"):
        nets.relu_diagnostics(x, y[:5], lrs=(0.1,))
    with pytest.raises(ValueError, match="batch_size"):
        nets.relu_diagnostics(x, y, lrs=(0.1,), batch_size=20)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_normalized_runs_equal_train_runs(activation):
    g = _gen(4)
    x = torch.randn(60, 12, generator=g, dtype=D)
    y = torch.randint(0, 4, (60,), generator=g)
    runs = [nets.Run(nets.MLPConfig(depth=3, width=8, activation=activation, init=i, norm=n, in_dim=12, out_dim=4),
                     lr=lr, seed=s)
            for n, i, lr, s in (("batch", "small", 0.1, 0), ("layer", "small", 0.1, 1), ("batch", "xavier", 0.5, 2),
                                ("layer", "he", 0.3, 0))]
    ours_l, ours_n = nets.normalized_runs(runs, x, y, steps=6, batch_size=16, seed=3)
    want_l, want_n = nets.train_runs(runs, x, y, steps=6, batch_size=16, seed=3)
    assert torch.allclose(ours_l, want_l, rtol=1e-10, atol=1e-12)
    assert torch.allclose(ours_n, want_n, rtol=1e-8, atol=1e-10)


def test_normalized_runs_reject_what_they_do_not_do():
    x, y = torch.zeros(10, 64), torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match="runs\\[0\\]"):
        nets.normalized_runs([nets.Run(nets.MLPConfig(depth=2, norm="none"))], x, y)
    with pytest.raises(ValueError, match="runs\\[1\\]"):
        nets.normalized_runs([nets.Run(nets.MLPConfig(depth=2, norm="batch")), nets.Run(nets.MLPConfig(depth=3, norm="layer"))], x, y)
