// A chapter is 15,000-30,000 elements, most of them typeset math and highlighted code. book.css
// lets the browser skip the sections (and the blocks in them: code cells, display formulas,
// quizzes, dropdowns, paragraphs, lists) the reader is not near (content-visibility: auto), so a
// chapter opens fast on a phone. But a skipped section counts as a guessed height, is not
// painted, and changes height when it is first laid out; with guesses above it, a jump to a
// section far down would land off target. So this script:
// - from the reader's first scroll, touch, click or key on, lays out the sections for good, one
//   at a time when the browser is idle, from the top (each slice costs one section's layout, not
//   the page's): after a few seconds the page is laid out as if nothing had been skipped, and
//   links, find-in-page and focus land where they should;
// - when the page opens at an anchor, or the reader follows one, scrolls to its target again
//   until it stays put, in case the sections around it were not yet laid out.
// - lays out at once the sections around a focused element and an anchor's target.
// <html data-sections="done"> says every section and block has been laid out.
(function () {
  // what book.css makes content-visibility: auto: sections, and the heavy blocks inside them
  var SKIPPED = ['section section', 'div.cell', 'div.math', '.llq', 'details', 'section > p', 'section > ul',
                 'section > ol'].map(function (s) {
    return '.bd-article ' + s;
  }).join(', ');
  var SHOWN = 'lls-shown';                      // book.css: content-visibility: visible
  var queue = null;
  var idle = window.requestIdleCallback || function (fn) { return setTimeout(fn, 1); };
  function frame(fn) { requestAnimationFrame(function () { requestAnimationFrame(fn); }); }

  // In document order, so that a block's section is laid out before it; a few blocks per idle slice.
  function layOut(deadline) {
    do {
      var block = queue.shift();
      if (!block) { document.documentElement.dataset.sections = 'done'; return; }
      block.classList.add(SHOWN);
      void block.offsetHeight;  // its layout happens here, in this idle slice
    } while (deadline && deadline.timeRemaining && deadline.timeRemaining() > 4);
    idle(layOut);
  }
  function start() {
    if (queue) return;
    queue = Array.prototype.slice.call(document.querySelectorAll(SKIPPED));
    idle(layOut);
  }

  // The sections and blocks around an element, laid out for good now: the target of an anchor,
  // a focused control (book.css clips a section until it is laid out for good, which would cut
  // the focus ring of a control at its edge).
  function showAround(el) {
    for (; el && el !== document.documentElement; el = el.parentElement) {
      if (el.matches(SKIPPED)) el.classList.add(SHOWN);
    }
  }
  document.addEventListener('focusin', function (e) { showAround(e.target); });

  // Scroll to the target of an anchor until it stays where it is.
  function settle(id, tries) {
    var target = id && document.getElementById(decodeURIComponent(id));
    if (!target) return;
    showAround(target);
    target.scrollIntoView();
    var top = target.getBoundingClientRect().top;
    frame(function () {
      if (Math.abs(target.getBoundingClientRect().top - top) > 1 && tries < 20) settle(id, tries + 1);
    });
  }
  function followHash() { if (location.hash.length > 1) settle(location.hash.slice(1), 0); }
  window.addEventListener('hashchange', followHash);
  document.addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('a[href^="#"]');
    // a link to the anchor already in the address fires no hashchange
    if (a && a.getAttribute('href') === location.hash) setTimeout(followHash, 0);
  });

  // The layout work waits for the reader's first scroll, touch, click or key: a page that is only
  // opened keeps its first seconds free.
  var READER = ['scroll', 'wheel', 'touchstart', 'pointerdown', 'keydown'];
  function firstMove() {
    READER.forEach(function (t) { window.removeEventListener(t, firstMove, true); });
    start();
  }
  function begin() {
    followHash();
    READER.forEach(function (t) { window.addEventListener(t, firstMove, { capture: true, passive: true }); });
  }
  if (document.readyState === 'complete') begin(); else window.addEventListener('load', begin);
})();
