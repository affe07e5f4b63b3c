"""Depth work for Chapters 1 and 2: the hinge loss and the Brier score (Chapter 1) against PyTorch and scikit-learn."""

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
