// Formulas are kept out of the Tab order (MathJax is loaded without its menu, and its setting inTabOrder is false),
// but a display formula wider than the column scrolls sideways, and a region that
// scrolls must be reachable by keyboard (WCAG 2.1.1; axe: scrollable-region-focusable).
// Once MathJax has typeset the page, and again when the window is resized, the
// formulas that scroll get tabindex=0 and a name; the others stay out of the way.
(function () {
  function mark() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (el) {
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
    });
  }
  function whenTypeset() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(mark);
    } else {
      setTimeout(whenTypeset, 200);
    }
  }
  window.addEventListener('load', whenTypeset);
  window.addEventListener('resize', function () { clearTimeout(mark.t); mark.t = setTimeout(mark, 200); });
})();
