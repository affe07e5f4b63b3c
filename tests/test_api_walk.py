"""Walk the public compute API with bad arguments: every one is refused with a named error, or has a documented result.

For each function a valid call is written down once (``GOOD``). The walk then
replaces one argument at a time with a bad value of its kind: None, a
string, NaN, inf, a negative or zero number, a bool, an empty tensor, a
tensor holding NaN or inf, an integer tensor, a float32 tensor among float64
ones, a tensor of the wrong shape. Each call must either

- raise ``TypeError`` (a wrong type) or ``ValueError`` (a wrong value)
  whose message names the argument, or
- return, when the value is valid by the function's documentation
  (``ACCEPTED`` lists each such case with the reason; its result is finite).
"""

from __future__ import annotations

import math

import pytest
import torch

from losslab import autograd, landscapes, losses as L, nets, optim as O, regularize as R, schedules as S, train

F64 = torch.float64


def t(*shape, seed=0, low=None):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x.abs() + 0.1 if low == "pos" else torch.sigmoid(x) if low == "prob" else x


LABELS = torch.tensor([0, 2, 1, 2])
PROBS = torch.softmax(t(4, 3, seed=5), 1)

# function name -> (callable, dict of keyword arguments that make a valid call)
GOOD = {
    "mse_loss": (L.mse_loss, dict(input=t(4, 3), target=t(4, 3, seed=1), reduction="mean")),
    "l1_loss": (L.l1_loss, dict(input=t(4, 3), target=t(4, 3, seed=1), reduction="sum")),
    "huber_loss": (L.huber_loss, dict(input=t(4, 3), target=t(4, 3, seed=1), delta=1.0)),
    "smooth_l1_loss": (L.smooth_l1_loss, dict(input=t(4, 3), target=t(4, 3, seed=1), beta=0.5)),
    "log_cosh_loss": (L.log_cosh_loss, dict(input=t(4, 3), target=t(4, 3, seed=1))),
    "quantile_loss": (L.quantile_loss, dict(input=t(4, 3), target=t(4, 3, seed=1), q=0.3)),
    "binary_cross_entropy": (L.binary_cross_entropy, dict(input=t(4, 3, low="prob"), target=t(4, 3, seed=1, low="prob"))),
    "binary_cross_entropy_with_logits": (L.binary_cross_entropy_with_logits,
                                         dict(input=t(4, 3), target=t(4, 3, seed=1, low="prob"), pos_weight=t(3, low="pos"))),
    "focal_loss": (L.focal_loss, dict(input=t(4, 3), target=t(4, 3, seed=1, low="prob"), gamma=2.0, alpha=0.25)),
    "logsumexp": (L.logsumexp, dict(input=t(4, 3))),
    "log_softmax": (L.log_softmax, dict(input=t(4, 3))),
    "softmax": (L.softmax, dict(input=t(4, 3))),
    "nll_loss": (L.nll_loss, dict(input=torch.log(PROBS), target=LABELS, weight=t(3, low="pos"))),
    "cross_entropy": (L.cross_entropy, dict(input=t(4, 3), target=LABELS, weight=t(3, low="pos"), label_smoothing=0.1)),
    "token_cross_entropy": (L.token_cross_entropy, dict(logits=t(2, 2, 3), targets=LABELS.view(2, 2))),
    "entropy": (L.entropy, dict(probs=PROBS)),
    "kl_div": (L.kl_div, dict(input=torch.log(PROBS), target=PROBS.flip(0), reduction="batchmean")),
    "triplet_margin_loss": (L.triplet_margin_loss, dict(anchor=t(4, 3), positive=t(4, 3, seed=1), negative=t(4, 3, seed=2),
                                                        margin=1.0, p=2.0)),
    "contrastive_loss": (L.contrastive_loss, dict(x1=t(4, 3), x2=t(4, 3, seed=1), similar=torch.tensor([1, 0, 1, 0]),
                                                  margin=1.0)),
    "cosine_embedding_loss": (L.cosine_embedding_loss, dict(input1=t(4, 3), input2=t(4, 3, seed=1),
                                                            target=torch.tensor([1, -1, 1, -1]), margin=0.1)),
    "info_nce": (L.info_nce, dict(queries=t(4, 3), keys=t(4, 3, seed=1), temperature=0.1)),
    "expected_calibration_error": (L.expected_calibration_error, dict(probs=PROBS, labels=LABELS, n_bins=5)),
    "gaussian_nll_loss": (L.gaussian_nll_loss, dict(input=t(4, 3), target=t(4, 3, seed=1), var=t(4, 3, seed=2, low="pos"))),
    "poisson_nll_loss": (L.poisson_nll_loss, dict(input=t(4, 3), target=t(4, 3, seed=1, low="pos"))),
    "multi_margin_loss": (L.multi_margin_loss, dict(input=t(4, 3), target=LABELS, p=1, margin=1.0)),
    "soft_margin_loss": (L.soft_margin_loss, dict(input=t(4, 3), target=torch.where(t(4, 3, seed=1) > 0, 1.0, -1.0).double())),
    "multilabel_soft_margin_loss": (L.multilabel_soft_margin_loss, dict(input=t(4, 3), target=t(4, 3, seed=1, low="prob"))),
    "triplet_margin_with_distance_loss": (L.triplet_margin_with_distance_loss,
                                          dict(anchor=t(4, 3), positive=t(4, 3, seed=1), negative=t(4, 3, seed=2), margin=1.0)),
    # optimizers
    **{f"{name}_step": (fn, dict(params=t(4, 3), grads=t(4, 3, seed=1), lr=0.01))
       for name, fn in (("sgd", O.sgd_step), ("adagrad", O.adagrad_step), ("rmsprop", O.rmsprop_step), ("adam", O.adam_step),
                        ("adamw", O.adamw_step), ("nadam", O.nadam_step), ("radam", O.radam_step), ("adamax", O.adamax_step),
                        ("adadelta", O.adadelta_step), ("lion", O.lion_step))},
    "sgd_step+momentum": (O.sgd_step, dict(params=t(4, 3), grads=t(4, 3, seed=1), lr=0.01, momentum=0.9, dampening=0.1,
                                           weight_decay=0.01)),
    "adam_step+betas": (O.adam_step, dict(params=t(4, 3), grads=t(4, 3, seed=1), lr=0.01, betas=(0.9, 0.99), eps=1e-8)),
    "gd_rate": (O.gd_rate, dict(lr=0.1, eigenvalues=[1.0, 10.0])),
    "heavy_ball_rate": (O.heavy_ball_rate, dict(lr=0.1, beta=0.5, eigenvalues=[1.0, 10.0])),
    "heavy_ball_best": (O.heavy_ball_best, dict(mu=1.0, L=10.0)),
    # schedules
    "constant_lr": (S.constant_lr, dict(step=torch.arange(5), base_lr=0.1)),
    "step_lr": (S.step_lr, dict(step=torch.arange(5), base_lr=0.1, step_size=2, gamma=0.5)),
    "exponential_lr": (S.exponential_lr, dict(step=torch.arange(5), base_lr=0.1, gamma=0.9)),
    "polynomial_lr": (S.polynomial_lr, dict(step=torch.arange(5), base_lr=0.1, total=4, power=2.0)),
    "linear_lr": (S.linear_lr, dict(step=torch.arange(5), base_lr=0.1, start_factor=0.5, end_factor=0.1, total=3)),
    "cosine_lr": (S.cosine_lr, dict(step=torch.arange(5), base_lr=0.1, total=4, min_lr=0.01)),
    "linear_warmup_lr": (S.linear_warmup_lr, dict(step=torch.arange(5), base_lr=0.1, warmup=3)),
    "warmup_cosine_lr": (S.warmup_cosine_lr, dict(step=torch.arange(5), base_lr=0.1, warmup=2, total=5)),
    "cyclic_lr": (S.cyclic_lr, dict(step=torch.arange(5), base_lr=0.01, max_lr=0.1, step_size_up=2)),
    "inverse_sqrt_lr": (S.inverse_sqrt_lr, dict(step=torch.arange(5), base_lr=0.1, warmup=2)),
    "cosine_restarts_lr": (S.cosine_restarts_lr, dict(step=torch.arange(5), base_lr=0.1, period=2, period_mult=2)),
    "constant_factor_lr": (S.constant_factor_lr, dict(step=torch.arange(5), base_lr=0.1, factor=0.5, total=2)),
    "multiplicative_lr": (S.multiplicative_lr, dict(step=torch.arange(5), base_lr=0.1, factor=0.9)),
    "cyclic_momentum": (S.cyclic_momentum, dict(step=torch.arange(5), base_momentum=0.8, max_momentum=0.9, step_size_up=2)),
    "range_test_lrs": (S.range_test_lrs, dict(num_steps=5, min_lr=1e-5, max_lr=1.0)),
    # regularization, gradients, landscapes, training helpers
    "l2_penalty": (R.l2_penalty, dict(params=[t(3, 2)], strength=0.1)),
    "l1_penalty": (R.l1_penalty, dict(params=[t(3, 2)], strength=0.1)),
    "soft_threshold": (R.soft_threshold, dict(w=t(3, 2), threshold=0.5)),
    "dropout": (R.dropout, dict(x=t(3, 2), p=0.5)),
    "smooth_labels": (R.smooth_labels, dict(y=LABELS, n_classes=3, smoothing=0.1)),
    "clip_by_global_norm": (nets.clip_by_global_norm, dict(grads={"w": t(3, 2)}, max_norm=1.0)),
    "global_grad_norm": (nets.global_grad_norm, dict(tensors=[t(3, 2)], norm_type=2.0)),
    "rosenbrock": (landscapes.rosenbrock, dict(a=1.0, b=100.0)),
    "quadratic": (landscapes.quadratic, dict(kappa=10.0, angle=0.3)),
    "quadratic_spectrum": (train.quadratic_spectrum, dict(kappa=10.0, dim=5, L=1.0)),
    "sublinear_bound": (train.sublinear_bound, dict(k=torch.arange(1, 5), L=1.0, distance0=2.0)),
}

