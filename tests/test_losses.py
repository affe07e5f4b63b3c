"""losslab.losses against torch.nn.functional (float64), formulas and autograd."""

import math

import pytest
import torch
import torch.nn.functional as F

from losslab import losses as L

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)
REDUCTIONS = ["mean", "sum", "none"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=gen(seed), dtype=D) * scale


def close(a, b, **kw):
    torch.testing.assert_close(a, b, **(TOL | kw))


# --- regression ------------------------------------------------------------------------

REGRESSION_INPUTS = {
    "random": (randn(7, 5, seed=1), randn(7, 5, seed=2)),
    "large": (randn(4, 3, seed=3, scale=1e6), randn(4, 3, seed=4, scale=1e6)),
    "tiny": (randn(4, 3, seed=5, scale=1e-9), randn(4, 3, seed=6, scale=1e-9)),
    "ties_and_zeros": (torch.tensor([0.0, 1.0, 1.0, -2.0, 0.0], dtype=D), torch.tensor([0.0, 1.0, 2.0, -1.0, 3.0], dtype=D)),
}


@pytest.mark.parametrize("case", list(REGRESSION_INPUTS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_torch(case, reduction):
    x, y = REGRESSION_INPUTS[case]
    close(L.mse_loss(x, y, reduction), F.mse_loss(x, y, reduction=reduction))
    close(L.l1_loss(x, y, reduction), F.l1_loss(x, y, reduction=reduction))
    for delta in (1e-10, 0.5, 1.0, 3.0, 1e7):
        close(L.huber_loss(x, y, reduction, delta), F.huber_loss(x, y, reduction=reduction, delta=delta))
    for beta in (0.0, 0.5, 1.0, 1e7):
        close(L.smooth_l1_loss(x, y, reduction, beta), F.smooth_l1_loss(x, y, reduction=reduction, beta=beta))


def test_huber_boundary_and_linear_tail():
    x = torch.tensor([1.0, 2.0, -5.0], dtype=D)
    y = torch.zeros(3, dtype=D)
    # delta = 1: 0.5 * 1^2 at the boundary, 1 * (2 - 0.5), 1 * (5 - 0.5)
    close(L.huber_loss(x, y, "none", delta=1.0), torch.tensor([0.5, 1.5, 4.5], dtype=D))


def test_log_cosh_matches_its_formula_and_does_not_overflow():
    x, y = randn(50, seed=7, scale=3), randn(50, seed=8)
    close(L.log_cosh_loss(x, y, "none"), torch.log(torch.cosh(x - y)))
    big = torch.tensor([1e4, -1e4], dtype=D)
    out = L.log_cosh_loss(big, torch.zeros(2, dtype=D), "none")
    assert torch.isfinite(out).all()
    close(out, big.abs() - math.log(2))  # log cosh r -> |r| - log 2
    assert not torch.isfinite(torch.log(torch.cosh(big))).all()  # the naive formula overflows


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_quantile_loss_formula_and_its_minimizer_is_the_quantile(q):
    x, y = randn(30, seed=9), randn(30, seed=10)
    r = y - x
    close(L.quantile_loss(x, y, q, "none"), torch.where(r >= 0, q * r, (q - 1) * r))
    data = randn(1001, seed=11)
    grid = torch.linspace(-3, 3, 1201, dtype=D)  # step 0.005
    c, d = torch.broadcast_tensors(grid[:, None], data[None, :])  # (1201, 1001) each
    risks = L.quantile_loss(c.contiguous(), d.contiguous(), q, "none").mean(1)
    assert abs(float(grid[risks.argmin()]) - float(torch.quantile(data, q))) < 0.02


def test_mse_and_mae_minimizers_are_mean_and_median():
    data = torch.tensor([0.0, 1.0, 2.0, 3.0, 100.0], dtype=D)
    grid = torch.linspace(-1, 101, 10201, dtype=D)  # step 0.01
    c, d = torch.broadcast_tensors(grid[:, None], data[None, :])
    c, d = c.contiguous(), d.contiguous()
    assert abs(float(grid[L.mse_loss(c, d, "none").mean(1).argmin()]) - 21.2) < 0.011  # the mean
    assert abs(float(grid[L.l1_loss(c, d, "none").mean(1).argmin()]) - 2.0) < 0.011  # the median


def test_fit_line_recovers_a_line_and_huber_resists_outliers():
    x = torch.linspace(-3, 3, 61, dtype=D)
    y = 0.5 + 2.0 * x
    for loss in ("mse", "mae", "huber"):
        close(L.fit_line(x, y, loss), torch.tensor([0.5, 2.0], dtype=D), rtol=1e-5, atol=1e-5)
    y_out = y.clone()
    y_out[-5:] += 200.0
    ls = torch.linalg.lstsq(torch.stack([torch.ones_like(x), x], 1), y_out[:, None]).solution[:, 0]
    close(L.fit_line(x, y_out, "mse"), ls)
    assert abs(float(L.fit_line(x, y_out, "huber")[1]) - 2.0) < 0.3 < abs(float(ls[1]) - 2.0)
    assert abs(float(L.fit_line(x, y_out, "mae")[1]) - 2.0) < 0.05
    # least absolute deviations: the exact pair search (N <= 300) beats every nearby line; N > 300 reweights
    best = L.fit_line(x, y_out, "mae")
    mae = lambda c: float((y_out - c[0] - c[1] * x).abs().sum())
    steps = torch.tensor([[0.0, 1e-3], [0.0, -1e-3], [1e-3, 0.0], [-1e-3, 0.0]], dtype=D)
    assert all(mae(best) <= mae(best + s) for s in steps)
    xl = torch.linspace(-3, 3, 401, dtype=D)
    yl = 0.5 + 2.0 * xl + (torch.arange(401) % 50 == 0) * 100.0
    close(L.fit_line(xl, yl, "mae"), torch.tensor([0.5, 2.0], dtype=D), rtol=1e-4, atol=1e-4)


def test_regression_gradients_match_autograd():
    x, y = randn(6, 4, seed=12).requires_grad_(), randn(6, 4, seed=13)
    for reduction in ("mean", "sum"):
        (g,) = torch.autograd.grad(F.mse_loss(x, y, reduction=reduction), x)
        close(L.mse_grad(x.detach(), y, reduction), g)


# --- binary --------------------------------------------------------------------------

def test_bce_matches_torch_including_exact_zero_and_one():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 1e-300, 1 - 1e-16, 0.3], dtype=D)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.7], dtype=D)
    w = torch.rand(8, generator=gen(1), dtype=D)
    for reduction in REDUCTIONS:
        close(L.binary_cross_entropy(p, y, reduction=reduction), F.binary_cross_entropy(p, y, reduction=reduction))
        close(L.binary_cross_entropy(p, y, w, reduction), F.binary_cross_entropy(p, y, w, reduction=reduction))
    out = L.binary_cross_entropy(p, y, reduction="none")
    assert float(out[2]) == 100.0 and float(out[3]) == 100.0  # log clamped at -100


