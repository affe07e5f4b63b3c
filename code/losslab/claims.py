"""Claims: what the prose says about the page's own results, executed and checked.

A chapter's words are part of what it computes. Every qualitative statement
that the prose, a caption, an alt text or a quiz explanation makes about the
page's own numbers (A beats B, the curve levels off, the rate matches theory
within 5 %) is stated next to those numbers as a claim::

    from losslab import claim, claims as c

    claim("adam_beats_sgd", c.less(adam_loss, sgd_loss),
          says="Adam ends below plain SGD after 200 steps")
    claim("rate_matches_theory", c.close(rate, theory, rtol=0.05),
          says="the measured rate is within 5% of 1 - 1/kappa")

A false claim raises :class:`ClaimError` naming the claim, what it says and
the numbers, so a page whose words and numbers disagree fails to execute:
``make test`` fails, and so does the book build. A claim prints nothing when it
holds.

The comparison helpers (:func:`less`, :func:`greater`, :func:`close`,
:func:`between`, :func:`increasing`, :func:`decreasing`, :func:`levels_off`,
:func:`ratio_at_least`) return a :class:`Check`: truthy when it holds, and
able to say, with the numbers, what was compared. A plain ``bool`` works too,
with the numbers passed as keywords (``claim(name, a < b, a=a, b=b)``).

Tolerances. Claims must hold wherever the book runs: on a CPU and on a CUDA
GPU, whose floating-point sums differ in the last bits and whose training runs
differ by noise. Where the numbers differ between devices, state the
tolerance in the claim (``close(..., rtol=...)``, ``less(..., margin=...)``)
rather than weaken the sentence. See chapter *How this book works*.

In a reader's live session (Jupyter, Colab, not the book build), a claim
that fails is shown as a visible warning and the notebook goes on, because a
reader's torch, device or edits may legitimately move the numbers; set
``LOSSLAB_CLAIMS=strict`` to raise there too (the build and the tests always
raise).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Check",
    "ClaimError",
    "ClaimWarning",
    "claim",
    "checked",
    "less",
    "greater",
    "close",
    "between",
    "increasing",
    "decreasing",
    "levels_off",
    "ratio_at_least",
    "all_of",
]

CLAIMS_ENV = "LOSSLAB_CLAIMS"


class ClaimError(AssertionError):
    """A claim that the page makes about its own results is false."""


class ClaimWarning(UserWarning):
    """A claim failed in a reader's live session (see the module docstring)."""


@dataclass(frozen=True)
class Check:
    """The outcome of a comparison: truthy when it holds, with a description.

    Attributes
    ----------
    holds : bool
        Whether the comparison holds.
    detail : str
        What was compared, with the numbers (e.g. ``"0.31 < 0.22"``).
    """

    holds: bool
    detail: str

    def __bool__(self) -> bool:
        return self.holds

    def __repr__(self) -> str:
        return f"Check({'holds' if self.holds else 'fails'}: {self.detail})"


@dataclass
class _Record:
    name: str
    says: str
    holds: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


# Every claim made in this process, in order (a notebook's kernel is one process).
checked: list[_Record] = []


