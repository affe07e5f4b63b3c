"""Hand-written CUDA kernels (CuPy), each beside a readable reference and a PyTorch fallback.

See the appendix *Running on a GPU*. Two kernels, each with the same API on
every device:

- :func:`cross_entropy`: a fused, numerically stable cross-entropy over
  ``[B, V]`` logits. On a CUDA device with CuPy it runs ``cross_entropy.cu``:
  one pass over each row with an online log-sum-exp for the forward, one pass
  writing ``dlogits`` for the backward (no softmax tensor is stored), or both in
  one kernel when the loss will be differentiated (:data:`FORWARD_BACKWARD`);
  one small block then checks the targets and reduces the losses, so a call
  waits for the device once, at the end. It is a ``torch.autograd.Function``,
  so it trains a model. Elsewhere it is PyTorch's
  ``F.cross_entropy`` (same numbers); :func:`cross_entropy_reference` is the
  readable version the kernel is tested against.
- :func:`trajectories`: every start of GD / momentum / Nesterov / Adam on a
  2-D test function, all steps of one start in one thread's registers, one
  launch for the whole run (``trajectories.cu``). Elsewhere it is
  :func:`losslab.optim.run_trajectories`.
- :func:`scan_mlp`: the loss of an MLP at many points of a plane in parameter
  space (``landscapes.scan_losses(method="kernel")``): after PyTorch's K + 1
  first-layer products, one launch computes every later layer and the loss in
  shared memory, tile by tile, without writing an activation to global memory
  (``scan_mlp.cu``). :func:`scan_mlp_reference` is its emulation on any device.

Without a GPU the kernels are still checked: :func:`compile_with_nvrtc`
compiles each source with NVRTC (which needs no GPU and no driver), and the
emulations in :mod:`losslab.kernels.reference` follow each kernel's algorithm
step by step (same blocking, same merge order) and are tested against
PyTorch. The tests also run each kernel's own source on the CPU
(``tests/cuda_host.h``: one thread per CUDA thread, a barrier for each
``__syncthreads``), which checks its index arithmetic as written.

CuPy is imported only when a kernel runs or compiles (never at import time).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import torch

from .. import backend

__all__ = [
    "KERNELS",
    "source",
    "available",
    "compile_with_nvrtc",
    "cross_entropy",
    "cross_entropy_reference",
    "trajectories",
    "scan_mlp",
    "scan_mlp_reference",
    "FUNCTIONS",
]

_DIR = Path(__file__).resolve().parent

#: Kernel name -> CUDA source file beside this module.
KERNELS = {"cross_entropy": "cross_entropy.cu", "trajectories": "trajectories.cu", "scan_mlp": "scan_mlp.cu"}

#: Test functions the trajectory kernel knows, with the index its source uses (FN_*).
FUNCTIONS = {"quadratic": 0, "rosenbrock": 1, "himmelblau": 2, "rastrigin": 3, "beale": 4,
             "six_hump_camel": 5, "monkey_saddle": 6}
_METHODS = {"sgd": 0, "adam": 1, "adamw": 1}
_BLOCK = 256  # threads per block, as LL_BLOCK in cross_entropy.cu


#: Compiler options per kernel beyond -std=c++17. The trajectories' float32 variant divides and
#: takes square roots to within 2 ulps instead of exactly, and flushes subnormal values (below
#: 1.2e-38) to zero; double precision is unaffected. A float32 run is no more exact than that
#: anyway, and Adam's step issues 46.5 instructions instead of 69.5 on Rosenbrock
#: (``tools/sass_loops.py``): without flushing, every approximate square root and reciprocal
#: comes with tests and rescaling for subnormal arguments.
_OPTIONS = {"trajectories": ("--prec-div=false", "--prec-sqrt=false", "--ftz=true")}


def source(name: str) -> str:
    """The CUDA source of kernel ``name`` (one of :data:`KERNELS`), after the shared ``prelude.cu``."""
    if name not in KERNELS:
        raise ValueError(f"name: expected one of {sorted(KERNELS)}, got {name!r}")
    prelude = (_DIR / "prelude.cu").read_text(encoding="utf-8")
    return f'{prelude}\n#line 1 "{KERNELS[name]}"\n' + (_DIR / KERNELS[name]).read_text(encoding="utf-8")


def source_digest(name: str) -> str:
    """SHA-256 of kernel ``name``'s source without its comments and blank space, and of its compiler
    options: what a record measured from the compiled kernel (``measured/sass_trajectories.json``)
    was measured for."""
    import hashlib  # noqa: PLC0415
    import re  # noqa: PLC0415

    code = " ".join(re.sub(r"//[^\n]*", "", source(name)).split())
    return hashlib.sha256((code + "\n" + " ".join(_OPTIONS.get(name, ()))).encode()).hexdigest()


def _variants(name: str) -> list[tuple[str, ...]]:
    """The -D option sets a kernel is compiled with (every variant the package can launch)."""
    if name == "trajectories":
        return [(f"-DFN={fn}", f"-DMETHOD={m}") for fn in FUNCTIONS.values() for m in sorted(set(_METHODS.values()))]
    return [()]


def compile_with_nvrtc(name: str, *, arch: str = "compute_90") -> list[int]:
    """Compile every variant of kernel ``name`` to PTX with NVRTC; return the PTX sizes.

    NVRTC is a library, not a driver call: this works on a machine with no GPU
    (CuPy and the ``nvidia-cuda-nvrtc`` wheel are enough), so a syntax or type
    error in a kernel is caught in CI.

    Raises
    ------
    RuntimeError
        With NVRTC's log, if a variant does not compile.
    """
    from cupy.cuda import nvrtc  # noqa: PLC0415  (optional dependency, imported only here)

    src = source(name)
    sizes = []
    for defines in _variants(name):
        prog = nvrtc.createProgram(src, KERNELS[name], [], [])
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", "-std=c++17", *_OPTIONS.get(name, ()), *defines])
        except nvrtc.NVRTCError as err:
            raise RuntimeError(f"{KERNELS[name]} {' '.join(defines)} does not compile:\n{nvrtc.getProgramLog(prog)}") from err
        sizes.append(len(nvrtc.getPTX(prog)))
        nvrtc.destroyProgram(prog)
    return sizes


def available(device: torch.device | str | None = None) -> bool:
    """True where the kernels run: a CUDA device with CuPy."""
    dev = torch.device(device) if device is not None else backend.device()
    return dev.type == "cuda" and backend.has_cupy()


@functools.lru_cache(maxsize=None)
def _function(name: str, entry: str, defines: tuple[str, ...] = ()):
    import cupy  # noqa: PLC0415

    module = cupy.RawModule(code=source(name), options=("-std=c++17", *_OPTIONS.get(name, ()), *defines),
                            name_expressions=None)
    return module.get_function(entry)


_STREAMS: dict = {}


def _stream():
    """CuPy's view of PyTorch's current CUDA stream (cached: a launch should not build one)."""
    stream = torch.cuda.current_stream()
    key = (stream.device.index, stream.cuda_stream)
    cs = _STREAMS.get(key)
    if cs is None:
        import cupy  # noqa: PLC0415

        try:  # CuPy >= 14 takes any object with the CUDA stream protocol (PyTorch's streams have it)
            cs = cupy.cuda.Stream.from_external(stream)
        except (AttributeError, TypeError):
            cs = cupy.cuda.ExternalStream(stream.cuda_stream, stream.device.index)
        _STREAMS[key] = cs
    return cs


def _ptr(t: torch.Tensor):
    """A tensor's device address as a kernel argument (a pointer is 8 bytes; no DLPack round trip per launch)."""
    import numpy  # noqa: PLC0415

    return numpy.uint64(t.data_ptr())


