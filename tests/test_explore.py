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


def test_static_html_holds_the_data_of_every_grid_point_with_alt_text():
    ex = small()
    html = ex.static_html()
    data = json.loads(re.search(r'<script type="application/json" class="lle-data">(.*?)</script>', html).group(1))
    a_values = ex.controls["a"].static_values()
    assert len(a_values) >= 9 and {0.5, 1.0, 2.0} <= set(a_values)  # the named settings, filled up to 9 positions
    assert ex.n_frames == len(a_values) * 2 * 2 == len(data["frames"]) == len(data["alts"])
    drawn = {k: tuple(json.dumps(data["traces"][i]) for i in f[2]) for k, f in data["frames"].items()
             if a_values[int(k.split(",")[0])] != 0}  # slope 0 flipped is slope 0
    assert len(set(drawn.values())) == len(drawn) == ex.n_frames - 4  # every other frame draws something different
    i2 = a_values.index(2.0)
    assert data["alts"][f"{i2},1,1"] == "line of slope 2.0 (dashed, flip on)"
    line = [data["traces"][i] for i in data["frames"][f"{i2},1,1"][2]][0]
    assert line["y"] == [0, -2] and line["line"]["dash"] == "dash"  # the numbers, not a picture
    i1 = a_values.index(1.0)
    start = re.search(r'<div class="lle-frame" role="img" aria-label="([^"]+)" data-key="([^"]+)"', html)
    assert start.group(2) == f"{i1},0,0" and start.group(1) == data["alts"][f"{i1},0,0"]  # the defaults
    assert "http" not in html and "<script src" not in html


def test_static_html_respects_the_size_budget():
    with pytest.raises(ValueError, match="more than"):
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


def test_min_width_reaches_the_page_and_is_validated():
    def data(ex):
        return json.loads(re.search(r'class="lle-data">(.*?)</script>', ex.static_html(), re.S).group(1))

    assert data(small(min_width=640))["minWidth"] == 640
    assert "minWidth" not in data(small())
    for bad in (True, 50, 640.0, "640", 5000):
        with pytest.raises(ValueError, match="min_width"):
            small(min_width=bad)


def test_render_must_return_a_figure():
    ex = Explorer("t.bad", lambda a: None, {"a": Slider(0, 1, default=0.5)}, title="t", alt="a={a}")
    with pytest.raises(TypeError, match="Figure"):
        ex.render()


def test_default_static_grid_includes_the_default():
    s = Slider(0.01, 1.0, default=0.1, log=True)
    vals = s.static_values()
    assert 0.1 in vals and len(vals) == 9 and vals[0] == pytest.approx(0.01) and vals[-1] == pytest.approx(1.0)
    named = Slider(0.0, 4.0, default=1.0, static=[3.31]).static_values()
    assert 3.31 in named and 1.0 in named and len(named) >= 9
    assert Slider(0.0, 4.0, default=1.0, static=[2.0], fill=False).static_values() == [1.0, 2.0]
    assert Slider(0, 3, default=0, integer=True).static_values() == [0, 1, 2, 3]  # every integer, when fewer than 9


def test_the_live_widget_updates_its_traces_in_place():
    box = small().widget()
    trace = box.figure.data[0]
    assert list(trace.y) == [0, 1]
    box.controls["a"].value = 2.0
    assert box.figure.data[0] is trace and list(trace.y) == [0, 2]  # the same trace, new numbers
    box.controls["kind"].value = "dashed"
    assert trace.line.dash == "dash"
    box.controls["flip"].value = True
    assert list(trace.y) == [0, -2]
    # an update this fast follows the slider while it is dragged
    assert box.controls["a"].continuous_update is True


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
    assert ex.n_frames <= 200
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


# --- Chapter 5: the graph drawing ------------------------------------------------------------------

def _dense(pts):
    """Every straight piece of a polyline (N, 2), sampled at 50 points."""
    import numpy as np

    t = np.linspace(0, 1, 50)[:, None]
    return np.concatenate([(1 - t) * a + t * b for a, b in zip(pts[:-1], pts[1:])])


def _graph_with_skips():
    from losslab.autograd import Value

    a, b, c = Value(0.3, "a"), Value(-1.2, "b"), Value(2.0, "c")
    u = (a * b).tanh(); u.label = "u"
    v = u * c + a; v.label = "v"            # a skips two columns
    w = (v * u).sigmoid() + b; w.label = "w"  # b and u skip columns too
    return w


@pytest.mark.parametrize("make", ["example", "skips"])
def test_no_edge_of_the_graph_drawing_runs_behind_a_box(make):
    import numpy as np

    from losslab.autograd import graph_layout
    from losslab.explore.backprop import _BOX_H, _BOX_W, _positions, edge_routes, example_expression

    layout = graph_layout(example_expression() if make == "example" else _graph_with_skips())
    pos = _positions(layout)
    routes = edge_routes(layout)
    assert len(routes) == len(layout.edges)
    for (i, j), pts in zip(layout.edges, routes):
        (x0, y0), (x1, y1) = pos[i], pos[j]  # starts on the input's box, ends on the user's
        assert abs(pts[0, 0] - x0) <= _BOX_W / 2 + 1e-9 and abs(pts[0, 1] - y0) <= _BOX_H / 2 + 1e-9
        assert abs(pts[-1, 0] - x1) <= _BOX_W / 2 + 1e-9 and abs(pts[-1, 1] - y1) <= _BOX_H / 2 + 1e-9
        pts = _dense(pts)
        for k, (x, y) in enumerate(pos):
            if k in (i, j):
                continue
            inside = (np.abs(pts[:, 0] - x) < _BOX_W / 2) & (np.abs(pts[:, 1] - y) < _BOX_H / 2)
            assert not inside.any(), f"edge {layout.nodes[i].label}->{layout.nodes[j].label} crosses box {layout.nodes[k].label}"