def _number(name: str, value: Any) -> float:
    """``value`` as a finite Python float (tensors and arrays of one element too)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{name}: expected a single number, got an array with shape "
                             f"{tuple(getattr(value, 'shape', ()))}") from err
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name}: got NaN; a claim cannot compare NaN")
    return value


def _numbers(name: str, values: Any) -> list[float]:
    if hasattr(values, "detach"):
        values = values.detach().cpu().reshape(-1).tolist()
    elif hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = list(values.reshape(-1).tolist()) if hasattr(values, "reshape") else values.tolist()
    if not isinstance(values, Iterable) or isinstance(values, (str, bytes)):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    out = [_number(f"{name}[{i}]", v) for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name}: expected at least one number, got an empty sequence")
    return out


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _nonnegative(name: str, value: Any) -> float:
    value = _number(name, value)
    if value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value}")
    return value


def less(a: Any, b: Any, *, margin: float = 0.0) -> Check:
    """``a < b - margin``: a is below b by more than ``margin`` (absolute)."""
    a, b, margin = _number("a", a), _number("b", b), _nonnegative("margin", margin)
    extra = f" - {_fmt(margin)}" if margin else ""
    return Check(a < b - margin, f"{_fmt(a)} < {_fmt(b)}{extra}")


def greater(a: Any, b: Any, *, margin: float = 0.0) -> Check:
    """``a > b + margin``: a is above b by more than ``margin`` (absolute)."""
    a, b, margin = _number("a", a), _number("b", b), _nonnegative("margin", margin)
    extra = f" + {_fmt(margin)}" if margin else ""
    return Check(a > b + margin, f"{_fmt(a)} > {_fmt(b)}{extra}")


def ratio_at_least(a: Any, b: Any, factor: float) -> Check:
    """``a >= factor * b`` for positive ``b``: "a is at least ``factor`` times b"."""
    a, b, factor = _number("a", a), _number("b", b), _number("factor", factor)
    if b <= 0:
        raise ValueError(f"b: expected a positive number for a ratio, got {b}")
    return Check(a >= factor * b, f"{_fmt(a)} / {_fmt(b)} = {_fmt(a / b)} >= {_fmt(factor)}")


def close(a: Any, b: Any, *, rtol: float = 0.0, atol: float = 0.0) -> Check:
    """``|a - b| <= atol + rtol * |b|``: a matches b (b is the reference)."""
    a, b = _number("a", a), _number("b", b)
    rtol, atol = _nonnegative("rtol", rtol), _nonnegative("atol", atol)
    if rtol == 0 and atol == 0:
        raise ValueError("rtol, atol: state a tolerance (at least one must be positive)")
    gap = abs(a - b)
    rel = f" (relative {_fmt(gap / abs(b))})" if b else ""
    return Check(gap <= atol + rtol * abs(b),
                 f"|{_fmt(a)} - {_fmt(b)}| = {_fmt(gap)}{rel} <= {_fmt(atol)} + {_fmt(rtol)} * |{_fmt(b)}|")


def between(x: Any, low: Any, high: Any) -> Check:
    """``low <= x <= high``."""
    x, low, high = _number("x", x), _number("low", low), _number("high", high)
    if low > high:
        raise ValueError(f"low, high: expected low <= high, got {low} > {high}")
    return Check(low <= x <= high, f"{_fmt(low)} <= {_fmt(x)} <= {_fmt(high)}")


def _monotone(values: Any, strict: bool, sign: int, what: str) -> Check:
    xs = _numbers("values", values)
    bad = [i for i in range(len(xs) - 1)
           if (sign * (xs[i + 1] - xs[i]) <= 0 if strict else sign * (xs[i + 1] - xs[i]) < 0)]
    shown = ", ".join(_fmt(x) for x in xs[:12]) + (", ..." if len(xs) > 12 else "")
    if bad:
        i = bad[0]
        return Check(False, f"[{shown}] is not {what}: item {i + 1} is {_fmt(xs[i + 1])} after {_fmt(xs[i])}")
    return Check(True, f"[{shown}] is {what}")


def increasing(values: Any, *, strict: bool = True) -> Check:
    """Each value above the one before (``strict=False``: not below it)."""
    return _monotone(values, strict, +1, "increasing" if strict else "non-decreasing")


def decreasing(values: Any, *, strict: bool = True) -> Check:
    """Each value below the one before (``strict=False``: not above it)."""
    return _monotone(values, strict, -1, "decreasing" if strict else "non-increasing")


def levels_off(curve: Any, *, tail: float = 0.25, rtol: float = 0.05) -> Check:
    """The curve has levelled off: over its last ``tail`` fraction it changes by
    at most ``rtol`` relative to the total change from its start.

    Parameters
    ----------
    curve : sequence of numbers, length >= 4
    tail : float in (0, 1)
        The fraction of the curve (from the end) that must be flat.
    rtol : float
        Largest allowed (max - min) over the tail, as a fraction of
        ``|curve[0] - curve[-1]|`` (or of ``|curve[-1]|`` if the curve did not move).
    """
    xs = _numbers("curve", curve)
    if len(xs) < 4:
        raise ValueError(f"curve: expected at least 4 points, got {len(xs)}")
    tail = _number("tail", tail)
    if not 0 < tail < 1:
        raise ValueError(f"tail: expected a fraction in (0, 1), got {tail}")
    rtol = _nonnegative("rtol", rtol)
    k = max(2, int(round(len(xs) * tail)))
    last = xs[-k:]
    spread = max(last) - min(last)
    scale = abs(xs[0] - xs[-1]) or abs(xs[-1]) or 1.0
    return Check(spread <= rtol * scale,
                 f"over the last {k} of {len(xs)} points the curve moves by {_fmt(spread)}, "
                 f"{_fmt(spread / scale)} of its total change {_fmt(scale)} (allowed {_fmt(rtol)})")


def all_of(*checks: Check) -> Check:
    """Every one of ``checks`` holds."""
    if not checks:
        raise ValueError("checks: expected at least one Check")
    for i, c in enumerate(checks):
        if not isinstance(c, Check):
            raise TypeError(f"checks[{i}]: expected a Check, got {type(c).__name__}")
    return Check(all(c.holds for c in checks), "; ".join(c.detail for c in checks))


def _strict() -> bool:
    mode = os.environ.get(CLAIMS_ENV, "").strip().lower()
    if mode == "strict":
        return True
    if mode == "warn":
        return False
    if mode:
        raise ValueError(f"{CLAIMS_ENV}: expected 'strict' or 'warn', got {mode!r}")
    from .book import is_static  # noqa: PLC0415

    return is_static() or bool(os.environ.get("CI")) or "PYTEST_CURRENT_TEST" in os.environ


def claim(name: str, holds: Any, *, says: str = "", **numbers: Any) -> None:
    """State that the page's results support a sentence; raise if they do not.

    Parameters
    ----------
    name : str
        A short identifier, unique on the page (``"adam_beats_sgd"``).
    holds : Check or bool
        The comparison, usually from :func:`less`, :func:`close`, ... A plain
        bool (or a one-element boolean tensor) is accepted too.
    says : str
        The sentence (or its gist) that the claim backs, shown when it fails.
    **numbers
        Values to show in the failure message (useful with a plain bool).

    Returns
    -------
    None
        On purpose, like :func:`losslab.glue`: a cell that ends in a claim
        shows nothing. The record of every claim made in the process is
        :data:`checked`.

    Raises
    ------
    ClaimError
        If the claim is false (in the book build, tests and CI; in a live
        reader session a :class:`ClaimWarning` is shown instead, see the
        module docstring).
    TypeError, ValueError
        If ``name`` is not an identifier or ``holds`` is not a bool or Check.
    """
    if not isinstance(name, str) or not name.replace("-", "_").replace(".", "_").isidentifier():
        raise ValueError(f"name: expected an identifier-like string, got {name!r}")
    if not isinstance(says, str):
        raise TypeError(f"says: expected a string, got {type(says).__name__}")
    if isinstance(holds, Check):
        check = holds
    else:
        if hasattr(holds, "item") and getattr(holds, "numel", lambda: 1)() == 1:
            holds = holds.item()
        if not isinstance(holds, bool):
            raise TypeError(f"holds: expected a Check or a bool, got {type(holds).__name__} "
                            "(compare explicitly, e.g. claims.less(a, b))")
        check = Check(holds, "condition is " + ("true" if holds else "false"))
    shown = {k: (_fmt(_number(k, v)) if not isinstance(v, str) else v) for k, v in numbers.items()}
    checked.append(_Record(name, says, check.holds, check.detail, shown))
    if check.holds:
        return None
    message = f"claim {name!r} is false"
    if says:
        message += f": the text says {says!r}"
    message += f"; the numbers: {check.detail}"
    if shown:
        message += "; " + ", ".join(f"{k} = {v}" for k, v in shown.items())
    if _strict():
        raise ClaimError(message)
    warnings.warn(message + " (this run's numbers differ from the book's run)", ClaimWarning, stacklevel=2)
    return None
