"""Input checks added for issue 18 in autograd, regularize and nets."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import autograd, nets, regularize


def test_value_division_by_zero_says_division():
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        autograd.Value(1) / 0
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        2 / autograd.Value(0.0)
    assert (autograd.Value(3.0) / 2).data == 1.5


def test_penalties_name_params_when_it_is_not_a_sequence():
    for bad in (None, 3.0, "w"):
        with pytest.raises(TypeError, match="params"):
            regularize.l1_penalty(bad, 0.1)
        with pytest.raises(TypeError, match="params"):
            regularize.l2_penalty(bad, 0.1)


def test_clip_by_global_norm_refuses_negative_and_nan_max_norm_and_matches_torch():
    g = {"a": torch.randn(3, 2, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    for bad in (-1.0, float("nan"), torch.tensor(-1.0)):
        with pytest.raises(ValueError, match="max_norm"):
            nets.clip_by_global_norm(g, bad)
    with pytest.raises(TypeError, match="max_norm"):
        nets.clip_by_global_norm(g, "1")
    clipped, total = nets.clip_by_global_norm(g, 0.5)
    ps = [torch.nn.Parameter(torch.zeros_like(t)) for t in g.values()]
    for p, t in zip(ps, g.values()):
        p.grad = t.clone()
    ref_total = torch.nn.utils.clip_grad_norm_(ps, 0.5)
    assert float(total) == pytest.approx(float(ref_total), rel=1e-14)
    for p, t in zip(ps, clipped.values()):
        assert torch.allclose(p.grad, t, rtol=1e-14)
    same, _ = nets.clip_by_global_norm(g, math.inf)
    assert all(torch.equal(same[k], g[k]) for k in g)
    # inside vmap a tensor max_norm is not checked (data-dependent) but still works
    out = torch.func.vmap(lambda m: nets.clip_by_global_norm(g, m)[1])(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert out.shape == (2,)
