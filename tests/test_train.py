"""losslab.train (Chapter 8): rates against the theory, the loop against PyTorch, callbacks, and the diagnosis."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab import optim, schedules
from losslab import train as T
from losslab.data import digits
from losslab.exercises.train import MYSTERY, mystery_histories


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- rates on quadratics ----------------------------------------------------------------

def test_quadratic_spectrum_spans_mu_to_L():
    lam = T.quadratic_spectrum(100.0, 5, L=2.0)
    assert lam.dtype == torch.float64 and lam.shape == (5,)
    assert float(lam[0]) == pytest.approx(0.02) and float(lam[-1]) == pytest.approx(2.0)
    assert bool((lam[1:] > lam[:-1]).all())


@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_gradient_descent_rate_is_one_minus_one_over_kappa_and_the_bound_holds(kappa):
    run = T.run_quadratic(T.quadratic_spectrum(kappa), lr=1.0, steps=int(50 * kappa))  # lr = 1/L
    rate = float(run.rate(int(25 * kappa), int(50 * kappa))[0])  # late: the slowest direction has taken over
    assert rate == pytest.approx(1 - 1 / kappa, rel=1e-3)
    assert float(run.theory()[0]) == pytest.approx(1 - 1 / kappa, rel=1e-12)
    k = torch.arange(run.error.shape[0], dtype=torch.float64)
    bound = run.error[0, 0] * (1 - 1 / kappa) ** k
    assert bool((run.error[:, 0] <= bound * (1 + 1e-12)).all())  # ||x_k|| <= (1 - 1/kappa)^k ||x_0|| at every step


def test_heavy_ball_at_polyaks_settings_has_the_accelerated_rate():
    kappa = 100.0
    lr, beta, rho = optim.heavy_ball_best(1 / kappa, 1.0)
    run = T.run_quadratic(T.quadratic_spectrum(kappa), lr=lr, momentum=beta, steps=600)
    assert float(run.rate(300, 600)[0]) == pytest.approx(rho, rel=2e-2)
    assert float(run.theory()[0]) == pytest.approx(rho, rel=1e-6)
    assert rho == pytest.approx((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1))


def test_run_quadratic_equals_torch_optim_sgd_with_momentum_in_float64():
    lam = T.quadratic_spectrum(50.0, 6)
    x0 = torch.randn(6, dtype=torch.float64, generator=gen(0))
    run = T.run_quadratic(lam, lr=torch.tensor([0.3, 0.9], dtype=torch.float64),
                          momentum=torch.tensor([0.0, 0.8], dtype=torch.float64), steps=40, x0=x0)
    for row, (lr, mom) in enumerate(((0.3, 0.0), (0.9, 0.8))):
        p = nn.Parameter(x0.clone())
        opt = torch.optim.SGD([p], lr=lr, momentum=mom)
        errors = [float(p.detach().norm())]
        for _ in range(40):
            opt.zero_grad()
            (0.5 * (lam * p * p).sum()).backward()
            opt.step()
            errors.append(float(p.detach().norm()))
        assert torch.allclose(run.error[:, row], torch.tensor(errors, dtype=torch.float64), rtol=1e-12, atol=1e-15)


def test_the_three_measures_are_consistent():
    lam = T.quadratic_spectrum(10.0, 4)
    run = T.run_quadratic(lam, lr=0.5, steps=400)
    # without momentum, a step is lr times the gradient
    assert torch.allclose(run.step_norm[:, 0], 0.5 * run.grad_norm[:-1, 0], rtol=1e-12)
    # the loss gap is quadratic in the error: its rate is the square of the error's
    assert float(run.theory()[0]) ** 2 == pytest.approx(float(optim.measured_rate(run.gap[:, 0], start=200, stop=400)),
                                                         rel=1e-4)


def test_convex_but_not_strongly_convex_gap_is_below_the_sublinear_bound_with_slope_minus_one():
    lam = torch.logspace(-6, 0, 200, dtype=torch.float64)
    run = T.run_quadratic(lam, lr=1.0, steps=2000, x0=torch.ones(200, dtype=torch.float64))
    k = torch.arange(1, 2001)
    gap = run.gap[1:, 0]
    assert bool((gap <= T.sublinear_bound(k, L=1.0, distance0=float(run.error[0, 0]))).all())
    assert T.loglog_slope(k[100:], gap[100:]) == pytest.approx(-1.0, abs=0.05)


def test_steps_to_tolerance_and_loglog_slope():
    errors = torch.tensor([[1.0, 1.0], [0.5, 1.0], [0.09, 0.9], [0.01, 0.8]], dtype=torch.float64)
    assert T.steps_to_tolerance(errors, 0.1).tolist() == [2, -1]
    k = torch.arange(1, 50, dtype=torch.float64)
    assert T.loglog_slope(k, 3 * k**-1.5) == pytest.approx(-1.5, abs=1e-12)
    # steps to 1e-6 grow like kappa for gradient descent
    needed = [int(T.steps_to_tolerance(T.run_quadratic(T.quadratic_spectrum(k), lr=1.0, steps=int(15 * k)).error, 1e-6)[0])
              for k in (10.0, 40.0, 160.0)]
    assert T.loglog_slope([10.0, 40.0, 160.0], needed) == pytest.approx(1.0, abs=0.05)


def test_noisy_sgd_simulation_without_noise_is_the_exact_recursion():
    lrs = torch.stack([torch.full((50,), 0.5), 0.5 / (1 + torch.arange(50) / 10)])
    sim = T.sgd_noisy_quadratic(lrs, noise=0.0, runs=3)
    exact = schedules.noisy_quadratic_loss(lrs, noise=0.0)
    assert torch.allclose(sim, exact, rtol=1e-12, atol=0)


def test_noisy_sgd_simulation_averages_to_the_exact_expectation_and_floor():
    lrs = torch.full((400,), 0.5, dtype=torch.float64)
    sim = T.sgd_noisy_quadratic(lrs, runs=400, seed=1)
    exact = schedules.noisy_quadratic_loss(lrs)
    assert torch.allclose(sim[50::50], exact[50::50], rtol=0.05)
    h = torch.logspace(-2, 0, 40, dtype=torch.float64)
    floor = float((0.5 * h / (2 * (2 - 0.5 * h))).sum())
    assert float(sim[200:].mean()) == pytest.approx(floor, rel=0.03)


@pytest.mark.parametrize(
    "call, err, msg",
    [
        (lambda: T.quadratic_spectrum(0.5), ValueError, "kappa"),
        (lambda: T.quadratic_spectrum("10"), TypeError, "kappa"),
        (lambda: T.run_quadratic([1.0, -1.0], lr=0.1, steps=5), ValueError, "eigenvalues"),
        (lambda: T.run_quadratic([1.0], lr=0.0, steps=5), ValueError, "lr"),
        (lambda: T.run_quadratic([1.0], lr=0.1, momentum=1.0, steps=5), ValueError, "momentum"),
        (lambda: T.run_quadratic([1.0], lr=0.1, steps=0), ValueError, "steps"),
        (lambda: T.run_quadratic([1.0, 2.0], lr=0.1, steps=5, x0=torch.ones(3)), ValueError, "x0"),
        (lambda: T.sublinear_bound(0, L=1.0, distance0=1.0), ValueError, "k"),
        (lambda: T.steps_to_tolerance(torch.ones(3), 2.0), ValueError, "tol"),
        (lambda: T.loglog_slope([1, 2], [1, -1]), ValueError, "positive"),
        (lambda: T.sgd_noisy_quadratic([[0.1, -0.1]]), ValueError, "lrs"),
    ],
)
def test_rate_functions_reject_bad_input(call, err, msg):
    with pytest.raises(err, match=msg):
        call()


# --- the loop --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_data():
    train, val, _ = digits(200, 100, seed=0, dtype=torch.float64)
    return train, val


def manual_sgd(model, train, *, epochs, batch_size, lr, momentum, clip=None):
    """The reference path: a plain PyTorch loop over the data in stored order."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    norms = []
    for _ in range(epochs):
        for a in range(0, len(train), batch_size):
            loss = F.cross_entropy(model(train.x[a:a + batch_size]), train.y[a:a + batch_size])
            opt.zero_grad()
            loss.backward()
            grads = [p.grad for p in model.parameters()]
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
    return norms


