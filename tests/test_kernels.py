"""losslab.kernels: CUDA sources compiled by NVRTC, their algorithms emulated on the CPU and
tested against PyTorch, the fallbacks equal to PyTorch, and (with a GPU) the kernels themselves.

Tolerances: float64 1e-12 relative for single losses; float32 1e-5 relative
(one pass of 4-byte sums over up to 5,000 logits). Trajectories: float64
1e-9 absolute plus 1e-12 relative after 200 steps (Adam on Rosenbrock amplifies last-bit
differences of FMA contraction), float32 1e-3.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from losslab import kernels, optim
from losslab.kernels import reference as ref

GPU = kernels.available("cuda") if torch.cuda.is_available() else False
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU with CuPy")

UPDATES = {
    "gd": optim.optimizer("sgd", lr=1e-3),
    "momentum": optim.optimizer("sgd", lr=1e-3, momentum=0.9),
    "nesterov": optim.optimizer("sgd", lr=1e-3, momentum=0.9, nesterov=True),
    "damped-decay": optim.optimizer("sgd", lr=1e-3, momentum=0.5, dampening=0.3, weight_decay=0.01),
    "adam": optim.optimizer("adam", lr=1e-2),
    "adam-l2": optim.optimizer("adam", lr=1e-2, weight_decay=0.1),
    "adamw": optim.optimizer("adamw", lr=1e-2, weight_decay=0.1),
}


# --- NVRTC: every kernel source compiles (no GPU needed) ----------------------------

@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_every_kernel_variant_compiles_with_nvrtc(name):
    pytest.importorskip("cupy", reason="CuPy's NVRTC bindings (pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12)")
    sizes = kernels.compile_with_nvrtc(name)
    assert len(sizes) == len(kernels._variants(name)) and all(s > 1000 for s in sizes)


def test_a_broken_kernel_is_reported_with_nvrtcs_log(monkeypatch):
    pytest.importorskip("cupy", reason="CuPy's NVRTC bindings")
    broken = kernels.source("cross_entropy").replace("(m - x[t]) + logs;", "(m - x[t] + logs;", 1)
    monkeypatch.setattr(kernels, "source", lambda name: broken)
    with pytest.raises(RuntimeError, match=r"cross_entropy\.cu.*does not compile") as err:
        kernels.compile_with_nvrtc("cross_entropy")
    # the shared prelude goes first, yet the log names the line of cross_entropy.cu itself
    own = (Path(kernels.__file__).parent / "cross_entropy.cu").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(own, 1) if "(m - x[t]) + logs;" in text)
    assert f"cross_entropy.cu({line})" in str(err.value)


def test_importing_the_package_does_not_import_cupy():
    code = "import sys, losslab, losslab.kernels, losslab.kernels.reference; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- cross-entropy: the kernel's algorithm, emulated --------------------------------

def _logits(b, v, dtype, scale=5.0, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, v, generator=g, dtype=dtype) * scale + offset


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("v", [1, 3, 4, 257, 1031, 4099, 9001])
@pytest.mark.parametrize("block", [ref.BLOCK, ref.FBLOCK])  # ce_forward's threads per row, and ce_fwd_bwd's
def test_the_blocked_online_logsumexp_matches_torch(dtype, rtol, v, block):
    x = _logits(3, v, dtype)
    t = torch.randint(0, v, (3,), generator=torch.Generator().manual_seed(1))
    width = 4 if dtype == torch.float32 else 2
    for offset in range(width):  # every misalignment of the row starts
        ours = ref.cross_entropy_blocked(x, t, reduction="none", base_offset=offset, block=block)
        torch.testing.assert_close(ours, F.cross_entropy(x, t, reduction="none"), rtol=rtol, atol=rtol)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 4), v=st.integers(1, 600), offset=st.floats(-1e6, 1e6), scale=st.floats(1e-3, 50.0),
       seed=st.integers(0, 2**16))
def test_the_blocked_forward_matches_torch_on_generated_rows(b, v, offset, scale, seed):
    x = _logits(b, v, torch.float64, scale=scale, offset=offset, seed=seed)
    t = torch.randint(0, v, (b,), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ref.cross_entropy_blocked(x, t, reduction="none", base_offset=seed % 2),
                               F.cross_entropy(x, t, reduction="none"), rtol=1e-12, atol=1e-9)


def test_near_tied_huge_logits_keep_log_s():
    """Next to logits of 1e15 (float64) the loss of a tie is still log 2."""
    x = torch.tensor([[1e15, 1e15, -1e15], [1e100, -1e100, 1e100], [1e100, -1e100, 1e100]], dtype=torch.float64)
    t = torch.tensor([0, 2, 1])
    out = ref.cross_entropy_blocked(x, t, reduction="none")
    assert out[0].item() == pytest.approx(math.log(2), rel=1e-15)
    assert out[1].item() == pytest.approx(math.log(2), rel=1e-15)
    assert out[2].item() == pytest.approx(2e100, rel=1e-15)
    torch.testing.assert_close(kernels.cross_entropy_reference(x, t, reduction="none"), out, rtol=1e-15, atol=0)


def test_minus_infinity_logits_and_ignored_rows():
    x = torch.tensor([[0.0, -math.inf, 1.0, -math.inf, 2.0]] * 3, dtype=torch.float64)
    t = torch.tensor([4, -100, 0])
    # a thread whose first values are all -inf must add nothing (exp(-inf - -inf) would be nan)
    wide = torch.full((2, 3000), -math.inf, dtype=torch.float64)
    wide[:, 2500:] = torch.randn(2, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tw = torch.tensor([2600, 2999])
    for block in (ref.BLOCK, ref.FBLOCK):
        torch.testing.assert_close(ref.cross_entropy_blocked(wide, tw, reduction="none", block=block),
                                   F.cross_entropy(wide, tw, reduction="none"), rtol=1e-14, atol=1e-14)
    for fn in (ref.cross_entropy_blocked, kernels.cross_entropy_reference):
        for reduction in ("none", "sum", "mean"):
            torch.testing.assert_close(fn(x, t, reduction=reduction), F.cross_entropy(x, t, reduction=reduction),
                                       rtol=1e-14, atol=1e-14)


def test_the_backward_formula_matches_autograd():
    x = _logits(4, 97, torch.float64).requires_grad_()
    t = torch.tensor([3, -100, 96, 0])
    F.cross_entropy(x, t).backward()
    lse = torch.logsumexp(x.detach(), 1)
    grad = torch.tensor(1.0 / 3, dtype=torch.float64)  # mean over the 3 rows that count
    torch.testing.assert_close(ref.cross_entropy_backward(x.detach(), t, lse, grad), x.grad, rtol=1e-13, atol=1e-15)


# --- cross-entropy: the readable reference and the public function (PyTorch's path without a GPU) -----

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fn", [kernels.cross_entropy_reference, kernels.cross_entropy], ids=["reference", "public"])
def test_cross_entropy_equals_torch_with_gradients(reduction, fn):
    x = _logits(6, 50, torch.float64, offset=1e3).requires_grad_()
    y = x.detach().clone().requires_grad_()
    t = torch.tensor([0, 49, -100, 7, 7, 3])
    ours, theirs = fn(x, t, reduction=reduction), F.cross_entropy(y, t, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (ours.sum()).backward()
    (theirs.sum()).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-14)


def test_fused_is_refused_where_it_cannot_run():
    x, t = torch.zeros(2, 3), torch.tensor([0, 1])
    if not kernels.available(x.device):
        with pytest.raises(ValueError, match="fused: the kernel needs a CUDA device"):
            kernels.cross_entropy(x, t, fused=True)


@pytest.mark.parametrize("logits,target,kw,err,match", [
    (torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]), {}, TypeError, "logits"),
    (torch.zeros(3), torch.tensor([0, 1, 2]), {}, ValueError, "logits"),
    (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), {}, TypeError, "target"),
    (torch.zeros(2, 3), torch.tensor([0, 1, 2]), {}, ValueError, "target"),
    (torch.zeros(2, 3), torch.tensor([0, 3]), {}, ValueError, r"target: expected class indices in \[0, 2\]"),
    (torch.zeros(2, 3), torch.tensor([0, 1]), {"reduction": "avg"}, ValueError, "reduction"),
    (torch.zeros(2, 3), torch.tensor([0, 1]), {"ignore_index": 1.5}, TypeError, "ignore_index"),
])
def test_bad_input_is_named(logits, target, kw, err, match):
    with pytest.raises(err, match=match):
        kernels.cross_entropy(logits, target, **kw)


def test_the_recorded_instruction_counts_are_those_of_the_kernel_as_it_is():
    """The GPU appendix quotes instructions per step read from the trajectory kernel's compiled code
    (measured/sass_trajectories.json). They hold for the source they were counted on: a change to the
    kernel's code or options must come with new counts (comments and spacing do not count)."""
    import json  # noqa: PLC0415
    from importlib import resources  # noqa: PLC0415

    record = json.loads((resources.files("losslab") / "measured" / "sass_trajectories.json").read_text())
    assert record["source_digest"] == kernels.source_digest("trajectories"), (
        "trajectories.cu (or its options) changed since its instructions per step were counted: run "
        "`pip install nvidia-cuda-nvdisasm` and `python tools/sass_loops.py --json "
        "code/losslab/measured/sass_trajectories.json`")
    after, before = record["after"], record["before"]
    assert set(after) >= {"gd", "momentum", "nesterov", "adam"} and set(before) == {"gd", "adam"}
    for table in (after, before):
        for rule in table.values():
            assert set(rule) == set(kernels.FUNCTIONS)
            assert all(0 < c < 1000 for counts in rule.values() for c in counts.values())


