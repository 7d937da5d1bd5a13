'use strict';
// Shared by the soak's processes: a latency histogram, a small HTTP client, /proc readers
// and a few formatting helpers.

const fs = require('fs');
const http = require('http');
// Process and machine readings shared with the fan-out benchmark (no dependencies).
const { procTicks, loadavg } = require('../fanout/lib');

const hrUs = () => Number(process.hrtime.bigint() / 1000n);

// Latency histogram in microseconds: 10 µs buckets up to 100 ms, 1 ms buckets up to 100 s
// (a fixed layout, so histograms from several processes merge by adding counts).
const FINE_US = 10;
const FINE_LIMIT_US = 100_000;
const FINE_BUCKETS = FINE_LIMIT_US / FINE_US;
const COARSE_US = 1000;
const BUCKETS = FINE_BUCKETS + 100_000;

class Histogram {
  constructor() {
    this.counts = new Uint32Array(BUCKETS);
    this.n = 0;
    this.maxUs = 0;
  }

  record(us) {
    if (!(us >= 0)) us = 0;
    const b = us < FINE_LIMIT_US
      ? Math.floor(us / FINE_US)
      : Math.min(BUCKETS - 1, FINE_BUCKETS + Math.floor((us - FINE_LIMIT_US) / COARSE_US));
    this.counts[b]++;
    this.n++;
    if (us > this.maxUs) this.maxUs = us;
  }

  // Sparse form for IPC: [[bucket, count], ...].
  toJSON() {
    const sparse = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]) sparse.push([i, this.counts[i]]);
    return { n: this.n, maxUs: this.maxUs, sparse };
  }

  static fromJSON(json) {
    const h = new Histogram();
    if (!json) return h;
    for (const [i, c] of json.sparse) h.counts[i] += c;
    h.n = json.n;
    h.maxUs = json.maxUs;
    return h;
  }

  // Upper edge of the bucket holding the q-quantile, in microseconds (capped at the max).
  quantileUs(q) {
    if (this.n === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) {
        const upper = i < FINE_BUCKETS ? (i + 1) * FINE_US : FINE_LIMIT_US + (i - FINE_BUCKETS + 1) * COARSE_US;
        return Math.min(upper, this.maxUs);
      }
    }
    return this.maxUs;
  }
}

// Counts by label ("429 rate_limited", "ECONNRESET", ...).
function bump(map, label, by = 1) {
  map[label] = (map[label] || 0) + by;
}

// One HTTP request; resolves (never rejects) to {status, headers, body} or {error}. Every
// request has a deadline, so nothing waits for ever on a server that stopped answering.
function request(opts) {
  const { url, method = 'GET', path, headers = {}, body, agent, timeoutMs = 10_000, localAddress, maxBody = 4 << 20 } = opts;
  return new Promise((resolve) => {
    let done = false;
    const finish = (r) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        resolve(r);
      }
    };
    const req = http.request(url + path, { method, headers, agent, localAddress }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (size <= maxBody) chunks.push(c);
      });
      res.on('end', () => finish({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => finish({ error: e.code || e.message }));
    });
    const timer = setTimeout(() => {
      finish({ error: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => finish({ error: e.code || e.message }));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

// "429 rate_limited" from an answer with Flow's JSON error body, "ECONNRESET" for a
// request that got none.
function outcomeLabel(r) {
  if (r.error) return r.error;
  let code = '';
  try {
    code = JSON.parse(r.body).error.code || '';
  } catch {
    // not a Flow error body
  }
  return code ? `${r.status} ${code}` : String(r.status);
}

function errorMessage(r) {
  try {
    return JSON.parse(r.body).error.message || '';
  } catch {
    return '';
  }
}

// A keep-alive agent whose idle sockets close well before Flow's header timeout (15 s
// after the last response): a client reusing a socket at the instant the server closes it
// would record a reset that no real client would see twice.
function keepAliveAgent(maxSockets, localAddress) {
  return new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: 5000, localAddress });
}

// --- /proc ---------------------------------------------------------------------------

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

function statusField(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function fdLimit(pid) {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? { soft: m[1], hard: m[2] } : null;
  } catch {
    return null;
  }
}

// The scheduler state of each of a process's threads: 'R' running or runnable, 'S'
// sleeping (waiting for work, a lock or a timer), 'D' in uninterruptible sleep (disk I/O,
// such as an fsync), ...
function threadStates(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        return stat[stat.lastIndexOf(')') + 2];
      } catch {
        return '?';
      }
    });
  } catch {
    return [];
  }
}

// Bytes a process caused to be read from and written to storage (/proc/PID/io).
function procIo(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name) => Number((new RegExp(`^${name}: (\\d+)`, 'm').exec(text) || [])[1] || 0);
    return { read: field('read_bytes'), write: field('write_bytes') };
  } catch {
    return null;
  }
}

// Machine-wide busy and total ticks from /proc/stat (the first eight fields: guest time is
// already inside user).
function machineTicks() {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3] - (v[4] || 0), total };
}

// --- formatting ----------------------------------------------------------------------

function ms(us) {
  if (us === null || us === undefined) return 'n/a';
  const v = us / 1000;
  if (v < 10) return `${v.toFixed(2)} ms`;
  if (v < 100) return `${v.toFixed(1)} ms`;
  return `${Math.round(v)} ms`;
}

const int = (n) => (n === null || n === undefined ? 'n/a' : Math.round(n).toLocaleString('en-US'));

function mib(kib) {
  return kib === null || kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`;
}

// "429 rate_limited: 12, 401 invalid_token: 3", largest first; "none" when empty.
function counts(map, limit = 6) {
  const entries = Object.entries(map || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return 'none';
  const shown = entries.slice(0, limit).map(([k, n]) => `${k}: ${int(n)}`);
  if (entries.length > limit) shown.push(`${entries.length - limit} more`);
  return shown.join(', ');
}

const sum = (map) => Object.values(map || {}).reduce((a, b) => a + b, 0);

const sleep = (msecs) => new Promise((r) => setTimeout(r, msecs));

module.exports = {
  Histogram, bump, request, outcomeLabel, errorMessage, keepAliveAgent, hrUs,
  fdCount, statusField, fdLimit, procTicks, machineTicks, loadavg, threadStates, procIo,
  ms, int, mib, counts, sum, sleep,
};
