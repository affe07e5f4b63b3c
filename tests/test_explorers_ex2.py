"""Issue 19 for the explorers of chapters 4, 7 and 8: movable controls, every combination, budgets, and alt texts
that state what each frame shows.

Each static grid is built once per module (:func:`payload`); the numbers the alt texts state are recomputed here
from unbatched runs of the same setting (a single range test, a single quadratic run, one ridge fit...).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

import numpy as np
import pytest
import torch

from losslab import regularize as R
from losslab import schedules
from losslab import train as T
from losslab.explore import MAX_STATIC_BYTES, MIN_POSITIONS, Choice, Slider
from losslab.explore import figure as F
from losslab.explore import reg, schedule, train

EXPLORERS = {
    "schedule.designer": schedule.designer_explorer,
    "schedule.range-test": schedule.range_test_explorer,
    "reg.polynomial-capacity": reg.polynomial_explorer,
    "reg.classifier-l2-dropout": reg.classifier_explorer,
    "train.pathology-gallery": train.pathology_explorer,
    "train.convergence-rate": train.rate_explorer,
}
WIDENED = ["schedule.designer", "schedule.range-test", "reg.polynomial-capacity", "train.convergence-rate"]

#: The settings the chapters' text asks the reader to try (or states facts about): each must be a static frame.
NAMED = {
    "schedule.designer": [dict(schedule=s, peak_lr=p, warmup_frac=0.1) for s in schedule.DESIGNS for p in (0.5, 1.5)],
    "schedule.range-test": [dict(smoothing=b, max_lr=hi, min_lr=1e-4) for b in (0.0, 0.98) for hi in (1.0, 10.0)],
    "reg.polynomial-capacity": [dict(degree=d, strength=s) for d in range(1, 16) for s in (1e-6, 1e-2, 10.0)],
    "train.convergence-rate": [dict(kappa=k, lr_L=lr, beta=b) for k in (10.0, 100.0, 1000.0) for lr in (1.0, 1.9, 2.1)
                               for b in (0.0, 0.5, 0.9)],
}
SNAKE = re.compile(r"\b[A-Za-z0-9]+_[A-Za-z0-9_]+\b")


@lru_cache(maxsize=None)
def explorer(name):
    return EXPLORERS[name]()


@lru_cache(maxsize=None)
def payload(name):
    """(static HTML, payload, grid) of one explorer, built once."""
    ex = explorer(name)
    return ex.static_html(), ex.static_payload()[0], ex.grid()


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


# --- positions, combinations, budget ------------------------------------------------------------

@pytest.mark.parametrize("name", WIDENED)
def test_every_shown_slider_has_nine_positions_and_every_control_moves(name):
    ex = explorer(name)
    for key, control in ex.controls.items():
        n = len(control.static_values())
        assert n >= 2, f"{name}: {key} cannot move in the static book"
        if isinstance(control, Slider):
            assert n >= MIN_POSITIONS, f"{name}: slider {key} has {n} positions"
    assert ex.static_controls() == list(ex.controls)


@pytest.mark.parametrize("name", list(EXPLORERS))
def test_static_grid_is_every_combination_within_budget(name):
    ex = explorer(name)
    html, pay, grid = payload(name)
    sizes = [len(c.static_values()) for c in ex.controls.values()]
    assert ex.n_frames == math.prod(sizes) == len(grid) == len(pay["frames"]) == len(pay["alts"])
    assert set(pay["frames"]) == {",".join(map(str, idx)) for idx in np.ndindex(*sizes)}
    body = re.search(r'<script type="application/json" class="lle-data">(.*?)</script>', html, re.S).group(1)
    assert len(body.encode("utf-8")) <= MAX_STATIC_BYTES
    assert len(html.encode("utf-8")) <= MAX_STATIC_BYTES + 100_000  # the controls, style and script around the data
    data = json.loads(body)
    background = set.intersection(*(set(traces) for _, _, traces in data["frames"].values()))  # stored once, in every frame
    for key, (lay, pan, traces) in data["frames"].items():
        assert lay < len(data["layouts"]) and pan < len(data["panels"]) and all(t < len(data["traces"]) for t in traces)
        for t in set(traces) - background if name in WIDENED else ():  # curves that change: at most 160 points
            assert len(data["traces"][t].get("x", [])) <= 160, (name, key)


@pytest.mark.parametrize("name", list(NAMED))
def test_the_settings_the_chapter_names_are_static_frames(name):
    ex = explorer(name)
    for setting in NAMED[name]:
        for key, value in setting.items():
            assert value in ex.controls[key].static_values(), (name, key, value)
    for key, control in ex.controls.items():  # the default is a frame too
        assert (control.initial if isinstance(control, Choice) else control.default) in control.static_values()


def test_the_best_polynomial_degree_the_chapter_names_is_a_frame():
    best = int(reg.polynomial_errors(1e-6)["val_rmse"].argmin()) + 1
    assert best in explorer("reg.polynomial-capacity").controls["degree"].static_values()


# --- alt texts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPLORERS))
def test_alt_texts_differ_where_frames_differ_and_name_no_identifiers(name):
    ex = explorer(name)
    _, pay, _ = payload(name)
    by_alt = {}
    for key, frame in pay["frames"].items():
        alt = pay["alts"][key]
        assert not SNAKE.search(alt), (name, alt)
        assert numbers(alt), f"{name}: the alt text states no number: {alt}"
        by_alt.setdefault(alt, []).append(json.dumps(frame))
    for alt, frames in by_alt.items():  # one text, one picture
        assert len(set(frames)) == 1, f"{name}: frames that differ share the alt text {alt!r}"
    assert len(by_alt) > len(pay["frames"]) / 2


@pytest.mark.parametrize("name", WIDENED)
def test_a_frame_does_not_depend_on_the_frame_drawn_before(name):
    """The figures are updated in place: a frame drawn after another is the same as drawn first."""
    ex = explorer(name)
    grid = ex.grid()
    a, b = grid[0], grid[-1]
    first = [F.dumps(t) for t in ex.describe(**a)["data"]], F.dumps(ex.describe(**a)["layout"])
    ex.describe(**b)
    again = [F.dumps(t) for t in ex.describe(**a)["data"]], F.dumps(ex.describe(**a)["layout"])
    assert first == again


def test_convergence_rate_alt_and_batch_agree_with_a_single_run():
    ex = explorer("train.convergence-rate")
    for kappa, lr_L, beta in ((10.0, 1.0, 0.9), (100.0, 1.9, 0.0), (1000.0, 3.0, 0.8), (100.0, 0.5, 0.5)):
        run = T.run_quadratic(T.quadratic_spectrum(kappa, 20), lr=lr_L, momentum=beta, steps=train.RATE_STEPS)
        frame = train.rate_run(kappa, lr_L, beta)  # read from the batched grid
        np.testing.assert_allclose(frame["error"], run.error[:, 0].numpy(), rtol=1e-10, atol=1e-300)
        steps = int(T.steps_to_tolerance(run.error, 1e-6)[0])
        alt = ex.alt(kappa=kappa, lr_L=lr_L, beta=beta)
        rho = float(run.theory()[0])
        assert f"theoretical {rho:.4f}" in alt
        assert (f"after {steps} steps" in alt) if steps > 0 else ("not yet a million times smaller" in alt)
        assert f"predicts {math.log(1e-6) / math.log(rho):.0f}" in alt
    diverging = ex.alt(kappa=100.0, lr_L=2.1, beta=0.0)
    assert "at least 1" in diverging and f"{float(train.rate_run(100.0, 2.1, 0.0)['theory']):.3f}" in diverging
    off = train.rate_run(100.0, 1.23, 0.42)  # a live setting off the grid runs on its own
    single = T.run_quadratic(T.quadratic_spectrum(100.0, 20), lr=1.23, momentum=0.42, steps=train.RATE_STEPS)
    np.testing.assert_allclose(off["error"], single.error[:, 0].numpy(), rtol=1e-12)


def test_polynomial_alt_states_the_fit_errors_of_its_frame():
    ex = explorer("reg.polynomial-capacity")
    prob = R.polynomial_problem(n_train=20, n_val=200, noise=0.3, seed=0)
    for degree, strength in ((1, 1e-6), (9, 1e-6), (15, 1e-2), (15, 10.0), (4, 1e-4)):
        Xtr, Xva = R.legendre_features(prob.train.x, degree), R.legendre_features(prob.val.x, degree)
        w = R.ridge_fit(Xtr, prob.train.y, strength)
        tr = float(((Xtr @ w - prob.train.y) ** 2).mean().sqrt())
        va = float(((Xva @ w - prob.val.y) ** 2).mean().sqrt())
        alt = ex.alt(degree=degree, strength=strength)
        assert f"degree-{degree} ridge fit" in alt and f"training RMSE {tr:.2f}, validation RMSE {va:.2f}" in alt
        fit = ex.describe(degree=degree, strength=strength)["data"]
        drawn = next(t for t in fit if t.get("name") == "fit")
        grid = R.legendre_features(torch.as_tensor(drawn["x"], dtype=prob.x_grid.dtype), degree) @ w
        np.testing.assert_allclose(drawn["y"], grid.numpy(), rtol=1e-6, atol=1e-9)


def test_designer_alt_and_batch_agree_with_a_single_schedule():
    ex = explorer("schedule.designer")
    for sched, peak, warm in (("warmup + cosine", 1.5, 0.1), ("inverse sqrt", 0.3, 0.02), ("step", 1.8, 0.3),
                              ("one-cycle", 0.75, 0.05)):
        lrs = schedule.design_lrs(sched, peak, warm).to(torch.float64)
        rows = torch.stack([lrs, torch.full_like(lrs, peak), torch.full_like(lrs, peak / 10)])
        final = schedules.noisy_quadratic_loss(rows, **schedule.NQM)[:, -1].tolist()  # unbatched: one setting
        shown = schedule.designer_final_losses(peak, warm)
        assert shown[sched] == pytest.approx(final[0], rel=1e-10)
        assert shown["constant"] == pytest.approx(final[1], rel=1e-10)
        alt = ex.alt(schedule=sched, peak_lr=peak, warmup_frac=warm)
        assert f"ends at {final[0]:.3g}" in alt and f"peak rate ends at {final[1]:.3g}" in alt
        word = "below both" if final[0] < min(final[1:]) else "above both" if final[0] > max(final[1:]) else "between"
        assert word in alt
        assert ("warm-up" in alt) == (sched in schedule.WARMS_UP)
    # an off-grid peak is computed on its own
    assert schedule.designer_final_losses(0.9, 0.1)["constant"] > 0


def test_range_test_batch_equals_a_test_run_alone_and_the_alt_states_its_readings():
    ex = explorer("schedule.range-test")
    for lo, hi in ((1e-4, 10.0), (1e-3, 0.5), (1e-5, 50.0)):
        alone = schedules.digits_range_test(min_lr=lo, max_lr=hi, num_steps=100, batch_size=16, seeds=(0, 1, 2))
        lrs, losses = schedule._range_run(lo, hi)
        n = len(alone.losses)
        np.testing.assert_allclose(losses[:n].numpy(), alone.losses.numpy(), rtol=1e-5)
        assert bool(torch.isnan(losses[n:]).all())
        for beta in (0.0, 0.98):
            padded = torch.cat([alone.losses, torch.full((100 - n,), math.nan, dtype=torch.float64)])  # as the frame reads it
            run = schedules.suggest_lr(schedules.range_test_lrs(100, min_lr=lo, max_lr=hi), padded, smoothing=beta)
            alt = ex.alt(smoothing=beta, max_lr=hi, min_lr=lo)
            assert f"falls fastest at rate {run.suggested_lr:.2g}" in alt
            assert f"at rate {run.min_loss_lr:.2g}, so a tenth of it is {run.min_loss_lr / 10:.2g}" in alt
            assert ("stopped at divergence" in alt) == run.stopped_early  # where the frame's curve ends


def test_classifier_and_gallery_alts_read_their_runs():
    ex = explorer("reg.classifier-l2-dropout")
    runs = reg.classifier_runs()
    res = runs["result"]
    for i, (strength, p) in enumerate(runs["settings"]):
        alt = ex.alt(strength=strength, p=p)
        assert f"validation error is {float(res.val_error[i, -1]):.3f}" in alt
        assert f"ends at {float(res.train_loss[i, -1]):.3f}" in alt
    gallery = explorer("train.pathology-gallery")
    for bug, h in train.gallery_histories().items():
        alt = gallery.alt(bug=bug)
        names = [f.name.replace("-", " ") for f in T.diagnose(h)]
        assert "names: " + ", ".join(names) in alt
        if not np.isfinite(h.step_loss).all():
            assert f"at step {int(np.argmin(np.isfinite(h.step_loss)))}" in alt
