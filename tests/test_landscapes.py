"""losslab.landscapes: analytic derivatives against autograd, critical points, scans, curvature."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.func import jacrev

from losslab import landscapes as L

NAMES = sorted(L.TEST_FUNCTIONS)
F64 = torch.float64


def random_points(fn, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    (x0, x1), (y0, y1) = fn.domain
    u = torch.rand(n, 2, generator=g, dtype=F64)
    return torch.stack([x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]], -1)  # (n, 2)


def all_test_functions():
    return [L.get(n) for n in NAMES] + [L.quadratic(1000.0, angle=0.7), L.rosenbrock(2.0, 10.0), L.rastrigin(3.0)]


# ---- analytic derivatives versus autograd ----------------------------------------

@pytest.mark.parametrize("fn", all_test_functions(), ids=lambda f: repr(f))
def test_gradient_and_hessian_match_autograd_at_random_and_critical_points(fn):
    pts = random_points(fn)
    crit = torch.tensor([p for p, _ in fn.critical_points], dtype=F64).reshape(-1, 2)
    extreme = torch.tensor([[0.0, 0.0], [1e-12, -1e-12], [50.0, -50.0]], dtype=F64)  # zeros, tiny, large
    pts = torch.cat([pts, crit, extreme])
    g_auto = torch.func.vmap(torch.func.grad(fn.f))(pts)  # (M, 2)
    # reverse-over-reverse: torch.func.hessian's forward mode loads torch.jit.script (deprecated) on import
    h_auto = torch.func.vmap(jacrev(jacrev(fn.f)))(pts)  # (M, 2, 2)
    assert torch.allclose(fn.grad(pts), g_auto, rtol=1e-10, atol=1e-9)
    assert torch.allclose(fn.hessian(pts), h_auto, rtol=1e-10, atol=1e-9)
    # and against torch.autograd.grad's double backward, point by point
    p = pts[3].clone().requires_grad_()
    (gx,) = torch.autograd.grad(fn.f(p), p, create_graph=True)
    rows = torch.stack([torch.autograd.grad(gx[i], p, retain_graph=True)[0] for i in range(2)])
    assert torch.allclose(rows, fn.hessian(pts[3]), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_functions_keep_batch_shape_dtype_and_accept_any_leading_dims(name):
    fn = L.get(name)
    for dtype in (torch.float32, F64):
        p = random_points(fn, 12).to(dtype).reshape(3, 2, 2, 2)
        assert fn.f(p).shape == (3, 2, 2) and fn.f(p).dtype == dtype
        assert fn.grad(p).shape == (3, 2, 2, 2)
        assert fn.hessian(p).shape == (3, 2, 2, 2, 2)
    single = torch.tensor([0.3, -0.2], dtype=F64)
    assert fn.f(single).shape == () and fn.grad(single).shape == (2,) and fn.hessian(single).shape == (2, 2)
    # batched values equal one-by-one values
    pts = random_points(fn, 5)
    assert torch.allclose(fn.f(pts), torch.stack([fn.f(q) for q in pts]), rtol=1e-14)


def test_known_values():
    assert L.get("himmelblau").f(torch.tensor([3.0, 2.0], dtype=F64)) == 0
    assert L.get("rosenbrock").f(torch.tensor([1.0, 1.0], dtype=F64)) == 0
    assert L.get("beale").f(torch.tensor([3.0, 0.5], dtype=F64)) == 0
    assert L.get("rastrigin").f(torch.zeros(2, dtype=F64)) == 0
    assert L.get("six_hump_camel").f_min == pytest.approx(-1.0316284534898774, abs=1e-12)
    q = L.quadratic(25.0)
    assert torch.allclose(torch.linalg.eigvalsh(q.hessian(torch.zeros(2, dtype=F64))), torch.tensor([1.0, 25.0], dtype=F64))
    r = L.quadratic(25.0, angle=0.9)  # rotation keeps the spectrum
    assert torch.allclose(torch.linalg.eigvalsh(r.hessian(torch.ones(2, dtype=F64))), torch.tensor([1.0, 25.0], dtype=F64))
    assert L.get("monkey_saddle").f_min is None


# ---- critical points ------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_known_critical_points_have_zero_gradient_and_the_stated_kind(name):
    fn = L.get(name)
    assert fn.critical_points, f"{name} lists no critical points"
    for (x, y), kind in fn.critical_points:
        p = torch.tensor([x, y], dtype=F64)
        assert float(fn.grad(p).norm()) < 1e-9 * max(1.0, abs(float(fn.f(p)))), f"{name} at {(x, y)}"
        assert L.classify(fn.hessian(p)) == kind, f"{name} at {(x, y)}"
    for m in fn.minima:  # global minima: positive-definite Hessian (or flagged degenerate, never)
        assert (torch.linalg.eigvalsh(fn.hessian(torch.tensor(m, dtype=F64))) > 0).all()
    if fn.minima:
        pts = random_points(fn, 400, seed=1)
        assert (fn.f(pts) >= fn.f_min - 1e-12).all(), "a random point beats the stated global minimum"


def test_newton_finds_every_critical_point_of_himmelblau():
    fn = L.get("himmelblau")
    xs = torch.linspace(-5, 5, 21, dtype=F64)
    pts, kinds = L.find_critical_points(fn, torch.cartesian_prod(xs, xs))
    assert sorted(kinds) == sorted(k for _, k in fn.critical_points)
    known = torch.tensor([p for p, _ in fn.critical_points], dtype=F64)
    assert torch.cdist(pts, known).min(1).values.max() < 1e-8


@pytest.mark.parametrize(
    "h, kind",
    [
        ([[2.0, 0.0], [0.0, 3.0]], "minimum"),
        ([[-2.0, 0.0], [0.0, -1e-3]], "maximum"),
        ([[1.0, 2.0], [2.0, 1.0]], "saddle"),  # positive diagonal, eigenvalues 3 and -1
        ([[0.0, 0.0], [0.0, 0.0]], "degenerate"),
        ([[1.0, 0.0], [0.0, 0.0]], "degenerate"),
        ([[1e12, 0.0], [0.0, 1e-3]], "degenerate"),  # relatively zero next to 1e12
        ([[1e-6, 0.0], [0.0, 2e-6]], "minimum"),  # tiny but not relatively zero
    ],
)
def test_classify(h, kind):
    assert L.classify(torch.tensor(h, dtype=F64)) == kind


def test_classify_batch_and_saddles_of_the_test_functions():
    saddles = [(n, p) for n in NAMES for p, k in L.get(n).critical_points if k == "saddle"]
    assert len(saddles) >= 10
    H = torch.stack([L.get(n).hessian(torch.tensor(p, dtype=F64)) for n, p in saddles])
    assert L.classify(H) == ["saddle"] * len(saddles)
    assert float(L.hessian_index(torch.diag(torch.tensor([1.0, -1.0, -2.0, 3.0], dtype=F64)))) == 0.5


def test_random_symmetric_matrices_are_symmetric_with_a_semicircle_spectrum():
    m = L.random_symmetric_matrices(200, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, m.transpose(-1, -2))
    eig = torch.linalg.eigvalsh(m)
    assert 1.8 < float(eig.max()) < 2.2 and -2.2 < float(eig.min()) < -1.8


# ---- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad, err, match",
    [
        ([1.0, 2.0], TypeError, "torch.Tensor"),
        (torch.tensor([1, 2]), TypeError, "floating"),
        (torch.zeros(4, 3), ValueError, r"\[\.\.\., 2\]"),
        (torch.tensor([float("nan"), 0.0]), ValueError, "finite"),
        (torch.tensor([float("inf"), 0.0]), ValueError, "finite"),
    ],
)
def test_bad_points_are_rejected(bad, err, match):
    for name in NAMES:
        fn = L.get(name)
        for method in (fn.f, fn.grad, fn.hessian):
            with pytest.raises(err, match=match):
                method(bad)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="kappa"):
        L.quadratic(0.5)
    with pytest.raises(KeyError, match="expected one of"):
        L.get("rosenbrok")
    with pytest.raises(ValueError, match="symmetric"):
        L.classify(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="n, n"):
        L.classify(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="domain"):
        L.grid_points(((1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="n: expected"):
        L.grid_points(((0.0, 1.0), (0.0, 1.0)), 1)


def test_grid_layout_matches_contour_convention():
    fn = L.get("rosenbrock")
    xs, ys, z = L.evaluate_grid(fn, n=7)
    i, j = 2, 5
    assert z[i, j] == fn.f(torch.stack([xs[j], ys[i]]))


# ---- networks ---------------------------------------------------------------------------

def tiny_problem(dtype=F64, n=40, skip=False, sizes=(5, 6, 6, 3), activation="tanh"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, sizes[0], generator=g, dtype=dtype)
    y = torch.randint(0, sizes[-1], (n,), generator=g)
    return L.MLP(sizes, skip=skip, activation=activation, seed=1, dtype=dtype), x, y


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("first_layer_as_product", [False, True])  # the CPU's and the GPU's way to the first layer
def test_the_three_scan_methods_agree(skip, activation, first_layer_as_product, monkeypatch):
    monkeypatch.setattr(L, "_FIRST_LAYER_AS_PRODUCT", first_layer_as_product)
    m, x, y = tiny_problem(skip=skip, activation=activation)
    d1 = L.random_direction(m, seed=1, normalization="none")
    d2 = L.random_direction(m, seed=2, normalization="none")
    a = torch.linspace(-1, 1, 5, dtype=F64)
    b = torch.linspace(-0.5, 1, 4, dtype=F64)
    loop = L.scan_2d(m, x, y, d1, d2, a, b, method="loop")
    assert loop.shape == (4, 5)
    assert torch.allclose(L.scan_2d(m, x, y, d1, d2, a, b, method="vmap", chunk_size=3), loop, rtol=1e-12, atol=1e-12)
    assert torch.allclose(L.scan_2d(m, x, y, d1, d2, a, b, method="affine", chunk_size=7), loop, rtol=1e-12, atol=1e-12)
    # the loop itself against a plain model call with the weights moved by hand
    with torch.no_grad():
        p = {k: v + float(a[1]) * d1[k] + float(b[2]) * d2[k] for k, v in m.named_parameters()}
        ref = torch.nn.functional.cross_entropy(torch.func.functional_call(m, p, (x,)), y)
    assert torch.allclose(loop[2, 1], ref, rtol=1e-14)


def test_scan_in_float32_agrees_with_the_loop_to_1e_5():
    m, x, y = tiny_problem(torch.float32, n=200, sizes=(64, 32, 10), activation="relu")
    d1, d2 = L.random_direction(m, seed=3), L.random_direction(m, seed=4)
    c = torch.linspace(-1, 1, 7)
    fast = L.scan_2d(m, x, y, d1, d2, c, c)
    loop = L.scan_2d(m, x, y, d1, d2, c, c, method="loop")
    assert (fast - loop).abs().max() < 1e-5


def test_scan_1d_interpolates_between_two_parameter_sets():
    m, x, y = tiny_problem()
    start = {k: v.detach().clone() for k, v in m.named_parameters()}
    end = {k: v * 0.5 + 0.1 for k, v in start.items()}
    prof = L.scan_1d(m, x, y, L.difference(end, start), torch.tensor([0.0, 1.0], dtype=F64), params=start)
    assert torch.allclose(prof, torch.stack([L.loss_at(m, x, y, start), L.loss_at(m, x, y, end)]), rtol=1e-13)


def test_filter_normalization():
    m, _, _ = tiny_problem()
    params = dict(m.named_parameters())
    d = L.random_direction(m, normalization="filter", seed=0)
    for k, w in params.items():
        if w.ndim == 1:
            assert torch.equal(d[k], torch.zeros_like(w))
        else:
            assert torch.allclose(d[k].norm(dim=1), w.detach().norm(dim=1), rtol=1e-12)
    raw = L.random_direction(m, normalization="none", seed=0)
    for k, w in params.items():  # same raw direction, each row only rescaled by a positive number
        if w.ndim > 1:
            cos = torch.nn.functional.cosine_similarity(d[k], raw[k], dim=1)
            assert torch.allclose(cos, torch.ones_like(cos), atol=1e-12)
    with pytest.raises(ValueError, match="normalization"):
        L.random_direction(m, normalization="batch")


def test_permuting_hidden_units_keeps_the_loss():
    m, x, y = tiny_problem(sizes=(5, 6, 6, 3))
    perm = torch.tensor([3, 1, 0, 5, 2, 4])
    for layer in (0, 1):
        p = L.permute_hidden(m, layer, perm)
        assert torch.allclose(L.loss_at(m, x, y, p), L.loss_at(m, x, y), rtol=1e-13)
        assert not torch.equal(p[f"layers.{layer}.weight"], m.layers[layer].weight)
    with pytest.raises(ValueError, match="perm"):
        L.permute_hidden(m, 0, torch.tensor([0, 0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="layer"):
        L.permute_hidden(m, 2, perm)


def test_hvp_lanczos_and_hessian_against_autograd():
    m, x, y = tiny_problem()
    names = [k for k, _ in m.named_parameters()]
    shapes = [v.shape for _, v in m.named_parameters()]
    theta = torch.cat([v.detach().reshape(-1) for _, v in m.named_parameters()])

    def loss(t):
        parts = torch.split(t, [math.prod(s) for s in shapes])
        p = {k: q.reshape(s) for k, q, s in zip(names, parts, shapes)}
        return torch.nn.functional.cross_entropy(torch.func.functional_call(m, p, (x,)), y)

    H_ref = torch.autograd.functional.hessian(loss, theta)  # (P, P)
    assert torch.allclose(L.hessian_matrix(m, x, y), H_ref, rtol=1e-10, atol=1e-12)
    v = torch.randn(3, theta.numel(), generator=torch.Generator().manual_seed(0), dtype=F64)
    assert torch.allclose(L.hvp(m, x, y, v), v @ H_ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(L.hvp(m, x, y, v[0]), H_ref @ v[0], rtol=1e-10, atol=1e-12)
    top = L.top_hessian_eigenvalues(m, x, y, k=3, iters=60)
    exact = torch.linalg.eigvalsh(H_ref).flip(0)[:3]
    assert torch.allclose(top, exact, rtol=1e-8, atol=1e-10)


def test_training_lowers_the_loss_and_network_inputs_are_checked():
    from losslab import data

    blobs = data.blobs(20, 3, seed=0)
    m = L.MLP((2, 8, 3), seed=0, dtype=F64)
    x, y = blobs.x, blobs.y
    before = float(L.loss_at(m, x, y))
    losses = L.train_classifier(m, x, y, steps=60, lr=0.1, batch_size=16)
    assert losses.shape == (60,) and float(L.loss_at(m, x, y)) < 0.5 * before
    with pytest.raises(ValueError, match="y: expected int64"):
        L.loss_at(m, x, y.float())
    with pytest.raises(ValueError, match="lr"):
        L.train_classifier(m, x, y, lr=-0.1)
    with pytest.raises(ValueError, match="coeffs"):
        L.scan_losses(m, x, y, [L.random_direction(m)], torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="method"):
        L.scan_1d(m, x, y, L.random_direction(m), torch.zeros(2, dtype=F64), method="fast")
    with pytest.raises(ValueError, match="skip"):
        L.MLP((4, 5, 6, 2), skip=True)


# ---- weight decay, true minima and the edge of stability (Chapter 2) -----------------------

def penalized_by_hand(m, x, y, params, wd):
    """CE + wd/2 ||theta||^2 written out with torch alone (the reference for loss_at, scans, gradients)."""
    logits = torch.func.functional_call(m, params, (x,))
    return torch.nn.functional.cross_entropy(logits, y) + 0.5 * wd * sum((v**2).sum() for v in params.values())


@given(depth=st.integers(1, 4), width=st.integers(1, 7), classes=st.integers(2, 6), skip=st.booleans(),
       activation=st.sampled_from(["relu", "tanh"]), k=st.integers(1, 3), points=st.integers(1, 9),
       chunk=st.integers(1, 10), as_product=st.booleans(), dtype=st.sampled_from([F64, torch.float32]),
       seed=st.integers(0, 2**16))
def test_the_affine_scan_is_the_loop_for_any_mlp(depth, width, classes, skip, activation, k, points, chunk,
                                                 as_product, dtype, seed):
    """Any depth (one layer: the logits straight from the first layer, no activation), width, number of
    classes and directions, chunk size and dtype: the affine path gives the per-point loop's losses
    (float64 to 1e-12, float32 to 1e-5 relative)."""
    g = torch.Generator().manual_seed(seed)
    sizes = (3,) + (width,) * (depth - 1) + (classes,)
    m = L.MLP(sizes, skip=skip and depth > 2, activation=activation, seed=seed, dtype=dtype)
    x = torch.randn(11, 3, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (11,), generator=g)
    dirs = [L.random_direction(m, seed=seed + j + 1) for j in range(k)]
    coeffs = (torch.rand(points, k, generator=g, dtype=F64) * 4 - 2).to(dtype)
    old = L._FIRST_LAYER_AS_PRODUCT
    L._FIRST_LAYER_AS_PRODUCT = as_product
    try:
        got = L.scan_losses(m, x, y, dirs, coeffs, method="affine", chunk_size=chunk)
    finally:
        L._FIRST_LAYER_AS_PRODUCT = old
    loop = L.scan_losses(m, x, y, dirs, coeffs, method="loop")
    tol = 1e-12 if dtype == F64 else 1e-5
    assert torch.allclose(got, loop, rtol=tol, atol=tol), (sizes, (got - loop).abs().max())


@pytest.mark.parametrize("skip", [False, True])
def test_weight_decay_adds_the_l2_penalty_in_loss_at_and_in_every_scan_method(skip):
    m, x, y = tiny_problem(skip=skip)
    wd = 0.37
    own = {k: v.detach() for k, v in m.named_parameters()}
    assert torch.allclose(L.loss_at(m, x, y, weight_decay=wd), penalized_by_hand(m, x, y, own, wd), rtol=1e-14)
    assert torch.equal(L.loss_at(m, x, y, weight_decay=0.0), L.loss_at(m, x, y))
    d1 = L.random_direction(m, seed=1, normalization="none")
    d2 = L.random_direction(m, seed=2, normalization="none")
    a = torch.tensor([-1.5, 0.0, 0.7], dtype=F64)
    b = torch.tensor([-0.3, 2.0], dtype=F64)
    expected = torch.stack([torch.stack([penalized_by_hand(m, x, y, {k: own[k] + ai * d1[k] + bi * d2[k] for k in own}, wd)
                                         for ai in a]) for bi in b])  # (B, A)
    for method in ("loop", "vmap", "affine"):
        got = L.scan_2d(m, x, y, d1, d2, a, b, method=method, weight_decay=wd)
        assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12), method
    with pytest.raises(ValueError, match="weight_decay"):
        L.scan_2d(m, x, y, d1, d2, a, b, weight_decay=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        L.loss_at(m, x, y, weight_decay=float("nan"))


def test_train_classifier_with_weight_decay_takes_the_textbook_step():
    m, x, y = tiny_problem()
    wd, lr = 0.1, 0.05
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(m(x), y), list(m.parameters()))
    L.train_classifier(m, x, y, steps=1, lr=lr, batch_size=len(x), momentum=0.0, weight_decay=wd)
    for (k, v), g in zip(m.named_parameters(), grads):
        assert torch.allclose(v.detach(), before[k] - lr * (g + wd * before[k]), rtol=1e-12, atol=1e-14), k
    with pytest.raises(ValueError, match="weight_decay"):
        L.train_classifier(m, x, y, steps=1, weight_decay=-0.1)


def test_gradient_norm_matches_autograd_of_the_penalized_loss():
    m, x, y = tiny_problem()
    for wd in (0.0, 0.25):
        params = {k: v.detach().clone().requires_grad_() for k, v in m.named_parameters()}
        grads = torch.autograd.grad(penalized_by_hand(m, x, y, params, wd), list(params.values()))
        ref = torch.sqrt(sum((g**2).sum() for g in grads))
        assert torch.allclose(L.gradient_norm(m, x, y, weight_decay=wd), ref, rtol=1e-12)


def test_polish_minimum_finds_the_minimum_of_a_strictly_convex_problem():
    """A linear softmax classifier with weight decay is strictly convex: compare with SciPy's L-BFGS-B."""
    scipy_opt = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 4, generator=g, dtype=F64)
    y = torch.randint(0, 3, (60,), generator=g)
    wd = 0.05
    m = L.MLP((4, 3), seed=0, dtype=F64)  # one layer: logits = W x + b
    names = [k for k, _ in m.named_parameters()]
    shapes = [v.shape for _, v in m.named_parameters()]

    def fun(flat):
        t = torch.tensor(flat, dtype=F64, requires_grad=True)
        parts = torch.split(t, [math.prod(s) for s in shapes])
        value = penalized_by_hand(m, x, y, {k: p.reshape(s) for k, p, s in zip(names, parts, shapes)}, wd)
        (grad,) = torch.autograd.grad(value, t)
        return float(value.detach()), grad.numpy()

    start = torch.cat([v.detach().reshape(-1) for v in m.parameters()]).numpy()
    ref = scipy_opt.minimize(fun, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 2000})
    norms = L.polish_minimum(m, x, y, weight_decay=wd, max_iter=300, gtol=1e-9)
    assert norms[0] == pytest.approx(float(L.gradient_norm(m.__class__((4, 3), seed=0, dtype=F64), x, y, weight_decay=wd)))
    assert float(norms[-1]) <= 1e-9 and float(norms[-1]) == pytest.approx(float(L.gradient_norm(m, x, y, weight_decay=wd)))
    found = torch.cat([v.detach().reshape(-1) for v in m.parameters()])
    assert torch.allclose(found, torch.from_numpy(ref.x), atol=1e-6)
    assert float(L.loss_at(m, x, y, weight_decay=wd)) <= ref.fun + 1e-12