BAD_NUMBER = {"None": None, "string": "0.1", "nan": math.nan, "inf": math.inf, "-1": -1.0, "0": 0.0, "bool": True}


def bad_tensors(good: torch.Tensor) -> dict:
    out = {"None": None, "string": "tensor", "list": good.tolist() if good.numel() < 50 else [1.0]}
    if good.is_floating_point():
        nan, inf = good.clone(), good.clone()
        nan.view(-1)[0], inf.view(-1)[0] = math.nan, math.inf
        out.update({"nan": nan, "inf": inf, "int": good.round().long(), "float32": good.float(),
                    "empty": good.new_zeros((0,)), "wrong shape": good.reshape(-1)[:1].expand(7).clone()})
    else:
        out.update({"float": good.double() + 0.5, "empty": good.new_zeros((0,)), "wrong shape": good.new_zeros(7),
                    "negative": good - 10**6})
    return out


def bad_values(value):
    if isinstance(value, torch.Tensor):
        return bad_tensors(value)
    if isinstance(value, bool):
        return {"None": None, "string": "yes", "int": 1}
    if isinstance(value, int):
        return {"None": None, "string": "3", "float": 2.5, "-1": -1, "0": 0, "bool": True}
    if isinstance(value, float):
        return BAD_NUMBER
    if isinstance(value, str):
        return {"None": None, "unknown": "bogus", "int": 3}
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], float):
        return {"None": None, "string": "0.9", "short": value[:1], "nan": (math.nan,) * len(value),
                "out of range": (2.0,) * len(value)}
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
        return {"None": None, "string": "w", "empty": [], "nan": [bad_tensors(value[0])["nan"]],
                "int": [bad_tensors(value[0])["int"]]}
    if isinstance(value, dict):
        return {"None": None, "string": "w", "empty": {}}
    return {"None": None, "string": "x"}


