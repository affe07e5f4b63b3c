"""Alt texts and titles of the explorers of chapters 2, 5, 6 and the demo page (issue 19).

Each explorer's alt text states what its frame shows. These tests check that
it does: two frames read differently, the numbers in the text match the
frame's own data (read back from the drawn figure, or recomputed
independently with PyTorch where that is cheap), and no raw identifier
(``six_hump_camel``) reaches a reader. The last tests check the static book's
title wrapping (``explorer.js``) with Node, where Node is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest
import torch

from losslab import landscapes
from losslab.explore import backprop as bp
from losslab.explore import demo
from losslab.explore import grads as gx
from losslab.explore import landscape as ls

SNAKE = re.compile(r"[a-z]+_[a-z_]+")  # the built-book test's pattern for a raw identifier


def fake_scans(seed: int = 0) -> dict:
    """Slices of known values for the slice explorer (no training): positive, different per model and normalization."""
    rng = np.random.default_rng(seed)
    return {(m, n): np.exp(rng.normal(size=(29, 29))) for m in ls.NETWORKS for n in ("filter", "none")}


def fake_costs() -> bp.DepthWidthCosts:
    """Measurements of known values for the gradient-cost explorer (no timing)."""
    depths, widths = bp.COST_DEPTHS, bp.COST_WIDTHS
    d, w = np.meshgrid(np.array(depths, float), np.array(widths, float), indexing="ij")
    n_params = (8 * w + w + (d - 1) * (w * w + w) + w + 1).astype(np.int64)
    fwd = 1e-5 * (1 + d * w / 64)
    return bp.DepthWidthCosts(tuple(depths), tuple(widths), n_params, fwd, fwd * (2 + 0.01 * d), fwd * 2.1 * n_params)


def explorers() -> dict:
    return {
        "landscape.test-functions": ls.test_function_explorer(),
        "landscape.network-slice": ls.network_slice_explorer(fake_scans()),
        "backprop.step-through": bp.step_explorer(),
        "backprop.gradient-cost": bp.cost_explorer(measured=fake_costs()),
        "backprop.gradcheck-step": bp.gradcheck_explorer(),
        "grads.signal": gx.signal_explorer(),
        "grads.remedies": gx.remedies_explorer(),
        "grads.update-ratio": gx.update_ratio_explorer(),
        "demo.sigmoid-neuron": demo.sigmoid_explorer(),
    }


@pytest.fixture(scope="module")
def every_explorer():
    return explorers()


def test_every_explorer_of_these_modules_is_covered(every_explorer):
    from losslab.explore import REGISTRY

    mine = {k for k in REGISTRY if k.split(".")[2] in ("landscape", "backprop", "grads", "demo")}
    assert len(mine) == len(every_explorer)
    assert {ex.name for ex in every_explorer.values()} == set(every_explorer)


NAMES = ["landscape.test-functions", "landscape.network-slice", "backprop.step-through", "backprop.gradient-cost",
         "backprop.gradcheck-step", "grads.signal", "grads.remedies", "grads.update-ratio", "demo.sigmoid-neuron"]


@pytest.mark.parametrize("name", NAMES)
def test_alt_texts_differ_per_control_and_name_no_identifier(every_explorer, name):
    """Moving any one control changes the alt text (as the browser test asks), and no frame's text has a raw name."""
    ex = every_explorer[name]
    grid = ex.grid()
    alts = {json.dumps(p, sort_keys=True, default=str): ex.alt(**p) for p in grid}
    for text in alts.values():
        assert not SNAKE.search(text), f"{name}: raw identifier {SNAKE.search(text).group(0)!r} in {text!r}"
        assert len(text) > 60
    for key in ex.static_controls():
        for p in grid:
            values = ex.controls[key].static_values()
            i = values.index(p[key])
            if i + 1 < len(values):
                q = dict(p, **{key: values[i + 1]})
                assert ex.alt(**p) != ex.alt(**q), f"{name}: moving {key} from {p[key]} to {values[i + 1]} keeps the alt text"


# --- chapter 2 ------------------------------------------------------------------------------

@pytest.mark.parametrize("function", ["rosenbrock", "himmelblau", "six_hump_camel", "beale"])
def test_test_function_alt_states_value_eigenvalues_and_type_at_the_minimum(function):
    fn = landscapes.get(function)
    p = torch.tensor(fn.minima[0], dtype=torch.float64)
    value = float(fn.f(p))
    hess = torch.autograd.functional.hessian(lambda q: fn.f(q), p)  # by autograd, not the analytic Hessian
    eig = torch.linalg.eigvalsh(hess)
    text = ls.function_point_alt(function, "global minimum")
    assert f"({float(p[0]):.3g}, {float(p[1]):.3g})" in text
    assert f"f = {value + 0.0:.4g}" in text
    assert "the gradient is zero" in text and text.endswith(": minimum")
    said = sorted(float(v) for v in re.findall(r"eigenvalue (-?[\d.]+(?:e[-+]\d+)?)", text))
    assert said == pytest.approx(eig.tolist(), rel=1e-3, abs=1e-6)
    assert ls.function_label(function) in text and function_label_ok(ls.function_label(function))


