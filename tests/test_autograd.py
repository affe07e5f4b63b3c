"""losslab.autograd against torch.autograd (float64): random expressions, random MLPs, extremes, gradcheck."""

import math
import random

import pytest
import torch

from losslab.autograd import (
    MLP, Value, backward_trace, cache_nbytes, central_difference_probe, gradcheck, gradient_costs, graph_layout, init_mlp, mlp_backward,
    mlp_forward, mlp_grads_checkpointed, mlp_jvp, mlp_loss_and_grads, mse, numerical_gradient,
    saved_tensor_bytes, topological_order,
)

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second thread only adds contention on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_close(a, b, *, rtol, atol):
    """torch.testing.assert_close without its slow first import: same shape, dtype, and |a-b| <= atol + rtol |b|."""
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    bad = (a - b).abs() > atol + rtol * b.abs()
    assert not bad.any(), f"max abs diff {float((a - b).abs().max()):.3g}"


# --- a seeded random expression builder: the same expression in Value and in torch ----------

def _pair(x):
    return Value(x), torch.tensor(x, dtype=F64, requires_grad=True)


def random_expression(seed: int, n_leaves: int = 4, n_ops: int = 14):
    """Build one random expression twice; return (value out, torch out, value leaves, torch leaves)."""
    rng = random.Random(seed)
    leaves = [_pair(rng.uniform(-2, 2)) for _ in range(n_leaves)]
    pool = list(leaves)
    for _ in range(n_ops):
        (a, ta), (b, tb) = rng.choice(pool), rng.choice(pool)
        op = rng.choice(["add", "sub", "mul", "div", "pow", "exp", "log", "tanh", "relu", "sigmoid", "const"])
        if op == "add":
            new = (a + b, ta + tb)
        elif op == "sub":
            new = (a - b, ta - tb)
        elif op == "mul":
            new = (a * b, ta * tb)
        elif op == "div":                         # denominator kept away from zero
            new = (a / (b * b + 0.5), ta / (tb * tb + 0.5))
        elif op == "pow":
            k = rng.choice([2, 3, -1, 0.5, 1.5])
            if k == -1 or k != int(k):            # positive base
                new = ((a * a + 0.3) ** k, (ta * ta + 0.3) ** k)
            else:
                new = (a ** k, ta ** k)
        elif op == "exp":
            new = ((a.tanh() * 3).exp(), (torch.tanh(ta) * 3).exp())
        elif op == "log":
            new = ((a * a + 0.1).log(), (ta * ta + 0.1).log())
        elif op == "tanh":
            new = (a.tanh(), torch.tanh(ta))
        elif op == "relu":
            new = (a.relu(), torch.relu(ta))
        elif op == "sigmoid":
            new = (a.sigmoid(), torch.sigmoid(ta))
        else:
            c = rng.uniform(-2, 2)
            new = (c - a * c / 3 + 1.5, c - ta * c / 3 + 1.5)
        pool.append(new)
    # sum of the last few nodes so several subexpressions reach the output; reuse makes paths share nodes
    out, tout = pool[-1]
    for v, t in pool[-4:-1]:
        out, tout = out + v, tout + t
    return out, tout, [v for v, _ in leaves], [t for _, t in leaves]


@pytest.mark.parametrize("seed", range(150))
def test_random_expressions_match_torch(seed):
    out, tout, vs, ts = random_expression(seed)
    out.backward()
    tout.backward()
    assert out.data == pytest.approx(float(tout.detach()), rel=1e-12, abs=1e-12)
    for v, t in zip(vs, ts):
        tg = 0.0 if t.grad is None else float(t.grad)
        assert v.grad == pytest.approx(tg, rel=1e-10, abs=1e-10), f"seed {seed}"


def test_shared_node_gradients_sum_over_paths():
    x = Value(3.0)
    y = x * x * x + x         # dy/dx = 3 x^2 + 1 = 28: four uses of x
    y.backward()
    assert x.grad == 28.0


def test_backward_can_be_called_twice_and_sets_gradients_afresh():
    x = Value(2.0)
    y = (x * x).tanh()
    y.backward()
    first = x.grad
    y.backward()
    assert x.grad == first


def test_deep_chain_does_not_hit_the_recursion_limit():
    x = Value(0.5)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 5000, rel=1e-9)


def test_topological_order_puts_inputs_first():
    out, *_ = random_expression(3)
    order = topological_order(out)
    pos = {id(v): i for i, v in enumerate(order)}
    assert order[-1] is out
    assert all(pos[id(c)] < pos[id(v)] for v in order for c in v._prev)
    assert len(pos) == len(order)