def test_polish_minimum_checks_its_arguments():
    m, x, y = tiny_problem()
    with pytest.raises(ValueError, match="weight_decay"):
        L.polish_minimum(m, x, y, weight_decay=0.0)
    with pytest.raises(ValueError, match="gtol"):
        L.polish_minimum(m, x, y, weight_decay=0.1, gtol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        L.polish_minimum(m, x, y, weight_decay=0.1, max_iter=0)


def flat_loss_by_hand(m, x, y, objective):
    names = [k for k, _ in m.named_parameters()]
    shapes = [v.shape for _, v in m.named_parameters()]

    def loss(t):
        parts = torch.split(t, [math.prod(s) for s in shapes])
        out = torch.func.functional_call(m, {k: p.reshape(s) for k, p, s in zip(names, parts, shapes)}, (x,))
        return ((out - y) ** 2).mean() if objective == "mse" else torch.nn.functional.cross_entropy(out, y)

    return loss


@pytest.mark.parametrize("objective", ["mse", "cross_entropy"])
def test_gradient_descent_sharpness_follows_plain_gd_and_measures_the_top_eigenvalue(objective):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, generator=g, dtype=F64)
    if objective == "mse":
        y = torch.sin(x[:, :1] * 2) + 0.1 * torch.randn(30, 1, generator=g, dtype=F64)
        m = L.MLP((2, 6, 1), activation="tanh", seed=0, dtype=F64)
    else:
        y = torch.randint(0, 3, (30,), generator=g)
        m = L.MLP((2, 6, 3), activation="tanh", seed=0, dtype=F64)
    loss = flat_loss_by_hand(m, x, y, objective)
    theta = torch.cat([v.detach().reshape(-1) for v in m.parameters()])
    lr, steps = 0.2, 40
    run = L.gradient_descent_sharpness(m, x, y, lr=lr, steps=steps, every=10, objective=objective, power_iters=200)
    values = []
    for _ in range(steps):  # the reference: plain gradient descent by hand
        t = theta.clone().requires_grad_()
        value = loss(t)
        (grad,) = torch.autograd.grad(value, t)
        values.append(float(value.detach()))
        theta = theta - lr * grad
    values.append(float(loss(theta)))
    assert run.loss.dtype == F64 and torch.allclose(run.loss, torch.tensor(values, dtype=F64), rtol=1e-10)
    assert run.at.tolist() == [0, 10, 20, 30, 40] and run.sharpness.shape == (5,)
    assert torch.allclose(torch.cat([v.detach().reshape(-1) for v in m.parameters()]), theta, rtol=1e-10, atol=1e-12)
    exact_top = float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta))[-1])
    assert float(run.sharpness[-1]) == pytest.approx(exact_top, rel=1e-4)  # power iteration: converged, not exact
    assert "SharpnessRun(lr=0.2" in repr(run)


def test_gradient_descent_sharpness_checks_its_arguments():
    x = torch.randn(10, 2, dtype=F64)
    m = L.MLP((2, 4, 1), seed=0, dtype=F64)
    with pytest.raises(ValueError, match="objective"):
        L.gradient_descent_sharpness(m, x, torch.zeros(10, 1, dtype=F64), lr=0.1, steps=2, objective="l1")
    with pytest.raises(ValueError, match="lr"):
        L.gradient_descent_sharpness(m, x, torch.zeros(10, 1, dtype=F64), lr=-0.1, steps=2)
    with pytest.raises(ValueError, match="y: expected floating targets"):
        L.gradient_descent_sharpness(m, x, torch.zeros(10, dtype=torch.int64), lr=0.1, steps=2)
    with pytest.raises(ValueError, match="y: expected the model's output shape"):
        L.gradient_descent_sharpness(m, x, torch.zeros(10, 3, dtype=F64), lr=0.1, steps=2)
    with pytest.raises(ValueError, match="every"):
        L.gradient_descent_sharpness(m, x, torch.zeros(10, 1, dtype=F64), lr=0.1, steps=2, every=0)