def function_label_ok(label: str) -> bool:
    return "_" not in label and label.lower().replace("-", " ") in {n.replace("_", " ") for n in landscapes.TEST_FUNCTIONS}


def test_test_function_alt_states_the_gradient_at_an_ordinary_point():
    for function in ("himmelblau", "six_hump_camel", "monkey_saddle"):
        geo = ls.point_geometry(function, "an ordinary point")
        p = torch.tensor(geo.point, dtype=torch.float64, requires_grad=True)
        landscapes.get(function).f(p).backward()
        g = p.grad
        text = ls.function_point_alt(function, "an ordinary point")
        assert f"of length {float(g.norm()):.3g}" in text
        d = (g / g.norm()).tolist()
        assert f"pointing along ({d[0]:.2f}, {d[1]:.2f})" in text
        assert text.endswith("not a critical point") and "no arrow" not in text
        assert ("longest arrow" in text) == geo.capped


def test_test_function_alt_and_legend_agree_on_the_line_styles():
    """A saddle: the text says dashed where it curves down and solid where it curves up, as the drawn lines are."""
    fig = ls.render_test_function("himmelblau", "another critical point")
    ax = fig.axes[0]
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines() if ln.get_label().startswith("eigenvector")}
    text = ls.function_point_alt("himmelblau", "another critical point")
    for label, style in styles.items():
        eig = label.split("eigenvalue ")[1].split(":")[0]
        word = {"-": "solid", "--": "dashed", ":": "dotted"}[style]
        assert f"eigenvalue {eig}, {word} line" in text
    assert len(styles) == 2 and text.endswith(": saddle")
    assert not any(a.name == "3d" for a in fig.axes)  # no 3-D panel: the browser could not draw it
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(styles) <= set(legend) and any("no arrow" in t for t in legend)


def test_slice_alt_states_the_frame_numbers():
    scans = fake_scans(1)
    scans[("wide (64-128-10)", "none")] = scans[("wide (64-128-10)", "none")] * 1e4  # large losses: written out
    ex = ls.network_slice_explorer(scans)
    model, norm = "deep (4 x 32)", "none"
    text = ex.alt(model=model, normalization=norm, scale=1.0)
    z = scans[(model, norm)]
    inside = slice(7, 22)  # 29 points over [-2, 2]: indices 7..21 are |alpha| <= 1
    assert f"the loss is {z[14, 14]:.3g} at the trained weights" in text
    assert f"and {z[inside, inside].max():.3g} at the worst point" in text
    assert f"this one's rises to {z[14, inside].max():.3g}" in text
    others = [scans[(m, norm)][14, inside].max() for m in ls.NETWORKS if m != model]
    assert f"against {min(others):.3g} to {max(others):,.0f} for the other 3 networks" in text
    assert "raw Gaussian" in text and "e+0" not in text
    fig = ex.render(model=model, normalization=norm, scale=1.0)
    assert f"loss {z[14, 14]:.3g} at the centre, {z[inside, inside].max():.3g} at worst" in fig._suptitle.get_text()


# --- chapter 5 ------------------------------------------------------------------------------

def test_step_alts_follow_torch_autograd():
    x, w, b, v = (torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in (0.5, -1.5, 2.0, 1.2))
    L = (v * torch.tanh(w * x + b) + x) ** 2
    L.backward()
    first, last = bp.step_alt(0), bp.step_alt(len(bp._trace()[1]))
    assert f"L = {float(L.detach()):.3g}" in first and "no gradient is known yet" in first
    assert f"w.grad = {float(w.grad):.3g}" in last
    assert f"x.grad = {float(x.grad):.3g} (a second contribution added to the first)" in last
    assert "every gradient is now final" in last
    n = len(bp._trace()[1])
    texts = [bp.step_alt(k) for k in range(n + 1)]
    assert len(set(texts)) == n + 1
    # the v gradient arrives once and then stays in the "known" list
    k_v = next(k for k in range(n + 1) if "v.grad" in texts[k])
    assert f"v.grad = {float(v.grad):.3g}" in texts[k_v]


