"""The explorer of book/how_this_book_works.ipynb: a sigmoid neuron and its slope."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .. import plots
from . import Explorer, Slider, Toggle, registered


def sigmoid_curve(w: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The drawn curve: ``x`` (241 points on [-6, 6]) and $\\sigma(w x + b)$ there."""
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)  # (241,)
    return x, torch.sigmoid(w * x + b)


def sigmoid_alt(w: float, b: float, show_slope: bool) -> str:
    """The alt text of one frame: where the drawn curve starts, crosses 0.5 (steepest) and ends."""
    x, s = sigmoid_curve(w, b)
    text = (f"Sigmoid of w x + b for w = {w:.3g} and b = {b:.3g}: an S-curve rising from {float(s[0]):.2g} at x = -6 "
            f"to {float(s[-1]):.2g} at x = 6, crossing 0.5 at x = {-b / w + 0.0:.3g}, where it is steepest, "
            f"with slope {w / 4:.3g}")
    return text + (f"; the slope curve is drawn too, peaking at {w / 4:.3g} at that x" if show_slope else "")


def render_sigmoid(w: float, b: float, show_slope: bool) -> Figure:
    """Plot $\\sigma(w x + b)$ for x in [-6, 6], and its derivative in x if ``show_slope``."""
    x, s = sigmoid_curve(w, b)
    fig, ax = plots.figure(size=(6.4, 3.4), layout="fixed")
    ax.plot(x, s, label=r"$\sigma(wx+b)$")
    if show_slope:
        ax.plot(x, w * s * (1 - s), label=r"slope $w\,\sigma(1-\sigma)$")
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set(xlim=(-6, 6), ylim=(-0.05, max(1.05, 0.3 * abs(w) + 0.05) if show_slope else 1.05), xlabel="x")
    ax.set_title(f"w = {w:.3g}, b = {b:.3g}: steepest slope {abs(w) / 4:.3g} at x = {-b / w + 0.0:.3g}")
    ax.legend(loc="upper left")
    return fig


@registered
def sigmoid_explorer() -> Explorer:
    return Explorer(
        "demo.sigmoid-neuron",
        render_sigmoid,
        controls={
            # 9 x 9 static positions, each with its steepest point -b/w inside the plotted x range [-6, 6]
            "w": Slider(0.25, 4.0, default=1.0, log=True, static=[0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0],
                        label="weight w", fill=False),
            "b": Slider(-4.0, 4.0, default=0.0, static=[-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0], label="bias b", fill=False),
            "show_slope": Toggle(default=True, label="show slope"),
        },
        title="A sigmoid neuron: the weight sets the steepness, the bias the position",
        alt=sigmoid_alt,
    )
