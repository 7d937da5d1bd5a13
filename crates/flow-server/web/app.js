/* Flow Web: the dashboard, served as-is by the Flow binary (no build step, no dependencies).
 * Sections: helpers, API client, session, live socket, shell, router, one function per page. */
(() => {
'use strict';

const LEAD_STATUSES = ['NEW', 'CONTACTED', 'QUALIFIED', 'CONVERTED', 'LOST'];
const DEAL_STATUSES = ['OPEN', 'WON', 'LOST'];
const ROLES = ['admin', 'user', 'viewer'];
const ACTIVITY_TYPES = ['NOTE', 'CALL', 'EMAIL', 'MEETING'];
const FEED_MAX = 200;
const APP = 'flow-web';

/* ---------- helpers ---------- */

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element. Data only ever goes in as text nodes or attribute values. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  append(el, children);
  // Attributes after children: a select's value only sticks once its options exist.
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'text') el.textContent = v;
      else if (k === 'class') el.className = v;
      else if (k === 'value') el.value = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Like the DOM's append/replaceChildren, but skipping null and false and flattening
 *  arrays, so optional parts can be written inline. */
const add = (el, ...children) => append(el, children);
const fill = (el, ...children) => { el.replaceChildren(); return append(el, children); };

function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

const store = {
  // Storage can throw (private modes, quotas): the app then simply forgets across reloads.
  get(area, k) { try { return window[area].getItem(k); } catch { return null; } },
  set(area, k, v) { try { window[area].setItem(k, v); } catch { /* ignore */ } },
  del(area, k) { try { window[area].removeItem(k); } catch { /* ignore */ } },
};

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

function fmtDate(iso, fmt = dateFmt) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? '—' : fmt.format(d);
}

function timeEl(iso, fmt) {
  return h('time', { datetime: iso || null, title: iso ? new Date(iso).toString() : null }, fmtDate(iso, fmt));
}

const isToday = (iso) => new Date(iso).toDateString() === new Date().toDateString();
const dash = (v) => (v == null || v === '' ? '—' : String(v));
const leadName = (l) => [l.firstName, l.lastName].filter(Boolean).join(' ') || '(no name)';
const contactName = (c) => [c.firstName, c.lastName].filter(Boolean).join(' ') || c.email || '(no name)';
const splitList = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

function money(amount, currency) {
  try {
    const fmt = new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'DKK' });
    // Amounts are in minor units; the currency says how many digits those are.
    return fmt.format(amount / 10 ** fmt.resolvedOptions().maximumFractionDigits);
  } catch {
    return `${amount / 100} ${currency || ''}`.trim();
  }
}

function badge(text, kind) {
  return h('span', { class: 'badge', 'data-kind': kind || String(text).toLowerCase() }, text);
}

let noticeTimer;
/** Shows a short message in the global notice area (a polite live region). */
function notify(message, kind = 'ok') {
  const box = $('#notice');
  fill(box, h('div', { class: `toast ${kind}` }, message));
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => fill(box), kind === 'error' ? 10000 : 5000);
}

/** A field: label + control, so every input has a real label. */
function field(label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control,
    hint && h('small', { class: 'muted' }, hint));
}

function select(attrs, options, value) {
  const el = h('select', attrs, options.map((o) => (Array.isArray(o)
    ? h('option', { value: o[0] }, o[1])
    : h('option', { value: o }, o))));
  if (value != null) el.value = value;
  return el;
}

function pageHeader(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', null, title), h('div', { class: 'page-actions' }, extra));
}

/** A table with a scroll wrapper; on phones the CSS turns rows into cards using data-label. */
function dataTable(id, columns) {
  const tbody = h('tbody');
  const table = h('table', { id, class: 'data' },
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c || h('span', { class: 'visually-hidden' }, 'Actions'))))), tbody);
  return { wrap: h('div', { class: 'table-wrap' }, table), table, tbody, cols: columns.length };
}

function stateRow(t, text, kind = 'empty') {
  fill(t.tbody, h('tr', { class: 'state-row' },
    h('td', { colspan: t.cols, class: kind, role: kind === 'error' ? 'alert' : null }, text)));
}

const td = (label, ...content) => h('td', { 'data-label': label }, content);