LOGITS = {
    "random": randn(9, 4, seed=20, scale=3),
    "extreme": torch.tensor([[1e4, -1e4, 0.0, 50.0], [-50.0, 1e-12, -1e-12, 700.0]], dtype=D),
}


@pytest.mark.parametrize("case", list(LOGITS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_torch_with_weight_and_pos_weight(case, reduction):
    z = LOGITS[case]
    y = (torch.rand(z.shape, generator=gen(2), dtype=D) > 0.5).to(D)
    y[0, 0] = 0.0  # confidently wrong at z = 1e4
    w = torch.rand(z.shape, generator=gen(3), dtype=D)
    pw = torch.rand(z.shape[1], generator=gen(4), dtype=D) * 5
    close(L.binary_cross_entropy_with_logits(z, y, reduction=reduction), F.binary_cross_entropy_with_logits(z, y, reduction=reduction))
    close(L.binary_cross_entropy_with_logits(z, y, w, reduction, pos_weight=pw),
          F.binary_cross_entropy_with_logits(z, y, w, reduction=reduction, pos_weight=pw))
    soft = torch.rand(z.shape, generator=gen(5), dtype=D)
    close(L.binary_cross_entropy_with_logits(z, soft, reduction=reduction),
          F.binary_cross_entropy_with_logits(z, soft, reduction=reduction))
    assert torch.isfinite(L.binary_cross_entropy_with_logits(z, y, reduction=reduction)).all()


def test_bce_with_logits_is_finite_where_sigmoid_then_bce_is_not():
    z = torch.tensor([1e4], dtype=D)
    y = torch.zeros(1, dtype=D)
    assert float(L.binary_cross_entropy_with_logits(z, y)) == 1e4
    assert float(L.binary_cross_entropy(torch.sigmoid(z), y)) == 100.0  # clamped, wrong by a factor of 100


def test_binary_gradients_match_autograd():
    z = randn(5, 3, seed=21, scale=4).requires_grad_()
    y = (torch.rand(5, 3, generator=gen(6), dtype=D) > 0.5).to(D)
    (g,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(z, y), z)
    close(L.bce_with_logits_grad(z.detach(), y), g)
    (g,) = torch.autograd.grad(F.mse_loss(torch.sigmoid(z), y, reduction="sum"), z)
    close(L.sigmoid_mse_grad(z.detach(), y, "sum"), g)


def test_focal_loss_matches_its_formula_and_reduces_to_bce():
    z, y = randn(40, seed=22, scale=3), (torch.rand(40, generator=gen(7), dtype=D) > 0.7).to(D)
    p = torch.sigmoid(z)
    p_t = torch.where(y == 1, p, 1 - p)
    a_t = torch.where(y == 1, 0.25, 0.75)
    close(L.focal_loss(z, y, gamma=2.0, alpha=0.25, reduction="none"), -a_t * (1 - p_t) ** 2 * torch.log(p_t))
    close(L.focal_loss(z, y, gamma=0.0), F.binary_cross_entropy_with_logits(z, y))
    assert (L.focal_loss(z, y, 2.0, reduction="none") <= L.binary_cross_entropy_with_logits(z, y, reduction="none")).all()
    assert torch.isfinite(L.focal_loss(torch.tensor([1e4, -1e4], dtype=D), torch.tensor([0.0, 0.0], dtype=D))).all()


# --- multi-class ---------------------------------------------------------------------

def test_logsumexp_softmax_log_softmax_match_torch_on_extremes():
    x = torch.cat([randn(3, 6, seed=30), torch.tensor([[1e4, -1e4, 0, 1e4, 3, -7]], dtype=D)])
    close(L.logsumexp(x, 1), torch.logsumexp(x, 1))
    close(L.softmax(x, 1), torch.softmax(x, 1))
    close(L.log_softmax(x, 1), torch.log_softmax(x, 1))
    close(L.logsumexp(x, 0, keepdim=True), torch.logsumexp(x, 0, keepdim=True))


def ce_case(seed, n=8, c=5, extra=(), scale=2.0):
    g = gen(seed)
    z = torch.randn(n, c, *extra, generator=g, dtype=D) * scale
    y = torch.randint(0, c, (n, *extra), generator=g)
    w = torch.rand(c, generator=g, dtype=D) + 0.1
    return z, y, w


@pytest.mark.parametrize("extra", [(), (3,), (2, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(extra, reduction, smoothing):
    z, y, w = ce_case(31, extra=extra)
    y.view(-1)[::3] = -100  # some ignored targets
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    close(L.cross_entropy(z, y, **kw), F.cross_entropy(z, y, **kw))
    close(L.cross_entropy(z, y, weight=w, **kw), F.cross_entropy(z, y, weight=w, **kw))
    yy = y.clamp_min(0)  # every target valid, class 2 ignored instead
    close(L.cross_entropy(z, yy, weight=w, ignore_index=2, **kw), F.cross_entropy(z, yy, weight=w, ignore_index=2, **kw))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_probability_targets_matches_torch(reduction):
    z, _, w = ce_case(32)
    q = torch.softmax(randn(8, 5, seed=33), 1)
    for kw in (dict(), dict(weight=w), dict(label_smoothing=0.2), dict(weight=w, label_smoothing=0.3)):
        close(L.cross_entropy(z, q, reduction=reduction, **kw), F.cross_entropy(z, q, reduction=reduction, **kw))


def test_cross_entropy_on_extreme_logits_and_unbatched_input():
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [0.0, 0.0, 0.0], [5e3, 5e3, -5e3]], dtype=D)
    y = torch.tensor([1, 2, 0, 0])
    for reduction in REDUCTIONS:
        close(L.cross_entropy(z, y, reduction=reduction), F.cross_entropy(z, y, reduction=reduction))
    out = L.cross_entropy(z, y, reduction="none")
    close(out, torch.tensor([2e4, math.log(3), math.log(3), math.log(2)], dtype=D))
    close(L.cross_entropy(z[0], y[0]), F.cross_entropy(z[0], y[0]))


def test_nll_loss_matches_torch_and_all_ignored_mean_is_nan():
    z, y, w = ce_case(34)
    logp = torch.log_softmax(z, 1)
    y[1] = -100
    for reduction in REDUCTIONS:
        close(L.nll_loss(logp, y, w, reduction=reduction), F.nll_loss(logp, y, w, reduction=reduction))
    ignored = torch.full((8,), -100)
    assert math.isnan(float(L.nll_loss(logp, ignored))) and math.isnan(float(F.nll_loss(logp, ignored)))


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    z, y, _ = ce_case(35)
    z.requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(z, y), z)
    close(L.cross_entropy_grad(z.detach(), y), g)


def test_uniform_logits_give_log_k():
    for k in (2, 10, 1000):
        close(L.cross_entropy(torch.zeros(4, k, dtype=D), torch.zeros(4, dtype=torch.long)), torch.tensor(math.log(k), dtype=D))


def test_class_weights_formulas():
    n = torch.tensor([1000, 100, 10])
    close(L.class_weights(n, "inverse"), torch.tensor([0.001, 0.01, 0.1], dtype=D) * 3 / 0.111)
    r = torch.tensor([1000, 100, 10], dtype=D).rsqrt()
    close(L.class_weights(n, "inverse_sqrt"), r * 3 / r.sum())
    e = (1 - 0.99) / (1 - 0.99 ** torch.tensor([1000.0, 100, 10], dtype=D))
    close(L.class_weights(n, "effective", beta=0.99), e * 3 / e.sum())
    close(L.class_weights(n, "effective", beta=0.0), torch.ones(3, dtype=D))
    assert L.class_weights(n, "effective", beta=0.9999)[2] / L.class_weights(n, "effective", beta=0.9999)[0] > 50


# --- sequences -----------------------------------------------------------------------

def test_token_cross_entropy_matches_flattened_torch_and_counts_every_token_once():
    g = gen(40)
    logits = torch.randn(3, 6, 11, generator=g, dtype=D)
    targets = torch.randint(0, 11, (3, 6), generator=g)
    targets[0, 2:] = -100  # a short sequence
    targets[2, 5] = -100
    ref = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), reduction="none").view(3, 6)
    close(L.token_cross_entropy(logits, targets, reduction="none"), ref)
    close(L.token_cross_entropy(logits, targets, reduction="sum"), ref.sum())
    mask = targets != -100
    close(L.token_cross_entropy(logits, targets), ref.sum() / mask.sum())
    per_sequence = ref.sum(1) / mask.sum(1)  # the double average weights short sequences more
    assert not torch.isclose(per_sequence.mean(), L.token_cross_entropy(logits, targets))
    close(L.perplexity(L.token_cross_entropy(torch.zeros(2, 3, 7, dtype=D), torch.zeros(2, 3, dtype=torch.long))),
          torch.tensor(7.0, dtype=D))


