"""losslab.nets (Chapter 6): clipping against PyTorch, initialization statistics, vmap against the loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from losslab import nets

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- clipping ---------------------------------------------------------------------------------

SHAPES = [(3, 4), (7,), (2, 3, 5), ()]


def grads_like(kind: str, seed: int) -> list[torch.Tensor]:
    g = gen(seed)
    out = [torch.randn(s, generator=g, dtype=F64) for s in SHAPES]
    if kind == "large":
        out = [t * 1e150 for t in out]
    elif kind == "tiny":
        out = [t * 1e-300 for t in out]
    elif kind == "zeros":
        out = [torch.zeros_like(t) for t in out]
    elif kind == "ties":
        out = [torch.full_like(t, 0.5) * (1 - 2 * (torch.arange(t.numel()).reshape(t.shape) % 2)) for t in out]
    elif kind == "inf":
        out[1][2] = math.inf
    elif kind == "neginf":
        out[0][1, 1] = -math.inf
    elif kind == "nan":
        out[2][0, 1, 1] = math.nan
    return out


def with_grads(grads: list[torch.Tensor], extra_without_grad: bool = True) -> list[torch.Tensor]:
    params = []
    for g in grads:
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g.clone()
        params.append(p)
    if extra_without_grad:
        params.insert(1, torch.zeros(3, dtype=F64, requires_grad=True))  # no .grad: skipped by both
    return params


KINDS = ["random", "large", "tiny", "zeros", "ties", "inf", "neginf", "nan"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [0.0, 0.5, 1e3])
def test_clip_grad_norm_matches_torch(kind, norm_type, max_norm):
    grads = grads_like(kind, seed=hash((kind, norm_type)) % 1000)
    ours, theirs = with_grads(grads), with_grads(grads)
    n1 = nets.clip_grad_norm_(ours, max_norm, norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert torch.allclose(n1, n2, rtol=1e-12, atol=0, equal_nan=True), (n1, n2)
    for a, b in zip(ours, theirs):
        if b.grad is None:
            assert a.grad is None
        else:
            assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=0, equal_nan=True)


def test_clip_grad_norm_keeps_the_direction_and_reaches_the_threshold():
    grads = grads_like("random", 3)
    params = with_grads(grads, extra_without_grad=False)
    total = nets.clip_grad_norm_(params, 0.1)
    flat_before = torch.cat([g.flatten() for g in grads])
    flat_after = torch.cat([p.grad.flatten() for p in params])
    assert float(total) == pytest.approx(float(flat_before.norm()), rel=1e-12)
    assert float(flat_after.norm()) == pytest.approx(0.1, rel=1e-5)  # the 1e-6 in the denominator
    assert float(F.cosine_similarity(flat_before, flat_after, dim=0)) == pytest.approx(1.0, abs=1e-12)


def test_small_gradients_are_not_scaled_up():
    params = with_grads([torch.tensor([3e-3, 4e-3], dtype=F64)], extra_without_grad=False)
    total = nets.clip_grad_norm_(params, 1.0)
    assert float(total) == pytest.approx(5e-3)
    assert torch.equal(params[0].grad, torch.tensor([3e-3, 4e-3], dtype=F64))


@pytest.mark.parametrize("kind", ["inf", "nan"])
def test_error_if_nonfinite_raises_like_torch_and_leaves_the_gradients(kind):
    grads = grads_like(kind, 0)
    ours, theirs = with_grads(grads), with_grads(grads)
    with pytest.raises(RuntimeError, match="non-finite"):
        nets.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    for a, g in zip([p for p in ours if p.grad is not None], grads):
        assert torch.equal(a.grad.nan_to_num(), g.nan_to_num())


def test_single_tensor_and_empty_inputs_like_torch():
    p, q = torch.zeros(4, dtype=F64, requires_grad=True), torch.zeros(4, dtype=F64, requires_grad=True)
    p.grad = torch.arange(4.0, dtype=F64)
    q.grad = p.grad.clone()
    assert torch.equal(nets.clip_grad_norm_(p, 1.0), torch.nn.utils.clip_grad_norm_(q, 1.0))
    assert torch.equal(p.grad, q.grad)
    assert torch.equal(nets.clip_grad_norm_([], 1.0), torch.nn.utils.clip_grad_norm_([], 1.0))
    assert float(nets.global_grad_norm([])) == 0.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("clip_value", [0.0, 0.5, 1e200])
def test_clip_grad_value_matches_torch(kind, clip_value):
    grads = grads_like(kind, 11)
    ours, theirs = with_grads(grads), with_grads(grads)
    assert nets.clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for a, b in zip(ours, theirs):
        if b.grad is None:
            assert a.grad is None
        else:
            assert torch.equal(a.grad.isnan(), b.grad.isnan())
            assert torch.equal(a.grad.nan_to_num(), b.grad.nan_to_num())


def test_functional_clip_matches_the_in_place_one():
    grads = grads_like("random", 5)
    d = {f"g{i}": g for i, g in enumerate(grads)}
    clipped, total = nets.clip_by_global_norm(d, torch.tensor(0.3, dtype=F64))
    params = with_grads(grads, extra_without_grad=False)
    ref = torch.nn.utils.clip_grad_norm_(params, 0.3)
    assert torch.allclose(total, ref, rtol=1e-12)
    for (k, v), p in zip(clipped.items(), params):
        assert torch.allclose(v, p.grad, rtol=1e-12, atol=0)
    same, _ = nets.clip_by_global_norm(d, torch.tensor(math.inf, dtype=F64))  # inf: no clipping
    assert all(torch.equal(same[k], d[k]) for k in d)


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda p: nets.clip_grad_norm_(p, -1.0), ValueError, "max_norm"),
        (lambda p: nets.clip_grad_norm_(p, math.nan), ValueError, "max_norm"),
        (lambda p: nets.clip_grad_norm_(p, 1.0, norm_type=0), ValueError, "norm_type"),
        (lambda p: nets.clip_grad_norm_(p, 1.0, norm_type=-2.0), ValueError, "norm_type"),
        (lambda p: nets.clip_grad_norm_(p + [3.0], 1.0), TypeError, r"parameters\[1\]"),
        (lambda p: nets.clip_grad_norm_(5, 1.0), TypeError, "parameters"),
        (lambda p: nets.clip_grad_value_(p, -0.1), ValueError, "clip_value"),
        (lambda p: nets.clip_grad_value_(p, True), TypeError, "clip_value"),  # a wrong type: TypeError (losslab._checks)
    ],
)
def test_clipping_rejects_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call(with_grads([torch.ones(2, dtype=F64)], extra_without_grad=False))


# --- initialization ---------------------------------------------------------------------------


@pytest.mark.parametrize("init", nets.INITS)
def test_initial_weights_have_the_predicted_variance(init):
    # Non-square layers tell fan_in from fan_out. For n i.i.d. normal draws the
    # sample variance has relative standard error sqrt(2/(n-1)): 0.39% for
    # n = 128*1024, so 5 standard errors is a 2% tolerance; the sample mean has
    # standard error std/sqrt(n), allowed 5 of them.
    cfg = nets.MLPConfig(depth=2, width=1024, in_dim=128, out_dim=10, activation="relu", init=init)
    net = nets.DeepMLP(cfg, seed=1, dtype=F64)
    w = net.hidden[0].weight.detach()  # (1024, 128): fan_in 128, fan_out 1024
    fan_out, fan_in = w.shape
    expected = {
        "small": 0.01,
        "large": 1.0,
        # torch.nn.init's own formulas, written independently of ours:
        "xavier": torch.nn.init.calculate_gain("linear") * math.sqrt(2.0 / (fan_in + fan_out)),
        "he": torch.nn.init.calculate_gain("relu") / math.sqrt(fan_in),
    }[init]
    n = w.numel()
    assert float(w.var()) == pytest.approx(expected**2, rel=5 * math.sqrt(2 / (n - 1)))
    assert abs(float(w.mean())) < 5 * expected / math.sqrt(n)
    assert torch.count_nonzero(net.hidden[0].bias) == 0


@pytest.mark.parametrize(
    "activation, init, expected",
    [("relu", "he", 1.0), ("relu", "xavier", 0.5**10), ("linear", "xavier", 1.0), ("linear", "he", 2.0**10)],
)
def test_variance_through_ten_square_layers_follows_the_theory(activation, init, expected):
    # Each layer multiplies E[h^2] by fan_in * Var(W) * (1/2 for ReLU, 1 for identity).
    # At width 512 one layer's factor fluctuates by about sqrt(2/512) = 6% (more for ReLU),
    # so over 10 layers the log-ratio has spread about 0.25: a factor 2 either way is ~3 sigma.
    cfg = nets.MLPConfig(depth=11, width=512, in_dim=512, activation=activation, init=init)
    net = nets.DeepMLP(cfg, seed=2, dtype=F64)
    x = torch.randn(256, 512, generator=gen(3), dtype=F64)
    with torch.no_grad():
        _, hidden = net(x, return_hidden=True)  # (11, 256, 512)
    ms = hidden.pow(2).mean(dim=(1, 2))
    ratio = float(ms[-1] / ms[0])
    assert expected / 2 < ratio < expected * 2, ratio


def test_init_std_rejects_bad_input():
    with pytest.raises(ValueError, match="init"):
        nets.init_std("kaiming", 3, 3)
    with pytest.raises(ValueError, match="fan_in"):
        nets.init_std("he", 0, 3)


# --- the network --------------------------------------------------------------------------------


def test_forward_matches_a_hand_written_network():
    cfg = nets.MLPConfig(depth=4, width=8, in_dim=5, out_dim=3, activation="gelu", init="he",
                         norm="layer", residual=True, branch_scale=0.5)
    net = nets.DeepMLP(cfg, seed=0, dtype=F64)
    with torch.no_grad():
        for p in net.parameters():  # non-trivial biases and norm affine parameters
            p.add_(0.1 * torch.randn(p.shape, generator=gen(9), dtype=F64))
    x = torch.randn(6, 5, generator=gen(4), dtype=F64)
    h = x
    for l in range(4):
        lin, ln = net.hidden[l], net.norms[l]
        a = F.gelu(F.layer_norm(h @ lin.weight.T + lin.bias, (8,), ln.weight, ln.bias, eps=1e-5))
        h = h + 0.5 * a if l > 0 else a
    expected = h @ net.readout.weight.T + net.readout.bias
    assert torch.allclose(net(x), expected, rtol=1e-12, atol=1e-12)


def test_batch_norm_uses_batch_statistics():
    cfg = nets.MLPConfig(depth=2, width=8, in_dim=5, activation="linear", norm="batch")
    net = nets.DeepMLP(cfg, dtype=F64)
    x = torch.randn(32, 5, generator=gen(0), dtype=F64) * 7 + 3
    _, hidden = net(x, return_hidden=True)
    assert torch.allclose(hidden[0].mean(0), torch.zeros(8, dtype=F64), atol=1e-12)
    assert torch.allclose(hidden[0].var(0, unbiased=False), torch.ones(8, dtype=F64), rtol=1e-4)


def digits_batch(n=48, seed=0):
    g = gen(seed)
    return torch.randn(n, 64, generator=g, dtype=F64), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("norm, residual, activation", [("none", False, "tanh"), ("batch", True, "relu"), ("layer", False, "sigmoid")])
def test_vmapped_statistics_equal_the_per_model_loop(norm, residual, activation):
    x, y = digits_batch()
    models = [nets.DeepMLP(nets.MLPConfig(depth=6, width=16, activation=activation, init=i, norm=norm, residual=residual),
                           seed=s, dtype=F64) for s, i in enumerate(nets.INITS)]
    batched = nets.batched_signal_stats(models, x, y, n_sample=3)
    assert batched.weight_grad_norm.shape == (4, 6)
    for j, m in enumerate(models):
        ref = nets.signal_stats(m, x, y, n_sample=3)
        got = batched.select(j)
        for name in ("loss", "weight_grad_norm", "hidden_grad_norm", "act_mean", "act_std", "act_sample"):
            assert torch.allclose(getattr(got, name), getattr(ref, name), rtol=1e-9, atol=1e-300), name


def test_reference_statistics_match_autograd_on_the_module():
    x, y = digits_batch()
    net = nets.DeepMLP(nets.MLPConfig(depth=3, width=16, activation="tanh"), seed=5, dtype=F64)
    st = nets.signal_stats(net, x, y)
    F.cross_entropy(net(x), y).backward()
    expected = torch.stack([layer.weight.grad.norm() for layer in net.hidden])
    assert torch.allclose(st.weight_grad_norm, expected, rtol=1e-12)
    _, hidden = net(x, return_hidden=True)
    assert torch.allclose(st.act_std, hidden.detach().flatten(1).std(1), rtol=1e-12)


def test_sweep_groups_by_shape_and_keeps_the_order():
    x, y = digits_batch()
    configs = [nets.MLPConfig(depth=d, width=16, activation="tanh", init=i) for d, i in [(3, "he"), (5, "xavier"), (3, "small")]]
    stats = nets.sweep(configs, x, y, seed=7)
    for c, s in zip(configs, stats):
        ref = nets.signal_stats(nets.DeepMLP(c, seed=7, dtype=F64), x, y)
        assert torch.allclose(s.weight_grad_norm, ref.weight_grad_norm, rtol=1e-9)


def test_vmapped_training_equals_torch_sgd_with_torch_clipping():
    x, y = digits_batch(n=40, seed=1)
    cfg = nets.MLPConfig(depth=4, width=12, activation="tanh", init="xavier", norm="batch")
    runs = [nets.Run(cfg, lr=0.5, clip_norm=0.3, seed=3), nets.Run(cfg, lr=0.2, clip_value=0.01, seed=4)]
    losses, norms = nets.train_runs(runs, x, y, steps=4, batch_size=16, seed=2)
    g = gen(2)
    batches = [torch.randperm(40, generator=g)[:16] for _ in range(4)]
    for r, run in enumerate(runs):
        net = nets.DeepMLP(cfg, seed=run.seed, dtype=F64)
        for t, b in enumerate(batches):
            net.zero_grad()
            loss = F.cross_entropy(net(x[b]), y[b])
            loss.backward()
            if run.clip_value:
                torch.nn.utils.clip_grad_value_(net.parameters(), run.clip_value)
            total = torch.nn.utils.clip_grad_norm_(net.parameters(), run.clip_norm or math.inf)
            with torch.no_grad():
                for p in net.parameters():
                    p -= run.lr * p.grad  # plain SGD
            assert float(losses[r, t]) == pytest.approx(loss.item(), rel=1e-10)
            assert float(norms[r, t]) == pytest.approx(float(total), rel=1e-10)


def test_diverged_runs_stay_nan():
    x, y = digits_batch(n=32)
    run = nets.Run(nets.MLPConfig(depth=3, width=8, activation="relu", init="large"), lr=1e30)
    losses, _ = nets.train_runs([run], (x * 1e3).float(), y, steps=6, batch_size=32)  # float32 overflows
    bad = torch.isnan(losses[0])
    assert bad.any() and bool(bad[int(bad.int().argmax()):].all())


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: nets.MLPConfig(activation="swish"), ValueError, "activation"),
        (lambda: nets.MLPConfig(init="orthogonal"), ValueError, "init"),
        (lambda: nets.MLPConfig(norm="group"), ValueError, "norm"),
        (lambda: nets.MLPConfig(depth=0), ValueError, "depth"),
        (lambda: nets.MLPConfig(width=3.5), TypeError, "width"),  # a wrong type: TypeError (losslab._checks)
        (lambda: nets.MLPConfig(residual=1), TypeError, "residual"),
        (lambda: nets.MLPConfig(branch_scale=-1.0), ValueError, "branch_scale"),
        (lambda: nets.DeepMLP("tanh"), TypeError, "config"),
        (lambda: nets.DeepMLP(nets.MLPConfig(), dtype=torch.int64), TypeError, "dtype"),
        (lambda: nets.DeepMLP(nets.MLPConfig())(torch.zeros(4, 63)), ValueError, r"x: expected shape \(B, 64\)"),
        (lambda: nets.Run(nets.MLPConfig(), lr=-0.1), ValueError, "lr"),
        (lambda: nets.Run(nets.MLPConfig(), clip_norm=0.0), ValueError, "clip_norm"),
    ],
)
def test_bad_configurations_are_rejected(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_bad_batches_and_mixed_shapes_are_rejected():
    x, y = digits_batch(n=8)
    net = nets.DeepMLP(nets.MLPConfig(depth=2, width=8), dtype=F64)
    with pytest.raises(ValueError, match="y: expected int64"):
        nets.signal_stats(net, x, y.float())
    with pytest.raises(ValueError, match="y: expected int64 labels of shape"):
        nets.signal_stats(net, x, y[:5])
    with pytest.raises(ValueError, match="x: contains NaN"):
        nets.signal_stats(net, x.clone().fill_(math.nan), y)
    other = nets.DeepMLP(nets.MLPConfig(depth=3, width=8), dtype=F64)
    with pytest.raises(ValueError, match=r"models\[1\]: every model must share the shape"):
        nets.batched_signal_stats([net, other], x, y)
    with pytest.raises(ValueError, match="models: expected at least one"):
        nets.batched_signal_stats([], x, y)
    with pytest.raises(ValueError, match="batch_size"):
        nets.train_runs([nets.Run(nets.MLPConfig(depth=2, width=8))], x, y, batch_size=9)
