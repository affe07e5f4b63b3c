"""Depth work for Chapters 1 and 2: the hinge loss and the Brier score (Chapter 1) against PyTorch and scikit-learn."""

import functools

import pytest
import torch
import torch.nn.functional as F

from losslab import losses


def _scores(seed: int, n: int = 200, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1  # +-1
    return z, y


@pytest.mark.parametrize("margin", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hinge_matches_torch_multi_margin(margin, reduction):
    """Binary hinge = C * multi_margin_loss on the scores (0, z), C = 2: PyTorch's own multi-class hinge."""
    z, y = _scores(0)
    ours = losses.hinge_loss(z, y, margin=margin, reduction=reduction)
    two = torch.stack([torch.zeros_like(z), z], 1)  # (N, 2): class 1 has score z, class 0 score 0
    theirs = 2 * F.multi_margin_loss(two, ((y + 1) / 2).long(), margin=margin, reduction=reduction)
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_hinge_extreme_inputs_and_gradient():
    z = torch.tensor([1e300, -1e300, 1e-300, 0.0, 1.0, 0.999999], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    ours = losses.hinge_loss(z, y, reduction="none")
    assert torch.isfinite(ours).all()
    expected = torch.relu(1 - y * z.detach())
    assert torch.equal(ours.detach(), expected)
    (g,) = torch.autograd.grad(ours.sum(), z)
    two = torch.stack([torch.zeros_like(z), z], 1)
    (g_torch,) = torch.autograd.grad(2 * F.multi_margin_loss(two, ((y + 1) / 2).long(), reduction="sum"), z)
    # away from the kink (margin exactly 1) the gradients agree: -y inside the margin, 0 beyond it
    away = (y * z.detach() - 1).abs() > 0
    assert torch.equal(g[away], g_torch[away])
    assert torch.equal(g[away], torch.where(y * z.detach() < 1, -y, torch.zeros_like(y))[away])


def test_hinge_bad_input():
    z = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="target"):
        losses.hinge_loss(z, torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="target"):
        losses.hinge_loss(z, torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="input"):
        losses.hinge_loss(torch.tensor([float("nan"), 0.0, 0.0], dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="reduction"):
        losses.hinge_loss(z, torch.ones(3, dtype=torch.float64), reduction="avg")
    with pytest.raises((TypeError, ValueError), match="margin"):
        losses.hinge_loss(z, torch.ones(3, dtype=torch.float64), margin=float("nan"))


def _probs(seed: int, n: int = 300, c: int = 4, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * scale, 1)
    return p, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_brier_matches_formula_and_sklearn(reduction):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    p, y = _probs(1)
    ours = losses.brier_score(p, y, reduction=reduction)
    per = ((p - F.one_hot(y, 4).double()) ** 2).sum(1)
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    assert torch.allclose(ours, expected, rtol=1e-12, atol=1e-15)
    p2, y2 = _probs(2, c=2)
    binary = float(losses.brier_score(p2, y2))
    assert binary == pytest.approx(2 * sklearn_metrics.brier_score_loss(y2.numpy(), p2[:, 1].numpy()), rel=1e-12)


def test_brier_extremes_and_properness():
    certain_right = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    assert float(losses.brier_score(certain_right, torch.tensor([0]))) == 0.0
    assert float(losses.brier_score(certain_right, torch.tensor([1]))) == 2.0  # the worst possible score
    tiny = torch.tensor([[1 - 1e-300, 1e-300]], dtype=torch.float64)
    assert torch.isfinite(losses.brier_score(tiny, torch.tensor([1])))
    # proper: the expected score under q is smallest at p = q (binary, on a grid)
    q = 0.3
    grid = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    probs = torch.stack([1 - grid, grid], 1)
    expected = (1 - q) * losses.brier_score(probs, torch.zeros(1001, dtype=torch.long), reduction="none") \
        + q * losses.brier_score(probs, torch.ones(1001, dtype=torch.long), reduction="none")
    assert float(grid[expected.argmin()]) == pytest.approx(q, abs=1e-9)


def test_brier_bad_input():
    p, y = _probs(3)
    with pytest.raises(ValueError, match="probs"):
        losses.brier_score(p * 2, y)
    with pytest.raises(ValueError, match="probs"):
        losses.brier_score(p[:, :1] / p[:, :1], y)
    with pytest.raises(ValueError, match="labels"):
        losses.brier_score(p, y + 10)
    with pytest.raises(ValueError, match="reduction"):
        losses.brier_score(p, y, reduction="avg")


# --- Chapter 2: mode connectivity -------------------------------------------------------------

from losslab import landscapes  # noqa: E402
from losslab.backend import single_thread  # noqa: E402


@functools.lru_cache(maxsize=1)
def _trained_pair():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=g, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).long() + (x[:, 2] > 1).long()        # three classes
    ends = []
    for seed in (1, 2):
        m = landscapes.MLP((4, 16, 3), activation="tanh", seed=seed, dtype=torch.float64)
        with single_thread("cpu"):  # tiny tensors: one thread is much faster on a busy machine
            landscapes.train_classifier(m, x, y, steps=300, lr=0.1, batch_size=120, seed=seed)
        ends.append({k: v.detach().clone() for k, v in m.named_parameters()})
    return m, x, y, ends[0], ends[1]


def _two_nets():
    m, x, y, a, b = _trained_pair()
    return m, x, y, {k: v.clone() for k, v in a.items()}, {k: v.clone() for k, v in b.items()}


def test_bezier_point_formula_and_ends():
    m, x, y, a, b = _two_nets()
    c = {k: torch.randn_like(v) for k, v in a.items()}
    for k in a:
        assert torch.equal(landscapes.bezier_point(a, c, b, 0.0)[k], a[k])
        assert torch.equal(landscapes.bezier_point(a, c, b, 1.0)[k], b[k])
        assert torch.allclose(landscapes.bezier_point(a, c, b, 0.5)[k], 0.25 * a[k] + 0.5 * c[k] + 0.25 * b[k])
    mid = {k: (a[k] + b[k]) / 2 for k in a}                                    # control at the midpoint: the straight line
    for t in (0.1, 0.37, 0.8):
        line = {k: (1 - t) * a[k] + t * b[k] for k in a}
        assert all(torch.allclose(landscapes.bezier_point(a, mid, b, t)[k], line[k], atol=1e-15) for k in a)


def test_bezier_gradient_reaches_the_control_point():
    m, x, y, a, b = _two_nets()
    c = {k: v.clone().requires_grad_() for k, v in a.items()}
    loss = torch.nn.functional.cross_entropy(torch.func.functional_call(m, landscapes.bezier_point(a, c, b, 0.5), (x,)), y)
    grads = torch.autograd.grad(loss, list(c.values()))
    assert all(torch.isfinite(g).all() for g in grads) and any(float(g.abs().max()) > 0 for g in grads)


def test_fitted_curve_is_lower_than_the_line_and_repeatable():
    m, x, y, a, b = _two_nets()
    with single_thread("cpu"):
        c = landscapes.fit_bezier_midpoint(m, x, y, a, b, steps=200, lr=0.02, batch_size=64, seed=0)
    ts = [i / 10 for i in range(1, 10)]
    curve = max(float(landscapes.loss_at(m, x, y, landscapes.bezier_point(a, c, b, t))) for t in ts)
    line = max(float(landscapes.loss_at(m, x, y, {k: (1 - t) * a[k] + t * b[k] for k in a})) for t in ts)
    assert curve < line
    with single_thread("cpu"):
        again = landscapes.fit_bezier_midpoint(m, x, y, a, b, steps=200, lr=0.02, batch_size=64, seed=0)
    assert all(torch.equal(c[k], again[k]) for k in c)
    assert all(not v.requires_grad for v in c.values())
    assert all(torch.equal(v, p.detach()) for v, p in zip(landscapes._params(m, None).values(), m.parameters()))


def test_bezier_bad_input():
    m, x, y, a, b = _two_nets()
    with pytest.raises(ValueError, match="t"):
        landscapes.bezier_point(a, a, b, 1.5)
    with pytest.raises(ValueError, match="b"):
        landscapes.bezier_point(a, a, {k: v for k, v in list(b.items())[:-1]}, 0.5)
    bad = dict(b)
    bad[next(iter(bad))] = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="b"):
        landscapes.bezier_point(a, a, bad, 0.5)
    with pytest.raises(ValueError, match="params|keys"):
        landscapes.fit_bezier_midpoint(m, x, y, a, {k: v for k, v in list(b.items())[:-1]}, steps=1)
    with pytest.raises((TypeError, ValueError), match="steps"):
        landscapes.fit_bezier_midpoint(m, x, y, a, b, steps=0)
    with pytest.raises((TypeError, ValueError), match="lr"):
        landscapes.fit_bezier_midpoint(m, x, y, a, b, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="y"):
        landscapes.fit_bezier_midpoint(m, x, y[:-1], a, b, steps=1)