def _launch(fn, grid: int | tuple[int, ...], block: int, args: tuple, *, shared_mem: int = 0) -> None:
    """Launch ``fn`` on PyTorch's current stream; ``shared_mem`` bytes of dynamic shared memory per block
    (``fn.max_dynamic_shared_size_bytes`` is set to it first, as a block asking for more than 48 KB needs)."""
    if shared_mem:
        fn.max_dynamic_shared_size_bytes = shared_mem
    with _stream():
        fn(grid if isinstance(grid, tuple) else (grid,), (block,), args, shared_mem=shared_mem)


# =============================================================================
# Cross-entropy
# =============================================================================

_REDUCTIONS = ("mean", "sum", "none")


def _check_ce(logits: Any, target: Any, ignore_index: Any, reduction: Any, *, values: bool = True) -> None:
    """Check the arguments; with ``values``, also every target (which waits for the device).

    The fused path checks the targets' values on the device instead, after its kernels, and waits
    once (:class:`_FusedCrossEntropy`)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits: expected a floating-point tensor [B, V], got {getattr(logits, 'dtype', type(logits).__name__)}")
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape [B, V] with B, V >= 1, got {tuple(logits.shape)}")
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
        raise TypeError(f"target: expected an int64 tensor [B] of class indices, got {getattr(target, 'dtype', type(target).__name__)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target: expected shape [{logits.shape[0]}] to match logits [B, V], got {tuple(target.shape)}")
    if target.device != logits.device:
        raise ValueError(f"target: expected it on logits' device {logits.device}, got {target.device}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index: expected an int, got {type(ignore_index).__name__}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    if values:
        _check_targets(target, logits.shape[1], ignore_index)


def _check_targets(target: torch.Tensor, v: int, ignore_index: int) -> None:
    bad = _bad_targets(target, v, ignore_index)
    if bool(bad.any()):
        raise _bad_targets_error(target, bad, v, ignore_index)


def _bad_targets(target: torch.Tensor, v: int, ignore_index: int) -> torch.Tensor:
    return ((target < 0) | (target >= v)) & (target != ignore_index)


def _bad_targets_error(target: torch.Tensor, bad: torch.Tensor, v: int, ignore_index: int) -> ValueError:
    return ValueError(f"target: expected class indices in [0, {v - 1}] or ignore_index={ignore_index}, "
                      f"got {target[bad][:5].tolist()}")


def _reduce(per_row: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / (target != ignore_index).sum().to(per_row.dtype)  # NaN when every row is ignored, as torch


def cross_entropy_reference(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = -100,
                            reduction: str = "mean") -> torch.Tensor:
    """The readable version: ``(m - x_t) + log sum_j exp(x_j - m)`` per row, in PyTorch.

    Same numbers and API as :func:`cross_entropy` (the kernel is tested
    against it and against ``torch.nn.functional.cross_entropy``).
    """
    _check_ce(logits, target, ignore_index, reduction)
    m = logits.amax(dim=1, keepdim=True).detach()  # (B, 1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    log_s = torch.log(torch.exp(logits - m).sum(dim=1))  # (B,)
    valid = target != ignore_index
    x_t = logits.gather(1, torch.where(valid, target, torch.zeros_like(target)).unsqueeze(1)).squeeze(1)  # (B,)
    per_row = torch.where(valid, (m.squeeze(1) - x_t) + log_s, torch.zeros_like(log_s))
    return _reduce(per_row, target, ignore_index, reduction)


_FBLOCK = 1024  # threads per block of the fused forward+backward kernel, as LL_FBLOCK
_RBLOCK = 1024  # threads of the one block of ce_finish and ce_scale, as LL_RBLOCK
_L2BLOCK = 1024  # threads per block of ce_fwd_bwd_l2, as LL_L2BLOCK


#: How a forward that will be differentiated computes the gradient too:
#: "shared": in the same read of the logits, each row kept in shared memory (``ce_fwd_bwd``; only
#: where a row fits, 227 KB on an H100); "l2": in the same kernel, from a second read of each row
#: while L2 still holds it (``ce_fwd_bwd_l2``, about one block per SM, L2_ROWS_PER_SM rows in flight
#: per SM); "two": a forward kernel, then a backward kernel (the logits read twice from memory);
#: "auto": "shared" where a row fits, else "two". The benchmark measures each of them.
FORWARD_BACKWARD = "auto"
L2_ROWS_PER_SM = 1
_FORWARD_BACKWARD = ("auto", "shared", "l2", "two")


def _forward_backward(x: torch.Tensor) -> str:
    """The way FORWARD_BACKWARD picks for logits ``x``: "shared", "l2" or "two"."""
    if FORWARD_BACKWARD not in _FORWARD_BACKWARD:
        raise ValueError(f"FORWARD_BACKWARD: expected one of {_FORWARD_BACKWARD}, got {FORWARD_BACKWARD!r}")
    fits = _fused_grad_fits(x)
    if FORWARD_BACKWARD == "auto":
        return "shared" if fits else "two"
    if FORWARD_BACKWARD == "shared" and not fits:
        raise ValueError(f"FORWARD_BACKWARD: 'shared' needs a row of logits in one block's shared memory; "
                         f"{x.shape[1]} {x.dtype} logits do not fit in {_shared_memory_optin(x.device)} bytes")
    return FORWARD_BACKWARD


def _fused_grad_fits(x: torch.Tensor) -> bool:
    """Whether a row of ``x`` (and one vector of padding) fits in the shared memory one block may hold."""
    width = 4 if x.dtype == torch.float32 else 2
    return (x.shape[1] + width) * x.element_size() + 1024 <= _shared_memory_optin(x.device)  # 1 KB: static arrays


def _shared_memory_optin(device: torch.device) -> int:
    """The shared memory one block may hold on ``device`` when it asks for it (48 KB if not reported)."""
    return getattr(torch.cuda.get_device_properties(device), "shared_memory_per_block_optin", 48 * 1024)


_MODES = {"none": 0, "sum": 1, "mean": 2}  # the mode argument of ce_finish and ce_scale


class _FusedCrossEntropy(torch.autograd.Function):
    """The kernels of ``cross_entropy.cu``: three launches at most (the count a mean's gradient needs,
    the row kernel, and ``ce_finish``, which checks the targets and reduces the losses), then one
    wait for the device, to read whether a target was out of range."""

    @staticmethod
    def forward(ctx, logits, target, ignore_index, reduction):  # noqa: ANN001, ANN205
        import cupy  # noqa: PLC0415

        x = logits.detach().contiguous()  # DLPack refuses tensors that require grad
        target = target.detach().contiguous()
        if x.data_ptr() % 16:  # the kernel's vector loads assume a 16-byte-aligned base
            x = x.clone()
        b, v = x.shape
        suffix = "f32" if x.dtype == torch.float32 else "f64"
        mode = _MODES[reduction]
        per_row = torch.empty(b, dtype=x.dtype, device=x.device)
        lse = torch.empty(b, dtype=x.dtype, device=x.device)
        status = torch.empty(2, dtype=torch.int64, device=x.device)
        ctx.ignore_index, ctx.reduction = ignore_index, reduction
        common = (cupy.int64(b), cupy.int64(v), cupy.int64(ignore_index), cupy.int32(mode))
        way = _forward_backward(x) if ctx.needs_input_grad[0] and reduction != "none" else "two"
        if way != "two":
            # training: the gradient is written in the same kernel as the loss, for an upstream
            # gradient of 1 (what .backward() on the loss gives); backward scales it otherwise
            scale = torch.empty(1, dtype=x.dtype, device=x.device)
            _launch(_function("cross_entropy", f"ce_scale_{suffix}"), 1, _RBLOCK, (_ptr(target), *common, _ptr(scale)))
            dx = torch.empty_like(x)
            if way == "shared":
                nbytes = (v + (4 if x.dtype == torch.float32 else 2)) * x.element_size()
                _launch(_function("cross_entropy", f"ce_fwd_bwd_{suffix}"), b, _FBLOCK,
                        (_ptr(x), _ptr(target), _ptr(per_row), _ptr(lse), _ptr(dx), _ptr(scale),
                         cupy.int64(v), cupy.int64(ignore_index)), shared_mem=nbytes)
            else:
                sms = torch.cuda.get_device_properties(x.device).multi_processor_count
                _launch(_function("cross_entropy", f"ce_fwd_bwd_l2_{suffix}"), min(b, sms * L2_ROWS_PER_SM), _L2BLOCK,
                        (_ptr(x), _ptr(target), _ptr(per_row), _ptr(lse), _ptr(dx), _ptr(scale),
                         cupy.int64(b), cupy.int64(v), cupy.int64(ignore_index)))
            ctx.save_for_backward(dx)
            ctx.precomputed = True
        else:
            _launch(_function("cross_entropy", f"ce_forward_{suffix}"), b, _BLOCK,
                    (_ptr(x), _ptr(target), _ptr(per_row), _ptr(lse),
                     cupy.int64(v), cupy.int64(ignore_index)))
            ctx.save_for_backward(x, target, lse)
            ctx.precomputed = False
        out = per_row if mode == 0 else torch.empty((), dtype=x.dtype, device=x.device)
        _launch(_function("cross_entropy", f"ce_finish_{suffix}"), 1, _RBLOCK,
                (_ptr(per_row), _ptr(target), *common, _ptr(out), _ptr(status)))
        bad_rows, ctx.count = status.tolist()  # the one wait for the device
        if bad_rows:
            raise _bad_targets_error(target, _bad_targets(target, v, ignore_index), v, ignore_index)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        import cupy  # noqa: PLC0415

        if ctx.precomputed:
            (dx,) = ctx.saved_tensors
            if bool(grad_out == 1):  # the usual loss.backward(): the gradient is ready
                return dx, None, None, None
            return dx * grad_out.to(dx.dtype), None, None, None
        x, target, lse = ctx.saved_tensors
        b, v = x.shape
        if ctx.reduction == "none":
            g, stride = grad_out.contiguous().to(x.dtype), 1
        else:
            scale = 1.0 if ctx.reduction == "sum" else 1.0 / max(ctx.count, 1)  # no row counts: every row's g is 0
            g, stride = (grad_out * scale).reshape(1).to(x.dtype).contiguous(), 0
        dx = torch.empty_like(x)
        suffix = "f32" if x.dtype == torch.float32 else "f64"
        _launch(_function("cross_entropy", f"ce_backward_{suffix}"), b, _BLOCK,
                (_ptr(x), _ptr(target), _ptr(lse), _ptr(g),
                 cupy.int64(stride), _ptr(dx), cupy.int64(v), cupy.int64(ctx.ignore_index)))
        return dx, None, None, None


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = -100,
                  reduction: str = "mean", fused: bool | None = None) -> torch.Tensor:
    """Cross-entropy of ``[B, V]`` logits against class indices, fused on a GPU.

    Parameters
    ----------
    logits : Tensor [B, V], float32 or float64
    target : Tensor [B], int64
        Class indices in ``[0, V)``, or ``ignore_index``.
    ignore_index : int
        Rows with this target contribute 0 and are left out of the mean.
    reduction : {"mean", "sum", "none"}
    fused : bool, optional
        None (default): the CUDA kernel where :func:`available` and the dtype
        is float32/float64, else PyTorch's own ``F.cross_entropy`` (the fastest
        code without the kernel, with the same numbers and API). True: the
        kernel or an error. False: PyTorch's. The readable version the kernel
        is tested against is :func:`cross_entropy_reference`.

    Returns
    -------
    Tensor
        A scalar, or ``[B]`` for ``reduction="none"``; differentiable in ``logits``.

    Raises
    ------
    TypeError, ValueError
        For a bad argument (named), or ``fused=True`` where the kernel cannot run.

    Example
    -------
    >>> x = torch.tensor([[1e30, -1e30, 1e30]], dtype=torch.float64)
    >>> float(cross_entropy(x, torch.tensor([0])))  # log 2, not 0
    0.6931471805599453
    """
    _check_ce(logits, target, ignore_index, reduction, values=False)
    can = available(logits.device) and logits.dtype in (torch.float32, torch.float64)
    if fused is None:
        fused = can
    elif fused and not can:
        raise ValueError(f"fused: the kernel needs a CUDA device with CuPy and float32/float64 logits; "
                         f"got {logits.device}, {logits.dtype}, CuPy {'present' if backend.has_cupy() else 'absent'}")
    if fused:
        return _FusedCrossEntropy.apply(logits, target, ignore_index, reduction)
    _check_targets(target, logits.shape[1], ignore_index)  # a clear error before PyTorch's own
    return torch.nn.functional.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)


# =============================================================================
# Trajectories
# =============================================================================

def function_parameters(name: str, fn_params: dict | None = None) -> tuple[Any, list[float]]:
    """The :mod:`losslab.landscapes` function ``name`` built with ``fn_params``, and the
    parameter vector the kernel reads (``prm`` in ``trajectories.cu``)."""
    from .. import landscapes  # noqa: PLC0415

    if name not in FUNCTIONS:
        raise ValueError(f"name: expected one of {sorted(FUNCTIONS)}, got {name!r}")
    fn_params = dict(fn_params or {})
    builder = getattr(landscapes, name)
    try:
        fn = builder(**fn_params)
    except TypeError as err:
        raise ValueError(f"fn_params: {name} does not take {sorted(fn_params)}: {err}") from err
    if name == "quadratic":
        kappa, angle = float(fn_params.get("kappa", 10.0)), float(fn_params.get("angle", 0.0))
        c, s = math.cos(angle), math.sin(angle)
        prm = [c * c + kappa * s * s, c * s - kappa * c * s, s * s + kappa * c * c]
    elif name == "rosenbrock":
        prm = [float(fn_params.get("a", 1.0)), float(fn_params.get("b", 100.0))]
    elif name == "rastrigin":
        prm = [float(fn_params.get("A", 10.0))]
    else:
        prm = []
    return fn, (prm + [0.0] * 4)[:4]


def _hyper_vector(update: Any) -> list[float]:
    from ..optim import Update  # noqa: PLC0415

    if not isinstance(update, Update):
        raise TypeError(f"update: expected an Update from losslab.optim.optimizer(...), got {type(update).__name__}")
    if update.method not in _METHODS:
        raise ValueError(f"update: the trajectory kernel runs {sorted(_METHODS)}, got {update.method!r}")
    h = update.hyper
    for k, v in h.items():
        if isinstance(v, torch.Tensor):
            raise ValueError(f"update: the trajectory kernel takes scalar hyperparameters; {k} is a tensor")
    if update.method == "sgd":
        return [float(h["lr"]), float(h.get("momentum", 0.0)), float(h.get("dampening", 0.0)),
                float(bool(h.get("nesterov", False))), float(h.get("weight_decay", 0.0)), 0.0]
    if h.get("amsgrad", False):
        raise ValueError("update: the trajectory kernel does not run amsgrad")
    b1, b2 = h.get("betas", (0.9, 0.999))
    return [float(h.get("lr", 1e-3)), float(b1), float(b2), float(h.get("eps", 1e-8)),
            float(h.get("weight_decay", 0.0 if update.method == "adam" else 1e-2)),
            1.0 if update.method == "adamw" else 0.0]


def trajectories(name: str, x0: torch.Tensor, update: Any, steps: int, *, fn_params: dict | None = None,
                 path_every: int = 0, bound: float = 1e6, fused: bool | None = None):
    """Run ``update`` from every start in ``x0`` on test function ``name``; one kernel launch on a GPU.

    Parameters
    ----------
    name : str
        A key of :data:`FUNCTIONS` (the functions of :mod:`losslab.landscapes`).
    x0 : Tensor [N, 2], float32 or float64
    update : losslab.optim.Update
        ``optimizer("sgd", lr=..., momentum=..., nesterov=...)``, ``"adam"`` or ``"adamw"``
        with scalar hyperparameters.
    steps : int >= 1
    fn_params : dict, optional
        Arguments of the function's builder (``{"a": 1, "b": 100}`` for Rosenbrock).
    path_every : int >= 0
        Keep the positions every ``path_every`` steps (and at step 0); 0 keeps none.
    bound : float > 0
        Runs beyond this coordinate magnitude are frozen and reported as diverged.
    fused : bool, optional
        None: the kernel where :func:`available`; True: the kernel or an error;
        False: :func:`losslab.optim.run_trajectories`.

    Returns
    -------
    losslab.optim.Trajectories
        ``path`` is ``[steps // path_every + 1, N, 2]`` (or None), ``loss`` along it.
    """
    from ..optim import Trajectories, run_trajectories  # noqa: PLC0415

    fn, prm = function_parameters(name, fn_params)
    hyp = _hyper_vector(update)
    if not isinstance(x0, torch.Tensor) or x0.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x0: expected a float32 or float64 tensor [N, 2], got {getattr(x0, 'dtype', type(x0).__name__)}")
    if x0.ndim != 2 or x0.shape[1] != 2 or x0.shape[0] < 1:
        raise ValueError(f"x0: expected shape [N, 2] with N >= 1, got {tuple(x0.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < 2**31:
        raise ValueError(f"steps: expected an int in [1, 2**31), got {steps!r}")
    if isinstance(path_every, bool) or not isinstance(path_every, int) or not 0 <= path_every < 2**31:
        raise ValueError(f"path_every: expected an int in [0, 2**31), got {path_every!r}")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not (0 < bound < math.inf):
        raise ValueError(f"bound: expected a finite number > 0, got {bound!r}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0: expected finite starting points")
    can = available(x0.device)
    if fused is None:
        fused = can
    elif fused and not can:
        raise ValueError(f"fused: the kernel needs a CUDA device with CuPy; x0 is on {x0.device}")
    if not fused:
        run = run_trajectories(fn, x0, update, steps, keep_path=path_every > 0, bound=bound, device=x0.device)
        if path_every == 0:
            return run
        keep = list(range(0, steps + 1, path_every))
        return Trajectories(run.path[keep], run.loss[keep], run.final, run.diverged_at)
    import cupy  # noqa: PLC0415

    x = x0.contiguous()
    n = x.shape[0]
    out = torch.empty_like(x)
    dead = torch.empty(n, dtype=torch.int64, device=x.device)
    saved = steps // path_every + 1 if path_every else 1
    path = torch.empty((saved, n, 2), dtype=x.dtype, device=x.device)
    defines = (f"-DFN={FUNCTIONS[name]}", f"-DMETHOD={_METHODS[update.method]}")
    suffix = "f32" if x.dtype == torch.float32 else "f64"
    kernel = _function("trajectories", f"trajectories_{suffix}", defines)
    block = 128
    _launch(kernel, (n + block - 1) // block, block,
            (_ptr(x), _ptr(out), _ptr(dead), _ptr(path),
             cupy.int64(n), cupy.int64(steps), cupy.int64(path_every),
             *(cupy.float64(v) for v in (*prm, *hyp)), cupy.float64(bound)))
    if path_every:
        return Trajectories(path, fn.f(path), out, dead)
    return Trajectories(None, None, out, dead)


# =============================================================================
# Landscape scan of an MLP
# =============================================================================

SCAN_ROWS, SCAN_POINTS, SCAN_THREADS = 64, 8, 256  # LS_ROWS, LS_POINTS, LS_THREADS in scan_mlp.cu
_SCAN_MAX_LAYERS, _SCAN_MAX_K, _MAX_GRID_Y = 8, 4, 65535


def _scan_operands(model: Any, params: dict, dirs: list, x: torch.Tensor):
    """What ``scan_mlp.cu`` reads besides the coefficients and labels.

    P [K + 1, N, H0]: the first layer's pre-activation at theta and along each direction; the
    weights of layers 2..L packed (each W row-major, then its b) at theta [M] and along each
    direction [K, M]; the sizes; and where each packed layer starts.
    """
    L, K = len(model.layers), len(dirs)
    sizes = [int(s) for s in model.sizes]
    P = torch.empty((K + 1, x.shape[0], sizes[1]), dtype=x.dtype, device=x.device)
    torch.addmm(params["layers.0.bias"], x, params["layers.0.weight"].T, out=P[0])
    for k, d in enumerate(dirs):
        torch.addmm(d["layers.0.bias"], x, d["layers.0.weight"].T, out=P[k + 1])

    def pack(p: dict) -> torch.Tensor:
        parts = [t for i in range(1, L) for t in (p[f"layers.{i}.weight"].reshape(-1), p[f"layers.{i}.bias"])]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=x.dtype, device=x.device)

    offsets, o = [], 0
    for i in range(1, L):
        offsets.append(o)
        o += sizes[i] * sizes[i + 1] + sizes[i + 1]
    theta = pack(params)
    packed_dirs = torch.stack([pack(d) for d in dirs]) if L > 1 else torch.zeros((K, 0), dtype=x.dtype, device=x.device)
    return P, theta, packed_dirs, sizes, offsets


def _scan_stride(n: int, itemsize: int) -> int:
    """``ls_stride`` of ``scan_mlp.cu``: elements between rows of ``n``, an odd number of 16-byte vectors."""
    v = 16 // itemsize
    return v * (-(-n // v) | 1)


def scan_shared_bytes(sizes: list[int], k: int, dtype: torch.dtype) -> int:
    """The shared memory one block of ``scan_mlp.cu`` takes: the tile of P, one point's weights (each W
    with rows :func:`_scan_stride` apart, then b, rounded up to a whole vector), two activations."""
    size = torch.empty((), dtype=dtype).element_size()
    v = 16 // size
    m = sum(sizes[i + 1] * _scan_stride(sizes[i], size) + -(-sizes[i + 1] // v) * v for i in range(1, len(sizes) - 1))
    words = (k + 1) * SCAN_ROWS * sizes[1] + m + 2 * SCAN_ROWS * _scan_stride(max(sizes[1:]), size)
    return words * size


def scan_unsupported(model: Any, k: int, dtype: torch.dtype, device: torch.device | None = None) -> str | None:
    """Why ``scan_mlp.cu`` cannot scan this model (None if it can): depth, directions, dtype, shared memory."""
    if len(model.layers) > _SCAN_MAX_LAYERS:
        return f"takes MLPs of at most {_SCAN_MAX_LAYERS} layers, got {len(model.layers)}"
    if not 1 <= k <= _SCAN_MAX_K:
        return f"takes 1 to {_SCAN_MAX_K} directions, got {k}"
    if dtype not in (torch.float32, torch.float64):
        return f"takes float32 or float64, got {dtype}"
    if device is not None and device.type == "cuda":
        need = scan_shared_bytes(list(model.sizes), k, dtype)
        have = _shared_memory_optin(device)
        if need + 1024 > have:
            return f"needs {need} bytes of shared memory per block for sizes {tuple(model.sizes)}, the device has {have}"
    return None


def _check_scan_labels(y: torch.Tensor, classes: int) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"y: expected class labels in [0, {classes - 1}], got values in [{int(y.min())}, {int(y.max())}]")


def scan_mlp_reference(model: Any, params: dict, dirs: list, coeffs: torch.Tensor, x: torch.Tensor,
                       y: torch.Tensor) -> torch.Tensor:
    """:func:`scan_mlp` emulated on any device (:func:`losslab.kernels.reference.scan_mlp_blocked`): [G]."""
    from .reference import scan_mlp_blocked  # noqa: PLC0415

    _check_scan_labels(y, model.sizes[-1])
    P, theta, packed, sizes, offsets = _scan_operands(model, params, dirs, x)
    partial = scan_mlp_blocked(P, coeffs, theta, packed, sizes, offsets, y, activation=model.activation,
                               skip=model.skip, rows=SCAN_ROWS)
    return partial.sum(dim=1) / x.shape[0]


def scan_mlp(model: Any, params: dict, dirs: list, coeffs: torch.Tensor, x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model`` at ``theta + sum_k coeffs[g, k] dirs[k]`` for every g, with ``scan_mlp.cu``.

    Called by :func:`losslab.landscapes.scan_losses` (``method="kernel"``), which checks the
    arguments: ``params`` and each of ``dirs`` map the MLP's parameter names to tensors of x's
    dtype and device, ``coeffs`` is [G, K], ``y`` [N] int64.

    Returns
    -------
    Tensor [G]

    Raises
    ------
    ValueError
        Where the kernel cannot run (no CUDA device with CuPy; see :func:`scan_unsupported`),
        or for labels outside the model's classes.
    """
    import cupy  # noqa: PLC0415

    if not available(x.device):
        raise ValueError(f"method: the scan kernel needs a CUDA device with CuPy; x is on {x.device}")
    why = scan_unsupported(model, len(dirs), x.dtype, x.device)
    if why:
        raise ValueError(f"method: the scan kernel {why}; method='affine' scans any MLP")
    _check_scan_labels(y, model.sizes[-1])
    P, theta, packed, sizes, offsets = _scan_operands(model, params, dirs, x)
    meta = torch.tensor(sizes + offsets, dtype=torch.int64, device=x.device)
    n, g, k, layers = x.shape[0], coeffs.shape[0], len(dirs), len(model.layers)
    tiles = -(-n // SCAN_ROWS)
    partial = torch.empty((g, tiles), dtype=x.dtype, device=x.device)
    coeffs, y = coeffs.contiguous(), y.contiguous()
    nbytes = scan_shared_bytes(sizes, k, x.dtype)
    fn = _function("scan_mlp", "scan_mlp_f32" if x.dtype == torch.float32 else "scan_mlp_f64")
    act = 0 if model.activation == "relu" else 1
    for g0 in range(0, g, _MAX_GRID_Y * SCAN_POINTS):  # the grid's second dimension holds 65535 groups
        groups = min(_MAX_GRID_Y, -(-(g - g0) // SCAN_POINTS))
        _launch(fn, (tiles, groups), SCAN_THREADS,
                (_ptr(P), _ptr(coeffs), _ptr(theta), _ptr(packed), _ptr(meta), _ptr(y), _ptr(partial),
                 cupy.int64(n), cupy.int64(g), cupy.int64(g0), cupy.int32(layers), cupy.int32(k),
                 cupy.int32(act), cupy.int32(int(model.skip)), cupy.int64(theta.numel()),
                 cupy.int32(max(sizes[1:]))), shared_mem=nbytes)
    return partial.sum(dim=1) / n
