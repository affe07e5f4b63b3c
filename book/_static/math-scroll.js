// Formulas are kept out of the Tab order (the build typesets them with MathJax, without its menu),
// but a display formula wider than the column scrolls sideways, and a region that
// scrolls must be reachable by keyboard (WCAG 2.1.1; axe: scrollable-region-focusable).
// Once the page has loaded (its fonts too), and again when the window is resized, the formulas
// that scroll get tabindex=0 and a name; the others stay out of the way. The formulas are measured
// a few at a time when the browser is idle, so a long chapter's hundreds of formulas never hold
// up the page (a phone would otherwise spend a long task on them as the page opens).
(function () {
  var queue = [], running = false;
  function check(el) {
    if (el.scrollWidth > el.clientWidth + 1) {
      el.setAttribute('tabindex', '0');
      if (!el.hasAttribute('aria-label') && !el.hasAttribute('aria-labelledby')) {
        el.setAttribute('role', 'region');
        el.setAttribute('aria-label', 'Wide formula (scroll sideways)');
      }
    } else if (el.getAttribute('role') === 'region') {
      el.removeAttribute('tabindex');
      el.removeAttribute('role');
      el.removeAttribute('aria-label');
    }
  }
  var idle = window.requestIdleCallback || function (fn) {
    return setTimeout(function () { fn({timeRemaining: function () { return 8; }}); }, 1);
  };
  function work(deadline) {
    while (queue.length && deadline.timeRemaining() > 1) check(queue.shift());
    if (queue.length) idle(work); else { running = false; document.documentElement.dataset.mathScroll = 'done'; }
  }
  function mark() {
    queue = Array.prototype.slice.call(document.querySelectorAll('mjx-container[display="true"]'));
    delete document.documentElement.dataset.mathScroll;
    if (!running) { running = true; idle(work); }
  }
  function start() {
    if (document.fonts && document.fonts.ready) document.fonts.ready.then(mark); else mark();
  }
  if (document.readyState === 'complete') start(); else window.addEventListener('load', start);
  window.addEventListener('resize', function () { clearTimeout(mark.t); mark.t = setTimeout(mark, 200); });
})();