/** Runs an async action with its button disabled, reporting errors in the notice area. */
async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    notify(e.message, 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/* ---------- API client ---------- */

class ApiError extends Error {
  constructor(status, code, message, requestId, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

const query = (params) => {
  // The API rejects unknown and empty parameters, so only set ones are sent.
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
};

async function rawRequest(method, path, body, token = session.accessToken) {
  const headers = { 'x-source-app': APP, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  // Sign-in, refresh and sign-out carry the refresh token as an httpOnly cookie, out of
  // reach of scripts; the header is what lets the server accept that cookie.
  if (path.startsWith('/auth/')) headers['x-flow-refresh'] = 'cookie';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network_error', 'Cannot reach Flow. Check your connection and try again.');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(res.status, err.code || `http_${res.status}`,
      err.message || `Request failed (HTTP ${res.status})`, err.request_id, res.headers.get('retry-after'));
  }
  return data;
}

/** An authenticated call: refreshes the access token when it is about to expire or
 *  was refused, retries once, and ends the session when the refresh is refused too. */
async function api(method, path, body) {
  if (session.accessToken && Date.now() > session.expiresAt - 5000) await refreshOrEnd();
  const used = session.accessToken;
  try {
    return await rawRequest(method, path, body);
  } catch (e) {
    if (e.status !== 401 || !session.accessToken) throw e;
    // Another call may have refreshed meanwhile: then its token is simply tried.
    if (session.accessToken === used) await refreshOrEnd();
    return rawRequest(method, path, body);
  }
}

/* ---------- session ---------- */

// Only a marker that a sign-in exists: the refresh token itself lives in an httpOnly cookie.
const LS_SIGNED_IN = 'flow.signedIn';
const LS_TENANT = 'flow.tenantId';
const SS_ACCESS = 'flow.access';

const session = {
  accessToken: null, expiresAt: 0, user: null, tenant: null, role: null, permissions: [], tenants: [],
};
let refreshTimer;
let refreshChain = Promise.resolve();
let refreshing = null; // { tenantId, promise } of the refresh under way
let lastRefreshAt = 0;

function applyProfile(p) {
  session.user = p.user || session.user;
  session.tenant = p.tenant || session.tenant;
  session.role = p.role || session.role;
  session.permissions = p.permissions || session.permissions || [];
  session.tenants = p.tenants || session.tenants || [];
  if (session.tenant) store.set('localStorage', LS_TENANT, session.tenant.id);
}

function applyAuth(body) {
  session.accessToken = body.accessToken;
  session.expiresAt = Date.now() + (Number(body.expiresIn) || 900) * 1000;
  store.set('localStorage', LS_SIGNED_IN, '1');
  applyProfile(body);
  store.set('sessionStorage', SS_ACCESS, JSON.stringify({
    token: session.accessToken, expiresAt: session.expiresAt, tenantId: session.tenant && session.tenant.id,
  }));
  scheduleRefresh();
}

/** Exchanges the refresh token for new tokens (for `tenantId`, which is how the tenant
 *  switcher works). Refresh tokens are single-use and shared by every tab through the
 *  cookie, so refreshes are serialised (across tabs with Web Locks): two tabs presenting
 *  the same token at once would revoke the whole session. */
function refresh(tenantId) {
  // Calls that fail together (several 401s at once) share one refresh.
  if (refreshing && refreshing.tenantId === tenantId) return refreshing.promise;
  const run = () => doRefresh(tenantId);
  const locked = () => (navigator.locks && navigator.locks.request
    ? navigator.locks.request('flow-refresh', run) : run());
  const promise = refreshChain.catch(() => {}).then(locked);
  const entry = { tenantId, promise };
  refreshing = entry;
  refreshChain = promise;
  promise.catch(() => {}).finally(() => { if (refreshing === entry) refreshing = null; });
  return promise;
}

async function doRefresh(tenantId) {
  if (!store.get('localStorage', LS_SIGNED_IN)) throw new ApiError(401, 'no_session', 'Please sign in.');
  const body = await rawRequest('POST', '/auth/refresh', tenantId ? { tenantId } : {}, null);
  applyAuth(body);
  lastRefreshAt = Date.now();
  return body;
}

// Refusals of the credentials themselves; timeouts and rate limits are worth retrying.
const isAuthFailure = (e) => e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;

async function refreshOrEnd() {
  try {
    await refresh(session.tenant && session.tenant.id);
  } catch (e) {
    if (isAuthFailure(e)) endSession('Your session has ended. Please sign in again.');
    throw e;
  }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  // A minute before expiry, so requests and socket reconnects never carry a stale token.
  const delay = Math.max(5000, session.expiresAt - Date.now() - 60000);
  refreshTimer = setTimeout(() => {
    refreshOrEnd().catch((e) => {
      if (!isAuthFailure(e)) refreshTimer = setTimeout(scheduleRefresh, 15000);
    });
  }, delay);
}

/** Forgets the session locally and shows the sign-in screen. */
function endSession(message) {
  clearTimeout(refreshTimer);
  socketStop();
  Object.assign(session, { accessToken: null, expiresAt: 0, user: null, tenant: null, role: null, permissions: [], tenants: [] });
  store.del('localStorage', LS_SIGNED_IN);
  store.del('sessionStorage', SS_ACCESS);
  feed.length = 0;
  feedBackfilled = false;
  voiceConversationId = null;
  disposePage();
  fill($('#view'));
  showLogin(message);
}

async function signOut() {
  const access = session.accessToken;
  $('#sign-out').disabled = true;
  socketStop();
  // Revoking server-side (and clearing the cookie) is best effort: the local session ends
  // either way.
  await rawRequest('POST', '/auth/logout', {}, access).catch(() => {});
  $('#sign-out').disabled = false;
  endSession('You have signed out.');
}

/** Permission check with the server's rules: `*`, `op:*` or `op:resource`. */
function can(op, resource) {
  return (session.permissions || []).some((g) => {
    if (g === '*') return true;
    const [o, r] = g.split(':');
    return o === op && (r === '*' || r === resource);
  });
}
const canAdmin = (resource) => session.role === 'admin' || can('admin', resource);

async function switchTenant(tenantId) {
  const sel = $('#tenant-switcher');
  if (!session.tenant || tenantId === session.tenant.id) return;
  sel.disabled = true;
  try {
    await refresh(tenantId);
    feed.length = 0;
    feedBackfilled = false;
    voiceConversationId = null;
    socketRestart();
    renderShell();
    notify(`Switched to ${session.tenant.name}`);
    render();
  } catch (e) {
    if (e.status === 401) {
      endSession('Your session has ended. Please sign in again.');
      return;
    }
    notify(e.message, 'error');
    renderShell();
  }
}

/* ---------- live socket ---------- */

const live = {
  ws: null, lastSeq: null, tenantId: null, attempt: 0, timer: null, pingTimer: null,
  stopped: true, needRefresh: false, everLive: false,
};

function setConn(state) {
  const el = $('#conn-status');
  el.dataset.state = state;
  const text = state === 'live' ? 'Live'
    : state === 'connecting' ? (live.everLive ? 'Reconnecting…' : 'Connecting…')
      : 'Offline';
  $('.conn-text', el).textContent = text;
  el.title = state === 'live' ? 'Receiving live updates' : text;
  $('#offline-banner').hidden = state !== 'offline' || !session.accessToken;
}

function socketStart() {
  live.stopped = false;
  live.attempt = 0;
  connect();
}

function socketStop(restarting) {
  live.stopped = true;
  clearTimeout(live.timer);
  clearInterval(live.pingTimer);
  const ws = live.ws;
  live.ws = null;
  if (ws) ws.close(1000, 'bye');
  live.everLive = false;
  if (!restarting) setConn('offline');
}

/** For a tenant switch: positions in one tenant's log mean nothing in another's. */
function socketRestart() {
  socketStop(true);
  live.lastSeq = null;
  live.tenantId = null;
  socketStart();
}

async function connect() {
  clearTimeout(live.timer);
  if (live.stopped || !session.accessToken || live.ws) return;
  if ($('#conn-status').dataset.state !== 'offline' || live.attempt === 0) setConn('connecting');
  if (live.needRefresh || session.expiresAt - Date.now() < 60000) {
    try {
      await refresh(session.tenant && session.tenant.id);
      live.needRefresh = false;
    } catch (e) {
      if (isAuthFailure(e)) { endSession('Your session has ended. Please sign in again.'); return; }
      scheduleReconnect();
      return;
    }
    if (live.stopped || live.ws) return;
  }
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/events?token=${encodeURIComponent(session.accessToken)}&app=${APP}`;
  let ws;
  try { ws = new WebSocket(url); } catch { scheduleReconnect(); return; }
  live.ws = ws;
  let welcomed = false;
  ws.onmessage = (m) => {
    if (live.ws !== ws) return;
    let frame;
    try { frame = JSON.parse(m.data); } catch { return; }
    if (frame.type === 'welcome') welcomed = true;
    handleFrame(ws, frame);
  };
  ws.onclose = () => {
    if (live.ws !== ws) return;
    live.ws = null;
    clearInterval(live.pingTimer);
    // A socket that closes before its welcome was most likely refused (expired or revoked
    // token): get a fresh token first, but not more than twice a minute.
    if (!welcomed && Date.now() - lastRefreshAt > 30000) live.needRefresh = true;
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (live.stopped) return;
  live.attempt += 1;
  const delay = Math.min(10000, 500 * 2 ** (live.attempt - 1));
  setConn(live.attempt >= 3 || !navigator.onLine ? 'offline' : 'connecting');
  live.timer = setTimeout(connect, delay);
}

function handleFrame(ws, f) {
  switch (f.type) {
    case 'welcome': {
      if (live.tenantId !== f.tenantId) live.lastSeq = null;
      live.tenantId = f.tenantId;
      let since = live.lastSeq;
      if (since == null) {
        // First connection: live from now on (the page just loaded its data over REST).
        since = f.seq;
      } else if (since > f.seq) {
        // The log is behind what we saw (restored database): start over from its head.
        since = f.seq;
        reloadPage();
      }
      live.lastSeq = since;
      // The resume is sent even on the first connection: it starts live delivery at once.
      ws.send(JSON.stringify({ type: 'resume', since }));
      live.attempt = 0;
      live.everLive = true;
      setConn('live');
      clearInterval(live.pingTimer);
      // The server drops sockets silent for 90 s; a ping keeps idle dashboards connected.
      live.pingTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'ping', id: String(Date.now()) }));
      }, 25000);
      break;
    }
    case 'event':
      if (live.lastSeq != null && f.seq <= live.lastSeq) return;
      live.lastSeq = f.seq;
      dispatchEvent(f.seq, f.event || {});
      break;
    case 'resync_required':
      // Too long away: the log no longer has what we missed, so the page refetches its state.
      live.lastSeq = f.seq;
      reloadPage();
      notify('Reconnected after a long break: the page was refreshed.');
      break;
    case 'error':
      if (f.code === 'invalid_since') { live.lastSeq = null; reloadPage(); }
      break;
    default:
      break;
  }
}

function dispatchEvent(seq, ev) {
  pushFeed(seq, ev);
  if (currentPage && currentPage.onEvent) {
    try { currentPage.onEvent(ev); } catch (e) { console.error(e); }
  }
}

function reloadPage() {
  if (currentPage && currentPage.reload) currentPage.reload();
}

/* ---------- event feed (kept while navigating, shown on the Activity page) ---------- */

const feed = []; // newest first: { seq, ev }
let feedBackfilled = false;
let feedList = null; // the Activity page's list while it is shown

function pushFeed(seq, ev) {
  if (feed.some((x) => x.seq === seq)) return;
  feed.unshift({ seq, ev });
  if (feed.length > FEED_MAX) feed.length = FEED_MAX;
  if (feedList && feedList.isConnected) {
    $('.state', feedList.parentNode)?.remove();
    feedList.prepend(feedItem({ seq, ev }));
    while (feedList.children.length > FEED_MAX) feedList.lastElementChild.remove();
  }
}

function summarize(ev) {
  const d = ev.data || {};
  const lead = d.lead;
  switch (ev.type) {
    case 'LEAD_CREATED': return lead ? `New lead: ${leadName(lead)}${lead.company ? ` (${lead.company})` : ''}` : 'New lead';
    case 'LEAD_UPDATED': return `${lead ? leadName(lead) : 'Lead'} updated${d.changed ? `: ${d.changed.join(', ')}` : ''}`;
    case 'LEAD_STATUS_CHANGED': return `${lead ? leadName(lead) : 'Lead'}: ${d.from || '?'} → ${d.to || '?'}${d.reason ? ` (${d.reason})` : ''}`;
    case 'LEAD_ASSIGNED': return d.assignee ? `Lead assigned to ${d.assignee}` : 'Lead unassigned';
    case 'LEAD_DELETED': return 'Lead deleted';
    case 'CONTACT_CREATED': case 'CONTACT_UPDATED':
      return `${ev.type === 'CONTACT_CREATED' ? 'New contact' : 'Contact updated'}: ${d.contact ? contactName(d.contact) : ''}`;
    case 'CONTACT_MERGED': return `Contacts merged into ${d.contact ? contactName(d.contact) : 'a contact'}`;
    case 'ACTIVITY_CREATED': case 'ACTIVITY_COMPLETED': {
      const a = d.activity || {};
      return `${a.type || 'Activity'}${a.description ? `: ${a.description}` : ''}`;
    }
    case 'DEAL_CREATED': case 'DEAL_UPDATED': case 'DEAL_WON': case 'DEAL_LOST':
      return d.deal ? `${d.deal.title} (${money(d.deal.amount, d.deal.currency)}, ${d.deal.status})` : ev.type;
    case 'VOICE_COMMAND_EXECUTED': return `Voice command: ${d.command || '?'}`;
    case 'JOB_PROGRESS': case 'JOB_COMPLETED': return `${d.kind || 'Job'}${d.progress ? `: ${JSON.stringify(d.progress)}` : ''}`;
    case 'SECURITY_INCIDENT': return d.incident ? `${d.incident.severity} ${d.incident.type}: ${d.incident.description}` : 'Security incident';
    default: {
      const s = JSON.stringify(d);
      return s.length > 140 ? `${s.slice(0, 139)}…` : s;
    }
  }
}

function feedItem({ seq, ev }) {
  return h('li', { class: 'feed-item', 'data-seq': seq, 'data-type': ev.type },
    h('div', { class: 'feed-main' }, badge(ev.type || 'EVENT', 'event'), h('span', { class: 'feed-summary' }, summarize(ev))),
    h('div', { class: 'feed-meta muted' }, timeEl(ev.timestamp, isToday(ev.timestamp) ? timeFmt : dateFmt), ' · ', ev.source || ev.sourceApp || 'unknown app'));
}

/* ---------- shell ---------- */

function showLogin(message) {
  $('#boot').hidden = true;
  $('#app-shell').hidden = true;
  $('#login-view').hidden = false;
  $('#login-info').textContent = message || '';
  $('#login-error').hidden = true;
  $('#login-error').textContent = '';
  $('#login-password').value = '';
  $('#login-submit').disabled = false;
  document.title = 'Sign in · Flow';
  ($('#login-email').value ? $('#login-password') : $('#login-email')).focus();
}

function renderShell() {
  $('#current-user').textContent = session.user ? session.user.email : '';
  $('#current-user').title = session.user ? `${session.user.name || session.user.email} (${session.role || 'member'})` : '';
  const sel = $('#tenant-switcher');
  const tenants = session.tenants && session.tenants.length ? session.tenants : (session.tenant ? [session.tenant] : []);
  fill(sel, ...tenants.map((t) => h('option', { value: t.id }, t.name + (t.role ? ` (${t.role})` : ''))));
  if (session.tenant) sel.value = session.tenant.id;
  sel.disabled = tenants.length <= 1;
  for (const [nav, res] of [['users', 'users'], ['keys', 'keys'], ['queues', 'queues']]) {
    $(`[data-nav="${nav}"]`).hidden = !canAdmin(res);
  }
}

function enterApp() {
  $('#boot').hidden = true;
  $('#login-view').hidden = true;
  $('#app-shell').hidden = false;
  renderShell();
  socketStart();
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.replace('#/leads');
  render();
}

/* ---------- router ---------- */

const ROUTES = [
  [/^\/leads\/?$/, 'leads', 'leads'],
  [/^\/leads\/([^/]+)$/, 'lead', 'leads'],
  [/^\/contacts\/?$/, 'contacts', 'contacts'],
  [/^\/deals\/?$/, 'deals', 'deals'],
  [/^\/activity\/?$/, 'activity', 'activity'],
  [/^\/voice\/?$/, 'voice', 'voice'],
  [/^\/admin\/users\/?$/, 'users', 'users'],
  [/^\/admin\/keys\/?$/, 'keys', 'keys'],
  [/^\/admin\/queues\/?$/, 'queues', 'queues'],
];

let currentPage = null;
let renderGen = 0;

function disposePage() {
  if (currentPage && currentPage.dispose) currentPage.dispose();
  currentPage = null;
  feedList = null;
  renderGen += 1;
}

function render() {
  if (!session.accessToken) return;
  const path = location.hash.replace(/^#/, '') || '/leads';
  const match = ROUTES.map(([re, name, nav]) => [path.match(re), name, nav]).find(([m]) => m);
  if (!match) { location.replace('#/leads'); return; }
  const [m, name, nav] = match;
  renderedHash = location.hash;
  disposePage();
  const gen = renderGen;
  const view = $('#view');
  fill(view);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const ctx = { view, alive: () => gen === renderGen && session.accessToken != null };
  const adminPage = { users: 'users', keys: 'keys', queues: 'queues' }[name];
  if (adminPage && !canAdmin(adminPage)) {
    add(view, pageHeader('Not available'), h('p', { class: 'state' }, 'Your role in this tenant does not give access to this page.'));
  } else {
    let param = m[1];
    try { param = param && decodeURIComponent(param); } catch { /* keep it raw */ }
    currentPage = PAGES[name](ctx, param) || {};
  }
  const title = $('h1', view);
  document.title = `${title ? title.textContent : 'Flow'} · Flow`;
  if (title && routedByUser) { title.tabIndex = -1; title.focus({ preventScroll: true }); }
  routedByUser = false;
}

// Focus moves to the new page's heading only after navigation, not on the first render.
let routedByUser = false;
let renderedHash = null;
window.addEventListener('hashchange', () => {
  // A hash the app set itself with location.replace has already been rendered.
  if (location.hash === renderedHash) return;
  routedByUser = true;
  render();
});

/* ---------- pages ---------- */

/** A cursor-paged list bound to a table: loading, empty and error states, load more,
 *  and in-place updates for live events. `draw(item, tr)` fills (or refills) a row. */
function pagedTable(ctx, t, opts) {
  const rows = new Map();
  let cursor = null;
  let req = 0;
  const more = h('button', { id: opts.moreId, class: 'btn', type: 'button', hidden: true, onclick: () => load(false) }, 'Load more');

  function row(item) {
    let tr = rows.get(item.id);
    if (!tr) {
      tr = h('tr', { [opts.rowAttr]: item.id });
      rows.set(item.id, tr);
    }
    tr.item = item;
    opts.draw(item, tr);
    return tr;
  }

  function checkEmpty() {
    if (!rows.size) stateRow(t, opts.empty());
    else $('.state-row', t.tbody)?.remove();
  }

  async function load(reset) {
    const my = ++req;
    if (reset) {
      rows.clear();
      cursor = null;
      more.hidden = true;
      stateRow(t, 'Loading…', 'loading');
    }
    more.disabled = true;
    try {
      const page = await opts.fetch(reset ? null : cursor);
      if (my !== req || !ctx.alive()) return;
      if (reset) {
        // Rows added by live events while loading are in the page or older than it.
        rows.clear();
        fill(t.tbody);
      }
      for (const item of page.data || []) if (!rows.has(item.id)) add(t.tbody, row(item));
      cursor = page.nextCursor || null;
      more.hidden = !cursor;
      checkEmpty();
    } catch (e) {
      if (my !== req || !ctx.alive()) return;
      if (reset) stateRow(t, e.message, 'error'); else notify(e.message, 'error');
    } finally {
      more.disabled = false;
    }
  }

  return {
    more,
    load,
    has: (id) => rows.has(id),
    get: (id) => rows.get(id)?.item,
    /** Updates a shown row; with `prepend`, adds a missing one at the top. */
    upsert(item, prepend) {
      if (rows.has(item.id)) { row(item); return; }
      if (!prepend) return;
      t.tbody.prepend(row(item));
      checkEmpty();
    },
    remove(id) {
      rows.get(id)?.remove();
      rows.delete(id);
      checkEmpty();
    },
  };
}

function statusSelect(lead, onChange, disabled) {
  return select({
    'data-status-for': lead.id, 'aria-label': `Status of ${leadName(lead)}`, disabled: disabled || null,
    class: 'status-select', onchange: onChange,
  }, LEAD_STATUSES, lead.status);
}

/** Changes a lead's status from a select, reverting it when the API refuses. */
async function changeStatus(lead, sel, onDone) {
  const status = sel.value;
  const previous = lead.status;
  if (status === previous) return;
  sel.disabled = true;
  try {
    const updated = await api('PATCH', `/leads/${encodeURIComponent(lead.id)}/status`, { status });
    notify(`${leadName(updated)} is now ${updated.status}`);
    onDone(updated);
  } catch (e) {
    sel.value = previous;
    notify(e.message, 'error');
  } finally {
    sel.disabled = false;
  }
}

/** Leads filters survive a visit to a lead's page. */
const leadsFilter = { status: '', q: '' };

function leadMatches(lead) {
  if (leadsFilter.status && lead.status !== leadsFilter.status) return false;
  const q = leadsFilter.q.trim().toLowerCase();
  if (!q) return true;
  return [leadName(lead), lead.email, lead.company, lead.phone].filter(Boolean).join(' ').toLowerCase().includes(q);
}

async function leadFromEvent(ev) {
  const d = ev.data || {};
  if (d.lead && d.lead.id && d.lead.firstName != null) return d.lead;
  const id = d.leadId || (d.lead && d.lead.id);
  return id ? api('GET', `/leads/${encodeURIComponent(id)}`) : null;
}

function pageLeads(ctx) {
  const writable = can('write', 'leads');
  const t = dataTable('leads-table', ['Name', 'Company', 'Email', 'Status', 'Source', 'Created', 'Change status']);

  const list = pagedTable(ctx, t, {
    moreId: 'leads-more',
    rowAttr: 'data-lead-id',
    empty: () => (leadsFilter.status || leadsFilter.q ? 'No leads match these filters.' : 'No leads yet.'),
    fetch: (cursor) => api('GET', `/leads${query({ status: leadsFilter.status, q: leadsFilter.q.trim(), cursor, limit: 25 })}`),
    draw(lead, tr) {
      // The select is kept across updates so keyboard focus stays on it.
      let sel = tr.statusSelect;
      if (!sel) {
        sel = statusSelect(lead, () => changeStatus(tr.item, sel, (u) => list.upsert(u)), !writable);
        tr.statusSelect = sel;
      } else if (!sel.disabled || !writable) {
        // A disabled select of a writer has a change in flight, which sets it when done.
        sel.value = lead.status;
      }
      const cells = [
        td('Name', h('a', { href: `#/leads/${encodeURIComponent(lead.id)}` }, leadName(lead))),
        td('Company', dash(lead.company)),
        td('Email', dash(lead.email)),
        td('Status', badge(lead.status)),
        td('Source', dash(lead.source)),
        td('Created', timeEl(lead.createdAt)),
      ];
      if (tr.actionCell) { for (let i = 0; i < cells.length; i++) tr.children[i].replaceWith(cells[i]); } else {
        tr.actionCell = td('Change status', sel);
        add(tr, ...cells, tr.actionCell);
      }
    },
  });

  const statusFilter = select({ id: 'lead-filter-status' }, [['', 'All statuses'], ...LEAD_STATUSES], leadsFilter.status);
  statusFilter.addEventListener('change', () => { leadsFilter.status = statusFilter.value; list.load(true); });
  const search = h('input', { id: 'lead-search', type: 'search', placeholder: 'Name, email, company, phone', autocomplete: 'off', value: leadsFilter.q });
  search.addEventListener('input', debounce(() => {
    if (search.value === leadsFilter.q) return;
    leadsFilter.q = search.value;
    list.load(true);
  }, 300));

  add(ctx.view,
    pageHeader('Leads'),
    newLeadForm(writable, (lead) => {
      if (leadMatches(lead)) list.upsert(lead, true);
      else notify(`Lead ${leadName(lead)} created (hidden by the current filters)`);
    }),
    h('div', { class: 'filters', role: 'search', 'aria-label': 'Filter leads' },
      field('Status', statusFilter), field('Search', search)),
    t.wrap,
    h('div', { class: 'more' }, list.more),
  );
  list.load(true);

  return {
    reload: () => list.load(true),
    async onEvent(ev) {
      const d = ev.data || {};
      switch (ev.type) {
        case 'LEAD_CREATED': case 'LEAD_UPDATED': case 'LEAD_STATUS_CHANGED': {
          const lead = await leadFromEvent(ev).catch(() => null);
          if (!lead || !ctx.alive()) return;
          list.upsert(lead, ev.type === 'LEAD_CREATED' && leadMatches(lead));
          break;
        }
        case 'LEAD_ASSIGNED': {
          const cur = list.get(d.leadId);
          if (cur) list.upsert({ ...cur, assignedTo: d.assignee });
          break;
        }
        case 'LEAD_DELETED':
          list.remove(d.leadId);
          break;
        default:
      }
    },
  };
}