# --- information ---------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
def test_kl_div_matches_torch_with_zero_probabilities(reduction):
    logq = torch.log_softmax(randn(4, 6, seed=50), 1)
    p = torch.softmax(randn(4, 6, seed=51), 1)
    p[0] = torch.tensor([1.0, 0, 0, 0, 0, 0], dtype=D)
    close(L.kl_div(logq, p, reduction), F.kl_div(logq, p, reduction=reduction))
    logp = torch.log_softmax(randn(4, 6, seed=52), 1)
    close(L.kl_div(logq, logp, reduction, log_target=True), F.kl_div(logq, logp, reduction=reduction, log_target=True))


def test_cross_entropy_is_entropy_plus_kl():
    p = torch.softmax(randn(5, 7, seed=53), 1)
    z = randn(5, 7, seed=54)
    ce = L.cross_entropy(z, p, reduction="none")
    close(ce, L.entropy(p) + L.kl_div(torch.log_softmax(z, 1), p, "none").sum(1))
    close(L.entropy(torch.tensor([0.0, 1.0], dtype=D)), torch.tensor(0.0, dtype=D))
    close(L.entropy(torch.full((8,), 1 / 8, dtype=D)), torch.tensor(math.log(8), dtype=D))


# --- embeddings ----------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_embedding_losses_match_torch(reduction):
    a, p, n = randn(6, 4, seed=60), randn(6, 4, seed=61), randn(6, 4, seed=62)
    for kw in (dict(), dict(margin=0.3, p=1.0), dict(swap=True, margin=2.0)):
        close(L.triplet_margin_loss(a, p, n, reduction=reduction, **kw), F.triplet_margin_loss(a, p, n, reduction=reduction, **kw))
    y = torch.tensor([1, -1, 1, -1, -1, 1])
    for m in (0.0, 0.5):
        close(L.cosine_embedding_loss(a, p, y, m, reduction), F.cosine_embedding_loss(a, p, y, margin=m, reduction=reduction))
    x1, x2, t = randn(9, seed=63), randn(9, seed=64), torch.tensor([1.0, -1] * 4 + [1.0], dtype=D)
    close(L.margin_ranking_loss(x1, x2, t, 0.2, reduction), F.margin_ranking_loss(x1, x2, t, margin=0.2, reduction=reduction))


