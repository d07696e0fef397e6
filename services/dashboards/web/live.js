// Live updates: the page stays readable without this script; with it, each
// change of the read models re-reads the page and swaps its live sections,
// and running jobs' logs stream in. It is served as /static/live.js: the
// Content-Security-Policy allows no inline script.
(function () {
  if (!window.EventSource || !window.fetch) return;
  var busy = false, again = false, state = document.getElementById('live-state');
  function startLogs(root) {
    root.querySelectorAll('pre[data-log]').forEach(function (pre) {
      if (pre.dataset.started) return;
      pre.dataset.started = '1';
      var es = new EventSource(pre.dataset.log);
      es.addEventListener('line', function (e) {
        var l = JSON.parse(e.data);
        pre.appendChild(document.createTextNode(l.text + '\n'));
        pre.scrollTop = pre.scrollHeight;
      });
      es.addEventListener('end', function () { es.close(); });
    });
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, {headers: {'Accept': 'text/html'}}).then(function (r) {
      // The login ended (expired, token revoked): go to the login page.
      if (r.redirected && new URL(r.url).pathname === '/login') { location.assign(r.url); throw new Error('login'); }
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      doc.querySelectorAll('[data-live]').forEach(function (n) {
        var old = document.getElementById(n.id);
        if (!old) return;
        n.querySelectorAll('pre[data-log]').forEach(function (p) {
          var running = document.getElementById(p.id);
          if (running && running.dataset.started) p.replaceWith(running);
        });
        // Steps the reader opened or closed stay so.
        old.querySelectorAll('details[id]').forEach(function (d) {
          var nd = n.querySelector('details[id="' + d.id + '"]');
          if (nd) nd.open = d.open;
        });
        old.replaceWith(document.importNode(n, true));
      });
      startLogs(document);
    }).catch(function () {}).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  var es = new EventSource('/events');
  es.onopen = function () { state.textContent = '● live'; };
  es.onerror = function () { state.textContent = '○ reconnecting'; };
  es.addEventListener('update', refresh);
  startLogs(document);
})();