def test_the_source_digest_ignores_comments_and_follows_code_and_options(monkeypatch):
    digest = kernels.source_digest("trajectories")
    text = kernels.source("trajectories")
    monkeypatch.setattr(kernels, "source", lambda name: text.replace("\n", "\n// a comment\n", 3))
    assert kernels.source_digest("trajectories") == digest
    monkeypatch.setattr(kernels, "source", lambda name: text.replace("dead = (alive & !good) ? t : dead;", "dead = t;"))
    assert kernels.source_digest("trajectories") != digest
    monkeypatch.setattr(kernels, "source", lambda name: text)
    monkeypatch.setitem(kernels._OPTIONS, "trajectories", ("--prec-div=false",))
    assert kernels.source_digest("trajectories") != digest


def test_a_launch_passes_the_grid_block_and_shared_memory_as_cupy_takes_them(monkeypatch):
    """The kernels launch only on a GPU, so the one call they all go through is checked here with a stand-in."""
    import contextlib  # noqa: PLC0415

    class Kernel:
        max_dynamic_shared_size_bytes = 0

        def __init__(self):
            self.calls = []

        def __call__(self, grid, block, args, *, shared_mem=0):
            self.calls.append((grid, block, args, shared_mem, self.max_dynamic_shared_size_bytes))

    monkeypatch.setattr(kernels, "_stream", contextlib.nullcontext)
    fn = Kernel()
    kernels._launch(fn, 7, 256, (1, 2))
    kernels._launch(fn, (3, 5), 128, (3,), shared_mem=100_000)
    assert fn.calls == [((7,), (256,), (1, 2), 0, 0), ((3, 5), (128,), (3,), 100_000, 100_000)]


