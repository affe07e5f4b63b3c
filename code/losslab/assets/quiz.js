// Quiz feedback without a kernel: every message is already in the markup
// (so MathJax typesets it with the page); this script only shows and hides.
// Choices come in the order the page was built with (seeded, shuffled by the
// package); nothing is graded until Check, so moving through the choices
// with the arrow keys reveals nothing. Each verdict is also written, as a
// short sentence, into the question's live region for screen readers.
// Defined once per page, mounted once per quiz block.
window.losslabQuiz = window.losslabQuiz || (function () {
  function show(q, cls, on) {
    q.querySelectorAll(':scope > .' + cls).forEach(function (el) { el.hidden = !on; });
  }
  function announce(q, text) {
    var live = q.querySelector(':scope > .llq-live');
    if (live) live.textContent = text;
  }
  function reset(q) {
    ['llq-right', 'llq-wrong', 'llq-invalid', 'llq-answer'].forEach(function (c) { show(q, c, false); });
    q.querySelectorAll('.llq-why').forEach(function (el) { el.hidden = true; });
    q.querySelectorAll('.llq-choice').forEach(function (el) { el.classList.remove('llq-ok', 'llq-bad'); });
    q.classList.remove('llq-correct', 'llq-incorrect');
  }
  function verdict(q, ok, direction) {
    q.classList.add(ok ? 'llq-correct' : 'llq-incorrect');
    show(q, ok ? 'llq-right' : 'llq-wrong', true);
    var dir = q.querySelector(':scope > .llq-wrong .llq-dir');
    if (dir) dir.textContent = direction || '';
    announce(q, ok ? 'Correct.' : ('Not quite. ' + (direction || '')).trim());
  }
  function checkChoices(q) {
    reset(q);
    var labels = Array.prototype.slice.call(q.querySelectorAll('.llq-choice'));
    var picked = labels.filter(function (l) { return l.querySelector('input').checked; });
    if (picked.length === 0) { announce(q, 'Choose an answer first.'); return; }
    var ok = labels.every(function (l) {
      return (l.dataset.correct === '1') === l.querySelector('input').checked;
    });
    picked.forEach(function (l) {
      var good = l.dataset.correct === '1';
      l.classList.add(good ? 'llq-ok' : 'llq-bad');
      if (!good) { var why = l.querySelector('.llq-why'); if (why) why.hidden = false; }
    });
    var missed = labels.filter(function (l) {
      return l.dataset.correct === '1' && !l.querySelector('input').checked;
    }).length;
    verdict(q, ok, !ok && missed && q.dataset.kind === 'multiple'
      ? missed + ' correct choice(s) not selected.' : '');
  }
  function checkNumber(q) {
    reset(q);
    var input = q.querySelector('.llq-input');
    var text = input.value.trim().replace(/\u2212/g, '-');
    var x = Number(text);
    if (text === '' || !isFinite(x)) { show(q, 'llq-invalid', true); announce(q, 'Please enter a number.'); return; }
    var a = Number(input.dataset.answer), tol = Number(input.dataset.tol) + Number(input.dataset.rtol) * Math.abs(a);
    var ok = Math.abs(x - a) <= tol;
    verdict(q, ok, ok ? '' : (x > a ? 'Your answer is too high.' : 'Your answer is too low.'));
  }
  function reveal(q) {
    reset(q);
    q.querySelectorAll('.llq-choice').forEach(function (l) {
      if (l.dataset.correct === '1') l.classList.add('llq-ok');
    });
    show(q, 'llq-answer', true);
    announce(q, 'The answer is shown below the question.');
  }
  function mount(blockId) {
    var block = document.getElementById(blockId);
    if (!block || block.dataset.mounted) return;
    block.dataset.mounted = '1';
    block.querySelectorAll('.llq-q').forEach(function (q) {
      var kind = q.dataset.kind;
      var btn = q.querySelector('.llq-check');
      if (btn) btn.addEventListener('click', function () {
        if (kind === 'numeric') checkNumber(q); else checkChoices(q);
      });
      var input = q.querySelector('.llq-input');
      if (input) input.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter') { ev.preventDefault(); checkNumber(q); }
      });
      q.querySelector('.llq-show').addEventListener('click', function () { reveal(q); });
    });
  }
  return { mount: mount };
})();