def test_gradcheck_alt_states_the_error_at_the_marked_step():
    f = lambda x: (torch.tanh(x) * x ** 2).sum()  # noqa: E731  the explorer's smooth function
    x = torch.tensor([0.7, -1.3, 2e-4], dtype=torch.float64, requires_grad=True)
    f(x).backward()
    true = x.grad.detach()
    h = 1e-3  # a step where truncation, not rounding, sets the error: stable to two digits
    g = torch.stack([(f(x.detach() + h * e) - f(x.detach() - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
    err = float((g - true).norm() / (g.norm() + true.norm()))
    text = bp.gradcheck_alt(-3.0, "smooth")
    assert f"s = 1e-03 the error is {err:.1e} in float64" in text
    assert "passes" in text if err < 1e-6 else "fails" in text
    steps, sweeps = bp.gradcheck_sweeps()
    k = int(np.nanargmin(sweeps["kink"]["float64"]))
    assert f"{sweeps['kink']['float64'][k]:.1e} at s = {steps[k]:.0e} in float64" in bp.gradcheck_alt(-5.0, "kink")


def test_gradient_cost_alt_states_the_measured_ratios():
    costs = fake_costs()
    ex = bp.cost_explorer(measured=costs)
    i, j = bp.COST_DEPTHS.index(3), bp.COST_WIDTHS.index(16)
    text = ex.alt(depth=3, width=16)
    assert f"({int(costs.n_params[i, j]):,} parameters)" in text
    assert f"took {costs.reverse_s[i, j] / costs.forward_s[i, j]:.1f} forward passes" in text
    assert f"by finite differences {costs.finite_diff_s[i, j] / costs.forward_s[i, j]:,.0f}" in text
    assert "3 hidden layers of width 16" in text


# --- chapter 6 ------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, init", [("tanh", "xavier"), ("sigmoid", "small"), ("relu", "large")])
def test_signal_alt_matches_the_drawn_curves(activation, init):
    fig = gx.render_signal(activation, init)
    lines = {ln.get_label(): ln.get_ydata() for ln in fig.axes[0].get_lines()}
    text = gx.signal_alt(activation, init)
    for d in gx.DEPTHS:
        y = np.asarray(lines[f"depth {d}"])
        assert len(y) == d
        assert f"{y[0] / y[-1]:.2g} at depth {d}" in text
    # the spread the text gives for layers 1 and 50 is that of the histograms' own samples, to sampling error
    sample = gx.signal_grid()[(50, activation, init)].act_sample  # (50, S): the values the histograms draw
    said = re.search(r"goes from (\S+) at layer 1 to (\S+) at layer 50", text)
    for layer, value in ((0, said.group(1)), (-1, said.group(2))):
        assert 0.5 < float(sample[layer].std()) / float(value) < 2


@pytest.mark.parametrize("residual, norm, clip", [(False, "none", False), (True, "layer", False), (False, "batch", True)])
def test_remedies_alt_matches_the_drawn_curves(residual, norm, clip):
    fig = gx.render_remedies(residual, norm, clip)
    loss = {ln.get_label(): ln.get_ydata() for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}
    grad = {ln.get_label(): np.asarray(ln.get_ydata()) for ln in fig.axes[1].get_lines() if not ln.get_label().startswith("_")}
    text = gx.remedies_alt(residual, norm, clip)
    assert f"ends at {loss['this setting'][-1]:.2f}" in text
    if residual or clip or norm != "none":
        assert f"against {loss['no remedy'][-1]:.2f} without any remedy" in text
    assert f"between {grad['this setting'].min():.2g} and {grad['this setting'].max():.2g}" in text
    assert f"peaks at {grad['no remedy'].max():.2g}" in text
    assert ("clipped at 1" in text) == clip and ("with residual" in text) == residual


def test_update_ratio_alt_matches_the_drawn_curves():
    lr = gx.UPDATE_LRS[2]
    fig = gx.render_update_ratio(lr)
    ratios = np.stack([ln.get_ydata() for ln in fig.axes[0].get_lines() if ln.get_label() != "$10^{-3}$ rule of thumb"], 1)
    med = np.nanmedian(ratios, axis=0)
    loss = np.asarray(fig.axes[1].get_lines()[0].get_ydata())
    text = gx._update_ratio_alt(lr)
    assert f"between {med.min():.1f} and {med.max():.1f}" in text
    assert f"ends near {np.nanmean(loss[-20:]):.2f}" in text


# --- the demo page --------------------------------------------------------------------------

@pytest.mark.parametrize("w, b", [(0.5, -2.0), (2.0, 1.0), (4.0, 0.0)])
def test_sigmoid_alt_matches_the_drawn_curve(w, b):
    fig = demo.render_sigmoid(w, b, True)
    x, y = (np.asarray(a) for a in (fig.axes[0].get_lines()[0].get_xdata(), fig.axes[0].get_lines()[0].get_ydata()))
    text = demo.sigmoid_alt(w, b, True)
    assert f"rising from {y[0]:.2g} at x = -6 to {y[-1]:.2g} at x = 6" in text
    cross = float(np.interp(0.5, y, x))  # where the drawn curve crosses one half
    said = float(re.search(r"crossing 0\.5 at x = (-?[\d.]+)", text).group(1))
    assert abs(said - cross) < 0.05
    slope = np.gradient(y, x).max()
    assert float(re.search(r"with slope ([\d.]+)", text).group(1)) == pytest.approx(slope, rel=0.01)


# --- the static book's titles (explorer.js) -------------------------------------------------

NODE = shutil.which("node") or shutil.which("nodejs")


def run_js(body: str):
    """Evaluate ``body`` (which must end by printing JSON) with explorer.js loaded, in Node."""
    if NODE is None:
        pytest.skip("Node is not installed")
    src = (resources.files("losslab") / "assets" / "explorer.js").read_text(encoding="utf-8")
    script = "global.window = {};\n" + src + "\nconst E = window.losslabExplorer;\n" + body
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_wrap_text_breaks_long_titles_into_lines_that_fit():
    title = ("narrow (64-8-10), filter-normalized directions, scale 1: loss 0.225 at the centre, 21.5 at worst"
             "<br>Hessian eigenvalues -31.71, 75.51: saddle")
    res = run_js(f"""
      const t = {json.dumps(title)};
      console.log(JSON.stringify({{phone: E.wrapText(t, 314, 13), laptop: E.wrapText(t, 1290, 13),
                                   em: E.CHAR_EM, word: E.wrapText('a'.repeat(90), 200, 13)}}));""")
    limit = int(314 // (13 * res["em"]))
    lines = res["phone"].split("<br>")
    assert len(lines) > 2 and all(len(line) <= limit for line in lines)
    assert " ".join(lines).replace("  ", " ").split() == title.replace("<br>", " ").split()  # nothing lost or reordered
    assert res["laptop"] == title  # wide enough: left as it was
    assert res["word"] == "a" * 90  # one word longer than the line stays whole
    assert limit * 13 * res["em"] <= 314 and res["em"] >= 0.5  # the estimate is generous, not optimistic


def test_layout_wraps_figure_and_panel_titles_at_phone_width_and_makes_room():
    long_title = "A figure title that is much too long to fit on one line of a phone screen, so it has to wrap"
    base = {"height": 340, "title": {"text": long_title, "font": {"size": 13}, "pad": {"t": 4}},
            "annotations": [{"text": "1-D profiles of all four models (bold: chosen)", "font": {"size": 13}},
                            {"text": "short", "font": {"size": 13}}],
            "xaxis": {"domain": [0.08, 0.45]}, "yaxis": {"domain": [0.15, 0.82]},
            "xaxis2": {"domain": [0.6, 0.98]}, "yaxis2": {"domain": [0.15, 0.82]}, "legend": {}}
    panels = [{"x": "x", "y": "y", "domain": [[0.08, 0.45], [0.15, 0.82]], "title": 0},
              {"x": "x2", "y": "y2", "domain": [[0.6, 0.98], [0.15, 0.82]], "title": 1}]
    res = run_js(f"""
      const base = {json.dumps(base)}, panels = {json.dumps(panels)};
      console.log(JSON.stringify({{phone: E.layoutFor([], base, panels, 330), laptop: E.layoutFor([], base, panels, 1300),
                                   em: E.CHAR_EM}}));""")
    phone, laptop = res["phone"], res["laptop"]
    limit = int((330 - 16) // (13 * res["em"]))
    title_lines = phone["title"]["text"].split("<br>")
    assert len(title_lines) >= 2 and all(len(s) <= limit for s in title_lines)
    assert phone["title"]["pad"]["t"] > 4  # lowered: Plotly raises a title of several lines
    assert all(len(s) <= limit for s in phone["annotations"][0]["text"].split("<br>"))
    # stacked on the phone; the top panel's two-line title gets room above the plot area
    assert phone["xaxis"]["domain"] == [0, 1] and phone["margin"]["t"] >= 24 + 8 + 18 * len(title_lines)
    assert laptop["title"]["text"] == long_title and laptop["title"]["pad"]["t"] == 4
    assert laptop["annotations"][1]["text"] == "short"
    assert laptop["margin"]["t"] == 24 + 8 + 18 and laptop["height"] == 340 + 24 + 8 + 18 + 0 + 0
    assert phone["height"] > laptop["height"]


def test_step_note_reaches_the_browser_drawing():
    """The line under each step's title is part of the figure description (a figure-level text would be dropped)."""
    from losslab.explore.figure import describe

    for step in (0, 3):
        view = bp.step_view(step)
        texts = [a["text"] for a in describe(bp.render_steps(step))["layout"]["annotations"]]
        assert any(view.title in t and view.note in t for t in texts), texts
