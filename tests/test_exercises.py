import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from losslab import exercises as X

ALL = X.all_exercises()


def test_there_are_exercises():
    assert "demo.relu" in ALL


@pytest.mark.parametrize("eid", sorted(ALL))
def test_reference_solution_passes_every_check(eid):
    ex = ALL[eid]
    report = ex.run(ex.reference())
    assert report.ok, report.to_text()


@pytest.mark.parametrize("eid", sorted(ALL))
def test_every_known_wrong_version_is_rejected(eid):
    ex = ALL[eid]
    assert ex.wrong, f"{eid}: list known-wrong versions so the checks are tested"
    for source in ex.wrong:
        report = ex.run(ex.compile(source))
        assert not report.ok, f"{eid}: this wrong version passed every check:\n{source}"


@pytest.mark.parametrize("eid", sorted(ALL))
def test_the_unfilled_stub_is_reported_as_not_attempted(eid):
    ex = ALL[eid]
    report = ex.run(ex.compile(ex.stub))
    assert not report.attempted and report.passed == 0
    assert "not attempted" in report.summary()


def test_a_crashing_candidate_is_reported_not_raised():
    def relu(x):
        return 1 / 0

    report = X.exercise("demo.relu").run(relu)
    assert report.passed < report.total
    assert any("ZeroDivisionError" in o.message for o in report.outcomes)


def test_a_non_callable_fails_every_check_with_a_message():
    report = X.exercise("demo.relu").run(42)
    assert report.passed == 0
    assert all("expected the function relu, got int" in o.message for o in report.outcomes)


def test_failures_carry_the_hint():
    report = X.exercise("demo.relu").run(lambda x: x)
    failed = [o for o in report.outcomes if o.status == "fail"]
    assert failed and all(o.hint for o in failed)
    text = report.to_text()
    assert "hint:" in text and "FAIL" in text


def test_check_displays_and_never_raises_for_the_readers_code():
    InteractiveShell.instance()

    def relu(x):
        raise RuntimeError("boom")

    with capture_output() as cap:
        result = X.check("demo.relu", relu)
    assert result is None
    (out,) = cap.outputs
    meta = out.metadata["losslab"]
    assert meta["kind"] == "exercise" and meta["id"] == "demo.relu"
    assert meta["passed"] < meta["total"]
    assert "RuntimeError: boom" in out.data["text/html"]


def test_check_of_a_correct_function_reports_all_passed():
    InteractiveShell.instance()
    with capture_output() as cap:
        X.check("demo.relu", lambda x: torch.clamp(x, min=0))
    meta = cap.outputs[0].metadata["losslab"]
    assert meta["passed"] == meta["total"] == 4


def test_unknown_exercise_ids_are_a_clear_error():
    with pytest.raises(KeyError, match="did you mean"):
        X.check("demo.rleu", lambda x: x)
    with pytest.raises(TypeError, match="exercise_id"):
        X.exercise(3)


def test_solutions_are_folded_away():
    InteractiveShell.instance()
    with capture_output() as cap:
        X.show_solution("demo.relu")
    out = cap.outputs[0]
    assert out.data["text/html"].startswith("<details")
    assert "torch.where" in out.data["text/html"] and "torch.where" not in out.data["text/plain"]


PROBLEM = """
[[question]]
id = "demo.problem-derivation"
kind = "numeric"
prompt = "Differentiate $x^3$ at $x = 2$."
answer = 12.0
tolerance = 1e-6
explanation = "$3x^2 = 12$."
solution = "By the power rule the derivative is $3x^2$, which is **12** at $x = 2$."
"""


def test_a_problem_shows_its_worked_solution_folded_away(monkeypatch):
    from losslab import questions as Q

    bank = Q.parse_bank(PROBLEM, "demo")
    monkeypatch.setattr(Q, "load_bank", lambda: bank)
    InteractiveShell.instance()
    with capture_output() as cap:
        X.show_solution("demo.problem-derivation")
    html = cap.outputs[0].data["text/html"]
    assert html.startswith("<details") and "<strong>12</strong>" in html
    assert "power rule" not in cap.outputs[0].data["text/plain"]
    monkeypatch.setenv("LOSSLAB_SOLUTIONS", "0")
    with capture_output() as cap:
        X.show_solution("demo.problem-derivation")
    assert "left out" in cap.outputs[0].data["text/plain"] and "text/html" not in cap.outputs[0].data


def test_a_question_without_a_worked_solution_cannot_be_shown_as_one():
    with pytest.raises(ValueError, match="no worked `solution`"):
        X.show_solution("loss.huber-gradient")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(id="Bad", stub="def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"), "id"),
        (dict(stub="def g(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"), "stub must define f"),
        (dict(stub="def f(x):\n    pass"), "YOUR CODE HERE"),
        (dict(entry="not a name"), "entry"),
    ],
)
def test_malformed_exercises_are_rejected(kwargs, message):
    base = dict(id="t.ok", title="t", prompt="p", entry="f",
                stub="def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()", solution="def f(x):\n    return x")
    with pytest.raises(ValueError, match=message):
        X.Exercise(**(base | kwargs))


def test_exercise_ids_are_unique():
    with pytest.raises(ValueError, match="defined twice"):
        X.Exercise(id="demo.relu", title="t", prompt="p", entry="f",
                   stub="def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()", solution="def f(x):\n    return x")


def test_the_diagnose_runs_check_does_not_say_which_run_is_wrong():
    """One check for all three runs, one message: a wrong answer for A reads like a wrong answer for C."""
    ex = X.exercise("train.diagnose-runs")
    right = ex.reference()()
    reports = []
    for run in right:
        wrong = dict(right, **{run: "healthy"})
        reports.append(ex.run(lambda wrong=wrong: wrong))
    assert all(not r.ok for r in reports)
    seen = {tuple((o.name, o.status, o.message, o.hint) for o in r.outcomes) for r in reports}
    assert len(seen) == 1, f"the reports differ with the wrong run: {seen}"
    assert not any(run in o.name.split() or f"run {run}" in o.message for o in reports[0].outcomes for run in "ABC")


def test_relu_reference_agrees_with_torch_on_nan_and_inf_and_the_nan_hiding_version_is_caught():
    ex = X.exercise("demo.relu")
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, -1e-300, 3.0], dtype=torch.float64)
    y, expected = ex.reference()(x.clone()), torch.nn.functional.relu(x)
    assert torch.equal(torch.isnan(y), torch.isnan(expected))
    assert torch.equal(y.nan_to_num(7.0), expected.nan_to_num(7.0))
    nan_to_zero = ex.compile("import torch\ndef relu(x):\n    return torch.where(x > 0, x, torch.zeros_like(x))\n")
    report = ex.run(nan_to_zero)
    failed = [o for o in report.outcomes if o.status == "fail"]
    assert len(failed) == 1 and "NaN" in failed[0].name and "relu(nan) gave 0.0" in failed[0].message


@pytest.mark.parametrize("eid", sorted(ALL))
def test_every_check_sends_the_sandbox_plain_data(eid):
    """Graded work runs in a sandbox that takes tensors, numbers and strings, not functions: every check's inputs must travel."""
    from losslab import _wire

    ex, ref, refused = ALL[eid], ALL[eid].reference(), []

    def through_the_wire(*args, **kwargs):
        try:
            _wire.dumps({"args": _wire.encode(args, []), "kwargs": _wire.encode(kwargs, [])})
        except _wire.WireError as err:
            refused.append(str(err))
        return ref(*args, **kwargs)

    ex.run(through_the_wire)
    assert not refused, f"{eid}: a check passes the student's function something the grader cannot send: {refused[0]}"