@pytest.mark.parametrize("clip", [None, 0.5])
def test_fit_equals_a_plain_torch_loop_in_float64(small_data, clip):
    train, val = small_data
    ours, ref = T.mlp([64, 16, 10], seed=3).double(), T.mlp([64, 16, 10], seed=3).double()
    hist = T.fit(ours, train, val, epochs=2, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.9, shuffle=False,
                 clip_norm=clip)
    norms = manual_sgd(ref, train, epochs=2, batch_size=32, lr=0.1, momentum=0.9, clip=clip)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=1e-12, atol=1e-14)
    assert np.allclose(hist.grad_norm, norms, rtol=1e-12)  # recorded before clipping
    if clip is not None:
        assert (hist.grad_norm > clip).any()  # the clip was active


def test_fit_records_the_grad_norm_that_torch_computes(small_data):
    train, val = small_data
    model = T.mlp([64, 16, 10], seed=0).double()
    hist = T.fit(model, train, None, epochs=1, batch_size=200, lr=0.0 + 1e-12, shuffle=False)
    m2 = T.mlp([64, 16, 10], seed=0).double()
    F.cross_entropy(m2(train.x), train.y).backward()
    if hasattr(torch.nn.utils, "get_total_norm"):
        expected = float(torch.nn.utils.get_total_norm([p.grad for p in m2.parameters()]))
    else:  # older PyTorch
        expected = float(torch.nn.utils.clip_grad_norm_(m2.parameters(), float("inf")))
    assert hist.grad_norm[0] == pytest.approx(expected, rel=1e-12)