def test_contrastive_and_info_nce_match_their_formulas():
    x1, x2 = randn(8, 3, seed=65), randn(8, 3, seed=66)
    s = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0])
    d = (x1 - x2).norm(dim=1)
    expected = torch.where(s == 1, 0.5 * d**2, 0.5 * torch.relu(1.5 - d) ** 2)
    close(L.contrastive_loss(x1, x2, s, margin=1.5, reduction="none"), expected)
    q, k = randn(6, 5, seed=67), randn(6, 5, seed=68)
    qn, kn = q / q.norm(dim=1, keepdim=True), k / k.norm(dim=1, keepdim=True)
    sim = torch.exp(qn @ kn.T / 0.2)
    close(L.info_nce(q, k, 0.2, reduction="none"), -torch.log(sim.diag() / sim.sum(1)))
    assert float(L.info_nce(q, q, 0.05)) < float(L.info_nce(q, k, 0.05))  # matching keys: low loss


# --- calibration ---------------------------------------------------------------------

def test_ece_matches_a_direct_loop():
    g = gen(70)
    probs = torch.softmax(torch.randn(500, 4, generator=g, dtype=D) * 2, 1)
    labels = torch.randint(0, 4, (500,), generator=g)
    conf, pred = probs.max(1)
    ece = 0.0
    for b in range(10):
        inside = (conf > b / 10) & (conf <= (b + 1) / 10)
        if inside.any():
            ece += float(inside.sum()) / 500 * abs(float((pred[inside] == labels[inside]).double().mean() - conf[inside].mean()))
    assert abs(float(L.expected_calibration_error(probs, labels, 10)) - ece) < 1e-12
    bins = L.reliability_bins(probs, labels, 10)
    assert int(bins.count.sum()) == 500


