import json
import re

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from losslab import questions as Q


def parse(text, prefix="t"):
    return Q.parse_bank(text, prefix, "test.toml")


SINGLE = '''
[[question]]
id = "t.single"
kind = "single"
prompt = "Pick b."
explanation = "b is right."
choices = [{ text = "a", feedback = "a is wrong" }, { text = "b", correct = true }, { text = "c" }]
'''
MULTI = '''
[[question]]
id = "t.multi"
kind = "multiple"
prompt = "Pick a and c."
explanation = "a and c."
choices = [{ text = "a", correct = true }, { text = "b", feedback = "not b" }, { text = "c", correct = true }]
'''
NUMERIC = '''
[[question]]
id = "t.num"
kind = "numeric"
prompt = "About 0.25?"
answer = 0.25
tolerance = 0.01
hint = "think"
explanation = "0.25."
'''


def test_every_question_in_the_bank_is_valid_and_uniquely_identified():
    bank = Q.load_bank()
    assert bank, "the question bank is empty"
    for qid, q in bank.items():
        assert qid == q.id and Q.ID_PATTERN.match(qid)
        if q.kind != "numeric":
            # the answer key agrees with the grader
            assert q.grade(q.correct_indices[0] if q.kind == "single" else list(q.correct_indices)).correct
        else:
            assert q.grade(q.instance().answer).correct  # a variant question: the book's numbers


def test_single_choice_grading():
    q = parse(SINGLE)["t.single"]
    assert q.grade(1) == Q.Feedback(True, "b is right.")
    assert q.grade(0) == Q.Feedback(False, "a is wrong")
    assert q.grade(2).correct is False
    with pytest.raises(ValueError, match="response"):
        q.grade(3)
    with pytest.raises(TypeError, match="response"):
        q.grade("b")


def test_multiple_choice_needs_the_exact_set():
    q = parse(MULTI)["t.multi"]
    assert q.grade([0, 2]).correct
    assert q.grade({2, 0}).correct
    assert not q.grade([0]).correct
    fb = q.grade([0, 1, 2])
    assert not fb.correct and "not b" in fb.message
    assert "1 correct choice(s) not selected" in q.grade([0]).message
    with pytest.raises(ValueError, match="response"):
        q.grade([5])
    with pytest.raises(TypeError, match="response"):
        q.grade(0)


def test_numeric_grading_uses_the_tolerance():
    q = parse(NUMERIC)["t.num"]
    assert q.grade(0.25).correct and q.grade("0.259").correct and q.grade(0.241).correct
    assert not q.grade(0.2611).correct and not q.grade(0.2389).correct
    assert q.grade(0.3).message == "think"
    assert not q.grade(float("nan")).correct
    with pytest.raises(ValueError, match="response"):
        q.grade("a quarter")