def test_fit_with_a_ready_torch_optimizer_and_a_schedule(small_data):
    train, val = small_data
    model = T.mlp([64, 16, 10], seed=0).double()
    total = 3 * 7
    lrs = schedules.warmup_cosine_lr(torch.arange(total), base_lr=0.5, warmup=5, total=total)
    adam = torch.optim.Adam(model.parameters(), lr=123.0)
    hist = T.fit(model, train, val, epochs=3, batch_size=32, optimizer=adam, lr=lrs)
    assert np.array_equal(hist.lr, lrs.numpy())
    assert adam.param_groups[0]["lr"] == pytest.approx(float(lrs[-1]))
    with pytest.raises(ValueError, match="hyper"):
        T.fit(model, train, val, optimizer=adam, momentum=0.9)


def test_history_layout_terms_and_budget(small_data):
    train, val = small_data
    l2 = lambda m: 1e-3 * sum((p**2).sum() for p in m.parameters())  # noqa: E731
    hist = T.fit(T.mlp([64, 16, 10]).double(), train, val, epochs=3, batch_size=64, extra_terms={"l2": l2})
    per_epoch = math.ceil(200 / 64)
    assert hist.steps_per_epoch == per_epoch and len(hist.step_loss) == 3 * per_epoch
    assert list(hist.eval_steps) == [0, per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert hist.n_classes == 10
    assert np.allclose(hist.terms["data"] + hist.terms["l2"], hist.step_loss, rtol=1e-12)
    assert (hist.terms["l2"] > 0).all()
    assert hist.train_acc.shape == hist.val_acc.shape == (4,)
    capped = T.fit(T.mlp([64, 16, 10]).double(), train, val, epochs=3, batch_size=64, max_steps=5, eval_every=2)
    assert len(capped.step_loss) == 5 and list(capped.eval_steps) == [0, 2, 4, 5]


def test_shuffling_is_seeded(small_data):
    train, val = small_data
    runs = [T.fit(T.mlp([64, 16, 10], seed=0).double(), train, val, epochs=2, seed=s).step_loss for s in (1, 1, 2)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_batch_hook_sees_every_step(small_data):
    train, val = small_data
    seen = []

    def hook(step, x, y):
        seen.append((step, len(x)))
        return x, y

    T.fit(T.mlp([64, 8, 10]).double(), train, val, epochs=2, batch_size=64, batch_hook=hook)
    assert [s for s, _ in seen] == list(range(8)) and [n for _, n in seen[:4]] == [64, 64, 64, 8]


def test_progress_bar_only_when_asked(small_data, capsys):
    train, val = small_data
    T.fit(T.mlp([64, 8, 10]).double(), train, val, epochs=1)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
    T.fit(T.mlp([64, 8, 10]).double(), train, val, epochs=1, progress=True)
    assert "training" in capsys.readouterr().err


def test_nan_guard_stops_and_no_non_finite_update_is_applied(small_data):
    train, val = small_data
    model = T.mlp([64, 16, 10]).double()
    hist = T.fit(model, train, val, epochs=20, lr=1e6, callbacks=[T.NaNGuard()])
    assert hist.stop_reason.startswith("NaN guard") and len(hist.step_loss) < 20 * 7
    assert not np.isfinite(hist.step_loss[-1]) or not np.isfinite(hist.grad_norm[-1])
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    guarded = T.fit(T.mlp([64, 16, 10]).double(), train, val, epochs=5, lr=50.0, callbacks=[T.NaNGuard(max_loss=10.0)])
    assert "above 10" in guarded.stop_reason and guarded.step_loss[-1] > 10


def test_evaluate_matches_a_direct_computation_and_restores_the_mode(small_data):
    train, _ = small_data
    model = T.mlp([64, 16, 10], seed=1).double()
    model.train()
    loss, acc = T.evaluate(model, train, batch_size=37)
    with torch.no_grad():
        out = model(train.x)
    assert loss == pytest.approx(float(F.cross_entropy(out, train.y)), rel=1e-12)
    assert acc == pytest.approx(float((out.argmax(1) == train.y).double().mean()))
    assert model.training


def test_mlp_is_seeded_and_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    a, b = T.mlp([4, 3, 2], seed=7), T.mlp([4, 3, 2], seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert len(T.mlp([4, 2])) == 1 and isinstance(T.mlp([4, 3, 2], activation=nn.Tanh)[1], nn.Tanh)


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        (dict(model="net"), TypeError, "model"),
        (dict(train=(1, 2)), TypeError, "train"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(batch_size=-1), ValueError, "batch_size"),
        (dict(lr=-0.1), ValueError, "lr"),
        (dict(lr=[0.1, 0.1]), ValueError, "schedule needs a rate"),
        (dict(lr="fast"), TypeError, "lr"),
        (dict(clip_norm=0.0), ValueError, "clip_norm"),
        (dict(optimizer="sgdd"), ValueError, "method"),
        (dict(optimizer=3), TypeError, "optimizer"),
        (dict(callbacks=[print]), TypeError, "callbacks"),
        (dict(extra_terms={"l2": 1.0}), TypeError, "extra_terms"),
        (dict(momentum=-1.0), ValueError, "momentum"),
        (dict(val=None, callbacks=[T.EarlyStopping(2)]), ValueError, "validation"),
    ],
)
def test_fit_rejects_bad_input(small_data, kwargs, err, msg):
    train, val = small_data
    args = dict(model=T.mlp([64, 8, 10]).double(), train=train, val=val) | kwargs
    model, tr, va = args.pop("model"), args.pop("train"), args.pop("val")
    with pytest.raises(err, match=msg):
        T.fit(model, tr, va, **args)


# --- early stopping and the other callbacks ---------------------------------------------

@pytest.mark.parametrize(
    "values, patience, min_delta, expected",
    [
        ([1.0, 0.8, 0.85, 0.9, 0.7], 2, 0.0, (3, 1)),
        ([1.0, 0.8, 0.85, 0.7, 0.75, 0.76], 2, 0.0, (5, 3)),  # the count restarts after an improvement
        ([1.0, 0.9, 0.8], 1, 0.0, (2, 2)),  # never stops
        ([1.0, 1.0, 1.0], 2, 0.0, (2, 0)),  # ties are not improvements
        ([1.0, math.nan, 0.5], 1, 0.0, (1, 0)),  # NaN is not an improvement
        ([1.0, 0.995, 0.99, 0.5], 2, 0.01, (2, 0)),  # within min_delta is not an improvement
        ([0.3], 4, 0.0, (0, 0)),
    ],
)
def test_early_stopping_point_patience_semantics(values, patience, min_delta, expected):
    assert T.early_stopping_point(values, patience, min_delta) == expected


def _drive(callback, values, model=None):
    """Feed validation losses to a callback as fit would; return the index where it asked to stop (or the last)."""
    model = model or nn.Linear(1, 1, bias=False)
    state = T.TrainState(model, T.History())
    for i, v in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(float(i))  # the weights at evaluation i are "i"
        state.step = i
        state.history.val_loss.append(v)
        if callback.on_eval(state):
            return i, state
    return len(values) - 1, state


def test_early_stopping_callback_agrees_with_the_pure_rule_and_restores_the_best_weights():
    rng = np.random.default_rng(0)
    for _ in range(100):
        values = np.round(1 + np.cumsum(rng.normal(0, 0.05, int(rng.integers(1, 25)))), 2).tolist()
        patience, delta = int(rng.integers(1, 5)), float(rng.choice([0.0, 0.02]))
        cb = T.EarlyStopping(patience, min_delta=delta)
        stop, state = _drive(cb, values)
        expected_stop, best = T.early_stopping_point(values, patience, delta)
        assert stop == expected_stop
        cb.on_end(state)
        assert float(state.model.weight.detach()) == best  # the weights of the best evaluation are back
        assert state.history.restored_step == best


def test_early_stopping_in_fit_restores_the_best_validation_loss():
    setup = T.bug_setup("label noise", epochs=6)  # 300 noisy labels: overfits
    hist = setup.fit(callbacks=[T.EarlyStopping(patience=4), T.NaNGuard()])
    stop, best = T.early_stopping_point(hist.val_loss, 4)
    assert hist.stop_reason.startswith("early stopping") and stop == len(hist.val_loss) - 1
    assert hist.restored_step == hist.eval_steps[best]
    restored, _ = T.evaluate(setup.model, setup.val)
    assert restored == pytest.approx(hist.val_loss[best], rel=1e-12)
    assert hist.val_loss[-1] > hist.val_loss[best]


def test_reduce_lr_on_plateau_follows_schedules_reduce_on_plateau():
    values = [1.0, 0.9, 0.9, 0.91, 0.92, 0.85, 0.86, 0.87, 0.88]
    cb = T.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.0)
    state = T.TrainState(nn.Linear(1, 1), T.History())
    scales = []
    for i, v in enumerate(values):
        state.step = i
        state.history.val_loss.append(v)
        cb.on_eval(state)
        scales.append(state.lr_scale)
    expected = schedules.plateau_lrs(values, base_lr=1.0, factor=0.5, patience=1, threshold=0.0)
    assert np.allclose(scales, expected.numpy(), rtol=0, atol=0)
    assert len(state.history.events) == int((np.diff([1.0, *scales]) < 0).sum()) > 0


