"""Plain data across the grader's sandbox boundary: JSON of numbers, strings and arrays, never pickle.

The grader runs a student's function in a sandboxed process only to produce
outputs for the inputs the grader gives it. Inputs go in and outputs come
back through :func:`encode` / :func:`decode`: ``None``, ``bool``, ``int``,
``float``, ``str``, lists, tuples, dicts, tensors and NumPy arrays (dtype,
shape and raw bytes), ``torch.Generator`` states, and the book's autograd
``Value``. Whatever the sandbox sends, the grader's side gets only plain
Python objects and fresh tensors built by its own ``torch``: no subclass, no
``__eq__`` or ``__torch_function__`` of the student's survives the trip.

A ``Value`` that a student's function returns carries its backward rule as
numbers: the sandbox calls the rule on a few probe settings of ``out.grad``
and of the inputs' ``grad``, and the grader rebuilds the rule as the affine
map those probes determine (``v.grad <- a * v.grad + b * out.grad + c``),
checking it against further probes. A rule that is not such a map cannot
be checked and fails.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

__all__ = ["encode", "decode", "dumps", "loads", "WireError", "MAX_BYTES"]

MAX_BYTES = 256 * 1024 * 1024  # one message, either way
_MAX_DEPTH = 12
_TORCH_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
                 "complex64", "complex128")
_PROBES = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.37, -1.3), (-2.0, 0.6))


class WireError(ValueError):
    """A message that is not plain data of the agreed form."""


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


def loads(raw: bytes) -> Any:
    if len(raw) > MAX_BYTES:
        raise WireError(f"message of {len(raw)} bytes is over the limit")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise WireError(f"not JSON: {str(err)[:100]}") from None


def _float(x: float) -> Any:
    return x if math.isfinite(x) else {"f": repr(float(x))}


def encode(obj: Any, objects: list | None = None, *, depth: int = 0, output: bool = False) -> Any:
    """Plain-data form of ``obj``.

    ``objects`` (inputs only): mutable inputs (tensors, generators, Values)
    are appended to it, so that the other side can send back their state
    after the call and an output that *is* an input can refer to it.
    """
    import torch  # noqa: PLC0415

    if depth > _MAX_DEPTH:
        raise WireError("nested too deeply")
    if obj is None or type(obj) is bool:
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int) and not isinstance(obj, bool):
        return int.__index__(obj) if type(obj) is not int else obj
    if isinstance(obj, float):
        return _float(float.__float__(obj))
    if isinstance(obj, str):
        return {"s": str.__str__(obj)} if type(obj) is not str else obj
    if objects is not None and output:
        for k, o in enumerate(objects):
            if obj is o:
                return {"arg": k}
    if isinstance(obj, torch.Tensor):
        t = torch.Tensor.detach(obj).cpu().contiguous()
        name = str(t.dtype).replace("torch.", "")
        if name not in _TORCH_DTYPES:
            raise WireError(f"tensor dtype {name} is not supported")
        if name == "bfloat16":
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        if objects is not None and not output:
            objects.append(obj)
        return {"tensor": name, "shape": list(t.shape), "b64": base64.b64encode(raw).decode()}
    if isinstance(obj, torch.Generator):
        if objects is not None and not output:
            objects.append(obj)
        return {"generator": base64.b64encode(obj.get_state().numpy().tobytes()).decode()}
    try:
        import numpy as np  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        np = None
    if np is not None and isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        if a.dtype.kind not in "biufc":
            raise WireError(f"array dtype {a.dtype} is not supported")
        return {"ndarray": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}
    if np is not None and isinstance(obj, np.generic):
        return encode(obj.item(), objects, depth=depth + 1, output=output)
    value_cls = _value_class()
    if value_cls is not None and isinstance(obj, value_cls):
        if objects is not None and not output:
            objects.append(obj)
            return {"value": _float(float(obj.data)), "grad": _float(float(obj.grad))}
        return _encode_value_output(obj, objects or [])
    if isinstance(obj, (list, tuple)):
        if len(obj) > 1_000_000:
            raise WireError("list too long")
        items = [encode(x, objects, depth=depth + 1, output=output) for x in obj]
        return {"T": items} if isinstance(obj, tuple) else {"L": items}
    if isinstance(obj, dict):
        return {"D": [[encode(k, objects, depth=depth + 1, output=output), encode(v, objects, depth=depth + 1, output=output)]
                      for k, v in obj.items()]}
    raise WireError(f"a {type(obj).__name__} cannot be sent as plain data")


def _value_class():
    try:
        from .autograd import Value  # noqa: PLC0415
    except Exception:  # noqa: BLE001
        return None
    return Value


def _encode_value_output(out: Any, objects: list) -> dict:
    """A Value returned by the student's function: its data, its inputs, and probes of its backward rule."""
    prev = list(getattr(out, "_prev", ()) or ())
    refs = []
    for p in prev:
        k = next((k for k, o in enumerate(objects) if o is p), None)
        if k is None:
            raise WireError("the returned Value depends on a Value that is not an input")
        refs.append(k)
    saved = [p.grad for p in prev], out.grad
    probes = []
    try:
        for g0, u in _PROBES:
            for p in prev:
                p.grad = g0
            out.grad = u
            out._backward()
            probes.append([g0, u, [_float(float(p.grad)) for p in prev]])
    finally:
        for p, g in zip(prev, saved[0]):
            p.grad = g
        out.grad = saved[1]
    return {"value": _float(float(out.data)), "grad": _float(float(out.grad)), "prev": refs, "probes": probes}