def test_backward_trace_ends_where_backward_ends():
    out, _, vs, _ = random_expression(7)
    order, steps = backward_trace(out)
    traced = [v.grad for v in vs]
    out.backward()
    assert traced == [v.grad for v in vs]
    assert steps[0].node is None and steps[0].grads[-1] == 1.0
    assert len(steps) == 1 + sum(1 for v in order if v._prev)


def test_graph_layout_puts_every_node_right_of_its_inputs():
    out, *_ = random_expression(11)
    lay = graph_layout(out)
    assert len(lay.xy) == len(lay.nodes) == len(set(lay.xy))
    assert all(lay.xy[i][0] < lay.xy[j][0] for i, j in lay.edges)


def test_repr_is_readable():
    x = Value(2.0, "x")
    y = x.tanh()
    assert repr(x) == "Value(data=2, grad=0, label='x')"
    assert repr(y).startswith("Value(data=0.964028, grad=0, op='tanh'")


# --- extreme inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("x", [-1000.0, -40.0, -1e-300, 0.0, 1e-300, 40.0, 1000.0])
@pytest.mark.parametrize("op", ["tanh", "sigmoid", "relu"])
def test_saturating_ops_at_extremes_match_torch(x, op):
    v = getattr(Value(x), op)()
    v.backward()
    t = torch.tensor(x, dtype=F64, requires_grad=True)
    getattr(torch, op)(t).backward()
    assert v.data == float(getattr(torch, op)(t.detach()))
    assert v._prev[0].grad == pytest.approx(float(t.grad), rel=1e-12, abs=0)


@pytest.mark.parametrize("a, b", [(1e150, 1e150), (1e-200, 1e-200), (1e-300, 1e300), (3e-308, 0.5)])
def test_products_of_large_and_tiny_numbers_match_torch(a, b):
    va, vb = Value(a), Value(b)
    (va * vb).backward()
    ta, tb = (torch.tensor(v, dtype=F64, requires_grad=True) for v in (a, b))
    (ta * tb).backward()
    assert (va.grad, vb.grad) == (float(ta.grad), float(tb.grad))


def test_log_of_tiny_numbers_matches_torch_and_log_of_zero_is_a_clear_error():
    v = Value(1e-300)
    y = v.log()
    y.backward()
    assert y.data == pytest.approx(math.log(1e-300)) and v.grad == pytest.approx(1e300)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="log: expected data > 0"):
            Value(bad).log()


def test_overflow_is_a_clear_error_not_an_inf():
    with pytest.raises(ValueError, match="exp"):
        Value(710.0).exp()
    assert Value(709.0).exp().data == pytest.approx(math.exp(709.0))
    with pytest.raises(ValueError, match="finite"):
        Value(1e200) * Value(1e200)
    with pytest.raises(ValueError, match="overflow"):
        Value(10.0) ** 400


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Value(True), TypeError, "data"),
        (lambda: Value("1.0"), TypeError, "data"),
        (lambda: Value(torch.tensor(1.0)), TypeError, "data"),
        (lambda: Value(float("nan")), ValueError, "finite"),
        (lambda: Value(float("inf")), ValueError, "finite"),
        (lambda: Value(1.0) + "a", TypeError, "other"),
        (lambda: Value(2.0) ** Value(2.0), TypeError, "exponent"),
        (lambda: Value(0.0) ** -1, ValueError, "pow"),
        (lambda: Value(1.0) / 0.0, ZeroDivisionError, "division by zero"),
        (lambda: Value(-2.0) ** 0.5, ValueError, "not real"),
        (lambda: topological_order(3.0), TypeError, "root"),
    ],
)
def test_bad_input_is_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


# --- the matrix form -----------------------------------------------------------------------------

def torch_mlp_grads(net: MLP, x, target):
    params = [p.clone().requires_grad_() for p in net.parameters()]
    h = x
    n = len(net.weights)
    for l in range(n):
        h = h @ params[2 * l].T + params[2 * l + 1]
        if l < n - 1:
            h = getattr(torch, net.activation)(h)
    loss = ((h - target) ** 2).mean()
    loss.backward()
    return h.detach(), loss.detach(), [p.grad for p in params]


def random_mlp(seed: int):
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    sizes = [rng.randint(1, 7) for _ in range(rng.randint(2, 5))]
    act = rng.choice(["tanh", "relu", "sigmoid"])
    ws = [torch.randn(o, i, generator=g, dtype=F64) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(o, generator=g, dtype=F64) for o in sizes[1:]]
    batch = rng.randint(1, 9)
    x = torch.randn(batch, sizes[0], generator=g, dtype=F64) * rng.choice([1e-3, 1.0, 30.0])
    t = torch.randn(batch, sizes[-1], generator=g, dtype=F64)
    return MLP(ws, bs, act), x, t