def test_reduce_lr_on_plateau_scales_the_rate_inside_fit(small_data):
    train, val = small_data
    hist = T.fit(T.mlp([64, 8, 10]).double(), train, val, epochs=12, lr=0.5,
                 callbacks=[T.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.1)])
    cuts = [s for s, text in hist.events if text.startswith("plateau") and s < len(hist.lr)]
    assert cuts, "expected at least one cut before the last step"
    assert hist.lr[cuts[0] - 1] == 0.5 and hist.lr[cuts[0]] == 0.25  # the next step after the cut runs at half the rate


def test_checkpoint_works_without_a_validation_split(small_data):
    train, _ = small_data
    saver = T.Checkpoint()
    hist = T.fit(T.mlp([64, 8, 10]).double(), train, None, epochs=2, callbacks=[saver])
    assert sorted(saver.saved) == hist.eval_steps.tolist()[-3:] and np.isnan(hist.val_loss).all()


def test_checkpoint_keeps_the_last_copies_in_memory_and_on_disk(small_data, tmp_path):
    train, val = small_data
    saver = T.Checkpoint(every=2, keep=2, directory=tmp_path / "ckpt")
    model = T.mlp([64, 8, 10]).double()
    hist = T.fit(model, train, val, epochs=5, callbacks=[saver])
    evals = list(hist.eval_steps)
    assert sorted(saver.saved) == evals[::2][-2:]
    last = max(saver.saved)
    assert all(torch.equal(saver.saved[last][k], v) for k, v in model.state_dict().items()) == (last == evals[-1])
    on_disk = torch.load(tmp_path / "ckpt" / f"step_{last}.pt")
    assert all(torch.equal(on_disk[k], v) for k, v in saver.saved[last].items())


