"""Figure descriptions (losslab.explore.figure): a matplotlib figure read back as Plotly traces and layout."""

import json
import math
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from losslab import plots
from losslab.explore import figure as F
from losslab.explore.demo import sigmoid_explorer
from losslab.explore.gd import bowl_explorer

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _valid(desc):
    """Plotly's own validators accept the description (unknown keys or bad values raise)."""
    layout = dict(desc["layout"])
    return go.Figure(data=desc["data"], layout=layout)


def test_lines_keep_their_numbers_colour_dash_and_legend_label():
    rng = np.random.default_rng(0)
    x, y = np.linspace(0, 1, 50), rng.normal(size=50)
    fig, ax = plots.figure(layout="fixed")
    ax.plot(x, y, color="#D55E00", ls="--", lw=1.5, label="noisy")
    ax.plot(x, 2 * x, "o", color="k", label="_hidden")
    ax.legend()
    ax.set(xlabel=r"step $t$", ylabel=r"$\beta^2$", title="two series")
    d = F.describe(fig)
    a, b = d["data"]
    np.testing.assert_array_equal(a["x"], x)
    np.testing.assert_array_equal(a["y"], y)
    assert a["line"] == {"color": "#d55e00", "width": 2.0, "dash": "dash"}
    assert a["name"] == "noisy" and a["showlegend"] and d["layout"]["showlegend"]
    assert b["mode"] == "markers" and not b["showlegend"] and "name" not in b
    assert d["layout"]["xaxis"]["title"]["text"] == "step t"
    assert d["layout"]["yaxis"]["title"]["text"] == "β²"  # full-size characters: Plotly's <sup> is 70%
    assert any(an["text"] == "two series" for an in d["layout"]["annotations"])
    _valid(d)


def test_log_axes_ranges_are_in_decades_and_limits_carry_over():
    fig, ax = plots.figure(layout="fixed")
    ax.semilogy([0, 10], [1e-6, 1.0])
    ax.set_ylim(1e-8, 10)
    ax.set_xlim(0, 10)
    lay = F.describe(fig)["layout"]
    assert lay["yaxis"]["type"] == "log"
    assert lay["yaxis"]["range"] == pytest.approx([-8, 1])
    assert lay["yaxis"]["ticktext"][:3] == ["10⁻⁸", "10⁻⁶", "10⁻⁴"] and lay["yaxis"]["tickvals"][0] == 1e-8
    assert lay["xaxis"]["range"] == pytest.approx([0, 10])


def test_panels_twins_and_axhline_map_to_their_own_axes():
    fig, (ax, bx) = plots.figure(1, 2, layout="fixed")
    ax.plot([0, 1], [0, 1])
    bx.plot([0, 1], [3, 4])
    bx.axhline(3.5, color="0.5")
    tw = bx.twinx()
    tw.plot([0, 1], [10, 20])
    d = F.describe(fig)
    assert [t["xaxis"] + t["yaxis"] for t in d["data"]] == ["xy", "x2y2", "x2y2", "x2y3"]
    assert d["layout"]["yaxis3"]["overlaying"] == "y2"
    hline = d["data"][2]
    assert list(hline["y"]) == [3.5, 3.5] and list(hline["x"]) == pytest.approx([0, 1], abs=0.1)  # axes fraction -> data
    assert [p["x"] for p in d["panels"]] == ["x", "x2"]
    left, right = (p["domain"][0] for p in d["panels"])
    assert left[1] < right[0]  # side by side, as in the figure
    _valid(d)


def test_contours_bars_fills_images_and_text():
    xs = np.linspace(-1, 1, 30)
    z = xs[None, :] ** 2 + xs[:, None] ** 2
    fig, (ax, bx) = plots.figure(1, 2, layout="fixed")
    cs = ax.contour(xs, xs, z, levels=[0.25, 1.0])
    ax.fill_between([0, 1], [0, 0], [1, 1], color="#0072B2", alpha=0.2)
    ax.text(0.5, 0.5, "centre", ha="left")
    bx.bar(["backprop", "finite differences"], [2.0, 1e4])
    bx.imshow(np.arange(6.0).reshape(2, 3), extent=(0, 3, 0, 2))
    d = F.describe(fig)
    lines = [t for t in d["data"] if t.get("hoverinfo") == "text"]
    assert len(lines) == len(cs.levels) == 2
    ring = lines[0]
    r = np.hypot(ring["x"], ring["y"])
    assert np.nanmax(np.abs(r - 0.5)) < 0.02  # the level-0.25 contour is the circle of radius 0.5
    fill = next(t for t in d["data"] if t.get("fill") == "toself" and t["xaxis"] == "x")
    assert fill["fillcolor"].startswith("rgba(0,114,178,0.2")
    assert d["layout"]["xaxis2"]["ticktext"] == ["backprop", "finite differences"]
    heat = next(t for t in d["data"] if t["type"] == "heatmap")
    assert heat["z"].shape == (2, 3) and list(heat["x"]) == [0.5, 1.5, 2.5]
    assert any(a["text"] == "centre" and a["xanchor"] == "left" for a in d["layout"]["annotations"])
    _valid(d)


def test_every_text_is_at_least_the_legible_size():
    fig, ax = plots.figure(layout="fixed")
    ax.plot([1, 2], [1, 2], label="a")
    ax.text(1, 1, "tiny", fontsize=5)
    ax.legend(fontsize=5)
    lay = F.describe(fig)["layout"]
    sizes = [a["font"]["size"] for a in lay["annotations"]] + [lay["legend"]["font"]["size"], lay["font"]["size"]]
    assert min(sizes) >= 10


@pytest.mark.parametrize("text, plain", [
    (r"$f - f^\star$", "f - f*"),
    (r"rate $\sqrt{\beta}$ (floor)", "rate √β (floor)"),
    (r"$\|\nabla \mathcal{L}\|$", "‖∇ L‖"),
    (r"$x_{t+1}$", "xₜ₊₁"),
    (r"$w^{(l)}_{ij}$", "w^(l)ᵢⱼ"),
    ("no math\nsecond line", "no math<br>second line"),
])
def test_mathtext_becomes_plain_text(text, plain):
    assert F.plain_text(text) == plain


def test_dumps_rounds_arrays_and_writes_gaps_as_null():
    s = F.dumps({"x": np.array([1.0, math.pi, np.nan, 1e-12, -0.0]), "n": 3, "flag": True, "t": "</script>"}, digits=4)
    assert json.loads(s) == {"x": [1, 3.142, None, 1e-12, 0], "n": 3, "flag": True, "t": "</script>"}
    assert "</script>" not in s  # safe inside a <script> element


@pytest.mark.parametrize("make", [sigmoid_explorer, bowl_explorer])
def test_explorer_descriptions_pass_plotlys_validation(make):
    ex = make()
    for params in ex.grid()[:: max(1, ex.n_frames // 3)]:
        d = ex.describe(**params)
        assert d["data"] and "skipped" not in d
        _valid(d)


def test_vendored_plotly_bundle_is_the_plotly_packages_version():
    """The book's plotly.js (a partial bundle) is the version the live FigureWidget draws with."""
    import plotly.offline

    head = (ROOT / "book" / "_static" / "plotly-cartesian.min.js").read_text(encoding="utf-8")[:300]
    version = re.search(r"plotly\.js \(cartesian - minified\) v(\S+)", head).group(1)
    assert version == plotly.offline.get_plotlyjs_version()