def test_a_way_to_compute_the_gradient_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setattr(kernels, "FORWARD_BACKWARD", "fast")
    with pytest.raises(ValueError, match=r"FORWARD_BACKWARD: expected one of \('auto', 'shared', 'l2', 'two'\), got 'fast'"):
        kernels._forward_backward(torch.zeros(2, 3))


# --- trajectories: the kernel's loop, emulated ----------------------------------------

@pytest.mark.parametrize("name", sorted(kernels.FUNCTIONS))
@pytest.mark.parametrize("label", sorted(UPDATES))
def test_the_kernel_loop_matches_run_trajectories(name, label):
    update = UPDATES[label]
    fn, prm = kernels.function_parameters(name)
    lo, hi = torch.tensor(fn.domain, dtype=torch.float64).T
    x0 = lo + (hi - lo) * torch.rand(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    run = optim.run_trajectories(fn, x0, update, 200, keep_path=True, device="cpu")
    final, dead, path = ref.trajectories_loop(ref.gradient(name, prm), x0, kernels._hyper_vector(update),
                                              update.method, 200, path_every=10)
    assert torch.equal(dead, run.diverged_at)
    torch.testing.assert_close(final, run.final, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(path, run.path[::10], rtol=1e-12, atol=1e-9)


def test_the_kernel_loop_freezes_diverging_runs_like_run_trajectories():
    update = optim.optimizer("sgd", lr=0.05, momentum=0.9)
    fn, prm = kernels.function_parameters("rosenbrock")
    x0 = torch.tensor([[-1.5, 2.5], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    run = optim.run_trajectories(fn, x0, update, 50, keep_path=False, device="cpu")
    final, dead, _ = ref.trajectories_loop(ref.gradient("rosenbrock", prm), x0,
                                           kernels._hyper_vector(update), "sgd", 50)
    assert int((run.diverged_at > 0).sum()) >= 1  # the case tested: some runs diverge
    assert torch.equal(dead, run.diverged_at)
    torch.testing.assert_close(final, run.final, rtol=0, atol=1e-12)


def test_kernel_parameters_follow_the_builders():
    """prm is what the functions of landscapes use: the quadratic's A entries, Rosenbrock's a and b."""
    fn, prm = kernels.function_parameters("quadratic", {"kappa": 25.0, "angle": 0.3})
    p = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    gx, gy = ref.gradient("quadratic", prm)(p[:, 0], p[:, 1])
    torch.testing.assert_close(torch.stack([gx, gy], 1), fn.grad(p), rtol=1e-15, atol=1e-15)
    fn, prm = kernels.function_parameters("rosenbrock", {"a": 2.0, "b": 5.0})
    gx, gy = ref.gradient("rosenbrock", prm)(p[:, 0], p[:, 1])
    torch.testing.assert_close(torch.stack([gx, gy], 1), fn.grad(p), rtol=1e-15, atol=1e-15)


def test_trajectories_fallback_keeps_every_kth_position():
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    update = UPDATES["nesterov"]
    fn, _ = kernels.function_parameters("himmelblau")
    full = optim.run_trajectories(fn, x0, update, 30, device="cpu")
    run = kernels.trajectories("himmelblau", x0, update, 30, path_every=7)
    assert run.path.shape == (30 // 7 + 1, 5, 2)
    torch.testing.assert_close(run.path, full.path[::7], rtol=0, atol=0)
    torch.testing.assert_close(run.final, full.final, rtol=0, atol=0)


@pytest.mark.parametrize("args,kw,err,match", [
    (("nope", torch.zeros(2, 2), UPDATES["gd"], 5), {}, ValueError, "name"),
    (("himmelblau", torch.zeros(2, 3), UPDATES["gd"], 5), {}, ValueError, "x0"),
    (("himmelblau", torch.zeros(2, 2, dtype=torch.int64), UPDATES["gd"], 5), {}, TypeError, "x0"),
    (("himmelblau", torch.zeros(2, 2), UPDATES["gd"], 0), {}, ValueError, "steps"),
    (("himmelblau", torch.zeros(2, 2), "sgd", 5), {}, TypeError, "update"),
    (("himmelblau", torch.zeros(2, 2), optim.optimizer("rmsprop", lr=0.1), 5), {}, ValueError, "update"),
    (("himmelblau", torch.zeros(2, 2), UPDATES["gd"], 5), {"path_every": -1}, ValueError, "path_every"),
    (("himmelblau", torch.zeros(2, 2), UPDATES["gd"], 2**31), {}, ValueError, "steps"),  # the kernel counts in 32 bits
    (("rosenbrock", torch.zeros(2, 2), UPDATES["gd"], 5), {"fn_params": {"c": 1}}, ValueError, "fn_params"),
    (("himmelblau", torch.full((2, 2), math.nan), UPDATES["gd"], 5), {}, ValueError, "finite"),
])
def test_trajectories_bad_input_is_named(args, kw, err, match):
    with pytest.raises(err, match=match):
        kernels.trajectories(*args, **kw)


# --- the landscape scan: the kernel's algorithm, emulated ----------------------------

def _scan_problem(sizes, skip, activation, n, k, points, dtype, seed):
    from losslab import landscapes  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    model = landscapes.MLP(sizes, skip=skip, activation=activation, seed=seed, dtype=dtype)
    x = torch.randn(n, sizes[0], generator=g, dtype=dtype)
    y = torch.randint(0, sizes[-1], (n,), generator=g)
    dirs = [landscapes.random_direction(model, seed=seed + j + 1) for j in range(k)]
    coeffs = (torch.rand(points, k, generator=g, dtype=torch.float64) * 4 - 2).to(dtype)
    return model, x, y, dirs, coeffs


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(1, 4), width=st.integers(1, 9), classes=st.integers(2, 5), skip=st.booleans(),
       activation=st.sampled_from(["relu", "tanh"]), n=st.integers(1, 150), k=st.integers(1, 4),
       points=st.integers(1, 6), dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 2**16))
def test_the_scan_kernels_algorithm_is_the_per_point_loop(depth, width, classes, skip, activation, n, k, points,
                                                         dtype, seed):
    """The packing of the weights, the tiles of 64 rows (N not a multiple of 64 included), one layer
    (logits straight from the first), skip connections, tanh, 1 to 4 directions: the emulation of
    scan_mlp.cu gives the loop's losses (float64 to 1e-12, float32 to 1e-5 relative)."""
    from losslab import landscapes  # noqa: PLC0415

    sizes = (3,) + (width,) * (depth - 1) + (classes,)
    model, x, y, dirs, coeffs = _scan_problem(sizes, skip and depth > 2, activation, n, k, points, dtype, seed)
    params = {name: v.detach() for name, v in model.named_parameters()}
    ours = kernels.scan_mlp_reference(model, params, dirs, coeffs, x, y)
    loop = landscapes.scan_losses(model, x, y, dirs, coeffs, method="loop")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours, loop, rtol=tol, atol=tol)


def test_the_scan_kernel_is_refused_where_it_cannot_run():
    from losslab import landscapes  # noqa: PLC0415

    model, x, y, dirs, coeffs = _scan_problem((4, 5, 3), False, "relu", 20, 2, 3, torch.float64, 0)
    with pytest.raises(ValueError, match="method: the scan kernel needs a CUDA device with CuPy"):
        kernels.scan_mlp(model, dict(model.named_parameters()), dirs, coeffs, x, y)
    if not GPU:
        with pytest.raises(ValueError, match="method: the scan kernel needs a CUDA device"):
            landscapes.scan_losses(model, x, y, dirs, coeffs, method="kernel")
    with pytest.raises(ValueError, match="method: 'kernel' needs an MLP"):
        landscapes.scan_losses(torch.nn.Linear(4, 3).double(), x, y, [{"weight": torch.zeros(3, 4, dtype=torch.float64),
                                                                        "bias": torch.zeros(3, dtype=torch.float64)}],
                               coeffs[:, :1], method="kernel")
    deep = landscapes.MLP((4,) + (5,) * 8 + (3,), seed=0)
    assert "at most 8 layers" in kernels.scan_unsupported(deep, 2, torch.float32)
    assert "1 to 4 directions" in kernels.scan_unsupported(model, 5, torch.float64)
    assert "float32 or float64" in kernels.scan_unsupported(model, 2, torch.float16)
    assert kernels.scan_unsupported(model, 2, torch.float32) is None
    with pytest.raises(ValueError, match=r"y: expected class labels in \[0, 2\]"):
        kernels.scan_mlp_reference(model, dict(model.named_parameters()), dirs, coeffs, x, torch.full_like(y, 3))


def test_the_books_scan_fits_one_blocks_shared_memory_in_both_dtypes():
    """The 64-64-10 MLP on the digits (the benchmark's and chapter 2's): the tile of P (64 rows, K + 1 = 3),
    one point's weights of layers 2-3 (W row-major, rows an odd number of 16-byte vectors apart: 68 floats
    or 66 doubles; each bias rounded up to a whole vector) and two activation buffers of 64 such rows:
    26,100 floats or 25,694 doubles, which fit an H100 block's 227 KB in float64 too."""
    floats = 3 * 64 * 64 + (64 * 68 + 64 + 10 * 68 + 12) + 2 * 64 * 68
    doubles = 3 * 64 * 64 + (64 * 66 + 64 + 10 * 66 + 10) + 2 * 64 * 66
    assert kernels.scan_shared_bytes([64, 64, 64, 10], 2, torch.float32) == 4 * floats == 4 * 26100
    assert kernels.scan_shared_bytes([64, 64, 64, 10], 2, torch.float64) == 8 * doubles == 8 * 25694 <= 227 * 1024 - 1024


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 10, 64, 65, 130])
@pytest.mark.parametrize("itemsize", [4, 8])
def test_rows_in_the_scan_kernels_shared_memory_are_an_odd_number_of_vectors_apart(n, itemsize):
    stride = kernels._scan_stride(n, itemsize)
    vectors, rest = divmod(stride * itemsize, 16)
    assert stride >= n and rest == 0 and vectors % 2 == 1 and stride - n < 2 * 16 // itemsize