def test_ece_is_small_for_a_calibrated_model_and_temperature_recovers_truth():
    g = gen(71)
    z = torch.randn(8000, 5, generator=g, dtype=D) * 3
    labels = torch.multinomial(torch.softmax(z / 2.0, 1), 1, generator=g)[:, 0]  # the truth uses T = 2
    assert float(L.expected_calibration_error(torch.softmax(z / 2.0, 1), labels)) < 0.02
    assert float(L.expected_calibration_error(torch.softmax(z, 1), labels)) > 0.1  # T = 1 is overconfident
    t = L.fit_temperature(z, labels)
    assert abs(t - 2.0) < 0.15
    grid = torch.linspace(1.5, 2.5, 101, dtype=D)
    best = grid[torch.stack([F.cross_entropy(z / s, labels) for s in grid]).argmin()]
    assert abs(t - float(best)) < 0.011


def test_weighted_sum_logs_each_term():
    a, b = torch.tensor(2.0, dtype=D, requires_grad=True), torch.tensor(3.0, dtype=D)
    total, log = L.weighted_sum({"data": a * 1, "reg": b}, {"data": 1.0, "reg": 0.1})
    total.backward()
    assert log == pytest.approx({"data": 2.0, "data_weighted": 2.0, "reg": 3.0, "reg_weighted": 0.3, "total": 2.3})
    assert float(a.grad) == 1.0


