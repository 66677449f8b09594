/**
 * The fleet dashboard's page: HTML for the sign-in form and the fleet view, and the stylesheet and
 * script they load. No framework and no external assets: the CSP is `default-src 'self'`, so there
 * is no inline script or style either. Everything the upstreams report (release names, digests)
 * reaches the DOM through `textContent`, never as markup.
 */

/** Escape text for HTML element content and double-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/dashboard/app.css">
</head>
<body>
${body}
</body>
</html>
`;
}

/**
 * The sign-in form. It posts the admin token in the request body (never the URL) with the
 * double-submit CSRF value that was also set as a cookie.
 * @param csrf the value of the CSRF cookie sent with this page.
 * @param error a message for a refused attempt, or null.
 */
export function signInPage(csrf: string, error: string | null): string {
  return layout(
    'Lockstep fleet: sign in',
    `<main class="signin">
<h1>Lockstep fleet</h1>
<form method="post" action="/dashboard/sign-in" autocomplete="off">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" required autofocus spellcheck="false">
<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">
<button type="submit" id="sign-in">Sign in</button>
${error === null ? '' : `<p class="error" role="alert" id="sign-in-error">${escapeHtml(error)}</p>`}
</form>
<p class="hint">The token is in <code>LOCKSTEP_ADMIN_TOKEN</code> or <code>.lockstep/admin-token</code>.</p>
</main>`,
  );
}

/** The fleet view; its script fills the table from `/dashboard/events`. */
export function fleetPage(): string {
  return layout(
    'Lockstep fleet',
    `<header>
<h1>Lockstep fleet</h1>
<span id="live" class="live off">connecting</span>
<form method="post" action="/dashboard/sign-out"><button type="submit" id="sign-out">Sign out</button></form>
</header>
<main>
<div id="connection" class="connection" role="alert" hidden></div>
<div id="parity" class="parity unknown" role="status" aria-live="polite">waiting for the first update</div>
<p id="parity-detail" class="meta"></p>
<table id="fleet">
<thead><tr><th>Instance</th><th>URL</th><th>Release</th><th>Digest</th><th>Health</th><th>State</th><th class="num">In flight</th><th class="num">Req/s</th></tr></thead>
<tbody></tbody>
</table>
<p class="meta"><span id="updated"></span> <span id="window"></span></p>
</main>
<script src="/dashboard/app.js"></script>`,
  );
}

/** Stylesheet, served at `/dashboard/app.css`. */
export const DASHBOARD_CSS = `
:root { color-scheme: light; --ok: #0a7d32; --bad: #b3261e; --warn: #9a6700; --muted: #5f6368; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f1f1f; background: #f6f7f9; }
header { display: flex; align-items: center; gap: 1rem; padding: .75rem 1.5rem; background: #1f2937; color: #fff; }
header h1 { font-size: 1.25rem; margin: 0; flex: 1; }
header button { font: inherit; padding: .3rem .8rem; }
main { padding: 1.5rem; max-width: 1400px; margin: 0 auto; }
.live { font-size: .85rem; padding: .15rem .6rem; border-radius: 1rem; background: #374151; }
.live.on { background: var(--ok); }
.parity { font-size: 1.8rem; font-weight: 700; padding: .9rem 1.25rem; border-radius: .5rem; margin-bottom: .4rem; color: #fff; word-break: break-word; }
.parity.parity { background: var(--ok); }
.parity.not-in-parity { background: var(--bad); }
.parity.degraded { background: #c2410c; }
.parity.rolling-out { background: #1d4ed8; }
.parity.unknown { background: var(--warn); }
.parity.stale { background: #6b7280; }
.connection { font-weight: 600; padding: .6rem 1rem; border-radius: .4rem; margin-bottom: .6rem; background: #fef3c7; color: #78350f; border: 1px solid #f59e0b; }
.connection a { color: inherit; }
main.stale table, main.stale #parity-detail { opacity: .55; }
.live.lost { background: var(--bad); }
table { width: 100%; border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
th, td { text-align: left; padding: .6rem .9rem; border-bottom: 1px solid #e5e7eb; }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { font-weight: 600; }
td.digest, td.url { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9rem; }
tr.odd-digest td.release, tr.odd-digest td.digest { color: var(--bad); font-weight: 700; }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; font-size: .9rem; font-weight: 600; }
.health-healthy { background: #d1fae5; color: var(--ok); }
.health-unhealthy, .health-ejected { background: #fee2e2; color: var(--bad); }
.state-enabled { background: #d1fae5; color: var(--ok); }
.state-draining { background: #fef3c7; color: var(--warn); }
.state-disabled { background: #e5e7eb; color: #374151; }
.error-text { color: var(--bad); font-size: .85rem; }
.meta { color: var(--muted); font-size: .85rem; }
#parity-detail { margin: 0 0 1.25rem; font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
.signin { max-width: 24rem; margin: 10vh auto; background: #fff; padding: 2rem; border-radius: .5rem; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
.signin h1 { margin-top: 0; }
.signin label { display: block; font-weight: 600; margin-bottom: .3rem; }
.signin input[type=password] { width: 100%; font: inherit; padding: .5rem; margin-bottom: 1rem; }
.signin button { font: inherit; padding: .5rem 1.2rem; }
.signin .error { color: var(--bad); font-weight: 600; }
.hint { color: var(--muted); font-size: .85rem; }
`;

