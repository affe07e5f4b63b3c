// Static explorer: every frame was rendered at build time; the controls only
// pick which one to show. Defined once per page, mounted once per explorer.
window.losslabExplorer = window.losslabExplorer || (function () {
  function mount(id) {
    var root = document.getElementById(id);
    if (!root || root.dataset.mounted) return;
    root.dataset.mounted = '1';
    var data = JSON.parse(root.querySelector('script.lle-data').textContent);
    var img = root.querySelector('img.lle-frame');
    var inputs = Array.prototype.slice.call(root.querySelectorAll('[data-j]'));
    function index(el) {
      if (el.type === 'checkbox') return el.checked ? 1 : 0;
      return parseInt(el.value, 10);
    }
    function update() {
      var idx = [];
      inputs.forEach(function (el) { idx[parseInt(el.dataset.j, 10)] = index(el); });
      var key = idx.join(',');
      if (data.frames[key]) {
        img.src = 'data:image/png;base64,' + data.frames[key];
        img.alt = data.alts[key];
      }
      inputs.forEach(function (el) {
        if (el.type === 'range') {
          var out = el.parentNode.querySelector('output');
          if (out) out.textContent = JSON.parse(el.dataset.labels)[index(el)];
        }
      });
    }
    inputs.forEach(function (el) {
      el.addEventListener('input', update);
      el.addEventListener('change', update);
    });
  }
  return { mount: mount };
})();
