import json
import re

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from matplotlib.figure import Figure

from losslab import plots
from losslab.explore import Choice, Explorer, Slider, Toggle
from losslab.explore.demo import render_sigmoid, sigmoid_explorer


def line_render(a: float, kind: str, flip: bool) -> Figure:
    fig, ax = plots.figure(size=(2, 1.5), layout="fixed")
    ax.plot([0, 1], [0, -a if flip else a], ls="-" if kind == "solid" else "--")
    return fig


def small(**kw):
    controls = {"a": Slider(0.0, 2.0, default=1.0, static=[0.5, 1.0, 2.0]),
                "kind": Choice(["solid", "dashed"]), "flip": Toggle()}
    return Explorer("t.line", line_render, controls | kw.pop("controls", {}), title="t",
                    alt="line of slope {a} ({kind}, flip {flip})", **kw)


def test_render_is_pure_and_validated():
    ex = small()
    assert isinstance(ex.render(), Figure)
    with pytest.raises(TypeError, match="unknown parameter"):
        ex.render(b=1)
    with pytest.raises(ValueError, match="a: expected a value in"):
        ex.render(a=5)
    with pytest.raises(ValueError, match="kind: expected one of"):
        ex.render(kind="dotted")
    with pytest.raises(ValueError, match="flip: expected True or False"):
        ex.render(flip="yes")


def test_different_settings_give_different_frames_and_the_same_setting_the_same():
    ex = small()
    assert ex.frame(a=1.0) == ex.frame(a=1.0)
    assert ex.frame(a=1.0) != ex.frame(a=2.0)
    assert ex.frame(flip=True) != ex.frame(flip=False)


def test_static_html_holds_one_frame_per_grid_point_with_alt_text():
    ex = small()
    html = ex.static_html()
    data = json.loads(re.search(r'<script type="application/json" class="lle-data">(.*?)</script>', html).group(1))
    assert ex.n_frames == 3 * 2 * 2 == len(data["frames"]) == len(data["alts"])
    assert len(set(data["frames"].values())) == ex.n_frames  # every frame differs
    assert data["alts"]["2,1,1"] == "line of slope 2.0 (dashed, flip True)"
    start = re.search(r'<img class="lle-frame" src="data:image/png;base64,([^"]+)" alt="([^"]+)"', html)
    assert start.group(1) == data["frames"]["1,0,0"]  # the defaults: a=1.0, solid, no flip
    assert "http" not in html and "<script src" not in html


def test_static_html_respects_the_size_budget():
    with pytest.raises(ValueError, match="exceed"):
        small().static_html(max_bytes=5_000)


def test_too_many_static_frames_is_an_error_at_construction():
    with pytest.raises(ValueError, match="max_frames"):
        small(controls={"a": Slider(0.0, 2.0, default=1.0, static=[0.0, 0.5, 1.0, 1.5, 2.0])}, max_frames=10)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Slider(1, 0, default=0.5), "min < max"),
        (lambda: Slider(0, 1, default=2), "default"),
        (lambda: Slider(0, 1, default=0.5, log=True), "log slider"),
        (lambda: Slider(0, 1, default=0.5, static=[0.5, 3]), "outside"),
        (lambda: Choice(["only"]), "at least 2"),
        (lambda: Choice(["a", "b"], default="c"), "default"),
    ],
)
def test_bad_controls_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_alt_template_with_an_unknown_name_fails_at_construction():
    with pytest.raises(ValueError, match="alt"):
        Explorer("t.x", line_render, {"a": Slider(0, 1, default=0.5), "kind": Choice(["solid", "dashed"]), "flip": Toggle()},
                 title="t", alt="{nope}")


def test_render_must_return_a_figure():
    ex = Explorer("t.bad", lambda a: None, {"a": Slider(0, 1, default=0.5)}, title="t", alt="a={a}")
    with pytest.raises(TypeError, match="Figure"):
        ex.render()


def test_default_static_grid_includes_the_default():
    s = Slider(0.01, 1.0, default=0.1, log=True)
    vals = s.static_values()
    assert 0.1 in vals and len(vals) == 5 and vals[0] == pytest.approx(0.01)


def test_the_live_widget_updates_its_image_in_place():
    box = small().widget()
    before = box.image.value
    box.controls["a"].value = 2.0
    after = box.image.value
    assert after != before
    assert after == small().frame(a=2.0)
    box.controls["kind"].value = "dashed"
    assert box.image.value == small().frame(a=2.0, kind="dashed")
    # sliders redraw once on release, not at every position passed while dragging
    assert box.controls["a"].continuous_update is False


def test_show_is_static_in_the_build_and_live_in_a_kernel(monkeypatch):
    InteractiveShell.instance()
    ex = small()
    monkeypatch.setenv("LOSSLAB_STATIC", "1")
    with capture_output() as cap:
        ex.show()
    out = cap.outputs[0]
    assert out.metadata["losslab"] == {"kind": "explorer", "name": "t.line", "mode": "static"}
    assert 'class="lle"' in out.data["text/html"]
    monkeypatch.delenv("LOSSLAB_STATIC")
    with capture_output() as cap:
        ex.show()
    out = cap.outputs[0]
    assert out.metadata["losslab"]["mode"] == "live"
    assert "application/vnd.jupyter.widget-view+json" in out.data