# (function, argument, bad kind) -> why the call is valid. Each must return a finite result.
ACCEPTED = {
    # rates, strengths, decays and margins of 0 are valid (a zero step, no penalty, no decay)
    **{(f, "lr", "0"): "a zero learning rate is a valid (no-op) step" for f in GOOD if f.endswith("_step") or "_step+" in f},
    **{(f, a, "0"): "0 disables this term" for f in GOOD for a in ("weight_decay", "momentum", "dampening", "eps", "min_lr",
                                                                    "strength", "threshold", "smoothing", "label_smoothing",
                                                                    "p", "margin", "gamma", "alpha", "beta", "angle",
                                                                    "a", "power", "factor", "end_factor", "base_momentum",
                                                                    "distance0")},
    ("quadratic", "angle", "-1"): "any finite angle", ("rosenbrock", "a", "-1"): "any finite a",
    ("cosine_embedding_loss", "margin", "-1"): "margin in [-1, 1]", ("cosine_embedding_loss", "margin", "0"): "margin in [-1, 1]",
    ("gd_rate", "lr", "0"): "rate of a zero step is 1", ("heavy_ball_rate", "lr", "0"): "rate of a zero step",
    ("heavy_ball_rate", "beta", "0"): "beta = 0 is gradient descent",
    ("linear_warmup_lr", "warmup", "0"): "no warmup", ("smooth_l1_loss", "beta", "0"): "beta = 0 is L1",
    ("dropout", "p", "0"): "p = 0 keeps every unit", ("quantile_loss", "q", "0"): None,
    ("soft_threshold", "threshold", "0"): "no shrinkage",
    ("multi_margin_loss", "margin", "-1"): "any finite margin (PyTorch too)",
    ("triplet_margin_loss", "eps", "0"): "eps >= 0",
    ("global_grad_norm", "norm_type", "inf"): "the max norm",
    ("clip_by_global_norm", "max_norm", "inf"): "inf disables clipping", ("clip_by_global_norm", "max_norm", "0"): "zeroes",
    ("cyclic_lr", "step_size_down", "None"): "default: step_size_up",
    ("focal_loss", "alpha", "None"): "no class weighting",
    **{(f, "weight", "None"): "no weights" for f in GOOD}, **{(f, "pos_weight", "None"): "no weights" for f in GOOD},
    **{(f, "step", "empty"): "an empty schedule" for f in GOOD}, **{(f, "step", "list"): "a list of steps" for f in GOOD},
    **{(f, "k", "list"): "a list of steps" for f in GOOD},
    **{(f, "eigenvalues", "list"): "documented: a sequence" for f in GOOD},
    ("sublinear_bound", "k", "empty"): "no steps, no bounds",
    **{(f, "eigenvalues", k): "any non-empty sequence of finite numbers" for f in ("gd_rate", "heavy_ball_rate")
       for k in ("short", "out of range")},
    **{(f, "step", "wrong shape"): "a schedule takes steps of any shape" for f in GOOD},
    **{(f, a, k): "a function of one tensor of any shape and floating dtype" for f, a in (
        ("logsumexp", "input"), ("log_softmax", "input"), ("softmax", "input"), ("entropy", "probs"),
        ("soft_threshold", "w"), ("dropout", "x"), ("cross_entropy", "input"), ("multi_margin_loss", "input"))
       for k in ("float32", "wrong shape")},
    **{(f, a, "empty"): "an empty tensor gives an empty result" for f, a in (
        ("soft_threshold", "w"), ("dropout", "x"), ("smooth_labels", "y"))},
    ("smooth_labels", "y", "wrong shape"): "labels of any length",
    ("token_cross_entropy", "logits", "float32"): "one floating tensor",
    ("entropy", "probs", "empty"): None,
    ("warmup_cosine_lr", "warmup", "0"): "documented: 0 <= W < T",
    ("expected_calibration_error", "probs", "float32"): "the only floating tensor",
    ("global_grad_norm", "tensors", "empty"): "documented: tensor(0.) for no tensors",
    ("global_grad_norm", "tensors", "nan"): "a non-finite gradient's norm is reported, not refused (chapter 6 measures "
                                            "exploding gradients); the result is NaN, tested below",
    ("global_grad_norm", "norm_type", "string"): None,
}
ACCEPTED = {k: v for k, v in ACCEPTED.items() if v is not None}