# --- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: L.mse_loss(torch.zeros(4, 1, dtype=D), torch.zeros(4, dtype=D)), ValueError, "target: expected the shape"),
        (lambda: L.mse_loss(torch.zeros(4, dtype=D), torch.zeros(4, dtype=torch.float32)), TypeError, "dtype"),
        (lambda: L.mse_loss(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)), TypeError, "floating"),
        (lambda: L.mse_loss(torch.tensor([float("nan")], dtype=D), torch.zeros(1, dtype=D)), ValueError, "input: expected finite"),
        (lambda: L.mse_loss([1.0], torch.zeros(1, dtype=D)), TypeError, "torch.Tensor"),
        (lambda: L.mse_loss(torch.zeros(2, dtype=D), torch.zeros(2, dtype=D), "avg"), ValueError, "reduction"),
        (lambda: L.huber_loss(torch.zeros(2, dtype=D), torch.zeros(2, dtype=D), delta=-1.0), ValueError, "delta"),
        (lambda: L.quantile_loss(torch.zeros(2, dtype=D), torch.zeros(2, dtype=D), q=1.0), ValueError, "q:"),
        (lambda: L.binary_cross_entropy(torch.tensor([1.2], dtype=D), torch.ones(1, dtype=D)), ValueError, r"\[0, 1\]"),
        (lambda: L.binary_cross_entropy_with_logits(torch.zeros(3, dtype=D), torch.tensor([0.0, 2.0, 1.0], dtype=D)), ValueError, "target"),
        (lambda: L.binary_cross_entropy_with_logits(torch.zeros(3, 2, dtype=D), torch.zeros(3, 2, dtype=D), pos_weight=torch.ones(3, dtype=D)), ValueError, "pos_weight"),
        (lambda: L.cross_entropy(torch.zeros(3, 4, dtype=D), torch.tensor([0, 4, 1])), ValueError, r"\[0, 3\]"),
        (lambda: L.cross_entropy(torch.zeros(3, 4, dtype=D), torch.tensor([0, -1, 1])), ValueError, "class indices"),
        (lambda: L.cross_entropy(torch.zeros(3, 4, dtype=D), torch.tensor([0.0, 1.0, 2.0], dtype=D)), TypeError, "class indices"),
        (lambda: L.cross_entropy(torch.zeros(3, 4, dtype=D), torch.tensor([[0], [1], [2]])), ValueError, r"shape \(3,\)"),
        (lambda: L.cross_entropy(torch.tensor([[float("inf"), 0.0]], dtype=D), torch.tensor([0])), ValueError, "finite"),
        (lambda: L.cross_entropy(torch.zeros(3, 4, dtype=D), torch.tensor([0, 1, 2]), weight=torch.ones(3, dtype=D)), ValueError, "weight"),
        (lambda: L.cross_entropy(torch.zeros(3, 4, dtype=D), torch.tensor([0, 1, 2]), label_smoothing=1.5), ValueError, "label_smoothing"),
        (lambda: L.token_cross_entropy(torch.zeros(2, 3, 4, dtype=D), torch.zeros(3, 2, dtype=torch.long)), ValueError, r"\(B, T\)"),
        (lambda: L.token_cross_entropy(torch.zeros(6, 4, dtype=D), torch.zeros(6, dtype=torch.long)), ValueError, r"\(B, T, V\)"),
        (lambda: L.kl_div(torch.zeros(2, 3, dtype=D), torch.zeros(3, dtype=D)), ValueError, "shape"),
        (lambda: L.triplet_margin_loss(torch.zeros(2, 3, dtype=D), torch.zeros(2, 3, dtype=D), torch.zeros(2, 4, dtype=D)), ValueError, "negative"),
        (lambda: L.cosine_embedding_loss(torch.zeros(2, 3, dtype=D), torch.zeros(2, 3, dtype=D), torch.tensor([1, 0])), ValueError, "1 .* or -1"),
        (lambda: L.class_weights(torch.tensor([3, 0]), "inverse"), ValueError, "positive"),
        (lambda: L.expected_calibration_error(torch.zeros(3, 2, dtype=D), torch.zeros(3, dtype=torch.long)), ValueError, "summing to 1"),
        (lambda: L.fit_temperature(torch.zeros(3, 2, dtype=D), torch.zeros(3, dtype=torch.long), bounds=(0, 1)), ValueError, "bounds"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_losses_keep_dtype_and_device():
    x = torch.randn(3, 4, dtype=torch.float32)
    y = torch.randint(0, 4, (3,))
    out = L.cross_entropy(x, y)
    assert out.dtype == torch.float32 and out.device == x.device
    torch.testing.assert_close(out, F.cross_entropy(x, y))


# --- gradients at kinks and boundaries -------------------------------------------------
# A stable formula often contains max, clamp or abs, whose slope at the kink is a
# convention that PyTorch versions have changed. Where the loss itself is smooth
# there (BCE from logits at z = 0), our gradient must be the true one; where the
# loss has a real kink (hinges, |r|), it must be PyTorch's.

BOUNDARY_LOGITS = torch.tensor([0.0, -0.0, 1e-300, -1e-12, 0.5, -3.0, 30.0, -30.0, -40.0, 700.0,
                                1e4, -1e4, 1e300, -1e300], dtype=D)


def _grads(fn, *args, wrt=2):
    """Value and gradients of fn(*args).sum() with respect to the first ``wrt`` arguments."""
    leaves = [a.detach().clone().requires_grad_() for a in args[:wrt]]
    out = fn(*leaves, *args[wrt:])
    return out.detach(), torch.autograd.grad(out.sum(), leaves)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_gradient_at_zero_is_exactly_sigmoid_minus_target(reduction):
    z = torch.zeros(6, dtype=D)
    y = torch.tensor([0.0, 1.0, 0.5, 0.3, 0.9, 1e-9], dtype=D)
    _, (g, _) = _grads(lambda a, b: L.binary_cross_entropy_with_logits(a, b, reduction=reduction), z, y)
    scale = 1 / 6 if reduction == "mean" else 1.0
    assert torch.equal(g, (torch.sigmoid(z) - y) * scale)
    _, (g_torch, _) = _grads(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), z, y)
    assert torch.equal(g, g_torch)
    assert torch.equal(g[:2] / scale, torch.tensor([0.5, -0.5], dtype=D))  # not -y, not 1 - y


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_gradients_match_torch_on_random_and_extreme_logits(labels, reduction):
    z = torch.cat([BOUNDARY_LOGITS, randn(50, seed=80, scale=6)])
    n = len(z)
    y = (torch.rand(n, generator=gen(81), dtype=D) > 0.5).to(D) if labels == "hard" else torch.rand(n, generator=gen(81), dtype=D)
    ours = lambda a, b, **kw: L.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw)
    theirs = lambda a, b, **kw: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw)
    (v, (gz, gy)), (vt, (gzt, gyt)) = _grads(ours, z, y), _grads(theirs, z, y)
    close(v, vt)
    assert torch.equal(gz, gzt)  # sigmoid(z) - y, the same arithmetic as PyTorch's backward
    assert torch.equal(gy, gyt)  # -z
    w = torch.rand(n, generator=gen(82), dtype=D) * 2
    pw = torch.rand(n, generator=gen(83), dtype=D) * 5
    for kw in (dict(weight=w), dict(pos_weight=pw), dict(weight=w, pos_weight=pw)):
        (v, (gz, gy)), (vt, (gzt, gyt)) = _grads(lambda a, b: ours(a, b, **kw), z, y), _grads(lambda a, b: theirs(a, b, **kw), z, y)
        close(v, vt)
        close(gz, gzt, rtol=1e-14, atol=0)
        close(gy, gyt, rtol=1e-14, atol=0)