def _num(x: Any) -> float:
    if isinstance(x, dict) and set(x) == {"f"} and x["f"] in ("nan", "inf", "-inf"):
        return float(x["f"])
    if type(x) in (int, float):
        return float(x)
    raise WireError(f"expected a number, got {type(x).__name__}")


def decode(obj: Any, objects: list | None = None, *, depth: int = 0, fresh: bool = False) -> Any:
    """Python objects from :func:`encode`'s form, built by this process's own classes.

    ``objects``: on the grader's side, the inputs it sent (an output
    ``{"arg": k}`` is that very object); on the sandbox's side an empty list
    that decoding fills, in the same order as :func:`encode` did.
    """
    import torch  # noqa: PLC0415

    if depth > _MAX_DEPTH:
        raise WireError("nested too deeply")
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is float:
        return obj
    if type(obj) is not dict:
        raise WireError(f"unexpected {type(obj).__name__}")
    keys = set(obj)
    if keys == {"f"}:
        return _num(obj)
    if keys == {"s"} and type(obj["s"]) is str:
        return obj["s"]
    if keys == {"arg"}:
        if objects is None or type(obj["arg"]) is not int or not 0 <= obj["arg"] < len(objects):
            raise WireError("reference to an unknown input")
        return objects[obj["arg"]]
    if keys == {"L"} or keys == {"T"}:
        items = obj.get("L", obj.get("T"))
        if type(items) is not list:
            raise WireError("expected a list")
        out = [decode(x, objects, depth=depth + 1, fresh=fresh) for x in items]
        return tuple(out) if "T" in obj else out
    if keys == {"D"}:
        if type(obj["D"]) is not list:
            raise WireError("expected a list of pairs")
        d = {}
        for pair in obj["D"]:
            if type(pair) is not list or len(pair) != 2:
                raise WireError("expected a list of pairs")
            k = decode(pair[0], objects, depth=depth + 1, fresh=fresh)
            try:
                hash(k)
            except TypeError:
                raise WireError("unhashable dict key") from None
            d[k] = decode(pair[1], objects, depth=depth + 1, fresh=fresh)
        return d
    if keys == {"tensor", "shape", "b64"}:
        t = _tensor(obj)
        if fresh and objects is not None:
            objects.append(t)
        return t
    if keys == {"ndarray", "shape", "b64"}:
        import numpy as np  # noqa: PLC0415

        dt = np.dtype(str(obj["ndarray"]))
        if dt.kind not in "biufc":
            raise WireError(f"array dtype {dt} is not supported")
        raw = _b64(obj["b64"])
        shape = _shape(obj["shape"])
        if len(raw) != math.prod(shape) * dt.itemsize:
            raise WireError("array bytes do not match its shape")
        return np.frombuffer(raw, dtype=dt).reshape(shape).copy()
    if keys == {"generator"}:
        g = torch.Generator()
        g.set_state(torch.frombuffer(bytearray(_b64(obj["generator"])), dtype=torch.uint8).clone())
        if fresh and objects is not None:
            objects.append(g)
        return g
    if keys == {"value", "grad"}:
        v = _value_class()(_num(obj["value"]))
        v.grad = _num(obj["grad"])
        if fresh and objects is not None:
            objects.append(v)
        return v
    if keys == {"value", "grad", "prev", "probes"}:
        return _rebuild_value(obj, objects or [])
    raise WireError(f"unknown form with keys {sorted(keys)[:5]}")