def test_relative_tolerance():
    text = NUMERIC.replace("tolerance = 0.01", "rtol = 0.1").replace("answer = 0.25", "answer = 1000")
    q = parse(text)["t.num"]
    assert q.grade(1099).correct and not q.grade(1101).correct


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda s: s.replace('id = "t.single"', 'id = "other.single"'), "must start with 't.'"),
        (lambda s: s.replace('id = "t.single"', 'id = "t.Bad Id"'), "id"),
        (lambda s: s.replace('kind = "single"', 'kind = "essay"'), "kind"),
        (lambda s: s.replace("{ text = \"b\", correct = true }", "{ text = \"b\" }"), "exactly 1 correct"),
        (lambda s: s.replace("{ text = \"c\" }", "{ text = \"c\", correct = true }"), "exactly 1 correct"),
        (lambda s: s.replace('explanation = "b is right."', 'explanation = ""'), "explanation"),
        (lambda s: s.replace('{ text = "c" }', '{ text = "b" }'), "same text"),
        (lambda s: s.replace('prompt = "Pick b."', 'prompt = "Pick b."\nanwser = 3'), "unknown keys"),
        (lambda s: s + s, "duplicate question id"),
    ],
)
def test_malformed_banks_are_rejected_with_a_clear_message(mutation, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(mutation(SINGLE))


def test_numeric_questions_need_a_tolerance_and_a_finite_answer():
    with pytest.raises(ValueError, match="tolerance"):
        parse(NUMERIC.replace("tolerance = 0.01", ""))
    with pytest.raises(ValueError, match="finite"):
        parse(NUMERIC.replace("answer = 0.25", "answer = nan"))


def test_unknown_ids_suggest_close_ones():
    with pytest.raises(KeyError, match="did you mean"):
        Q.question("demo.gradient-sing")


def test_html_carries_all_feedback_and_is_self_contained():
    q = parse(SINGLE)["t.single"]
    html = Q.render_html([q])
    assert html.count('class="llq-choice"') == 3
    assert 'data-correct="1"' in html and html.count('data-correct="0"') == 2
    assert "a is wrong" in html and "b is right." in html
    assert "<script>" in html and "window.losslabQuiz.mount(" in html
    assert "src=" not in html and "http" not in html  # nothing fetched
    assert "tex2jax_process" in html  # Sphinx's MathJax only typesets marked elements


def test_choice_groups_do_not_collide_between_blocks():
    q = parse(SINGLE)["t.single"]
    a, b = Q.render_html([q]), Q.render_html([q])
    name = lambda h: re.search(r'name="([^"]+)"', h).group(1)  # noqa: E731
    assert name(a) != name(b)


def test_math_is_passed_to_mathjax_and_html_is_escaped():
    text = SINGLE.replace('prompt = "Pick b."', "prompt = '''Is $a < b$ in <script>x</script>?'''")
    html = Q.render_html([parse(text)["t.single"]])
    assert r"\(a &lt; b\)" in html
    assert "<script>x</script>" not in html


def test_plain_text_never_reveals_the_answer():
    for q in Q.load_bank().values():
        text = Q.render_text([q])
        assert q.explanation.strip() not in text
        for c in q.choices:
            if c.feedback:
                assert c.feedback not in text


def test_quiz_displays_with_ids_in_metadata():
    InteractiveShell.instance()
    with capture_output() as cap:
        Q.quiz("demo.gradient-sign", "demo.sigmoid-slope")
    (out,) = cap.outputs
    assert out.metadata["losslab"] == {"kind": "quiz", "ids": ["demo.gradient-sign", "demo.sigmoid-slope"]}
    assert "Question 2" in out.data["text/html"]
    json.dumps(out.metadata)


def test_quiz_argument_errors():
    with pytest.raises(ValueError, match="ids"):
        Q.quiz()
    with pytest.raises(ValueError, match="twice"):
        Q.quiz("demo.gradient-sign", "demo.gradient-sign")


# --- the numeric keys of Chapters 5 and 6 grade what their prompts ask for -------------------------

_DIGITS = {"two": 2, "three": 3}


def _round_sig(x: float, n: int) -> float:
    return float(f"{x:.{n - 1}e}")


@pytest.mark.parametrize("q", [q for q in Q.questions(prefix="backprop") + Q.questions(prefix="grads") if q.kind == "numeric"],
                         ids=lambda q: q.id)
def test_an_answer_given_to_the_asked_precision_is_accepted(q):
    q = q.instance()  # a per-student variant: its numbers as the book shows them
    m = re.search(r"(two|three) significant digits", q.prompt, flags=re.IGNORECASE)
    if m is None:
        pytest.skip("the prompt asks for no particular precision")
    n = _DIGITS[m.group(1).lower()]
    rounded = _round_sig(q.answer, n)
    assert q.grade(rounded).correct, f"{q.id}: asks for {n} significant digits but rejects {rounded}"
    assert q.grade(f"{rounded:.{n - 1}e}").correct


def test_recurrent_growth_accepts_two_digits_and_rejects_the_neighbours():
    q = Q.question("grads.recurrent")
    assert q.answer == pytest.approx(1.1 ** 50, rel=1e-4)
    assert q.grade(120).correct and q.grade(117).correct and q.grade("1.2e2").correct
    assert not q.grade(110).correct and not q.grade(130).correct


def test_sigmoid_bound_asks_for_the_bound_not_the_true_maximum():
    import torch

    q = Q.question("grads.sigmoid-bound")
    h0 = torch.linspace(-8, 8, 16001, dtype=torch.float64, requires_grad=True)
    h = h0
    for _ in range(10):
        h = torch.sigmoid(h)
    (slope,) = torch.autograd.grad(h.sum(), h0)
    true_max = float(slope.max())
    assert "bound" in q.prompt and "largest possible" not in q.prompt
    assert q.grade(0.25 ** 10).correct
    assert true_max < 0.25 ** 10 and not q.grade(true_max).correct
    mantissa, exponent = f"{true_max:.1e}".split("e")
    assert f"{mantissa} \\times 10^{{{int(exponent)}}}" in q.explanation  # it quotes the true maximum


# --- shuffled choices ---------------------------------------------------------------------------

def test_choices_are_shown_in_a_seeded_shuffled_order():
    """In the bank the right choice is written anywhere (often first); no view shows the written order."""
    bank = [q for q in Q.load_bank().values() if q.choices]
    assert bank
    first = [q for q in bank if q.shuffled().choices[0].correct]
    # Answering "a" everywhere: right about as often as chance allows, never everywhere.
    assert len(first) < 0.6 * len(bank), f"{len(first)} of {len(bank)} questions show a right choice first"
    for q in bank:
        s = q.shuffled()
        assert sorted(c.text for c in s.choices) == sorted(c.text for c in q.choices)
        assert s == q.shuffled() and s.choices == q.shuffled(q.id).choices  # the book's order is the id's, every build
        html = Q.render_html([q])
        texts = [Q._markdown.to_inline_html(c.text) for c in s.choices]
        at = [html.index(t) for t in texts]
        assert at == sorted(at), q.id  # the HTML shows the shuffled order
        plain = Q.render_text([q])
        assert [plain.index(f"({'abcdefgh'[i]}) {c.text.strip()}") for i, c in enumerate(s.choices)]
    multiple = [q for q in bank if q.kind == "multiple"]
    if multiple:
        assert any(set(q.shuffled().correct_indices) != set(range(len(q.correct_indices))) for q in multiple)


def test_the_order_depends_on_the_seed_and_grading_follows_it():
    q = parse(SINGLE)["t.single"]  # the right choice is "b"
    orders = {tuple(c.text for c in q.shuffled(f"student-{k}").choices) for k in range(30)}
    assert len(orders) == 6  # all 3! orders occur across 30 seeds
    for k in range(10):
        s = q.shuffled(f"student-{k}")
        right = next(i for i, c in enumerate(s.choices) if c.text == "b")
        assert s.grade(right).correct and not s.grade((right + 1) % 3).correct
    assert Q.choice_order(5, "x") == Q.choice_order(5, "x") and sorted(Q.choice_order(5, "x")) == list(range(5))
    with pytest.raises(TypeError, match="seed"):
        Q.choice_order(3, 7)


def test_several_bank_files_per_chapter(tmp_path):
    """``<prefix>_<part>.toml`` adds questions to chapter ``<prefix>``; an id in two files is an error."""
    (tmp_path / "t.toml").write_text(SINGLE)
    (tmp_path / "t_variants.toml").write_text(MULTI)
    (tmp_path / "notes.txt").write_text("ignored")
    assert set(Q.load_folder(tmp_path)) == {"t.single", "t.multi"}
    (tmp_path / "t_more.toml").write_text(SINGLE)
    with pytest.raises(ValueError, match="t_more.toml.*another bank file.*t.single"):
        Q.load_folder(tmp_path)
    (tmp_path / "t_more.toml").write_text(SINGLE.replace('"t.single"', '"u.single"'))
    with pytest.raises(ValueError, match="must start with 't.'"):
        Q.load_folder(tmp_path)


# --- per-student variants -----------------------------------------------------------------------

VARIANT = '''
[[question]]
id = "t.step"
kind = "numeric"
prompt = "One step on $L = {{a}} w^2$ from $w = {{w}}$ with rate 0.1?"
params = { a = [1.0, 2.0, 3.0], w = [1.0, 2.0, 5.0] }
answer = "w - 0.1 * 2 * a * w"
tolerance = 1e-9
explanation = "The gradient is $2 \\\\cdot {{a}} \\\\cdot {{w}}$, so $w_1 = {{answer}}$."
'''


def test_variants_draw_numbers_per_seed_and_grade_them():
    q = parse(VARIANT)["t.step"]
    book = q.instance()
    assert book == q.instance(q.id) and not book.params and "{{" not in book.prompt + book.explanation
    a, w = (float(x) for x in re.findall(r"\$L = (\S+) w\^2\$ from \$w = (\S+)\$", book.prompt)[0])
    assert book.answer == pytest.approx(w - 0.2 * a * w)  # the numbers in the prompt give the key
    assert f"{book.answer:.6g}" in book.explanation
    assert q.grade(book.answer).correct and not q.grade(book.answer + 0.01).correct
    answers = {q.instance(f"student-{k}").answer for k in range(40)}
    assert len(answers) >= 6  # copied numbers fail for most other students
    for k in range(5):
        v = q.instance(f"student-{k}")
        assert v.grade(v.answer).correct


@pytest.mark.parametrize("change, message", [
    (lambda s: s.replace('answer = "w - 0.1 * 2 * a * w"', 'answer = "__import__(\'os\').getcwd()"'), "may use numbers"),
    (lambda s: s.replace('answer = "w - 0.1 * 2 * a * w"', 'answer = "w / (a - a)"'), "fails for"),
    (lambda s: s.replace("{{a}} w^2", "{{b}} w^2"), "unknown params"),
    (lambda s: s.replace("a = [1.0, 2.0, 3.0]", "a = []"), "non-empty list"),
    (lambda s: s.replace('kind = "numeric"', 'kind = "single"'), "only numeric"),
])
def test_bad_variants_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        parse(change(VARIANT))


def test_every_chapter_has_a_variant_question():
    bank = Q.load_bank()
    chapters = {i.split(".")[0] for i in bank}
    with_variants = {q.prefix for q in bank.values() if q.params}
    assert chapters <= with_variants, sorted(chapters - with_variants)
    for q in bank.values():
        if q.params:
            assert len({q.instance(f"s{k}").answer for k in range(30)}) >= 3, q.id


# --- the bank's answers and explanations follow from the math (computed here, not copied) ---------

def test_numeric_answers_of_the_demo_and_chapter_1_are_what_autograd_computes():
    import math

    import torch
    import torch.nn.functional as F

    bank = Q.load_bank()
    d = torch.float64
    z = torch.logit(torch.tensor(0.9, dtype=d)).requires_grad_()  # the unit outputs sigma(z) = 0.9
    torch.sigmoid(z).backward()
    assert abs(bank["demo.sigmoid-slope"].answer - float(z.grad)) < 1e-12
    assert "0.0099" in bank["demo.sigmoid-slope"].explanation  # sigma = 0.99: 0.99 * 0.01
    yhat = torch.tensor(5.0, dtype=d, requires_grad=True)  # residual 5 against a target of 0
    F.huber_loss(yhat, torch.tensor(0.0, dtype=d), delta=1.0).backward()
    assert abs(bank["loss.huber-gradient"].answer - float(yhat.grad)) < 1e-12
    logit = torch.tensor(0.0, dtype=d, requires_grad=True)
    F.binary_cross_entropy_with_logits(logit, torch.tensor(1.0, dtype=d)).backward()
    assert abs(bank["loss.bce-gradient"].answer - float(logit.grad)) < 1e-12
    first = F.cross_entropy(torch.zeros(1, 10, dtype=d), torch.tensor([3]))
    assert abs(bank["loss.initial-ce"].answer - float(first)) < 1e-6 and abs(float(first) - math.log(10)) < 1e-12


def test_mae_median_question_transfers_to_new_numbers_and_its_explanation_holds():
    import torch

    q = Q.load_bank()["loss.mae-median"]
    times = torch.tensor([float(v) for v in re.search(r"\\\{([\d, ]+)\\\}", q.prompt).group(1).split(",")], dtype=torch.float64)
    assert times.tolist() != [1.0, 2.0, 3.0, 4.0, 100.0], "the quiz must not reuse the chapter's own numbers"
    grid = torch.linspace(0, 100, 100001, dtype=torch.float64)  # step 0.001
    total = (grid[:, None] - times[None, :]).abs().sum(1)  # (G,) sum of absolute errors of each constant
    best = grid[total <= total.min() + 1e-9]
    assert abs(float(best.min()) - 15) < 1e-6 and abs(float(best.max()) - 18) < 1e-6  # a whole interval, not one point
    assert abs(float(total.min()) - 91) < 1e-9 and "91 minutes" in q.explanation
    assert f"{float(times.mean()):.1f}" in q.explanation  # the mean, which squared error picks
    assert "15 to 18" in q.choices[q.correct_indices[0]].text and len(q.correct_indices) == 1
    slopes = [int((times < c).sum() - (times > c).sum()) for c in (10.0, 13.0, 16.0, 19.0, 50.0, 100.0)]
    assert slopes == [-6, -4, 0, 2, 4, 6]  # the derivative the explanation lists


def test_chapter_1_explanations_hold_in_float32():
    import torch

    from losslab import losses as L

    f32 = torch.float32
    assert torch.isinf(torch.exp(torch.tensor(89.0, dtype=f32))) and torch.isfinite(torch.exp(torch.tensor(88.0, dtype=f32)))
    z = torch.tensor([1000.0, 0.0], dtype=f32)
    assert torch.isnan((torch.exp(z) / torch.exp(z).sum())[0])
    assert torch.isfinite(torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()).all()
    s = torch.sigmoid(torch.tensor(-200.0, dtype=f32))
    assert float(s) == 0.0 and torch.isinf(torch.log(s))
    assert float(L.binary_cross_entropy_with_logits(torch.tensor([-200.0]), torch.ones(1))) == 200.0
    p = torch.softmax(torch.tensor([0.9, 0.1], dtype=torch.float64), 0)  # "softmax of (0.9, 0.1) is about (0.69, 0.31)"
    assert [round(v, 2) for v in p.tolist()] == [0.69, 0.31]
    k = 10
    twice = torch.softmax(torch.eye(k, dtype=torch.float64)[0], 0)  # a certain prediction, softmaxed again
    assert abs(float(twice.max()) - torch.e / (torch.e + k - 1)) < 1e-15
    # double-average: 2 + 98 tokens, a mean of the two sequence means weighs each short-sequence token 1/4, each long one 1/196
    assert abs((1 / (2 * 2)) / (1 / (2 * 98)) - 49) < 1e-12 and "49 times" in Q.load_bank()["loss.double-average"].explanation


def test_choices_made_of_math_have_an_accessible_name():
    """A radio whose label is only a formula gets a plain-words name (axe 'label'); others keep their label."""
    bank = Q.parse_bank('''
[[question]]
id = "t.mathy"
kind = "single"
prompt = "Which step?"
explanation = "Because."
choices = [
  { text = '\\(10\\,\\eta g\\)', correct = true },
  { text = "no math here" },
]
''', "t")
    html = Q.render_html([bank["t.mathy"]], shuffle=False)
    assert 'aria-label="10 eta g"' in html
    plain = html[html.index("no math here") - 200:html.index("no math here")]
    assert "aria-label" not in plain.split("<label")[-1]
