"""The grader's boundary: only plain data crosses it, and the grader builds every object itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from losslab import _wire as W
from losslab.autograd import Value


def roundtrip(obj):
    return W.decode(W.loads(W.dumps(W.encode(obj))))


def test_plain_values_tensors_arrays_and_generators_round_trip():
    g = torch.Generator().manual_seed(3)
    obj = {"a": [1, 2.5, None, True, "s", (float("nan"), -math.inf)],
           "t": torch.randn(3, 4, dtype=torch.float64), "i": torch.tensor([1, 2], dtype=torch.int64),
           "b": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "e": torch.empty(0, 3),
           "n": np.arange(6, dtype=np.float32).reshape(2, 3), "g": g}
    back = roundtrip(obj)
    assert torch.equal(back["t"], obj["t"]) and back["t"].dtype == torch.float64
    assert torch.equal(back["i"], obj["i"]) and torch.equal(back["b"], obj["b"]) and back["e"].shape == (0, 3)
    assert np.array_equal(back["n"], obj["n"]) and back["n"].dtype == np.float32
    assert torch.equal(back["g"].get_state(), g.get_state())
    assert back["a"][:5] == [1, 2.5, None, True, "s"] and math.isnan(back["a"][5][0]) and back["a"][5][1] == -math.inf
    assert isinstance(back["a"][5], tuple)


def test_subclasses_arrive_as_plain_objects():
    class S(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    class F(float):
        pass

    class T(torch.Tensor):
        pass

    back = roundtrip([S("x"), F(1.5), torch.zeros(2).as_subclass(T)])
    assert type(back[0]) is str and back[0] != "y"
    assert type(back[1]) is float
    assert type(back[2]) is torch.Tensor


@pytest.mark.parametrize("message, match", [
    ({"tensor": "float64", "shape": [3], "b64": "AAAA"}, "do not match"),
    ({"tensor": "object", "shape": [1], "b64": ""}, "not supported"),
    ({"tensor": "float64", "shape": [-1], "b64": ""}, "bad shape"),
    ({"ndarray": "|O", "shape": [1], "b64": ""}, "not supported"),
    ({"pickle": "gASVAAAA"}, "unknown form"),
    ({"arg": 0}, "unknown input"),
    ({"D": [[{"L": [1]}, 1]]}, "unhashable"),
    ({"L": 5}, "expected a list"),
])
def test_malformed_messages_are_refused(message, match):
    with pytest.raises(W.WireError, match=match):
        W.decode(message)


def test_oversized_or_too_deep_messages_are_refused():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(W.WireError):
        W.loads(deep.encode())
    nested: dict = {"L": []}
    cur = nested
    for _ in range(40):
        cur["L"] = [{"L": []}]
        cur = cur["L"][0]
    with pytest.raises(W.WireError, match="deeply"):
        W.decode(json.loads(json.dumps(nested)))


def test_inputs_are_mirrored_and_outputs_that_are_inputs_stay_the_same_object():
    x = torch.tensor([1.0, -2.0])
    objects: list = []
    sent = W.loads(W.dumps(W.encode((x,), objects)))
    theirs: list = []
    (xs,) = W.decode(sent, theirs, fresh=True)
    assert theirs[0] is xs and xs is not x and torch.equal(xs, x)
    reply = W.encode(xs, theirs, output=True)
    assert reply == {"arg": 0} and W.decode(reply, objects) is x


def test_a_returned_value_carries_its_backward_rule_as_numbers():
    def tanh(v, add=True):
        t = math.tanh(v.data)
        out = Value(t, _children=(v,), _op="tanh")

        def _backward():
            if add:
                v.grad += (1 - t ** 2) * out.grad
            else:
                v.grad = (1 - t ** 2) * out.grad
        out._backward = _backward
        return out

    for add in (True, False):
        mine = Value(0.7)
        objects: list = []
        W.encode((mine,), objects)
        theirs: list = []
        (v,) = W.decode(W.loads(W.dumps(W.encode((mine,), []))), theirs, fresh=True)
        rebuilt = W.decode(W.loads(W.dumps(W.encode(tanh(v, add), theirs, output=True))), objects)
        assert rebuilt.data == pytest.approx(math.tanh(0.7))
        mine.grad = 2.0
        rebuilt.grad = 3.0
        rebuilt._backward()
        want = (2.0 if add else 0.0) + (1 - math.tanh(0.7) ** 2) * 3.0
        assert mine.grad == pytest.approx(want, rel=1e-12)