def _b64(s: Any) -> bytes:
    if type(s) is not str:
        raise WireError("expected base64 text")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError:
        raise WireError("bad base64") from None


def _shape(shape: Any) -> tuple[int, ...]:
    if type(shape) is not list or len(shape) > 16 or not all(type(n) is int and 0 <= n < 2**40 for n in shape):
        raise WireError("bad shape")
    return tuple(shape)


def _tensor(obj: dict):
    import torch  # noqa: PLC0415

    name = obj["tensor"]
    if name not in _TORCH_DTYPES:
        raise WireError(f"tensor dtype {name!r} is not supported")
    dtype = getattr(torch, name)
    shape = _shape(obj["shape"])
    raw = _b64(obj["b64"])
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) != math.prod(shape) * itemsize:
        raise WireError("tensor bytes do not match its shape")
    if not raw:
        return torch.empty(shape, dtype=dtype)
    if name == "bfloat16":
        return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(shape).clone()
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def _rebuild_value(obj: dict, objects: list):
    """A grader-side Value whose backward rule is the affine map the probes determine."""
    Value = _value_class()
    refs = obj["prev"]
    if type(refs) is not list or not all(type(k) is int and 0 <= k < len(objects) and isinstance(objects[k], Value) for k in refs):
        raise WireError("a returned Value refers to unknown inputs")
    children = tuple(objects[k] for k in refs)
    probes = obj["probes"]
    if type(probes) is not list or len(probes) != len(_PROBES):
        raise WireError("bad probes of the backward rule")
    table = []
    for (g0, u), p in zip(_PROBES, probes):
        if type(p) is not list or len(p) != 3 or type(p[2]) is not list or len(p[2]) != len(children):
            raise WireError("bad probes of the backward rule")
        table.append([_num(x) for x in p[2]])
    c = table[0]
    b = [table[1][i] - c[i] for i in range(len(children))]
    a = [table[2][i] - c[i] for i in range(len(children))]
    affine = True
    for (g0, u), row in list(zip(_PROBES, table))[3:]:
        for i in range(len(children)):
            want = a[i] * g0 + b[i] * u + c[i]
            if not math.isclose(row[i], want, rel_tol=1e-9, abs_tol=1e-12):
                affine = False
    out = Value(_num(obj["value"]), _children=children, _op="answer")
    out.grad = _num(obj["grad"])

    def _backward():
        if not affine:
            raise AssertionError("the backward rule does not add a fixed multiple of out.grad into the inputs' grad")
        for i, ch in enumerate(children):
            ch.grad = a[i] * ch.grad + b[i] * out.grad + c[i]

    out._backward = _backward
    return out