def test_the_skip_connection_of_the_example_arcs_over_the_graph():
    import numpy as np

    from losslab.autograd import graph_layout
    from losslab.explore.backprop import _BOX_H, _positions, edge_routes, example_expression

    layout = graph_layout(example_expression())
    labels = [v.label for v in layout.nodes]
    (skip,) = [k for k, (i, j) in enumerate(layout.edges) if (labels[i], labels[j]) == ("x", "r")]
    top = max(y for _, y in _positions(layout)) + _BOX_H / 2
    line = _dense(edge_routes(layout)[skip])
    assert line[:, 1].max() > top + 0.2  # it climbs above every box
    crossing = line[(line[:, 0] > line[0, 0] + 0.5) & (line[:, 0] < line[-1, 0] - 0.5)]  # over the other columns
    assert len(crossing) and (crossing[:, 1] > top).all()


# --- Chapter 6: figures that stay readable ---------------------------------------------------------

def test_log_ticks_label_every_range_with_two_to_nine_ticks_inside_it():
    import numpy as np

    from losslab.explore.grads import log_ticks

    rng = np.random.default_rng(0)
    for _ in range(2000):
        lo = 10 ** rng.uniform(-300, 100)
        hi = lo * 10 ** rng.uniform(0.2, 150)
        ticks = log_ticks(lo, hi)
        assert 2 <= len(ticks) <= 9 and all(lo <= t <= hi for t in ticks), (lo, hi, ticks)
    assert log_ticks(1e-3, 1e-2) == [1e-3, 2e-3, 5e-3, 1e-2]
    with pytest.raises(ValueError, match="lo, hi"):
        log_ticks(1.0, 0.5)


@pytest.mark.parametrize("activation, init", [("tanh", "xavier"), ("relu", "he"), ("relu", "large"), ("sigmoid", "small")])
def test_signal_explorer_frames_label_their_log_axis(activation, init):
    from losslab.explore.grads import render_signal

    fig = render_signal(activation, init)
    plots.to_png(fig)  # draws the figure, which fills in the tick labels
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    shown = [t for t in ax.yaxis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_text()]
    assert len(shown) >= 2, [t.label1.get_text() for t in shown]


def test_contrast_ratio_and_label_colour():
    from losslab.explore.grads import contrast_ratio, label_colour

    assert contrast_ratio("black", "white") == pytest.approx(21.0)
    assert contrast_ratio("#336699", "#336699") == pytest.approx(1.0)
    assert label_colour("#053061") == "white" and label_colour("#f7f7f7") == "black"


def test_heat_map_labels_are_readable_on_every_cell():
    import numpy as np

    from losslab.explore.grads import contrast_ratio, draw_log_map

    values = np.linspace(-60, 60, 24).reshape(4, 6)
    fig, ax = plots.figure()
    image = draw_log_map(ax, values, rows=list("abcd"), cols=list("uvwxyz"), title="t")
    texts = ax.texts
    assert len(texts) == values.size
    for text in texts:
        x, y = text.get_position()
        cell = image.cmap(image.norm(values[int(y), int(x)]))
        assert contrast_ratio(cell, text.get_color()) >= 4.5, (values[int(y), int(x)], text.get_color())
    with pytest.raises(ValueError, match="logv"):
        draw_log_map(ax, values, rows=list("abc"), cols=list("uvwxyz"), title="t")


def test_end_scale_draws_are_the_networks_deep_mlp_builds():
    import torch

    from losslab import data, nets
    from losslab.explore.grads import SIGNAL_WIDTH, end_scale_draws

    x = data.digits(seed=0, dtype=torch.float64)[0].x[:128]
    expected = []
    for seed in (3, 4):
        net = nets.DeepMLP(nets.MLPConfig(depth=6, width=SIGNAL_WIDTH, activation="relu", init="he"),
                           seed=seed, dtype=torch.float64)
        with torch.no_grad():
            _, hidden = net(x, return_hidden=True)  # (depth, B, width)
        expected.append(float(hidden[-1].std() / hidden[0].std()))
    got = end_scale_draws("relu", "he", depth=6, seeds=(3, 4))
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="activation"):
        end_scale_draws("swish")


def test_clipping_runs_are_the_runs_train_runs_gives_alone():
    import numpy as np
    import torch

    from losslab import data, nets
    from losslab.explore import grads as gx

    runs = gx.clipping_runs()
    assert list(runs) == list(gx.CLIPPING)
    name = f"no clipping, lr {gx.SLOW_LR:g}"
    losses, norms = runs[name]
    assert losses.shape == norms.shape == (len(gx.CLIP_SEEDS), gx.STEPS)
    xavier = nets.MLPConfig(**{**gx.BASE.__dict__, "init": "xavier"})
    train, _, _ = data.digits(seed=0)
    alone, _ = nets.train_runs([nets.Run(xavier, lr=gx.SLOW_LR, seed=gx.CLIP_SEEDS[1])], train.x, train.y,
                               steps=10, batch_size=gx.BATCH, seed=0)
    np.testing.assert_allclose(losses[1, :10], alone[0].numpy(), rtol=1e-4)
    clipped = runs["clip norm at 1"]
    assert (clipped[1] > 0).all() and np.isfinite(clipped[0]).all()


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
        assert 9 <= ex.n_frames <= 243  # at least one 9-position slider; within the race's 3 x 9 x 9 grid
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