# --- on a GPU: the kernels themselves -----------------------------------------------

@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("v", [1, 5, 4096, 50257, 65539])  # float32 rows up to 50257 take the shared-memory kernel
@pytest.mark.parametrize("upstream", [1.0, 2.5])  # loss.backward(), and a scaled loss
@pytest.mark.parametrize("way", ["auto", "l2", "two"])  # auto: rows in shared memory where they fit
def test_fused_cross_entropy_on_the_gpu(dtype, rtol, v, upstream, way, monkeypatch):
    monkeypatch.setattr(kernels, "FORWARD_BACKWARD", way)
    monkeypatch.setattr(kernels, "L2_ROWS_PER_SM", 1 if v % 2 else 2)
    g = torch.Generator(device="cuda").manual_seed(0)
    base = torch.randn(9, v + 1, generator=g, dtype=dtype, device="cuda") * 4
    x = base[:, 1:].contiguous()[1:]  # rows start at every misalignment
    t = torch.randint(0, v, (8,), device="cuda", generator=g)
    t[3] = -100
    if v >= 5:  # a row that is half -inf (its target at a finite logit)
        x[2, ::2] = -math.inf
        t[2] = 1
    x = x.clone().requires_grad_()
    y = x.detach().clone().requires_grad_()
    for reduction in ("mean", "sum", "none"):
        ours = kernels.cross_entropy(x, t, reduction=reduction, fused=True)
        theirs = F.cross_entropy(y, t, reduction=reduction)
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol)
        (upstream * ours).sum().backward()
        (upstream * theirs).sum().backward()
        torch.testing.assert_close(x.grad, y.grad, rtol=rtol, atol=rtol * 1e-2)
        x.grad, y.grad = None, None


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", sorted(kernels.FUNCTIONS))
@pytest.mark.parametrize("label", sorted(UPDATES))
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_fused_trajectories_on_the_gpu(name, label, dtype, atol):
    """Each step is the loop's arithmetic; over 200 steps rounding may part a few chaotic runs.

    The kernel contracts multiply-adds (FMA) where PyTorch's separate
    operations round twice: one step agrees to a few ulps for every start,
    and near saddles and on egg crates a difference of one ulp grows over
    hundreds of steps, so the long runs are compared start by start with a
    share that must agree.
    """
    update = UPDATES[label]
    fn, _ = kernels.function_parameters(name)
    lo, hi = torch.tensor(fn.domain, dtype=dtype, device="cuda").T
    x0 = lo + (hi - lo) * torch.rand(4096, 2, dtype=dtype, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    one = kernels.trajectories(name, x0, update, 1, fused=True)
    one_loop = kernels.trajectories(name, x0, update, 1, fused=False)
    alive = torch.isfinite(one_loop.final).all(1) & torch.isfinite(one.final).all(1)
    step_rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(one.final[alive], one_loop.final[alive], rtol=step_rtol, atol=step_rtol)
    fused = kernels.trajectories(name, x0, update, 200, path_every=20, fused=True)
    loop = kernels.trajectories(name, x0, update, 200, path_every=20, fused=False)
    same = fused.diverged_at == loop.diverged_at
    assert float(same.double().mean()) > (0.99 if dtype == torch.float64 else 0.95)
    ok = same & (loop.diverged_at < 0)
    close = ((fused.final[ok] - loop.final[ok]).abs() <= atol).all(1)
    share = float(close.double().mean())  # 98.8% on the monkey saddle with heavy ball, on an H100
    assert share >= (0.98 if dtype == torch.float64 else 0.95), f"only {share:.2%} of the runs agree to {atol:g}"
    assert float((fused.final[ok] - loop.final[ok]).abs().median()) <= atol * 1e-2


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("grad", [False, True])  # the forward kernel, or the one that also writes the gradient
def test_the_fused_cross_entropy_checks_targets_on_the_device(reduction, grad):
    """The fused path checks the targets after its kernels (one wait, at the end): a target out of range
    is named as on the CPU, and reads no logit out of bounds meanwhile; a batch whose rows are all ignored
    has a mean of NaN and a sum of 0, as in PyTorch."""
    x = torch.randn(6, 50, device="cuda", dtype=torch.float32, requires_grad=grad)
    t = torch.tensor([0, 1, 50, -100, -3, 2], device="cuda")
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 49\] or ignore_index=-100, got \[50, -3\]"):
        kernels.cross_entropy(x, t, reduction=reduction, fused=True)
    t[2], t[4] = 3, 4
    torch.testing.assert_close(kernels.cross_entropy(x, t, reduction=reduction, fused=True),
                               F.cross_entropy(x, t, reduction=reduction), rtol=1e-5, atol=1e-6)
    ignored = torch.full((6,), -100, device="cuda")
    torch.testing.assert_close(kernels.cross_entropy(x, ignored, reduction=reduction, fused=True),
                               F.cross_entropy(x, ignored, reduction=reduction), equal_nan=True)


