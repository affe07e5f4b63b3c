"""Where the book's computations run: device choice, array module, seeding.

This is the only module that inspects hardware. Everything else takes the
device from its inputs (``x.device``) or from :func:`device`.

Device order: CUDA, then Apple MPS, then CPU. The environment variable
``LOSSLAB_DEVICE`` overrides the choice (``cpu``, ``cuda``, ``cuda:1``,
``mps``); asking for a device that is not there is an error, not a silent
fallback.

CuPy is never imported at module import time. :func:`array_module` imports it
only when asked for the array module of a CUDA device, and only if it is
installed.

See the preface ("CPU or GPU") for what runs where.
"""

from __future__ import annotations

import os
import platform
import random
import re
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

import numpy as np
import torch

__all__ = ["device", "array_module", "has_cupy", "seed_everything", "generator", "describe", "single_thread"]

_ENV_VAR = "LOSSLAB_DEVICE"
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device(prefer: str | None = None) -> torch.device:
    """Return the device the book's computations should run on.

    Parameters
    ----------
    prefer : str, optional
        A device string (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"mps"``) that
        overrides both the environment and the automatic choice.

    Returns
    -------
    torch.device
        ``prefer`` if given, else ``$LOSSLAB_DEVICE`` if set, else the first of
        CUDA, MPS and CPU that is available.

    Raises
    ------
    ValueError
        If the requested device string is not one of the forms above.
    RuntimeError
        If the requested device is not available on this machine.

    Example
    -------
    >>> device("cpu")
    device(type='cpu')
    """
    requested = prefer if prefer is not None else os.environ.get(_ENV_VAR, "").strip()
    if requested:
        name = requested.lower()
        source = "prefer" if prefer is not None else _ENV_VAR
        if not _DEVICE_PATTERN.match(name):
            raise ValueError(
                f"{source}: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {requested!r}"
            )
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise RuntimeError(f"{source}={requested!r} but CUDA is not available here")
            index = int(name.split(":")[1]) if ":" in name else 0
            if index >= torch.cuda.device_count():
                raise RuntimeError(
                    f"{source}={requested!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
                )
        if name == "mps" and not _mps_available():
            raise RuntimeError(f"{source}={requested!r} but Apple MPS is not available here")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def has_cupy() -> bool:
    """True if CuPy is installed and sees a CUDA device. Imports CuPy only to check."""
    if not torch.cuda.is_available():
        return False
    try:
        import cupy  # noqa: PLC0415  (imported only when asked)

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or a CUDA driver/runtime mismatch
        return False


def array_module(dev: torch.device | str | None = None) -> ModuleType:
    """Return the array module for ``dev``: CuPy on a CUDA device with CuPy, else NumPy.

    Parameters
    ----------
    dev : torch.device or str, optional
        Defaults to :func:`device`.

    Returns
    -------
    module
        ``cupy`` or ``numpy``. Code written against ``xp = array_module()``
        runs on both (the CuPy examples' ``xp`` idiom).
    """
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda" and has_cupy():
        import cupy  # noqa: PLC0415

        return cupy
    return np


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (CPU and CUDA).

    Chapters call this once in their setup cell so every run prints the same
    numbers. Library functions never rely on it: they take a ``seed`` or a
    ``generator`` argument.

    Raises
    ------
    TypeError
        If ``seed`` is not an int (a float seed is almost always a mistake).
    ValueError
        If ``seed`` is negative or does not fit in 32 bits.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed: expected 0 <= seed < 2**32, got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def generator(seed: int, dev: torch.device | str | None = None) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``dev`` (default: CPU) seeded with ``seed``.

    Pass it to sampling functions (``torch.randn(..., generator=g)``) so a
    result depends only on its arguments, not on what ran before.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    g = torch.Generator(device=torch.device(dev) if dev is not None else "cpu")
    g.manual_seed(int(seed))
    return g


@contextmanager
def single_thread(dev: torch.device | str | None = None) -> Iterator[None]:
    """Run a block with one intra-op CPU thread (the previous number is restored after).

    The book's networks are small (tens to hundreds of rows per matrix): on a
    CPU, splitting each product over threads costs more in synchronization
    than it saves, and on a machine whose cores are busy a thread waiting for
    a core made steps 10 to 35 times slower (measured while writing the
    chapters). Does nothing when ``dev`` (default :func:`device`) is a GPU.
    """
    dev = torch.device(dev) if dev is not None else device()
    if dev.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Elements per intermediate tensor of a chunked batch on a CPU (about 8 MB in float64): keeps a batch in cache.
CPU_CHUNK_ELEMENTS = 1 << 20


def chunk_elements(dev: torch.device | str | None = None, *, dtype: torch.dtype = torch.float32,
                   live_tensors: int = 8, fraction: float = 0.5) -> int:
    """How many elements one intermediate tensor of a chunked batch may hold on ``dev``.

    On a CPU, :data:`CPU_CHUNK_ELEMENTS` (cache-sized chunks are fastest). On
    a CUDA device, ``fraction`` of the memory free now, shared by
    ``live_tensors`` intermediates of ``dtype``: a GPU is launch-bound with
    small chunks, so it gets the largest that fit (for example, a 101 x 101
    landscape scan in one or two launches on an 80 GB card, where CPU-sized
    chunks need over a thousand).

    Parameters
    ----------
    dev : torch.device or str, optional
        Defaults to :func:`device`.
    dtype : torch.dtype
        Element type of the intermediates.
    live_tensors : int >= 1
        Intermediates of that size alive at once.
    fraction : float in (0, 1]
        Share of the free memory to use.

    Returns
    -------
    int >= 1
    """
    dev = torch.device(dev) if dev is not None else device()
    if isinstance(live_tensors, bool) or not isinstance(live_tensors, int) or live_tensors < 1:
        raise ValueError(f"live_tensors: expected an int >= 1, got {live_tensors!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
    if dev.type != "cuda":
        return CPU_CHUNK_ELEMENTS
    free, _total = torch.cuda.mem_get_info(dev)
    size = torch.empty((), dtype=dtype).element_size()
    return max(CPU_CHUNK_ELEMENTS, int(free * fraction) // (size * live_tensors))


def describe(dev: torch.device | str | None = None) -> str:
    """One line saying what runs the chapter, for the setup cell.

    Example
    -------
    ``losslab 0.1.0 | torch 2.13.0 | CPU (2 threads) | NumPy arrays``
    """
    from . import __version__  # noqa: PLC0415  (avoid an import cycle)

    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        where = f"CUDA GPU {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    elif dev.type == "mps":
        where = f"Apple GPU (MPS) on {platform.machine()}"
    else:
        where = f"CPU ({torch.get_num_threads()} threads)"
    arrays = "CuPy arrays" if dev.type == "cuda" and has_cupy() else "NumPy arrays"
    return f"losslab {__version__} | torch {torch.__version__.split('+')[0]} | {where} | {arrays}"
