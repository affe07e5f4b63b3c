"""losslab.claims: sentences about a page's results are executed checks."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losslab import claim, claims as c

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setenv(c.CLAIMS_ENV, "strict")


@given(finite, finite)
def test_less_and_greater_agree_with_python(a, b):
    assert bool(c.less(a, b)) == (a < b)
    assert bool(c.greater(a, b)) == (a > b)


@given(finite, finite, st.floats(min_value=0, max_value=1e6))
def test_margin_demands_a_gap(a, b, margin):
    assert bool(c.less(a, b, margin=margin)) == (a < b - margin)
    assert bool(c.greater(a, b, margin=margin)) == (a > b + margin)


@given(finite, finite, st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_close_is_numpys_isclose_with_b_as_reference(a, b, rtol, atol):
    if rtol == 0 and atol == 0:
        return
    assert bool(c.close(a, b, rtol=rtol, atol=atol)) == bool(np.isclose(a, b, rtol=rtol, atol=atol))


def test_close_needs_a_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        c.close(1.0, 1.0)


def test_tensors_and_numpy_scalars_are_numbers():
    assert c.less(torch.tensor(0.5), np.float64(0.75))
    assert c.close(torch.tensor([2.0]), 2.0, rtol=1e-12)
    with pytest.raises(ValueError, match="single number"):
        c.less(torch.tensor([1.0, 2.0]), 3.0)


@pytest.mark.parametrize("bad", [float("nan"), torch.tensor(float("nan"))])
def test_nan_is_refused_not_compared(bad):
    with pytest.raises(ValueError, match="NaN"):
        c.less(bad, 1.0)


def test_wrong_types_are_named():
    with pytest.raises(TypeError, match="a: expected a real number"):
        c.less("0.1", 1.0)
    with pytest.raises(TypeError, match="a: expected a real number"):
        c.less(True, 1.0)
    with pytest.raises(TypeError, match="holds: expected a Check or a bool"):
        claim("x", 0.3)
    with pytest.raises(ValueError, match="name"):
        claim("not a name", True)


@given(st.lists(finite, min_size=1, max_size=30))
def test_monotone_checks_agree_with_sorting(xs):
    strictly_up = all(x < y for x, y in zip(xs, xs[1:]))
    weakly_down = all(x >= y for x, y in zip(xs, xs[1:]))
    assert bool(c.increasing(xs)) == strictly_up
    assert bool(c.decreasing(xs, strict=False)) == weakly_down


def test_levels_off_tells_a_plateau_from_a_slope():
    t = torch.arange(200, dtype=torch.float64)
    plateau = 1 + torch.exp(-t / 10)  # flat after ~50 steps
    slope = 1 - t / 200  # still falling at the end
    assert c.levels_off(plateau)
    assert not c.levels_off(slope)
    with pytest.raises(ValueError, match="at least 4"):
        c.levels_off([1.0, 2.0])


def test_ratio_and_between():
    assert c.ratio_at_least(10.0, 2.0, 5)
    assert not c.ratio_at_least(9.99, 2.0, 5)
    with pytest.raises(ValueError, match="positive"):
        c.ratio_at_least(1.0, 0.0, 2)
    assert c.between(0.5, 0, 1) and not c.between(1.5, 0, 1)
    with pytest.raises(ValueError, match="low <= high"):
        c.between(0.5, 1, 0)


def test_all_of_needs_every_check():
    assert c.all_of(c.less(1, 2), c.greater(3, 2))
    assert not c.all_of(c.less(1, 2), c.greater(1, 2))


def test_a_true_claim_is_silent_and_recorded(capsys):
    before = len(c.checked)
    out = claim("adam_beats_sgd", c.less(0.1, 0.2), says="Adam ends below SGD")
    assert out is None and capsys.readouterr() == ("", "")
    assert c.checked[before].name == "adam_beats_sgd" and c.checked[before].holds


def test_a_false_claim_fails_naming_the_claim_the_sentence_and_the_numbers():
    with pytest.raises(c.ClaimError) as info:
        claim("adam_beats_sgd", c.less(0.31, 0.22), says="Adam ends below SGD")
    msg = str(info.value)
    assert "adam_beats_sgd" in msg and "Adam ends below SGD" in msg and "0.31 < 0.22" in msg


def test_a_plain_bool_shows_the_numbers_given():
    with pytest.raises(c.ClaimError, match=r"ratio = 13\.9"):
        claim("ten_times", 13.9 < 10.5, says="ten times lower", ratio=13.9)
    claim("tensor_bool", torch.tensor(True))


def test_live_sessions_warn_instead_of_raising(monkeypatch):
    monkeypatch.setenv(c.CLAIMS_ENV, "warn")
    with pytest.warns(c.ClaimWarning, match="differ from the book's run"):
        claim("x", c.less(2, 1))
    assert not c.checked[-1].holds


def test_the_build_always_raises(monkeypatch):
    monkeypatch.delenv(c.CLAIMS_ENV)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("LOSSLAB_STATIC", "1")
    with pytest.raises(c.ClaimError):
        claim("x", c.less(2, 1))


def test_a_bad_mode_is_named(monkeypatch):
    monkeypatch.setenv(c.CLAIMS_ENV, "sometimes")
    with pytest.raises(ValueError, match="LOSSLAB_CLAIMS"):
        claim("x", c.less(2, 1))


def test_levels_off_reports_the_fraction():
    check = c.levels_off([4.0, 2.0, 1.5, 1.4, 1.3, 1.0, 0.5, 0.0], tail=0.25)
    assert not check and "0.125" in check.detail  # 0.5 of a total change of 4
