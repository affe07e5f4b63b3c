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


# --- chapter 7's explorers: the numbers the chapter's claims read ---------------------------------------

def test_polynomial_errors_are_the_ridge_fits_of_each_degree():
    import torch

    from losslab import regularize as R
    from losslab.explore.reg import _polynomial_data, polynomial_errors, render_polynomial

    prob, feats = _polynomial_data()
    out = polynomial_errors(1e-2)
    assert out["train_rmse"].shape == out["val_rmse"].shape == (15,)
    for d in (1, 7, 15):
        w = R.ridge_fit(feats["train"][:, : d + 1], prob.train.y, 1e-2)
        assert torch.allclose(out["coef"][d, : d + 1], w, atol=1e-9)
        val = ((feats["val"][:, : d + 1] @ w - prob.val.y) ** 2).mean().sqrt()
        assert torch.allclose(out["val_rmse"][d - 1], val, rtol=1e-9)
    fig = render_polynomial(degree=15, strength=1e-2)
    assert f"val {out['val_rmse'][-1]:.2f}" in fig.axes[0].get_title()


def test_classifier_panel_shows_the_training_mode_loss_of_each_step():
    import numpy as np

    from losslab.explore.reg import classifier_runs, render_classifier

    runs = classifier_runs()
    res = runs["result"]
    assert len(runs["settings"]) == res.val_loss.shape[0] == runs["prob"].shape[0]
    assert res.step_loss.shape == (len(runs["settings"]), 200)
    fig = render_classifier(strength=0.0, p=0.3)
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert "training, as trained (dropout on)" in labels and "training, evaluation mode" in labels
    i = runs["settings"].index((0.0, 0.3))
    shown = next(line for line in fig.axes[1].get_lines() if line.get_label().startswith("training, as trained"))
    assert np.allclose(shown.get_ydata(), res.step_loss[i].numpy())
