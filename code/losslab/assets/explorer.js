// Static explorer: every frame was rendered at build time; the controls only
// pick which one to show. The settings live in the page address as
// ?<explorer>.<control>=<value> (for example ?demo.sigmoid-neuron.w=2), read
// when the page opens and rewritten as controls move, so a link reproduces a
// view. Query parameters, not the #fragment, so section links keep working.
// Defined once per page, mounted once per explorer.
window.losslabExplorer = window.losslabExplorer || (function () {
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
  function mount(id) {
    var root = document.getElementById(id);
    if (!root || root.dataset.mounted) return;
    root.dataset.mounted = '1';
    var name = root.dataset.name;
    var data = JSON.parse(root.querySelector('script.lle-data').textContent);
    var img = root.querySelector('img.lle-frame');
    var inputs = Array.prototype.slice.call(root.querySelectorAll('[data-j]'));
    function show() {
      var idx = [];
      inputs.forEach(function (el) { idx[parseInt(el.dataset.j, 10)] = getIndex(el); });
      var key = idx.join(',');
      if (data.frames[key]) {
        img.src = 'data:image/png;base64,' + data.frames[key];
        img.alt = data.alts[key];
      }
      inputs.forEach(function (el) {
        var out = el.type === 'range' && el.parentNode.querySelector('output');
        if (out) out.textContent = labelsOf(el)[getIndex(el)];
      });
    }
    function writeAddress() {
      if (!window.history || !history.replaceState) return;
      var params = new URLSearchParams(window.location.search);
      inputs.forEach(function (el) {
        params.set(name + '.' + el.dataset.name, labelsOf(el)[getIndex(el)]);
      });
      var url = window.location.pathname + '?' + params.toString() + window.location.hash;
      try { history.replaceState(history.state, '', url); } catch (e) { /* file:// pages may refuse */ }
    }
    var params = new URLSearchParams(window.location.search);
    inputs.forEach(function (el) {
      var wanted = params.get(name + '.' + el.dataset.name);
      if (wanted !== null) {
        var i = find(labelsOf(el), wanted);
        if (i >= 0) setIndex(el, i);
      }
    });
    show();
    inputs.forEach(function (el) {
      el.addEventListener('input', show);
      el.addEventListener('change', function () { show(); writeAddress(); });
    });
  }
  return { mount: mount };
})();