/** Script, served at `/dashboard/app.js`: renders every `fleet` event of the SSE stream. */
export const DASHBOARD_JS = `'use strict';
(function () {
  var tbody = document.querySelector('#fleet tbody');
  var banner = document.getElementById('parity');
  var live = document.getElementById('live');

  function td(cls, text, title) {
    var c = document.createElement('td');
    c.className = cls;
    c.textContent = text;
    if (title) c.title = title;
    return c;
  }
  function badge(cls, text) {
    var c = document.createElement('td');
    var s = document.createElement('span');
    s.className = 'badge ' + cls;
    s.textContent = text;
    c.appendChild(s);
    return c;
  }
  function rate(r) {
    if (r === null) return '\\u2013';
    return r < 10 ? r.toFixed(1) : String(Math.round(r));
  }
  function commonDigest(instances) {
    var counts = {};
    var best = null;
    instances.forEach(function (i) {
      var d = i.version.digest;
      if (!i.healthy || d === null) return;
      counts[d] = (counts[d] || 0) + 1;
      if (best === null || counts[d] > counts[best]) best = d;
    });
    return best;
  }
  function render(snap) {
    var v = snap.verdict;
    banner.className = 'parity ' + v.state;
    banner.textContent = v.headline;
    var detail = v.serving + ' of ' + v.total + ' instances serving';
    if (v.digest) detail = 'digest ' + v.digest + ' \u00b7 ' + detail;
    if (snap.rollout && snap.rollout.phase) detail += ' \u00b7 now: ' + snap.rollout.phase;
    if (v.notes.length) detail += ' \u00b7 ' + v.notes.join('; ');
    document.getElementById('parity-detail').textContent = detail;
    var common = v.state === 'not-in-parity' || v.state === 'rolling-out' ? commonDigest(snap.instances) : null;
    var rows = document.createDocumentFragment();
    snap.instances.forEach(function (i) {
      var tr = document.createElement('tr');
      tr.dataset.instance = i.name;
      if (common !== null && i.version.digest !== common) tr.className = 'odd-digest';
      tr.appendChild(td('name', i.name));
      tr.appendChild(td('url', i.url));
      var rel = td('release', i.version.release || '?');
      if (i.version.error) {
        var e = document.createElement('div');
        e.className = 'error-text';
        e.textContent = i.version.error;
        rel.appendChild(e);
      }
      tr.appendChild(rel);
      tr.appendChild(td('digest', i.version.digest ? i.version.digest.slice(0, 12) : '?', i.version.digest || ''));
      var health = i.ejected ? 'ejected' : i.healthy ? 'healthy' : 'unhealthy';
      var h = badge('health-' + health, health);
      h.className = 'health';
      tr.appendChild(h);
      var s = badge('state-' + i.state, i.state);
      s.className = 'state';
      tr.appendChild(s);
      tr.appendChild(td('num inflight', String(i.inflight) + (i.held ? ' (+' + i.held + ' held)' : '')));
      tr.appendChild(td('num rate', rate(i.rate)));
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    document.getElementById('updated').textContent = 'Updated ' + hhmmss(new Date(snap.at)) + '.';
    document.getElementById('window').textContent = snap.rateWindowS > 0 ? 'Req/s over the last ' + Math.round(snap.rateWindowS) + ' s.' : '';
    document.title = v.state.toUpperCase() + ' \\u2013 Lockstep fleet';
  }
  function setLive(on, text) {
    live.className = 'live ' + (on ? 'on' : 'off');
    live.textContent = text;
  }

  // Truthful about the connection: data that stopped arriving is marked STALE with the time it is
  // from; a lost proxy is named with the time it was lost; a proxy restart is said, not hidden
  // behind a silent jump to the sign-in form.
  var main = document.querySelector('main');
  var notice = document.getElementById('connection');
  var last = null;
  var lastAt = 0;
  var lostAt = null;
  var STALE_AFTER_MS = 5000;
  function hhmmss(d) { return d.toLocaleTimeString([], { hour12: false }); }
  function showNotice(text, link) {
    notice.hidden = false;
    notice.textContent = text;
    if (link) {
      var a = document.createElement('a');
      a.href = '/dashboard';
      a.id = 'sign-in-again';
      a.textContent = link;
      notice.appendChild(document.createTextNode(' '));
      notice.appendChild(a);
    }
  }
  function markStale(why) {
    main.classList.add('stale');
    banner.className = 'parity stale';
    var from = last ? hhmmss(new Date(last.at)) : 'never';
    banner.textContent = 'STALE: ' + why + '; data below is from ' + from + (last ? ' (it said: ' + last.verdict.headline + ')' : '');
    document.title = 'STALE \u2013 Lockstep fleet';
  }
  setInterval(function () {
    if (lostAt === null && last !== null && Date.now() - lastAt > STALE_AFTER_MS) {
      setLive(false, 'stale');
      markStale('no update for ' + Math.round((Date.now() - lastAt) / 1000) + ' s');
    }
  }, 1000);

  var events = new EventSource('/dashboard/events');
  events.addEventListener('fleet', function (e) {
    var snap = JSON.parse(e.data);
    if (last && snap.proxyStartedAt !== last.proxyStartedAt) {
      showNotice('The proxy restarted at ' + hhmmss(new Date(snap.proxyStartedAt)) + '.');
    } else if (lostAt !== null) {
      notice.hidden = true;
    }
    lostAt = null;
    last = snap;
    lastAt = Date.now();
    main.classList.remove('stale');
    setLive(true, 'live');
    render(snap);
  });
  events.onerror = function () {
    if (lostAt === null) lostAt = new Date();
    setLive(false, 'lost');
    live.className = 'live lost';
    showNotice('Lost the proxy at ' + hhmmss(lostAt) + '; data below is from then. Reconnecting\u2026');
    markStale('lost the proxy at ' + hhmmss(lostAt));
    fetch('/dashboard/fleet.json', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status !== 401) return;
      return r.json().then(function (body) {
        events.close();
        if (last && body.proxy_started_at && body.proxy_started_at !== last.proxyStartedAt) {
          // Sessions live in the proxy's memory: a restart ends them. Say so; do not vanish.
          showNotice('The proxy restarted at ' + hhmmss(new Date(body.proxy_started_at)) + ' (lost it at ' + hhmmss(lostAt) + '); its sessions ended with it. Data below is from before the restart.', 'Sign in again');
          setLive(false, 'proxy restarted');
        } else {
          showNotice('Your dashboard session ended (expired or signed out elsewhere).', 'Sign in again');
          setLive(false, 'signed out');
        }
      });
    }, function () {});
  };
})();
`;