def test_callbacks_reject_bad_settings():
    with pytest.raises(ValueError, match="patience"):
        T.EarlyStopping(0)
    with pytest.raises(ValueError, match="min_delta"):
        T.EarlyStopping(2, min_delta=-1.0)
    with pytest.raises(ValueError, match="factor"):
        T.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="keep"):
        T.Checkpoint(keep=0)
    with pytest.raises(ValueError, match="patience"):
        T.early_stopping_point([1.0], 0)
    with pytest.raises(ValueError, match="values"):
        T.early_stopping_point([], 1)


# --- the diagnosis ---------------------------------------------------------------------------

def names(history):
    return [f.name for f in T.diagnose(history)]


@pytest.mark.parametrize("kind", [k for k in T.SYNTHETIC if k != "healthy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_synthetic_pathology_gets_its_name(kind, seed):
    assert kind in names(T.synthetic_history(kind, seed=seed))


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_history_is_not_flagged(seed):
    assert names(T.synthetic_history("healthy", seed=seed)) == ["healthy"]


def hand_made(step_loss, *, val=None, train=None, every=10, classes=10, per_epoch=None):
    step_loss = np.asarray(step_loss, dtype=np.float64)
    ev = np.arange(0, len(step_loss) + 1, every)
    t = np.arange(len(step_loss))
    tl = np.interp(ev, t, step_loss) if train is None else train
    return T.History(step_loss=step_loss, eval_steps=ev, train_loss=tl,
                     val_loss=tl * 1.05 if val is None else val, n_classes=classes, steps_per_epoch=per_epoch)


def test_diagnose_hand_made_histories():
    t = np.arange(200, dtype=np.float64)
    healthy = 0.05 + 2.25 * np.exp(-t / 25)
    assert names(hand_made(healthy)) == ["healthy"]
    # a NaN at step 120: diverged, at that step
    nan = healthy.copy()
    nan[120:] = np.nan
    found = T.diagnose(hand_made(nan, val=np.interp(np.arange(0, 201, 10), t, np.nan_to_num(nan, nan=1e9))))
    assert found[0].name == "diverged" and found[0].step == 120
    # a loss that climbs a hundredfold without becoming NaN
    assert names(hand_made(2.3 * np.exp(t / 40)))[0] == "diverged"
    # a loss that falls only 10% and is still falling: too slow
    assert "too-slow" in names(hand_made(2.3 - 0.0012 * t))
    # stuck at log K from the start: a plateau that never ends, and underfitting
    assert {"plateau", "underfitting"} <= set(names(hand_made(np.full(200, math.log(10)))))
    # an initial loss of 30 with 10 classes
    assert "bad-initial-loss" in names(hand_made(0.05 + 30 * np.exp(-t / 10)))
    # validation turning up at step 80 while training keeps falling: overfitting, best step 80
    ev = np.arange(0, 201, 10)
    val = 0.4 + 1.9 * np.exp(-ev / 20) + 0.004 * np.clip(ev - 80, 0, None)
    over = [f for f in T.diagnose(hand_made(healthy, val=val)) if f.name == "overfitting"]
    assert over and abs(over[0].step - int(ev[np.argmin(val)])) <= 10
    # one batch ten times the usual loss
    spiky = healthy.copy()
    spiky[150] = 3.0
    spikes = [f for f in T.diagnose(hand_made(spiky)) if f.name == "spikes"]
    assert spikes and spikes[0].step == 150 and "isolated" in spikes[0].evidence
    # the same pattern every epoch of 20 steps
    periodic = healthy * np.exp(0.5 * np.sin(2 * np.pi * t / 20))
    assert "unshuffled" in names(hand_made(periodic, per_epoch=20))
    assert "unshuffled" not in names(hand_made(periodic, per_epoch=None))


def test_every_finding_has_evidence_and_advice():
    for kind in T.SYNTHETIC:
        for f in T.diagnose(T.synthetic_history(kind)):
            assert f.name in T.PATHOLOGIES and f.evidence and f.advice
            assert str(f).startswith(f.name)
    text = T.report(T.diagnose(T.synthetic_history("overfitting")))
    assert "overfitting" in text and "try:" in text


def test_diagnose_rejects_bad_input():
    with pytest.raises(TypeError, match="history"):
        T.diagnose({"step_loss": [1, 2]})
    with pytest.raises(ValueError, match="at least 2"):
        T.diagnose(T.History(step_loss=np.array([1.0])))
    with pytest.raises(ValueError, match="spike_factor"):
        T.diagnose(T.synthetic_history("healthy"), spike_factor=1.0)
    with pytest.raises(ValueError, match="kind"):
        T.synthetic_history("wobbly")
    with pytest.raises(ValueError, match="lr"):
        T.History(step_loss=np.ones(5), lr=np.ones(4))


EXPECTED = {
    "none": {"healthy"},
    "lr x100": {"diverged"},
    "lr /100": {"too-slow"},
    "no shuffling": {"unshuffled"},
    "label noise": {"overfitting"},
    "tiny model": {"underfitting"},
    "no normalization": {"bad-initial-loss"},
}


@pytest.fixture(scope="module")
def bug_runs():
    return {bug: T.run_with_bug(bug) for bug in T.BUGS}


@pytest.mark.parametrize("bug", list(T.BUGS))
def test_real_runs_with_planted_bugs_get_the_right_name(bug_runs, bug):
    found = set(names(bug_runs[bug]))
    assert EXPECTED[bug] <= found, f"{bug}: diagnosed {found}"
    if bug != "none":
        assert "healthy" not in found
    else:
        assert found == {"healthy"}


def test_the_exercise_histories_are_what_diagnose_says():
    for run, hist in mystery_histories().items():
        assert names(hist) == [MYSTERY[run][0]]


# --- debugging helpers --------------------------------------------------------------------

def test_find_nonfinite_names_the_operation_quietly():
    x = torch.tensor([-1.0, 4.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the test
        msg = T.find_nonfinite(lambda: torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x)).sum())
        assert "SqrtBackward0" in msg and "nan" in msg
        assert T.find_nonfinite(lambda: (x**2).sum()) is None
        assert "forward" in T.find_nonfinite(lambda: torch.log(torch.zeros(1)).sum())
    with pytest.raises(TypeError, match="closure"):
        T.find_nonfinite(3)


def test_grad_norms_by_layer_and_describe_batch():
    model = T.mlp([4, 3, 2])
    model(torch.ones(5, 4)).sum().backward()
    got = T.grad_norms_by_layer(model)
    assert list(got) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert got["2.weight"] == pytest.approx(float(model[2].weight.grad.norm()))
    text = T.describe_batch(torch.arange(6.0).reshape(3, 2), torch.tensor([0, 2, 2]))
    assert "shape (3, 2), float32" in text and "range [0, 5]" in text and "2 distinct values from 0 to 2" in text
    with pytest.raises(TypeError, match="y"):
        T.describe_batch(torch.ones(2), [1, 2])


def test_unnormalized_digits_are_data_digits_before_standardization():
    raw, _, _ = T.digits_unnormalized(300, 100, seed=3)
    std, _, _ = digits(300, 100, seed=3, dtype=torch.float64)
    x = raw.x.double()
    s = x.std(0)
    s = torch.where(s > 0, s, torch.ones_like(s))
    assert torch.allclose((x - x.mean(0)) / s, std.x, atol=1e-6)
    assert torch.equal(raw.y, std.y) and float(raw.x.max()) == 16.0


def test_bug_setup_rejects_unknown_bugs():
    with pytest.raises(ValueError, match="bug"):
        T.bug_setup("off by one")


# --- the explorers -------------------------------------------------------------------------

def test_explorers_render_their_grid_within_budget():
    from losslab.explore import MAX_STATIC_BYTES
    from losslab.explore import train
    from losslab.explore.train import pathology_explorer, rate_explorer

    rate = rate_explorer()
    assert rate.n_frames == len(train.KAPPAS) * len(train.RATE_LRS) * len(train.RATE_BETAS) >= 3 * 9 * 9
    assert rate.frame(kappa=10.0) != rate.frame(kappa=1000.0)
    assert len(rate.static_html()) < MAX_STATIC_BYTES
    gallery = pathology_explorer()
    assert gallery.n_frames == len(T.BUGS)
    assert gallery.frame(bug="none") != gallery.frame(bug="lr x100")
    assert "no shuffling" in gallery.alt(bug="no shuffling")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_runs_on_the_gpu_and_agrees_with_the_cpu(small_data):
    train, val = small_data
    cpu, gpu = T.mlp([64, 16, 10], seed=0).double(), T.mlp([64, 16, 10], seed=0).double()
    h_cpu = T.fit(cpu, train, val, epochs=2, lr=0.1, momentum=0.9)
    h_gpu = T.fit(gpu, train, val, epochs=2, lr=0.1, momentum=0.9, device="cuda")
    assert next(gpu.parameters()).device.type == "cuda"
    assert np.allclose(h_cpu.step_loss, h_gpu.step_loss, rtol=1e-9)
    assert T.diagnose(h_gpu)[0].name == T.diagnose(h_cpu)[0].name
