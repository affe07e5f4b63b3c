// Static explorer: the build computed the figure *data* at every combination of
// the controls' positions; the controls pick a frame and plotly.js (vendored in
// the book's _static: plotly.js's cartesian partial bundle, loaded once, when the first explorer scrolls into view)
// draws it, with hover values. Traces shared by several frames are stored once.
// On a narrow screen the panels of a multi-panel figure stack vertically, and
// titles (the figure's and each panel's) wrap at spaces to the width they have,
// at their own font size: Plotly does not wrap text, and clips a long title.
// The settings live in the page address as ?<explorer>.<control>=<value> (for
// example ?demo.sigmoid-neuron.w=2), read when the page opens and rewritten as
// controls move, so a link reproduces a view. Query parameters, not the
// #fragment, so section links keep working. Defined once per page, mounted once
// per explorer.
// The figure data is read only when the explorer comes near the screen (or a control
// moves): from the page itself (a notebook's output), or, in the built book, from a
// script file of its own (data-src on the lle-data tag) that hands it to deliver(), so
// a chapter opens without parsing megabytes of frames it may never show. Script
// files rather than fetch(), so the book works opened from disk (file://) too.
window.losslabExplorer = window.losslabExplorer || (function () {
  var MIN_PANEL = 300;    // CSS px: narrower panels stack
  var STACK_PANEL = 300;  // CSS px: height of one stacked panel
  var NEAR = '600px 0px'; // load an explorer's data and plotly.js this far before it scrolls into view
  var pending = [], loading = false;
  var delivered = {}, waiting = {};

  // A data file calls deliver(id, data) when it has loaded.
  function deliver(id, data) {
    delivered[id] = data;
    var fns = waiting[id] || [];
    delete waiting[id];
    fns.forEach(function (f) { f(data); });
  }
  // Call fn(data) with this explorer's figure data, loading it first if needed.
  function withData(root, fn) {
    if (root.lleData) { fn(root.lleData); return; }
    var tag = root.querySelector('script.lle-data');
    var src = tag.getAttribute('data-src');
    function keep(d) { root.lleData = d; fn(d); }
    if (!src) { keep(JSON.parse(tag.textContent)); return; }
    var id = tag.getAttribute('data-id');
    if (delivered[id]) { keep(delivered[id]); return; }
    if (waiting[id]) { waiting[id].push(keep); return; }
    waiting[id] = [keep];
    var file = document.createElement('script');
    file.src = src;
    file.async = true;
    file.onerror = function () {
      var note = root.querySelector('.lle-note');
      if (note) note.textContent = 'The figure data (' + src + ') could not be loaded.';
    };
    document.head.appendChild(file);
  }

  function plotlyUrl() {
    var root = document.documentElement.getAttribute('data-content_root');
    if (root === null) {
      var s = document.querySelector('script[src*="_static/"]');
      root = s ? s.getAttribute('src').split('_static/')[0] : '';
    }
    return root + '_static/plotly-cartesian.min.js';
  }
  function withPlotly(fn) {
    if (window.Plotly) { fn(); return; }
    pending.push(fn);
    if (loading) return;
    loading = true;
    var tag = document.createElement('script');
    tag.src = plotlyUrl();
    tag.async = true;
    tag.onload = function () { var q = pending; pending = []; q.forEach(function (f) { f(); }); };
    document.head.appendChild(tag);
  }
  function labelsOf(el) { return JSON.parse(el.dataset.labels); }
  function getIndex(el) {
    if (el.type === 'checkbox') return el.checked ? 1 : 0;
    return parseInt(el.value, 10);
  }
  function setIndex(el, i) {
    if (el.type === 'checkbox') el.checked = (i === 1); else el.value = String(i);
  }
  // The index of `text` among `labels`: an exact match, else the nearest number.
  function find(labels, text) {
    var i = labels.indexOf(text);
    if (i >= 0) return i;
    var x = parseFloat(text);
    if (!isFinite(x)) return -1;
    var best = -1, gap = Infinity;
    labels.forEach(function (l, k) {
      var d = Math.abs(parseFloat(l) - x);
      if (isFinite(d) && d < gap) { gap = d; best = k; }
    });
    return best;
  }
  function columns(panels) {
    var xs = [];
    panels.forEach(function (p) {
      if (!xs.some(function (x) { return Math.abs(x - p.domain[0][0]) < 0.02; })) xs.push(p.domain[0][0]);
    });
    return Math.max(1, xs.length);
  }
  // Width of an average character of the sans-serif figure text, in units of its font size
  // (system-ui, digits and lower case; a little generous, so that a wrapped line always fits).
  var CHAR_EM = 0.58;
  var TITLE_LINE = 18;    // CSS px per line of the figure title (13 px text)
  var PANEL_LINE = 17;    // CSS px per line of a panel title
  function visible(text) { return text.replace(/<[^>]*>/g, ''); }
  // `text` (lines split by <br>) with each line broken at spaces into lines of at most
  // maxPx / (fontPx * CHAR_EM) characters; a single word longer than that stays whole.
  function wrapText(text, maxPx, fontPx) {
    var limit = Math.max(8, Math.floor(maxPx / (fontPx * CHAR_EM)));
    return String(text).split('<br>').map(function (line) {
      var words = line.split(' '), lines = [], cur = '';
      words.forEach(function (w) {
        var next = cur ? cur + ' ' + w : w;
        if (cur && visible(next).length > limit) { lines.push(cur); cur = w; } else { cur = next; }
      });
      lines.push(cur);
      return lines.join('<br>');
    }).join('<br>');
  }
  function lineCount(text) { return String(text).split('<br>').length; }
  function legendRows(data, width) {
    var chars = 0;
    data.forEach(function (t) { if (t.showlegend && t.name) chars += t.name.length + 6; });
    return chars ? Math.ceil(chars * 7 / Math.max(width, 200)) : 0;
  }
  // The layout for a frame at the frame's current width: panels side by side as computed,
  // or stacked when a column would be narrower than MIN_PANEL.
  function layoutFor(data, base, panels, width) {
    var layout = JSON.parse(JSON.stringify(base));
    var rows = legendRows(data, width);
    var legendPx = rows ? 16 + 20 * rows : 0;
    // stack when a panel would be narrower than MIN_PANEL (side by side, or a lone column beside room for a legend)
    var stack = panels.length > 1 && (width / columns(panels) < MIN_PANEL ||
      panels.some(function (p) { return (p.domain[0][1] - p.domain[0][0]) * width < MIN_PANEL; }));
    var plotPx, extraTop = 0;
    var inner = Math.max(width - 16, 100);  // the margins take 8 px a side
    // Each panel title wraps to its panel's width (the whole width once stacked); extra lines need room above it.
    function wrapPanelTitle(p, px) {
      if (p.title < 0 || !layout.annotations[p.title]) return 0;
      var ann = layout.annotations[p.title];
      ann.text = wrapText(ann.text, px, (ann.font && ann.font.size) || 13);
      return lineCount(ann.text) - 1;
    }
    if (stack) {
      var order = panels.slice().sort(function (a, b) {
        return (b.domain[1][1] - a.domain[1][1]) || (a.domain[0][0] - b.domain[0][0]);
      });
      var n = order.length, gap = 70;  // px between stacked panels: tick labels, axis title, panel title
      var extra = order.map(function (p) { return wrapPanelTitle(p, inner) * PANEL_LINE; });
      extraTop = extra[0];
      plotPx = n * STACK_PANEL + (n - 1) * gap + extra.slice(1).reduce(function (a, b) { return a + b; }, 0);
      var y = 0;  // px from the top of the plot area to the top of the panel
      order.forEach(function (p, i) {
        if (i > 0) y += gap + extra[i];
        var top = 1 - y / plotPx, bottom = top - STACK_PANEL / plotPx;
        y += STACK_PANEL;
        var xa = 'xaxis' + p.x.slice(1), ya = 'yaxis' + p.y.slice(1);
        layout[xa].domain = [0, 1];
        layout[ya].domain = [Math.max(0, bottom), Math.min(1, top)];
        if (p.title >= 0) {
          var ann = layout.annotations[p.title];
          ann.x = 0.5; ann.y = Math.min(1, top);
        }
      });
    } else {
      plotPx = base.height;
      panels.forEach(function (p) {
        extraTop = Math.max(extraTop, wrapPanelTitle(p, (p.domain[0][1] - p.domain[0][0]) * inner) * PANEL_LINE);
      });
    }
    if (layout.title) {
      var titleFont = (layout.title.font && layout.title.font.size) || 13;
      layout.title.text = wrapText(layout.title.text, inner, titleFont);
      // Plotly raises a title of several lines anchored at its top by about 0.8 em: lower it as much
      if (lineCount(layout.title.text) > 1) layout.title.pad = { t: 4 + Math.round(0.8 * titleFont) };
    }
    var titlePx = layout.title ? 8 + TITLE_LINE * lineCount(layout.title.text) : 0;
    layout.height = Math.round(plotPx + legendPx + 24 + titlePx + extraTop);
    layout.margin = { l: 8, r: 8, t: 24 + titlePx + extraTop, b: legendPx + 8 };
    if (layout.legend) { layout.legend.yref = 'container'; layout.legend.yanchor = 'top'; layout.legend.y = (legendPx + 4) / layout.height; }
    layout.autosize = true;
    return layout;
  }
  function mount(id) {
    var root = document.getElementById(id);
    if (!root || root.dataset.mounted) return;
    root.dataset.mounted = '1';
    var name = root.dataset.name;
    var box = root.querySelector('.lle-frame');
    var data = null;  // the figure data, once loaded
    var inputs = Array.prototype.slice.call(root.querySelectorAll('[data-j]'));
    var visible = false, drawnKey = null, drawnWidth = 0;

    function setUp(d) {
      data = d;
      if (data.minWidth) {
        // A figure that cannot stack (one picture) keeps its width and scrolls sideways in its own
        // region on a narrow screen; the region takes focus, so the keyboard scrolls it too.
        var scroller = document.createElement('div');
        scroller.className = 'lle-scroll';
        scroller.tabIndex = 0;
        scroller.setAttribute('role', 'region');
        scroller.setAttribute('aria-label', 'figure; scrolls sideways on a narrow screen');
        box.parentNode.insertBefore(scroller, box);
        scroller.appendChild(box);
        box.style.minWidth = data.minWidth + 'px';
      }
      show();
    }
    var requested = false;  // the data asked for once, however often a control moves before it arrives
    function need() { if (!requested) { requested = true; withData(root, setUp); } }
    function key() {
      var idx = [];
      inputs.forEach(function (el) { idx[parseInt(el.dataset.j, 10)] = getIndex(el); });
      return idx.join(',');
    }
    function frame(k) {
      var f = data.frames[k];
      var traces = f[2].map(function (i) { return data.traces[i]; });
      return { data: traces, layout: data.layouts[f[0]], panels: data.panels[f[1]] };
    }
    function size() {
      // Fix the box's height before anything is drawn, so nothing below it moves.
      var f = frame(key());
      var lay = layoutFor(f.data, f.layout, f.panels, box.clientWidth || 600);
      box.style.height = lay.height + 'px';
      return { f: f, layout: lay };
    }
    function draw() {
      if (!data || !visible) return;
      var k = key();
      var s = size();
      var width = box.clientWidth;
      if (k === drawnKey && width === drawnWidth) return;
      withPlotly(function () {
        drawnKey = k; drawnWidth = width;
        window.Plotly.react(box, JSON.parse(JSON.stringify(s.f.data)), s.layout,
          { displayModeBar: false, responsive: true, scrollZoom: false });
        box.dataset.drawn = k;
        box.dataset.width = String(width);  // tests wait for a redraw at a new width
      });
    }
    function show() {
      inputs.forEach(function (el) {
        if (el.type !== 'range') return;
        var text = labelsOf(el)[getIndex(el)];
        var out = el.parentNode.querySelector('output');
        if (out) out.textContent = text;
        el.setAttribute('aria-valuetext', text);
      });
      var k = key();
      if (!data) { box.dataset.key = k; return; }  // the alt text follows when the data is here
      if (data.frames[k]) {
        box.dataset.key = k;
        box.setAttribute('aria-label', data.alts[k]);
      }
      draw();
    }
    function moved() { show(); need(); }
    function writeAddress() {
      if (!window.history || !history.replaceState) return;
      var params = new URLSearchParams(window.location.search);
      inputs.forEach(function (el) {
        if (el.type === 'hidden') return;
        params.set(name + '.' + el.dataset.name, labelsOf(el)[getIndex(el)]);
      });
      var url = window.location.pathname + '?' + params.toString() + window.location.hash;
      try { history.replaceState(history.state, '', url); } catch (e) { /* file:// pages may refuse */ }
    }
    var params = new URLSearchParams(window.location.search), fromAddress = false;
    inputs.forEach(function (el) {
      var wanted = params.get(name + '.' + el.dataset.name);
      if (wanted !== null && el.type !== 'hidden') {
        var i = find(labelsOf(el), wanted);
        if (i >= 0) { setIndex(el, i); fromAddress = true; }
      }
    });
    show();
    if (fromAddress) need();  // the view the address asks for: its alt text and height now
    inputs.forEach(function (el) {
      el.addEventListener('input', moved);
      el.addEventListener('change', function () { moved(); writeAddress(); });
    });
    // Redrawn when its width changes (a resize, a sidebar opening, the page settling), near the screen.
    if ('ResizeObserver' in window) new ResizeObserver(function () { draw(); }).observe(box);
    else window.addEventListener('resize', function () { draw(); });
    // Drawn (and redrawn after a resize) only while near the screen: an explorer far away keeps its
    // last drawing until the reader comes back to it.
    function near() { withPlotly(function () {}); need(); draw(); }
    if ('IntersectionObserver' in window) {
      new IntersectionObserver(function (entries) {
        visible = entries[entries.length - 1].isIntersecting;
        if (visible) near();
      }, { rootMargin: NEAR }).observe(box);
    } else { visible = true; near(); }
  }
  // A promise of an explorer's figure data (for tests and tools).
  function dataOf(root) { return new Promise(function (ok) { withData(root, ok); }); }
  return { mount: mount, deliver: deliver, dataOf: dataOf, layoutFor: layoutFor, wrapText: wrapText, CHAR_EM: CHAR_EM };
})();
