"""What the book consists of, read from _toc.yml, and how its notebooks execute.

Shared by the chapter-contract tests and the built-book tests.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
# The book build's execution cache. Set LOSSLAB_EXEC_CACHE to use another
# (for example when several people execute chapters at once on one checkout).
CACHE = Path(os.environ.get("LOSSLAB_EXEC_CACHE", ROOT / "_build" / ".jupyter_cache"))
CHAPTER_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
# The budget is a benchmark figure, printed per chapter at the end of the run
# (conftest.py); the test fails only past a generous guard, so a loaded CI
# machine does not fail a healthy chapter.
TIME_LIMIT_S = 45.0
TIME_GUARD_S = 3 * TIME_LIMIT_S
TIMES: dict[str, float] = {}  # notebook name -> seconds, printed at the end of the run

# Installed in the kernel through IPython's startup files: any connection or
# name lookup that leaves this machine is recorded and refused.
_NETWORK_GUARD = r'''
import os as _os, socket as _socket

_LOG = _os.environ["LOSSLAB_NETWORK_LOG"]
def _local(host):
    host = str(host)
    return host in ("localhost", "::1", "0.0.0.0", "") or host.startswith("127.")

def _refuse(what):
    with open(_LOG, "a") as f:
        f.write(what + "\n")
    raise OSError("network access is disabled while the book's notebooks execute: " + what)

_connect, _connect_ex, _getaddrinfo = _socket.socket.connect, _socket.socket.connect_ex, _socket.getaddrinfo

def connect(self, address):
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address!r}")
    return _connect(self, address)

def connect_ex(self, address):
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address!r}")
    return _connect_ex(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local(host if isinstance(host, str) else host.decode()):
        _refuse(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)

_socket.socket.connect, _socket.socket.connect_ex, _socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


def toc_files() -> list[Path]:
    """Every page listed in _toc.yml (root first), as paths with their suffix."""
    from losslab.reader import toc_names

    names = toc_names(ROOT)
    paths = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            if (ROOT / f"{name}{suffix}").exists():
                paths.append(ROOT / f"{name}{suffix}")
                break
        else:
            raise FileNotFoundError(f"_toc.yml lists {name!r}, but neither {name}.ipynb nor {name}.md exists")
    return paths


def notebooks() -> list[Path]:
    return [p for p in toc_files() if p.suffix == ".ipynb"]


def chapters() -> list[Path]:
    """Notebooks named NN_slug.ipynb: the chapters, which carry the full contract."""
    return [p for p in notebooks() if CHAPTER_NAME.match(p.stem)]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def source(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


@dataclass
class Execution:
    notebook: nbformat.NotebookNode
    seconds: float
    network: list[str]
    error: str | None


def execute(path: Path, timeout: int = 300) -> Execution:
    """Execute ``path`` as the book build does (static explorers), offline and timed.

    On success the executed notebook goes into the build's execution cache,
    so `jupyter-book build` reuses it instead of executing it again.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    original = read(path)
    nb = read(path)
    with tempfile.TemporaryDirectory() as tmp:
        startup = Path(tmp) / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-network-guard.py").write_text(_NETWORK_GUARD)
        log = Path(tmp) / "network.log"
        log.touch()
        env = dict(os.environ, LOSSLAB_STATIC="1", IPYTHONDIR=str(Path(tmp) / "ipython"), LOSSLAB_NETWORK_LOG=str(log))
        env.pop("LOSSLAB_DEVICE", None)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}})
        error = None
        start = time.perf_counter()
        try:
            client.execute(env=env)
        except CellExecutionError as err:
            error = str(err)
        seconds = time.perf_counter() - start
        network = [line for line in log.read_text().splitlines() if line]
    if error is None:
        _store_in_cache(path, original, nb, seconds)
    return Execution(nb, seconds, network, error)


def _store_in_cache(path: Path, original, executed, seconds: float) -> None:
    """Store ``executed``'s outputs under the key the build will look up.

    jupyter-cache keys a notebook on its code cells *with their metadata* and
    its kernelspec, so the outputs are copied onto the stored source
    notebook: execution adds cell metadata (timings) that the source lacks.
    """
    import copy

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    bundle = copy.deepcopy(original)
    for cell, done in zip(bundle.cells, executed.cells, strict=True):
        if cell.cell_type == "code":
            cell.outputs = done.outputs
            cell.execution_count = done.execution_count
    for key in ("language_info", "widgets"):
        if key in executed.metadata:
            bundle.metadata[key] = executed.metadata[key]
    cache = get_cache(str(CACHE))
    cache.cache_notebook_bundle(
        CacheBundleIn(bundle, str(path), data={"execution_seconds": seconds}),
        check_validity=False,
        overwrite=True,
    )


def losslab_outputs(nb) -> list[dict]:
    """The ``losslab`` metadata of every output (quizzes, exercises, explorers) in order."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("losslab")
            if meta:
                found.append(meta)
    return found


def stored_outputs(nb) -> list[int]:
    """Indices of code cells stored with outputs or execution counts."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]


def dumps_outputs(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def by_page(paths):
    """One test parameter per page, named by the page."""
    import pytest  # noqa: PLC0415

    return [pytest.param(p, id=p.stem) for p in paths]
