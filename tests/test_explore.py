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


def test_schedule_chapter_claims_read_the_numbers_its_frames_show():
    """Chapter 4 states facts about the designer's and the range test's frames; the helpers it checks them
    with must give the numbers those frames draw."""
    from losslab.explore.schedule import (DESIGNS, designer_final_losses, range_test_reading, render_designer,
                                          render_range_test)

    finals = designer_final_losses(1.5, 0.1)
    assert set(finals) == {*DESIGNS, "constant", "constant / 10"}
    for schedule in ("cosine", "warmup-stable-decay"):
        title = render_designer(schedule, 1.5, 0.1).axes[1].get_title()
        shown = [float(x) for x in re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", title)]
        expected = [finals[schedule], finals["constant"], finals["constant / 10"]]
        assert [float(f"{v:.3g}") for v in expected] == shown, (title, expected)
    run = range_test_reading(0.98, 10.0)
    lines = [ln for ln in render_range_test(0.98, 10.0, 1e-4).axes[0].get_lines() if len(set(ln.get_xdata())) == 1]
    assert [float(ln.get_xdata()[0]) for ln in lines] == pytest.approx([run.suggested_lr, run.min_loss_lr / 10], rel=1e-12)


# --- chapter 3's explorers: the numbers its sentences are built from -------------------

def test_gd_momentum_static_frames_include_polyaks_setting_and_measure_the_theoretical_rate():
    import math

    from losslab.explore import gd
    from losslab import optim

    ex = gd.momentum_explorer()
    best_lr_L, best_beta = gd.best_setting(gd.MOMENTUM_KAPPA)
    lr, beta, rate = optim.heavy_ball_best(1.0, gd.MOMENTUM_KAPPA)
    assert (best_lr_L, best_beta) == pytest.approx((lr * gd.MOMENTUM_KAPPA, beta))
    grid = ex.grid()
    assert any(p["lr_L"] == best_lr_L and p["beta"] == best_beta for p in grid)
    converged = 0
    for p in grid:
        *_, measured, theory, diverged = gd.momentum_run(p["lr_L"], p["beta"], p["kappa"])
        for k in range(2):
            if bool(diverged[k]):
                assert float(theory[k]) > 1 and math.isnan(float(measured[k]))
            else:
                converged += 1
                assert float(measured[k]) == pytest.approx(float(theory[k]), rel=0.005), (p, k)
    assert converged >= 6
    *_, measured, _, _ = gd.momentum_run(best_lr_L, best_beta, gd.MOMENTUM_KAPPA)
    assert float(measured[1]) == pytest.approx(rate, rel=0.005)


@pytest.mark.parametrize("lr_L, beta, kappa", [(1.0, 0.9, 2.0), (0.3, 0.5, 200.0), (2.5, 0.95, 30.0), (1.7, 0.0, 10.0)])
def test_gd_momentum_rate_matches_theory_at_live_settings(lr_L, beta, kappa):
    from losslab.explore import gd

    _, _, err, measured, theory, diverged = gd.momentum_run(lr_L, beta, kappa)
    assert not bool(diverged[1])  # the heavy-ball row (GD, row 0, diverges at 2.5/L)
    start, stop = gd.measurement_window(err[:, 1])
    assert float(err[stop, 1]) > 1e-250 and start == stop // 4  # measured before the error underflows
    assert float(measured[1]) == pytest.approx(float(theory[1]), rel=0.01)


def test_gd_race_results_summarize_the_frames():
    from losslab.explore import gd

    res = gd.race_results("rosenbrock", 1.0)
    assert list(res) == list(gd.METHOD_LABELS)
    for m, r in res.items():
        path, loss, div = gd.race_run("rosenbrock", m, 1.0, 0.9, 0)
        assert r["diverged_at"] == div == -1
        assert r["gap"] == pytest.approx(float(loss[-1]) - gd.RACE["rosenbrock"]["fn"].f_min)
        assert r["end"] == pytest.approx(tuple(path[-1].tolist()))
    # a run that diverges has an infinite gap
    res3 = gd.race_results("rosenbrock", 3.0)
    assert all((r["gap"] == float("inf")) == (r["diverged_at"] >= 0) for r in res3.values())
    with pytest.raises(ValueError, match="function"):
        gd.race_results("beale", 1.0)
    with pytest.raises(ValueError, match="steps"):
        gd.race_results("rosenbrock", 1.0, steps=0)


def test_gd_saddle_escape_grows_at_one_plus_lr_times_the_negative_curvature():
    import math

    from losslab.explore import gd

    steps, growth, theory = gd.saddle_escape(1.0)
    assert theory == pytest.approx(1 + gd.RACE["six_hump_camel"]["lr"]["gd"] * math.sqrt(65))
    assert steps > 10
    assert growth == pytest.approx(theory, rel=0.01)
    with pytest.raises(ValueError, match="does not stay"):
        gd.saddle_escape(1.0, start=2)  # the third start does not pass the saddle


def test_gd_explorers_render_a_frame():
    from losslab.explore import gd

    for factory in (gd.bowl_explorer, gd.momentum_explorer, gd.race_explorer):
        ex = factory()
        assert ex.n_frames <= 12
        assert isinstance(ex.render(), Figure)


def test_gd_momentum_rate_is_measured_before_a_fast_run_underflows():
    from losslab.explore import gd

    lr_L, beta = gd.best_setting(2.0)  # rate (sqrt 2 - 1)/(sqrt 2 + 1) = 0.17: below 1e-250 long before step 1000
    _, _, err, measured, theory, _ = gd.momentum_run(lr_L, beta, 2.0)
    start, stop = gd.measurement_window(err[:, 1])
    assert stop < gd.MOMENTUM_STEPS and float(err[stop + 1, 1]) <= 1e-250 < float(err[stop, 1])
    assert float(measured[1]) == pytest.approx(float(theory[1]), rel=0.01)


@pytest.mark.parametrize("lr_L, verdict", [(0.2, "too small: crawls"), (1.0, "about right"), (1.8, "oscillates, converges"),
                                           (2.0, "oscillates, never converges"), (2.1, "diverges")])
def test_gd_bowl_title_is_read_off_the_run(lr_L, verdict):
    from losslab.explore import gd

    assert gd.render_bowl(lr_L).axes[0].get_title().endswith(": " + verdict)
