"""Exercises for book/how_this_book_works.ipynb."""

import torch

from . import Exercise

relu = Exercise(
    id="demo.relu",
    title="ReLU",
    entry="relu",
    prompt="Write `relu(x)`: return $\\max(x, 0)$ elementwise, as a new tensor, leaving `x` unchanged; "
           "like `torch.nn.functional.relu`, a NaN in `x` stays NaN.",
    stub='''
import torch

def relu(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0) elementwise; x is any shape; returns a new tensor."""
    # YOUR CODE HERE
    raise NotImplementedError()
''',
    solution='''
import torch

def relu(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0) elementwise; x is any shape; returns a new tensor."""
    return torch.where(x < 0, torch.zeros_like(x), x)  # NaN < 0 is False: NaN passes through, as in F.relu
''',
    wrong=(
        "def relu(x):\n    return x\n",
        "import torch\ndef relu(x):\n    return torch.abs(x)\n",
        "import torch\ndef relu(x):\n    return torch.clamp(x, max=0)\n",
        "def relu(x):\n    return x.clamp_(min=0)\n",
        "def relu(x):\n    return [max(v, 0.0) for v in x.tolist()]\n",
        # every comparison with NaN is False, so `x > 0` sends NaN to 0 and hides it
        "import torch\ndef relu(x):\n    return torch.where(x > 0, x, torch.zeros_like(x))\n",
    ),
)


@relu.check("returns a tensor of the same shape and dtype", hint="Build the result with torch operations on `x`.")
def _(f, ref):
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = f(x.clone())
    assert isinstance(y, torch.Tensor), f"expected a torch.Tensor, got {type(y).__name__}"
    assert y.shape == x.shape, f"expected shape {tuple(x.shape)}, got {tuple(y.shape)}"
    assert y.dtype == x.dtype, f"expected dtype {x.dtype}, got {y.dtype}"


@relu.check("keeps positive inputs and zeroes negative ones", hint="$\\max(x, 0)$ is $x$ for $x > 0$ and $0$ otherwise.")
def _(f, ref):
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0], dtype=torch.float64)
    y = f(x.clone())
    expected = torch.nn.functional.relu(x)
    assert torch.equal(y, expected), f"relu({x.tolist()}) gave {y.tolist()}, expected {expected.tolist()}"


@relu.check("matches torch.nn.functional.relu on random inputs, inf and NaN",
            hint="Compare with `torch.nn.functional.relu(x)`. Every comparison with NaN is False, so "
                 "`torch.where(x > 0, x, 0)` turns NaN into 0 and hides a bug upstream; test `x < 0` instead, "
                 "or use `x.clamp(min=0)`.")
def _(f, ref):
    x = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 10
    y = f(x.clone())
    assert torch.equal(y, torch.nn.functional.relu(x)), "some values differ from torch.nn.functional.relu"
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0, -1.0], dtype=torch.float64)
    y, expected = f(special.clone()), torch.nn.functional.relu(special)
    assert bool(torch.isnan(y[0])), f"relu(nan) gave {float(y[0])}; torch.nn.functional.relu keeps NaN, so a bug upstream stays visible"
    assert torch.equal(y[1:], expected[1:]), f"relu({special[1:].tolist()}) gave {y[1:].tolist()}, expected {expected[1:].tolist()}"


@relu.check("does not modify its input", hint="In-place methods such as `clamp_` change `x`; return a new tensor instead.")
def _(f, ref):
    x = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    f(x)
    assert x.tolist() == [-1.0, 2.0], f"the input changed to {x.tolist()}"