@pytest.mark.parametrize("seed", range(40))
def test_random_mlps_match_torch(seed):
    net, x, t = random_mlp(seed)
    y, _ = mlp_forward(net, x)
    loss, dW, db = mlp_loss_and_grads(net, x, t)
    ty, tloss, tgrads = torch_mlp_grads(net, x, t)
    assert_close(y, ty, rtol=1e-12, atol=1e-12)
    assert_close(loss, tloss, rtol=1e-12, atol=1e-14)
    ours = [g for pair in zip(dW, db) for g in pair]
    for a, b in zip(ours, tgrads):
        assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_input_gradient_matches_torch():
    net, x, t = random_mlp(5)
    xr = x.clone().requires_grad_()
    h = xr
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        h = h @ W.T + b
        if l < len(net.weights) - 1:
            h = getattr(torch, net.activation)(h)
    ((h - t) ** 2).mean().backward()
    y, cache = mlp_forward(net, x)
    _, gy = mse(y, t)
    _, _, dx = mlp_backward(net, cache, gy)
    assert_close(dx, xr.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("every", [1, 2, 3, 10])
def test_checkpointed_gradients_equal_the_plain_ones_and_keep_less(every):
    net = init_mlp([6] + [16] * 9 + [2], activation="tanh", seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 6, generator=g, dtype=F64)
    t = torch.randn(32, 2, generator=g, dtype=F64)
    loss, dW, db = mlp_loss_and_grads(net, x, t)
    loss2, dW2, db2, stats = mlp_grads_checkpointed(net, x, t, every=every)
    assert torch.equal(loss, loss2)
    assert all(torch.equal(a, b) for a, b in zip(dW + db, dW2 + db2))
    _, cache = mlp_forward(net, x)
    full = cache_nbytes(cache)
    assert stats.layer_evals == 2 * len(net.weights)
    if every == 3:  # about sqrt(10) layers per segment
        assert stats.peak_bytes < 0.6 * full


def test_cache_is_what_pytorch_saves_for_tanh():
    """Our cache keeps one (B, n) tensor per layer plus the input; PyTorch's linear+tanh saves as much."""
    net = init_mlp([5, 8, 8, 3], activation="tanh", seed=0)
    x = torch.randn(4, 5, dtype=F64)
    _, cache = mlp_forward(net, x)
    ws = [p.clone().requires_grad_() for p in net.parameters()]

    def run():
        h = x
        for l in range(3):
            h = h @ ws[2 * l].T + ws[2 * l + 1]
            if l < 2:
                h = torch.tanh(h)
        return ((h - 1) ** 2).mean()

    saved = saved_tensor_bytes(run, exclude=ws)
    # torch keeps each layer input (x, h1, h2) and the residual for the square: ours keeps the output y instead
    assert saved == cache_nbytes(cache)


def test_forward_mode_matches_torch_jvp():
    net, x, t = random_mlp(9)
    tangent, _, _ = random_mlp(9)
    g = torch.Generator().manual_seed(1)
    tangent = MLP([torch.randn(W.shape, generator=g, dtype=F64) for W in net.weights],
                  [torch.randn(b.shape, generator=g, dtype=F64) for b in net.biases], net.activation)
    loss, d = mlp_jvp(net, x, t, tangent)
    _, tl, tgrads = torch_mlp_grads(net, x, t)
    td = sum((g * v).sum() for g, v in zip(tgrads, tangent.parameters()))  # grad . v from torch.autograd
    assert_close(loss, tl, rtol=1e-12, atol=1e-14)
    assert_close(d, td, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda n, x, t: mlp_forward(n, x[:, :1]), ValueError, "x: expected shape"),
        (lambda n, x, t: mlp_forward(n, x.float()), TypeError, "x: expected dtype"),
        (lambda n, x, t: mlp_forward(n, x[0]), ValueError, "x: expected shape"),
        (lambda n, x, t: mlp_forward(n, x * float("nan")), ValueError, "finite"),
        (lambda n, x, t: mse(x, t), ValueError, "target"),
        (lambda n, x, t: mlp_backward(n, mlp_forward(n, x)[1], t[:1]), ValueError, "grad_y"),
        (lambda n, x, t: mlp_grads_checkpointed(n, x, t, every=0), ValueError, "every"),
        (lambda n, x, t: MLP(n.weights, n.biases[:1]), ValueError, "biases"),
        (lambda n, x, t: MLP(n.weights, n.biases, "gelu"), ValueError, "activation"),
        (lambda n, x, t: MLP([n.weights[1], n.weights[0]], [n.biases[1], n.biases[0]]), ValueError, "layer|weights"),
        (lambda n, x, t: init_mlp([3]), ValueError, "sizes"),
    ],
)
def test_mlp_bad_input_is_refused(call, error, match):
    net = init_mlp([3, 4, 2], seed=0)
    x = torch.randn(5, 3, dtype=F64)
    t = torch.randn(5, 2, dtype=F64)
    with pytest.raises(error, match=match):
        call(net, x, t)


