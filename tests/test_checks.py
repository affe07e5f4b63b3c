"""One rule for argument checks (losslab._checks): TypeError for a wrong type, ValueError for a wrong value, the name first."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab import _checks, autograd, data, landscapes, losses, nets, optim, regularize, schedules, train


def test_number_rule():
    assert _checks.number("x", 3) == 3.0 and _checks.number("x", np.float32(0.5)) == 0.5
    assert _checks.number("x", torch.tensor(2.0)) == 2.0
    for bad in (None, "1", True, 1 + 2j, torch.ones(2), [1.0]):
        with pytest.raises(TypeError, match="^x: expected a number"):
            _checks.number("x", bad)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="^x: expected a finite number"):
            _checks.number("x", bad)
    assert _checks.number("x", math.inf, allow_inf=True) == math.inf
    with pytest.raises(ValueError, match=r"^x: expected a number in \(0, 1\], got 0.0"):
        _checks.number("x", 0.0, low=0.0, high=1.0, low_open=True)
    with pytest.raises(ValueError, match="^x: expected a finite number > 0, got -1"):
        _checks.positive("x", -1)
    assert _checks.positive("x", 0, allow_zero=True) == 0.0


def test_count_boolean_choice_tensor_rules():
    assert _checks.count("n", np.int64(3)) == 3
    for bad in (2.0, "2", True, None):
        with pytest.raises(TypeError, match="^n: expected an int"):
            _checks.count("n", bad)
    with pytest.raises(ValueError, match="^n: expected an int >= 1, got 0"):
        _checks.count("n", 0)
    with pytest.raises(TypeError, match="^flag: expected True or False"):
        _checks.boolean("flag", 1)
    with pytest.raises(ValueError, match="^mode: expected one of"):
        _checks.choice("mode", "up", ("min", "max"))
    with pytest.raises(TypeError, match="^mode: expected one of"):
        _checks.choice("mode", 3, ("min", "max"))
    with pytest.raises(TypeError, match="^x: expected a floating-point tensor"):
        _checks.floating("x", torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="^x: expected finite values"):
        _checks.floating("x", torch.tensor([1.0, math.nan]))


# the same mistake in every module gets the same exception type
A_STRING = [
    lambda: schedules.step_lr(3, base_lr="0.1", step_size=2),
    lambda: optim.sgd_step(torch.ones(2), torch.ones(2), {}, lr="0.1"),
    lambda: losses.huber_loss(torch.ones(2), torch.ones(2), delta="1"),
    lambda: losses.quantile_loss(torch.ones(2), torch.ones(2), q="0.5"),
    lambda: landscapes.quadratic(kappa="10"),
    lambda: landscapes.rosenbrock(b="100"),
    lambda: regularize.l2_penalty([torch.ones(2)], "0.1"),
    lambda: nets.clip_grad_value_([torch.ones(2)], "1"),
    lambda: train.quadratic_spectrum("10"),
    lambda: data.digits(n_train="100"),
    lambda: autograd.Value(1.0) ** "2",
]
A_NEGATIVE = [
    lambda: schedules.step_lr(3, base_lr=-0.1, step_size=2),
    lambda: optim.sgd_step(torch.ones(2), torch.ones(2), {}, lr=-0.1),
    lambda: losses.huber_loss(torch.ones(2), torch.ones(2), delta=-1.0),
    lambda: landscapes.quadratic(kappa=-10.0),
    lambda: landscapes.rosenbrock(b=-100.0),
    lambda: regularize.l2_penalty([torch.ones(2)], -0.1),
    lambda: nets.clip_grad_value_([torch.ones(2)], -1.0),
    lambda: train.quadratic_spectrum(10.0, dim=-5),
    lambda: schedules.step_lr(3, base_lr=0.1, step_size=-2),
]


@pytest.mark.parametrize("call", A_STRING)
def test_a_string_where_a_number_belongs_is_a_type_error_everywhere(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize("call", A_NEGATIVE)
def test_a_number_out_of_range_is_a_value_error_everywhere(call):
    with pytest.raises(ValueError):
        call()


def test_no_compute_module_keeps_a_validator_of_its_own_for_numbers():
    """The modules' small validators delegate to _checks (their names stay, as thin wrappers)."""
    import inspect

    for fn in (schedules._number, schedules._rate, schedules._count, schedules._in_range, optim._number,
               losses._positive, landscapes._check_positive, landscapes._check_count, regularize._number,
               train._count, train._positive, nets._real, nets._positive_int, data._check_count):
        assert "_checks." in inspect.getsource(fn), fn.__qualname__
