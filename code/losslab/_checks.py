"""Argument checks shared by the compute modules, with one rule.

- a wrong *type* (a string, None, a bool or a tensor where a number is
  expected, an integer tensor where a floating one is) raises ``TypeError``;
- a wrong *value* of the right type (NaN, inf, out of range, a bad shape)
  raises ``ValueError``;
- the message starts with the argument's name, then says what was expected
  and what came: ``"lr: expected a finite number >= 0, got -1.0"``.

Every validator returns the checked value (a float, an int, a tensor), so a
call reads ``lr = number("lr", lr, low=0)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from typing import Any, Iterator, Sequence

import torch

__all__ = ["number", "positive", "count", "boolean", "choice", "tensor", "floating", "traced", "values_checked",
           "values_trusted"]


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def number(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
           high_open: bool = False, allow_inf: bool = False) -> float:
    """A real number (int, float, NumPy scalar or 0-d real tensor) in the interval; returns a float.

    Raises ``TypeError`` for anything that is not a real number (bool, str,
    None, complex, a tensor with more than one element) and ``ValueError`` for
    NaN, infinity (unless ``allow_inf``) or a value outside the interval.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected a number, got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    what = _interval(low, high, low_open, high_open)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name}: expected {what}, got {value}")
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``)."""
    return number(name, value, low=0.0, low_open=not allow_zero)


def count(name: str, value: Any, low: int = 1) -> int:
    """An int (Python or NumPy, not bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return value


def choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """One of ``options`` (a wrong value of the right type, or any other value, is a ValueError naming them)."""
    if not isinstance(value, (str, type(None))) and all(isinstance(o, str) for o in options):
        raise TypeError(f"{name}: expected one of {tuple(options)}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def tensor(name: str, x: Any, *, ndim: int | None = None) -> torch.Tensor:
    """A ``torch.Tensor`` (of ``ndim`` dimensions, if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")
    return x


def floating(name: str, x: Any, *, ndim: int | None = None, finite: bool = True, nonempty: bool = False) -> torch.Tensor:
    """A floating-point tensor, all finite unless ``finite=False`` (the check is skipped inside torch.func transforms)."""
    x = tensor(name, x, ndim=ndim)
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if finite and not traced(x) and not bool(torch.isfinite(x).all()):
        bad = ~torch.isfinite(x)
        raise ValueError(f"{name}: expected finite values, got {int(bad.sum())} NaN or inf entries")
    return x


def traced(t: torch.Tensor) -> bool:
    """True inside torch.func transforms (vmap, grad), where a data-dependent check cannot run."""
    check = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(check(t)) if check is not None else False


_VALUES_CHECKED = contextvars.ContextVar("losslab_values_checked", default=False)


@contextlib.contextmanager
def values_checked() -> Iterator[None]:
    """Inside, the data-dependent checks of the functions' inputs (all finite) are skipped.

    For a loop that checks every value it passes on itself: ``run_trajectories``
    checks the starting points once and each new position as it is made (finite
    and within the bound), so the test function's own check of the same points,
    a full pass and a host sync per step, would only repeat it. Shape, type and
    dtype checks still run.
    """
    token = _VALUES_CHECKED.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def values_trusted(t: torch.Tensor) -> bool:
    """Whether a data-dependent check of ``t`` is to be skipped: inside :func:`values_checked`, or traced."""
    return _VALUES_CHECKED.get() or traced(t)