# --- gradient checking ---------------------------------------------------------------------------

KNOWN = [
    (lambda x: (x ** 3).sum(), lambda x: 3 * x ** 2),
    (lambda x: torch.logsumexp(x, 0), lambda x: torch.softmax(x, 0)),
    (lambda x: torch.sin(x).prod(), lambda x: torch.sin(x).prod() / torch.tan(x)),
    (lambda x: (x * x).sum().sqrt(), lambda x: x / x.norm()),
]


@pytest.mark.parametrize("k", range(len(KNOWN)))
def test_gradcheck_accepts_known_gradients(k):
    f, df = KNOWN[k]
    x = torch.tensor([0.3, -1.1, 0.7, 1.9], dtype=F64)
    res = gradcheck(f, x, df(x))
    assert res.passed and res.rel_error < 1e-8, res


def test_gradcheck_flags_a_wrong_gradient_and_finds_the_coordinate():
    x = torch.tensor([0.3, -1.1, 0.7, 1.9], dtype=F64)
    wrong = 3 * x ** 2
    wrong[2] *= 1.01
    res = gradcheck(lambda v: (v ** 3).sum(), x, wrong)
    assert not res.passed and res.worst == 2 and res.rel_error > 1e-4
    # the classic bug: tanh' = 1 - x^2 instead of 1 - tanh(x)^2
    res = gradcheck(lambda v: torch.tanh(v).sum(), x, 1 - x ** 2)
    assert not res.passed


def test_numerical_gradient_matches_torch_in_float32_loosely():
    x = torch.tensor([0.3, -1.1, 0.7], dtype=torch.float32)
    g = numerical_gradient(lambda v: (torch.tanh(v) * v).sum(), x, eps=1e-2)
    xr = x.double().requires_grad_()
    (torch.tanh(xr) * xr).sum().backward()
    assert g.dtype == torch.float32
    assert_close(g.double(), xr.grad, rtol=1e-3, atol=1e-3)


def test_numerical_gradient_reports_a_step_lost_to_rounding():
    with pytest.raises(ValueError, match="rounding"):
        numerical_gradient(lambda v: v.sum(), torch.tensor([1e8], dtype=torch.float32), eps=1e-3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: gradcheck(lambda v: v.sum(), torch.tensor([1, 2]), torch.ones(2)), TypeError, "x: expected float32"),
        (lambda: gradcheck(lambda v: v.sum(), torch.ones(2, dtype=F64), torch.ones(3, dtype=F64)), ValueError, "grad"),
        (lambda: gradcheck(lambda v: v.sum(), torch.ones(2, dtype=F64), torch.ones(2, dtype=F64), eps=0.0), ValueError, "eps"),
        (lambda: gradcheck(lambda v: v.sum(), torch.ones(2, dtype=F64), torch.ones(2, dtype=F64), tol=-1.0), ValueError, "tol"),
        (lambda: gradcheck(lambda v: v, torch.ones(2, dtype=F64), torch.ones(2, dtype=F64)), ValueError, "scalar"),
        (lambda: gradcheck(lambda v: v.log().sum(), torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)), ValueError, "non-finite"),
        (lambda: gradcheck(lambda v: v.sum(), torch.tensor([float("nan")], dtype=F64), torch.ones(1, dtype=F64)), ValueError, "finite"),
    ],
)
def test_gradcheck_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_central_difference_probe_matches_pytorch_autograd_and_leaves_the_network_alone():
    net = init_mlp([3, 5, 1], seed=4)
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(7, 3, generator=g, dtype=F64), torch.randn(7, 1, generator=g, dtype=F64)
    before = net.flat().clone()
    d = central_difference_probe(net, x, t)
    theta = net.flat().clone().requires_grad_()
    (exact,) = torch.autograd.grad(mse(mlp_forward(net.with_flat(theta), x)[0], t)[0], theta)
    probed = torch.tensor([d(k) for k in range(net.n_params)], dtype=F64)
    torch.testing.assert_close(probed, exact, rtol=1e-6, atol=1e-9)
    assert torch.equal(net.flat(), before)


def test_gradient_costs_reports_every_method_and_reverse_mode_is_cheaper_than_finite_differences():
    costs = gradient_costs(widths=(2, 8), repeats=3, max_coords=None)
    assert costs.n_params == [21, 81]
    for name in ("forward_s", "reverse_s", "forward_mode_s", "finite_diff_s"):
        assert all(t > 0 for t in getattr(costs, name))
    # 162 forward passes against one forward and one backward: not a timing claim, a factor of ~50
    assert costs.finite_diff_s[1] > costs.reverse_s[1]
    with pytest.raises(ValueError, match="widths"):
        gradient_costs(widths=(0,))
