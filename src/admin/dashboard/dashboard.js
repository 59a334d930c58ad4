// The Manifold dashboard (issue 7): polls GET /dashboard/data once a second and renders it.
// Counters from the gateway are cumulative; rates, error ratios and quantiles are computed here
// from the difference between the newest sample and one about WINDOW_MS older. Plain browser
// JS, no build step, no network beyond the admin API (the page's CSP allows nothing else).

const POLL_MS = 1000;
const WINDOW_MS = 10_000;
const TIMEOUT_MS = 3000;
/** Sent with every change so a cookie alone cannot make one (the admin API's CSRF rule). */
const HEADERS = Object.freeze({ 'x-manifold-dashboard': '1' });

const ints = new Intl.NumberFormat('en-US');
const byId = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Samples and the numbers derived from them

/** Oldest first; the first one is the newest sample at least WINDOW_MS old (or the oldest kept). */
let samples = [];

function sampleOf(data) {
  const routes = new Map();
  for (const r of data.routes ?? []) routes.set(r.id, r);
  const targets = new Map();
  for (const p of data.pools ?? []) for (const t of p.targets ?? []) targets.set(`${p.name}/${t.id}`, t);
  return { now: data.now, scope: data.scope, routes, targets, live: data.live };
}

function ingest(data) {
  const s = sampleOf(data);
  const last = samples.at(-1);
  // A restarted gateway (or a clock step) starts its counters again: so do we.
  const restarted =
    last !== undefined &&
    (s.now <= last.now ||
      (last.live?.sessions ?? 0) > (s.live?.sessions ?? 0) ||
      [...s.routes].some(([id, r]) => (last.routes.get(id)?.requests ?? 0) > r.requests));
  // So does a switch between this gateway's numbers and the cluster's (issue 16).
  if (restarted || (last !== undefined && last.scope !== s.scope)) samples = [];
  samples.push(s);
  while (samples.length > 2 && samples[1].now <= s.now - WINDOW_MS) samples.shift();
}

/** [base, newest] of one series, or null before there are two samples of it. */
function pair(pick) {
  if (samples.length < 2) return null;
  const a = pick(samples[0]);
  const b = pick(samples.at(-1));
  if (a === undefined || b === undefined) return null;
  return { a, b, dt: (samples.at(-1).now - samples[0].now) / 1000 };
}

/**
 * The q-quantile of the requests in the window, in seconds: Prometheus' histogram_quantile over
 * the bucket deltas, linear inside the bucket, 0 as the first bucket's lower bound; a quantile in
 * the +Inf bucket is the highest finite bound.
 */
function quantile(q, a, b) {
  const le = b.le;
  if (!le || le.length === 0 || String(a.le) !== String(le)) return null;
  const total = b.count - a.count;
  if (!(total > 0)) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < le.length; i++) {
    const upto = b.counts[i] - a.counts[i];
    if (upto >= rank) {
      const lo = i === 0 ? 0 : le[i - 1];
      const inBucket = upto - below;
      if (i === 0 && le[0] <= 0) return le[0];
      return inBucket > 0 ? lo + (le[i] - lo) * ((rank - below) / inBucket) : le[i];
    }
    below = upto;
  }
  return le[le.length - 1];
}

function routeStats(id) {
  const p = pair((s) => s.routes.get(id));
  if (p === null) return null;
  const requests = p.b.requests - p.a.requests;
  const errors = p.b.errors - p.a.errors;
  const da = p.a.duration;
  const db = p.b.duration;
  return {
    rate: p.dt > 0 ? requests / p.dt : null,
    errorRatio: requests > 0 ? errors / requests : null,
    p50: da && db ? quantile(0.5, da, db) : null,
    p99: da && db ? quantile(0.99, da, db) : null,
  };
}

/** Issue 17: sessions per second and KB/s each way over the window (Layer7Router's live line). */
function liveRates() {
  const p = pair((s) => s.live);
  if (p === null || !(p.dt > 0)) return null;
  const per = (a, b, unit) => Math.max(0, b - a) / unit / p.dt;
  return {
    sessions: per(p.a.sessions, p.b.sessions, 1),
    kbIn: per(p.a.bytes_in, p.b.bytes_in, 1024),
    kbOut: per(p.a.bytes_out, p.b.bytes_out, 1024),
  };
}