NAMES = {"params": ("params", "grads"), "grads": ("grads", "params"), "betas": ("beta", "betas"),
         "targets": ("targets", "target")}

def test_every_good_call_works():
    for name, (fn, kw) in GOOD.items():
        fn(**kw)


def check_one(name, arg, kind, bad):
    """None if the call behaves as documented, else what went wrong."""
    fn, kw = GOOD[name]
    try:
        out = fn(**dict(kw, **{arg: bad}))
    except (TypeError, ValueError) as e:
        if not any(n in str(e) for n in NAMES.get(arg, (arg,))):
            return f"{name}({arg}={kind}) raised {type(e).__name__} without naming {arg}: {e}"
        return None
    except Exception as e:  # noqa: BLE001 - anything else is the failure this test exists to find
        return f"{name}({arg}={kind}) raised {type(e).__name__} from inside: {e}"
    # it returned: only a documented case may, with a finite result
    if (name, arg, kind) not in ACCEPTED:
        return f"{name}({arg}={kind}) was accepted silently"
    if isinstance(out, torch.Tensor):
        if (name, arg, kind) == ("global_grad_norm", "tensors", "nan"):
            return None if bool(torch.isnan(out)) else f"{name}: expected NaN for a NaN gradient"
        if not bool(torch.isfinite(out).all()):
            return f"{name}({arg}={kind}) returned non-finite values"
    return None


@pytest.mark.parametrize("name", sorted(GOOD))
def test_bad_arguments_are_refused_by_name_or_documented(name):
    fn, kw = GOOD[name]
    problems = [check_one(name, arg, kind, bad) for arg, value in kw.items() for kind, bad in bad_values(value).items()]
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_the_walk_covers_many_cases():
    n = sum(len(bad_values(v)) for _, kw in GOOD.values() for v in kw.values())
    assert n > 1000, n


def test_value_refuses_bad_operands():
    with pytest.raises(TypeError, match="data"):
        autograd.Value("1")
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        autograd.Value(1) / 0