@pytest.mark.gpu
@needs_gpu
def test_the_fused_cross_entropy_trains_a_model():
    """Training with the kernel follows training with F.cross_entropy step for step."""
    finals = []
    for loss_fn in (lambda z, t: kernels.cross_entropy(z, t, fused=True), F.cross_entropy):
        torch.manual_seed(0)
        model = torch.nn.Linear(32, 1000).cuda()
        x, t = torch.randn(256, 32, device="cuda"), torch.randint(0, 1000, (256,), device="cuda")
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses_seen = []
        for _ in range(50):
            loss = loss_fn(model(x), t)
            losses_seen.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert losses_seen[-1] < 0.7 * losses_seen[0]
        finals.append(losses_seen)
    torch.testing.assert_close(torch.tensor(finals[0]), torch.tensor(finals[1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method, lr, hyper", [
    ("gd", 1e-3, dict(method="sgd")),
    ("momentum", 2e-4, dict(method="sgd", momentum=0.9)),
    ("nesterov", 2e-4, dict(method="sgd", momentum=0.9, nesterov=True)),
    ("adam", 1e-2, dict(method="adam")),
])
def test_the_benchmarks_plain_loops_run_the_same_optimizers_as_the_kernel(method, lr, hyper):
    """The benchmark's baseline is the loop a reader writes: it must compute what ours computes."""
    from losslab import bench, landscapes, optim

    x0 = torch.rand(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    hyper = dict(hyper)
    upd = optim.optimizer(hyper.pop("method"), lr=lr, **hyper)
    ours = kernels.trajectories("rosenbrock", x0, upd, 40).final
    plain = bench._eager(landscapes.rosenbrock(), x0, method, lr, 40)
    torch.testing.assert_close(plain, ours, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("sizes,skip,activation", [
    ((64, 64, 64, 10), False, "relu"),  # the benchmark's
    ((5, 3), False, "relu"),  # one layer: the logits straight from the first
    ((5, 70, 3), False, "tanh"),  # wider than 64 columns: two passes over the output
    ((3, 130, 2), False, "relu"),  # three passes
    ((5, 6, 6, 6, 4), True, "relu"),  # skip connections
])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_the_scan_kernel_on_the_gpu(sizes, skip, activation, dtype, tol):
    """method="kernel" against the per-point loop: 200 rows (a last tile of 8) and 1,000 points
    (groups of 8, the last one short), and a second run giving the same numbers."""
    from losslab import landscapes  # noqa: PLC0415

    model, x, y, dirs, coeffs = _scan_problem(sizes, skip, activation, 200, 2, 1000, dtype, 0)
    model = model.cuda()
    x, y, coeffs = x.cuda(), y.cuda(), coeffs.cuda()
    dirs = [{name: v.cuda() for name, v in d.items()} for d in dirs]
    ours = landscapes.scan_losses(model, x, y, dirs, coeffs, method="kernel")
    loop = landscapes.scan_losses(model, x, y, dirs, coeffs[:50], method="loop")
    torch.testing.assert_close(ours[:50], loop, rtol=tol, atol=tol)
    torch.testing.assert_close(ours, landscapes.scan_losses(model, x, y, dirs, coeffs, method="affine"),
                               rtol=tol * 10, atol=tol * 10)
    assert torch.equal(ours, landscapes.scan_losses(model, x, y, dirs, coeffs, method="kernel"))
