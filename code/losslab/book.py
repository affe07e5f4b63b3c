"""Glue between the package and the book's notebooks.

- :func:`setup` is what every chapter's setup cell calls.
- :func:`setup_cell` writes that cell; the repository it installs from comes
  from ``_config.yml`` (``repository.url`` and ``repository.branch``), the one
  place the URL is written. ``python -m losslab sync-setup`` rewrites every
  chapter's setup cell after the URL changes, and the chapter-contract test
  fails if a chapter's cell differs.
- :func:`is_static` tells a static book build from a live kernel: the build
  (``losslab.sphinxext``, loaded by ``_config.yml``) sets ``LOSSLAB_STATIC=1``
  for the kernels it starts, and explorers then render kernel-free HTML.
- :func:`glue` stores a computed value for the prose (myst-nb's ``glue``)
  and degrades to a plain display where myst-nb is absent (Colab).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from . import backend, plots

__all__ = ["setup", "is_static", "in_colab", "glue", "setup_cell", "read_repository", "widgets_advice", "STATIC_ENV"]

STATIC_ENV = "LOSSLAB_STATIC"


def is_static() -> bool:
    """True while the book build executes a notebook (``LOSSLAB_STATIC=1``)."""
    return os.environ.get(STATIC_ENV, "") == "1"


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def setup(seed: int = 0, *, quiet: bool = False) -> torch.device:
    """Prepare a chapter: seed every generator, set the figure style, say where it runs.

    Parameters
    ----------
    seed : int
        Seed for Python, NumPy and PyTorch, so the chapter prints the same
        numbers on every run.
    quiet : bool
        If True, do not print the one-line description.

    Returns
    -------
    torch.device
        The device chosen by :func:`losslab.backend.device`.
    """
    backend.seed_everything(seed)
    plots.use_book_style()
    dev = backend.device()
    if not quiet:
        print(backend.describe(dev))
    if not is_static():
        if in_colab():
            _enable_colab_widgets()
        advice = widgets_advice()
        if advice:
            print(advice)
    return dev


def widgets_advice(loaded: str | None = None, installed: str | None = None) -> str | None:
    """What to do if the live explorers cannot work in this kernel, or None if they can.

    The explorers need ipywidgets 8. Hosted services may ship 7, and
    installing this package upgrades it on disk while the running kernel keeps
    the old version in memory: both need one restart.
    """
    from importlib import metadata  # noqa: PLC0415

    if loaded is None:
        try:
            import ipywidgets  # noqa: PLC0415
        except ImportError:
            return ("The explorers need ipywidgets: run  %pip install -q 'ipywidgets>=8,<9'  and restart the kernel "
                    "(Colab: Runtime > Restart session), then run the page again.")
        loaded = ipywidgets.__version__
    if installed is None:
        try:
            installed = metadata.version("ipywidgets")
        except metadata.PackageNotFoundError:
            installed = loaded
    major = int(loaded.split(".")[0])
    if major < 8:
        if installed != loaded and int(installed.split(".")[0]) >= 8:
            return (f"ipywidgets {installed} was installed, but this kernel still runs {loaded}: restart the kernel "
                    "(Colab: Runtime > Restart session) and run the page again for live explorers.")
        return (f"The explorers need ipywidgets 8 (this kernel has {loaded}): run  %pip install -q 'ipywidgets>=8,<9'  "
                "and restart the kernel (Colab: Runtime > Restart session), then run the page again.")
    return None


def _enable_colab_widgets() -> None:
    """Colab draws ipywidgets 8 through its custom widget manager; turn it on (harmless elsewhere)."""
    try:
        from google.colab import output  # noqa: PLC0415

        output.enable_custom_widget_manager()
    except Exception:  # noqa: BLE001  (not in Colab, or an older Colab without it)
        pass


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the prose (``{glue:text}`name```).

    In the built book this is myst-nb's ``glue``. Without myst-nb (Colab),
    the value is shown when ``display`` is True and otherwise nothing happens.

    Returns None on purpose: a cell whose last line is ``glue(...)`` must not
    print the raw value (``0.14096502606708886``) into the page. Keep the
    value in a variable of your own if a later line needs it.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected a Python-identifier-like string, got {name!r}")
    try:
        from myst_nb import glue as _glue  # noqa: PLC0415
    except ImportError:
        if display:
            from IPython.display import display as _display  # noqa: PLC0415

            _display(value)
        elif os.environ.get("LOSSLAB_STATIC") == "1":
            _record(name, value)
        return None
    _glue(name, value, display=display)
    return None


def _record(name: str, value: Any) -> None:
    """Write the glued value as myst-nb would, for a page executed without myst-nb.

    ``python -m losslab.gpucheck`` and ``losslab.glued`` execute pages on
    machines that have Jupyter but not the book's build tools, and compare
    the glued values they find; a live session (not static) shows nothing.
    """
    from IPython.core.formatters import format_display_data  # noqa: PLC0415
    from IPython.display import display as _display  # noqa: PLC0415

    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    _display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


#: myst-nb's prefix for glued outputs (``myst_nb.ext.glue.GLUE_PREFIX``).
GLUE_PREFIX = "application/papermill.record/"


# --- the setup cell -----------------------------------------------------------

_SETUP_TEMPLATE = """\
# Setup: on Colab, first install this book's package (losslab) from its repository.
import sys
if "google.colab" in sys.modules:
    %pip install --quiet "losslab @ git+{url}@{branch}"
import losslab
device = losslab.setup(seed={seed})"""


def read_repository(config_path: str | os.PathLike) -> tuple[str, str]:
    """Return ``(url, branch)`` from the ``repository`` section of ``_config.yml``.

    Raises
    ------
    ValueError
        If the section, the URL or the branch is missing or the URL is not https.
    """
    import yaml  # noqa: PLC0415  (a build-time dependency only)

    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    repo = config.get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{config_path}: repository.url must be an https URL, got {url!r}")
    if not isinstance(branch, str) or not branch:
        raise ValueError(f"{config_path}: repository.branch must be set, got {branch!r}")
    return url.rstrip("/"), branch


def setup_cell(url: str, branch: str, seed: int = 0) -> str:
    """The source of a chapter's setup cell, installing from ``url`` at ``branch`` on Colab."""
    if not url.startswith("https://"):
        raise ValueError(f"url: expected an https URL, got {url!r}")
    return _SETUP_TEMPLATE.format(url=url.rstrip("/"), branch=branch, seed=seed)
