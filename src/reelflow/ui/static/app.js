// reelflow UI: the few live parts (polling), lazy artifact previews, log paging and filtering.
(function () {
  'use strict';
  function getJSON(url) {
    return fetch(url, {headers: {'Accept': 'application/json'}, credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) { throw new Error(url + ': HTTP ' + r.status); }
      return r.json();
    });
  }

  // Runs list: refresh the status badge of running runs.
  function pollRuns() {
    var badges = document.querySelectorAll('.badge[data-status="running"][data-run-id]');
    if (!badges.length) { return; }
    var ids = Array.prototype.map.call(badges, function (b) { return b.getAttribute('data-run-id'); });
    getJSON('/api/runs/status?ids=' + ids.join(',')).then(function (st) {
      badges.forEach(function (b) {
        var s = st[b.getAttribute('data-run-id')];
        if (s && s !== 'running') {
          b.textContent = s;
          b.setAttribute('data-status', s);
          b.className = 'badge status-' + s;
        }
      });
    }).catch(function () {}).then(function () { setTimeout(pollRuns, 2000); });
  }

  // Run page: reload when the run's state changes (a task ended, a card was refreshed, the run finished).
  function pollRun(el) {
    var url = el.getAttribute('data-state-url');
    var last = null;
    function tick() {
      getJSON(url).then(function (st) {
        var sig = JSON.stringify(st);
        if (last !== null && sig !== last) { window.location.reload(); return; }
        last = sig;
        if (st.status === 'running') { setTimeout(tick, 1500); }
      }).catch(function () { setTimeout(tick, 3000); });
    }
    tick();
  }

  // Task page: reload card frames when a card is refreshed; reload the page when the task ends.
  function pollCards(sec) {
    var url = sec.getAttribute('data-cards-url');
    function tick() {
      getJSON(url).then(function (cards) {
        var allFinal = cards.length > 0;
        cards.forEach(function (c) {
          if (!c.final) { allFinal = false; }
          var frame = sec.querySelector('iframe[data-card="' + CSS.escape(c.id) + '"]');
          if (frame && frame.getAttribute('data-key') !== c.key) {
            frame.setAttribute('data-key', c.key);
            frame.src = frame.src.replace(/([?&]v=)[^&]*/, '$1' + encodeURIComponent(c.key));
          }
        });
        if (allFinal && document.getElementById('task-status').textContent.trim() === 'running') {
          setTimeout(function () { window.location.reload(); }, 1000);
          return;
        }
        if (!allFinal) { setTimeout(tick, 1000); }
      }).catch(function () { setTimeout(tick, 3000); });
    }
    tick();
  }

  // A running task's output: refresh the published tails; reload the page once the task ended.
  function pollLive(sec) {
    var url = sec.getAttribute('data-live-url');
    function tick() {
      getJSON(url).then(function (st) {
        if (st.finished) { window.location.reload(); return; }
        Object.keys(st.streams).forEach(function (name) {
          var pre = document.getElementById('log-' + name);
          if (pre && pre.textContent !== st.streams[name].text) { pre.textContent = st.streams[name].text; }
          var size = document.getElementById('live-size-' + name);
          if (size) { size.textContent = st.streams[name].size + ' bytes so far; the last 64 KiB:'; }
        });
        setTimeout(tick, 1500);
      }).catch(function () { setTimeout(tick, 3000); });
    }
    tick();
  }

  // Artifact previews load one artifact, when opened.
  function previews() {
    document.querySelectorAll('details.preview').forEach(function (d) {
      d.addEventListener('toggle', function () {
        if (!d.open || d.getAttribute('data-loaded')) { return; }
        d.setAttribute('data-loaded', '1');
        var body = d.querySelector('.preview-body');
        fetch(d.getAttribute('data-src'), {credentials: 'same-origin'}).then(function (r) {
          return r.text().then(function (t) { return {ok: r.ok, text: t}; });
        }).then(function (res) {
          if (res.ok) {
            body.classList.remove('muted');
            body.innerHTML = res.text;  // server-rendered, every value escaped
          } else {
            body.textContent = 'preview failed';
          }
        }).catch(function (e) { body.textContent = 'preview failed: ' + e; });
      });
    });
  }

  // Logs: load the next window; filter the lines shown.
  function logs() {
    document.querySelectorAll('button.log-more').forEach(function (btn) {
      btn.addEventListener('click', function () {
        var pre = document.getElementById(btn.getAttribute('data-target'));
        var url = pre.getAttribute('data-url') + '&offset=' + pre.getAttribute('data-next');
        getJSON(url).then(function (w) {
          pre.appendChild(document.createTextNode(w.text));
          pre.setAttribute('data-next', w.next);
          pre.removeAttribute('data-filter-source');
          if (!w.more) { btn.remove(); }
        });
      });
    });
    var filter = document.getElementById('log-filter');
    if (!filter) { return; }
    filter.addEventListener('input', function () {
      var q = filter.value.toLowerCase();
      document.querySelectorAll('pre.log[id^="log-"]').forEach(function (pre) {
        if (!pre.hasAttribute('data-filter-source')) { pre.setAttribute('data-filter-source', pre.textContent); }
        var src = pre.getAttribute('data-filter-source');
        pre.textContent = q ? src.split('\n').filter(function (l) { return l.toLowerCase().indexOf(q) >= 0; }).join('\n') : src;
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    pollRuns();
    var run = document.getElementById('run-live');
    if (run && run.getAttribute('data-live') === '1') { pollRun(run); }
    var cards = document.getElementById('cards');
    if (cards && cards.getAttribute('data-live') === '1') { pollCards(cards); }
    var live = document.getElementById('live-logs');
    if (live) { pollLive(live); }
    previews();
    logs();
  });
})();
