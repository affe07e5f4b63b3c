// A region that scrolls sideways must be reachable by keyboard (WCAG 2.1.1; axe:
// scrollable-region-focusable): a display formula wider than the column, a code cell or an
// output wider than the page, a wide table. Such an element gets tabindex=0 (a formula also a
// name, as a region); the others stay out of the Tab order (formulas are typeset by the build,
// without MathJax's menu).
//
// Measuring an element forces the browser to lay out the page around it. The theme
// (pydata-sphinx-theme) measured every candidate as the page loaded, and again after any change
// in the article (an explorer redrawing): on a chapter of 15,000-30,000 elements, a long task on
// a phone each time. The build removes the theme's version (losslab.sphinxext) and this script
// does the work in three steps, none of which lays out the page:
// 1. When the page has loaded, an estimate from the text alone: a code block scrolls if its
//    longest line, in characters of the code font, is wider than a code cell's room in the
//    column less the insets of the boxes around it; a display formula if its width (data-w, in
//    its own em, written by the build's MathJax) is; a table if the longest words of its columns
//    are. The estimate errs towards "scrolls", so what scrolls is not out of reach (at worst a
//    block that fits is one more Tab stop, until it is measured).
// 2. An element is measured exactly when it comes within two screens of the view, a few at a
//    time when the browser is idle.
// 3. Once the reader first presses Tab, every element is measured, when idle.
// After a resize, the same again. <html data-scrollables="done"> says step 3 has finished.
(function () {
  var SELECTOR = ['mjx-container[display="true"]', 'pre', '.nboutput > .output_area', '.cell_output > .output',
                  '.jp-RenderedHTMLCommon', '.pst-scrollable-table-container'].join(', ');
  var SLACK = 8;        // px: an estimate this close to the room there is counts as scrolling
  var NESTED = 40;      // px of the column lost to each box around an element (padding, border, indent)
  var BOXES = '.admonition, details, .llq, .lle, blockquote, li, dd, .sd-card, .cell_output, table';
  var CELL = 20;        // px of padding and border per table cell
  var WIDE_TEXT = 1.3;  // a word of prose as wide as this many average digits (capitals and m, w are wider)
  var LABEL = 'Wide formula (scroll sideways)';
  var queue = [], queued = new Set(), running = false, swept = false, elements = [], io = null;
  var idle = window.requestIdleCallback || function (fn) {
    return setTimeout(function () { fn({ timeRemaining: function () { return 8; } }); }, 1);
  };

  function mark(el, wide, how) {
    var formula = el.tagName === 'MJX-CONTAINER';
    if (wide) {
      el.setAttribute('tabindex', '0');
      el.dataset.scrolls = how;
      if (formula && !el.hasAttribute('aria-label') && !el.hasAttribute('aria-labelledby')) {
        el.setAttribute('role', 'region');
        el.setAttribute('aria-label', LABEL);
      }
    } else if (el.dataset.scrolls) {
      el.removeAttribute('tabindex');
      delete el.dataset.scrolls;
      if (formula && el.getAttribute('aria-label') === LABEL) {
        el.removeAttribute('role');
        el.removeAttribute('aria-label');
      }
    }
  }
  function measure(el) {
    var formula = el.tagName === 'MJX-CONTAINER';
    mark(el, el.scrollWidth > el.clientWidth + 1 || (!formula && el.scrollHeight > el.clientHeight + 1), 'measured');
  }

  // Step 1. The widths a code cell's text and a display formula have in the column, and the
  // pixels per character of code and per em of a formula, from a probe laid out in the article
  // (outside its sections, which the browser may not have laid out), hidden and of no height.
  function probe(article) {
    var box = document.createElement('div');
    box.setAttribute('aria-hidden', 'true');
    // contained, so that its long lines add nothing to the article's own width (its min-content size)
    box.style.cssText = 'visibility:hidden;height:0;overflow:hidden;contain:strict';
    box.innerHTML = '<div class="cell docutils container"><div class="cell_input docutils container">'
      + '<div class="highlight-ipython3 notranslate"><div class="highlight"><pre><span>'
      + new Array(101).join('0') + '</span></pre></div></div></div></div>'
      + '<div class="math"><mjx-container class="MathJax" jax="CHTML" display="true">'
      + '<span style="display:inline-block;width:10em"></span></mjx-container></div>'
      + '<p><span>' + new Array(101).join('0') + '</span></p>';
    article.appendChild(box);
    var pre = box.querySelector('pre'), css = getComputedStyle(pre);
    var out = {
      codeWidth: pre.clientWidth - parseFloat(css.paddingLeft) - parseFloat(css.paddingRight),
      codeChar: pre.querySelector('span').getBoundingClientRect().width / 100,
      mathWidth: box.querySelector('.math').clientWidth,
      mathEm: box.querySelector('mjx-container span').getBoundingClientRect().width / 10,
      textChar: box.querySelector('p span').getBoundingClientRect().width / 100,
    };
    article.removeChild(box);
    return out;
  }
  function longestLine(text) {
    var longest = 0;
    text.split('\n').forEach(function (line) {
      var n = 0;
      for (var i = 0; i < line.length; i++) n += line.charCodeAt(i) >= 0x2E80 ? 2 : 1;  // wide scripts: two columns
      if (n > longest) longest = n;
    });
    return longest;
  }
  // A table is at least as wide as the sum, over its columns, of each column's longest word
  // (a cell wraps between words), plus the cells' padding.
  function tableWidth(container, char) {
    var widest = [];
    container.querySelectorAll('tr').forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (cell, k) {
        var word = 0;
        cell.textContent.split(/\s+/).forEach(function (w) { if (w.length > word) word = w.length; });
        widest[k] = Math.max(widest[k] || 0, word);
      });
    });
    return widest.reduce(function (sum, n) { return sum + n * char + CELL; }, 0);
  }
  function estimate() {
    var article = document.querySelector('.bd-article') || document.body;
    var u = probe(article);
    elements.forEach(function (el) {
      var need, room;
      if (el.tagName === 'PRE') {
        need = longestLine(el.textContent) * u.codeChar;
        room = u.codeWidth;
      } else if (el.tagName === 'MJX-CONTAINER' && el.dataset.w) {
        need = parseFloat(el.dataset.w) * u.mathEm;
        room = u.mathWidth;
      } else if (el.classList.contains('pst-scrollable-table-container')) {
        need = tableWidth(el, u.textChar * WIDE_TEXT);
        room = u.mathWidth;
      } else {
        return;  // outputs: measured in steps 2 and 3
      }
      var boxes = 0;
      for (var a = el.parentElement; a && a !== article; a = a.parentElement) if (a.matches(BOXES)) boxes++;
      if (el.dataset.scrolls !== 'measured') mark(el, need > room - SLACK - NESTED * boxes, 'estimated');
    });
  }

  // Steps 2 and 3: exact measures, a few at a time when idle.
  function work(deadline) {
    while (queue.length && deadline.timeRemaining() > 1) {
      var el = queue.shift();
      queued.delete(el);
      measure(el);
    }
    if (queue.length) { idle(work); return; }
    running = false;
    if (swept) document.documentElement.dataset.scrollables = 'done';
  }
  function enqueue(el) {
    if (!queued.has(el)) { queued.add(el); queue.push(el); }
    if (!running) { running = true; delete document.documentElement.dataset.scrollables; idle(work); }
  }
  function watch() {
    if (io) io.disconnect();
    if (swept || !('IntersectionObserver' in window)) { elements.forEach(enqueue); return; }
    io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { io.unobserve(e.target); enqueue(e.target); } });
    }, { rootMargin: '200% 0px' });
    elements.forEach(function (el) { io.observe(el); });
  }
  function sweep() {
    if (swept) return;
    swept = true;
    watch();
    if (!running) document.documentElement.dataset.scrollables = 'done';
  }
  function resized() {
    elements.forEach(function (el) { if (el.dataset.scrolls === 'measured') el.dataset.scrolls = 'stale'; });
    estimate();
    watch();
  }
  function start() {
    elements = Array.prototype.slice.call(document.querySelectorAll(SELECTOR));
    estimate();
    watch();
  }
  function begin() {
    if (document.fonts && document.fonts.ready) document.fonts.ready.then(start); else start();
  }
  document.addEventListener('keydown', function (e) { if (e.key === 'Tab') sweep(); });
  if (document.readyState === 'complete') begin(); else window.addEventListener('load', begin);
  window.addEventListener('resize', function () { clearTimeout(resized.t); resized.t = setTimeout(resized, 200); });
  window.losslabScrollables = { sweep: sweep };
})();
