"""Losses at the extremes (against PyTorch, or mpmath where PyTorch is off) and the losses added for issue 18."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
import torch.nn.functional as F

from losslab import losses as L

mpmath.mp.dps = 60


def mp_log_softmax(row):
    """log softmax of a list of floats, in 60-digit arithmetic."""
    xs = [mpmath.mpf(v) for v in row]
    m = max(xs)
    log_s = mpmath.log(sum(mpmath.exp(x - m) for x in xs))  # x - m is exact in 60 digits, even next to 1e300
    return [(x - m) - log_s for x in xs]


def test_cross_entropy_of_huge_tied_logits_is_log_2():
    z = torch.tensor([1e100, -1e100, 1e100], dtype=torch.float64)
    assert float(L.cross_entropy(z, torch.tensor(0))) == pytest.approx(math.log(2), rel=1e-15)
    assert float(L.cross_entropy(z, torch.tensor(1))) == pytest.approx(2e100, rel=1e-15)


@pytest.mark.parametrize("dtype, offset, tol", [(torch.float64, 1e8, 1e-14), (torch.float64, 1e15, 1e-14),
                                                (torch.float64, 1e300, 1e-14), (torch.float32, 1e4, 5e-6),
                                                (torch.float32, 1e30, 5e-6)])
def test_log_softmax_and_cross_entropy_keep_precision_next_to_large_logits(dtype, offset, tol):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(8, 5, generator=g, dtype=torch.float64)  # near-tied: differences of order 1
    z = (base * max(1.0, offset * 1e-15) + offset).to(dtype)  # differences of order 1, or of one ulp of the offset
    ours = L.log_softmax(z, dim=1).double()
    ref = torch.tensor([[float(v) for v in mp_log_softmax(row)] for row in z.double().tolist()], dtype=torch.float64)
    assert torch.allclose(ours, ref, rtol=tol, atol=0), (ours - ref).abs().max()
    assert torch.allclose(F.log_softmax(z, 1).double(), ref, rtol=tol, atol=0)  # PyTorch agrees with the reference
    y = torch.arange(8) % 5
    ce = L.cross_entropy(z, y).double()
    ce_ref = -sum(ref[i, int(y[i])] for i in range(8)) / 8
    assert float(ce) == pytest.approx(float(ce_ref), rel=tol)
    # probability targets and the gradient, against PyTorch
    q = torch.softmax(torch.randn(8, 5, generator=g, dtype=torch.float64), 1).to(dtype)
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    L.cross_entropy(a, q).backward()
    F.cross_entropy(b, q).backward()
    assert torch.allclose(a.grad, b.grad, rtol=tol * 10, atol=1e-7 if dtype == torch.float32 else 1e-16)


def test_token_cross_entropy_and_info_nce_use_the_precise_log_softmax():
    z = torch.tensor([[[1e100, 1e100, -1e100]]], dtype=torch.float64)
    assert float(L.token_cross_entropy(z, torch.tensor([[0]]))) == pytest.approx(math.log(2), rel=1e-15)
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    # two identical keys: each query cannot tell its own key from the other one, log 2 each
    assert float(L.info_nce(q, q.clone(), temperature=1e-10)) == pytest.approx(math.log(2), rel=1e-12)


def test_logsumexp_gradient_at_ties_of_huge_logits_against_mpmath():
    z = torch.tensor([1e30, 1e30, -1e30, 1e30 - 1e15], dtype=torch.float64, requires_grad=True)
    L.logsumexp(z).backward()
    xs = [mpmath.mpf(v) for v in z.detach().tolist()]
    m = max(xs)
    s = sum(mpmath.exp(x - m) for x in xs)
    ref = torch.tensor([float(mpmath.exp(x - m) / s) for x in xs], dtype=torch.float64)
    assert torch.allclose(z.grad, ref, rtol=1e-15, atol=0)
    # the softmax gradient of the same input sums to 1 and is exactly [1/2, 1/2, 0, 0]
    assert z.grad.tolist() == [0.5, 0.5, 0.0, 0.0]


def test_bce_gradient_matches_torch_at_zero_one_and_tiny_probabilities():
    p = torch.tensor([0.0, 1.0, 1e-300, 1 - 1e-16, 0.3, 0.0, 1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.7, 0.0, 1.0], dtype=torch.float64)
    a, b = p.clone().requires_grad_(True), p.clone().requires_grad_(True)
    la, lb = L.binary_cross_entropy(a, y, reduction="sum"), F.binary_cross_entropy(b, y, reduction="sum")
    la.backward(), lb.backward()
    assert float(la.detach()) == pytest.approx(float(lb.detach()), rel=1e-15)
    assert torch.isfinite(a.grad).all()
    assert torch.equal(a.grad, b.grad)
    assert float(a.grad[2]) < -1e11  # a confidently wrong probability is pushed hard, not left alone


def test_bce_target_gradient_matches_torch():
    p = torch.tensor([0.2, 0.9, 0.5], dtype=torch.float64)
    y = torch.tensor([0.5, 0.1, 0.3], dtype=torch.float64)
    a, b = y.clone().requires_grad_(True), y.clone().requires_grad_(True)
    L.binary_cross_entropy(p, a, reduction="sum").backward()
    F.binary_cross_entropy(p, b, reduction="sum").backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-14)


def test_entropy_value_and_gradient_against_mpmath_including_one_hot_rows():
    rows = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1e-300, 1 - 1e-300, 0.0], [0.2, 0.3, 0.5]]
    p = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    h = L.entropy(p)
    h.sum().backward()
    tiny = mpmath.mpf(torch.finfo(torch.float64).tiny)
    for i, row in enumerate(rows):
        ps = [mpmath.mpf(v) for v in row]
        h_ref = -sum(v * mpmath.log(v) for v in ps if v > 0)
        assert float(h[i].detach()) == pytest.approx(float(h_ref), rel=1e-14, abs=1e-300)
        # d/dp_i of -sum p log p is -(log p_i + 1); at p_i = 0 (infinite) the documented choice -log(tiny)
        g_ref = [-(mpmath.log(v) + 1) if v >= tiny else -mpmath.log(tiny) for v in ps]
        assert p.grad[i].tolist() == pytest.approx([float(v) for v in g_ref], rel=1e-14)
    assert torch.isfinite(p.grad).all()
    # PyTorch's xlogy gives NaN at p = 0: why this is tested against mpmath instead
    q = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    (-torch.special.xlogy(q, q).sum()).backward()
    assert torch.isnan(q.grad).any()


def test_nll_loss_and_kl_div_refuse_positive_log_probabilities():
    z = torch.tensor([[2.0, -1.0, 3.0]])
    with pytest.raises(ValueError, match="input: expected log-probabilities"):
        L.nll_loss(z, torch.tensor([2]))
    with pytest.raises(ValueError, match="input: expected log-probabilities"):
        L.kl_div(torch.tensor([[0.2, 0.8]]), torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="target: expected log-probabilities"):
        L.kl_div(torch.tensor([[-1.0, -0.5]]), torch.tensor([[0.5, 0.5]]), log_target=True)
    # log-probabilities, including -inf, are fine
    logp = torch.log(torch.tensor([[0.0, 0.25, 0.75]]))
    assert torch.allclose(L.nll_loss(logp, torch.tensor([2])), F.nll_loss(logp, torch.tensor([2])))


# --- the losses added for issue 18, against torch.nn.functional -------------------------

def rnd(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def same(ours_fn, ref_fn, *tensors, rtol=1e-12, atol=1e-14):
    a = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    b = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    oa, ob = ours_fn(*a), ref_fn(*b)
    assert torch.allclose(oa, ob, rtol=rtol, atol=atol), (oa, ob)
    oa.sum().backward(), ob.sum().backward()
    for u, v in zip(a, b):
        if u.grad is not None or v.grad is not None:
            assert torch.allclose(u.grad, v.grad, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("var_shape", ["same", "last1", "dropped"])
def test_gaussian_nll_loss_matches_torch(reduction, full, var_shape):
    x, y = rnd(6, 3, seed=1), rnd(6, 3, seed=2)
    var = rnd(6, 3, seed=3).abs() + 1e-3
    var[0, 0] = 1e-9  # clamped at eps for the value, gradient passes
    var = {"same": var, "last1": var[:, :1].contiguous(), "dropped": var[:, 0].contiguous()}[var_shape]
    same(lambda a, b, v: L.gaussian_nll_loss(a, b, v, full=full, reduction=reduction),
         lambda a, b, v: F.gaussian_nll_loss(a, b, v, full=full, reduction=reduction), x, y, var)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("log_input, full", [(True, False), (True, True), (False, False), (False, True)])
def test_poisson_nll_loss_matches_torch(reduction, log_input, full):
    x = rnd(5, 4, seed=4)
    if not log_input:
        x = x.abs() + 0.1
    y = torch.poisson(torch.full((5, 4), 3.0, dtype=torch.float64), generator=torch.Generator().manual_seed(5))
    same(lambda a, b: L.poisson_nll_loss(a, b, log_input=log_input, full=full, reduction=reduction),
         lambda a, b: F.poisson_nll_loss(a, b, log_input=log_input, full=full, reduction=reduction), x, y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("p, margin, weighted", [(1, 1.0, False), (2, 0.5, True), (1, 2.0, True)])
def test_multi_margin_loss_matches_torch(reduction, p, margin, weighted):
    x, y = rnd(7, 4, seed=6), torch.tensor([0, 3, 1, 2, 2, 0, 1])
    w = rnd(4, seed=7).abs() if weighted else None
    same(lambda a: L.multi_margin_loss(a, y, p=p, margin=margin, weight=w, reduction=reduction),
         lambda a: F.multi_margin_loss(a, y, p=p, margin=margin, weight=w, reduction=reduction), x)
    same(lambda a: L.multi_margin_loss(a, y[0], p=p, margin=margin, reduction=reduction),
         lambda a: F.multi_margin_loss(a, y[0], p=p, margin=margin, reduction=reduction), x[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_soft_margin_and_multilabel_soft_margin_match_torch(reduction):
    x = rnd(6, 3, seed=8, scale=30.0)  # large logits: softplus stays finite
    s = torch.where(rnd(6, 3, seed=9) > 0, 1.0, -1.0).double()
    same(lambda a: L.soft_margin_loss(a, s, reduction=reduction), lambda a: F.soft_margin_loss(a, s, reduction=reduction), x)
    t = (s > 0).double()
    w = rnd(3, seed=10).abs()
    same(lambda a: L.multilabel_soft_margin_loss(a, t, weight=w, reduction=reduction),
         lambda a: F.multilabel_soft_margin_loss(a, t, weight=w, reduction=reduction), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("cosine", [False, True])
def test_triplet_margin_with_distance_loss_matches_torch(reduction, swap, cosine):
    a, p, n = rnd(5, 4, seed=11), rnd(5, 4, seed=12), rnd(5, 4, seed=13)
    dist = (lambda u, v: 1 - F.cosine_similarity(u, v)) if cosine else None
    same(lambda *t: L.triplet_margin_with_distance_loss(*t, distance_function=dist, margin=0.7, swap=swap, reduction=reduction),
         lambda *t: F.triplet_margin_with_distance_loss(*t, distance_function=dist, margin=0.7, swap=swap, reduction=reduction),
         a, p, n)


@pytest.mark.parametrize("call, error, match", [
    (lambda: L.gaussian_nll_loss(rnd(3, 2), rnd(3, 2), -rnd(3, 2).abs()), ValueError, "var"),
    (lambda: L.gaussian_nll_loss(rnd(3, 2), rnd(3, 2), rnd(2, 3).abs()), ValueError, "var"),
    (lambda: L.gaussian_nll_loss(rnd(3, 2), rnd(3, 2), 1.0, eps=0.0), ValueError, "eps"),
    (lambda: L.poisson_nll_loss(rnd(3), -torch.ones(3, dtype=torch.float64)), ValueError, "target"),
    (lambda: L.poisson_nll_loss(-torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), log_input=False),
     ValueError, "input"),
    (lambda: L.multi_margin_loss(rnd(3, 2), torch.tensor([0, 2, 1])), ValueError, "target"),
    (lambda: L.multi_margin_loss(rnd(3, 2), torch.tensor([0, 1, 1]), p=3), ValueError, "p"),
    (lambda: L.multi_margin_loss(rnd(3, 2), torch.tensor([0.0, 1.0, 1.0])), TypeError, "target"),
    (lambda: L.soft_margin_loss(rnd(3), torch.zeros(3, dtype=torch.float64)), ValueError, "target"),
    (lambda: L.multilabel_soft_margin_loss(rnd(3, 2), 2 * torch.ones(3, 2, dtype=torch.float64)), ValueError, "target"),
    (lambda: L.triplet_margin_with_distance_loss(rnd(3, 2), rnd(3, 2), rnd(3, 2), distance_function="l2"), TypeError,
     "distance_function"),
    (lambda: L.triplet_margin_with_distance_loss(rnd(3, 2), rnd(3, 2), rnd(3, 2), margin=0.0), ValueError, "margin"),
    (lambda: L.triplet_margin_with_distance_loss(rnd(3, 2), rnd(3, 2), rnd(3, 2), distance_function=lambda u, v: u),
     ValueError, "distance_function"),
])
def test_new_losses_refuse_bad_input_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()