function newLeadForm(writable, onCreated) {
  const input = (id, label, type = 'text', extra = {}) => field(label, h('input', { id, name: id, type, disabled: !writable, ...extra }));
  const error = h('p', { id: 'new-lead-error', class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { id: 'new-lead-submit', class: 'btn primary', type: 'submit', disabled: !writable }, 'Add lead');
  const form = h('form', { id: 'new-lead-form', novalidate: true, class: 'card inline-form', 'aria-labelledby': 'new-lead-title' },
    h('h2', { id: 'new-lead-title' }, 'New lead'),
    !writable && h('p', { class: 'muted' }, 'You have read-only access in this tenant.'),
    h('div', { class: 'grid' },
      input('new-lead-first-name', 'First name', 'text', { required: true, autocomplete: 'off' }),
      input('new-lead-last-name', 'Last name', 'text', { autocomplete: 'off' }),
      input('new-lead-email', 'Email', 'email', { autocomplete: 'off' }),
      input('new-lead-company', 'Company', 'text', { autocomplete: 'off' })),
    error,
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!writable) return;
    const val = (id) => $(`#${id}`, form).value.trim();
    const body = { firstName: val('new-lead-first-name') };
    for (const [key, id] of [['lastName', 'new-lead-last-name'], ['email', 'new-lead-email'], ['company', 'new-lead-company']]) {
      if (val(id)) body[key] = val(id);
    }
    error.hidden = true;
    if (!body.firstName) {
      error.textContent = 'First name is required.';
      error.hidden = false;
      $('#new-lead-first-name', form).focus();
      return;
    }
    submit.disabled = true;
    try {
      const lead = await api('POST', '/leads', body);
      form.reset();
      notify(`Lead ${leadName(lead)} created`);
      onCreated(lead);
      $('#new-lead-first-name', form).focus();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      notify(err.message, 'error');
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function pageLead(ctx, id) {
  const writable = can('write', 'leads');
  const enc = encodeURIComponent(id);
  const detail = h('section', { id: 'lead-detail', class: 'card', 'aria-live': 'polite' }, h('p', { class: 'state' }, 'Loading…'));
  const timeline = h('ol', { id: 'lead-timeline', class: 'timeline' });
  const timelineState = h('p', { class: 'state' }, 'Loading…');
  const heading = h('h1', null, 'Lead');
  let lead = null;
  let members = null; // tenant members for the assignment select, when the caller may list them
  const activityIds = new Set();

  add(ctx.view,
    h('p', { class: 'back' }, h('a', { href: '#/leads' }, '← All leads')),
    h('div', { class: 'page-head' }, heading),
    detail,
    h('section', { class: 'card', 'aria-labelledby': 'timeline-title' },
      h('h2', { id: 'timeline-title' }, 'Timeline'),
      activityForm(),
      timelineState,
      timeline),
  );

  function activityForm() {
    const allowed = can('write', 'activities');
    const type = select({ id: 'new-activity-type', disabled: !allowed }, ACTIVITY_TYPES, 'NOTE');
    const text = h('textarea', { id: 'new-activity-description', rows: 2, disabled: !allowed, placeholder: 'What happened?' });
    const submit = h('button', { id: 'new-activity-submit', class: 'btn primary', type: 'submit', disabled: !allowed }, 'Add to timeline');
    const form = h('form', { id: 'new-activity-form', novalidate: true, class: 'inline-form', 'aria-label': 'Add a note or activity' },
      h('div', { class: 'grid activity-grid' }, field('Type', type), field('Note', text)),
      h('div', { class: 'form-actions' }, submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!text.value.trim()) { notify('Write a note first.', 'error'); text.focus(); return; }
      await busy(submit, async () => {
        const activity = await api('POST', '/activities', { type: type.value, entityType: 'lead', entityId: id, description: text.value.trim() });
        addActivity(activity, true);
        text.value = '';
        notify('Added to the timeline');
      });
    });
    return form;
  }

  function activityItem(a) {
    const d = a.data || {};
    const extra = a.type === 'STATUS_CHANGED' && d.from ? `${d.from} → ${d.to}${d.reason ? ` (${d.reason})` : ''}`
      : a.type === 'MEETING' && d.start ? `Starts ${fmtDate(d.start)}${d.durationMinutes ? `, ${d.durationMinutes} min` : ''}` : null;
    return h('li', { 'data-activity-id': a.id },
      h('div', { class: 'tl-head' }, badge(a.type, 'activity'), timeEl(a.createdAt)),
      a.description && h('p', null, a.description),
      extra && h('p', { class: 'muted' }, extra));
  }

  function addActivity(a, prepend) {
    if (activityIds.has(a.id)) return;
    activityIds.add(a.id);
    timelineState.hidden = true;
    if (prepend) timeline.prepend(activityItem(a)); else add(timeline, activityItem(a));
  }

  async function loadTimeline() {
    try {
      const page = await api('GET', `/activities${query({ entityId: id, limit: 100 })}`);
      if (!ctx.alive()) return;
      fill(timeline);
      activityIds.clear();
      (page.data || []).forEach((a) => addActivity(a, false));
      timelineState.hidden = activityIds.size > 0;
      timelineState.className = 'state';
      timelineState.textContent = 'No activity yet.';
    } catch (e) {
      if (!ctx.alive()) return;
      timelineState.hidden = false;
      timelineState.className = 'state error';
      timelineState.textContent = e.message;
    }
  }

  function assignControl() {
    const current = lead.assignedTo || '';
    let control;
    if (members) {
      const opts = [['', 'Unassigned'], ...members.map((m) => [m.email, `${m.name || m.email} (${m.email})`])];
      const byName = members.find((m) => m.name === current);
      if (current && !members.some((m) => m.email === current) && !byName) opts.push([current, `${current} (not a member)`]);
      control = select({ id: 'lead-assign', disabled: !writable }, opts, byName ? byName.email : current);
      control.addEventListener('change', () => saveAssign(control.value));
    } else {
      control = h('input', { id: 'lead-assign', type: 'text', value: current, placeholder: 'Email or name', disabled: !writable, autocomplete: 'off' });
    }
    const save = h('button', { class: 'btn', type: 'submit', disabled: !writable }, 'Assign');
    const form = h('form', { id: 'lead-assign-form', class: 'assign-form' }, field('Assigned to', control), save);
    form.addEventListener('submit', (e) => { e.preventDefault(); saveAssign(control.value); });
    return form;
  }

  async function saveAssign(value) {
    const assignee = value.trim() || null;
    if (assignee === (lead.assignedTo || null)) return;
    try {
      const updated = await api('POST', `/leads/${enc}/assign`, { assignee });
      notify(assignee ? `Assigned to ${assignee}` : 'Lead unassigned');
      showLead(updated);
    } catch (e) {
      notify(e.message, 'error');
      showLead(lead);
    }
  }

  async function showContact(box) {
    if (!lead.contactId) { fill(box, 'No contact'); return; }
    try {
      const c = await api('GET', `/contacts/${encodeURIComponent(lead.contactId)}`);
      if (!ctx.alive()) return;
      fill(box, h('strong', null, contactName(c)),
        [c.email, c.phone, c.company].filter(Boolean).map((x) => [h('br'), x]),
        c.consent ? [h('br'), h('span', { class: 'muted' }, 'Consented to contact')] : null);
    } catch (e) {
      fill(box, h('span', { class: 'error' }, e.message));
    }
  }

  function showLead(l) {
    const focusedId = document.activeElement && detail.contains(document.activeElement) ? document.activeElement.id : null;
    lead = l;
    heading.textContent = leadName(l);
    document.title = `${leadName(l)} · Flow`;
    const sel = statusSelect(l, () => changeStatus(lead, sel, showLead), !writable);
    sel.id = 'lead-status';
    const contactBox = h('dd', { id: 'lead-contact' }, 'Loading…');
    const row = (label, value) => [h('dt', null, label), h('dd', null, value)];
    fill(detail, h('dl', { class: 'details' },
      row('Status', h('span', { class: 'status-edit' }, badge(l.status), h('label', { class: 'visually-hidden', for: 'lead-status' }, 'Change status'), sel)),
      row('Email', l.email ? h('a', { href: `mailto:${l.email}` }, l.email) : '—'),
      row('Phone', dash(l.phone)),
      row('Company', dash(l.company)),
      row('Source', dash(l.source)),
      row('Notes', l.notes ? h('span', { class: 'pre' }, l.notes) : '—'),
      row('Created', timeEl(l.createdAt)),
      row('Updated', timeEl(l.updatedAt)),
      h('dt', null, 'Contact'), contactBox),
    assignControl());
    showContact(contactBox);
    if (focusedId) document.getElementById(focusedId)?.focus();
  }

  async function load() {
    try {
      const [l, m] = await Promise.all([
        api('GET', `/leads/${enc}`),
        can('read', 'users') ? api('GET', '/users').then((r) => r.data || []).catch(() => null) : Promise.resolve(null),
      ]);
      if (!ctx.alive()) return;
      members = m;
      showLead(l);
    } catch (e) {
      if (!ctx.alive()) return;
      heading.textContent = 'Lead';
      fill(detail, h('p', { class: 'state error', role: 'alert' }, e.message));
    }
    loadTimeline();
  }
  load();

  return {
    reload: load,
    async onEvent(ev) {
      const d = ev.data || {};
      const leadId = d.leadId || (d.lead && d.lead.id);
      if (ev.type === 'ACTIVITY_CREATED' && d.activity && d.activity.entityId === id) addActivity(d.activity, true);
      if (leadId !== id || !lead) return;
      if (ev.type === 'LEAD_DELETED') {
        fill(detail, h('p', { class: 'state error', role: 'alert' }, 'This lead was deleted.'));
        return;
      }
      if (['LEAD_UPDATED', 'LEAD_STATUS_CHANGED', 'LEAD_ASSIGNED'].includes(ev.type)) {
        const l = ev.type === 'LEAD_ASSIGNED' ? { ...lead, assignedTo: d.assignee } : await leadFromEvent(ev).catch(() => null);
        if (l && ctx.alive()) showLead(l);
        // The status change's activity is not an event of its own.
        if (ev.type === 'LEAD_STATUS_CHANGED') loadTimeline();
      }
    },
  };
}

function pageContacts(ctx) {
  let q = '';
  const t = dataTable('contacts-table', ['Name', 'Email', 'Phone', 'Company', 'Source', 'Consent', 'Created']);
  const list = pagedTable(ctx, t, {
    moreId: 'contacts-more',
    rowAttr: 'data-contact-id',
    empty: () => (q ? 'No contacts match this search.' : 'No contacts yet.'),
    fetch: (cursor) => api('GET', `/contacts${query({ q: q.trim(), cursor, limit: 25 })}`),
    draw: (c, tr) => fill(tr,
      td('Name', contactName(c)), td('Email', dash(c.email)), td('Phone', dash(c.phone)),
      td('Company', dash(c.company)), td('Source', dash(c.source)), td('Consent', c.consent ? 'Yes' : 'No'),
      td('Created', timeEl(c.createdAt))),
  });
  const search = h('input', { id: 'contact-search', type: 'search', placeholder: 'Name, email, company, phone', autocomplete: 'off' });
  search.addEventListener('input', debounce(() => { q = search.value; list.load(true); }, 300));
  add(ctx.view, pageHeader('Contacts'),
    h('div', { class: 'filters', role: 'search', 'aria-label': 'Search contacts' }, field('Search', search)),
    t.wrap, h('div', { class: 'more' }, list.more));
  list.load(true);
  const matches = (c) => !q.trim() || [contactName(c), c.email, c.company, c.phone].filter(Boolean).join(' ').toLowerCase().includes(q.trim().toLowerCase());
  return {
    reload: () => list.load(true),
    onEvent(ev) {
      const d = ev.data || {};
      if (!d.contact) return;
      if (ev.type === 'CONTACT_CREATED') list.upsert(d.contact, matches(d.contact));
      if (ev.type === 'CONTACT_UPDATED' || ev.type === 'CONTACT_MERGED') list.upsert(d.contact);
      if (ev.type === 'CONTACT_MERGED' && d.mergedContactId) list.remove(d.mergedContactId);
    },
  };
}

function pageDeals(ctx) {
  let status = '';
  let q = '';
  const t = dataTable('deals-table', ['Title', 'Amount', 'Stage', 'Status', 'Created', 'Closed']);
  // The deals API has no text search: the search box filters the rows already loaded.
  const visible = (d) => !q || [d.title, d.stage].filter(Boolean).join(' ').toLowerCase().includes(q);
  const list = pagedTable(ctx, t, {
    moreId: 'deals-more',
    rowAttr: 'data-deal-id',
    empty: () => (status ? 'No deals with this status.' : 'No deals yet.'),
    fetch: (cursor) => api('GET', `/deals${query({ status, cursor, limit: 25 })}`),
    draw: (d, tr) => {
      fill(tr,
        td('Title', d.title), td('Amount', h('span', { class: 'num' }, money(d.amount, d.currency))),
        td('Stage', dash(d.stage)), td('Status', badge(d.status)), td('Created', timeEl(d.createdAt)),
        td('Closed', d.closedAt ? timeEl(d.closedAt) : '—'));
      tr.hidden = !visible(d);
    },
  });
  const noMatch = h('p', { class: 'state', hidden: true }, 'No loaded deals match this search.');
  const applySearch = () => {
    let shown = 0;
    for (const tr of t.tbody.querySelectorAll('tr[data-deal-id]')) { tr.hidden = !visible(tr.item); if (!tr.hidden) shown += 1; }
    noMatch.hidden = !q || shown > 0 || !t.tbody.querySelector('tr[data-deal-id]');
  };
  const statusFilter = select({ id: 'deal-filter-status' }, [['', 'All statuses'], ...DEAL_STATUSES], '');
  statusFilter.addEventListener('change', () => { status = statusFilter.value; list.load(true).then(applySearch); });
  const search = h('input', { id: 'deal-search', type: 'search', placeholder: 'Title or stage', autocomplete: 'off' });
  search.addEventListener('input', debounce(() => { q = search.value.trim().toLowerCase(); applySearch(); }, 200));
  add(ctx.view, pageHeader('Deals'),
    h('div', { class: 'filters', role: 'search', 'aria-label': 'Filter deals' }, field('Status', statusFilter), field('Search', search)),
    t.wrap, noMatch, h('div', { class: 'more' }, list.more));
  list.load(true);
  return {
    reload: () => list.load(true).then(applySearch),
    onEvent(ev) {
      const d = ev.data && ev.data.deal;
      if (!d || !ev.type.startsWith('DEAL_')) return;
      list.upsert(d, ev.type === 'DEAL_CREATED' && (!status || d.status === status));
      applySearch();
    },
  };
}

function pageActivity(ctx) {
  const list = h('ol', { id: 'activity-feed', class: 'feed', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Live events' });
  const empty = h('p', { class: 'state' }, 'No events yet. New events appear here as they happen.');
  add(ctx.view, pageHeader('Activity'),
    h('p', { class: 'muted' }, `Everything happening in this tenant, live. The latest ${FEED_MAX} events are kept.`),
    h('div', { class: 'card feed-card' }, feed.length ? null : empty, list));
  add(list, ...feed.map(feedItem));
  feedList = list;

  async function backfill() {
    // Recent history from the log, so the feed is not empty right after sign-in.
    if (feedBackfilled || !can('read', 'events')) return;
    try {
      let last = live.lastSeq;
      if (last == null) last = (await api('GET', '/events/log?limit=1')).lastSeq || 0;
      const since = Math.max(0, last - 50);
      const page = await api('GET', `/events/log${query({ since, limit: 50 })}`);
      feedBackfilled = true;
      const known = new Set(feed.map((x) => x.seq));
      for (const e of page.data || []) if (!known.has(e.seq)) feed.push({ seq: e.seq, ev: e.event });
      feed.sort((a, b) => b.seq - a.seq);
      if (feed.length > FEED_MAX) feed.length = FEED_MAX;
      if (!ctx.alive()) return;
      fill(list, ...feed.map(feedItem));
      if (feed.length) empty.remove();
    } catch (e) {
      if (ctx.alive()) notify(e.message, 'error');
    }
  }
  backfill();
  return { reload: () => { feedBackfilled = false; feed.length = 0; fill(list); backfill(); } };
}

let voiceConversationId = null;

function pageVoice(ctx) {
  const SR = window.SpeechRecognition || window.webkitSpeechRecognition;
  const allowed = can('execute', 'voice');
  const input = h('input', { id: 'voice-input', type: 'text', autocomplete: 'off', placeholder: 'e.g. “show new leads” or “vis nye leads”', disabled: !allowed });
  const submit = h('button', { id: 'voice-submit', class: 'btn primary', type: 'submit', disabled: !allowed }, 'Run');
  const savedLang = store.get('localStorage', 'flow.voiceLang');
  const defaultLang = (navigator.language || '').toLowerCase().startsWith('da') ? 'da-DK' : 'en-US';
  const lang = select({ id: 'voice-lang', 'aria-label': 'Speech language' },
    [['da-DK', 'Dansk (da-DK)'], ['en-US', 'English (en-US)']], savedLang || defaultLang);
  lang.addEventListener('change', () => store.set('localStorage', 'flow.voiceLang', lang.value));
  const mic = h('button', { id: 'voice-mic', class: 'btn mic', type: 'button', 'aria-pressed': 'false' });
  const micLabel = (listening) => fill(mic, h('span', { class: 'mic-dot', 'aria-hidden': 'true' }), listening ? 'Stop listening' : 'Speak');
  micLabel(false);
  const result = h('section', { id: 'voice-result', class: 'card voice-result', 'aria-live': 'polite', 'aria-label': 'Result' },
    h('p', { class: 'muted' }, 'Type or say a command: list leads, create a lead, change a status, search contacts, log an activity, book a meeting or get a summary.'));
  const form = h('form', { id: 'voice-form', class: 'card voice-form' },
    field('Command', input),
    h('div', { class: 'voice-actions' }, submit, mic, lang));
  let recognition = null;

  if (!SR || !allowed) {
    mic.hidden = true;
    mic.disabled = true;
    lang.hidden = true;
    lang.disabled = true;
  }

  add(ctx.view, pageHeader('Voice'),
    !allowed && h('p', { class: 'state error' }, 'Your role in this tenant cannot run voice commands.'),
    allowed && !SR && h('p', { class: 'muted' }, 'Speech input is not available in this browser: type the command instead.'),
    form, result);

  async function run(text, spoken) {
    if (!text.trim()) { input.focus(); return; }
    const body = { text: text.trim(), utcOffsetMinutes: -new Date().getTimezoneOffset() };
    if (voiceConversationId) body.conversationId = voiceConversationId;
    if (spoken) body.language = lang.value.slice(0, 2);
    submit.disabled = true;
    result.setAttribute('aria-busy', 'true');
    fill(result, h('p', { class: 'muted' }, 'Working…'));
    try {
      const answer = await api('POST', '/voice/execute', body);
      if (!ctx.alive()) return;
      if (answer.conversationId) voiceConversationId = answer.conversationId;
      showAnswer(answer);
    } catch (e) {
      if (!ctx.alive()) return;
      fill(result, h('p', { class: 'state error', role: 'alert' }, e.message));
    } finally {
      submit.disabled = false;
      result.removeAttribute('aria-busy');
    }
  }

  function showAnswer(a) {
    const params = a.parameters && typeof a.parameters === 'object' ? Object.entries(a.parameters) : [];
    const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
    fill(result,
      h('p', { class: `reply ${a.success === false ? 'warn' : ''}` }, a.reply || a.clarification || ''),
      a.clarification && a.clarification !== a.reply && h('p', { class: 'muted' }, a.clarification),
      h('dl', { class: 'details compact' },
        row('Transcript', dash(a.transcript)),
        row('Command', a.command ? h('code', { class: 'voice-command' }, a.command) : '—'),
        row('Confidence', typeof a.confidence === 'number' ? `${Math.round(a.confidence * 100)}%` : '—'),
        row('Language', dash(a.language)),
        row('Executed', a.executed ? 'Yes' : 'No')),
      params.length ? h('table', { class: 'data small params' },
        h('caption', null, 'Parameters'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
        h('tbody', null, params.map(([k, v]) => h('tr', null, h('td', null, k), h('td', null, typeof v === 'object' ? JSON.stringify(v) : String(v)))))) : null,
      voiceData(a.data));
  }

  function startListening() {
    if (recognition) { recognition.stop(); return; }
    recognition = new SR();
    recognition.lang = lang.value;
    recognition.interimResults = true;
    recognition.maxAlternatives = 1;
    let finalText = '';
    mic.setAttribute('aria-pressed', 'true');
    micLabel(true);
    recognition.onresult = (e) => {
      let text = '';
      for (let i = 0; i < e.results.length; i++) text += e.results[i][0].transcript;
      input.value = text;
      if (e.results[e.results.length - 1].isFinal) finalText = text;
    };
    recognition.onerror = (e) => {
      const msg = e.error === 'not-allowed' ? 'Microphone access was denied.'
        : e.error === 'no-speech' ? 'No speech was heard. Try again.' : `Speech recognition failed (${e.error}).`;
      fill(result, h('p', { class: 'state error', role: 'alert' }, msg));
    };
    recognition.onend = () => {
      recognition = null;
      mic.setAttribute('aria-pressed', 'false');
      micLabel(false);
      if (finalText && ctx.alive()) run(finalText, true);
    };
    try { recognition.start(); } catch (e) { recognition.onend(); notify(e.message, 'error'); }
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); run(input.value, false); });
  mic.addEventListener('click', startListening);
  return { dispose: () => { if (recognition) { recognition.onend = null; recognition.abort(); } } };
}

/** The voice answer's data: lists of leads or contacts, one record, or a key/value table. */
function voiceData(data) {
  if (data == null) return null;
  const wrap = (...c) => h('div', { class: 'voice-data' }, h('h2', null, 'Data'), c);
  const describe = (x) => {
    if (x && x.firstName !== undefined && x.status) {
      return [h('a', { href: `#/leads/${encodeURIComponent(x.id)}` }, leadName(x)), x.company ? ` · ${x.company}` : '', ' ', badge(x.status)];
    }
    if (x && (x.firstName !== undefined || x.email !== undefined) && x.consent !== undefined) return [contactName(x), x.email ? ` · ${x.email}` : ''];
    if (x && x.entityType && x.type) return [badge(x.type, 'activity'), ' ', x.description || ''];
    return typeof x === 'object' ? JSON.stringify(x) : String(x);
  };
  if (Array.isArray(data.data)) {
    return wrap(data.data.length ? h('ul', { class: 'data-list' }, data.data.map((x) => h('li', null, describe(x)))) : h('p', { class: 'muted' }, 'Nothing found.'));
  }
  if (Array.isArray(data.commands)) return wrap(h('ul', { class: 'data-list' }, data.commands.map((c) => h('li', null, h('code', null, c)))));
  if (data.id && (data.status || data.type)) return wrap(h('p', null, describe(data)));
  if (typeof data === 'object') {
    return wrap(h('dl', { class: 'details compact' }, Object.entries(data).map(([k, v]) => [
      h('dt', null, k), h('dd', null, v == null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v))])));
  }
  return wrap(h('p', null, String(data)));
}

function pageUsers(ctx) {
  const t = dataTable('users-table', ['Name', 'Email', 'Role', 'Joined', '']);
  const me = session.user && session.user.id;

  function draw(u) {
    const role = select({ 'data-role-for': u.id, 'aria-label': `Role of ${u.email}` }, ROLES, u.role);
    role.addEventListener('change', () => {
      const previous = u.role;
      busy(role, async () => {
        try {
          const updated = await api('PATCH', `/users/${encodeURIComponent(u.id)}`, { role: role.value });
          u.role = updated.role || role.value;
          notify(`${u.email} is now ${u.role}`);
        } catch (e) { role.value = previous; throw e; }
      });
    });
    const remove = h('button', { class: 'btn danger subtle', type: 'button', 'data-remove-user': u.id, 'aria-label': `Remove ${u.email} from this tenant` }, 'Remove');
    remove.addEventListener('click', () => busy(remove, async () => {
      await api('DELETE', `/users/${encodeURIComponent(u.id)}`);
      tr.remove();
      if (!t.tbody.querySelector('tr[data-user-id]')) stateRow(t, 'No members.');
      notify(`${u.email} removed from this tenant`);
    }));
    const tr = h('tr', { 'data-user-id': u.id },
      td('Name', u.name || '—', u.id === me ? h('span', { class: 'muted' }, ' (you)') : null),
      td('Email', u.email), td('Role', role), td('Joined', timeEl(u.createdAt)), td('', remove));
    return tr;
  }

  async function load() {
    stateRow(t, 'Loading…', 'loading');
    try {
      const res = await api('GET', '/users');
      if (!ctx.alive()) return;
      const users = res.data || [];
      if (users.length) fill(t.tbody, ...users.map(draw)); else stateRow(t, 'No members.');
    } catch (e) {
      if (ctx.alive()) stateRow(t, e.message, 'error');
    }
  }

  const inp = (id, type, extra) => h('input', { id, type, autocomplete: 'off', ...extra });
  const submit = h('button', { id: 'new-user-submit', class: 'btn primary', type: 'submit' }, 'Invite');
  const error = h('p', { id: 'new-user-error', class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { id: 'new-user-form', novalidate: true, class: 'card inline-form', 'aria-labelledby': 'new-user-title' },
    h('h2', { id: 'new-user-title' }, 'Invite a member'),
    h('div', { class: 'grid' },
      field('Email', inp('new-user-email', 'email', { required: true }), 'They join when they accept the invitation'),
      field('Role', select({ id: 'new-user-role' }, ROLES, 'user'))),
    error,
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = (id) => $(`#${id}`, form).value;
    error.hidden = true;
    submit.disabled = true;
    try {
      // An invitation: the person joins (and appears in the table) once they accept it.
      const body = { email: v('new-user-email').trim(), role: v('new-user-role') };
      const invited = await api('POST', '/users', body);
      form.reset();
      notify(`${invited.email} invited as ${invited.role}`);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      notify(err.message, 'error');
    } finally {
      submit.disabled = false;
    }
  });

  add(ctx.view, pageHeader('Users'), form, t.wrap);
  load();
  return { reload: load };
}

function pageKeys(ctx) {
  const t = dataTable('keys-table', ['Name', 'Prefix', 'Permissions', 'Apps', 'Rate / min', 'Status', 'Created', 'Last used', '']);

  function draw(k) {
    const revoke = h('button', { class: 'btn danger subtle', type: 'button', 'data-revoke-key': k.id, disabled: !k.active, 'aria-label': `Revoke ${k.name}` }, k.active ? 'Revoke' : 'Revoked');
    revoke.addEventListener('click', () => busy(revoke, async () => {
      await api('DELETE', `/api-keys/${encodeURIComponent(k.id)}`);
      notify(`Key ${k.name} revoked`);
      await load();
    }));
    return h('tr', { 'data-key-id': k.id },
      td('Name', k.name), td('Prefix', h('code', null, k.prefix)),
      td('Permissions', (k.permissions || []).join(', ') || '—'), td('Apps', (k.allowedApps || []).join(', ') || '—'),
      td('Rate / min', dash(k.rateLimitPerMinute)), td('Status', badge(k.active ? 'Active' : 'Revoked', k.active ? 'active' : 'revoked')),
      td('Created', timeEl(k.createdAt)), td('Last used', k.lastUsedAt ? timeEl(k.lastUsedAt) : 'Never'), td('', revoke));
  }

  async function load() {
    try {
      const res = await api('GET', '/api-keys');
      if (!ctx.alive()) return;
      const keys = res.data || [];
      if (keys.length) fill(t.tbody, ...keys.map(draw)); else stateRow(t, 'No API keys yet.');
    } catch (e) {
      if (ctx.alive()) stateRow(t, e.message, 'error');
    }
  }

  const secret = h('code', { id: 'new-key-secret' });
  const copy = h('button', { id: 'new-key-copy', class: 'btn', type: 'button' }, 'Copy');
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(secret.textContent); notify('Secret copied'); } catch {
      // Clipboard needs a secure context; selecting the text lets the user copy by hand.
      getSelection().selectAllChildren(secret);
      notify('Press Ctrl+C (⌘C) to copy the selected secret');
    }
  });
  const secretBox = h('div', { id: 'new-key-secret-box', class: 'secret-box', hidden: true, role: 'status' },
    h('p', null, h('strong', null, 'Copy this secret now: it will not be shown again.')), h('div', { class: 'secret-row' }, secret, copy));

  const submit = h('button', { id: 'new-key-submit', class: 'btn primary', type: 'submit' }, 'Create key');
  const error = h('p', { id: 'new-key-error', class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { id: 'new-key-form', novalidate: true, class: 'card inline-form', 'aria-labelledby': 'new-key-title' },
    h('h2', { id: 'new-key-title' }, 'Create an API key'),
    h('div', { class: 'grid' },
      field('Name', h('input', { id: 'new-key-name', type: 'text', required: true, autocomplete: 'off' })),
      field('Permissions', h('input', { id: 'new-key-permissions', type: 'text', required: true, autocomplete: 'off', placeholder: 'read:leads, write:leads' }), 'Comma-separated, e.g. read:*, write:leads'),
      field('Allowed apps', h('input', { id: 'new-key-apps', type: 'text', autocomplete: 'off', placeholder: 'crm-web, flow-web' }), 'Comma-separated; * allows any app; empty: the server default'),
      field('Rate limit / min', h('input', { id: 'new-key-rate', type: 'number', min: 1, inputmode: 'numeric', placeholder: 'default' }))),
    error,
    h('div', { class: 'form-actions' }, submit),
    secretBox);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = (id) => $(`#${id}`, form).value.trim();
    const apps = splitList(v('new-key-apps'));
    const body = { name: v('new-key-name'), permissions: splitList(v('new-key-permissions')) };
    if (apps.length) body.allowedApps = apps;
    if (v('new-key-rate')) body.rateLimitPerMinute = Number(v('new-key-rate'));
    error.hidden = true;
    submit.disabled = true;
    try {
      const key = await api('POST', '/api-keys', body);
      secret.textContent = key.secret || '';
      secretBox.hidden = false;
      form.querySelectorAll('input').forEach((i) => { i.value = ''; });
      notify(`Key ${key.name} created`);
      copy.focus();
      load();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      notify(err.message, 'error');
    } finally {
      submit.disabled = false;
    }
  });

  stateRow(t, 'Loading…', 'loading');
  add(ctx.view, pageHeader('API keys'), form, t.wrap);
  load();
  return { reload: load };
}