def test_bce_with_logits_pos_weight_broadcasts_and_second_derivatives_match_torch():
    z = torch.cat([BOUNDARY_LOGITS[:10], randn(6, seed=84, scale=3)]).view(4, 4)
    y = (torch.rand(4, 4, generator=gen(85), dtype=D) > 0.5).to(D)
    pw = torch.tensor([0.5, 1.0, 2.0, 7.0], dtype=D)  # one per label, broadcast over the batch
    for kw in (dict(), dict(pos_weight=pw)):
        hess = []
        for fn in (L.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
            zz = z.clone().requires_grad_()
            (g,) = torch.autograd.grad(fn(zz, y, reduction="sum", **kw), zz, create_graph=True)
            (h,) = torch.autograd.grad(g.sum(), zz)  # diagonal: the loss is elementwise
            hess.append(h)
        close(hess[0], hess[1], rtol=1e-12, atol=1e-300)
    p = torch.sigmoid(torch.zeros(()))
    zz = torch.zeros(4, 4, dtype=D, requires_grad=True)
    (g,) = torch.autograd.grad(L.binary_cross_entropy_with_logits(zz, y, reduction="sum"), zz, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), zz)
    assert torch.equal(h, torch.full_like(h, float(p * (1 - p))))  # sigma'(0) = 1/4 exactly
    pwl = pw.clone().requires_grad_()
    (gp,) = torch.autograd.grad(L.binary_cross_entropy_with_logits(z, y, pos_weight=pwl, reduction="sum"), pwl)
    close(gp, (y * F.softplus(-z)).sum(0))  # d loss / d p_w = y softplus(-z), summed over the batch