function targetRate(key) {
  const p = pair((s) => s.targets.get(key));
  return p === null || !(p.dt > 0) ? null : Math.max(0, p.b.requests - p.a.requests) / p.dt;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const DASH = '–';
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const int = (v) => (isNum(v) ? ints.format(v) : DASH);

function fixed(v) {
  if (!isNum(v)) return DASH;
  if (v === 0) return '0';
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return ints.format(Math.round(v));
}

const ms = (v) => (isNum(v) ? `${fixed(v)} ms` : DASH);
const seconds = (v) => (isNum(v) ? ms(v * 1000) : DASH);
const percent = (v) => (isNum(v) ? `${(v * 100).toFixed(v > 0 && v < 0.001 ? 2 : 1)} %` : DASH);

function ago(msAgo) {
  const s = Math.max(0, msAgo) / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers: rows are keyed and updated in place, so a click never lands on a replaced node.

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

/** Makes `parent`'s children one node per item, in order, reusing nodes by `data-key`. */
function sync(parent, items, keyOf, build, update) {
  const old = new Map();
  for (const child of parent.children) old.set(child.dataset.key, child);
  let cursor = parent.firstElementChild;
  for (const item of items) {
    const key = keyOf(item);
    let node = old.get(key);
    if (node) old.delete(key);
    else {
      node = build(item);
      node.dataset.key = key;
    }
    update(node, item);
    if (node === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(node, cursor);
  }
  for (const node of old.values()) node.remove();
}

/** A row with one cell per column; `cell(tr, name)` finds a cell again. */
function row(columns) {
  const cells = columns.map(([name, cls]) => el('td', { class: cls ?? '', dataset: { col: name } }));
  return el('tr', {}, ...cells);
}
const cell = (tr, name) => tr.querySelector(`[data-col="${name}"]`);

function badge(node, kind, text) {
  setAttr(node, 'class', `badge ${kind}`);
  setText(node, text);
}

function showEmpty(panel, empty) {
  panel.querySelector('.empty').hidden = !empty;
  const table = panel.querySelector('.scroll, #pools');
  if (table) table.hidden = empty;
}

// ---------------------------------------------------------------------------------------------
// Rendering

const ROUTE_COLUMNS = [
  ['id', 'key'],
  ['action'],
  ['pool'],
  ['rate', 'num'],
  ['error-rate', 'num'],
  ['p50', 'num'],
  ['p99', 'num'],
  ['requests', 'num'],
  ['errors', 'num'],
];

function renderRoutes(routes) {
  const panel = byId('routes-panel');
  showEmpty(panel, routes.length === 0);
  sync(
    panel.querySelector('tbody'),
    routes,
    (r) => r.id,
    (r) => {
      const tr = row(ROUTE_COLUMNS);
      tr.dataset.route = r.id;
      cell(tr, 'action').append(el('span', { class: 'tag' }));
      return tr;
    },
    (tr, r) => {
      const s = routeStats(r.id);
      setText(cell(tr, 'id'), r.id);
      setText(cell(tr, 'action').firstChild, r.action);
      setText(cell(tr, 'pool'), r.pool ?? DASH);
      setText(cell(tr, 'rate'), fixed(s?.rate));
      const er = cell(tr, 'error-rate');
      setText(er, percent(s?.errorRatio));
      setAttr(er, 'class', `num ${s?.errorRatio > 0.05 ? 'bad' : s?.errorRatio > 0.01 ? 'warn' : ''}`.trim());
      setText(cell(tr, 'p50'), seconds(s?.p50));
      setText(cell(tr, 'p99'), seconds(s?.p99));
      setText(cell(tr, 'requests'), int(r.requests));
      setText(cell(tr, 'errors'), int(r.errors));
    },
  );
}

/** [cell name, class, header]. */
const TARGET_COLUMNS = [
  ['id', 'key', 'Target'],
  ['state', '', 'State'],
  ['weight', 'num', 'Weight'],
  ['rate', 'num', 'Req/s'],
  ['requests', 'num', 'Requests'],
  ['failures', 'num', 'Failures'],
  ['inflight', 'num', 'In-flight'],
  ['ejections', 'num', 'Ejections'],
  ['p50', 'num', 'p50'],
  ['p99', 'num', 'p99'],
  ['action', 'act', ''],
];

const STATE_KIND = { up: 'ok', down: 'bad', ejected: 'warn', draining: 'info' };

/** Buttons waiting for their call to answer, by key: their label says so until then. */
const pending = new Set();

function renderTarget(tr, t) {
  const key = `${t.pool}/${t.id}`;
  const idCell = cell(tr, 'id');
  setText(idCell.querySelector('.id'), t.id);
  // The URL only when it says more than the id (a path prefix, https, a name).
  const url = idCell.querySelector('.url');
  setText(url, t.url);
  url.hidden = t.url === `http://${t.id}`;
  const [health, drained] = cell(tr, 'state').children;
  badge(health, STATE_KIND[t.state] ?? 'muted', t.state);
  drained.hidden = !t.drain;
  setAttr(tr, 'data-state', t.state);
  setAttr(tr, 'data-drain', String(Boolean(t.drain)));
  setText(cell(tr, 'weight'), int(t.weight));
  setText(cell(tr, 'rate'), fixed(targetRate(key)));
  setText(cell(tr, 'requests'), int(t.requests));
  const failures = cell(tr, 'failures');
  setText(failures, int(t.failures));
  setAttr(failures, 'class', t.failures > 0 ? 'num warn' : 'num');
  setText(cell(tr, 'inflight'), int(t.inflight));
  const now = t.ejected_workers > 0 ? ` (${t.ejected_workers} now)` : '';
  setText(cell(tr, 'ejections'), `${int(t.ejections)}${now}`);
  setText(cell(tr, 'p50'), ms(t.latency_ms?.p50));
  setText(cell(tr, 'p99'), ms(t.latency_ms?.p99));
  const button = cell(tr, 'action').firstChild;
  // A removed target (state "draining") is on its way out: nothing to toggle.
  button.hidden = t.state === 'draining';
  if (!pending.has(key)) {
    button.disabled = false;
    button.dataset.action = t.drain ? 'enable' : 'drain';
    setText(button, t.drain ? 'Enable' : 'Drain');
    setAttr(button, 'class', t.drain ? 'btn primary' : 'btn');
  }
}

function renderPools(pools) {
  const panel = byId('pools-panel');
  showEmpty(panel, pools.length === 0);
  sync(
    byId('pools'),
    pools,
    (p) => p.name,
    (p) => {
      const tbody = el('tbody');
      const heads = TARGET_COLUMNS.map(([, cls, label]) => el('th', { scope: 'col', class: cls }, label));
      const head = el('tr', {}, ...heads);
      return el(
        'section',
        { class: 'pool', dataset: { pool: p.name } },
        el(
          'div',
          { class: 'pool-head' },
          el('h3', {}, p.name),
          el('span', { class: 'tag selector' }),
          el('span', { class: 'tag health' }),
          el('span', { class: 'tag passive' }),
          el('span', { class: 'pool-sum' }),
        ),
        el('div', { class: 'scroll' }, el('table', { class: 'grid' }, el('thead', {}, head), tbody)),
      );
    },
    (section, p) => {
      const targets = p.targets ?? [];
      setText(section.querySelector('.selector'), p.selector);
      const health = section.querySelector('.health');
      setText(health, p.health_checks ? 'health checks' : 'health checks off');
      health.classList.toggle('off', !p.health_checks);
      const passive = section.querySelector('.passive');
      setText(passive, p.passive ? 'passive ejection' : 'passive ejection off');
      passive.classList.toggle('off', !p.passive);
      const serving = targets.filter((t) => t.state === 'up' && !t.drain).length;
      const counted = targets.filter((t) => t.state !== 'draining').length;
      const sum = section.querySelector('.pool-sum');
      setText(sum, `${serving} of ${counted} serving`);
      setAttr(sum, 'class', `pool-sum ${serving === 0 ? 'bad' : serving < counted ? 'warn' : 'ok'}`);
      sync(
        section.querySelector('tbody'),
        targets,
        (t) => `${t.pool}/${t.id}`,
        (t) => {
          const tr = row(TARGET_COLUMNS);
          tr.dataset.target = t.id;
          tr.dataset.pool = t.pool;
          cell(tr, 'id').append(el('span', { class: 'id' }), el('span', { class: 'url' }));
          const drained = el('span', { class: 'badge drained' }, 'drained');
          cell(tr, 'state').append(el('span', { class: 'badge' }), drained);
          cell(tr, 'action').append(el('button', { type: 'button', class: 'btn' }));
          return tr;
        },
        renderTarget,
      );
    },
  );
}

const QUEUE_COLUMNS = [
  ['route', 'key'],
  ['pending', 'num'],
  ['inflight', 'num'],
  ['done', 'num'],
  ['dead', 'num'],
  ['action', 'act'],
];

function renderQueue(queue) {
  const panel = byId('queue-panel');
  const routes = queue ?? [];
  showEmpty(panel, routes.length === 0);
  sync(
    panel.querySelector('tbody'),
    routes,
    (q) => q.route,
    (q) => {
      const tr = row(QUEUE_COLUMNS);
      tr.dataset.route = q.route;
      const button = el('button', { type: 'button', class: 'btn', dataset: { action: 'replay' } }, 'Replay');
      cell(tr, 'action').append(button);
      return tr;
    },
    (tr, q) => {
      setText(cell(tr, 'route'), q.route);
      setText(cell(tr, 'pending'), int(q.pending));
      setText(cell(tr, 'inflight'), int(q.inflight));
      setText(cell(tr, 'done'), int(q.done));
      const dead = cell(tr, 'dead');
      setText(dead, int(q.dead));
      setAttr(dead, 'class', q.dead > 0 ? 'num bad' : 'num');
      const button = cell(tr, 'action').firstChild;
      if (!pending.has(`queue/${q.route}`)) {
        button.disabled = !(q.dead > 0);
        setText(button, q.dead > 0 ? `Replay ${int(q.dead)}` : 'Replay');
      }
    },
  );
}

function renderLive(live) {
  const rates = live ? liveRates() : null;
  setText(byId('live-rate'), fixed(rates?.sessions));
  setText(byId('live-open'), int(live?.open));
  setText(byId('live-total'), int(live?.sessions));
  setText(byId('live-in'), fixed(rates?.kbIn));
  setText(byId('live-out'), fixed(rates?.kbOut));
}

const CLUSTER_COLUMNS = [
  ['id', 'key'],
  ['host'],
  ['pid', 'num'],
  ['state'],
  ['version', 'num'],
  ['seen'],
  ['requests', 'num'],
];

/** Issue 16: the instance registry; the panel stays hidden while `cluster.store` is off. */
function renderCluster(cluster) {
  const panel = byId('cluster-panel');
  panel.hidden = cluster === null || cluster === undefined;
  if (panel.hidden) return;
  const instances = cluster.instances ?? [];
  showEmpty(panel, !cluster.store?.available);
  sync(
    panel.querySelector('tbody'),
    instances,
    (i) => i.id,
    () => row(CLUSTER_COLUMNS),
    (tr, i) => {
      setText(cell(tr, 'id'), i.self ? `${i.id} (this one)` : i.id);
      setText(cell(tr, 'host'), i.host);
      setText(cell(tr, 'pid'), i.pid);
      const state = cell(tr, 'state');
      if (!state.firstChild) state.append(el('span'));
      badge(state.firstChild, i.state === 'up' ? 'ok' : 'bad', i.state);
      setText(cell(tr, 'version'), `v${i.overlay_version}`);
      setText(cell(tr, 'seen'), ago(i.age_ms));
      const d = i.stats?.downstream;
      setText(cell(tr, 'requests'), d ? int(d.success + d.failed) : DASH);
    },
  );
}

/** Issue 16: which numbers the page asks for; the choice exists only with a cluster store. */
let scope = 'instance';
byId('scope').addEventListener('change', (e) => {
  scope = e.target.value === 'cluster' ? 'cluster' : 'instance';
  samples = [];
});

function render(data) {
  byId('scope-box').hidden = data.cluster === null || data.cluster === undefined;
  const m = data.manifold ?? {};
  renderLive(data.live);
  setText(byId('version'), m.version ?? DASH);
  setText(byId('config-version'), m.config_version === undefined ? DASH : `v${m.config_version}`);
  setText(byId('workers'), m.workers ?? DASH);
  renderRoutes(data.routes ?? []);
  renderPools(data.pools ?? []);
  renderCluster(data.cluster);
  renderQueue(data.queue);
}

// ---------------------------------------------------------------------------------------------
// Connection status: "updated 0.4 s ago", or how long the gateway has not answered.

let lastOk = 0;
let failure = null;

function renderStatus() {
  const status = byId('status');
  const text = byId('status-text');
  const since = lastOk ? ago(Date.now() - lastOk) : 'never';
  if (failure !== null) {
    setAttr(status, 'data-status', 'down');
    setText(text, `Gateway unreachable (${failure}) · last update ${since}`);
  } else if (lastOk) {
    setAttr(status, 'data-status', 'ok');
    setText(text, `Live · updated ${since}`);
  }
  document.body.classList.toggle('stale', failure !== null);
}

let signedOut = false;
let pollTimer = 0;
let polling = false;
let again = false;

/** The next poll in `delay` ms; 0 (after an action) polls as soon as the current one ends. */
function schedule(delay) {
  if (polling) {
    again = again || delay === 0;
    return;
  }
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, delay);
}

async function poll() {
  polling = true;
  again = false;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const res = await fetch(scope === 'cluster' ? '/dashboard/data?scope=cluster' : '/dashboard/data', {
      headers: { accept: 'application/json' },
      cache: 'no-store',
      credentials: 'same-origin',
      signal: abort.signal,
    });
    // The token was rotated (or the cookie is gone): the page itself answers the login form.
    if (res.status === 401) {
      signedOut = true;
      location.assign('/dashboard');
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const data = await res.json();
    ingest(data);
    render(data);
    lastOk = Date.now();
    failure = null;
  } catch (err) {
    if (err.name === 'AbortError') failure = 'timed out';
    else failure = err instanceof TypeError ? 'no connection' : err.message;
  } finally {
    clearTimeout(timer);
    polling = false;
    renderStatus();
    if (!signedOut) schedule(again ? 0 : POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// Actions

let toastTimer = 0;

function toast(message, kind) {
  const t = byId('toast');
  setText(t, message);
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), kind === 'error' ? 8000 : 4000);
}

async function call(method, path, body) {
  const headers = { ...HEADERS, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'same-origin',
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const e = json?.error;
    throw new Error(e ? `${e.code}: ${e.message}` : `HTTP ${res.status}`);
  }
  return json;
}

async function act(button, key, label, run) {
  pending.add(key);
  button.disabled = true;
  setText(button, label);
  try {
    toast(await run(), 'ok');
  } catch (err) {
    toast(err instanceof TypeError ? 'The gateway could not be reached.' : err.message, 'error');
  } finally {
    pending.delete(key);
    button.disabled = false;
    schedule(0);
  }
}

document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || button.disabled) return;
  const tr = button.closest('tr');
  const action = button.dataset.action;
  if (action === 'drain' || action === 'enable') {
    const { pool, target } = tr.dataset;
    const drain = action === 'drain';
    const path = `/dashboard/api/pools/${encodeURIComponent(pool)}/targets/${encodeURIComponent(target)}`;
    void act(button, `${pool}/${target}`, drain ? 'Draining…' : 'Enabling…', async () => {
      await call('PATCH', path, { drain });
      return drain ? `${pool}/${target} drained: no new requests` : `${pool}/${target} enabled`;
    });
  } else if (action === 'replay') {
    const route = tr.dataset.route;
    void act(button, `queue/${route}`, 'Replaying…', async () => {
      const r = await call('POST', `/dashboard/api/queue/dead/retry?route=${encodeURIComponent(route)}`);
      const n = r?.retried ?? 0;
      return `${route}: ${n} dead letter${n === 1 ? '' : 's'} queued again`;
    });
  }
});

setInterval(renderStatus, 500);
schedule(0);