function pageQueues(ctx) {
  const t = dataTable('queues-table', ['Queue', 'Priority', 'Ready', 'Delayed', 'Running', 'Completed', 'Dead', 'Done last min', 'Oldest waiting']);
  const updated = h('span', { class: 'muted', 'aria-live': 'polite' });
  const refreshBtn = h('button', { id: 'queues-refresh', class: 'btn', type: 'button' }, 'Refresh');
  const num = (label, n) => td(label, h('span', { class: 'num' }, n == null ? '—' : String(n)));

  async function load() {
    refreshBtn.disabled = true;
    try {
      const queues = await api('GET', '/admin/queues');
      if (!ctx.alive()) return;
      const list = Array.isArray(queues) ? queues : (queues && queues.data) || [];
      if (!list.length) stateRow(t, 'No queues.');
      else {
        fill(t.tbody, ...list.map((q) => h('tr', { 'data-queue': q.name },
          td('Queue', h('strong', null, q.name)), num('Priority', q.priority), num('Ready', q.ready), num('Delayed', q.delayed),
          num('Running', q.running), num('Completed', q.completed),
          td('Dead', q.dead ? badge(String(q.dead), 'lost') : h('span', { class: 'num' }, '0')),
          num('Done last min', q.completedLastMinute),
          td('Oldest waiting', q.oldestReadyAgeSeconds == null ? '—' : `${Math.round(q.oldestReadyAgeSeconds)} s`))));
      }
      updated.textContent = `Updated ${fmtDate(new Date().toISOString(), timeFmt)}`;
    } catch (e) {
      if (ctx.alive()) stateRow(t, e.message, 'error');
    } finally {
      refreshBtn.disabled = false;
    }
  }

  refreshBtn.addEventListener('click', load);
  stateRow(t, 'Loading…', 'loading');
  add(ctx.view, pageHeader('Queues', updated, refreshBtn), t.wrap);
  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, 15000);
  return { reload: load, dispose: () => clearInterval(timer) };
}

