"""Gradients at boundary points (kinks, saturation, zeros) agree with PyTorch's functional forms, on every torch version.

The package's from-scratch pieces must give the gradient PyTorch's own
functions give exactly at the points where a formula has a kink or a 0 * inf:
a chapter started at w = 0 lands on them, and a version-dependent choice
there changes the book's numbers (issue 22: ``(-z).clamp_min(0)`` at z = 0).
Where PyTorch's reference formula itself gives NaN (focal loss at a confident
right answer for 0 < gamma < 1, KL divergence at a zero probability), ours
gives the finite limit, checked against the analytic derivative.

Also: no code path of the package uses ``torch.jit.script``, directly or
through PyTorch's forward-mode decompositions (deprecated, a FutureWarning
on newer torch): the curvature functions run under ``-W error``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from losslab import autograd, losses, nets, regularize

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]


# --- focal loss: 0 < gamma < 1 at p_t -> 1 ---------------------------------------

def _torchvision_focal(z, y, gamma):
    """The reference formula (torchvision.ops.sigmoid_focal_loss, no alpha), written with PyTorch's functions."""
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    return ce * (1 - p_t) ** gamma


def _analytic_focal_grad(z, y, gamma):
    """d/dz of (1 - p_t)^gamma * BCE for a hard target y in {0, 1}, in float64 (m = z for y = 1, -z for y = 0)."""
    s = 2 * y - 1                       # +1 or -1
    m = s * z                           # the margin: p_t = sigmoid(m)
    q = torch.sigmoid(-m)               # 1 - p_t, never rounded to 0 before it underflows
    ce = F.softplus(-m)                 # -log p_t
    return s * (-gamma * torch.sigmoid(m) * q ** gamma * ce - q ** (gamma + 1))


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9, 1.0, 2.0, 5.0])
def test_focal_loss_gradient_is_finite_at_confident_right_answers_and_matches_pytorch(gamma):
    z = torch.tensor([40.0, 60.0, 120.0, 800.0, -40.0, -800.0, 0.0, 2.5, -3.0, 17.0, 36.0, 38.0], dtype=F64)
    y = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=F64)
    ours_z = z.clone().requires_grad_()
    ours = losses.focal_loss(ours_z, y, gamma=gamma, reduction="none")
    ours.sum().backward()
    ref_z = z.clone().requires_grad_()
    ref = _torchvision_focal(ref_z, y, gamma)
    ref.sum().backward()

    assert torch.isfinite(ours_z.grad).all(), ours_z.grad
    finite = torch.isfinite(ref_z.grad)
    if gamma < 1:
        assert not finite.all(), "the reference formula was expected to give NaN at p_t = 1 for gamma < 1"
    # where 1 - p_t is not lost to cancellation in the reference formula (|margin| <= 20), PyTorch's numbers
    moderate = z.abs() <= 20
    assert torch.allclose(ours[moderate], ref.detach()[moderate], rtol=1e-12, atol=0)
    assert torch.allclose(ours_z.grad[moderate], ref_z.grad[moderate], rtol=1e-9, atol=0)
    # everywhere, including where the reference is NaN or rounded: the analytic loss and derivative
    m = (2 * y - 1) * z
    q = torch.sigmoid(-m)
    # BCE's own rounding, about eps * |z| absolute (PyTorch's too), times the factor q^gamma
    bce_err = q ** gamma * 4 * torch.finfo(F64).eps * z.abs().clamp(min=1)
    exact_loss = q ** gamma * F.softplus(-m)
    assert ((ours.detach() - exact_loss).abs() <= 1e-12 * exact_loss + bce_err).all(), (ours, exact_loss)
    exact = _analytic_focal_grad(z, y, gamma)
    # BCE's own gradient, sigmoid(z) - y, rounds to 0 for |z| > 37 in float64 (in PyTorch as here):
    # a missing term of size q^(1 + gamma), far below anything a step could use
    allowed = 1e-9 * exact.abs() + 1.01 * q ** (1 + gamma) + gamma * bce_err
    assert ((ours_z.grad - exact).abs() <= allowed).all(), (ours_z.grad, exact)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_loss_gradient_in_the_target_is_finite_at_hard_labels_and_matches_pytorch(gamma):
    """d loss / d target: the reference formula (linear in y inside, finite where 1 - p_t > 0) at hard
    and soft targets, and the exact derivative at confident answers, where the reference rounds."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(60, generator=g, dtype=F64) * 5
    y = torch.cat([torch.zeros(20, dtype=F64), torch.ones(20, dtype=F64), torch.rand(20, generator=g, dtype=F64)])
    for alpha in (None, 0.25):
        a = y.clone().requires_grad_()
        b = y.clone().requires_grad_()
        ours = losses.focal_loss(z, a, gamma=gamma, alpha=alpha, reduction="none")
        ref = _torchvision_focal(z, b, gamma)
        if alpha is not None:
            ref = (alpha * b + (1 - alpha) * (1 - b)) * ref
        ours.sum().backward()
        ref.sum().backward()
        assert torch.isfinite(a.grad).all(), a.grad
        assert torch.allclose(ours.detach(), ref.detach(), rtol=1e-12, atol=0)
        assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-12), (a.grad - b.grad).abs().max()
    # a confident right answer (y = 1, z = 40): 1 - p_t = sigma(-40), d/dy = -z q^gamma + ce gamma q^(gamma-1) (q' - p')
    zc, yc = torch.tensor([40.0], dtype=F64), torch.tensor([1.0], dtype=F64, requires_grad=True)
    losses.focal_loss(zc, yc, gamma=gamma, reduction="sum").backward()
    q, p = torch.sigmoid(-zc), torch.sigmoid(zc)
    exact = -zc * q ** gamma + F.softplus(-zc) * gamma * q ** (gamma - 1) * (q - p)
    assert torch.allclose(yc.grad, exact, rtol=1e-9), (yc.grad, exact)
    # and the logits' gradient is unchanged by a target that requires grad
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    losses.focal_loss(z1, y, gamma=gamma).backward()
    losses.focal_loss(z2, y.clone().requires_grad_(), gamma=gamma).backward()
    assert torch.equal(z1.grad, z2.grad)


def test_focal_loss_soft_targets_and_alpha_match_pytorch():
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(200, generator=g, dtype=F64) * 8)
    y = torch.rand(200, generator=g, dtype=F64)
    for gamma, alpha in [(0.5, None), (2.0, 0.25), (0.0, 0.7)]:
        a = z.clone().requires_grad_()
        b = z.clone().requires_grad_()
        ours = losses.focal_loss(a, y, gamma=gamma, alpha=alpha)
        ref = _torchvision_focal(b, y, gamma)
        if alpha is not None:
            ref = (alpha * y + (1 - alpha) * (1 - y)) * ref
        ref = ref.mean()
        ours.backward()
        ref.backward()
        assert torch.allclose(ours, ref, rtol=1e-12)
        assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-15)


# --- KL divergence at a zero probability -----------------------------------------

INF = math.inf


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_at_zero_target_probability_is_zero_with_finite_gradients(log_target):
    x = torch.tensor([[-INF, -1.0, -0.5], [-1.2, -2.0, -0.4], [-700.0, -0.1, -3.0]], dtype=F64)  # log q
    p = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.3, 0.7], [0.0, 0.0, 1.0]], dtype=F64)
    t = torch.log(p) if log_target else p
    xo, to = x.clone().requires_grad_(), t.clone().requires_grad_()
    ours = losses.kl_div(xo, to, reduction="none", log_target=log_target)
    ours.sum().backward()
    xr, tr = x.clone().requires_grad_(), t.clone().requires_grad_()
    ref = F.kl_div(xr, tr, reduction="none", log_target=log_target)
    ref.sum().backward()

    zero = p == 0
    assert (ours.detach()[zero] == 0).all(), "0 log 0 = 0: a zero probability contributes nothing"
    assert torch.isfinite(xo.grad).all() and torch.isfinite(to.grad).all(), (xo.grad, to.grad)
    assert (xo.grad[zero] == 0).all() and (to.grad[zero] == 0).all()
    # where PyTorch is finite, the same numbers
    ok = torch.isfinite(ref.detach())
    assert torch.allclose(ours.detach()[ok], ref.detach()[ok], rtol=1e-12, atol=0)
    for o, r in ((xo.grad, xr.grad), (to.grad, tr.grad)):
        fin = torch.isfinite(r)
        assert torch.allclose(o[fin], r[fin], rtol=1e-12, atol=0)
    # the analytic gradients where p > 0: d/dx = -p; d/dp = log p + 1 - x; d/d(log p) = p (log p + 1 - x)
    pos = ~zero
    assert torch.allclose(xo.grad[pos], -p[pos], rtol=1e-12)
    dp = torch.log(p[pos]) + 1 - x[pos]
    assert torch.allclose(to.grad[pos], p[pos] * dp if log_target else dp, rtol=1e-12)


def test_kl_div_reductions_still_match_pytorch_on_random_inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.log_softmax(torch.randn(6, 5, generator=g, dtype=F64) * 4, dim=1)
    p = torch.softmax(torch.randn(6, 5, generator=g, dtype=F64) * 4, dim=1)
    for red in ("mean", "batchmean", "sum"):
        for log_target, t in ((False, p), (True, torch.log(p))):
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            ours = losses.kl_div(a, t, reduction=red, log_target=log_target)
            ref = F.kl_div(b, t, reduction=red, log_target=log_target)
            ours.backward()
            ref.backward()
            assert torch.allclose(ours, ref, rtol=1e-12) and torch.allclose(a.grad, b.grad, rtol=1e-12)


# --- kinks of the rest of the package, against PyTorch's functional forms -------------

def _grad_at(fn, x):
    x = x.clone().requires_grad_()
    fn(x).sum().backward()
    return x.grad


KINKS = torch.tensor([-1.0, -0.0, 0.0, 1e-300, 1.0], dtype=F64)


def test_nets_activations_have_pytorchs_gradient_at_their_kinks():
    for name, phi in nets.ACTIVATIONS.items():
        ref = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu, "linear": lambda z: z}[name]
        assert torch.equal(_grad_at(phi, KINKS), _grad_at(ref, KINKS)), name


def test_hand_written_backward_passes_use_pytorchs_relu_derivative_at_zero():
    want = _grad_at(F.relu, KINKS)  # 0 at z = 0
    # autograd.ACTIVATIONS: the derivative written in terms of the output h = relu(z)
    phi, dphi = autograd.ACTIVATIONS["relu"]
    assert torch.equal(dphi(phi(KINKS)), want)
    # the scalar engine
    for z, w in zip(KINKS.tolist(), want.tolist()):
        v = autograd.Value(z)
        v.relu().backward()
        assert v.grad == w, (z, v.grad, w)


def test_l1_penalty_gradient_at_zero_weights_is_pytorchs_abs_gradient():
    w = torch.tensor([-2.0, 0.0, -0.0, 3.0], dtype=F64)
    ours = _grad_at(lambda t: regularize.l1_penalty([t], 0.5), w)
    ref = _grad_at(lambda t: 0.5 * torch.abs(t).sum(), w)
    assert torch.equal(ours, ref) and ours[1] == 0


def test_binary_cross_entropy_with_logits_at_zero_logit_is_sigmoid_minus_target():
    z = torch.zeros(4, dtype=F64)
    y = torch.tensor([0.0, 1.0, 0.25, 0.5], dtype=F64)
    ours = _grad_at(lambda t: losses.binary_cross_entropy_with_logits(t, y, reduction="sum"), z)
    ref = _grad_at(lambda t: F.binary_cross_entropy_with_logits(t, y, reduction="sum"), z)
    assert torch.equal(ours, ref) and torch.equal(ours, 0.5 - y)


# --- no torch.jit.script on any path of the package --------------------------------

_CURVATURE = textwrap.dedent("""
    import sys, warnings
    import torch
    from losslab import landscapes as L
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    small = L.MLP((4, 5, 3), seed=0, dtype=torch.float64)      # 43 parameters: the exact path
    big = L.MLP((4, 16, 16, 3), seed=0, dtype=torch.float64)   # 403 parameters: Lanczos on products
    P = sum(p.numel() for p in small.parameters())
    v = torch.randn(2, P, generator=g, dtype=torch.float64)
    L.hvp(small, x, y, v); L.hvp(small, x, y, v[0]); L.hessian_matrix(small, x, y)
    L.top_hessian_eigenvalues(small, x, y, k=2); L.top_hessian_eigenvalues(big, x, y, k=1, iters=5)
    L.top_hessian_eigenvalues(big, x, y, k=2, iters=3)
    assert "torch._decomp.decompositions_for_jvp" not in sys.modules, "forward-mode AD loaded the jit decompositions"
    print("ok")
""")


def test_curvature_paths_never_reach_torch_jit_script():
    """A fresh interpreter with deprecation and future warnings as errors (torch 2.14 warns on jit.script)."""
    env = {"PYTHONPATH": str(ROOT / "code"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning",
                          "-c", _CURVATURE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@pytest.mark.filterwarnings("error::DeprecationWarning")
@pytest.mark.filterwarnings("error::FutureWarning")
def test_the_package_has_no_torch_jit_script_call():
    import re

    uses = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "code" / "losslab").rglob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"torch\.jit\.\w+\(|torch\.func\.(jvp|jacfwd|hessian|linearize)\(|forward_ad\.", line)]
    assert not uses, f"jit or forward-mode AD (which loads jit-scripted decompositions) used at {uses}"