def test_demo_explorer_frames_fit_the_budget_and_show_the_slope():
    ex = sigmoid_explorer()
    assert ex.n_frames <= 60
    assert len(ex.static_html()) < 1_500_000
    fig = render_sigmoid(2.0, 1.0, True)
    assert "steepest slope 0.5 at x = -0.5" in fig.axes[0].get_title()


# ---- Chapter 2's test-function explorer: arrows to scale, curvature told apart ----------

def test_landscape_explorer_draws_no_arrow_at_critical_points_and_a_scaled_one_elsewhere():
    import numpy as np
    import torch

    from losslab import landscapes
    from losslab.explore.landscape import POINTS, point_geometry, test_function_explorer

    names = test_function_explorer().controls["function"].options
    seen_critical = 0
    for name in names:
        fn = landscapes.get(name)
        (x0, x1), (y0, y1) = fn.domain
        span = 0.16 * min(x1 - x0, y1 - y0)
        for point in POINTS:
            geo = point_geometry(name, point)
            g = fn.grad(torch.tensor(geo.point, dtype=torch.float64)).numpy()
            if geo.critical:
                seen_critical += 1
                assert np.linalg.norm(g) < 1e-6 and not geo.arrow.any(), (name, point)
            else:
                length = np.linalg.norm(geo.arrow)
                assert 0 < length <= span * (1 + 1e-12), (name, point)
                assert np.allclose(geo.arrow / length, g / np.linalg.norm(g)), (name, point)  # along the gradient
                if geo.capped:  # steeper than the median gradient: the longest arrow
                    assert np.isclose(length, span), (name, point)
    assert seen_critical >= len(names)  # every function offers at least one critical point


def test_landscape_arrow_length_is_proportional_to_the_gradient():
    import numpy as np

    from losslab.explore import landscape as ex

    geo = ex.point_geometry("himmelblau", "an ordinary point")
    assert not geo.capped and not geo.critical
    g_ref = ex._surface("himmelblau", 75)[3]
    (x0, x1), (y0, y1) = ((-5.0, 5.0), (-5.0, 5.0))
    assert np.linalg.norm(geo.arrow) == pytest.approx(0.16 * min(x1 - x0, y1 - y0) * geo.grad_norm / g_ref)


def test_landscape_explorer_tells_flat_from_curving_down_in_lines_and_legend():
    from matplotlib.text import Annotation

    from losslab.explore.landscape import CURVATURE_STYLE, point_geometry, render_test_function

    def drawn(fig):
        ax = fig.axes[0]
        arrows = [t for t in ax.texts if isinstance(t, Annotation)]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        lines = {ln.get_linestyle() for ln in ax.get_lines() if len(ln.get_xdata()) == 2}
        return ax, arrows, legend, lines

    # monkey saddle at the origin: gradient zero, both eigenvalues zero -> no arrow, two dotted "flat" lines
    geo = point_geometry("monkey_saddle", "another critical point")
    assert geo.curvature == ("flat", "flat") and geo.kind == "degenerate"
    ax, arrows, legend, lines = drawn(render_test_function("monkey_saddle", "another critical point"))
    assert not arrows and any("no arrow" in t for t in legend)
    assert lines == {CURVATURE_STYLE["flat"][0]} and sum("flat" in t for t in legend) == 2
    assert ax.get_aspect() == 1.0  # equal scales: perpendicular things look perpendicular

    # a Himmelblau saddle: one direction curves down (dashed), one up (solid); still no arrow
    geo = point_geometry("himmelblau", "another critical point")
    assert geo.kind == "saddle" and sorted(geo.curvature) == ["down", "up"]
    _, arrows, legend, lines = drawn(render_test_function("himmelblau", "another critical point"))
    assert not arrows and lines == {CURVATURE_STYLE["down"][0], CURVATURE_STYLE["up"][0]}
    assert any("curves down" in t for t in legend) and any("curves up" in t for t in legend)
    assert CURVATURE_STYLE["flat"][0] not in (CURVATURE_STYLE["down"][0], CURVATURE_STYLE["up"][0])

    # an ordinary point: one arrow, and the legend says its length is to scale
    _, arrows, legend, _ = drawn(render_test_function("himmelblau", "an ordinary point"))
    assert len(arrows) == 1 and any("proportional" in t for t in legend)


def test_network_models_train_to_the_same_loss_or_stop_at_the_cap():
    from losslab import landscapes
    from losslab.explore.landscape import NETWORKS, network_models

    models, train, reached = network_models(target_loss=0.3, check_every=10)
    assert set(models) == set(NETWORKS) == set(reached)
    for name, (steps, loss) in reached.items():
        assert steps % 10 == 0 and 0 < loss <= 0.3, name
        assert float(landscapes.loss_at(models[name], train.x, train.y)) == pytest.approx(loss)
    _, _, capped = network_models(target_loss=1e-6, max_steps=20, check_every=10)
    assert all(steps == 20 and loss > 1e-6 for steps, loss in capped.values())
