"""Hessian eigenvalues with repeated values, and the curvature functions' input checks (issue 18)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from losslab import landscapes as L


class Quadratic(nn.Module):
    """Logits [q(w), 0] with q = w^T A w / 2: at w = 0 the cross-entropy of label 1 has Hessian A / 2 exactly."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A)
        self.w = nn.Parameter(torch.zeros(A.shape[0], dtype=A.dtype))

    def forward(self, x):
        q = 0.5 * self.w @ self.A @ self.w
        return torch.stack([q.expand(x.shape[0]), torch.zeros(x.shape[0], dtype=x.dtype)], 1)


def spectrum_matrix(eigs, seed=0):
    n = len(eigs)
    Q = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).Q
    return Q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ Q.T


@pytest.mark.parametrize("P", [3, 150])
def test_top_eigenvalues_find_repeated_ones(P):
    eigs = [0.762, 0.762, 0.626, 0.556] + [0.5 * math.exp(-i / 40) for i in range(P - 4)]
    eigs = eigs[:P]
    model = Quadratic(spectrum_matrix(eigs))
    x, y = torch.zeros(4, 1, dtype=torch.float64), torch.ones(4, dtype=torch.int64)
    k = min(3, P)
    top = L.top_hessian_eigenvalues(model, x, y, k=k, iters=40)
    ref = torch.linalg.eigvalsh(L.hessian_matrix(model, x, y)).flip(0)[:k]
    assert torch.allclose(ref, torch.tensor(sorted(eigs, reverse=True)[:k], dtype=torch.float64) / 2, rtol=1e-10)
    assert torch.allclose(top, ref, rtol=1e-8, atol=1e-12), (top, ref)


def test_k_equal_to_the_number_of_parameters_is_allowed():
    model = Quadratic(spectrum_matrix([3.0, 1.0, 1.0]))
    x, y = torch.zeros(2, 1, dtype=torch.float64), torch.ones(2, dtype=torch.int64)
    assert torch.allclose(L.top_hessian_eigenvalues(model, x, y, k=3), torch.tensor([1.5, 0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="k"):
        L.top_hessian_eigenvalues(model, x, y, k=4)


def test_curvature_functions_refuse_data_that_does_not_fit_the_model():
    model = L.MLP([3, 5, 4]).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    for fn in (L.loss_at, L.hessian_matrix, lambda m, a, b: L.hvp(m, a, b, v),
               lambda m, a, b: L.top_hessian_eigenvalues(m, a, b, k=2)):
        with pytest.raises(ValueError, match="x: expected 3 features"):
            fn(model, torch.randn(6, 2, dtype=torch.float64), y)
        with pytest.raises(TypeError, match="x: expected dtype"):
            fn(model, x.float(), y)
        with pytest.raises(ValueError, match=r"y: expected class labels in \[0, 3\]"):
            fn(model, x, torch.tensor([0, 1, 2, 4, 0, 1]))
    with pytest.raises(ValueError, match="a: expected a finite number"):
        L.rosenbrock(a=float("nan"))
    with pytest.raises(TypeError, match="a"):
        L.rosenbrock(a="1")
