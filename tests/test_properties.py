"""Property-based tests: losses, optimizers, schedules and the autograd engine against PyTorch.

Hypothesis generates shapes, dtypes, reductions, hyperparameters and extreme
values; each property compares values (and gradients) with PyTorch. The
number of examples comes from the profile registered in ``tests/conftest.py``:
"quick" by default (what ``make test`` runs), "long" with
``HYPOTHESIS_PROFILE=long`` (nightly or by hand).

Tolerances, stated per dtype (``|ours - torch| <= atol * scale + rtol * |torch|``):

========  =========  ==========  ================================================
dtype     rtol       atol        where
========  =========  ==========  ================================================
float64   1e-9       1e-12       losses (values, gradients), schedules (1e-12)
float32   2e-5       2e-6        losses: one rounding of the operands' order apart
float64   1e-8       1e-12       optimizers after up to 25 steps
float32   2e-4       1e-5        optimizers after up to 25 steps (float32 state)
========  =========  ==========  ================================================

``scale`` is the magnitude of the inputs (e.g. 1 + |logit offset| for the
gradient of a cross-entropy), since an absolute error of one rounding grows
with it.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch.optim import lr_scheduler as LS

from losslab import losses as L
from losslab import optim as O
from losslab import schedules as S
from losslab.autograd import Value

DTYPES = st.sampled_from([torch.float32, torch.float64])
REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
SEEDS = st.integers(0, 2**31 - 1)
# the cheap properties (a few ms per example) run three times as many examples as the profile's default
CHEAP = settings(max_examples=3 * settings.default.max_examples)
LOSS_TOL = {torch.float64: (1e-9, 1e-12), torch.float32: (2e-5, 2e-6)}
OPT_TOL = {torch.float64: (1e-8, 1e-12), torch.float32: (2e-4, 1e-5)}


def assert_close(ours, ref, tol, scale=1.0, what=""):
    rtol, atol = tol
    ours, ref = ours.detach().double(), ref.detach().double()
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    both_inf = (torch.isinf(ref) & (ours == ref)) | (torch.isnan(ref) & torch.isnan(ours))  # the same inf, or NaN in both
    err = torch.where(both_inf, torch.zeros_like(ref), (ours - ref).abs())
    bound = atol * scale + rtol * torch.where(both_inf, torch.zeros_like(ref), ref.abs())
    assert bool((err <= bound).all()), f"{what}: max error {float((err - bound).max()):.3g} over the bound"


def randn(shape, seed, dtype, scale=1.0):
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale).to(dtype)


def grads_of(fn, *tensors):
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    out.sum().backward()
    return out, [t.grad for t in leaves]


# --- losses -------------------------------------------------------------------------

@given(dtype=DTYPES, n=st.integers(1, 5), c=st.integers(2, 6), spatial=st.sampled_from([(), (3,)]),
       offset=st.sampled_from([0.0, 1e4, -1e4, 1e8, 1e15]), spread=st.sampled_from([1e-3, 1.0, 30.0]),
       ties=st.booleans(), reduction=REDUCTIONS, smoothing=st.sampled_from([0.0, 0.1, 1.0]),
       weighted=st.booleans(), ignore=st.booleans(), prob_target=st.booleans(), seed=SEEDS)
def test_cross_entropy_matches_torch(dtype, n, c, spatial, offset, spread, ties, reduction, smoothing, weighted, ignore,
                                     prob_target, seed):
    if dtype == torch.float32 and abs(offset) > 1e4:
        offset = 1e4 * (1 if offset > 0 else -1)
    z = randn((n, c, *spatial), seed, torch.float64, spread) + offset
    if ties:
        z[:, 1] = z[:, 0]
    z = z.to(dtype)
    w = randn((c,), seed + 1, dtype).abs() + 0.1 if weighted else None
    if prob_target:
        y = torch.softmax(randn((n, c, *spatial), seed + 2, torch.float64, 3.0), 1).to(dtype)
        kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    else:
        y = torch.randint(0, c, (n, *spatial), generator=torch.Generator().manual_seed(seed))
        if ignore:
            y.view(-1)[0] = -100
        if ignore and y.numel() == 1 and reduction == "mean":
            return  # mean over no counted target: NaN in both, tested elsewhere
        kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing, ignore_index=-100)
    ours, (g_ours,) = grads_of(lambda t: L.cross_entropy(t, y, **kw), z)
    ref, (g_ref,) = grads_of(lambda t: F.cross_entropy(t, y, **kw), z)
    tol = LOSS_TOL[dtype]
    assert_close(ours, ref, tol, scale=1.0 + spread, what="value")
    assert_close(g_ours, g_ref, tol, scale=1.0, what="gradient")


@given(dtype=DTYPES, shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       offset=st.sampled_from([0.0, 1e3, -1e4, 1e30, -1e300]), spread=st.sampled_from([1e-6, 1.0, 100.0]), seed=SEEDS,
       dim_pick=st.integers(0, 2))
def test_logsumexp_log_softmax_softmax_match_torch_at_extremes(dtype, shape, offset, spread, seed, dim_pick):
    if dtype == torch.float32 and abs(offset) > 1e30:
        offset = 1e30
    dim = dim_pick % len(shape)
    x = (randn(shape, seed, torch.float64, spread) + offset).to(dtype)
    tol = LOSS_TOL[dtype]
    # The reference is PyTorch in float64 on the same (exactly representable) inputs. PyTorch's own float32
    # logsumexp gradient, exp(x - lse), is off by up to 3e-5 next to ties at large logits (lse rounded first);
    # the gradient of logsumexp is the softmax, which PyTorch computes precisely: that is the reference for it.
    for ours_fn, ref_fn, ref_grad in ((lambda t: L.log_softmax(t, dim), lambda t: F.log_softmax(t, dim), None),
                                      (lambda t: L.softmax(t, dim), lambda t: F.softmax(t, dim), None),
                                      (lambda t: L.logsumexp(t, dim), lambda t: torch.logsumexp(t, dim),
                                       lambda t: F.softmax(t, dim))):
        ours, (g_ours,) = grads_of(ours_fn, x)
        ref, (g_ref,) = grads_of(ref_fn, x.double())
        if ref_grad is not None:
            g_ref = ref_grad(x.double())
        assert ours.dtype == dtype
        assert_close(ours, ref, tol, scale=1.0 + spread, what="value")
        assert_close(g_ours, g_ref, tol, scale=1.0, what="gradient")


ELEMENTWISE = st.sampled_from(["mse", "l1", "huber", "smooth_l1", "bce_logits", "bce", "soft_margin", "poisson",
                               "poisson_rate", "gaussian"])


@CHEAP
@given(name=ELEMENTWISE, dtype=DTYPES, shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), reduction=REDUCTIONS,
       scale=st.sampled_from([1e-3, 1.0, 1e3]), param=st.floats(0.01, 5.0), extreme=st.booleans(), seed=SEEDS)
def test_elementwise_losses_match_torch(name, dtype, shape, reduction, scale, param, extreme, seed):
    shape = tuple(shape)
    x = randn(shape, seed, torch.float64, scale)
    t = randn(shape, seed + 1, torch.float64, scale)
    kw = dict(reduction=reduction)
    if name == "mse":
        ours_fn, ref_fn = L.mse_loss, F.mse_loss
    elif name == "l1":
        ours_fn, ref_fn = L.l1_loss, F.l1_loss
    elif name == "huber":
        ours_fn, ref_fn, kw = L.huber_loss, F.huber_loss, dict(kw, delta=param)
    elif name == "smooth_l1":
        ours_fn, ref_fn, kw = L.smooth_l1_loss, F.smooth_l1_loss, dict(kw, beta=param)
    elif name == "bce_logits":
        x = x * (1e4 if extreme else 1.0)
        t = torch.sigmoid(t)
        ours_fn, ref_fn = L.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits
        kw = dict(kw, pos_weight=torch.full(shape[-1:] or (), param, dtype=dtype))
    elif name == "bce":
        x = torch.sigmoid(x * (1e3 if extreme else 1.0))  # exact 0 and 1 among them when extreme
        t = torch.sigmoid(t)
        ours_fn, ref_fn = L.binary_cross_entropy, F.binary_cross_entropy
    elif name == "soft_margin":
        x = x * (1e3 if extreme else 1.0)
        t = torch.where(t > 0, 1.0, -1.0).double()
        # PyTorch's soft_margin_loss forms log(1 + exp(-y z)): inf (value) and NaN (gradient) once exp overflows
        # (|z| > 88 in float32). The reference is the same loss through torch's stable softplus.
        ours_fn = L.soft_margin_loss

        def ref_fn(a, b, reduction):
            loss = F.softplus(-b * a)
            return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
    elif name == "poisson":
        x = x.clamp(-30, 30)
        t = t.abs().round()
        ours_fn, ref_fn, kw = L.poisson_nll_loss, F.poisson_nll_loss, dict(kw, full=extreme)
    elif name == "poisson_rate":
        x = x.abs()
        t = t.abs().round()
        ours_fn, ref_fn, kw = L.poisson_nll_loss, F.poisson_nll_loss, dict(kw, log_input=False)
    else:
        var = randn(shape, seed + 2, torch.float64, scale).abs().to(dtype)
        ours_fn = lambda a, b, **k: L.gaussian_nll_loss(a, b, var, full=extreme, **k)  # noqa: E731
        ref_fn = lambda a, b, **k: F.gaussian_nll_loss(a, b, var, full=extreme, **k)  # noqa: E731
    x, t = x.to(dtype), t.to(dtype)
    ours, (g_ours,) = grads_of(lambda a: ours_fn(a, t, **kw), x)
    ref, (g_ref,) = grads_of(lambda a: ref_fn(a, t, **kw), x)
    tol = LOSS_TOL[dtype]
    if name == "bce" and dtype == torch.float32:
        tol = (tol[0], 1e-4)  # the log near p = 1 in float32: log1p(-p) of a rounded p
    big = max(1.0, scale * scale) if name in ("mse", "gaussian") else max(1.0, scale)
    assert_close(ours, ref, tol, scale=big * (1e4 if extreme else 1.0), what=f"{name} value")
    assert_close(g_ours, g_ref, tol, scale=big * (1e12 if name == "bce" and extreme else 1.0), what=f"{name} gradient")


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")  # torch's kl_div "mean" notice
@given(dtype=DTYPES, n=st.integers(1, 5), c=st.integers(2, 5), reduction=REDUCTIONS, seed=SEEDS,
       p=st.sampled_from([1, 2]), margin=st.floats(0.1, 3.0), weighted=st.booleans(), swap=st.booleans())
def test_class_and_embedding_losses_match_torch(dtype, n, c, reduction, seed, p, margin, weighted, swap):
    tol = LOSS_TOL[dtype]
    z = randn((n, c), seed, dtype, 2.0)
    y = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))
    w = randn((c,), seed + 1, dtype).abs() if weighted else None
    logp = F.log_softmax(z, 1)
    pairs = [
        (lambda a: L.nll_loss(a, y, weight=w, reduction=reduction), lambda a: F.nll_loss(a, y, weight=w, reduction=reduction), logp),
        (lambda a: L.multi_margin_loss(a, y, p=p, margin=margin, weight=w, reduction=reduction),
         lambda a: F.multi_margin_loss(a, y, p=p, margin=margin, weight=w, reduction=reduction), z),
        (lambda a: L.multilabel_soft_margin_loss(a, (z > 0).to(dtype), weight=w, reduction=reduction),
         lambda a: F.multilabel_soft_margin_loss(a, (z > 0).to(dtype), weight=w, reduction=reduction), z),
        (lambda a: L.kl_div(a, torch.softmax(z.flip(0), 1), reduction=reduction),
         lambda a: F.kl_div(a, torch.softmax(z.flip(0), 1), reduction=reduction), logp),
    ]
    anchor, pos, neg = (randn((n, c), seed + k, dtype) for k in (2, 3, 4))
    pairs.append((lambda a: L.triplet_margin_with_distance_loss(a, pos, neg, margin=margin, swap=swap, reduction=reduction),
                  lambda a: F.triplet_margin_with_distance_loss(a, pos, neg, margin=margin, swap=swap, reduction=reduction),
                  anchor))
    for ours_fn, ref_fn, x in pairs:
        ours, (g_ours,) = grads_of(ours_fn, x.detach())
        ref, (g_ref,) = grads_of(ref_fn, x.detach())
        assert_close(ours, ref, tol, scale=10.0, what="value")
        assert_close(g_ours, g_ref, tol, scale=10.0, what="gradient")


# --- optimizers -----------------------------------------------------------------------

@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


BETA = st.floats(0.0, 0.999)
# The second-moment decay from 0.5: below, the denominator is a one- or two-gradient estimate, the step a ratio of
# two roundings, and a float32 run whose gradient is dominated by weight decay drifts from torch's by more than its
# tolerance within a dozen steps (found by the long profile: Adamax, beta2 = 0, float32; a conditioning effect,
# torch's float32 run drifts from its own float64 run as much).
BETA2 = st.floats(0.5, 0.9999)
OPTIMIZERS = {
    "sgd": (O.sgd_step, torch.optim.SGD, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.5)), momentum=d.draw(st.floats(0, 0.99)),
                                                        dampening=d.draw(st.floats(0, 0.9)))),
    "nesterov": (O.sgd_step, torch.optim.SGD, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.5)), momentum=d.draw(st.floats(0.01, 0.99)),
                                                             nesterov=True)),
    "adagrad": (O.adagrad_step, torch.optim.Adagrad, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.5)),
                                                                    lr_decay=d.draw(st.floats(0, 0.1)))),
    # centered RMSprop with alpha near 0 takes the square root of a one-sample variance, g^2 - g^2: a rounding
    # either side of 0 (NaN or not, in torch as here); alpha >= 0.5 keeps the estimate an average
    "rmsprop": (O.rmsprop_step, torch.optim.RMSprop, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.05)), alpha=d.draw(st.floats(0.5, 0.999)),
                                                                    momentum=d.draw(st.floats(0, 0.9)), centered=d.draw(st.booleans()))),
    "adam": (O.adam_step, torch.optim.Adam, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.1)), betas=(d.draw(BETA), d.draw(BETA2)),
                                                           amsgrad=d.draw(st.booleans()))),
    "adamw": (O.adamw_step, torch.optim.AdamW, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.1)), betas=(d.draw(BETA), d.draw(BETA2)),
                                                              amsgrad=d.draw(st.booleans()))),
    "nadam": (O.nadam_step, torch.optim.NAdam, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.1)), betas=(d.draw(BETA), d.draw(BETA2)),
                                                              momentum_decay=d.draw(st.floats(0, 0.01)),
                                                              decoupled_weight_decay=d.draw(st.booleans()))),
    "radam": (O.radam_step, torch.optim.RAdam, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.1)), betas=(d.draw(BETA), d.draw(BETA2)),
                                                              decoupled_weight_decay=d.draw(st.booleans()))),
    "adamax": (O.adamax_step, torch.optim.Adamax, lambda d: dict(lr=d.draw(st.floats(1e-4, 0.1)), betas=(d.draw(BETA), d.draw(BETA2)))),
    "adadelta": (O.adadelta_step, torch.optim.Adadelta, lambda d: dict(lr=d.draw(st.floats(0.01, 2.0)), rho=d.draw(BETA))),
}


@CHEAP
@given(name=st.sampled_from(sorted(OPTIMIZERS)), dtype=DTYPES, shape=st.lists(st.integers(1, 4), min_size=1, max_size=2),
       steps=st.integers(1, 25), grad_scale=st.sampled_from([1e-8, 1.0, 1e6]), weight_decay=st.sampled_from([0.0, 0.01, 0.3]),
       maximize=st.booleans(), seed=SEEDS, data=st.data())
def test_optimizers_match_torch_optim(name, dtype, shape, steps, grad_scale, weight_decay, maximize, seed, data):
    step_fn, cls, draw = OPTIMIZERS[name]
    hyper = dict(draw(data), weight_decay=weight_decay, maximize=maximize)
    if name == "rmsprop" and hyper["centered"] and grad_scale > 1:
        grad_scale = 1.0  # centered RMSprop subtracts two squares of 1e12: cancellation in torch too
    shape = tuple(shape)
    p0 = randn(shape, seed, dtype)
    grads = [randn(shape, seed + 1 + t, dtype, grad_scale) for t in range(steps)]
    p, state = p0.clone(), {}
    with default_dtype(torch.float64 if dtype == torch.float64 else torch.float32):
        ref = torch.nn.Parameter(p0.clone())
        opt = cls([ref], **hyper)
        for g in grads:
            p, state = step_fn(p, g, state, **hyper)
            ref.grad = g.clone()
            opt.step()
    assert p.dtype == dtype
    assert_close(p, ref, OPT_TOL[dtype], scale=1.0 + float(p0.abs().max()), what=f"{name} {hyper}")


# --- schedules ------------------------------------------------------------------------

def torch_lrs(make, n, lr, momentum=0.9):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(out, dtype=torch.float64)


@CHEAP
@given(kind=st.sampled_from(["step", "exponential", "linear", "cosine", "polynomial", "constant", "restarts", "cyclic",
                             "multistep"]),
       base_lr=st.floats(1e-6, 10.0), n=st.integers(1, 80), data=st.data())
def test_schedules_match_torch_lr_scheduler(kind, base_lr, n, data):
    t = torch.arange(n)
    if kind == "step":
        size, gamma = data.draw(st.integers(1, 20)), data.draw(st.floats(0.01, 1.3))
        ours, ref = S.step_lr(t, base_lr=base_lr, step_size=size, gamma=gamma), torch_lrs(lambda o: LS.StepLR(o, size, gamma), n, base_lr)
    elif kind == "exponential":
        gamma = data.draw(st.floats(0.5, 1.2))
        ours, ref = S.exponential_lr(t, base_lr=base_lr, gamma=gamma), torch_lrs(lambda o: LS.ExponentialLR(o, gamma), n, base_lr)
    elif kind == "linear":
        start, end, total = data.draw(st.floats(0.01, 1.0)), data.draw(st.sampled_from([0.0, 0.3, 1.0])), data.draw(st.integers(1, 60))
        ours = S.linear_lr(t, base_lr=base_lr, start_factor=start, end_factor=end, total=total)
        ref = torch_lrs(lambda o: LS.LinearLR(o, start_factor=start, end_factor=end, total_iters=total), n, base_lr)
        assert float(ours.min()) >= 0.0
        ref = ref.clamp_min(0.0)  # torch's recursive form can dip a rounding below 0 at the end: ours is exact
        assert_close(ours, ref, (1e-9, 1e-15), scale=base_lr)
        return
    elif kind == "cosine":
        total, eta_min = data.draw(st.integers(1, 100)), data.draw(st.floats(0.0, 1.0)) * base_lr
        ours = S.cosine_lr(t.clamp(max=total), base_lr=base_lr, total=total, min_lr=eta_min)
        ref = torch_lrs(lambda o: LS.CosineAnnealingLR(o, T_max=total, eta_min=eta_min), min(n, total + 1), base_lr)
        ours = ours[: len(ref)]
    elif kind == "polynomial":
        total, power = data.draw(st.integers(1, 60)), data.draw(st.floats(0.1, 3.0))
        ours = S.polynomial_lr(t, base_lr=base_lr, total=total, power=power)
        ref = torch_lrs(lambda o: LS.PolynomialLR(o, total_iters=total, power=power), n, base_lr)
    elif kind == "constant":
        factor, total = data.draw(st.floats(0.01, 1.0)), data.draw(st.integers(1, 30))
        ours = S.constant_factor_lr(t, base_lr=base_lr, factor=factor, total=total)
        ref = torch_lrs(lambda o: LS.ConstantLR(o, factor=factor, total_iters=total), n, base_lr)
    elif kind == "restarts":
        t0, mult = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 3))
        ours = S.cosine_restarts_lr(t, base_lr=base_lr, period=t0, period_mult=mult)
        ref = torch_lrs(lambda o: LS.CosineAnnealingWarmRestarts(o, T_0=t0, T_mult=mult), n, base_lr)
    elif kind == "multistep":
        ms = data.draw(st.lists(st.integers(1, 80), max_size=5))
        gamma = data.draw(st.floats(0.01, 1.0))
        ours = S.multistep_lr(t, base_lr=base_lr, milestones=ms, gamma=gamma)
        ref = torch_lrs(lambda o: LS.MultiStepLR(o, ms, gamma), n, base_lr)
    else:
        up, down = data.draw(st.integers(1, 15)), data.draw(st.one_of(st.none(), st.integers(1, 15)))
        mode = data.draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
        gamma, top = data.draw(st.floats(0.9, 1.0)), base_lr * data.draw(st.floats(1.0, 10.0))
        ours = S.cyclic_lr(t, base_lr=base_lr, max_lr=top, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma)
        ref = torch_lrs(lambda o: LS.CyclicLR(o, base_lr=base_lr, max_lr=top, step_size_up=up, step_size_down=down,
                                              mode=mode, gamma=gamma), n, base_lr)
    assert_close(ours, ref, (1e-9, 1e-15), scale=base_lr, what=kind)


# --- the autograd engine ----------------------------------------------------------------

OPS = st.sampled_from(["add", "sub", "mul", "div", "pow", "exp", "log", "tanh", "relu", "sigmoid"])


@CHEAP
@given(leaves=st.lists(st.floats(-3.0, 3.0, allow_subnormal=False), min_size=1, max_size=4),
       program=st.lists(st.tuples(OPS, st.integers(0, 100), st.integers(0, 100), st.sampled_from([2, 3, -1, 0.5])),
                        min_size=1, max_size=12))
def test_autograd_engine_matches_torch_on_generated_expressions(leaves, program):
    vals = [Value(v) for v in leaves]
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaves]
    pool = list(zip(vals, ts))
    for op, i, j, k in program:
        (a, ta), (b, tb) = pool[i % len(pool)], pool[j % len(pool)]
        if op == "add":
            new = (a + b, ta + tb)
        elif op == "sub":
            new = (a - b, ta - tb)
        elif op == "mul":
            new = ((a * b).tanh(), torch.tanh(ta * tb))  # keep magnitudes bounded along long chains
        elif op == "div":
            new = (a / (b * b + 0.5), ta / (tb * tb + 0.5))
        elif op == "pow":
            new = ((a * a + 0.3) ** k, (ta * ta + 0.3) ** k) if k in (-1, 0.5) else (a.tanh() ** k, torch.tanh(ta) ** k)
        elif op == "exp":
            new = (a.tanh().exp(), torch.tanh(ta).exp())
        elif op == "log":
            new = ((a * a + 0.1).log(), (ta * ta + 0.1).log())
        elif op == "tanh":
            new = (a.tanh(), torch.tanh(ta))
        elif op == "relu":
            new = (a.relu(), torch.relu(ta))
        else:
            new = (a.sigmoid(), torch.sigmoid(ta))
        pool.append(new)
    out, tout = pool[-1]
    out.backward()
    if tout.requires_grad:
        tout.backward()
    assert out.data == pytest.approx(float(tout.detach()), rel=1e-12, abs=1e-12)
    for v, t in zip(vals, ts):
        ref = 0.0 if t.grad is None else float(t.grad)
        assert v.grad == pytest.approx(ref, rel=1e-9, abs=1e-10)