def test_logistic_regression_started_at_zero_takes_torchs_first_step():
    """Chapter 1's training loop starts at w = b = 0, where every logit is exactly 0."""
    blobs_x = randn(40, 2, seed=86)
    y = (torch.rand(40, generator=gen(87), dtype=D) > 0.5).to(D)
    grads = []
    for fn in (L.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
        w = torch.zeros(2, dtype=D, requires_grad=True)
        b = torch.zeros((), dtype=D, requires_grad=True)
        grads.append(torch.autograd.grad(fn(blobs_x @ w + b, y), (w, b)))
    for ours, theirs in zip(*grads):
        assert torch.equal(ours, theirs)
    close(grads[0][1], (0.5 - y).mean())  # d loss / d b = mean(sigmoid(0) - y)


def test_bce_from_probabilities_gradients_match_torch_at_zero_and_one():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0, 1e-50, 1 - 1e-16, 0.5, 0.3, 1e-300], dtype=D)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.7, 1.0], dtype=D)
    w = torch.rand(9, generator=gen(88), dtype=D)
    for kw in (dict(), dict(weight=w)):
        for reduction in REDUCTIONS:
            (v, (gp, gy)) = _grads(lambda a, b: L.binary_cross_entropy(a, b, reduction=reduction, **kw), p, y)
            (vt, (gpt, gyt)) = _grads(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction, **kw), p, y)
            close(v, vt)
            assert torch.isfinite(gp).all(), f"NaN or inf gradient in p: {gp.tolist()}"
            close(gp, gpt, rtol=1e-14, atol=0)
            close(gy, gyt, rtol=1e-14, atol=0)  # -logit(p): infinite at p in {0, 1}, as in PyTorch
    # the chapter's case: a logit of 1e4 through the sigmoid saturates, so the gradient in z is exactly 0
    z = torch.tensor([1e4], dtype=D, requires_grad=True)
    (g,) = torch.autograd.grad(L.binary_cross_entropy(torch.sigmoid(z), torch.zeros(1, dtype=D)), z)
    assert float(g) == 0.0


def test_kinked_losses_take_torchs_gradient_at_the_kink():
    # residuals exactly 0 and exactly +-delta / +-beta
    x = torch.tensor([0.0, 1.0, -1.0, 0.5, -0.5, 2.0], dtype=D)
    t = torch.zeros(6, dtype=D)
    pairs = [
        (lambda a, b: L.l1_loss(a, b, "none"), lambda a, b: F.l1_loss(a, b, reduction="none")),
        (lambda a, b: L.huber_loss(a, b, "none", 1.0), lambda a, b: F.huber_loss(a, b, reduction="none", delta=1.0)),
        (lambda a, b: L.huber_loss(a, b, "none", 0.5), lambda a, b: F.huber_loss(a, b, reduction="none", delta=0.5)),
        (lambda a, b: L.smooth_l1_loss(a, b, "none", 0.0), lambda a, b: F.smooth_l1_loss(a, b, reduction="none", beta=0.0)),
        (lambda a, b: L.smooth_l1_loss(a, b, "none", 1.0), lambda a, b: F.smooth_l1_loss(a, b, reduction="none", beta=1.0)),
    ]
    for ours, theirs in pairs:
        (v, g), (vt, gt) = _grads(ours, x, t), _grads(theirs, x, t)
        close(v, vt)
        for a, b in zip(g, gt):
            assert torch.equal(a, b), f"{a.tolist()} != {b.tolist()}"
    # hinges exactly at their margin: max(0, .) has a kink at 0
    a, p, n = torch.zeros(2, 2, dtype=D), torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=D), torch.tensor([[2.0, 0.0], [0.0, 1.5]], dtype=D)
    (v, g), (vt, gt) = (_grads(lambda *e: fn(*e, margin=1.0, eps=0.0, reduction="none"), a, p, n, wrt=3)
                        for fn in (L.triplet_margin_loss, F.triplet_margin_loss))
    close(v, vt)
    assert all(torch.equal(u, w_) for u, w_ in zip(g, gt))
    x1, x2, yr = torch.tensor([1.0, 0.0, 2.0], dtype=D), torch.tensor([2.0, 0.0, 2.5], dtype=D), torch.tensor([1.0, 1.0, -1.0], dtype=D)
    (v, g), (vt, gt) = (_grads(lambda u, w_: fn(u, w_, yr, margin=1.0, reduction="none"), x1, x2)
                        for fn in (L.margin_ranking_loss, F.margin_ranking_loss))
    close(v, vt)
    assert all(torch.equal(u, w_) for u, w_ in zip(g, gt))
    c1, c2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=D), torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=D)
    yc = torch.tensor([-1, -1])
    for margin in (0.0, 1.0 - 1e-12):  # cos = 0 and cos = 1 sit at or next to the hinge
        (v, g), (vt, gt) = (_grads(lambda u, w_: fn(u, w_, yc, margin=margin, reduction="none"), c1, c2)
                            for fn in (L.cosine_embedding_loss, F.cosine_embedding_loss))
        close(v, vt)
        for u, w_ in zip(g, gt):
            close(u, w_, rtol=1e-12, atol=1e-15)
