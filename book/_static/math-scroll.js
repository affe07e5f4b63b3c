// Formulas are kept out of the Tab order (the build typesets them with MathJax, without its menu),
// but a display formula wider than the column scrolls sideways, and a region that
// scrolls must be reachable by keyboard (WCAG 2.1.1; axe: scrollable-region-focusable).
// Once the page is laid out (and its fonts loaded), and again when the window is resized, the
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
  function later() { clearTimeout(mark.t); mark.t = setTimeout(mark, 200); }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mark); else mark();
  if (document.fonts && document.fonts.ready) document.fonts.ready.then(later);
  window.addEventListener('load', later);
  window.addEventListener('resize', later);
})();
