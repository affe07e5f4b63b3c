"""Figures in the book's style.

Views build figures with :func:`figure`, which returns a bare
``matplotlib.figure.Figure`` that is not registered with pyplot. Such a figure
is never shown by accident at the end of a cell, never leaks memory in a loop,
and can be rendered to PNG without a display (:func:`to_png`). A notebook
shows it by leaving it as the cell's last expression.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
from matplotlib.figure import Figure

__all__ = ["BOOK_STYLE", "use_book_style", "figure", "to_png", "show", "PALETTE"]

# Colour-blind-safe palette (Okabe & Ito) used for every series in the book.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

BOOK_STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (6.4, 3.6),
    "figure.constrained_layout.use": True,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to matplotlib's global settings (the setup cell calls this)."""
    matplotlib.rcParams.update(BOOK_STYLE)


def figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    size: tuple[float, float] | None = None,
    layout: str = "constrained",
    **subplot_kw: Any,
):
    """A new figure and its axes, in the book's style, not registered with pyplot.

    Parameters
    ----------
    nrows, ncols : int
        Grid of axes.
    size : (float, float), optional
        Width and height in inches; default from :data:`BOOK_STYLE`.
    layout : {"constrained", "fixed"}
        ``"constrained"`` fits labels exactly but costs a layout pass per
        draw; ``"fixed"`` uses fixed margins (room for tick labels, axis
        labels and a title) and draws about twice as fast. Explorers, which
        redraw on every change, use ``"fixed"``.
    **subplot_kw
        Passed to ``Figure.subplots`` (``sharex``, ``subplot_kw={"projection": "3d"}``...).

    Returns
    -------
    (Figure, Axes or array of Axes)
    """
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if layout not in ("constrained", "fixed"):
        raise ValueError(f"layout: expected 'constrained' or 'fixed', got {layout!r}")
    width, height = size or BOOK_STYLE["figure.figsize"]
    with matplotlib.rc_context(BOOK_STYLE):
        if layout == "constrained":
            fig = Figure(figsize=(width, height), layout="constrained")
        else:
            fig = Figure(figsize=(width, height), layout="none")
            # margins in inches: room for tick labels + axis label (left, bottom) and a title (top)
            fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                                top=1 - 0.4 / height, wspace=0.35, hspace=0.45)
        axes = fig.subplots(nrows, ncols, **subplot_kw)
    return fig, axes


def to_png(fig: Figure, *, dpi: float = 100) -> bytes:
    """Render ``fig`` to PNG bytes (Agg, no display needed), then close it if pyplot owns it."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)  # no-op for a figure pyplot does not own
    return buf.getvalue()


def show(fig: Figure, alt: str, *, dpi: float = 100) -> None:
    """Display ``fig`` as an image with alt text (live, Colab and the static book alike).

    Parameters
    ----------
    fig : Figure
        Usually from :func:`figure`.
    alt : str
        What the figure shows, for readers who cannot see it (at least a few words).
    """
    if not isinstance(alt, str) or len(alt.strip()) < 10:
        raise ValueError(f"alt: describe the figure in words (at least 10 characters), got {alt!r}")
    import base64  # noqa: PLC0415
    import html  # noqa: PLC0415

    from IPython.display import display  # noqa: PLC0415

    png = to_png(fig, dpi=dpi)
    b64 = base64.b64encode(png).decode("ascii")
    display(
        {
            "text/html": f'<img class="ll-figure" src="data:image/png;base64,{b64}" alt="{html.escape(alt.strip())}" style="max-width:100%;height:auto">',
            "text/plain": f"[figure: {alt.strip()}]",
        },
        raw=True,
        metadata={"losslab": {"kind": "figure", "alt": alt.strip()}},
    )