const PAGES = {
  leads: pageLeads, lead: pageLead, contacts: pageContacts, deals: pageDeals, activity: pageActivity,
  voice: pageVoice, users: pageUsers, keys: pageKeys, queues: pageQueues,
};

/* ---------- sign-in and start-up ---------- */

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const error = $('#login-error');
  const email = $('#login-email').value.trim();
  const password = $('#login-password').value;
  error.hidden = true;
  if (!email || !password) {
    error.textContent = 'Enter your email and password.';
    error.hidden = false;
    return;
  }
  const submit = $('#login-submit');
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  try {
    applyAuth(await rawRequest('POST', '/auth/login', { email, password }, null));
    $('#login-password').value = '';
    $('#login-info').textContent = '';
    routedByUser = true;
    enterApp();
  } catch (err) {
    let msg = err.message;
    if (err.status === 429 && err.retryAfter) msg += ` Try again in ${err.retryAfter} s.`;
    error.textContent = msg;
    error.hidden = false;
    $('#login-password').focus();
  } finally {
    submit.disabled = false;
    submit.textContent = 'Sign in';
  }
});

$('#sign-out').addEventListener('click', signOut);
$('#tenant-switcher').addEventListener('change', (e) => switchTenant(e.target.value));

window.addEventListener('storage', (e) => {
  // Signing out in one tab signs out the others.
  if ((e.key === LS_SIGNED_IN || e.key === null) && !store.get('localStorage', LS_SIGNED_IN) && session.accessToken) {
    endSession('You signed out in another tab.');
  }
});
window.addEventListener('online', () => {
  if (live.stopped) return;
  live.attempt = 0;
  // The old socket may be dead without knowing it: a fresh one resumes without a gap.
  if (live.ws) live.ws.close(); else connect();
});
window.addEventListener('offline', () => { if (!live.stopped) setConn('offline'); });
document.addEventListener('visibilitychange', () => {
  // Background tabs have their timers throttled: catch up when the tab is looked at again.
  if (document.hidden || !session.accessToken) return;
  if (session.expiresAt - Date.now() < 60000) refreshOrEnd().catch(() => {});
  if (!live.stopped && !live.ws) { live.attempt = 0; connect(); }
});

async function boot() {
  const saved = (() => { try { return JSON.parse(store.get('sessionStorage', SS_ACCESS) || 'null'); } catch { return null; } })();
  const hasRefresh = !!store.get('localStorage', LS_SIGNED_IN);
  if (!hasRefresh) { showLogin(); return; }
  try {
    if (saved && saved.token && saved.expiresAt - Date.now() > 60000) {
      // This tab already holds a live access token: only the profile is needed.
      session.accessToken = saved.token;
      session.expiresAt = saved.expiresAt;
      session.tenant = saved.tenantId ? { id: saved.tenantId } : null;
      scheduleRefresh();
      applyProfile(await api('GET', '/users/profile'));
    } else {
      await refresh(saved && saved.tenantId ? saved.tenantId : store.get('localStorage', LS_TENANT));
    }
    enterApp();
  } catch (e) {
    if (isAuthFailure(e)) endSession(e.code === 'no_session' ? '' : 'Your session has ended. Please sign in again.');
    else {
      showLogin(e.message);
      // Keep the stored session: a network blip should not sign anyone out.
    }
  }
}

boot();
})();
